#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int c,char**v){size_t n=(size_t)atoi(v[1])*1024*1024/8; unsigned long*a=malloc(n*8); for(size_t i=0;i<n;i++)a[i]=(i*2654435761UL+12345)%n;
 volatile unsigned long p=0; for(int r=0;r<60;r++){double t0=now(); for(int i=0;i<2000000;i++) p=a[p]; double t1=now(); printf("%.0f ",(t1-t0)*1000);} printf("\n");}
