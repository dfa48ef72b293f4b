//! The ready file of `galley run --ready-file`: the addresses of both
//! listeners and the process id, written atomically once they are bound.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Serialize;

use super::Application;

/// What `galley run --ready-file` writes once both listeners are bound: a
/// supervisor or test learns the ports (port 0 picks free ones) without
/// reading logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadyFile {
    pub api: SocketAddr,
    pub admin: SocketAddr,
    pub pid: u32,
}

impl ReadyFile {
    /// The ready file of this process for `app`.
    pub fn of(app: &Application) -> Self {
        Self {
            api: app.api_addr(),
            admin: app.admin_addr(),
            pid: std::process::id(),
        }
    }

    /// Writes the file so that a reader sees either nothing or all of it:
    /// a temporary file in the same directory (same file system, so the
    /// rename is atomic), synced, then renamed over `path`.
    pub fn write_atomically(&self, path: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_vec(self).context("serializing the ready file")?;
        let temporary = temporary_sibling(path)?;
        let written = std::fs::File::create(&temporary)
            .and_then(|mut file| {
                file.write_all(&json)?;
                file.sync_all()
            })
            .and_then(|()| std::fs::rename(&temporary, path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temporary);
            return Err(e).with_context(|| format!("writing the ready file {}", path.display()));
        }
        Ok(())
    }
}

/// `.<name>.<pid>.tmp` beside `path`: hidden, and never shared by two processes.
fn temporary_sibling(path: &Path) -> anyhow::Result<PathBuf> {
    let Some(name) = path.file_name() else {
        bail!("the ready file {} names no file", path.display());
    };
    let mut temporary = std::ffi::OsString::from(".");
    temporary.push(name);
    temporary.push(format!(".{}.tmp", std::process::id()));
    Ok(path.with_file_name(temporary))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready_file() -> ReadyFile {
        ReadyFile {
            api: ([127, 0, 0, 1], 8080).into(),
            admin: ([127, 0, 0, 1], 9090).into(),
            pid: 4242,
        }
    }

    #[test]
    fn the_ready_file_is_json_naming_both_listeners_and_the_pid() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("galley.ready");
        ready_file().write_atomically(&path).expect("write");

        let text = std::fs::read_to_string(&path).expect("read back");
        let json: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(
            json,
            serde_json::json!({"api": "127.0.0.1:8080", "admin": "127.0.0.1:9090", "pid": 4242})
        );
    }

    #[test]
    fn the_ready_file_replaces_an_old_one_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("galley.ready");
        std::fs::write(&path, "stale, from an earlier run").expect("old file");
        ready_file().write_atomically(&path).expect("write");

        let text = std::fs::read_to_string(&path).expect("read back");
        assert!(
            serde_json::from_str::<serde_json::Value>(&text).is_ok(),
            "{text}"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list dir")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("galley.ready")]);
    }

    #[test]
    fn a_ready_file_in_a_missing_directory_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("missing").join("galley.ready");
        let err = ready_file()
            .write_atomically(&path)
            .expect_err("no such directory");
        assert!(format!("{err:#}").contains("galley.ready"), "{err:#}");
    }
}
