//! qcow2 images of one storage pool directory, driven through `qemu-img` child processes.
//!
//! An [`ImageStore`] owns a directory holding `NAME.qcow2` files. Every call blocks on qemu-img;
//! async callers wrap them in `spawn_blocking`.
//!
//! Design choices, and why:
//! - **Names, not paths.** Callers pass image names, checked by [`validate_image_name`] before
//!   they become `ROOT/NAME.qcow2`; user text never becomes a path otherwise.
//! - **Masters** are read-only bases of linked clones. A master is marked by a sidecar file
//!   `NAME.master` next to the image (the truth: it survives copies that lose file modes, and
//!   `chmod` by an operator cannot unmark it) and its image file is set to mode 0444 (so that no
//!   unprivileged process, qemu included, opens it for writing; root ignores modes, so the store
//!   itself refuses every write to a master). Only masters can be cloned, so every backing file
//!   in the store is a master and nothing writes under a child's feet.
//! - **Clones** are `qemu-img create -f qcow2 -b MASTER -F qcow2 CHILD`: the backing format is
//!   always given (without it qemu would probe the master's format, a known hole), and the
//!   backing path is the master's *absolute* path (the store root is canonicalised at
//!   [`ImageStore::new`]): qemu, libvirt and its security drivers resolve it the same way from
//!   any working directory, and a pool shared over NFS is mounted at the same path on every node.
//! - **Nothing half-made.** New images are written to `.NAME.qcow2.PID-N.tmp` in the store and
//!   hard-linked into place (which refuses to replace an existing image); the temp file is removed
//!   on every path out, and [`ImageStore::remove_stale_temp_files`] clears those of a process that
//!   died. Store images are always opened with `-f qcow2`, never probed.
//! - **Mutual exclusion.** Operations that check state and then act (clone, remove,
//!   master/unmaster, snapshots, resize, putting a new image in place) hold one lock per store,
//!   shared by clones of the [`ImageStore`] value: use one store value per pool directory. Long
//!   copies (flatten, convert, import, export) run outside the lock and take it only to publish
//!   (or, flattening in place, to rename the finished copy over the image).
//! - **Reading images in use.** `info` and `list` pass `-U` (no image locking) so they work on
//!   the disks of running VMs; `check` and every write do not, so qemu-img refuses them while a
//!   VM holds the image.
//!
//! Code map: `name` (validation), `qemu` (running qemu-img, its JSON), `types` (what callers
//! get back), `chain` (list, dependents, diagnosis of broken chains), `transfer` (flatten in
//! place or into a new image, import, export), `files` (temp files, no-clobber placement,
//! syncing), `orphans` (the file list agents report, setting aside files nothing explains),
//! `error`.

mod chain;
mod error;
mod files;
mod name;
mod orphans;
mod qemu;
mod transfer;
mod types;

use std::ffi::OsStr;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

pub use error::ImageError;
pub use name::{validate_image_name, validate_snapshot_name, MAX_NAME_LEN};
pub use types::{BackingImage, CheckReport, ImageEntry, ImageInfo, Snapshot};

use files::{link_no_clobber, remove_if_present, set_mode, unique_suffix, TempFile};
use qemu::{parse_json, QemuImg, RawCheck, RawInfo};
use types::snapshots_of;

/// Largest image we create or grow to: 64 TiB, a policy limit well under qcow2's own.
pub const MAX_IMAGE_SIZE: u64 = 64 << 40;

/// Longest backing chain followed when looking for a missing or damaged link.
const MAX_CHAIN_DEPTH: usize = 32;

/// Suffix of image files.
const IMAGE_SUFFIX: &str = ".qcow2";
/// Suffix of the sidecar that marks a master.
const MASTER_SUFFIX: &str = ".master";
/// What the master sidecar says to a human who finds it.
const MASTER_NOTE: &str = "Skiff master image: read-only base of linked clones. \
Do not edit or delete; use `unmaster` once no clone uses it.\n";

/// The images of one storage-pool directory.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
    qemu: QemuImg,
    lock: Arc<Mutex<()>>,
}

