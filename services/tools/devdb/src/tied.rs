//! A child process tied to our life: it is spawned from a thread of ours
//! that waits for it, with a parent-death signal, so that if our process
//! dies the child goes too instead of lingering.

use std::{
    process::Command,
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

use crate::{Error, io};

/// A running child and the thread that spawned (and waits for) it.
pub struct Tied {
    pid: Pid,
    waiter: thread::JoinHandle<()>,
}

impl Tied {
    /// Spawns `cmd`; the child gets `on_our_death` should we die first.
    pub fn spawn(name: &str, mut cmd: Command, on_our_death: Signal) -> Result<Self, Error> {
        die_with_parent(&mut cmd, on_our_death);
        // The thread that spawns the child must outlive it: the parent-death
        // signal fires when the spawning *thread* exits.
        let (tx, rx) = mpsc::channel();
        let waiter = thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || match cmd.spawn() {
                Ok(mut child) => {
                    let _ = tx.send(Ok(child.id()));
                    let _ = child.wait();
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            })
            .map_err(io(format!("starting the thread of {name}")))?;
        let pid = rx
            .recv()
            .map_err(|_| Error::NotReady(Duration::ZERO, format!("the thread of {name} died")))?
            .map_err(io(format!("starting {name}")))?;
        Ok(Self {
            pid: Pid::from_raw(pid as i32),
            waiter,
        })
    }

    /// Whether the child has exited.
    pub fn is_finished(&self) -> bool {
        self.waiter.is_finished()
    }

    /// Sends `signal`, waits up to `within` for the child to exit, then
    /// kills it.
    pub fn stop(self, signal: Signal, within: Duration) {
        let _ = kill(self.pid, signal);
        let start = Instant::now();
        while !self.waiter.is_finished() && start.elapsed() < within {
            thread::sleep(Duration::from_millis(20));
        }
        self.kill(Signal::SIGKILL);
    }

    /// Sends `signal` and waits for the child to exit.
    pub fn kill(self, signal: Signal) {
        if !self.waiter.is_finished() {
            let _ = kill(self.pid, signal);
        }
        let _ = self.waiter.join();
    }
}

#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command, signal: Signal) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only makes
    // the prctl(2) system call, which is async-signal-safe. It runs after the
    // uid change, which would otherwise clear the setting.
    unsafe {
        cmd.pre_exec(move || nix::sys::prctl::set_pdeathsig(signal).map_err(std::io::Error::from));
    }
}
