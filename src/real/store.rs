//! The controller's durable state in a JSON file, replaced atomically on every save.
//!
//! The epoch must never go back: a controller that forgot its epoch would promote a cluster
//! in an epoch already used, and two clusters could accept writes in it. So a state file that
//! cannot be read is an error at startup, never a fresh start, and a save that would lower
//! the epoch on disk is refused.

use crate::controller::{Durable, Orders};
use crate::service::controller::{Stopped, Store, StoreFuture};
use crate::types::Epoch;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Why the state file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file exists but could not be read.
    #[error("state file {file}: cannot read: {source}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds no valid state. Starting afresh could reuse an epoch, so the operator
    /// must look: restore it from a backup, or remove it knowingly.
    #[error("state file {file} is corrupt ({reason}); refusing to start afresh, which could reuse an epoch: restore it, or remove it only if no controller ever ran with it")]
    Corrupt {
        /// The file.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// Another process holds the state file's lock: two controllers driving the same nodes
    /// from one state would each raise epochs of their own.
    #[error("state file {file}: another controller holds its lock ({lock}); stop it first")]
    Locked {
        /// The state file.
        file: String,
        /// The lock file.
        lock: String,
    },
    /// The lock file could not be opened or locked.
    #[error("state file {file}: cannot lock {lock}: {source}")]
    Lock {
        /// The state file.
        file: String,
        /// The lock file.
        lock: String,
        /// Why.
        source: std::io::Error,
    },
    /// The state could not be written.
    #[error("state file {file}: cannot write: {source}")]
    Write {
        /// The file.
        file: String,
        /// Why.
        source: std::io::Error,
    },
}

/// A [`Store`] in one JSON file.
#[derive(Debug)]
pub struct FileStore {
    path: PathBuf,
    /// The state read at open, handed to the controller once by [`Store::load`].
    loaded: Option<Durable>,
    /// The highest epoch on disk (read or written), below which no save goes.
    on_disk: Mutex<Epoch>,
    /// `<state file>.lock`, locked (flock) while this store lives. A lock file, not the state
    /// file itself, since every save replaces the state file with a new one.
    _lock: File,
}

impl FileStore {
    /// Opens the store at `path`: takes its lock, then reads and checks the state if the
    /// file exists. A missing file is a first start; a file that cannot be read or parsed, or
    /// whose lock another process holds, is an error.
    pub fn open(path: impl Into<PathBuf>) -> Result<FileStore, StoreError> {
        let path = path.into();
        check_directory(&path)?;
        let lock = lock(&path)?;
        let loaded = read(&path)?;
        let epoch = loaded.as_ref().map_or(Epoch(0), |d| d.epoch);
        Ok(FileStore {
            path,
            loaded,
            on_disk: Mutex::new(epoch),
            _lock: lock,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `state` atomically: a temporary file in the same directory, synced, renamed over
    /// the old one, and the directory synced, so a crash leaves the old state or the new one,
    /// never a torn file. Refuses (and keeps the disk copy) a state with a lower epoch than the
    /// one on disk.
    pub fn try_save(&self, state: &Durable) -> Result<(), StoreError> {
        let mut on_disk = self.on_disk.lock().expect("store lock");
        if state.epoch < *on_disk {
            tracing::error!(
                file = %self.path.display(),
                refused = %state.epoch,
                kept = %*on_disk,
                "refusing to save a lower epoch than the one on disk"
            );
            return Ok(());
        }
        write_atomically(&self.path, state).map_err(|source| StoreError::Write {
            file: self.path.display().to_string(),
            source,
        })?;
        *on_disk = state.epoch;
        Ok(())
    }
}

impl FileStore {
    /// The state read at open, if the file held one.
    pub fn loaded(&self) -> Option<&Durable> {
        self.loaded.as_ref()
    }
}

impl Store for FileStore {
    fn load(&self) -> StoreFuture<'_, Option<Durable>> {
        Box::pin(std::future::ready(Ok(self.loaded.clone())))
    }

    /// The controller carries out no action after a persist until it returns: a failed write
    /// stops the controller (and the binary exits); a supervisor restarts it from the last
    /// good state.
    fn save<'a>(&'a self, state: &'a Durable) -> StoreFuture<'a, ()> {
        let saved = self.try_save(state).map_err(|e| {
            tracing::error!(%e, "cannot persist the controller state; stopping");
            Stopped::Io(e.to_string())
        });
        Box::pin(std::future::ready(saved))
    }

    fn orders(&self) -> StoreFuture<'_, Orders> {
        let orders = read_orders(&orders_path(&self.path)).map_err(|e| Stopped::Io(e.to_string()));
        Box::pin(std::future::ready(orders))
    }
}

/// Where a controller on `state` finds the operators' orders: `<state file>.orders`,
/// written by `standby promote` on the same machine.
pub fn orders_path(state: &Path) -> PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".orders");
    PathBuf::from(name)
}

