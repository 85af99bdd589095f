//! Storage pools in the desired state: where images and servers' disks live.
//!
//! Every compute node has the pool `local` (`DATA_DIR/pools/local`) without any record. An admin
//! adds more:
//! - a **node-local pool**: a name (`fast`, `ssd-1`) and a place on one node — a directory
//!   (`dir`) or a ZFS dataset (`zfs`, on agents built with the `zfs` feature);
//! - a **shared pool**: numbered from 0 in the order they are added (the lowest free number),
//!   a directory at the same path on every compute node (an NFS mount, a cluster file system).
//!   Shared pool `0` is the default pool of new images. That a shared pool really is shared is
//!   checked, not assumed: the first node to open it writes a marker file holding the pool's
//!   `token`, and every other node accepts the directory only once it sees that marker.
//!
//! Adding a pool records it; the leader's reconciler hands each node the pools it should have and
//! the node opens them (making the directory when missing) and reports whether it could, with
//! their use. Removing a pool is refused while an image or a server's disk is in it, and never
//! deletes anything on the node: the node forgets the pool, its directory stays.

use serde::{Deserialize, Serialize};

use super::{ClusterState, CommandOutcome, RefusalCode};

/// The pool every compute node has, in its data dir.
pub const LOCAL_POOL: &str = "local";
/// [`LOCAL_POOL`] as a `String` (a serde default for records older than pools).
pub fn local_pool_name() -> String {
    LOCAL_POOL.to_string()
}

/// Longest name of a node-local pool.
pub const POOL_NAME_MAX: usize = 32;
/// Most pools a cluster records.
pub const POOLS_MAX: usize = 64;
/// Longest directory path or dataset name.
pub const POOL_PATH_MAX: usize = 255;
/// The file a shared pool's directory carries to prove it is the same on every node.
pub const SHARED_MARKER: &str = ".skiff-pool";

/// Where a pool keeps its images.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PoolKind {
    /// A directory (made when missing).
    Dir { path: String },
    /// A ZFS dataset (made when missing); images are files in its mountpoint. Its backups
    /// (`BackupTarget::Pool`) are snapshots of the whole dataset, sent incrementally to the
    /// dataset `backup` when set (normally in another ZFS pool).
    Zfs {
        dataset: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        backup: Option<String>,
    },
}

impl PoolKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            PoolKind::Dir { .. } => "dir",
            PoolKind::Zfs { .. } => "zfs",
        }
    }

    /// The directory or the dataset.
    pub fn place(&self) -> &str {
        match self {
            PoolKind::Dir { path } => path,
            PoolKind::Zfs { dataset, .. } => dataset,
        }
    }
}

/// One pool an admin added.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PoolRecord {
    /// A name (node-local) or a number (shared).
    pub name: String,
    /// The node it is on; `None` for a shared pool (on every compute node).
    pub node: Option<String>,
    #[serde(flatten)]
    pub kind: PoolKind,
    /// For a shared pool: what its marker file holds (chosen by the API, unique).
    #[serde(default)]
    pub token: String,
    pub created_at: u64,
}

impl PoolRecord {
    pub fn is_shared(&self) -> bool {
        self.node.is_none()
    }

    /// Whether `node` has this pool.
    pub fn on(&self, node: &str) -> bool {
        self.node.as_deref().is_none_or(|n| n == node)
    }
}

/// What a node is told to open: one pool.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PoolSpec {
    pub name: String,
    #[serde(flatten)]
    pub kind: PoolKind,
    /// For a shared pool, the marker's content (empty for a node-local pool).
    #[serde(default)]
    pub token: String,
    /// For a shared pool, whether this node may write the marker (the first compute node, in
    /// name order); the others wait to see it.
    #[serde(default)]
    pub writes_marker: bool,
}

/// Changes to pools (admin only).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "pool_op", rename_all = "snake_case")]
pub enum PoolCommand {
    /// A node-local pool `name` on `node`, or (with `node` `None` and no name) the next shared
    /// pool.
    Add {
        name: Option<String>,
        node: Option<String>,
        #[serde(flatten)]
        kind: PoolKind,
        #[serde(default)]
        token: String,
    },
    Remove {
        name: String,
    },
}

