//! What the pool holds, as the agent reports it to the leader, and setting aside the files the
//! desired state does not explain (left by work that was interrupted, or put there by hand).

use std::fs;
use std::path::PathBuf;
use std::time::SystemTime;

use skiff_cluster::agentproto::ImageFileReport;

use super::files::unique_suffix;
use super::{validate_image_name, ImageError, ImageStore, IMAGE_SUFFIX};

/// The directory of the pool where set-aside files go (its leading dot keeps it out of the
/// pool's namespace: image names cannot start with a dot).
pub const ORPHANS_DIR: &str = ".orphans";

impl ImageStore {
    /// Every image file of the pool (images and servers' disks) with its size and age, sorted.
    pub fn files(&self) -> Result<Vec<ImageFileReport>, ImageError> {
        let now = SystemTime::now();
        let mut files = Vec::new();
        for name in self.names()? {
            let Ok(meta) = self.image_path(&name).symlink_metadata() else {
                continue; // removed meanwhile
            };
            let age = meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .unwrap_or_default();
            files.push(ImageFileReport {
                name,
                bytes: std::os::unix::fs::MetadataExt::blocks(&meta) * 512,
                age_secs: age.as_secs(),
                ..Default::default()
            });
        }
        Ok(files)
    }

    /// Moves `NAME.qcow2` (and its master flag) into `.orphans/`, under a name that never
    /// replaces an earlier one. Returns where it went, or `None` when there was no such file.
    pub fn set_aside(&self, name: &str) -> Result<Option<PathBuf>, ImageError> {
        validate_image_name(name)?;
        let _guard = self.guard();
        let from = self.image_path(name);
        if from.symlink_metadata().is_err() {
            return Ok(None);
        }
        let dir = self.root.join(ORPHANS_DIR);
        fs::create_dir_all(&dir)
            .map_err(|e| ImageError::io(format!("cannot make {}", dir.display()), e))?;
        let to = dir.join(format!("{name}{IMAGE_SUFFIX}.{}", unique_suffix()));
        fs::rename(&from, &to).map_err(|e| {
            ImageError::io(
                format!("cannot move {} to {}", from.display(), to.display()),
                e,
            )
        })?;
        // The flag without its image would mark a future image of that name a master.
        let _ = fs::remove_file(self.sidecar_path(name));
        Ok(Some(to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_listed_and_set_aside_out_of_the_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::new(dir.path().to_path_buf()).unwrap();
        store.create("base", 1 << 20).unwrap();
        store.make_master("base").unwrap();
        store.clone_child("base", "web-disk0").unwrap();
        let files = store.files().unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["base", "web-disk0"]);
        assert!(files.iter().all(|f| f.age_secs < 60 && f.bytes > 0));

        let to = store.set_aside("base").unwrap().expect("moved");
        assert!(to.starts_with(dir.path().join(ORPHANS_DIR)), "{to:?}");
        assert!(to.exists());
        assert!(!store.exists("base").unwrap());
        assert!(!dir.path().join("base.master").exists());
        assert_eq!(store.files().unwrap().len(), 1);
        // Again: nothing to do. A bad name changes nothing.
        assert_eq!(store.set_aside("base").unwrap(), None);
        assert!(store.set_aside("../web-disk0").is_err());
        assert!(store.exists("web-disk0").unwrap());
    }
}
