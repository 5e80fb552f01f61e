//! Backups with pgBackRest: continuous WAL archiving into a local
//! repository, full/differential backups on demand, restores to the latest
//! archived WAL or a point in time, and the once-a-day copy of the
//! repository to an off-site target ([`offsite`]).
//!
//! - [`dir`]: a backup directory and its configuration
//! - [`pgbackrest`]: pgBackRest's commands, backup types, restore targets
//! - [`dev`]: `valerix up --backup-dir`, the dev cluster with backups
//! - here: `valerix backup` and `valerix restore`
//!
//! Every verb is a thin wrapper: each pgBackRest command is printed
//! before it runs and its own output is shown. A backup directory holds
//!
//! - `pgbackrest.conf`: the stanza `valerix` (data directory, port, socket)
//!   and the repository settings, written by `valerix up --backup-dir`;
//! - `repo/`: pgBackRest's repository 1 (backups and archived WAL);
//! - `log/`, `lock/`: pgBackRest's log and lock files.
//!
//! PostgreSQL runs the archive command as the cluster's OS user, so as root
//! pgBackRest runs as the owner of the backup directory (the cluster's user).

pub mod dev;
pub mod dir;
pub mod offsite;
pub mod pgbackrest;

use std::{path::PathBuf, time::Duration};

use clap::Args;

use dir::BackupDir;
use pgbackrest::{BackupType, PgBackRest, RestoreTarget};

/// The stanza (pgBackRest's name for one cluster) of the dev stack.
pub const STANZA: &str = "valerix";

/// The RPO: PostgreSQL switches to a new WAL segment (and so archives the
/// last one) at least this often while there are writes.
pub const ARCHIVE_TIMEOUT: Duration = Duration::from_secs(60);

/// Full backups kept (with the WAL they need); older ones are expired.
pub const RETENTION_FULL: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "pgbackrest not found on PATH: install it (Debian: apt-get install pgbackrest; Nix: pkgs.pgbackrest)"
    )]
    Missing,
    #[error("{0}: no pgbackrest.conf in it; `valerix up --backup-dir {0}` writes one")]
    NoConfig(PathBuf),
    #[error(
        "{0} already holds backups of another cluster: start with `--restore latest` to bring that one back, or give an empty --backup-dir"
    )]
    RepositoryInUse(PathBuf),
    #[error(
        "{0}: PostgreSQL is running on this data directory (postmaster.pid); stop it before a restore"
    )]
    Running(PathBuf),
    #[error("`{command}` failed ({status})")]
    Failed { command: String, status: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Cluster(#[from] valerix_devdb::Error),
    #[error("{0}")]
    Sys(#[from] nix::Error),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BackupError {
    let what = what.into();
    move |source| BackupError::Io { what, source }
}

/// Where pgBackRest is: PATH only, so what runs is what the user has.
pub fn find_pgbackrest() -> Result<PathBuf, BackupError> {
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join("pgbackrest"))
                .find(|p| p.is_file())
        })
        .ok_or(BackupError::Missing)
}

/// `valerix backup`: one backup now.
#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// The backup directory of `valerix up --backup-dir`
    #[arg(long, env = "VALERIX_BACKUP_DIR")]
    pub backup_dir: PathBuf,
    /// full: everything; diff: what changed since the last full; incr:
    /// since the last backup of any type
    #[arg(long = "type", value_enum, default_value_t = BackupType::Full)]
    pub kind: BackupType,
}

pub fn backup(args: &BackupArgs) -> Result<(), BackupError> {
    let dir = BackupDir::new(&args.backup_dir);
    let pgbackrest = PgBackRest::for_dir(&dir)?;
    pgbackrest.backup(args.kind)?;
    print!("{}", pgbackrest.info()?);
    Ok(())
}

/// `valerix restore`: a stopped cluster back from the repository.
#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// The backup directory of `valerix up --backup-dir`
    #[arg(long, env = "VALERIX_BACKUP_DIR")]
    pub backup_dir: PathBuf,
    /// `latest` (the end of the archived WAL) or a time (RFC 3339, or
    /// "YYYY-MM-DD HH:MM:SS[+TZ]", UTC without a zone)
    #[arg(long)]
    pub to: RestoreTarget,
    /// Restore into this data directory instead of the configured one
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Restore from this repository instead of the configured one: the
    /// off-site copy when the local repository is lost too
    #[arg(long)]
    pub repo: Option<PathBuf>,
}

pub fn restore(args: &RestoreArgs) -> Result<(), BackupError> {
    let dir = BackupDir::new(&args.backup_dir);
    let pgbackrest = PgBackRest::for_dir(&dir)?;
    let data_dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => dir.configured_data_dir()?,
    };
    pgbackrest.restore(&data_dir, args.to, args.repo.as_deref())?;
    println!(
        "Restored {} to {}: start PostgreSQL on it; it replays the archived WAL{} and then accepts writes.",
        data_dir.display(),
        args.to,
        match args.to {
            RestoreTarget::Latest => String::new(),
            RestoreTarget::Time(t) => format!(" up to {t}"),
        }
    );
    Ok(())
}
