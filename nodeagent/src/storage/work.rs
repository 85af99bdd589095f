//! Image work the leader sends an agent (`AgentRequest::Image`), carried out in one of the node's
//! pools. Each operation is idempotent — repeated after a timeout, an agent restart or a change of
//! leader, it finds its work done and says so — and leaves nothing half-made when it fails (the
//! [`ImageStore`] builds new images aside and links them into place).

use skiff_cluster::state::ImageOp;

use super::images::{ImageError, ImageStore};

const GIB: u64 = 1 << 30;

/// Carries out `op` on image `name` of `store`; `source` is the store holding the image that
/// `Clone` and `Convert` read (the same one, or another pool of the node). Returns the log lines,
/// or why it failed.
pub fn carry_out(
    store: &ImageStore,
    source: &ImageStore,
    name: &str,
    op: &ImageOp,
) -> Result<Vec<String>, ImageError> {
    let mut log = Vec::new();
    match op {
        ImageOp::Create { size_gib } => {
            if store.exists(name)? {
                same_result(store, name, None, size_gib.saturating_mul(GIB))?;
                log.push(format!("{name} exists already"));
            } else {
                store.create(name, size_gib.saturating_mul(GIB))?;
                log.push(format!("created {name} ({size_gib} GiB)"));
            }
        }
        ImageOp::Clone { from } => {
            if store.exists(name)? {
                let size = source.info(from)?.virtual_size;
                same_result(store, name, Some(&source.path(from)?), size)?;
                log.push(format!("{name} exists already"));
            } else {
                store.clone_child_from(source, from, name)?;
                log.push(format!("cloned {name} from master {from}"));
            }
        }
        ImageOp::Upload => {
            return Err(ImageError::UnsupportedSource {
                path: store.root().join(name),
                reason: "uploads arrive over skiff-image/1, not as agent work".into(),
            })
        }
        ImageOp::MakeMaster => {
            store.make_master(name)?;
            log.push(format!("{name} is a master (read-only)"));
        }
        ImageOp::Unmaster => {
            if store.is_master(name)? {
                store.unmaster(name)?;
            }
            log.push(format!("{name} is writable again"));
        }
        ImageOp::Snapshot { snapshot } => {
            if store
                .snapshot_list(name)?
                .iter()
                .any(|s| &s.name == snapshot)
            {
                log.push(format!("{name} has snapshot {snapshot} already"));
            } else {
                store.snapshot_create(name, snapshot)?;
                log.push(format!("took snapshot {snapshot} of {name}"));
            }
        }
        ImageOp::Revert { snapshot } => {
            store.snapshot_revert(name, snapshot)?;
            log.push(format!("reverted {name} to snapshot {snapshot}"));
        }
        ImageOp::Resize { size_gib } => {
            let bytes = size_gib.saturating_mul(GIB);
            if store.info(name)?.virtual_size >= bytes {
                log.push(format!("{name} has {size_gib} GiB or more already"));
            } else {
                store.resize(name, bytes, false)?;
                log.push(format!("grew {name} to {size_gib} GiB"));
            }
        }
        ImageOp::Flatten => {
            if store.flatten_in_place(name)? {
                log.push(format!(
                    "flattened {name}: its master's data is copied in, it no longer depends on it"
                ));
            } else {
                log.push(format!(
                    "{name} has no master (no backing file): nothing to flatten"
                ));
            }
        }
        ImageOp::Convert { from, compress } => {
            if store.exists(name)? {
                same_result(store, name, None, source.info(from)?.virtual_size)?;
                log.push(format!("{name} exists already"));
            } else {
                store.convert_into_from(source, from, name, *compress)?;
                let how = if *compress { ", compressed" } else { "" };
                log.push(format!(
                    "converted {from} into {name} (standalone qcow2{how})"
                ));
            }
        }
        ImageOp::Remove => {
            if store.exists(name)? {
                store.remove(name)?;
                log.push(format!("deleted {name}"));
            } else {
                log.push(format!("{name} was gone already"));
            }
        }
    }
    Ok(log)
}

/// Checks that the existing image `name` is what a create, clone or conversion would have made
/// — backed by `backing` (or standalone) and of `size` bytes — so a repeated operation finds its
/// own result, and a foreign file of that name (an operator's, a leftover) is refused instead of
/// being taken for it.
fn same_result(
    store: &ImageStore,
    name: &str,
    backing: Option<&std::path::Path>,
    size: u64,
) -> Result<(), ImageError> {
    let info = store.info(name)?;
    let backed_by = info.backing_chain.first().map(|b| b.filename.as_path());
    if backed_by == backing && info.virtual_size == size {
        Ok(())
    } else {
        Err(ImageError::AlreadyExists(name.to_string()))
    }
}

/// Where backup `id`'s copies live: `POOL/.backups/ID/` (the store lists only the pool's top
/// level, so backups never show up as images).
pub fn backup_dir(store: &ImageStore, id: u64) -> std::path::PathBuf {
    store.root().join(".backups").join(id.to_string())
}

