//! Why a service stopped other than by being asked to.

/// What a service's `run` returns: its database could not be reached or
/// migrated, its sockets failed, or its token file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[cfg(feature = "db")]
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error("serving failed: {0}")]
    Serve(#[from] std::io::Error),
    #[error(transparent)]
    Token(#[from] crate::auth::TokenError),
}
