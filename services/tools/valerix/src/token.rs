//! The operator token of one `valerix up` run: random, in a file only its
//! owner can read (the gateway's `--operator-token-file`), and handed to the
//! person as a dashboard link carrying it in the URL fragment, as Jupyter
//! does. A fragment never leaves the browser: it is not sent to the server,
//! so it stays out of access logs and `Referer` headers; the page moves it
//! to the tab's own storage and removes it from the address bar.

use std::{
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use anyhow::Context;

/// 32 random bytes, hex: 256 bits, printable, safe in a URL and a header.
fn random_token() -> String {
    rand::random::<[u8; 32]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub struct OperatorToken {
    path: PathBuf,
    token: String,
}

impl OperatorToken {
    /// A new token in `dir/operator-token`, mode 0600 from its creation on
    /// (never readable by others, not even for a moment).
    pub fn create(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join("operator-token");
        let token = random_token();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        writeln!(file, "{token}").with_context(|| format!("writing {}", path.display()))?;
        Ok(Self { path, token })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The gateway's flag for it.
    pub fn gateway_args(&self) -> [String; 2] {
        [
            "--operator-token-file".to_owned(),
            self.path.display().to_string(),
        ]
    }

    /// The dashboard at `gateway_url`, signed in as the operator.
    pub fn dashboard_link(&self, gateway_url: &str) -> String {
        format!(
            "{}/#token={}",
            gateway_url.trim_end_matches('/'),
            self.token
        )
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_token_file_is_private_and_the_link_carries_the_token_in_its_fragment() {
        let dir = std::env::temp_dir().join(format!("valerix-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let token = OperatorToken::create(&dir).expect("token");
        let mode = std::fs::metadata(token.path())
            .expect("file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let written = std::fs::read_to_string(token.path()).expect("read");
        assert_eq!(written.trim().len(), 64);
        assert!(written.trim().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(
            token.dashboard_link("http://127.0.0.1:5000/"),
            format!("http://127.0.0.1:5000/#token={}", written.trim())
        );
        assert!(OperatorToken::create(&dir).is_err(), "never overwrites");
        assert_ne!(random_token(), random_token());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
