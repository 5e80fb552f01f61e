//! Configuration pieces every service flattens into its own clap `Config`.

use std::path::PathBuf;

use clap::{Args, Parser};

use crate::auth::{Token, TokenError};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no database configured: set DATABASE_URL or DATABASE_URL_FILE")]
    MissingDatabaseUrl,
    #[error("cannot read the database URL from {path}: {source}")]
    DatabaseUrlFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A configuration from `args` and the `#[arg]` defaults alone, never the
/// environment: what tests and launchers build in-process. The defaults stay
/// written once, in the attributes that `--help` shows.
pub fn from_args<C: Parser>(args: &[&str]) -> Result<C, clap::Error> {
    let command = C::command().mut_args(|arg| arg.env(None));
    let name = command.get_name().to_owned();
    let matches =
        command.try_get_matches_from(std::iter::once(name.as_str()).chain(args.iter().copied()))?;
    C::from_arg_matches(&matches)
}

/// The `#[arg]` defaults of one group of settings.
pub fn defaults<A: Args>() -> A {
    #[derive(Parser)]
    struct Only<A: Args> {
        #[command(flatten)]
        settings: A,
    }
    from_args::<Only<A>>(&[])
        .map(|only| only.settings)
        .expect("the #[arg] defaults parse")
}

/// Where the database is. The file form exists for systemd `LoadCredential`,
/// so the password never appears in the unit's environment.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL, e.g. postgres://user:pass@127.0.0.1/valerix
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// A file holding the PostgreSQL URL (takes effect when --database-url is not given)
    #[arg(long, env = "DATABASE_URL_FILE")]
    pub database_url_file: Option<PathBuf>,

    /// Maximum connections in this service's pool
    #[arg(long, env = "VALERIX_DB_POOL_SIZE", default_value_t = DEFAULT_POOL_SIZE)]
    pub db_pool_size: u32,
}

/// Sixteen connections, whatever the CPUs. PostgreSQL as production runs it
/// flushes every commit to disk, so a connection spends much of each
/// statement waiting for its flush, and the commits that wait at once share
/// one flush: more connections than cores keep the disk and the CPUs busy
/// (bench/README.md: 11–35% more orders/s than 4 per service on 2 CPUs).
/// Three services stay at 48 of PostgreSQL's default 100 connections.
pub const DEFAULT_POOL_SIZE: u32 = 16;

impl DatabaseArgs {
    pub fn from_url(url: impl Into<String>) -> Self {
        Self {
            database_url: Some(url.into()),
            database_url_file: None,
            db_pool_size: DEFAULT_POOL_SIZE,
        }
    }

    pub fn url(&self) -> Result<String, ConfigError> {
        if let Some(url) = &self.database_url {
            return Ok(url.clone());
        }
        let path = self
            .database_url_file
            .as_ref()
            .ok_or(ConfigError::MissingDatabaseUrl)?;
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_owned())
            .map_err(|source| ConfigError::DatabaseUrlFile {
                path: path.clone(),
                source,
            })
    }
}

/// HTTP edge settings shared by every service.
#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    /// Largest accepted request body in bytes (bigger bodies get 413)
    #[arg(long, env = "VALERIX_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,

    /// Seconds to let in-flight requests finish after SIGTERM
    #[arg(long, env = "VALERIX_DRAIN_SECS", default_value_t = 10)]
    pub drain_secs: u64,

    /// Accept fault injection at /gremlin (never in production)
    #[arg(long, env = "VALERIX_GREMLINS")]
    pub gremlins: bool,

    /// Requests handled at once; one more waits up to --shed-after-ms for a
    /// slot, then gets 503 + Retry-After (0: no limit)
    // 256: a few hundred ms of work at the order service's peak on two
    // cores (bench/README.md), so the queue stays short; yet a burst of 200
    // clients (tests/api/concurrency.rs) or a 50/s load held up by a
    // downstream timing out before its breaker opens is not shed.
    #[arg(long, env = "VALERIX_MAX_IN_FLIGHT", default_value_t = 256)]
    pub max_in_flight: usize,

    /// How long a request past --max-in-flight may wait before it is shed
    #[arg(long, env = "VALERIX_SHED_AFTER_MS", default_value_t = 50)]
    pub shed_after_ms: u64,

    /// Connections open at once; past it new ones wait in the kernel's
    /// backlog (lowered at start to fit the file-descriptor limit)
    #[arg(long, env = "VALERIX_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,

    /// A request whose headers have not all arrived this long after it
    /// began, or an idle keep-alive connection, is closed (milliseconds)
    #[arg(long, env = "VALERIX_HEADER_TIMEOUT_MS", default_value_t = 5000)]
    pub header_timeout_ms: u64,

    /// Longest a request may take from the end of its headers to its
    /// answer, body upload included (milliseconds): past it a body still
    /// arriving is answered 408 and a handler still working 503; an answer
    /// the client has not read --header-timeout-ms later is cut off
    #[arg(long, env = "VALERIX_REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    pub request_timeout_ms: u64,

    /// Largest request head (request line and headers) in bytes; larger: 431
    #[arg(long, env = "VALERIX_MAX_HEADER_BYTES", default_value_t = 16 * 1024)]
    pub max_header_bytes: usize,

    /// Most request headers; more: 431
    #[arg(long, env = "VALERIX_MAX_HEADERS", default_value_t = 64)]
    pub max_headers: usize,

    /// Also serve on this Unix domain socket, for callers on the same host
    /// (they use the address unix:PATH); the TCP address stays as it is
    #[arg(long, env = "VALERIX_UNIX_SOCKET")]
    pub unix_socket: Option<PathBuf>,

    /// A file holding the token the services share: when set, a service
    /// answers its internal and operator operations only to callers that
    /// send it (Authorization: Bearer), and sends it on its own calls
    #[arg(long, env = "VALERIX_SERVICE_TOKEN_FILE")]
    pub service_token_file: Option<PathBuf>,
}

impl HttpArgs {
    pub fn shed_after(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.shed_after_ms)
    }

    /// The service token, read once at start.
    pub fn service_token(&self) -> Result<Option<Token>, TokenError> {
        Token::read(self.service_token_file.as_deref())
    }
}

impl Default for HttpArgs {
    fn default() -> Self {
        defaults()
    }
}
