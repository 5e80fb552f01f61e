//! A service's listening sockets held by the launcher, as systemd holds a
//! `.socket` unit's: bound once, passed to every process of the service
//! (`LISTEN_FDS`), so a restart refuses no connection.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use tokio::process::Command;

/// How many connections wait in a held socket's queue while its service
/// restarts (the kernel caps it at `net.core.somaxconn`, 4096 by default).
const HELD_BACKLOG: i32 = 4096;

/// Where a held socket's descriptor is kept: above the descriptors a
/// child is given (3 and 4), so moving one there never overwrites another.
const HELD_FD_FLOOR: i32 = 10;

/// A service's listening sockets, bound by the launcher once and passed
/// to each of its processes as systemd passes a `.socket` unit's: the
/// sockets outlive every restart, and connections made while no process
/// serves wait in their backlog instead of being refused.
pub(crate) struct HeldSockets {
    /// TCP first, then the Unix socket, in the order they are passed.
    fds: Vec<std::os::fd::OwnedFd>,
    /// The Unix socket's file, removed when the launcher lets it go.
    unix_path: Option<PathBuf>,
}

impl Drop for HeldSockets {
    fn drop(&mut self) {
        if let Some(path) = &self.unix_path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// `fd` moved to a descriptor at or above [`HELD_FD_FLOOR`], with a
/// larger backlog.
fn hold(fd: std::os::fd::OwnedFd) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd};
    nix::sys::socket::listen(
        &fd,
        nix::sys::socket::Backlog::new(HELD_BACKLOG).map_err(std::io::Error::from)?,
    )?;
    let raw = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(HELD_FD_FLOOR))?;
    #[allow(unsafe_code)]
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that nothing else owns.
    let moved = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
    debug_assert!(moved.as_raw_fd() >= HELD_FD_FLOOR);
    Ok(moved)
}

impl HeldSockets {
    pub(crate) fn bind(
        listen: SocketAddr,
        unix: Option<&Path>,
    ) -> std::io::Result<(Self, SocketAddr)> {
        let tcp = std::net::TcpListener::bind(listen)?;
        let addr = tcp.local_addr()?;
        let mut held = Self {
            fds: vec![hold(tcp.into())?],
            unix_path: None,
        };
        if let Some(path) = unix {
            // A file left by a launcher that was killed is replaced.
            if std::os::unix::net::UnixStream::connect(path).is_err() {
                let _ = std::fs::remove_file(path);
            }
            let unix = std::os::unix::net::UnixListener::bind(path).map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot bind {}: {e}", path.display()))
            })?;
            held.unix_path = Some(path.to_owned());
            held.fds.push(hold(unix.into())?);
        }
        Ok((held, addr))
    }

    /// Passes the sockets to the process `cmd` starts, as systemd does:
    /// descriptors from 3 on, `LISTEN_FDS`, `LISTEN_FDNAMES`, and
    /// `LISTEN_PID`, which must be the service's own process id. That id
    /// is not known before the fork, so a shell sets it and replaces itself
    /// with the service (same process, same id).
    pub(crate) fn command(&self, name: &str, exe: &Path) -> Command {
        use std::os::fd::AsRawFd;
        let mut passing = Command::new("/bin/sh");
        passing
            .arg("-c")
            .arg("LISTEN_PID=$$ exec \"$0\" \"$@\"")
            .arg(exe)
            .env("LISTEN_FDS", self.fds.len().to_string())
            .env("LISTEN_FDNAMES", vec![name; self.fds.len()].join(":"));
        let fds: Vec<i32> = self.fds.iter().map(AsRawFd::as_raw_fd).collect();
        #[allow(unsafe_code)]
        // SAFETY: the closure runs in the child between fork and exec; dup2
        // neither allocates nor takes a lock (`fds` was built before the
        // fork), and the copies it makes are not close-on-exec.
        unsafe {
            passing.pre_exec(move || {
                for (i, fd) in (3..).zip(&fds) {
                    if nix::libc::dup2(*fd, i) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        passing
    }
}