/// Carries out `op` for backup `id` of the pool images `files`; returns the log lines.
///
/// - `Create`: each file is copied, flattened (`qemu-img convert -O qcow2`: the copy needs no
///   master), to `NAME.qcow2.tmp` and renamed into place; copies already made are kept.
/// - `Restore`: each copy is converted next to its image and renamed over it (the image is
///   replaced whole or not at all; qemu-img refuses while a guest holds the image).
/// - `Remove`: the backup's directory is deleted.
pub fn backup(
    store: &ImageStore,
    id: u64,
    files: &[String],
    op: skiff_cluster::state::backups::BackupOp,
) -> Result<Vec<String>, String> {
    use skiff_cluster::state::backups::BackupOp;
    let dir = backup_dir(store, id);
    let mut log = Vec::new();
    for f in files {
        super::images::validate_image_name(f).map_err(|e| e.to_string())?;
    }
    match op {
        BackupOp::Create => {
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            for f in files {
                let copy = dir.join(format!("{f}.qcow2"));
                if copy.exists() {
                    log.push(format!("{f}: copied already"));
                    continue;
                }
                let source = store.path(f).map_err(|e| e.to_string())?;
                let tmp = dir.join(format!("{f}.qcow2.tmp"));
                let r = convert(&source, &tmp).and_then(|()| {
                    std::fs::rename(&tmp, &copy).map_err(|e| format!("{}: {e}", copy.display()))
                });
                if let Err(e) = r {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(format!("backing up {f}: {e}"));
                }
                log.push(format!("{f}: copied"));
            }
        }
        BackupOp::Restore => {
            for f in files {
                let copy = dir.join(format!("{f}.qcow2"));
                if !copy.is_file() {
                    return Err(format!("backup {id} has no copy of {f}"));
                }
                let target = store.path(f).map_err(|e| e.to_string())?;
                let tmp = store.root().join(format!(".{f}.restore.tmp"));
                let r = convert(&copy, &tmp).and_then(|()| {
                    std::fs::rename(&tmp, &target).map_err(|e| format!("{}: {e}", target.display()))
                });
                if let Err(e) = r {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(format!("restoring {f}: {e}"));
                }
                log.push(format!("{f}: restored from backup {id}"));
            }
        }
        BackupOp::Remove => match std::fs::remove_dir_all(&dir) {
            Ok(()) => log.push(format!("deleted backup {id}")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                log.push(format!("backup {id} was gone already"))
            }
            Err(e) => return Err(format!("{}: {e}", dir.display())),
        },
    }
    Ok(log)
}

