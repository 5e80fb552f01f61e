//! The database pool and the one set of migrations every service applies at start.

use std::time::Duration;

use sqlx::{PgPool, postgres::PgPoolOptions};

use crate::config::{ConfigError, DatabaseArgs};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// The migrations are compiled in, so a packaged binary needs no files beside it.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../../migrations");

/// Connects and brings the schema up to date. Migrations take an advisory lock,
/// so several services starting at once against one database is safe.
pub async fn connect_and_migrate(args: &DatabaseArgs) -> Result<PgPool, DbError> {
    let pool = pool_options(args.db_pool_size)
        .connect(&args.url()?)
        .await
        .map_err(DbError::Connect)?;
    MIGRATOR.run(&pool).await?;
    Ok(pool)
}

/// How every service pools its connections (and `valerix bench` its
/// database-only bound, so both pay the same per statement).
///
/// No test before acquire: sqlx would otherwise ping every connection it
/// hands out, an extra round trip before every statement, which doubled the
/// round trips of an order. A connection that died (the database restarted)
/// fails its next statement instead; sqlx drops it, the request answers 503
/// and is retried, like any other passing database error. (sqlx also pings
/// a connection as it goes back to the pool, so a broken one is closed
/// there and never handed out again.)
///
/// No `statement_timeout`, and no client-side timeout around a write: with
/// a synchronous standby, a COMMIT waits until the standby has the WAL, and
/// PostgreSQL ends a cancelled wait with a WARNING and the transaction
/// committed on the primary alone. A client that took that as success
/// would acknowledge an order that a failover then loses. A write either
/// completes, or fails with its connection (an unknown outcome, see
/// [`is_unavailable`]).
pub fn pool_options(size: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(Duration::from_secs(5))
        .test_before_acquire(false)
}

/// A cheap liveness probe with a deadline, for health checks and the watchdog.
pub async fn ping(pool: &PgPool, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, sqlx::query("SELECT 1").execute(pool)).await,
        Ok(Ok(_))
    )
}

/// A pool that never connects, for rendering OpenAPI specs offline.
pub fn lazy_pool() -> PgPool {
    PgPoolOptions::new().connect_lazy_with(sqlx::postgres::PgConnectOptions::new())
}

/// The watchdog's probe for a service whose life is its database.
pub fn liveness(pool: PgPool) -> crate::server::systemd::Probe {
    std::sync::Arc::new(move || {
        let pool = pool.clone();
        Box::pin(async move { ping(&pool, Duration::from_secs(1)).await })
    })
}

/// Whether the database could not take the statement now (see there):
/// what decides between 503 and 500, in the contract.
pub use crate::contract::problem::is_unavailable;

/// A row referred to a missing one (SQLSTATE 23503), e.g. an unknown product.
pub fn is_foreign_key_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.code().as_deref() == Some("23503"))
}

/// A row would have duplicated a unique key (SQLSTATE 23505), e.g. a repeat.
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_connection_or_an_exhausted_pool_is_the_database_unavailable() {
        let broken = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "server closed");
        assert!(is_unavailable(&sqlx::Error::Io(broken)));
        assert!(is_unavailable(&sqlx::Error::PoolTimedOut));
        assert!(!is_unavailable(&sqlx::Error::RowNotFound));
        assert!(!is_unavailable(&sqlx::Error::ColumnNotFound("id".into())));
    }
}