impl ImageStore {
    /// A store over the existing directory `root` (canonicalised, so image paths and backing
    /// paths are absolute and free of symlinks).
    pub fn new(root: PathBuf) -> Result<Self, ImageError> {
        let canonical = fs::canonicalize(&root).map_err(|e| ImageError::InvalidPath {
            path: root.clone(),
            reason: format!("store directory: {e}"),
        })?;
        if !canonical.is_dir() {
            return Err(ImageError::InvalidPath {
                path: root,
                reason: "store root is not a directory".into(),
            });
        }
        Ok(Self {
            root: canonical,
            qemu: QemuImg::new("qemu-img"),
            lock: Arc::new(Mutex::new(())),
        })
    }

    /// Uses `program` instead of the `qemu-img` found on `PATH`.
    pub fn with_qemu_img(mut self, program: impl Into<PathBuf>) -> Self {
        self.qemu = QemuImg::new(program);
        self
    }

    /// The store directory (absolute).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The absolute path of an existing image, for the hypervisor's disk definitions.
    pub fn path(&self, name: &str) -> Result<PathBuf, ImageError> {
        self.existing(name)
    }

    /// Whether `name` exists in the store.
    pub fn exists(&self, name: &str) -> Result<bool, ImageError> {
        validate_image_name(name)?;
        Ok(self.image_path(name).symlink_metadata().is_ok())
    }

    /// Whether an existing image is a master.
    pub fn is_master(&self, name: &str) -> Result<bool, ImageError> {
        self.existing(name)?;
        Ok(self.master_flag(name))
    }

    /// Creates a blank qcow2 image of `size_bytes` (a multiple of 512, at most
    /// [`MAX_IMAGE_SIZE`]).
    pub fn create(&self, name: &str, size_bytes: u64) -> Result<PathBuf, ImageError> {
        validate_image_name(name)?;
        check_size(size_bytes)?;
        self.refuse_existing(name)?;
        let tmp = self.temp_for(name);
        let size = size_bytes.to_string();
        let args: [&OsStr; 6] = [
            "create".as_ref(),
            "-q".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            tmp.path.as_os_str(),
            size.as_ref(),
        ];
        self.qemu.run(&args)?;
        self.publish(tmp, name)
    }

    /// Makes `child`, a linked clone of the master `master` (constant time: only a header is
    /// written; the child reads unchanged data from the master).
    pub fn clone_child(&self, master: &str, child: &str) -> Result<PathBuf, ImageError> {
        self.clone_child_from(self, master, child)
    }

    /// [`ImageStore::clone_child`] of a master in the store `from` (another pool of the node:
    /// the child's backing file is the master's absolute path).
    pub fn clone_child_from(
        &self,
        from: &ImageStore,
        master: &str,
        child: &str,
    ) -> Result<PathBuf, ImageError> {
        validate_image_name(master)?;
        validate_image_name(child)?;
        let _guard = self.guard();
        let master_path = from.existing(master)?;
        if !from.master_flag(master) {
            return Err(ImageError::NotMaster(master.to_owned()));
        }
        self.refuse_existing(child)?;
        // The master's whole chain must be readable, or the child would be born broken.
        from.info(master)?;
        let tmp = self.temp_for(child);
        let args: [&OsStr; 9] = [
            "create".as_ref(),
            "-q".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            "-b".as_ref(),
            master_path.as_os_str(),
            "-F".as_ref(),
            "qcow2".as_ref(),
            tmp.path.as_os_str(),
        ];
        self.qemu.run(&args).map_err(|e| from.diagnose(master, e))?;
        self.link_into_place(tmp, child)
    }

    /// Marks an image as a master: sidecar `NAME.master`, file mode 0444. Idempotent.
    pub fn make_master(&self, name: &str) -> Result<(), ImageError> {
        let _guard = self.guard();
        let path = self.existing(name)?;
        if !self.master_flag(name) {
            // A damaged image must not become the base of clones.
            self.info(name)?;
            fs::write(self.sidecar_path(name), MASTER_NOTE)
                .map_err(|e| ImageError::io(format!("cannot mark {name:?} as master"), e))?;
        }
        set_mode(&path, 0o444)
    }

