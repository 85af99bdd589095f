//! Images in and out of the store as whole copies: flatten (a clone with its chain folded in,
//! in place or into a new image, optionally compressed), import of a qcow2 or raw file, export as
//! a standalone qcow2.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::files::{link_no_clobber, set_mode, sync_dir, sync_file, unique_suffix, TempFile};
use super::qemu::RawInfo;
use super::types::snapshots_of;
use super::{first_line, validate_image_name, ImageError, ImageStore};

impl ImageStore {
    /// Writes `target`, a standalone copy of `name` with its backing chain folded in
    /// (`qemu-img convert -O qcow2`). Internal snapshots are not copied.
    pub fn flatten(&self, name: &str, target: &str) -> Result<PathBuf, ImageError> {
        self.convert_into(name, target, false)
    }

    /// Writes `target`, a standalone qcow2 copy of `name` (a master or not) with its backing
    /// chain folded in, its data compressed when `compress` says so (`qemu-img convert [-c] -O
    /// qcow2`). Internal snapshots are not copied; `name` is only read. The copy is built aside,
    /// synced and linked into place, so `target` appears whole or not at all.
    pub fn convert_into(
        &self,
        name: &str,
        target: &str,
        compress: bool,
    ) -> Result<PathBuf, ImageError> {
        self.convert_into_from(self, name, target, compress)
    }

    /// [`ImageStore::convert_into`] of `name` from the store `from` (another pool of the node)
    /// into `target` of this one.
    pub fn convert_into_from(
        &self,
        from: &ImageStore,
        name: &str,
        target: &str,
        compress: bool,
    ) -> Result<PathBuf, ImageError> {
        validate_image_name(target)?;
        let source = from.existing(name)?;
        self.refuse_existing(target)?;
        let tmp = self.temp_for(target);
        self.convert_as("qcow2", &source, &tmp.path, compress)
            .map_err(|e| from.diagnose(name, e))?;
        sync_file(&tmp.path)?;
        let path = self.publish(tmp, target)?;
        self.sync_root_after_placing();
        Ok(path)
    }

    /// Rewrites the (non-master) image `name` as a standalone image: its backing chain is folded
    /// in and the backing link is gone, so it no longer depends on its master. The new file is
    /// built aside (`qemu-img convert`), synced, and renamed over the image, so a crash leaves
    /// either the old image or the new one, never a half-made one. Answers `false`, changing
    /// nothing, when the image has no backing file (already standalone). Refused for a master
    /// ([`ImageError::IsMaster`]) and for an image with internal snapshots
    /// ([`ImageError::HasSnapshots`]: the copy keeps only the current contents).
    pub fn flatten_in_place(&self, name: &str) -> Result<bool, ImageError> {
        let path = self.writable(name)?;
        if !self.needs_flattening(name, &path)? {
            return Ok(false);
        }
        let tmp = self.temp_for(name);
        self.convert("qcow2", &path, &tmp.path)
            .map_err(|e| self.diagnose(name, e))?;
        let mode = fs::metadata(&path)
            .map_err(|e| ImageError::io(format!("cannot stat {}", path.display()), e))?
            .permissions();
        fs::set_permissions(&tmp.path, mode)
            .map_err(|e| ImageError::io(format!("cannot chmod {}", tmp.path.display()), e))?;
        sync_file(&tmp.path)?;
        let _guard = self.guard();
        // Look again under the lock: the image may have been replaced or marked meanwhile.
        let path = self.writable(name)?;
        if !self.needs_flattening(name, &path)? {
            return Ok(false);
        }
        fs::rename(&tmp.path, &path)
            .map_err(|e| ImageError::io(format!("cannot put flattened {name:?} in place"), e))?;
        drop(tmp);
        self.sync_root_after_placing();
        Ok(true)
    }

    /// Makes the placement of a new file in the store durable, as far as the file system lets
    /// it. Best effort: the image is in place by now, and failing the operation would make the
    /// caller believe it was not done.
    fn sync_root_after_placing(&self) {
        let _ = sync_dir(&self.root);
    }

    /// Whether the image at `path` has a backing file to fold in; refuses one whose internal
    /// snapshots flattening would lose.
    fn needs_flattening(&self, name: &str, path: &Path) -> Result<bool, ImageError> {
        let header = self
            .qemu
            .header(path, Some("qcow2"))
            .map_err(|e| self.diagnose(name, e))?;
        if header.backing().is_none() {
            return Ok(false);
        }
        let snapshots = snapshots_of(&header);
        if !snapshots.is_empty() {
            return Err(ImageError::HasSnapshots {
                image: name.to_owned(),
                snapshots: snapshots.into_iter().map(|s| s.name).collect(),
            });
        }
        Ok(true)
    }

