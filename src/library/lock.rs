//! Locks that let several processes work on one library directory at once (a user who starts
//! a build twice, a Slurm task requeued while its old run still lives): one lock held around
//! every read-modify-write of the manifest, and one per work item held while it trains. Both
//! are OS file locks (`flock`), which the kernel drops when their process ends, even by
//! SIGKILL, so a killed build never blocks the next. Lock files stay in `locks/` (deleting
//! one while another process waits on it would let two processes in). Knows paths only.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use super::LibraryError;

pub(crate) const LOCKS: &str = "locks";
const MANIFEST_LOCK: &str = "manifest.lock";

/// A held lock; dropping it releases it.
#[derive(Debug)]
pub struct Held {
    _file: File,
}

fn lock_path(dir: &Path, name: &str) -> Result<PathBuf, LibraryError> {
    let folder = dir.join(LOCKS);
    std::fs::create_dir_all(&folder).map_err(LibraryError::io(&folder))?;
    Ok(folder.join(name))
}

fn open(path: &Path) -> Result<File, LibraryError> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(LibraryError::io(path))
}

/// Waits for and takes the lock of the file at `path` (created if missing).
fn wait_for(path: &Path) -> Result<Held, LibraryError> {
    let file = open(path)?;
    file.lock().map_err(LibraryError::io(path))?;
    Ok(Held { _file: file })
}

/// Waits for and takes the lock guarding the manifest of the library in `dir`.
pub fn manifest(dir: &Path) -> Result<Held, LibraryError> {
    named(dir, MANIFEST_LOCK)
}

/// Waits for and takes another lock of the library in `dir` (`locks/<name>`), for work on the
/// library that must not run twice at once (a stage's cluster submission).
pub fn named(dir: &Path, name: &str) -> Result<Held, LibraryError> {
    wait_for(&lock_path(dir, name)?)
}

/// The lock file of the item whose weights are `file_name`.
fn item_path(dir: &Path, file_name: &str) -> Result<PathBuf, LibraryError> {
    lock_path(dir, &format!("{file_name}.lock"))
}

/// Takes an item's lock if no other process holds it.
pub fn try_item(dir: &Path, file_name: &str) -> Result<Option<Held>, LibraryError> {
    let path = item_path(dir, file_name)?;
    let file = open(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(Held { _file: file })),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(cause)) => Err(LibraryError::Io { path, cause }),
    }
}

/// Waits until the process holding an item's lock lets go, then takes it.
pub fn item(dir: &Path, file_name: &str) -> Result<Held, LibraryError> {
    wait_for(&item_path(dir, file_name)?)
}