    /// Turns a master back into an ordinary writable image; refused while clones use it.
    pub fn unmaster(&self, name: &str) -> Result<(), ImageError> {
        let _guard = self.guard();
        let path = self.existing(name)?;
        if !self.master_flag(name) {
            return Err(ImageError::NotMaster(name.to_owned()));
        }
        let by = self.dependents(name)?;
        if !by.is_empty() {
            return Err(ImageError::InUse {
                name: name.to_owned(),
                by,
            });
        }
        set_mode(&path, 0o644)?;
        remove_if_present(&self.sidecar_path(name))
    }

    /// Deletes an image (and its master mark); refused while any image of the store has it in
    /// its backing chain.
    pub fn remove(&self, name: &str) -> Result<(), ImageError> {
        let _guard = self.guard();
        let path = self.existing(name)?;
        let by = self.dependents(name)?;
        if !by.is_empty() {
            return Err(ImageError::InUse {
                name: name.to_owned(),
                by,
            });
        }
        fs::remove_file(&path).map_err(|e| ImageError::io(format!("cannot remove {name:?}"), e))?;
        remove_if_present(&self.sidecar_path(name))
    }

    /// `qemu-img info --backing-chain` of an image. A missing or unreadable link of the chain
    /// gives [`ImageError::MissingBacking`] or [`ImageError::Corrupt`].
    pub fn info(&self, name: &str) -> Result<ImageInfo, ImageError> {
        let path = self.existing(name)?;
        let args: [&OsStr; 7] = [
            "info".as_ref(),
            "--output=json".as_ref(),
            "--backing-chain".as_ref(),
            "-U".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            path.as_os_str(),
        ];
        let out = self.qemu.output(&args)?;
        if !out.status.success() {
            let err = self.qemu.failure(&args, &out);
            return Err(self.diagnose(name, err));
        }
        let chain: Vec<RawInfo> =
            parse_json(&out.stdout).map_err(|detail| ImageError::BadOutput {
                command: self.qemu.describe(&args),
                detail,
            })?;
        let Some((top, rest)) = chain.split_first() else {
            return Err(ImageError::BadOutput {
                command: self.qemu.describe(&args),
                detail: "empty backing chain".into(),
            });
        };
        Ok(ImageInfo {
            name: name.to_owned(),
            path,
            format: top.format.clone(),
            virtual_size: top.virtual_size,
            actual_size: top.actual_size,
            master: self.master_flag(name),
            marked_corrupt: top.corrupt_bit(),
            backing_chain: rest
                .iter()
                .map(|b| BackingImage {
                    filename: PathBuf::from(&b.filename),
                    format: b.format.clone(),
                    virtual_size: b.virtual_size,
                    actual_size: b.actual_size,
                    image: self.store_name(Path::new(&b.filename)),
                })
                .collect(),
            snapshots: snapshots_of(top),
        })
    }

    /// `qemu-img check`: a damaged image gives a report saying so (qemu-img exits non-zero
    /// then); a file that is not a readable qcow2 at all gives [`ImageError::Corrupt`].
    pub fn check(&self, name: &str) -> Result<CheckReport, ImageError> {
        let path = self.existing(name)?;
        let args: [&OsStr; 5] = [
            "check".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            "--output=json".as_ref(),
            path.as_os_str(),
        ];
        let out = self.qemu.output(&args)?;
        // Exit codes 0 (clean), 1 (check incomplete), 2 (corrupt), 3 (leaks) all print the
        // JSON report when the image could be opened at all.
        match parse_json::<RawCheck>(&out.stdout) {
            Ok(raw) => Ok(raw.into()),
            Err(detail) if out.status.success() => Err(ImageError::BadOutput {
                command: self.qemu.describe(&args),
                detail,
            }),
            Err(_) => {
                let err = self.qemu.failure(&args, &out);
                Err(self.diagnose(name, err))
            }
        }
    }

