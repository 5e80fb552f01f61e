//! The configuration files the cluster's programs read: Patroni's per node
//! (JSON, which is YAML), HAProxy's, all owned by the server's account.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use nix::unistd::chown;
use serde_json::json;

use super::{HaCluster, HaOptions, LOOP_WAIT_SECS, Node, RETRY_TIMEOUT_SECS, TTL_SECS};
use crate::{Error, io};

impl HaCluster {
    /// Hands `path` to the server's account (when we are root).
    pub(super) fn own(&self, path: &Path, mode: u32) -> Result<(), Error> {
        if let Some((uid, gid)) = self.user {
            chown(path, Some(uid), Some(gid))?;
        }
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(io(format!("setting permissions of {}", path.display())))
    }

    pub(super) fn write(&self, path: &Path, text: &str) -> Result<(), Error> {
        fs::write(path, text).map_err(io(format!("writing {}", path.display())))?;
        self.own(path, 0o600)
    }

    pub(super) fn write_patroni_config(
        &self,
        node: &Node,
        etcd_client: u16,
        bin: &Path,
        options: &HaOptions,
    ) -> Result<PathBuf, Error> {
        let dir = node.dir(&self.root);
        fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        self.own(&dir, 0o700)?;
        let (api, pg) = (
            format!("127.0.0.1:{}", node.api_port),
            format!("127.0.0.1:{}", node.pg_port),
        );
        // JSON is YAML: Patroni reads it as its configuration file.
        let config = json!({
            "scope": "valerix",
            "name": node.name,
            "log": { "level": "WARNING" },
            "restapi": { "listen": api, "connect_address": api },
            "etcd3": { "hosts": format!("127.0.0.1:{etcd_client}") },
            "bootstrap": {
                "dcs": {
                    "ttl": TTL_SECS,
                    "loop_wait": LOOP_WAIT_SECS,
                    "retry_timeout": RETRY_TIMEOUT_SECS,
                    "synchronous_mode": true,
                    "synchronous_mode_strict": options.strict,
                    "postgresql": {
                        "use_pg_rewind": true,
                        "parameters": {
                            "max_connections": 400,
                            "wal_retrieve_retry_interval": "500ms",
                        },
                    },
                },
                "initdb": [{ "encoding": "UTF8" }, { "locale": "C" }],
            },
            "postgresql": {
                "listen": pg,
                "connect_address": pg,
                "data_dir": dir.join("data"),
                "bin_dir": bin,
                "pgpass": dir.join("pgpass"),
                // Loopback only, like the single throwaway cluster.
                "pg_hba": [
                    "local all all trust",
                    "host all all 127.0.0.1/32 trust",
                    "host replication all 127.0.0.1/32 trust",
                ],
                "authentication": {
                    "superuser": { "username": "postgres", "password": "postgres" },
                    "replication": { "username": "replicator", "password": "replicator" },
                    "rewind": { "username": "rewinder", "password": "rewinder" },
                },
                "parameters": {
                    "unix_socket_directories": dir,
                    // A throwaway cluster on one machine: a crash of the
                    // machine loses every node at once anyway. What the
                    // drill tests is the loss of a node's processes, after
                    // which the operating system still writes what they
                    // left in its cache.
                    "fsync": "off",
                },
            },
        });
        let path = dir.join("patroni.yml");
        let text = serde_json::to_string_pretty(&config)
            .map_err(|e| Error::Ha(format!("rendering {}: {e}", path.display())))?;
        self.write(&path, &text)?;
        Ok(path)
    }

    /// `mode tcp`, and each node checked on its Patroni REST API: only the
    /// primary answers `GET /primary` with 200. A node that stops being
    /// primary has its connections cut (`on-marked-down shutdown-sessions`),
    /// so no client goes on writing to a demoted node.
    pub(super) fn write_haproxy_config(&self) -> Result<PathBuf, Error> {
        let mut text = format!(
            "global\n    maxconn 2000\n\n\
             defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 30m\n    timeout server 30m\n    timeout check 1s\n\n\
             listen primary\n    bind 127.0.0.1:{}\n    option httpchk GET /primary\n    http-check expect status 200\n    \
             default-server inter 500ms fall 2 rise 1 on-marked-down shutdown-sessions\n",
            self.port
        );
        for node in &self.nodes {
            text.push_str(&format!(
                "    server {} 127.0.0.1:{} check port {}\n",
                node.name, node.pg_port, node.api_port
            ));
        }
        let path = self.root.join("haproxy.cfg");
        self.write(&path, &text)?;
        Ok(path)
    }
}
