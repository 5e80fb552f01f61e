//! A Unix stream socket that asks to be woken for writing only once a
//! write has found it full.
//!
//! Linux wakes the writer of a Unix stream socket each time its reader
//! takes data (`unix_write_space`, on every buffer freed), and tokio
//! registers every socket for writability as well as readability, edge
//! triggered. Between two processes that talk over a Unix socket, each
//! request read wakes its sender and each answer read wakes the server, to
//! find nothing to do: a context switch per message, on both sides of
//! every hop (TCP wakes a writer only after it found its buffer full, and
//! HAProxy asks for writability only while it has bytes waiting). A write
//! here is tried at once; only when the socket is full is it registered
//! for writability, and then for the rest of its life (large bodies only).

use std::{
    io::{self, IoSlice, Write as _},
    mem::MaybeUninit,
    net::Shutdown,
    os::fd::AsRawFd,
    path::Path,
    pin::Pin,
    task::{Context, Poll, ready},
};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf, unix::AsyncFd};

type Std = std::os::unix::net::UnixStream;

pub struct QuietUnix {
    /// None only for the moment its registration is replaced.
    fd: Option<AsyncFd<Std>>,
    /// Registered for writability too: a write found the socket full.
    loud: bool,
}

impl QuietUnix {
    /// Takes over a connected stream (deregistered from tokio and
    /// registered again, for reading only).
    pub fn from_tokio(stream: tokio::net::UnixStream) -> io::Result<Self> {
        let stream = stream.into_std()?;
        stream.set_nonblocking(true)?;
        Ok(Self {
            fd: Some(register(stream, Interest::READABLE)?),
            loud: false,
        })
    }

    /// Connects as tokio does (without blocking while the server's backlog
    /// is full), then goes quiet.
    pub async fn connect(path: impl AsRef<Path>) -> io::Result<Self> {
        Self::from_tokio(tokio::net::UnixStream::connect(path).await?)
    }

    fn fd(&self) -> io::Result<&AsyncFd<Std>> {
        self.fd.as_ref().ok_or_else(lost)
    }

    /// Registers for writability too: from now on the socket waits for
    /// room like any other. The task is woken once, so that a read it waits
    /// for is asked for again on the new registration.
    fn become_loud(&mut self, cx: &Context<'_>) -> io::Result<()> {
        let fd = self.fd.take().ok_or_else(lost)?;
        self.fd = Some(register(
            fd.into_inner(),
            Interest::READABLE | Interest::WRITABLE,
        )?);
        self.loud = true;
        cx.waker().wake_by_ref();
        Ok(())
    }

    fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        send: impl Fn(&Std) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        if !self.loud {
            match send(self.fd()?.get_ref()) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => self.become_loud(cx)?,
                sent => return Poll::Ready(sent),
            }
        }
        loop {
            let mut ready = ready!(self.fd()?.poll_write_ready(cx))?;
            if let Ok(sent) = ready.try_io(|fd| send(fd.get_ref())) {
                return Poll::Ready(sent);
            }
        }
    }
}

/// A re-registration that failed took the socket with it.
fn lost() -> io::Error {
    io::Error::other("the socket was lost re-registering it")
}

fn register(stream: Std, interest: Interest) -> io::Result<AsyncFd<Std>> {
    // SAFETY: the stream owns its descriptor, which stays open and the same
    // until the AsyncFd gives the stream back or drops it.
    #[allow(unsafe_code)]
    unsafe {
        AsyncFd::register_with_interest(stream, interest).map_err(|e| e.into_parts().1)
    }
}

