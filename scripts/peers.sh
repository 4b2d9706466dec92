#!/usr/bin/env bash
# Reference peers (nginx, wrk, ab) for benchmarks. Source it; it only starts and stops them.
#
#   ensure_peers            install wrk, apache2-utils, nginx-light when missing (root + apt),
#                           else say what is missing; rows that need them are skipped
#   start_nginx             nginx, 1 worker, answering "HelloWorld\n" on 127.0.0.1; sets
#                           NGINX_ADDR and NGINX_PID (returns 1 if nginx is not installed)
#   start_nginx_proxy ADDR  the same nginx as a reverse proxy in front of the server at ADDR
#                           (HTTP/1.0 to it, a connection per request, as nginx does by default)
#   stop_nginx

ensure_peers() {
  local missing=()
  command -v wrk >/dev/null || missing+=(wrk)
  command -v ab >/dev/null || missing+=(apache2-utils)
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing peers: ${missing[*]}" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >/dev/null 2>&1 \
      || echo "could not install ${missing[*]}; their rows will be skipped" >&2
  else
    echo "missing peers: ${missing[*]} (apt-get install -y ${missing[*]}); their rows will be skipped" >&2
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start_nginx() {
  _nginx_with_location 'default_type text/plain; return 200 "HelloWorld\n";'
}

start_nginx_proxy() {
  [ -n "${1:-}" ] || { echo "usage: start_nginx_proxy HOST:PORT" >&2; return 2; }
  _nginx_with_location "proxy_pass http://$1;"
}

# Starts nginx (1 worker, in a temporary directory) with `location / { BODY }`.
_nginx_with_location() {
  local nginx
  nginx=$(command -v nginx || echo /usr/sbin/nginx)
  [ -x "$nginx" ] || { echo "nginx is not installed (apt-get install nginx-light)" >&2; return 1; }
  NGINX_DIR=$(mktemp -d)
  local port
  port=$(free_port)
  cat > "$NGINX_DIR/nginx.conf" <<CONF
worker_processes 1;
daemon on;
pid $NGINX_DIR/nginx.pid;
error_log $NGINX_DIR/error.log;
events { worker_connections 16384; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 30s;
  client_body_temp_path $NGINX_DIR;
  proxy_temp_path $NGINX_DIR;
  fastcgi_temp_path $NGINX_DIR;
  uwsgi_temp_path $NGINX_DIR;
  scgi_temp_path $NGINX_DIR;
  server {
    listen 127.0.0.1:$port backlog=4096;
    location / { $1 }
  }
}
CONF
  "$nginx" -p "$NGINX_DIR" -c "$NGINX_DIR/nginx.conf" 2>"$NGINX_DIR/start.log" || { cat "$NGINX_DIR/start.log" >&2; return 1; }
  for _ in $(seq 50); do [ -s "$NGINX_DIR/nginx.pid" ] && break; sleep 0.05; done
  NGINX_PID=$(cat "$NGINX_DIR/nginx.pid")
  NGINX_ADDR="127.0.0.1:$port"
}

stop_nginx() {
  [ -n "${NGINX_PID:-}" ] && kill "$NGINX_PID" 2>/dev/null
  for _ in $(seq 50); do kill -0 "${NGINX_PID:-0}" 2>/dev/null || break; sleep 0.05; done
  [ -n "${NGINX_DIR:-}" ] && rm -rf "$NGINX_DIR"
  NGINX_PID=""
}
