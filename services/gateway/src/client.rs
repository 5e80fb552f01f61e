//! The HTTP/1.1 client that forwards to one service, over TCP or the
//! service's Unix socket, with a pool of kept-alive connections.
//!
//! Its own, not hyper's pooled client: the peer is always one of this
//! project's services, at an address of the gateway's configuration, and
//! the gateway always holds the request body whole and reads the answer
//! whole, so a request is one write and an answer a few reads into the
//! connection's buffer, parsed with hyper's own parser (httparse). hyper's
//! client spent about a third of the gateway's user-space instructions per
//! forwarded order (callgrind, bench/README.md): a pool keyed by origin and
//! raced against a new connection on every checkout, a task per connection
//! woken twice per exchange, the answer handed across a channel, a header
//! map built and then copied into poem's. The answer's framing is read as
//! RFC 9112 §6.3 has it (a `Content-Length`, chunked, or up to the close),
//! though the services always send a length.

use std::{
    collections::VecDeque,
    io::{self, Write as _},
    path::Path,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use bytes::{Buf, Bytes, BytesMut};
use poem::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::Instant,
};
use valerix_runtime::{
    client::{POOL_IDLE, upstream::MAX_IDLE_CONNECTIONS},
    quiet_unix::QuietUnix,
};

/// The most headers and bytes an answer's head may have.
const MAX_HEADERS: usize = 64;
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Headers about one connection, not the message (RFC 9110 §7.6.1): never
/// passed on. The framing (`Content-Length`, `Transfer-Encoding`) is read
/// here and set again by the gateway's server for the body it sends (but
/// for the answer to a HEAD, which has none: its length is passed on).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("connecting to {peer} failed")]
    Connect {
        peer: String,
        #[source]
        source: io::Error,
    },
    #[error("the connection failed before the answer")]
    Io(#[source] io::Error),
    #[error("the connection was closed before the answer")]
    Closed,
    #[error("the answer's head is not valid HTTP/1.1: {0}")]
    Head(String),
    /// The head arrived; the body did not, in full.
    #[error("the answer's body could not be read: {0}")]
    Body(String),
}

impl SendError {
    /// Whether the service gave no answer at all: the request may not have
    /// reached it, and may be sent again (see `proxy::resend`).
    pub fn unanswered(&self) -> bool {
        !matches!(self, Self::Body(_))
    }
}

/// An answer, read whole; its headers without the connection's.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A request as it goes out: the body is sent with its length.
pub struct Request<'a> {
    pub method: &'a Method,
    /// The path and query.
    pub target: &'a str,
    pub headers: &'a [(&'a HeaderName, &'a HeaderValue)],
    pub body: &'a [u8],
}

#[derive(Clone)]
enum Peer {
    Tcp(Arc<str>),
    Unix(Arc<Path>),
}

enum Stream {
    Tcp(TcpStream),
    /// Woken for writing only when a write found it full ([`QuietUnix`]).
    Unix(QuietUnix),
}

impl Stream {
    async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.write_all(bytes).await,
            Self::Unix(s) => s.write_all(bytes).await,
        }
    }

    /// Reads what is there into `buf`; 0 at the end of the stream.
    async fn read_into(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        match self {
            Self::Tcp(s) => s.read_buf(buf).await,
            Self::Unix(s) => s.read_buf(buf).await,
        }
    }
}

struct Conn {
    stream: Stream,
    /// What was read and not yet taken.
    buf: BytesMut,
    idle_since: Instant,
}

/// A client to one service, keeping up to `max_idle` connections alive
/// (0: each request on a new connection), each for at most [`POOL_IDLE`],
/// so that it never reuses one the service is closing at that moment.
#[derive(Clone)]
pub struct Http {
    peer: Peer,
    /// The `Host` header: the service's `host:port`, `localhost` for a
    /// Unix socket.
    host: Arc<str>,
    connect_timeout: Duration,
    /// Oldest first: taken from the back (the warmest), expired ones
    /// dropped from the front, so that none stays open for long unused.
    idle: Arc<Mutex<VecDeque<Conn>>>,
    max_idle: usize,
}

