//! A sandbox that refuses io_uring (here a seccomp filter, as Docker's default profile has):
//! the server says so in one line and exits 1, before any ready line.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

#[test]
fn a_sandbox_that_refuses_io_uring_gets_one_line_and_exit_1() {
    // A classic BPF program: io_uring_setup fails with EPERM, every other syscall runs.
    let nr = libc::SYS_io_uring_setup as u32;
    let filter = [
        bpf(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, 0), // seccomp_data.nr
        bpf(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, 0, 1, nr),
        bpf(
            libc::BPF_RET | libc::BPF_K,
            0,
            0,
            libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        ),
        bpf(libc::BPF_RET | libc::BPF_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ];
    let mut command = Command::new(env!("CARGO_BIN_EXE_server-uring"));
    command.args(["--addr", "127.0.0.1:0"]).stdin(Stdio::null());
    // SAFETY: prctl is async-signal-safe; the filter lives in the closure, and applies to the
    // child alone (after fork, before exec).
    unsafe {
        command.pre_exec(move || {
            let program = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr().cast_mut(),
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &program as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let output = command.output().expect("start the server under the filter");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(output.stdout.is_empty(), "a ready line while refused");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("server-uring: io_uring is not available here"),
        "{stderr}"
    );
}

fn bpf(code: u32, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}
