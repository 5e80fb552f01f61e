//! Socket activation: listening sockets handed over by whoever started the
//! process (systemd's `.socket` units, `valerix up`), the way systemd
//! passes them (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`; descriptors
//! from 3 on). The socket then outlives the process: while a service
//! restarts, new connections wait in its backlog instead of being refused.
//!
//! A service takes at most one TCP and one Unix socket, told apart by
//! their address family, so the names (`FileDescriptorName=`) are only
//! logged. Without `LISTEN_FDS` (or with a `LISTEN_PID` that is not this
//! process) nothing is inherited and the service binds its own.

use std::{
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    sync::{Mutex, OnceLock},
};

use nix::sys::socket::{
    AddressFamily, SockaddrLike, SockaddrStorage, getsockname, getsockopt, sockopt,
};

#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    #[error("the sockets passed in LISTEN_FDS: {0}")]
    Env(std::io::Error),
    #[error("passed socket {name:?} (fd {fd}): {source}")]
    Socket {
        name: String,
        fd: RawFd,
        source: nix::Error,
    },
    #[error("passed socket {name:?} (fd {fd}) is not listening")]
    NotListening { name: String, fd: RawFd },
    #[error("passed socket {name:?} (fd {fd}) is neither TCP nor Unix ({family:?})")]
    Family {
        name: String,
        fd: RawFd,
        family: Option<AddressFamily>,
    },
    #[error("more than one {kind} socket passed ({first:?} and {second:?}); a service takes one")]
    Twice {
        kind: &'static str,
        first: String,
        second: String,
    },
}

/// The sockets this process was given.
#[derive(Debug, Default)]
pub struct Inherited {
    pub tcp: Option<std::net::TcpListener>,
    pub unix: Option<std::os::unix::net::UnixListener>,
}

fn classify(fd: RawFd, name: String, into: &mut Inherited) -> Result<(), ActivationError> {
    // SAFETY: systemd's protocol hands the descriptors from 3 to
    // 3 + LISTEN_FDS - 1 to this process, and `inherited` reads that list
    // once per process (`TAKEN`), so each is owned here and nowhere else.
    #[allow(unsafe_code)]
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let socket_err = |source| ActivationError::Socket {
        name: name.clone(),
        fd,
        source,
    };
    let addr: SockaddrStorage = getsockname(owned.as_raw_fd()).map_err(socket_err)?;
    if !getsockopt(&owned, sockopt::AcceptConn).map_err(socket_err)? {
        return Err(ActivationError::NotListening { name, fd });
    }
    let twice = |kind, first: String, second| ActivationError::Twice {
        kind,
        first,
        second,
    };
    match addr.family() {
        Some(AddressFamily::Inet | AddressFamily::Inet6) => {
            if let Some(first) = &into.tcp {
                return Err(twice("TCP", format!("{:?}", first.local_addr().ok()), name));
            }
            let listener = std::net::TcpListener::from(owned);
            listener
                .set_nonblocking(true)
                .map_err(ActivationError::Env)?;
            tracing::info!(name, fd, addr = ?listener.local_addr().ok(), "TCP socket passed in");
            into.tcp = Some(listener);
        }
        Some(AddressFamily::Unix) => {
            if let Some(first) = &into.unix {
                return Err(twice(
                    "Unix",
                    format!("{:?}", first.local_addr().ok()),
                    name,
                ));
            }
            let listener = std::os::unix::net::UnixListener::from(owned);
            listener
                .set_nonblocking(true)
                .map_err(ActivationError::Env)?;
            tracing::info!(name, fd, addr = ?listener.local_addr().ok(), "Unix socket passed in");
            into.unix = Some(listener);
        }
        family => return Err(ActivationError::Family { name, fd, family }),
    }
    Ok(())
}

/// The sockets passed to this process, the first time it asks; nothing
/// after that (the descriptors are taken once) or when none were passed.
pub fn inherited() -> Result<Inherited, ActivationError> {
    static TAKEN: OnceLock<()> = OnceLock::new();
    let mut inherited = Inherited::default();
    if TAKEN.set(()).is_err() {
        return Ok(inherited);
    }
    let fds = sd_notify::listen_fds_with_names().map_err(ActivationError::Env)?;
    for (fd, name) in fds {
        classify(fd, name, &mut inherited)?;
    }
    Ok(inherited)
}

/// The Unix socket passed in, kept between the process's start (where
/// [`inherited`] is read, before anything binds) and the server, which
/// serves on it instead of binding `--unix-socket` itself.
static PASSED_UNIX: Mutex<Option<std::os::unix::net::UnixListener>> = Mutex::new(None);

pub(crate) fn keep_unix(listener: std::os::unix::net::UnixListener) {
    *PASSED_UNIX.lock().unwrap_or_else(|p| p.into_inner()) = Some(listener);
}

pub(crate) fn take_unix() -> Option<std::os::unix::net::UnixListener> {
    PASSED_UNIX.lock().unwrap_or_else(|p| p.into_inner()).take()
}