/// recv(2) into memory that may not be initialised.
fn recv(fd: &Std, into: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    // SAFETY: recv writes at most `into.len()` bytes at `into`, which is
    // valid for writes of that many, and reads none of them.
    #[allow(unsafe_code)]
    let n = unsafe { nix::libc::recv(fd.as_raw_fd(), into.as_mut_ptr().cast(), into.len(), 0) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

impl AsyncRead for QuietUnix {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let fd = self.get_mut().fd()?;
        loop {
            let mut ready = ready!(fd.poll_read_ready(cx))?;
            // SAFETY: only initialised bytes are declared so below, the
            // ones recv wrote.
            #[allow(unsafe_code)]
            let unfilled = unsafe { buf.unfilled_mut() };
            let room = unfilled.len();
            match ready.try_io(|fd| recv(fd.get_ref(), unfilled)) {
                Ok(Ok(n)) => {
                    // As tokio's own streams do: a read that left room took
                    // all there was, and another would find none (one more
                    // system call). A wake-up that came meanwhile stays.
                    if n > 0 && n < room {
                        ready.clear_ready();
                    }
                    // SAFETY: recv wrote these n bytes.
                    #[allow(unsafe_code)]
                    unsafe {
                        buf.assume_init(n);
                    }
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(err)) => return Poll::Ready(Err(err)),
                Err(_would_block) => {}
            }
        }
    }
}

impl AsyncWrite for QuietUnix {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_send(cx, |mut fd| fd.write(data))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_send(cx, |mut fd| fd.write_vectored(data))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.fd()?.get_ref().shutdown(Shutdown::Write))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn pair() -> (QuietUnix, tokio::net::UnixStream) {
        let (a, b) = tokio::net::UnixStream::pair().expect("a socket pair");
        (QuietUnix::from_tokio(a).expect("quiet"), b)
    }

    #[tokio::test]
    async fn what_is_written_arrives_and_what_arrives_is_read() {
        let (mut quiet, mut other) = pair();
        quiet
            .write_all(b"GET / HTTP/1.1\r\n\r\n")
            .await
            .expect("write");
        let mut got = [0u8; 18];
        other.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"GET / HTTP/1.1\r\n\r\n");
        other
            .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
            .await
            .expect("answer");
        let mut answer = Vec::new();
        while !answer.ends_with(b"\r\n\r\n") {
            let n = quiet.read_buf(&mut answer).await.expect("read");
            assert!(n > 0, "closed early: {answer:?}");
        }
        assert_eq!(answer, b"HTTP/1.1 204 No Content\r\n\r\n");
    }

    /// Far more than a socket's buffer: the writer must wait for room, and
    /// be woken when the reader makes it.
    #[tokio::test]
    async fn a_write_larger_than_the_buffer_waits_for_room_and_completes() {
        let (mut quiet, mut other) = pair();
        let big: Vec<u8> = (0..8 * 1024 * 1024).map(|i: u32| (i % 251) as u8).collect();
        let expected = big.clone();
        let reader = tokio::spawn(async move {
            let mut got = Vec::with_capacity(expected.len());
            while got.len() < expected.len() {
                let n = other.read_buf(&mut got).await.expect("read");
                assert!(n > 0, "closed after {} bytes", got.len());
            }
            assert!(got == expected, "the bytes arrived changed");
            other.write_all(b"done").await.expect("answer");
        });
        quiet.write_all(&big).await.expect("write");
        assert!(quiet.loud, "a full socket registers for writability");
        let mut done = [0u8; 4];
        quiet.read_exact(&mut done).await.expect("the answer after");
        assert_eq!(&done, b"done");
        reader.await.expect("the reader");
    }

    #[tokio::test]
    async fn the_end_of_the_stream_reads_as_zero_and_shutdown_ends_it_for_the_peer() {
        let (mut quiet, mut other) = pair();
        other.write_all(b"last").await.expect("write");
        drop(other);
        let mut got = Vec::new();
        quiet.read_to_end(&mut got).await.expect("read to the end");
        assert_eq!(got, b"last");

        let (mut quiet, mut other) = pair();
        quiet.shutdown().await.expect("shutdown");
        let mut rest = Vec::new();
        other.read_to_end(&mut rest).await.expect("end");
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn a_write_to_a_closed_peer_fails() {
        let (mut quiet, other) = pair();
        drop(other);
        let err = quiet.write_all(b"x").await.expect_err("no peer");
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");
    }
}
