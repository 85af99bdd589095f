//! The `zfs` command, for what libzfs_core cannot do: listing snapshots, reading properties,
//! finding clones and children, mounting. Always run with separate arguments (no shell), `-Hp`
//! (no headers, tab-separated, exact numbers) and `LC_ALL=C` (messages we can recognise).
//!
//! Only `LzcZfs` (feature `zfs`) runs these commands; the parsers are always built so that their
//! unit tests run everywhere.
#![cfg_attr(not(feature = "zfs"), allow(dead_code))]

use std::path::PathBuf;
use std::process::Command;

use super::error::mountpoint_from;
use super::{DatasetName, DatasetProperties, SnapshotInfo, SnapshotName, ZfsError};

/// The `zfs` program.
#[derive(Debug, Clone)]
pub(crate) struct ZfsCommand {
    program: PathBuf,
}

impl ZfsCommand {
    pub(crate) fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
        }
    }

    /// Runs `zfs ARGS`; returns its standard output. `name` is what a "does not exist" error
    /// is about.
    pub(crate) fn run(&self, args: &[&str], name: &str) -> Result<String, ZfsError> {
        let command = format!("{} {}", self.program.display(), args.join(" "));
        let out = Command::new(&self.program)
            .args(args)
            .env("LC_ALL", "C")
            .output()
            .map_err(|e| ZfsError::Command {
                command: command.clone(),
                stderr: format!("cannot run it: {e}"),
            })?;
        if out.status.success() {
            return String::from_utf8(out.stdout).map_err(|_| ZfsError::BadOutput {
                command,
                detail: "not UTF-8".into(),
            });
        }
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        if stderr.contains("does not exist") {
            return Err(ZfsError::NotFound {
                name: name.to_owned(),
            });
        }
        Err(ZfsError::Command { command, stderr })
    }

    /// `zfs list -Hp -t snapshot -d 1 -o name,guid,creation,used -s createtxg DATASET`.
    pub(crate) fn list_snapshots(
        &self,
        dataset: &DatasetName,
    ) -> Result<Vec<SnapshotInfo>, ZfsError> {
        let args = [
            "list",
            "-Hp",
            "-t",
            "snapshot",
            "-d",
            "1",
            "-o",
            "name,guid,creation,used",
            "-s",
            "createtxg",
            dataset.as_str(),
        ];
        let out = self.run(&args, dataset.as_str())?;
        parse_snapshots(&out, dataset).map_err(|detail| ZfsError::BadOutput {
            command: format!("zfs {}", args.join(" ")),
            detail,
        })
    }

    /// `zfs get -Hp -o property,value mountpoint,mounted,used,available DATASET`.
    pub(crate) fn properties(&self, dataset: &DatasetName) -> Result<DatasetProperties, ZfsError> {
        let args = [
            "get",
            "-Hp",
            "-o",
            "property,value",
            "mountpoint,mounted,used,available",
            dataset.as_str(),
        ];
        let out = self.run(&args, dataset.as_str())?;
        parse_properties(&out).map_err(|detail| ZfsError::BadOutput {
            command: format!("zfs {}", args.join(" ")),
            detail,
        })
    }

    /// The clones of a snapshot (`zfs get -Hp -o value clones SNAPSHOT`).
    pub(crate) fn clones(&self, snapshot: &SnapshotName) -> Result<Vec<String>, ZfsError> {
        let args = ["get", "-Hp", "-o", "value", "clones", snapshot.as_str()];
        Ok(parse_clones(&self.run(&args, snapshot.as_str())?))
    }

    /// The filesystems and volumes directly below `dataset`.
    pub(crate) fn children(&self, dataset: &DatasetName) -> Result<Vec<String>, ZfsError> {
        let args = [
            "list",
            "-Hp",
            "-o",
            "name",
            "-d",
            "1",
            "-t",
            "filesystem,volume",
            dataset.as_str(),
        ];
        let out = self.run(&args, dataset.as_str())?;
        Ok(out
            .lines()
            .filter(|l| !l.is_empty() && *l != dataset.as_str())
            .map(str::to_owned)
            .collect())
    }

    /// `zfs mount DATASET`.
    pub(crate) fn mount(&self, dataset: &DatasetName) -> Result<(), ZfsError> {
        self.run(&["mount", dataset.as_str()], dataset.as_str())
            .map(drop)
    }

    /// `zfs unmount DATASET`.
    pub(crate) fn unmount(&self, dataset: &DatasetName) -> Result<(), ZfsError> {
        self.run(&["unmount", dataset.as_str()], dataset.as_str())
            .map(drop)
    }
}