impl Http {
    /// A client of the service at `authority` (`host:port`), or of its
    /// Unix socket when there is one.
    pub fn new(
        authority: &str,
        socket: Option<&Path>,
        connect_timeout: Duration,
        max_idle: usize,
    ) -> Self {
        let (peer, host) = match socket {
            Some(path) => (Peer::Unix(path.into()), "localhost".into()),
            None => (Peer::Tcp(authority.into()), authority.into()),
        };
        Self {
            peer,
            host,
            connect_timeout,
            idle: Arc::default(),
            max_idle,
        }
    }

    /// Keeps the usual number of idle connections.
    pub fn pooled(authority: &str, socket: Option<&Path>, connect_timeout: Duration) -> Self {
        Self::new(authority, socket, connect_timeout, MAX_IDLE_CONNECTIONS)
    }

    /// Sends the request and reads the answer whole. Dropped before the
    /// end, the connection is closed, not kept.
    pub async fn send(&self, req: Request<'_>) -> Result<Answer, SendError> {
        let mut conn = match self.checkout() {
            Some(conn) => conn,
            None => self.connect().await?,
        };
        let written = conn.stream.write_all(&self.head(&req)).await;
        // A service may answer before it has read the whole body (a 413),
        // and close: its answer is read even when the write failed.
        match read_answer(&mut conn, req.method == Method::HEAD).await {
            Ok((answer, reusable)) => {
                if written.is_ok() && reusable && conn.buf.is_empty() {
                    self.checkin(conn);
                }
                Ok(answer)
            }
            Err(err) => Err(written.err().map_or(err, SendError::Io)),
        }
    }

    /// The request's head, and its body after it: one write.
    fn head(&self, req: &Request<'_>) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(256 + req.body.len());
        // Writing into a Vec cannot fail.
        let _ = write!(
            bytes,
            "{} {} HTTP/1.1\r\nhost: {}\r\n",
            req.method, req.target, self.host
        );
        for (name, value) in req.headers {
            if name == &header::CONTENT_LENGTH || name == &header::HOST {
                continue;
            }
            bytes.extend_from_slice(name.as_str().as_bytes());
            bytes.extend_from_slice(b": ");
            bytes.extend_from_slice(value.as_bytes());
            bytes.extend_from_slice(b"\r\n");
        }
        // A body, or a method whose request has one by definition, says how
        // long it is; otherwise nothing, as clients do for a GET.
        if !req.body.is_empty() || matches!(*req.method, Method::POST | Method::PUT | Method::PATCH)
        {
            let _ = write!(bytes, "content-length: {}\r\n", req.body.len());
        }
        bytes.extend_from_slice(b"\r\n");
        bytes.extend_from_slice(req.body);
        bytes
    }

    /// The most recently used live connection, if any.
    fn checkout(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let conn = idle.pop_back()?;
        if conn.idle_since.elapsed() < POOL_IDLE {
            Some(conn)
        } else {
            // The newest expired: all have.
            idle.clear();
            None
        }
    }

    fn checkin(&self, mut conn: Conn) {
        if self.max_idle == 0 {
            return;
        }
        conn.idle_since = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while idle
            .front()
            .is_some_and(|oldest| oldest.idle_since.elapsed() >= POOL_IDLE)
        {
            idle.pop_front();
        }
        if idle.len() < self.max_idle {
            idle.push_back(conn);
        }
    }

    async fn connect(&self) -> Result<Conn, SendError> {
        let connecting = async {
            Ok(match &self.peer {
                Peer::Tcp(addr) => {
                    let s = TcpStream::connect(&**addr).await?;
                    s.set_nodelay(true)?;
                    Stream::Tcp(s)
                }
                Peer::Unix(path) => Stream::Unix(QuietUnix::connect(&**path).await?),
            })
        };
        let stream = match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(stream) => stream,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no connection within {:?}", self.connect_timeout),
            )),
        }
        .map_err(|source| SendError::Connect {
            peer: match &self.peer {
                Peer::Tcp(addr) => addr.to_string(),
                Peer::Unix(path) => path.display().to_string(),
            },
            source,
        })?;
        Ok(Conn {
            stream,
            buf: BytesMut::with_capacity(16 * 1024),
            idle_since: Instant::now(),
        })
    }
}

/// How an answer's body is delimited (RFC 9112 §6.3).
enum Framing {
    Empty,
    Length(usize),
    Chunked,
    UntilClose,
}

/// The head of an answer, parsed.
struct Head {
    status: StatusCode,
    headers: HeaderMap,
    framing: Framing,
    /// Whether the connection may carry another request after this answer.
    keep_alive: bool,
}