    /// Takes an internal snapshot `snapshot` of a (non-master) image.
    pub fn snapshot_create(&self, name: &str, snapshot: &str) -> Result<(), ImageError> {
        validate_snapshot_name(snapshot)?;
        let _guard = self.guard();
        let path = self.writable(name)?;
        if self.snapshot_list(name)?.iter().any(|s| s.name == snapshot) {
            return Err(ImageError::SnapshotExists {
                image: name.to_owned(),
                snapshot: snapshot.to_owned(),
            });
        }
        self.snapshot_op(name, "-c", snapshot, &path)
    }

    /// The internal snapshots of an image (from `qemu-img info` JSON; `snapshot -l` prints
    /// only a table).
    pub fn snapshot_list(&self, name: &str) -> Result<Vec<Snapshot>, ImageError> {
        let path = self.existing(name)?;
        let header = self
            .qemu
            .header(&path, Some("qcow2"))
            .map_err(|e| self.diagnose(name, e))?;
        Ok(snapshots_of(&header))
    }

    /// Reverts a (non-master) image to its snapshot `snapshot`; later writes are lost.
    pub fn snapshot_revert(&self, name: &str, snapshot: &str) -> Result<(), ImageError> {
        let _guard = self.guard();
        let path = self.existing_snapshot(name, snapshot)?;
        self.snapshot_op(name, "-a", snapshot, &path)
    }

    /// Deletes the snapshot `snapshot` of a (non-master) image.
    pub fn snapshot_delete(&self, name: &str, snapshot: &str) -> Result<(), ImageError> {
        let _guard = self.guard();
        let path = self.existing_snapshot(name, snapshot)?;
        self.snapshot_op(name, "-d", snapshot, &path)
    }

    /// Sets the virtual size of a (non-master) image. Shrinking loses the data past the new
    /// end, so it is refused unless `shrink` is true.
    pub fn resize(&self, name: &str, new_size_bytes: u64, shrink: bool) -> Result<(), ImageError> {
        check_size(new_size_bytes)?;
        let _guard = self.guard();
        let path = self.writable(name)?;
        let current = self
            .qemu
            .header(&path, Some("qcow2"))
            .map_err(|e| self.diagnose(name, e))?
            .virtual_size;
        if new_size_bytes == current {
            return Ok(());
        }
        if new_size_bytes < current && !shrink {
            return Err(ImageError::InvalidSize {
                size: new_size_bytes,
                reason: format!(
                    "smaller than the current {current} bytes; shrinking drops data and must be asked for"
                ),
            });
        }
        let size = new_size_bytes.to_string();
        let mut args: Vec<&OsStr> = vec![
            "resize".as_ref(),
            "-q".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
        ];
        if new_size_bytes < current {
            args.push("--shrink".as_ref());
        }
        args.push(path.as_os_str());
        args.push(size.as_ref());
        self.qemu.run(&args).map_err(|e| self.diagnose(name, e))?;
        Ok(())
    }