impl PoolCommand {
    pub fn describe(&self) -> (&'static str, String) {
        match self {
            PoolCommand::Add { name, .. } => ("pool.add", name.clone().unwrap_or_default()),
            PoolCommand::Remove { name } => ("pool.remove", name.clone()),
        }
    }
}

/// Whether `name` names a shared pool (a number).
pub fn is_shared_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 4 && name.bytes().all(|b| b.is_ascii_digit())
}

/// Checks the name of a node-local pool: 1 to [`POOL_NAME_MAX`] of `a-z 0-9 -`, starting with a
/// letter; `local` is every node's own.
pub fn check_pool_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= POOL_NAME_MAX
        && name.as_bytes()[0].is_ascii_lowercase()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok {
        return Err(format!(
            "invalid pool name {name:?}: use 1 to {POOL_NAME_MAX} of a-z, 0-9 and '-', starting with a letter (shared pools are numbered, not named)"
        ));
    }
    if name == LOCAL_POOL {
        return Err("the pool \"local\" exists on every node already".into());
    }
    Ok(())
}

/// Checks where a pool is: an absolute, clean directory path outside the system's own trees, or
/// a ZFS dataset name (`pool/child...`).
pub fn check_pool_kind(kind: &PoolKind) -> Result<(), String> {
    match kind {
        PoolKind::Dir { path } => {
            let clean = path.starts_with('/')
                && path.len() > 1
                && path.len() <= POOL_PATH_MAX
                && !path.ends_with('/')
                && path.split('/').skip(1).all(|c| {
                    !c.is_empty()
                        && c != "."
                        && c != ".."
                        && c.bytes().all(|b| {
                            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+')
                        })
                });
            if !clean {
                return Err(format!(
                    "invalid pool path {path:?}: give an absolute directory path of letters, digits, '-', '_', '.' and '+' (no '..', no trailing '/', at most {POOL_PATH_MAX} characters)"
                ));
            }
            const SYSTEM: [&str; 9] = [
                "/proc", "/sys", "/dev", "/run", "/boot", "/etc", "/usr", "/bin", "/sbin",
            ];
            if let Some(s) = SYSTEM.iter().find(|s| within(path, s)) {
                return Err(format!(
                    "invalid pool path {path:?}: {s} belongs to the system"
                ));
            }
            Ok(())
        }
        PoolKind::Zfs { dataset, backup } => {
            check_dataset(dataset)?;
            if let Some(b) = backup {
                check_dataset(b)?;
                if within(b, dataset) || within(dataset, b) {
                    return Err(format!(
                        "the backup dataset {b} must lie outside the pool's dataset {dataset}"
                    ));
                }
            }
            Ok(())
        }
    }
}

/// Checks a ZFS dataset name: `POOL/NAME[/...]`.
fn check_dataset(dataset: &str) -> Result<(), String> {
    let ok = dataset.len() <= POOL_PATH_MAX
        && dataset.split('/').count() >= 2
        && dataset.split('/').all(|c| {
            !c.is_empty()
                && c.as_bytes()[0].is_ascii_alphanumeric()
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid ZFS dataset {dataset:?}: give POOL/NAME[/...] of letters, digits, '-', '_', '.' and ':'"
        ))
    }
}

