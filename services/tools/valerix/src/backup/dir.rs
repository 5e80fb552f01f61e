//! A backup directory: `pgbackrest.conf` (written here), pgBackRest's
//! repository, its log and lock directories, and the server settings that
//! archive WAL into it.

use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use nix::unistd::{Gid, Uid, chown};

use super::{BackupError, RETENTION_FULL, STANZA, io};

/// A backup directory and what it holds.
#[derive(Debug, Clone)]
pub struct BackupDir {
    root: PathBuf,
}

impl BackupDir {
    pub fn new(root: &Path) -> Self {
        // Absolute: the archive command runs in the data directory.
        let root = std::path::absolute(root).unwrap_or_else(|_| root.to_owned());
        Self { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn config(&self) -> PathBuf {
        self.root.join("pgbackrest.conf")
    }

    /// pgBackRest's repository 1.
    pub fn repo(&self) -> PathBuf {
        self.root.join("repo")
    }

    pub(super) fn holds_backups(&self) -> bool {
        self.repo()
            .join("backup")
            .join(STANZA)
            .join("backup.info")
            .is_file()
    }

    /// The directories, owned by `user` (the cluster's, when we are root).
    pub(super) fn create(&self, user: Option<(Uid, Gid)>) -> Result<(), BackupError> {
        for dir in [
            self.root.clone(),
            self.repo(),
            self.root.join("log"),
            self.root.join("lock"),
        ] {
            fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
            if let Some((uid, gid)) = user {
                chown(&dir, Some(uid), Some(gid))?;
            }
        }
        Ok(())
    }

    /// `pgbackrest.conf` for the cluster at `data_dir`, serving on `port`
    /// with its socket in `socket_dir`.
    pub fn write_config(
        &self,
        data_dir: &Path,
        port: u16,
        socket_dir: &Path,
    ) -> Result<(), BackupError> {
        let root = self.root.display();
        let text = format!(
            "# Written by `valerix up --backup-dir`; read by `valerix backup` and `valerix restore`.\n\
             [global]\n\
             repo1-path={root}/repo\n\
             repo1-retention-full={RETENTION_FULL}\n\
             log-path={root}/log\n\
             lock-path={root}/lock\n\
             log-level-console=info\n\
             log-level-file=detail\n\
             start-fast=y\n\
             compress-type=lz4\n\
             \n\
             [{STANZA}]\n\
             pg1-path={data}\n\
             pg1-port={port}\n\
             pg1-socket-path={socket}\n\
             pg1-user=postgres\n",
            data = data_dir.display(),
            socket = socket_dir.display(),
        );
        let path = self.config();
        fs::write(&path, text).map_err(io(format!("writing {}", path.display())))
    }

    /// The cluster's data directory as the configuration names it.
    pub fn configured_data_dir(&self) -> Result<PathBuf, BackupError> {
        let path = self.config();
        let text =
            fs::read_to_string(&path).map_err(|_| BackupError::NoConfig(self.root.clone()))?;
        text.lines()
            .find_map(|l| l.trim().strip_prefix("pg1-path="))
            .map(PathBuf::from)
            .ok_or(BackupError::NoConfig(self.root.clone()))
    }

    /// The server settings that archive every finished WAL segment into
    /// this directory's repository.
    pub fn archive_settings(
        &self,
        pgbackrest: &Path,
        archive_timeout: Duration,
    ) -> Vec<(String, String)> {
        vec![
            ("wal_level".into(), "replica".into()),
            ("archive_mode".into(), "on".into()),
            (
                "archive_command".into(),
                format!(
                    "{} --config={} --stanza={STANZA} archive-push %p",
                    pgbackrest.display(),
                    self.config().display()
                ),
            ),
            (
                "archive_timeout".into(),
                format!("{}s", archive_timeout.as_secs().max(1)),
            ),
        ]
    }
}