    /// Deletes temp files left in the store by an earlier process that died mid-operation.
    /// Returns how many were removed. Call at start-up, before serving requests.
    pub fn remove_stale_temp_files(&self) -> Result<usize, ImageError> {
        let own = format!(".{}-", std::process::id());
        let mut removed = 0;
        for entry in self.read_root()? {
            let Some(file) = entry.to_str() else { continue };
            if file.starts_with('.') && file.ends_with(".tmp") && !file.contains(&own) {
                let path = self.root.join(file);
                if path.symlink_metadata().is_ok_and(|m| m.is_file()) {
                    remove_if_present(&path)?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    // ---- helpers ----

    fn guard(&self) -> MutexGuard<'_, ()> {
        // A panic elsewhere while holding the lock leaves nothing half-done that the lock
        // protects (each step is a whole file operation), so a poisoned lock is still usable.
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `ROOT/NAME.qcow2` for an already validated name.
    fn image_path(&self, name: &str) -> PathBuf {
        self.root.join(format!("{name}{IMAGE_SUFFIX}"))
    }

    fn sidecar_path(&self, name: &str) -> PathBuf {
        self.root.join(format!("{name}{MASTER_SUFFIX}"))
    }

    fn master_flag(&self, name: &str) -> bool {
        self.sidecar_path(name).symlink_metadata().is_ok()
    }

    /// Validates `name` and returns the path of the existing regular file behind it.
    pub(crate) fn existing(&self, name: &str) -> Result<PathBuf, ImageError> {
        validate_image_name(name)?;
        let path = self.image_path(name);
        match path.symlink_metadata() {
            Ok(m) if m.is_file() => Ok(path),
            Ok(_) => Err(ImageError::InvalidPath {
                path,
                reason: "not a regular file (symlinks are not followed)".into(),
            }),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(ImageError::NotFound(name.into())),
            Err(e) => Err(ImageError::io(format!("cannot stat {}", path.display()), e)),
        }
    }

    /// An existing image that may be written: not a master.
    fn writable(&self, name: &str) -> Result<PathBuf, ImageError> {
        let path = self.existing(name)?;
        if self.master_flag(name) {
            return Err(ImageError::IsMaster(name.to_owned()));
        }
        Ok(path)
    }

    /// A writable image that has the snapshot `snapshot`.
    fn existing_snapshot(&self, name: &str, snapshot: &str) -> Result<PathBuf, ImageError> {
        validate_snapshot_name(snapshot)?;
        let path = self.writable(name)?;
        if !self.snapshot_list(name)?.iter().any(|s| s.name == snapshot) {
            return Err(ImageError::SnapshotNotFound {
                image: name.to_owned(),
                snapshot: snapshot.to_owned(),
            });
        }
        Ok(path)
    }

    fn snapshot_op(
        &self,
        name: &str,
        op: &str,
        snapshot: &str,
        path: &Path,
    ) -> Result<(), ImageError> {
        let args: [&OsStr; 7] = [
            "snapshot".as_ref(),
            "-q".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            op.as_ref(),
            snapshot.as_ref(),
            path.as_os_str(),
        ];
        self.qemu.run(&args).map_err(|e| self.diagnose(name, e))?;
        Ok(())
    }

    pub(crate) fn refuse_existing(&self, name: &str) -> Result<(), ImageError> {
        if self.image_path(name).symlink_metadata().is_ok() {
            return Err(ImageError::AlreadyExists(name.to_owned()));
        }
        Ok(())
    }

    pub(crate) fn temp_for(&self, name: &str) -> TempFile {
        TempFile {
            path: self
                .root
                .join(format!(".{name}{IMAGE_SUFFIX}.{}.tmp", unique_suffix())),
        }
    }

    /// `qemu-img convert -f FORMAT -O qcow2 SOURCE TARGET`.
    pub(crate) fn convert(
        &self,
        format: &str,
        source: &Path,
        target: &Path,
    ) -> Result<(), ImageError> {
        self.convert_as(format, source, target, false)
    }

    /// `qemu-img convert [-c] -f FORMAT -O qcow2 SOURCE TARGET`: `-c` (compress) when `compress`.
    pub(crate) fn convert_as(
        &self,
        format: &str,
        source: &Path,
        target: &Path,
        compress: bool,
    ) -> Result<(), ImageError> {
        let mut args: Vec<&OsStr> = vec!["convert".as_ref(), "-q".as_ref()];
        if compress {
            args.push("-c".as_ref());
        }
        args.extend::<[&OsStr; 6]>([
            "-f".as_ref(),
            format.as_ref(),
            "-O".as_ref(),
            "qcow2".as_ref(),
            source.as_os_str(),
            target.as_os_str(),
        ]);
        self.qemu.run(&args)?;
        Ok(())
    }

    /// `qemu-img check` of a qcow2 file that is not (yet) a store image.
    pub(crate) fn check_file(&self, path: &Path) -> Result<CheckReport, ImageError> {
        let args: [&OsStr; 5] = [
            "check".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            "--output=json".as_ref(),
            path.as_os_str(),
        ];
        let out = self.qemu.output(&args)?;
        let raw: RawCheck = parse_json(&out.stdout).map_err(|_| self.qemu.failure(&args, &out))?;
        Ok(raw.into())
    }

    /// Puts a finished temp file in place as `name`, under the store lock.
    pub(crate) fn publish(&self, tmp: TempFile, name: &str) -> Result<PathBuf, ImageError> {
        let _guard = self.guard();
        self.link_into_place(tmp, name)
    }

    /// Puts a finished temp file in place as `name`; the caller holds the store lock.
    fn link_into_place(&self, tmp: TempFile, name: &str) -> Result<PathBuf, ImageError> {
        let path = self.image_path(name);
        if path.symlink_metadata().is_err() {
            // A master mark left by a removal that died halfway must not mark the new image.
            remove_if_present(&self.sidecar_path(name))?;
        }
        link_no_clobber(&tmp.path, &path).map_err(|e| match e.kind() {
            ErrorKind::AlreadyExists => ImageError::AlreadyExists(name.to_owned()),
            _ => ImageError::io(format!("cannot put {name:?} in place"), e),
        })?;
        drop(tmp);
        Ok(path)
    }
}

/// Refuses sizes qemu-img would reject or that exceed our policy limit.
fn check_size(size: u64) -> Result<(), ImageError> {
    let reason = if size == 0 {
        "must be greater than zero"
    } else if size % 512 != 0 {
        "must be a multiple of 512"
    } else if size > MAX_IMAGE_SIZE {
        "larger than the 64 TiB limit"
    } else {
        return Ok(());
    };
    Err(ImageError::InvalidSize {
        size,
        reason: reason.to_owned(),
    })
}

/// The first line of a qemu-img message, without the `qemu-img: ` prefix, at most 300 bytes.
pub(crate) fn first_line(stderr: &str) -> String {
    let line = stderr.lines().next().unwrap_or("").trim();
    let line = line.strip_prefix("qemu-img: ").unwrap_or(line);
    let mut end = line.len().min(300);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    line[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert!(check_size(1 << 30).is_ok());
        assert!(check_size(512).is_ok());
        assert!(check_size(MAX_IMAGE_SIZE).is_ok());
        for bad in [0, 1, 1000, MAX_IMAGE_SIZE + 512, u64::MAX] {
            assert!(
                matches!(check_size(bad), Err(ImageError::InvalidSize { size, .. }) if size == bad),
                "{bad}"
            );
        }
    }

    #[test]
    fn first_line_strips_prefix_and_cuts() {
        assert_eq!(
            first_line("qemu-img: Could not open 'x': Image is not in qcow2 format\nmore"),
            "Could not open 'x': Image is not in qcow2 format"
        );
        assert_eq!(first_line(""), "");
        assert_eq!(first_line(&"é".repeat(400)).len(), 300);
    }

    #[test]
    fn paths_stay_in_the_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::new(dir.path().to_owned()).expect("store");
        assert!(store.root().is_absolute());
        for bad in ["../x", "a/b", "..", "/etc/passwd", ".x", ""] {
            assert!(
                matches!(store.path(bad), Err(ImageError::InvalidName { .. })),
                "{bad}"
            );
            assert!(matches!(
                store.remove(bad),
                Err(ImageError::InvalidName { .. })
            ));
        }
        assert!(matches!(store.path("nope"), Err(ImageError::NotFound(_))));
        let inside = store.root().join("a.qcow2");
        assert_eq!(store.store_name(&inside).as_deref(), Some("a"));
        assert_eq!(store.store_name(Path::new("/elsewhere/a.qcow2")), None);
        assert_eq!(store.store_name(&store.root().join("a.raw")), None);
    }

    #[test]
    fn store_root_must_exist() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing");
        assert!(matches!(
            ImageStore::new(missing),
            Err(ImageError::InvalidPath { .. })
        ));
        let file = dir.path().join("file");
        fs::write(&file, b"x").expect("write");
        assert!(matches!(
            ImageStore::new(file),
            Err(ImageError::InvalidPath { .. })
        ));
    }

    #[test]
    fn temp_names_are_hidden_and_unique() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::new(dir.path().to_owned()).expect("store");
        let a = store.temp_for("x");
        let b = store.temp_for("x");
        assert_ne!(a.path, b.path);
        let f = a.path.file_name().and_then(OsStr::to_str).expect("name");
        assert!(f.starts_with(".x.qcow2.") && f.ends_with(".tmp"), "{f}");
    }
}
