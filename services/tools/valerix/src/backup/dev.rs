//! `valerix up --backup-dir`: the dev stack's throwaway cluster with its WAL
//! archived, new or restored from the backup directory.

use std::{path::PathBuf, time::Duration};

use clap::Args;
use valerix_devdb::{Cluster, Options};

use super::{
    ARCHIVE_TIMEOUT, BackupError,
    dir::BackupDir,
    find_pgbackrest,
    pgbackrest::{BackupType, PgBackRest, RestoreTarget},
};

/// `valerix up`'s backup flags.
#[derive(Debug, Clone, Default, Args)]
pub struct UpBackupArgs {
    /// Archive WAL and keep backups of the throwaway cluster in this
    /// directory (pgBackRest; kept when the stack stops)
    #[arg(long, env = "VALERIX_BACKUP_DIR")]
    pub backup_dir: Option<PathBuf>,
    /// Start from the backups in --backup-dir instead of an empty cluster:
    /// `latest` or a time, as `valerix restore --to`
    #[arg(long, requires = "backup_dir")]
    pub restore: Option<RestoreTarget>,
}

/// A throwaway cluster with its WAL archived into a backup directory.
pub struct BackedUpCluster {
    pub cluster: Cluster,
    pub dir: BackupDir,
    pub pgbackrest: PgBackRest,
    /// Restored from the repository (its databases exist already).
    pub restored: bool,
}

/// Starts a cluster that archives into `dir`: a new one (stanza created;
/// take the first backup once the database exists), or the one in the
/// repository, restored to `restore`.
pub fn start_cluster(
    dir: &BackupDir,
    restore: Option<RestoreTarget>,
    archive_timeout: Duration,
) -> Result<BackedUpCluster, BackupError> {
    let exe = find_pgbackrest()?;
    if restore.is_none() && dir.holds_backups() {
        return Err(BackupError::RepositoryInUse(dir.root().to_owned()));
    }
    let options = Options {
        settings: dir.archive_settings(&exe, archive_timeout),
    };
    let mut cluster = Cluster::empty(&options)?;
    dir.create(cluster.os_user())?;
    // Named before the server runs, so the archive command finds it.
    dir.write_config(&cluster.data_dir(), 0, cluster.dir())?;
    let pgbackrest = PgBackRest::for_dir(dir)?;
    match restore {
        Some(target) => pgbackrest.restore(&cluster.data_dir(), target, None)?,
        None => cluster.init()?,
    }
    cluster.start_on_free_port()?;
    dir.write_config(&cluster.data_dir(), cluster.port(), cluster.dir())?;
    if restore.is_none() {
        pgbackrest.stanza_create()?;
    }
    Ok(BackedUpCluster {
        cluster,
        dir: dir.clone(),
        pgbackrest,
        restored: restore.is_some(),
    })
}

/// Waits until a restored cluster has replayed the WAL and accepts writes.
pub async fn wait_promoted(url: &str, deadline: Duration) -> anyhow::Result<()> {
    use sqlx::Connection;
    let start = std::time::Instant::now();
    loop {
        if let Ok(mut conn) = sqlx::PgConnection::connect(url).await
            && let Ok(false) = sqlx::query_scalar::<_, bool>("SELECT pg_is_in_recovery()")
                .fetch_one(&mut conn)
                .await
        {
            return Ok(());
        }
        anyhow::ensure!(
            start.elapsed() < deadline,
            "the restored cluster still replays WAL after {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What `valerix up --backup-dir` keeps beside its cluster.
pub struct DevBackups {
    pub dir: BackupDir,
    pub pgbackrest: PgBackRest,
    pub restored: Option<RestoreTarget>,
}

/// `valerix up`'s cluster: a plain throwaway one, or one with backups
/// (new, or restored from the backup directory and promoted).
pub async fn start_dev_cluster(
    args: &UpBackupArgs,
) -> anyhow::Result<(Cluster, Option<DevBackups>)> {
    let Some(root) = args.backup_dir.clone() else {
        return Ok((tokio::task::spawn_blocking(Cluster::start).await??, None));
    };
    let dir = BackupDir::new(&root);
    let restore = args.restore;
    let started =
        tokio::task::spawn_blocking(move || start_cluster(&dir, restore, ARCHIVE_TIMEOUT))
            .await??;
    if restore.is_some() {
        wait_promoted(&started.cluster.url("postgres"), Duration::from_secs(300)).await?;
    }
    Ok((
        started.cluster,
        Some(DevBackups {
            dir: started.dir,
            pgbackrest: started.pgbackrest,
            restored: restore,
        }),
    ))
}

impl DevBackups {
    /// The first full backup of a new cluster, once its database exists:
    /// a restore needs a backup to start from.
    pub async fn first_backup(&self) -> anyhow::Result<()> {
        if self.restored.is_none() {
            let pgbackrest = self.pgbackrest.clone();
            tokio::task::spawn_blocking(move || pgbackrest.backup(BackupType::Full)).await??;
        }
        Ok(())
    }

    /// For `valerix up`'s summary.
    pub fn describe(&self) -> String {
        let root = self.dir.root().display();
        let restored = self
            .restored
            .map(|t| format!("restored to {t}; "))
            .unwrap_or_default();
        format!(
            "{restored}pgBackRest repository {root}/repo, WAL archived at least every {}s; \
             `valerix backup --backup-dir {root}` takes one now",
            ARCHIVE_TIMEOUT.as_secs()
        )
    }
}
