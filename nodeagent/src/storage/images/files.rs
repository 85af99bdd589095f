//! File-system steps of the image store that must leave nothing half-made: temp files removed
//! on drop, no-clobber placement, syncing before placement, modes.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::ImageError;

/// Gives temp files unique names within this process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A temp file in the store or next to an export, removed on drop unless it was moved away.
pub(crate) struct TempFile {
    pub(crate) path: PathBuf,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        // Already gone after a successful link + unlink, or never created: both fine.
        let _ = fs::remove_file(&self.path);
    }
}

/// `PID-N`, unique among the temp files of all processes on this machine.
pub(crate) fn unique_suffix() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Makes `to` the file `from` is, failing if `to` exists; `from` is removed on success. A hard
/// link is atomic and never replaces; file systems without hard links fall back to
/// check-then-rename (safe within the store lock).
pub(crate) fn link_no_clobber(from: &Path, to: &Path) -> std::io::Result<()> {
    match fs::hard_link(from, to) {
        Ok(()) => {
            // The image is in place; a leftover temp name is only clutter.
            let _ = fs::remove_file(from);
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(e),
        Err(_) => {
            if to.symlink_metadata().is_ok() {
                return Err(std::io::Error::from(ErrorKind::AlreadyExists));
            }
            fs::rename(from, to)
        }
    }
}

/// Flushes a file's data and metadata to disk, so that a crash after it is renamed or linked into
/// place cannot leave the new name pointing at data that never reached the disk.
pub(crate) fn sync_file(path: &Path) -> Result<(), ImageError> {
    fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| ImageError::io(format!("cannot sync {}", path.display()), e))
}

/// Flushes a directory's entries to disk (makes a rename in it durable).
pub(crate) fn sync_dir(dir: &Path) -> Result<(), ImageError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ImageError::io(format!("cannot sync {}", dir.display()), e))
}

pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<(), ImageError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| ImageError::io(format!("cannot chmod {}", path.display()), e))
}

pub(crate) fn remove_if_present(path: &Path) -> Result<(), ImageError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(ImageError::io(
            format!("cannot remove {}", path.display()),
            e,
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_refuses_to_replace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs::write(&a, b"new").expect("write");
        fs::write(&b, b"old").expect("write");
        let err = link_no_clobber(&a, &b).expect_err("must refuse");
        assert_eq!(err.kind(), ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&b).expect("read"), b"old");
        fs::remove_file(&b).expect("rm");
        link_no_clobber(&a, &b).expect("link");
        assert!(!a.exists());
        assert_eq!(fs::read(&b).expect("read"), b"new");
    }
}
