//! Validation of image and snapshot names, the only user text that ever becomes part of a path
//! or a qemu-img argument.
//!
//! Image names are `[a-z0-9][a-z0-9._-]{0,62}` without `..`: no `/`, no leading `.` (temp files
//! and sidecars start with one), no `:` (qemu would read `proto:` as a protocol), no `,` (qemu
//! option syntax). Snapshot names allow upper case too but never all digits, because
//! `qemu-img snapshot -a/-d` accept an ID as well as a name and snapshot IDs are numbers.

use super::ImageError;

/// Longest image or snapshot name, in bytes.
pub const MAX_NAME_LEN: usize = 63;

/// Checks an image name; returns it unchanged when valid.
pub fn validate_image_name(name: &str) -> Result<&str, ImageError> {
    let bad = |reason| ImageError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    check_common(name, |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
    })
    .map_err(bad)?;
    Ok(name)
}

/// Checks an internal snapshot name; returns it unchanged when valid.
pub fn validate_snapshot_name(name: &str) -> Result<&str, ImageError> {
    let bad = |reason| ImageError::InvalidSnapshotName {
        name: name.to_owned(),
        reason,
    };
    check_common(name, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
    })
    .map_err(bad)?;
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("all digits would be taken for a snapshot ID"));
    }
    Ok(name)
}

/// Rules shared by both kinds of names: length, first character, allowed characters, no `..`.
fn check_common(name: &str, allowed: impl Fn(char) -> bool) -> Result<(), &'static str> {
    let Some(first) = name.chars().next() else {
        return Err("empty");
    };
    if name.len() > MAX_NAME_LEN {
        return Err("longer than 63 characters");
    }
    if !first.is_ascii_alphanumeric() {
        return Err("must start with a letter or digit");
    }
    if !name.chars().all(allowed) {
        return Err("allowed characters are lower-case letters, digits, '.', '_' and '-'");
    }
    if name.contains("..") {
        return Err("must not contain '..'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for n in ["a", "debian-12", "web01.disk0", "0", "x_y", &"a".repeat(63)] {
            assert!(validate_image_name(n).is_ok(), "{n}");
        }
    }

    #[test]
    fn refuses_traversal_and_odd_names() {
        for n in [
            "",
            "..",
            "../etc/passwd",
            "a/b",
            "/abs",
            ".hidden",
            "-opt",
            "_x",
            "a..b",
            "Upper",
            "a b",
            "a:b",
            "a,b",
            "nbd:localhost",
            "é",
            "a\0b",
            "a\nb",
            &"a".repeat(64),
        ] {
            match validate_image_name(n) {
                Err(ImageError::InvalidName { name, .. }) => assert_eq!(name, n),
                other => panic!("{n:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn snapshot_names() {
        assert!(validate_snapshot_name("before-upgrade").is_ok());
        assert!(validate_snapshot_name("Daily.2026-11-22").is_ok());
        assert!(validate_snapshot_name("s1").is_ok());
        for n in ["", "1", "42", "a/b", "-c", "a..b", "a b", &"s".repeat(64)] {
            assert!(
                matches!(
                    validate_snapshot_name(n),
                    Err(ImageError::InvalidSnapshotName { .. })
                ),
                "{n:?}"
            );
        }
    }
}