/// `qemu-img convert -f qcow2 -O qcow2 SOURCE TARGET` (the source's format is always given).
fn convert(source: &std::path::Path, target: &std::path::Path) -> Result<(), String> {
    let out = std::process::Command::new("qemu-img")
        .args(["convert", "-q", "-f", "qcow2", "-O", "qcow2"])
        .arg(source)
        .arg(target)
        .output()
        .map_err(|e| format!("running qemu-img: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, ImageStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::new(dir.path().to_path_buf()).expect("store");
        (dir, store)
    }

    fn qemu_img_missing() -> bool {
        std::process::Command::new("qemu-img")
            .arg("--version")
            .output()
            .is_err()
    }

    #[test]
    fn a_foreign_file_of_the_name_is_not_taken_for_the_result() {
        let (_dir, s) = store();
        carry_out(&s, &s, "base", &ImageOp::Create { size_gib: 1 }).expect("create");
        carry_out(&s, &s, "base", &ImageOp::MakeMaster).expect("master");
        carry_out(&s, &s, "other", &ImageOp::Create { size_gib: 1 }).expect("create");
        // Another size, a standalone file where a clone is asked, a clone where a conversion is.
        let refused = |name: &str, op: ImageOp| {
            let r = carry_out(&s, &s, name, &op);
            assert!(
                matches!(r, Err(ImageError::AlreadyExists(_))),
                "{op:?} on {name}: {r:?}"
            );
        };
        refused("other", ImageOp::Create { size_gib: 2 });
        refused(
            "other",
            ImageOp::Clone {
                from: "base".into(),
            },
        );
        let clone = ImageOp::Clone {
            from: "base".into(),
        };
        carry_out(&s, &s, "child", &clone).expect("clone");
        refused(
            "child",
            ImageOp::Convert {
                from: "base".into(),
                compress: false,
            },
        );
        // The same operation again finds its own result.
        assert!(carry_out(&s, &s, "child", &clone).is_ok());
        assert!(carry_out(&s, &s, "other", &ImageOp::Create { size_gib: 1 }).is_ok());
    }

    #[test]
    fn every_operation_is_idempotent() {
        if qemu_img_missing() {
            panic!("qemu-img is missing: install Debian's qemu-utils");
        }
        let (_dir, s) = store();
        let ops = [
            ("base", ImageOp::Create { size_gib: 1 }),
            ("base", ImageOp::MakeMaster),
            (
                "child",
                ImageOp::Clone {
                    from: "base".into(),
                },
            ),
            (
                "child",
                ImageOp::Snapshot {
                    snapshot: "s1".into(),
                },
            ),
            (
                "child",
                ImageOp::Revert {
                    snapshot: "s1".into(),
                },
            ),
            ("child", ImageOp::Resize { size_gib: 2 }),
            ("child", ImageOp::Remove),
            ("base", ImageOp::Unmaster),
            ("base", ImageOp::Remove),
        ];
        for (name, op) in &ops {
            let first = carry_out(&s, &s, name, op);
            assert!(first.is_ok(), "{op:?} on {name}: {first:?}");
            let again = carry_out(&s, &s, name, op);
            // Reverting twice or re-removing are no-ops; everything else says it was done.
            assert!(again.is_ok(), "{op:?} on {name} repeated: {again:?}");
            if let ImageOp::Resize { .. } = op {
                assert_eq!(s.info(name).map(|i| i.virtual_size).ok(), Some(2 * GIB));
            }
        }
        assert!(!s.exists("base").unwrap_or(true));
    }

    /// Runs `op` on `name` twice; returns both logs (the second must say the work was done).
    fn twice(s: &ImageStore, name: &str, op: &ImageOp) -> (Vec<String>, Vec<String>) {
        let first = carry_out(s, s, name, op);
        let again = carry_out(s, s, name, op);
        match (first, again) {
            (Ok(a), Ok(b)) => (a, b),
            other => panic!("{op:?} on {name}: {other:?}"),
        }
    }

    #[test]
    fn flatten_and_convert_are_idempotent() {
        if qemu_img_missing() {
            panic!("qemu-img is missing: install Debian's qemu-utils");
        }
        let (_dir, s) = store();
        carry_out(&s, &s, "base", &ImageOp::Create { size_gib: 1 }).expect("create");
        carry_out(&s, &s, "base", &ImageOp::MakeMaster).expect("master");
        let clone = ImageOp::Clone {
            from: "base".into(),
        };
        carry_out(&s, &s, "child", &clone).expect("clone");

        // Convert a child into a new compressed image, twice: the second finds it made.
        let convert = ImageOp::Convert {
            from: "child".into(),
            compress: true,
        };
        let (first, again) = twice(&s, "copy", &convert);
        assert!(
            first[0].starts_with("converted child into copy"),
            "{first:?}"
        );
        assert_eq!(again, ["copy exists already"]);
        let copy = s.info("copy").expect("info");
        assert!(copy.backing_chain.is_empty());
        assert_eq!(copy.virtual_size, GIB);
        assert!(s.info("child").expect("info").backing_chain.len() == 1);

        // Flatten the child in place, twice: the second finds no backing file.
        let (first, again) = twice(&s, "child", &ImageOp::Flatten);
        assert!(first[0].starts_with("flattened child"), "{first:?}");
        assert!(again[0].contains("nothing to flatten"), "{again:?}");
        assert!(s.info("child").expect("info").backing_chain.is_empty());
        // The master is free: nothing in the store depends on it any more.
        carry_out(&s, &s, "base", &ImageOp::Unmaster).expect("unmaster");
        carry_out(&s, &s, "base", &ImageOp::Remove).expect("remove");
        assert!(s.info("child").is_ok() && s.info("copy").is_ok());

        // A master is not flattened; a convert from a missing image makes nothing.
        carry_out(&s, &s, "copy", &ImageOp::MakeMaster).expect("master");
        assert!(carry_out(&s, &s, "copy", &ImageOp::Flatten).is_err());
        let missing = ImageOp::Convert {
            from: "ghost".into(),
            compress: false,
        };
        assert!(carry_out(&s, &s, "new", &missing).is_err());
        assert!(!s.exists("new").unwrap_or(true));
    }

    #[test]
    fn bad_requests_change_nothing() {
        if qemu_img_missing() {
            panic!("qemu-img is missing: install Debian's qemu-utils");
        }
        let (_dir, s) = store();
        // Cloning something that is not a master, reverting a missing snapshot.
        carry_out(&s, &s, "plain", &ImageOp::Create { size_gib: 1 }).expect("create");
        assert!(carry_out(
            &s,
            &s,
            "c",
            &ImageOp::Clone {
                from: "plain".into()
            }
        )
        .is_err());
        assert!(!s.exists("c").unwrap_or(true));
        let revert = ImageOp::Revert {
            snapshot: "nope".into(),
        };
        assert!(carry_out(&s, &s, "plain", &revert).is_err());
        assert!(carry_out(&s, &s, "../x", &ImageOp::Create { size_gib: 1 }).is_err());
        assert!(s.exists("plain").unwrap_or(false));
    }
}