/// Reads one answer (past any interim 1xx); whether the connection may be
/// used again.
async fn read_answer(conn: &mut Conn, to_head: bool) -> Result<(Answer, bool), SendError> {
    let head = loop {
        let head = read_head(conn, to_head).await?;
        if !head.status.is_informational() || head.status == StatusCode::SWITCHING_PROTOCOLS {
            break head;
        }
    };
    let body = match head.framing {
        Framing::Empty => Bytes::new(),
        Framing::Length(n) => read_exactly(conn, n).await?,
        Framing::Chunked => read_chunked(conn).await?,
        Framing::UntilClose => {
            while conn
                .stream
                .read_into(&mut conn.buf)
                .await
                .map_err(body_error)?
                > 0
            {}
            conn.buf.split().freeze()
        }
    };
    let reusable = head.keep_alive && !matches!(head.framing, Framing::UntilClose);
    Ok((
        Answer {
            status: head.status,
            headers: head.headers,
            body,
        },
        reusable,
    ))
}

fn body_error(err: io::Error) -> SendError {
    SendError::Body(err.to_string())
}

async fn read_head(conn: &mut Conn, to_head: bool) -> Result<Head, SendError> {
    loop {
        if !conn.buf.is_empty()
            && let Some((len, head)) = parse_head(&conn.buf, to_head)?
        {
            conn.buf.advance(len);
            return Ok(head);
        }
        if conn.buf.len() > MAX_HEAD_BYTES {
            return Err(SendError::Head(format!(
                "longer than {MAX_HEAD_BYTES} bytes"
            )));
        }
        let n = conn
            .stream
            .read_into(&mut conn.buf)
            .await
            .map_err(SendError::Io)?;
        if n == 0 {
            return Err(if conn.buf.is_empty() {
                SendError::Closed
            } else {
                SendError::Head("the connection closed within it".to_owned())
            });
        }
    }
}