    /// Imports the file `source` as image `name`, after `qemu-img info` found it to be a qcow2
    /// (copied as is) or raw image (converted to qcow2). Sources with a backing file, an
    /// external data file, encryption or qcow2 corruption are refused: they would make the
    /// image read other host files, be unusable, or be damaged.
    pub fn import(&self, name: &str, source: &Path) -> Result<PathBuf, ImageError> {
        validate_image_name(name)?;
        self.refuse_existing(name)?;
        let src = fs::canonicalize(source).map_err(|e| ImageError::InvalidPath {
            path: source.to_owned(),
            reason: e.to_string(),
        })?;
        let meta = fs::metadata(&src).map_err(|e| ImageError::InvalidPath {
            path: src.clone(),
            reason: e.to_string(),
        })?;
        if !meta.is_file() {
            return Err(ImageError::InvalidPath {
                path: src,
                reason: "not a regular file".into(),
            });
        }
        // The only place a format is probed: we do not know what the file is yet.
        let probed = self.qemu.header(&src, None).map_err(|e| match e {
            ImageError::QemuImg { stderr, .. } => ImageError::UnsupportedSource {
                path: src.clone(),
                reason: first_line(&stderr),
            },
            other => other,
        })?;
        refuse_unsafe_source(&src, &probed)?;
        let tmp = self.temp_for(name);
        match probed.format.as_str() {
            "qcow2" => {
                fs::copy(&src, &tmp.path).map_err(|e| {
                    ImageError::io(format!("cannot copy {} into the store", src.display()), e)
                })?;
                // fs::copy copies the source's mode bits, which may be read-only.
                set_mode(&tmp.path, 0o644)?;
            }
            "raw" => self.convert("raw", &src, &tmp.path)?,
            other => {
                return Err(ImageError::UnsupportedSource {
                    path: src,
                    reason: format!("format {other:?} is not accepted (qcow2 or raw)"),
                })
            }
        }
        // Look again at what landed: the source may have changed since it was inspected.
        let landed = self.qemu.header(&tmp.path, Some("qcow2")).map_err(|e| {
            ImageError::UnsupportedSource {
                path: src.clone(),
                reason: format!("copy is not a readable qcow2: {e}"),
            }
        })?;
        refuse_unsafe_source(&src, &landed)?;
        let report = self.check_file(&tmp.path)?;
        if report.is_damaged() {
            return Err(ImageError::UnsupportedSource {
                path: src,
                reason: format!(
                    "qemu-img check found {} corruptions and {} check errors",
                    report.corruptions, report.check_errors
                ),
            });
        }
        self.publish(tmp, name)
    }

    /// Writes image `name` to `dest` (an absolute path outside the store that does not exist
    /// yet) as a standalone qcow2: a clone is exported with its master folded in, so the file
    /// is usable anywhere.
    pub fn export(&self, name: &str, dest: &Path) -> Result<(), ImageError> {
        let source = self.existing(name)?;
        let bad = |reason: &str| ImageError::InvalidPath {
            path: dest.to_owned(),
            reason: reason.to_owned(),
        };
        if !dest.is_absolute() {
            return Err(bad("must be absolute"));
        }
        let (Some(parent), Some(file_name)) = (dest.parent(), dest.file_name()) else {
            return Err(bad("has no file name"));
        };
        let parent = fs::canonicalize(parent).map_err(|e| ImageError::InvalidPath {
            path: dest.to_owned(),
            reason: format!("directory: {e}"),
        })?;
        if parent.starts_with(&self.root) {
            return Err(bad("is inside the image store"));
        }
        let dest = parent.join(file_name);
        if dest.symlink_metadata().is_ok() {
            return Err(bad("already exists"));
        }
        let tmp = TempFile {
            path: parent.join(format!(
                ".{}.{}.export.tmp",
                file_name.to_string_lossy(),
                unique_suffix()
            )),
        };
        self.convert("qcow2", &source, &tmp.path)
            .map_err(|e| self.diagnose(name, e))?;
        link_no_clobber(&tmp.path, &dest).map_err(|e| match e.kind() {
            ErrorKind::AlreadyExists => bad("already exists"),
            _ => ImageError::io(format!("cannot write {}", dest.display()), e),
        })
    }
}

/// Refuses image files that would make qemu read other host files or that cannot be used.
fn refuse_unsafe_source(src: &Path, info: &RawInfo) -> Result<(), ImageError> {
    let refuse = |reason: String| {
        Err(ImageError::UnsupportedSource {
            path: src.to_owned(),
            reason,
        })
    };
    if let Some(b) = info.backing() {
        return refuse(format!("it has a backing file ({b}); flatten it first"));
    }
    if let Some(d) = info.data_file() {
        return refuse(format!("it has an external data file ({d})"));
    }
    let encrypted = info
        .format_specific
        .as_ref()
        .is_some_and(|f| f.data.get("encrypt").is_some());
    if encrypted {
        return refuse("it is encrypted".into());
    }
    if info.corrupt_bit() {
        return refuse("qemu marked it corrupt".into());
    }
    Ok(())
}
