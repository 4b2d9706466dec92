//! A master's worker processes, for the models with a master and workers (prefork,
//! reuseport): replace a worker that dies, pass SIGTERM on, wait until all have drained.
//!
//! The master is single-threaded and forks its workers itself (each model says how a worker
//! is made); this is only what it does with them afterwards, the same for every such model.

use std::collections::HashSet;
use std::io;

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use crate::shutdown;

/// The live workers of a master.
pub struct Workers {
    /// The server's name, for its messages.
    name: &'static str,
    running: HashSet<Pid>,
}

impl Workers {
    /// No workers yet; `name` prefixes the messages (`server-prefork`).
    pub fn new(name: &'static str) -> Workers {
        Workers {
            name,
            running: HashSet::new(),
        }
    }

    /// Counts `pid` among the workers.
    pub fn add(&mut self, pid: Pid) {
        self.running.insert(pid);
    }

    /// The master's loop, until shutdown is requested: wait for a worker to exit and replace
    /// it with `spawn`; then [`stop`](Self::stop) them all.
    pub fn supervise(&mut self, mut spawn: impl FnMut() -> io::Result<Pid>) {
        while !shutdown::requested() {
            match waitpid(None, None) {
                Ok(status) => {
                    let Some(pid) = status.pid() else { continue };
                    self.running.remove(&pid);
                    if shutdown::requested() {
                        break;
                    }
                    if let WaitStatus::Signaled(_, signal, _) = status {
                        eprintln!(
                            "{}: worker {pid} killed by {signal}; replacing it",
                            self.name
                        );
                    }
                    match spawn() {
                        Ok(pid) => self.add(pid),
                        Err(e) => eprintln!("{}: cannot replace worker: {e}", self.name),
                    }
                }
                Err(Errno::EINTR) => {} // a signal: look at the shutdown flag
                Err(_) => break,        // ECHILD: no worker left
            }
        }
        self.stop();
    }

    /// Passes SIGTERM on to every worker and waits until all have finished what they hold and
    /// exited.
    pub fn stop(&mut self) {
        for pid in &self.running {
            let _ = kill(*pid, Signal::SIGTERM);
        }
        while !self.running.is_empty() {
            match waitpid(None, None) {
                Ok(status) => {
                    if let Some(pid) = status.pid() {
                        self.running.remove(&pid);
                    }
                }
                Err(Errno::EINTR) => {}
                Err(_) => return,
            }
        }
    }
}