/// The head at the start of `buf` and its length, or None while it is not
/// all there.
fn parse_head(buf: &[u8], to_head: bool) -> Result<Option<(usize, Head)>, SendError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut slots);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(err) => return Err(SendError::Head(err.to_string())),
    };
    let status = parsed
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| SendError::Head("no valid status code".to_owned()))?;
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    let (mut length, mut chunked, mut coded, mut close) = (None, false, false, false);
    for h in parsed.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<usize>().ok())
                .ok_or_else(|| SendError::Head("an invalid Content-Length".to_owned()))?;
            if length.is_some_and(|l| l != n) {
                return Err(SendError::Head("two different Content-Lengths".to_owned()));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            coded = true;
            // Only the last coding says how the message ends.
            chunked = h
                .value
                .rsplit(|b| *b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            close |= h
                .value
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        }
        if HOP_BY_HOP.iter().any(|hop| name.eq_ignore_ascii_case(hop))
            || (!to_head && name.eq_ignore_ascii_case("content-length"))
        {
            continue;
        }
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| SendError::Head(format!("the header name {name:?}")))?;
        let value = HeaderValue::from_bytes(h.value)
            .map_err(|_| SendError::Head(format!("the value of {name}")))?;
        headers.append(name, value);
    }
    let framing = if to_head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        Framing::Empty
    } else if coded {
        if chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else {
        match length {
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    };
    // HTTP/1.0 closes unless told otherwise; the services speak 1.1.
    let keep_alive = parsed.version == Some(1) && !close;
    Ok(Some((
        len,
        Head {
            status,
            headers,
            framing,
            keep_alive,
        },
    )))
}

async fn read_exactly(conn: &mut Conn, n: usize) -> Result<Bytes, SendError> {
    while conn.buf.len() < n {
        if conn
            .stream
            .read_into(&mut conn.buf)
            .await
            .map_err(body_error)?
            == 0
        {
            return Err(SendError::Body(format!(
                "the connection closed after {} of {n} bytes",
                conn.buf.len()
            )));
        }
    }
    Ok(conn.buf.split_to(n).freeze())
}

/// A chunked body, decoded; trailers are read and left out.
async fn read_chunked(conn: &mut Conn) -> Result<Bytes, SendError> {
    let mut body = BytesMut::new();
    loop {
        let (consumed, size) = loop {
            match httparse::parse_chunk_size(&conn.buf) {
                Ok(httparse::Status::Complete(found)) => break found,
                Ok(httparse::Status::Partial) => more(conn).await?,
                Err(_) => return Err(SendError::Body("an invalid chunk size".to_owned())),
            }
        };
        conn.buf.advance(consumed);
        let size =
            usize::try_from(size).map_err(|_| SendError::Body("a chunk too large".to_owned()))?;
        if size == 0 {
            // Trailer lines, up to an empty one.
            loop {
                let Some(end) = conn.buf.windows(2).position(|w| w == b"\r\n") else {
                    more(conn).await?;
                    continue;
                };
                conn.buf.advance(end + 2);
                if end == 0 {
                    return Ok(body.freeze());
                }
            }
        }
        let with_crlf = size
            .checked_add(2)
            .ok_or_else(|| SendError::Body("a chunk too large".to_owned()))?;
        while conn.buf.len() < with_crlf {
            more(conn).await?;
        }
        if &conn.buf[size..with_crlf] != b"\r\n" {
            return Err(SendError::Body("a chunk not ended by CRLF".to_owned()));
        }
        body.extend_from_slice(&conn.buf[..size]);
        conn.buf.advance(with_crlf);
    }
}

/// Reads more of the body; the end of the stream is an error there.
async fn more(conn: &mut Conn) -> Result<(), SendError> {
    match conn
        .stream
        .read_into(&mut conn.buf)
        .await
        .map_err(body_error)?
    {
        0 => Err(SendError::Body(
            "the connection closed within it".to_owned(),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Head {
        parse_head(raw.as_bytes(), false)
            .expect("valid")
            .expect("complete")
            .1
    }

    #[test]
    fn an_answers_framing_and_connection_are_read_and_not_passed_on() {
        let h = head(
            "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 12\r\nconnection: keep-alive\r\ndate: x\r\n\r\n",
        );
        assert_eq!(h.status, StatusCode::CREATED);
        assert!(matches!(h.framing, Framing::Length(12)));
        assert!(h.keep_alive);
        assert_eq!(h.headers.len(), 2, "{:?}", h.headers);
        assert!(h.headers.get(header::CONTENT_LENGTH).is_none());
        assert!(h.headers.get(header::CONNECTION).is_none());

        let h = head(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\nconnection: close\r\n\r\n",
        );
        assert!(matches!(h.framing, Framing::Chunked));
        assert!(!h.keep_alive);
        let h = head("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n");
        assert!(matches!(h.framing, Framing::UntilClose));
        let h = head("HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n");
        assert!(matches!(h.framing, Framing::Empty));
        let h = head("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n");
        assert!(!h.keep_alive);
        // The answer to a HEAD: no body, its length kept.
        let (_, h) = parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n", true)
            .expect("valid")
            .expect("complete");
        assert!(matches!(h.framing, Framing::Empty));
        assert_eq!(
            h.headers.get(header::CONTENT_LENGTH).map(|v| v.as_bytes()),
            Some(&b"12"[..])
        );
    }

    #[test]
    fn a_head_not_all_there_waits_and_a_bad_one_is_refused() {
        assert!(
            parse_head(b"HTTP/1.1 200 OK\r\ncontent-le", false)
                .expect("valid so far")
                .is_none()
        );
        for bad in [
            "HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "NOT HTTP\r\n\r\n",
        ] {
            assert!(
                matches!(parse_head(bad.as_bytes(), false), Err(SendError::Head(_))),
                "{bad}"
            );
        }
    }

    /// A service's side of one connection: answers each request it reads
    /// with the next of `answers`, written in pieces.
    async fn serve(listener: tokio::net::UnixListener, answers: Vec<&'static [u8]>) {
        let (mut s, _) = listener.accept().await.expect("a connection");
        for answer in answers {
            let mut req = Vec::new();
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let mut chunk = [0; 1024];
                let n = s.read(&mut chunk).await.expect("the request");
                assert!(n > 0, "the client closed");
                req.extend_from_slice(&chunk[..n]);
            }
            for piece in answer.chunks(7) {
                s.write_all(piece).await.expect("the answer");
                s.flush().await.expect("flushed");
            }
        }
    }

    /// A Unix socket of the test's own: its directory (removed by the
    /// test), its path, its listener.
    fn socket(
        test: &str,
    ) -> (
        std::path::PathBuf,
        std::path::PathBuf,
        tokio::net::UnixListener,
    ) {
        let dir =
            std::env::temp_dir().join(format!("valerix-client-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory");
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path).expect("bound");
        (dir, path, listener)
    }

    #[tokio::test]
    async fn answers_of_every_framing_are_read_whole_on_one_kept_connection() {
        let (dir, path, listener) = socket("framing");
        let server = tokio::spawn(serve(
            listener,
            vec![
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 5\r\nx-a: 1\r\n\r\nhello",
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nx-trailer: y\r\n\r\n",
                b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            ],
        ));
        let http = Http::pooled("localhost", Some(&path), Duration::from_secs(2));
        let headers = [];
        let send = |method, body| {
            http.send(Request {
                method,
                target: "/orders?x=1",
                headers: &headers,
                body,
            })
        };
        let a = send(&Method::POST, b"{}").await.expect("answered");
        assert_eq!(
            (a.status, &a.body[..]),
            (StatusCode::CREATED, &b"hello"[..])
        );
        assert_eq!(a.headers.get("x-a").map(|v| v.as_bytes()), Some(&b"1"[..]));
        let a = send(&Method::GET, b"").await.expect("answered");
        assert_eq!((a.status, &a.body[..]), (StatusCode::OK, &b"abcde"[..]));
        let a = send(&Method::GET, b"").await.expect("answered");
        assert_eq!(a.status, StatusCode::NOT_FOUND);
        assert!(a.body.is_empty());
        // All three on the one connection the server accepted.
        server.await.expect("the server took all three");
        // The server is gone: the kept connection meets its close.
        let err = send(&Method::GET, b"").await.expect_err("no answer");
        assert!(err.unanswered(), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn an_answer_sent_before_the_body_was_read_is_the_answer() {
        let (dir, path, listener) = socket("early");
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("a connection");
            let mut head = [0; 512];
            let _ = s.read(&mut head).await.expect("the head");
            let answer = b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}";
            s.write_all(answer).await.expect("the answer");
            // Closed with most of the body unread.
        });
        let http = Http::pooled("localhost", Some(&path), Duration::from_secs(2));
        let body = vec![b'x'; 8 << 20];
        let answer = http
            .send(Request {
                method: &Method::POST,
                target: "/orders",
                headers: &[],
                body: &body,
            })
            .await
            .expect("the early answer");
        assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
        server.await.expect("served");
        assert!(
            http.checkout().is_none(),
            "a connection told to close is not kept"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn connections_idle_too_long_are_closed_not_kept_or_used() {
        let (dir, path, listener) = socket("idle");
        let http = Http::pooled("localhost", Some(&path), Duration::from_secs(2));
        let conn = || async {
            let conn = http.connect().await.expect("connected");
            let _ = listener.accept().await.expect("accepted");
            conn
        };
        let expire_all = || {
            let long_ago = Instant::now()
                .checked_sub(POOL_IDLE)
                .expect("the clock is past POOL_IDLE");
            for c in http.idle.lock().expect("unpoisoned").iter_mut() {
                c.idle_since = long_ago;
            }
        };
        let (old, new) = (conn().await, conn().await);
        http.checkin(old);
        expire_all();
        // The expired one goes as another comes back.
        http.checkin(new);
        assert_eq!(http.idle.lock().expect("unpoisoned").len(), 1);
        expire_all();
        assert!(http.checkout().is_none(), "an expired connection was taken");
        assert!(http.idle.lock().expect("unpoisoned").is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_request_is_one_head_with_the_bodys_length_and_no_hop_headers_of_its_own() {
        let http = Http::new("127.0.0.1:9", None, Duration::from_secs(1), 0);
        let (json, stale) = (
            HeaderValue::from_static("application/json"),
            HeaderValue::from_static("999"),
        );
        let headers = [
            (&header::CONTENT_TYPE, &json),
            (&header::CONTENT_LENGTH, &stale),
        ];
        let out = http.head(&Request {
            method: &Method::POST,
            target: "/orders",
            headers: &headers,
            body: b"{\"a\":1}",
        });
        assert_eq!(
            String::from_utf8(out).expect("ascii"),
            "POST /orders HTTP/1.1\r\nhost: 127.0.0.1:9\r\ncontent-type: application/json\r\ncontent-length: 7\r\n\r\n{\"a\":1}"
        );
    }
}