/// Whether `path` is `dir` or inside it.
fn within(path: &str, dir: &str) -> bool {
    path == dir || path.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

/// Whether two places would hold each other's files (the same directory or one inside the other;
/// the same dataset or one inside the other).
fn overlap(a: &PoolKind, b: &PoolKind) -> bool {
    match (a, b) {
        (PoolKind::Dir { path: x }, PoolKind::Dir { path: y })
        | (PoolKind::Zfs { dataset: x, .. }, PoolKind::Zfs { dataset: y, .. }) => {
            within(x, y) || within(y, x)
        }
        _ => false,
    }
}

/// The pools `node` has besides `local`, as it is told to open them: node-local pools of its own
/// and every shared pool. `first_compute` says whether it is the first compute node (by name),
/// which writes shared pools' markers.
pub fn pools_of(state: &ClusterState, node: &str, first_compute: bool) -> Vec<PoolSpec> {
    state
        .pools
        .values()
        .filter(|p| p.on(node))
        .map(|p| PoolSpec {
            name: p.name.clone(),
            kind: p.kind.clone(),
            token: p.token.clone(),
            writes_marker: p.is_shared() && first_compute,
        })
        .collect()
}

/// Whether `node` has the pool `name` (`local` always).
pub fn node_has_pool(state: &ClusterState, node: &str, name: &str) -> bool {
    name == LOCAL_POOL || state.pools.get(name).is_some_and(|p| p.on(node))
}

/// What uses the pool `name`: images in it, servers with a disk in it, and backups kept in it
/// (sorted).
pub fn users_of(state: &ClusterState, name: &str) -> Vec<String> {
    let mut out: Vec<String> = state
        .images
        .values()
        .filter(|i| i.pool == name)
        .map(|i| format!("image {}", i.name))
        .collect();
    out.extend(
        state
            .servers
            .values()
            .filter(|s| s.spec.disks.iter().any(|d| d.pool.as_deref() == Some(name)))
            .map(|s| format!("server {}", s.name)),
    );
    out.extend(
        state
            .backups
            .values()
            .filter(|b| b.pool == name)
            .map(|b| format!("backup {}", b.id)),
    );
    out.sort();
    out
}

pub fn apply(s: &mut ClusterState, c: &PoolCommand, at: u64) -> CommandOutcome {
    match c {
        PoolCommand::Add {
            name,
            node,
            kind,
            token,
        } => {
            if let Err(e) = check_pool_kind(kind) {
                return CommandOutcome::refused(RefusalCode::Invalid, e);
            }
            if s.pools.len() >= POOLS_MAX {
                return CommandOutcome::refused(
                    RefusalCode::LimitReached,
                    format!("the cluster has {POOLS_MAX} pools already"),
                );
            }
            let name = match (name, node) {
                (Some(name), Some(node)) => {
                    if let Err(e) = check_pool_name(name) {
                        return CommandOutcome::refused(RefusalCode::Invalid, e);
                    }
                    if !s.nodes.contains_key(node) {
                        return CommandOutcome::refused(
                            RefusalCode::NotFound,
                            format!("no node named {node:?}"),
                        );
                    }
                    if s.pools.contains_key(name) {
                        return CommandOutcome::refused(
                            RefusalCode::NameTaken,
                            format!("a pool named {name:?} exists already"),
                        );
                    }
                    name.clone()
                }
                (None, None) => {
                    if matches!(kind, PoolKind::Zfs { .. }) {
                        return CommandOutcome::refused(
                            RefusalCode::Invalid,
                            "a shared pool is a directory (a ZFS dataset belongs to one node)",
                        );
                    }
                    if token.is_empty() || token.len() > 128 {
                        return CommandOutcome::refused(
                            RefusalCode::Invalid,
                            "a shared pool needs a token of 1 to 128 characters",
                        );
                    }
                    let free = (0..).find(|n: &usize| !s.pools.contains_key(&n.to_string()));
                    free.unwrap_or(0).to_string()
                }
                _ => {
                    return CommandOutcome::refused(
                        RefusalCode::Invalid,
                        "a node-local pool needs a name and a node; a shared pool has neither (it is numbered)",
                    )
                }
            };
            let record = PoolRecord {
                name: name.clone(),
                node: node.clone(),
                kind: kind.clone(),
                token: if node.is_none() {
                    token.clone()
                } else {
                    String::new()
                },
                created_at: at,
            };
            if let Some(other) = s.pools.values().find(|p| {
                overlap(&p.kind, kind) && (p.is_shared() || node.is_none() || p.node == record.node)
            }) {
                return CommandOutcome::refused(
                    RefusalCode::Conflict,
                    format!(
                        "pool {} already uses {} (pools may not share or nest their places)",
                        other.name,
                        other.kind.place()
                    ),
                );
            }
            s.pools.insert(name, record);
            CommandOutcome::Done
        }
        PoolCommand::Remove { name } => {
            if name == LOCAL_POOL {
                return CommandOutcome::refused(
                    RefusalCode::Invalid,
                    "the pool \"local\" belongs to every node and cannot be removed",
                );
            }
            if !s.pools.contains_key(name) {
                return CommandOutcome::refused(
                    RefusalCode::NotFound,
                    format!("no pool named {name:?}"),
                );
            }
            let users = users_of(s, name);
            if !users.is_empty() {
                let shown: Vec<&str> = users.iter().take(5).map(String::as_str).collect();
                return CommandOutcome::refused(
                    RefusalCode::Conflict,
                    format!(
                        "pool {name} is in use by {}{}: move or remove them first",
                        shown.join(", "),
                        if users.len() > 5 { ", ..." } else { "" }
                    ),
                );
            }
            s.pools.remove(name);
            CommandOutcome::Done
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Command, Proposal};

    /// Nodes `a` and `b`.
    fn cluster() -> ClusterState {
        let mut s = crate::state::tests::bootstrapped();
        let mut b = s.nodes["a"].clone();
        b.name = "b".into();
        b.id = 2;
        s.nodes.insert("b".into(), b);
        s
    }

    fn run(s: &mut ClusterState, c: PoolCommand) -> CommandOutcome {
        s.apply(&Proposal::new("user:admin", 7, Command::Pool(c)))
    }

    fn dir(p: &str) -> PoolKind {
        PoolKind::Dir { path: p.into() }
    }

    fn local(name: &str, node: &str, path: &str) -> PoolCommand {
        PoolCommand::Add {
            name: Some(name.into()),
            node: Some(node.into()),
            kind: dir(path),
            token: String::new(),
        }
    }

    fn shared(path: &str, token: &str) -> PoolCommand {
        PoolCommand::Add {
            name: None,
            node: None,
            kind: dir(path),
            token: token.into(),
        }
    }

    fn refused(o: CommandOutcome) -> (RefusalCode, String) {
        match o {
            CommandOutcome::Refused { code, message } => (code, message),
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn local_pools_are_named_and_shared_ones_numbered_from_zero() {
        let mut s = cluster();
        assert_eq!(
            run(&mut s, local("fast", "a", "/srv/fast")),
            CommandOutcome::Done
        );
        assert_eq!(run(&mut s, shared("/mnt/s0", "t0")), CommandOutcome::Done);
        assert_eq!(run(&mut s, shared("/mnt/s1", "t1")), CommandOutcome::Done);
        assert_eq!(
            s.pools.keys().cloned().collect::<Vec<_>>(),
            ["0", "1", "fast"]
        );
        assert!(s.pools["0"].is_shared() && s.pools["0"].on("b"));
        assert!(s.pools["fast"].on("a") && !s.pools["fast"].on("b"));
        // The lowest free number is taken again.
        assert_eq!(
            run(&mut s, PoolCommand::Remove { name: "0".into() }),
            CommandOutcome::Done
        );
        assert_eq!(run(&mut s, shared("/mnt/s2", "t2")), CommandOutcome::Done);
        assert_eq!(s.pools["0"].kind, dir("/mnt/s2"));
        // What a node is told to open.
        let a = pools_of(&s, "a", true);
        assert_eq!(
            a.iter()
                .map(|p| (p.name.as_str(), p.writes_marker))
                .collect::<Vec<_>>(),
            [("0", true), ("1", true), ("fast", false)]
        );
        assert_eq!(pools_of(&s, "b", false).len(), 2);
        assert!(node_has_pool(&s, "b", "local") && !node_has_pool(&s, "b", "fast"));
    }

    #[test]
    fn bad_pools_are_refused_and_change_nothing() {
        let mut s = cluster();
        assert_eq!(
            run(&mut s, local("fast", "a", "/srv/fast")),
            CommandOutcome::Done
        );
        assert_eq!(
            run(&mut s, shared("/mnt/shared", "t")),
            CommandOutcome::Done
        );
        let before = s.pools.clone();
        let cases = [
            (local("local", "a", "/srv/x"), RefusalCode::Invalid),
            (local("Fast", "a", "/srv/x"), RefusalCode::Invalid),
            (local("7", "a", "/srv/x"), RefusalCode::Invalid),
            (local("x", "nope", "/srv/x"), RefusalCode::NotFound),
            (local("fast", "b", "/srv/other"), RefusalCode::NameTaken),
            (local("x", "a", "relative"), RefusalCode::Invalid),
            (local("x", "a", "/srv/../etc"), RefusalCode::Invalid),
            (local("x", "a", "/srv/x/"), RefusalCode::Invalid),
            (local("x", "a", "/"), RefusalCode::Invalid),
            (local("x", "a", "/proc/x"), RefusalCode::Invalid),
            (local("x", "a", "/srv/a b"), RefusalCode::Invalid),
            // Nesting on the same node, or under a shared pool anywhere.
            (local("x", "a", "/srv/fast/inner"), RefusalCode::Conflict),
            (local("x", "a", "/srv"), RefusalCode::Conflict),
            (local("x", "b", "/mnt/shared/x"), RefusalCode::Conflict),
            (shared("/srv/fast", "t2"), RefusalCode::Conflict),
            (shared("/mnt/other", ""), RefusalCode::Invalid),
            (
                PoolCommand::Add {
                    name: Some("x".into()),
                    node: None,
                    kind: dir("/srv/x"),
                    token: "t".into(),
                },
                RefusalCode::Invalid,
            ),
            (
                PoolCommand::Add {
                    name: Some("z".into()),
                    node: Some("a".into()),
                    kind: PoolKind::Zfs {
                        dataset: "tank".into(),
                        backup: None,
                    },
                    token: String::new(),
                },
                RefusalCode::Invalid,
            ),
            (
                PoolCommand::Add {
                    name: Some("z".into()),
                    node: Some("a".into()),
                    kind: PoolKind::Zfs {
                        dataset: "tank/skiff".into(),
                        backup: Some("tank/skiff/backup".into()),
                    },
                    token: String::new(),
                },
                RefusalCode::Invalid,
            ),
            (
                PoolCommand::Add {
                    name: None,
                    node: None,
                    kind: PoolKind::Zfs {
                        dataset: "tank/shared".into(),
                        backup: None,
                    },
                    token: "t".into(),
                },
                RefusalCode::Invalid,
            ),
            (
                PoolCommand::Remove {
                    name: "local".into(),
                },
                RefusalCode::Invalid,
            ),
            (
                PoolCommand::Remove {
                    name: "nope".into(),
                },
                RefusalCode::NotFound,
            ),
        ];
        for (c, code) in cases {
            let (got, message) = refused(run(&mut s, c.clone()));
            assert_eq!(got, code, "{c:?}: {message}");
            assert_eq!(s.pools, before, "{c:?} changed the pools");
        }
        // The same directory on another node is another pool.
        assert_eq!(
            run(&mut s, local("fast2", "b", "/srv/fast")),
            CommandOutcome::Done
        );
        assert_eq!(
            run(
                &mut s,
                PoolCommand::Add {
                    name: Some("z".into()),
                    node: Some("a".into()),
                    kind: PoolKind::Zfs {
                        dataset: "tank/skiff".into(),
                        backup: Some("backup/skiff".into()),
                    },
                    token: String::new(),
                }
            ),
            CommandOutcome::Done
        );
    }

    #[test]
    fn a_pool_in_use_cannot_be_removed() {
        let mut s = cluster();
        assert_eq!(
            run(&mut s, local("fast", "a", "/srv/fast")),
            CommandOutcome::Done
        );
        s.images.insert(
            "disk1".into(),
            crate::state::ImageRecord {
                name: "disk1".into(),
                owner: "admin".into(),
                node: "a".into(),
                pool: "fast".into(),
                size_gib: 1,
                master: false,
                parent: None,
                snapshots: Vec::new(),
                created_at: 0,
                ready: true,
                pending: None,
            },
        );
        let (code, message) = refused(run(
            &mut s,
            PoolCommand::Remove {
                name: "fast".into(),
            },
        ));
        assert_eq!(code, RefusalCode::Conflict);
        assert!(message.contains("image disk1"), "{message}");
        s.images.clear();
        assert_eq!(
            run(
                &mut s,
                PoolCommand::Remove {
                    name: "fast".into()
                }
            ),
            CommandOutcome::Done
        );
        assert!(s.pools.is_empty());
    }
}