/// Parses `name<TAB>guid<TAB>creation<TAB>used` lines of snapshots of `dataset`.
pub(crate) fn parse_snapshots(
    out: &str,
    dataset: &DatasetName,
) -> Result<Vec<SnapshotInfo>, String> {
    out.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            let [name, guid, created, used] = f[..] else {
                return Err(format!("expected 4 tab-separated fields: {line:?}"));
            };
            let snapshot = SnapshotName::parse(name).map_err(|e| e.to_string())?;
            if snapshot.dataset() != *dataset {
                return Err(format!("{name} is not a snapshot of {dataset}"));
            }
            Ok(SnapshotInfo {
                name: snapshot.short().to_owned(),
                guid: number(guid, "guid")?,
                created: number(created, "creation")?,
                used: number(used, "used")?,
            })
        })
        .collect()
}

/// Parses `property<TAB>value` lines of `mountpoint`, `mounted`, `used` and `available`.
pub(crate) fn parse_properties(out: &str) -> Result<DatasetProperties, String> {
    let (mut mountpoint, mut mounted, mut used, mut available) = (None, None, None, None);
    for line in out.lines().filter(|l| !l.is_empty()) {
        let Some((property, value)) = line.split_once('\t') else {
            return Err(format!("expected property<TAB>value: {line:?}"));
        };
        match property {
            "mountpoint" => mountpoint = Some(mountpoint_from(value)),
            "mounted" => mounted = Some(value == "yes"),
            "used" => used = Some(number(value, "used")?),
            "available" => available = Some(number(value, "available")?),
            _ => {}
        }
    }
    let missing = |p: &str| format!("no {p} in the output");
    Ok(DatasetProperties {
        mountpoint: mountpoint.ok_or_else(|| missing("mountpoint"))?,
        mounted: mounted.ok_or_else(|| missing("mounted"))?,
        used: used.ok_or_else(|| missing("used"))?,
        available: available.ok_or_else(|| missing("available"))?,
    })
}

/// The value of the `clones` property: `-` or empty for none, else comma-separated names.
pub(crate) fn parse_clones(out: &str) -> Vec<String> {
    let value = out.trim();
    if value == "-" {
        return Vec::new();
    }
    value
        .split(',')
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

fn number(value: &str, what: &str) -> Result<u64, String> {
    value
        .parse()
        .map_err(|_| format!("{what} is not a number: {value:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(n: &str) -> DatasetName {
        DatasetName::parse(n).expect("valid")
    }

    #[test]
    fn parses_snapshot_lists() {
        let out = "tank/skiff@skiff-20261122T030000Z\t1234567890123\t1795316400\t0\n\
                   tank/skiff@manual\t42\t1795320000\t131072\n";
        let snaps = parse_snapshots(out, &ds("tank/skiff")).expect("parse");
        assert_eq!(snaps.len(), 2);
        assert_eq!(snaps[0].name, "skiff-20261122T030000Z");
        assert_eq!(snaps[0].guid, 1_234_567_890_123);
        assert_eq!(snaps[1].used, 131_072);
        assert_eq!(parse_snapshots("", &ds("tank/skiff")), Ok(Vec::new()));
    }

    #[test]
    fn refuses_odd_snapshot_lists() {
        for out in [
            "tank/skiff@a\t1\t2\n",
            "tank/skiff@a\tx\t2\t3\n",
            "tank/other@a\t1\t2\t3\n",
            "tank/skiff/child@a\t1\t2\t3\n",
            "tank/skiff\t1\t2\t3\n",
        ] {
            assert!(parse_snapshots(out, &ds("tank/skiff")).is_err(), "{out:?}");
        }
    }

    #[test]
    fn parses_properties() {
        let out = "mountpoint\t/srv/skiff\nmounted\tyes\nused\t1048576\navailable\t8589934592\n";
        let p = parse_properties(out).expect("parse");
        assert_eq!(p.mountpoint, Some(PathBuf::from("/srv/skiff")));
        assert!(p.mounted);
        assert_eq!((p.used, p.available), (1_048_576, 8_589_934_592));
        let none = "mountpoint\tnone\nmounted\tno\nused\t0\navailable\t1\n";
        assert_eq!(parse_properties(none).expect("parse").mountpoint, None);
        assert!(parse_properties("mountpoint\t/x\n").is_err());
        assert!(parse_properties("used\tlots\n").is_err());
    }

    #[test]
    fn parses_clones() {
        assert!(parse_clones("-\n").is_empty());
        assert!(parse_clones("\n").is_empty());
        assert_eq!(parse_clones("tank/a,tank/b\n"), vec!["tank/a", "tank/b"]);
    }
}
