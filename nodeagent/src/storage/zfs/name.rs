//! Dataset and snapshot names, checked against ZFS's naming rules before any of them reaches
//! libzfs_core or a `zfs` command line.
//!
//! A dataset name is `POOL[/COMPONENT]*`: components of `[A-Za-z0-9_.:-]`, none empty, `.` or
//! `..`; the pool component starts with a letter (so no name ever starts with `-` or `/` and
//! cannot be read as an option or a path). A snapshot name is `DATASET@SNAP`, `SNAP` from the same
//! characters. Whole names are at most 255 bytes (ZFS's `ZFS_MAX_DATASET_NAME_LEN` less its NUL).
//! ZFS itself allows a few more characters (space, `%` in temporary names); we do not.

use std::fmt;

use super::ZfsError;

/// Longest dataset or snapshot name, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// A valid ZFS filesystem or volume name, such as `tank/skiff`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DatasetName(String);

/// A valid ZFS snapshot name, such as `tank/skiff@skiff-20261122T030000Z`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SnapshotName {
    full: String,
    at: usize,
}

impl DatasetName {
    /// Checks `name` against the rules above.
    pub fn parse(name: &str) -> Result<Self, ZfsError> {
        check_dataset(name).map_err(|reason| invalid(name, reason))?;
        Ok(Self(name.to_owned()))
    }

    /// The name as ZFS spells it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The pool this dataset lives in (its first component).
    pub fn pool(&self) -> &str {
        self.0.split('/').next().unwrap_or(&self.0)
    }

    /// The dataset one level up, or `None` for a pool's root dataset.
    pub fn parent(&self) -> Option<DatasetName> {
        self.0
            .rsplit_once('/')
            .map(|(parent, _)| DatasetName(parent.to_owned()))
    }

    /// Whether `self` lies below `other` (`tank/a/b` below `tank/a`, not below `tank/ab`).
    pub fn is_below(&self, other: &DatasetName) -> bool {
        self.0
            .strip_prefix(other.as_str())
            .is_some_and(|rest| rest.starts_with('/'))
    }

    /// `self@snapshot`, with `snapshot` checked.
    pub fn snapshot(&self, snapshot: &str) -> Result<SnapshotName, ZfsError> {
        SnapshotName::parse(&format!("{}@{snapshot}", self.0))
    }
}

impl SnapshotName {
    /// Checks `DATASET@SNAP`.
    pub fn parse(name: &str) -> Result<Self, ZfsError> {
        let Some(at) = name.find('@') else {
            return Err(invalid(name, "a snapshot name needs '@' after the dataset"));
        };
        check_dataset(&name[..at]).map_err(|reason| invalid(name, reason))?;
        check_component(&name[at + 1..])
            .map_err(|reason| invalid(name, snapshot_reason(reason)))?;
        if name.len() > MAX_NAME_LEN {
            return Err(invalid(name, "longer than 255 bytes"));
        }
        Ok(Self {
            full: name.to_owned(),
            at,
        })
    }

    /// The whole name, `DATASET@SNAP`.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// The dataset part (before `@`).
    pub fn dataset(&self) -> DatasetName {
        DatasetName(self.full[..self.at].to_owned())
    }

    /// The snapshot part (after `@`).
    pub fn short(&self) -> &str {
        &self.full[self.at + 1..]
    }
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for SnapshotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

/// Checks the part of a snapshot name after `@` on its own.
pub fn validate_snapshot_part(snapshot: &str) -> Result<&str, ZfsError> {
    check_component(snapshot).map_err(|reason| invalid(snapshot, snapshot_reason(reason)))?;
    Ok(snapshot)
}

fn invalid(name: &str, reason: &'static str) -> ZfsError {
    ZfsError::InvalidName {
        name: name.to_owned(),
        reason,
    }
}

/// The same reasons as for dataset components, said of the snapshot part.
fn snapshot_reason(reason: &'static str) -> &'static str {
    match reason {
        "empty component" => "empty snapshot name after '@'",
        "'.' and '..' are not names" => "the snapshot name cannot be '.' or '..'",
        other => other,
    }
}

fn check_dataset(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty");
    }
    if name.len() > MAX_NAME_LEN {
        return Err("longer than 255 bytes");
    }
    if name.starts_with('/') {
        return Err("must not start with '/'");
    }
    if name.contains('@') {
        return Err("a dataset name has no '@' (that marks a snapshot)");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err("the pool name must start with a letter");
    }
    name.split('/').try_for_each(check_component)
}

fn check_component(c: &str) -> Result<(), &'static str> {
    if c.is_empty() {
        return Err("empty component");
    }
    if c == "." || c == ".." {
        return Err("'.' and '..' are not names");
    }
    if !c
        .chars()
        .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.' | ':' | '-'))
    {
        return Err("allowed characters are letters, digits, '_', '.', ':' and '-'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_zfs_names() {
        for n in [
            "tank",
            "tank/skiff",
            "t1/a.b/c_d/e:f/g-h",
            &format!("p/{}", "a".repeat(253)),
        ] {
            assert_eq!(DatasetName::parse(n).map(|d| d.0).ok().as_deref(), Some(n));
        }
        let s = SnapshotName::parse("tank/skiff@skiff-20261122T030000Z").expect("valid");
        assert_eq!(s.dataset().as_str(), "tank/skiff");
        assert_eq!(s.short(), "skiff-20261122T030000Z");
        assert_eq!(s.dataset().pool(), "tank");
    }

    #[test]
    fn refuses_bad_dataset_names() {
        for n in [
            "",
            "/tank",
            "tank/",
            "tank//a",
            "tank/../etc",
            "tank/.",
            "-o",
            "1tank",
            "tank/a b",
            "tank/a;rm",
            "tank/$(x)",
            "tank/a\0b",
            "tank/a\nb",
            "tank@s",
            "tank/é",
            &format!("p/{}", "a".repeat(254)),
        ] {
            match DatasetName::parse(n) {
                Err(ZfsError::InvalidName { name, .. }) => assert_eq!(name, n),
                other => panic!("{n:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn refuses_bad_snapshot_names() {
        for n in [
            "tank", "tank@", "@s", "tank@a@b", "tank@a/b", "tank@..", "tank@a b", "/t@s",
        ] {
            assert!(
                matches!(SnapshotName::parse(n), Err(ZfsError::InvalidName { .. })),
                "{n:?}"
            );
        }
        assert!(validate_snapshot_part("a/b").is_err());
        assert!(validate_snapshot_part("skiff-1").is_ok());
    }

    #[test]
    fn parents_and_descendants() {
        let d = |n| DatasetName::parse(n).expect("valid");
        assert_eq!(d("tank/a/b").parent(), Some(d("tank/a")));
        assert_eq!(d("tank").parent(), None);
        assert!(d("tank/a/b").is_below(&d("tank/a")));
        assert!(!d("tank/ab").is_below(&d("tank/a")));
        assert!(!d("tank/a").is_below(&d("tank/a")));
    }
}
