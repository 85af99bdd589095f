//! What the store knows across images: the list of images, who backs whom, and the walk down a
//! backing chain that names the missing or damaged file when qemu-img fails.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::qemu::says_corrupt;
use super::{
    first_line, validate_image_name, ImageEntry, ImageError, ImageStore, IMAGE_SUFFIX,
    MAX_CHAIN_DEPTH,
};

impl ImageStore {
    /// Every image in the store, sorted by name. An image whose header cannot be read is
    /// listed with its `problem` rather than failing the whole list.
    pub fn list(&self) -> Result<Vec<ImageEntry>, ImageError> {
        let names = self.names()?;
        Ok(names.into_iter().map(|n| self.entry(n)).collect())
    }

    /// File names in the store directory.
    pub(crate) fn read_root(&self) -> Result<Vec<std::ffi::OsString>, ImageError> {
        let dir = fs::read_dir(&self.root)
            .map_err(|e| ImageError::io(format!("cannot list {}", self.root.display()), e))?;
        let mut names = Vec::new();
        for entry in dir {
            let entry = entry
                .map_err(|e| ImageError::io(format!("cannot list {}", self.root.display()), e))?;
            names.push(entry.file_name());
        }
        Ok(names)
    }

    /// Names of the images in the store (valid names of regular `*.qcow2` files), sorted.
    pub(crate) fn names(&self) -> Result<Vec<String>, ImageError> {
        let mut names: Vec<String> = self
            .read_root()?
            .into_iter()
            .filter_map(|f| {
                let f = f.to_str()?;
                let stem = f.strip_suffix(IMAGE_SUFFIX)?;
                validate_image_name(stem).ok()?;
                let is_file = self.root.join(f).symlink_metadata().ok()?.is_file();
                is_file.then(|| stem.to_owned())
            })
            .collect();
        names.sort();
        Ok(names)
    }

    pub(crate) fn entry(&self, name: String) -> ImageEntry {
        let master = self.master_flag(&name);
        match self.qemu.header(&self.image_path(&name), Some("qcow2")) {
            Ok(h) => {
                let backing_file = h.backing().map(|b| self.resolve_backing(&self.root, b));
                ImageEntry {
                    backing: backing_file.as_deref().and_then(|b| self.store_name(b)),
                    backing_file,
                    name,
                    master,
                    problem: None,
                }
            }
            Err(e) => ImageEntry {
                problem: Some(e.to_string()),
                name,
                master,
                backing: None,
                backing_file: None,
            },
        }
    }

    /// Images of the store that have `name` anywhere in their backing chain, sorted.
    pub(crate) fn dependents(&self, name: &str) -> Result<Vec<String>, ImageError> {
        let entries = self.list()?;
        let parent: HashMap<&str, &str> = entries
            .iter()
            .filter_map(|e| Some((e.name.as_str(), e.backing.as_deref()?)))
            .collect();
        let mut by = Vec::new();
        for e in entries.iter().filter(|e| e.name != name) {
            let mut cur = e.name.as_str();
            for _ in 0..MAX_CHAIN_DEPTH {
                match parent.get(cur) {
                    Some(&p) if p == name => {
                        by.push(e.name.clone());
                        break;
                    }
                    Some(&p) => cur = p,
                    None => break,
                }
            }
        }
        Ok(by)
    }

    /// A backing path as recorded, made absolute against the directory of its image.
    pub(crate) fn resolve_backing(&self, dir: &Path, backing: &str) -> PathBuf {
        let p = Path::new(backing);
        if p.is_absolute() {
            p.to_owned()
        } else {
            dir.join(p)
        }
    }

    /// The image name of a file, if it is `ROOT/NAME.qcow2` with a valid name.
    pub(crate) fn store_name(&self, file: &Path) -> Option<String> {
        let parent = file.parent()?;
        let in_root = parent == self.root || fs::canonicalize(parent).ok()? == self.root;
        if !in_root {
            return None;
        }
        let stem = file.file_name()?.to_str()?.strip_suffix(IMAGE_SUFFIX)?;
        validate_image_name(stem).ok().map(str::to_owned)
    }

    /// Turns a qemu-img failure on image `name` into a precise error when the cause is a
    /// missing or unreadable file in its backing chain, by reading the chain one header at a
    /// time; otherwise returns `original`.
    pub(crate) fn diagnose(&self, name: &str, original: ImageError) -> ImageError {
        let mut path = self.image_path(name);
        let mut label = name.to_owned();
        let mut format = Some("qcow2".to_owned());
        for _ in 0..MAX_CHAIN_DEPTH {
            match self.qemu.header(&path, format.as_deref()) {
                Err(ImageError::QemuImg { stderr, .. }) if says_corrupt(&stderr) => {
                    return ImageError::Corrupt {
                        image: label,
                        detail: first_line(&stderr),
                    }
                }
                Err(_) => return original,
                Ok(header) => {
                    let Some(backing) = header.backing() else {
                        return original;
                    };
                    let dir = path.parent().unwrap_or(&self.root).to_owned();
                    let backing = self.resolve_backing(&dir, backing);
                    if backing.symlink_metadata().is_err() {
                        return ImageError::MissingBacking {
                            image: label,
                            backing,
                        };
                    }
                    label = self
                        .store_name(&backing)
                        .unwrap_or_else(|| backing.display().to_string());
                    format = header.backing_filename_format.clone();
                    path = backing;
                }
            }
        }
        original
    }
}
