//! The server's private directory: its pid file and the socket the listening sockets are handed
//! over through on an upgrade. Created 0700 and owned by the server's user, and not inside a
//! directory where others could rename it away: whoever can reach that socket can receive the
//! listeners (Pingora's default, `/tmp/pingora_upgrade.sock`, lets any local user take the
//! port).

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeDirError {
    #[error("runtime dir {}: cannot create it: {error}", dir.display())]
    Create { dir: PathBuf, error: io::Error },
    #[error("runtime dir {} is inside {}, where any user may rename or replace entries; set `runtime_dir:` to a private place", dir.display(), open.display())]
    InShared { dir: PathBuf, open: PathBuf },
    #[error("runtime dir {} is not private: {why}", dir.display())]
    NotPrivate { dir: PathBuf, why: String },
}

/// The private directory of one server.
#[derive(Debug, Clone)]
pub struct RuntimeDir {
    dir: PathBuf,
    /// Set once a reload handed the listeners over: the directory is the new process's then.
    handed_over: Arc<AtomicBool>,
}

impl RuntimeDir {
    /// Creates `dir` (0700) if needed and checks that it is private: a directory (not a
    /// symlink), owned by this user, with no access for group or others, and with no directory
    /// above it that anyone may write to without the sticky bit (a sticky `/tmp` keeps others
    /// from renaming what is ours).
    pub fn prepare(dir: &Path) -> Result<RuntimeDir, RuntimeDirError> {
        let dir = if dir.is_absolute() {
            dir.to_owned()
        } else {
            std::env::current_dir()
                .map(|cwd| cwd.join(dir))
                .unwrap_or_else(|_| dir.to_owned())
        };
        for ancestor in dir.ancestors().skip(1) {
            if let Ok(meta) = fs::metadata(ancestor) {
                let mode = meta.permissions().mode();
                if mode & 0o002 != 0 && mode & 0o1000 == 0 {
                    return Err(RuntimeDirError::InShared {
                        dir: dir.clone(),
                        open: ancestor.to_owned(),
                    });
                }
            }
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|error| RuntimeDirError::Create {
                dir: dir.clone(),
                error,
            })?;
        let not_private = |why: String| RuntimeDirError::NotPrivate {
            dir: dir.clone(),
            why,
        };
        let meta = fs::symlink_metadata(&dir).map_err(|e| not_private(e.to_string()))?;
        let uid = rustix::process::geteuid().as_raw();
        if !meta.is_dir() {
            return Err(not_private("not a directory".into()));
        }
        if meta.uid() != uid {
            return Err(not_private(format!(
                "owned by uid {}, not by this user ({uid})",
                meta.uid()
            )));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(not_private(format!(
                "mode {:o}; it must be 700",
                meta.mode() & 0o777
            )));
        }
        Ok(RuntimeDir {
            dir,
            handed_over: Arc::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Where a new process waits for the listeners.
    pub fn upgrade_socket(&self) -> PathBuf {
        self.dir.join("upgrade.sock")
    }

    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("spillway.pid")
    }

    /// Records this process as the one serving.
    pub fn write_pid(&self) -> io::Result<()> {
        let tmp = self.dir.join("spillway.pid.new");
        fs::write(&tmp, format!("{}\n", std::process::id()))?;
        fs::rename(tmp, self.pid_file())
    }

    /// On exit: removes the pid file, the socket and the directory, if the pid file still
    /// names this process (after an upgrade it names the new one, which keeps them).
    /// The listeners went to the process that reloaded this one, which is starting in this
    /// directory: nothing here may be removed any more.
    pub fn hand_over(&self) {
        self.handed_over.store(true, Ordering::Release);
    }

    pub fn clean_up(&self) {
        if self.handed_over.load(Ordering::Acquire) {
            return;
        }
        if read_pid(&self.pid_file()).ok() == Some(std::process::id()) {
            let _ = fs::remove_file(self.pid_file());
            let _ = fs::remove_file(self.upgrade_socket());
            let _ = fs::remove_dir(&self.dir);
        }
    }
}

pub fn read_pid(path: &Path) -> io::Result<u32> {
    fs::read_to_string(path)?.trim().parse().map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directory_is_created_private_and_shared_places_are_refused() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("a/b");
        let prepared = RuntimeDir::prepare(&dir).unwrap();
        let mode = fs::metadata(prepared.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(matches!(
            RuntimeDir::prepare(&dir),
            Err(RuntimeDirError::NotPrivate { .. })
        ));
        let shared = home.path().join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(
            RuntimeDir::prepare(&shared.join("mine")),
            Err(RuntimeDirError::InShared { .. })
        ));
        prepared.write_pid().unwrap();
        assert_eq!(read_pid(&prepared.pid_file()).unwrap(), std::process::id());
        prepared.clean_up();
        assert!(!prepared.path().exists());
    }
}
