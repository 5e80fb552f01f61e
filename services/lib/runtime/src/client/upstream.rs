//! Where another service is reached: an HTTP base URL
//! (`http://HOST:PORT`), or HTTP over a Unix domain socket
//! (`unix:/run/valerix/inventory.sock`) when both run on one host.
//!
//! The socket form is for services on one host: only users with write
//! permission on the socket file can connect (the NixOS module gives it to
//! the `valerix` user alone), and no TCP stack is on the path.
//!
//! There is no TLS in the services (reqwest is built without it): an
//! `https://` address is refused when the service starts, rather than
//! failing on every call. Across hosts, put the services behind a
//! TLS-terminating proxy or a private network.

use std::{
    fmt,
    path::{Path, PathBuf},
    str::FromStr,
};

use reqwest::Url;

/// Idle connections a client keeps to its upstream. reqwest keeps every
/// one by default; they are few in practice (no more than were in use at
/// once, each closed after its callers' idle timeout), but the bound is
/// stated in the code rather than left to the traffic. The default
/// `--max-in-flight`: a service does not have more calls out to one
/// upstream than requests in, so a steady load never has a connection it
/// will reuse closed.
pub const MAX_IDLE_CONNECTIONS: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("{0:?} is not a URL: {1}")]
    NotUrl(String, String),
    #[error("{0:?}: only http:// and unix:/path/to.sock are supported")]
    Scheme(String),
    #[error(
        "{0:?}: https:// is not supported (the services link no TLS); use http:// on a private network, or unix:/path/to.sock on one host"
    )]
    Tls(String),
    #[error("{0:?}: a unix: address needs an absolute socket path")]
    SocketPath(String),
}

/// A parsed upstream address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// As given (for logs and health documents).
    text: String,
    /// The base of every request URL. For a socket, `http://localhost` with
    /// no path: the socket decides where the request goes, and the host
    /// only fills the `Host` header.
    url: Url,
    socket: Option<PathBuf>,
}

impl FromStr for Upstream {
    type Err = UpstreamError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim_end_matches('/').to_owned();
        if let Some(path) = text.strip_prefix("unix:") {
            let path = Path::new(path);
            if !path.is_absolute() {
                return Err(UpstreamError::SocketPath(text));
            }
            let url = Url::parse("http://localhost")
                .map_err(|e| UpstreamError::NotUrl("http://localhost".to_owned(), e.to_string()))?;
            return Ok(Self {
                socket: Some(path.to_owned()),
                text,
                url,
            });
        }
        let url =
            Url::parse(&text).map_err(|e| UpstreamError::NotUrl(text.clone(), e.to_string()))?;
        if url.scheme() == "https" {
            return Err(UpstreamError::Tls(text));
        }
        if url.scheme() != "http" || url.cannot_be_a_base() {
            return Err(UpstreamError::Scheme(text));
        }
        Ok(Self {
            text,
            url,
            socket: None,
        })
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Upstream {
    /// `http://127.0.0.1:<port>`: a service on this host.
    pub fn local(port: u16) -> Self {
        let text = format!("http://127.0.0.1:{port}");
        let url = Url::from_str(&text).unwrap_or_else(|_| unreachable!("a loopback URL parses"));
        Self {
            text,
            url,
            socket: None,
        }
    }

    /// The base URL requests are built on (`http://localhost` for a socket).
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The Unix domain socket, when it is reached through one.
    pub fn socket(&self) -> Option<&Path> {
        self.socket.as_deref()
    }

    /// A client that reaches this upstream: `builder` as it is for a URL,
    /// connecting to the socket for a `unix:` address, keeping at most
    /// [`MAX_IDLE_CONNECTIONS`] idle connections.
    pub fn client(&self, builder: reqwest::ClientBuilder) -> reqwest::Result<reqwest::Client> {
        self.build(builder.pool_max_idle_per_host(MAX_IDLE_CONNECTIONS))
    }

    /// A client for this address that keeps no connection: each request
    /// goes out on a new one.
    pub fn unpooled_client(
        &self,
        builder: reqwest::ClientBuilder,
    ) -> reqwest::Result<reqwest::Client> {
        self.build(builder.pool_max_idle_per_host(0))
    }

    fn build(&self, builder: reqwest::ClientBuilder) -> reqwest::Result<reqwest::Client> {
        match &self.socket {
            Some(path) => builder.unix_socket(path.as_path()),
            None => builder,
        }
        .build()
    }

    /// The base URL with `path` (which may carry a query) appended to its
    /// own path.
    pub fn join(&self, path: &str) -> Url {
        let mut url = self.url.clone();
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        let prefix = url.path().trim_end_matches('/');
        let full = format!("{prefix}{path}");
        url.set_path(&full);
        url.set_query(query);
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls_and_sockets() {
        let http: Upstream = "http://127.0.0.1:5002/".parse().expect("http");
        assert_eq!(http.socket(), None);
        assert_eq!(http.to_string(), "http://127.0.0.1:5002");
        assert_eq!(
            http.join("/orders/1?x=2").as_str(),
            "http://127.0.0.1:5002/orders/1?x=2"
        );

        let prefixed: Upstream = "http://h:1/api".parse().expect("prefix");
        assert_eq!(prefixed.join("/health").as_str(), "http://h:1/api/health");

        let unix: Upstream = "unix:/run/valerix/inventory.sock".parse().expect("unix");
        assert_eq!(
            unix.socket(),
            Some(Path::new("/run/valerix/inventory.sock"))
        );
        assert_eq!(
            unix.join("/inventory").as_str(),
            "http://localhost/inventory"
        );
        assert_eq!(unix.to_string(), "unix:/run/valerix/inventory.sock");
    }

    #[test]
    fn rejects_what_it_cannot_reach() {
        assert!(matches!(
            "unix:relative.sock".parse::<Upstream>(),
            Err(UpstreamError::SocketPath(_))
        ));
        assert!(matches!(
            "https://inventory.example/".parse::<Upstream>(),
            Err(UpstreamError::Tls(_))
        ));
        assert!(matches!(
            "ftp://host/".parse::<Upstream>(),
            Err(UpstreamError::Scheme(_))
        ));
        assert!(matches!(
            "127.0.0.1:5002".parse::<Upstream>(),
            Err(UpstreamError::Scheme(_) | UpstreamError::NotUrl(..))
        ));
        assert!(matches!(
            "not a url".parse::<Upstream>(),
            Err(UpstreamError::NotUrl(..))
        ));
    }
}