/// The orders in `path` (none, if there is no such file).
pub fn read_orders(path: &Path) -> Result<Orders, StoreError> {
    let file = path.display().to_string();
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            file,
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Orders::default()),
        Err(source) => Err(StoreError::Read { file, source }),
    }
}

/// Approves the open promotion-held alarms (only alarm `only`, if given) of the state in
/// `state` (read without its lock: the controller holds it), in `<state>.orders`; returns
/// their ids. `Ok(Err(why))`: nothing to approve.
pub fn approve(state: &Path, only: Option<u64>) -> Result<Result<Vec<u64>, String>, StoreError> {
    let Some(durable) = read(state)? else {
        return Ok(Err(format!("{}: no controller state yet", state.display())));
    };
    let path = orders_path(state);
    let mut orders = read_orders(&path)?;
    let ids = match orders.approve(&durable, only) {
        Ok(ids) => ids,
        Err(why) => return Ok(Err(why)),
    };
    let mut json = serde_json::to_vec_pretty(&orders).map_err(|e| StoreError::Corrupt {
        file: path.display().to_string(),
        reason: e.to_string(),
    })?;
    json.push(b'\n');
    write_file_atomically(&path, &json).map_err(|source| StoreError::Write {
        file: path.display().to_string(),
        source,
    })?;
    Ok(Ok(ids))
}

/// Creates and locks `<path>.lock` (released when the returned file is closed, also when the
/// process dies).
fn lock(path: &Path) -> Result<File, StoreError> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock_path = PathBuf::from(name);
    let error = |source| StoreError::Lock {
        file: path.display().to_string(),
        lock: lock_path.display().to_string(),
        source,
    };
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(error)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
            file: path.display().to_string(),
            lock: lock_path.display().to_string(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(error(source)),
    }
}

/// Fails unless the file's directory exists: the first save comes right at startup, and a
/// missing directory is better reported before anything runs.
fn check_directory(path: &Path) -> Result<(), StoreError> {
    let dir = directory(path);
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(std::io::Error::other(format!(
            "{} is not a directory",
            dir.display()
        ))),
        Err(e) => Err(e),
    }
    .map_err(|source| StoreError::Write {
        file: path.display().to_string(),
        source,
    })
}

/// The directory `path` is in (`.` for a bare file name).
fn directory(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// The state in `path`, `None` if there is no such file.
fn read(path: &Path) -> Result<Option<Durable>, StoreError> {
    let file = path.display().to_string();
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StoreError::Read { file, source }),
    };
    match serde_json::from_slice::<Durable>(&bytes) {
        Ok(durable) => Ok(Some(durable)),
        Err(e) => Err(StoreError::Corrupt {
            file,
            reason: e.to_string(),
        }),
    }
}

fn write_atomically(path: &Path, state: &Durable) -> std::io::Result<()> {
    let mut json = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
    json.push(b'\n');
    write_file_atomically(path, &json)
}

/// Replaces `path` with `bytes`: a temporary file in the same directory, synced, renamed over
/// the old one, and the directory synced, so a crash leaves the old content or the new one,
/// never a torn file. Shared with the per-node state and quarantine files of real mode.
pub(crate) fn write_file_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = directory(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.tmp"));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temp, path)?;
    // The rename is durable only once the directory entry is.
    File::open(dir)?.sync_all()
}
