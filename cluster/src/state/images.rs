//! Disk images in the desired state: qcow2 files in a node's local pool (shared pools come with
//! the storage issue), each owned by a user.
//!
//! Every operation is two writes. The first ([`ImageCommand::Create`], [`ImageCommand::Clone`],
//! [`ImageCommand::Convert`], [`ImageCommand::Act`]) checks the request against the state, records
//! it as the image's `pending` operation and opens an `image.*` task; the reconciler has the
//! image's node carry it out and then writes [`ImageCommand::Settle`], which makes the state say
//! what now exists on the node: a created image becomes ready (or is forgotten when the node could
//! not make it), a snapshot is listed, a flattened image loses its master, a removed image is
//! dropped. So the state never claims what the node has not done, and a refused or failed
//! operation changes nothing. One operation at a time per image: a second one while the first is
//! open is refused naming the task (an image being converted into another counts as busy too).

use serde::{Deserialize, Serialize};

use super::tasks::open_task;
use super::{ClusterState, CommandOutcome, RefusalCode};

/// Longest image or snapshot name.
pub const IMAGE_NAME_MAX: usize = 64;
/// Largest image (64 TiB).
pub const IMAGE_MAX_GIB: u64 = 64 * 1024;
pub use super::pools::LOCAL_POOL;

/// One image.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageRecord {
    pub name: String,
    pub owner: String,
    /// The node whose pool holds it.
    pub node: String,
    pub pool: String,
    /// Virtual size.
    pub size_gib: u64,
    /// A master: read-only, the base of clones.
    pub master: bool,
    /// The master it is a clone (child) of.
    pub parent: Option<String>,
    /// Internal qcow2 snapshots, oldest first.
    pub snapshots: Vec<String>,
    pub created_at: u64,
    /// False until the node has made it.
    pub ready: bool,
    /// The operation its node is carrying out.
    pub pending: Option<PendingImageOp>,
}

/// An operation recorded by the first write, settled by the second.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PendingImageOp {
    pub task_id: u64,
    pub op: ImageOp,
}

/// What is done to an image on its node.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "image_work", rename_all = "snake_case")]
pub enum ImageOp {
    /// A blank image of `size_gib`.
    Create {
        size_gib: u64,
    },
    /// A linked clone of the master `from`.
    Clone {
        from: String,
    },
    /// Bytes sent by a client through the API (`PUT /api/v1/images/{name}/content`), streamed to
    /// the node by the leader while the request lasts; not carried out by the reconciler.
    Upload,
    MakeMaster,
    Unmaster,
    Snapshot {
        snapshot: String,
    },
    Revert {
        snapshot: String,
    },
    /// Grow to `size_gib`.
    Resize {
        size_gib: u64,
    },
    Remove,
    /// Fold the image's master into it, in place: it no longer depends on the master (a no-op
    /// for an image without one).
    Flatten,
    /// A new standalone image (the one this operation is pending on) with the full contents of
    /// `from`, its master folded in, compressed when `compress` says so; `from` is left as it is.
    Convert {
        from: String,
        #[serde(default)]
        compress: bool,
    },
}

impl ImageOp {
    /// The task kind (`image.snapshot`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            ImageOp::Create { .. } => "image.create",
            ImageOp::Clone { .. } => "image.clone",
            ImageOp::Upload => "image.upload",
            ImageOp::MakeMaster => "image.master",
            ImageOp::Unmaster => "image.unmaster",
            ImageOp::Snapshot { .. } => "image.snapshot",
            ImageOp::Revert { .. } => "image.revert",
            ImageOp::Resize { .. } => "image.resize",
            ImageOp::Remove => "image.remove",
            ImageOp::Flatten => "image.flatten",
            ImageOp::Convert { .. } => "image.convert",
        }
    }

    /// Whether the operation copies a whole image (and so may take long on the node).
    pub fn copies_data(&self) -> bool {
        matches!(self, ImageOp::Flatten | ImageOp::Convert { .. })
    }
}

/// Changes to images.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "image_op", rename_all = "snake_case")]
pub enum ImageCommand {
    /// A new blank image on `node`.
    Create {
        name: String,
        owner: String,
        node: String,
        size_gib: u64,
        /// The pool on `node` (see [`default_pool`] when `None`).
        #[serde(default)]
        pool: Option<String>,
    },
    /// A new child of the master `from`, in `pool` (the master's when `None`), on the master's
    /// node — or on `node` when the master is in a shared pool, which every node has.
    Clone {
        name: String,
        from: String,
        owner: String,
        #[serde(default)]
        pool: Option<String>,
        #[serde(default)]
        node: Option<String>,
    },
    /// A new standalone image `name` with the full contents of `from` (its master folded in,
    /// compressed when `compress` says so), on `from`'s node.
    Convert {
        name: String,
        from: String,
        owner: String,
        #[serde(default)]
        compress: bool,
        /// The pool of the new image (`from`'s when `None`).
        #[serde(default)]
        pool: Option<String>,
    },
    /// A new image on `node` whose bytes the leader is about to receive (its size is known once
    /// the node has them: [`ImageCommand::Settle`]'s `size_gib`).
    Upload {
        name: String,
        owner: String,
        node: String,
        #[serde(default)]
        pool: Option<String>,
    },
    /// Any other operation on the existing image `name`. (Not `op`: that is the tag of
    /// [`super::Command`], whose fields this command's share.)
    Act { name: String, work: ImageOp },
    /// The reconciler's report that the node finished the pending operation of `task_id`.
    Settle {
        name: String,
        task_id: u64,
        ok: bool,
        /// The image's size, for an upload.
        #[serde(default)]
        size_gib: Option<u64>,
    },
}

impl ImageCommand {
    /// The operation and its target, for the audit log.
    pub fn describe(&self) -> (&'static str, String) {
        match self {
            ImageCommand::Create { name, .. } => ("image.create", name.clone()),
            ImageCommand::Clone { name, .. } => ("image.clone", name.clone()),
            ImageCommand::Convert { name, .. } => ("image.convert", name.clone()),
            ImageCommand::Upload { name, .. } => ("image.upload", name.clone()),
            ImageCommand::Act { name, work } => (work.kind(), name.clone()),
            ImageCommand::Settle { name, .. } => ("image.settle", name.clone()),
        }
    }
}

/// Checks an image or snapshot name: 1 to [`IMAGE_NAME_MAX`] of `a-z 0-9 - _ .`, starting with a
/// letter or digit. Image names ending in `-disk` and digits are kept for servers' disks, which
/// live in the same pool.
pub fn check_image_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= IMAGE_NAME_MAX
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if !ok {
        return Err(format!(
            "invalid {what} name {name:?}: use 1 to {IMAGE_NAME_MAX} of a-z, 0-9, '-', '_' and '.', starting with a letter or digit"
        ));
    }
    if what == "image" && is_server_disk_name(name) {
        return Err(format!(
            "invalid image name {name:?}: names ending in -disk and a number belong to servers' disks"
        ));
    }
    Ok(())
}

fn is_server_disk_name(name: &str) -> bool {
    disk_owner(name).is_some()
}

/// The image name of disk `index` of `server` (`web`, 0 → `web-disk0`).
pub fn disk_name(server: &str, index: usize) -> String {
    format!("{server}-disk{index}")
}

/// The server whose disk the image name `name` is (`web-disk0` → `web`): servers' disks are
/// `SERVER-diskN` in their pool.
pub fn disk_owner(name: &str) -> Option<&str> {
    let (server, index) = name.rsplit_once("-disk")?;
    (!server.is_empty() && !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()))
        .then_some(server)
}

/// Checks an image size in GiB.
pub fn check_image_size(size_gib: u64) -> Result<(), String> {
    if (1..=IMAGE_MAX_GIB).contains(&size_gib) {
        Ok(())
    } else {
        Err(format!(
            "size_gib must be between 1 and {IMAGE_MAX_GIB}, not {size_gib}"
        ))
    }
}

/// Images made from `master` (its children).
pub fn children<'a>(state: &'a ClusterState, master: &'a str) -> impl Iterator<Item = &'a str> {
    state
        .images
        .values()
        .filter(move |i| i.parent.as_deref() == Some(master))
        .map(|i| i.name.as_str())
}

/// Servers whose disks are clones of `master`.
pub fn servers_using<'a>(
    state: &'a ClusterState,
    master: &'a str,
) -> impl Iterator<Item = &'a str> {
    state
        .servers
        .values()
        .filter(move |s| {
            s.spec
                .disks
                .iter()
                .any(|d| d.image.as_deref() == Some(master))
        })
        .map(|s| s.name.as_str())
}

/// The open task an image is busy with, if any: its own pending operation, a backup or restore
/// of it, or a conversion reading it into another image (a pending operation whose task ended, e.g. was cancelled, no
/// longer blocks).
pub fn busy_with(state: &ClusterState, image: &ImageRecord) -> Option<u64> {
    image
        .pending
        .as_ref()
        .and_then(|p| open_task_id(state, p.task_id))
        .or_else(|| converting_from(state, &image.name))
        .or_else(|| {
            let target = super::backups::BackupTarget::Image {
                name: image.name.clone(),
            };
            super::backups::target_busy_with(state, &target)
        })
}

/// `task_id` if that task is still open.
fn open_task_id(state: &ClusterState, task_id: u64) -> Option<u64> {
    state
        .tasks
        .get(&task_id)
        .filter(|t| !t.state.is_final())
        .map(|t| t.id)
}

/// The open task of a conversion that reads `source` into a new image.
fn converting_from(state: &ClusterState, source: &str) -> Option<u64> {
    state.images.values().find_map(|i| match &i.pending {
        Some(PendingImageOp {
            task_id,
            op: ImageOp::Convert { from, .. },
        }) if from == source => open_task_id(state, *task_id),
        _ => None,
    })
}

/// Storage (GiB) of `owner`'s images.
pub fn owned_gib(state: &ClusterState, owner: &str) -> u64 {
    state
        .images
        .values()
        .filter(|i| i.owner == owner)
        .map(|i| i.size_gib)
        .sum()
}

fn refused(code: RefusalCode, m: impl Into<String>) -> CommandOutcome {
    CommandOutcome::Refused {
        code,
        message: m.into(),
    }
}

fn in_use_by(state: &ClusterState, name: &str) -> Option<String> {
    let kids: Vec<&str> = children(state, name).collect();
    if !kids.is_empty() {
        return Some(format!("images {}", kids.join(", ")));
    }
    let servers: Vec<&str> = servers_using(state, name).collect();
    if !servers.is_empty() {
        return Some(format!("servers {}", servers.join(", ")));
    }
    None
}

/// Refuses to flatten an image whose file others read or that must not be rewritten: a master
/// (read-only; the base of clones and servers' disks), and a clone with internal snapshots
/// (flattening copies only the current contents, so they would be lost). An image without a
/// master passes: the node finds nothing to do.
fn check_flatten(state: &ClusterState, image: &ImageRecord) -> Result<(), CommandOutcome> {
    let name = &image.name;
    let state_err = |m: String| refused(RefusalCode::InvalidState, m);
    if let Some(users) = in_use_by(state, name) {
        return Err(state_err(format!(
            "image {name} is the base of {users}: it cannot be rewritten under them"
        )));
    }
    if image.master {
        return Err(state_err(match &image.parent {
            None => format!("image {name} is a master: it has no master of its own to fold in"),
            Some(_) => format!("image {name} is a master (read-only): unmaster it first"),
        }));
    }
    if image.parent.is_some() && !image.snapshots.is_empty() {
        return Err(state_err(format!(
            "image {name} has snapshots ({}): flattening keeps only its current contents and would lose them; convert it into a new image instead",
            image.snapshots.join(", ")
        )));
    }
    Ok(())
}

pub(super) fn apply(state: &mut ClusterState, cmd: &ImageCommand, at: u64) -> CommandOutcome {
    match try_apply(state, cmd, at) {
        Ok(o) | Err(o) => o,
    }
}

fn check_quota(state: &ClusterState, owner: &str, extra_gib: u64) -> Result<(), CommandOutcome> {
    let Some(user) = state.users.get(owner) else {
        return Err(refused(
            RefusalCode::NotFound,
            format!("no user named {owner:?}"),
        ));
    };
    let Some(limit) = user.quotas.storage_gib else {
        return Ok(());
    };
    let used = super::servers::storage_gib_of(state, owner) + owned_gib(state, owner);
    if used + extra_gib > limit {
        return Err(refused(
            RefusalCode::QuotaExceeded,
            format!(
                "{owner}'s storage quota is {limit} GiB: {used} in use, {extra_gib} more asked"
            ),
        ));
    }
    Ok(())
}

/// The pool of a new image when the request names none: shared pool `0` when there is one,
/// else the node's own `local`.
pub fn default_pool(state: &ClusterState) -> &'static str {
    if state.pools.get("0").is_some_and(|p| p.is_shared()) {
        "0"
    } else {
        LOCAL_POOL
    }
}

/// Checks that `node` has the pool `pool`.
fn check_pool(state: &ClusterState, node: &str, pool: &str) -> Result<(), CommandOutcome> {
    if super::pools::node_has_pool(state, node, pool) {
        Ok(())
    } else if state.pools.contains_key(pool) {
        Err(refused(
            RefusalCode::Invalid,
            format!("pool {pool} is not on node {node}"),
        ))
    } else {
        Err(refused(
            RefusalCode::NotFound,
            format!("no pool named {pool:?}"),
        ))
    }
}

/// Where a new image goes: its node and pool.
struct Place<'a> {
    node: &'a str,
    pool: &'a str,
}

#[allow(clippy::too_many_arguments)] // one per field of the new record
fn new_record(
    state: &mut ClusterState,
    name: &str,
    owner: &str,
    place: Place<'_>,
    size_gib: u64,
    parent: Option<String>,
    op: ImageOp,
    at: u64,
) -> CommandOutcome {
    let Place { node, pool } = place;
    let task_id = open_task(state, owner, op.kind(), name, Some(node.to_string()), at);
    state.images.insert(
        name.to_string(),
        ImageRecord {
            name: name.to_string(),
            owner: owner.to_string(),
            node: node.to_string(),
            pool: pool.to_string(),
            size_gib,
            master: false,
            parent,
            snapshots: Vec::new(),
            created_at: at,
            ready: false,
            pending: Some(PendingImageOp { task_id, op }),
        },
    );
    CommandOutcome::TaskStarted { task_id }
}

fn try_apply(
    state: &mut ClusterState,
    cmd: &ImageCommand,
    at: u64,
) -> Result<CommandOutcome, CommandOutcome> {
    let invalid = |m: String| refused(RefusalCode::Invalid, m);
    let taken = |name: &str| {
        refused(
            RefusalCode::NameTaken,
            format!("an image named {name:?} already exists"),
        )
    };
    match cmd {
        ImageCommand::Create {
            name,
            owner,
            node,
            size_gib,
            pool,
        } => {
            check_image_name("image", name).map_err(invalid)?;
            check_image_size(*size_gib).map_err(invalid)?;
            if state.images.contains_key(name) {
                return Err(taken(name));
            }
            if !state.nodes.contains_key(node) {
                return Err(refused(
                    RefusalCode::NotFound,
                    format!("no node named {node:?}"),
                ));
            }
            if state.maintenance.contains(node) {
                return Err(refused(
                    RefusalCode::NodeUnavailable,
                    format!("node {node} is in maintenance"),
                ));
            }
            let pool = pool.as_deref().unwrap_or(default_pool(state));
            check_pool(state, node, pool)?;
            check_quota(state, owner, *size_gib)?;
            let op = ImageOp::Create {
                size_gib: *size_gib,
            };
            Ok(new_record(
                state,
                name,
                owner,
                Place { node, pool },
                *size_gib,
                None,
                op,
                at,
            ))
        }
        ImageCommand::Upload {
            name,
            owner,
            node,
            pool,
        } => {
            check_image_name("image", name).map_err(invalid)?;
            if state.images.contains_key(name) {
                return Err(taken(name));
            }
            if !state.nodes.contains_key(node) {
                return Err(refused(
                    RefusalCode::NotFound,
                    format!("no node named {node:?}"),
                ));
            }
            if state.maintenance.contains(node) {
                return Err(refused(
                    RefusalCode::NodeUnavailable,
                    format!("node {node} is in maintenance"),
                ));
            }
            let pool = pool.as_deref().unwrap_or(default_pool(state));
            check_pool(state, node, pool)?;
            check_quota(state, owner, 0)?;
            Ok(new_record(
                state,
                name,
                owner,
                Place { node, pool },
                0,
                None,
                ImageOp::Upload,
                at,
            ))
        }
        ImageCommand::Clone {
            name,
            from,
            owner,
            pool,
            node,
        } => {
            check_image_name("image", name).map_err(invalid)?;
            if state.images.contains_key(name) {
                return Err(taken(name));
            }
            let master = state.images.get(from).ok_or_else(|| {
                refused(RefusalCode::NotFound, format!("no image named {from:?}"))
            })?;
            if !master.master || !master.ready {
                return Err(refused(
                    RefusalCode::InvalidState,
                    format!("image {from} is not a master: make it one first"),
                ));
            }
            let shared = state.pools.get(&master.pool).is_some_and(|p| p.is_shared());
            let node = match node {
                Some(n) if *n == master.node => n.clone(),
                Some(n) if !shared => {
                    return Err(refused(
                        RefusalCode::Invalid,
                        format!(
                            "master {from} is in pool {} of node {}: its clones are made there (only masters in shared pools are cloned onto any node)",
                            master.pool, master.node
                        ),
                    ))
                }
                Some(n) if !state.nodes.contains_key(n) => {
                    return Err(refused(
                        RefusalCode::NotFound,
                        format!("no node named {n:?}"),
                    ))
                }
                Some(n) => n.clone(),
                None => master.node.clone(),
            };
            let size = master.size_gib;
            let pool = pool.clone().unwrap_or_else(|| master.pool.clone());
            check_pool(state, &node, &pool)?;
            check_quota(state, owner, size)?;
            let op = ImageOp::Clone { from: from.clone() };
            Ok(new_record(
                state,
                name,
                owner,
                Place {
                    node: &node,
                    pool: &pool,
                },
                size,
                Some(from.clone()),
                op,
                at,
            ))
        }
        ImageCommand::Convert {
            name,
            from,
            owner,
            compress,
            pool,
        } => {
            check_image_name("image", name).map_err(invalid)?;
            if state.images.contains_key(name) {
                return Err(taken(name));
            }
            let source = state.images.get(from).ok_or_else(|| {
                refused(RefusalCode::NotFound, format!("no image named {from:?}"))
            })?;
            if !source.ready {
                return Err(refused(
                    RefusalCode::InvalidState,
                    format!("image {from} was never made: there is nothing to convert"),
                ));
            }
            if let Some(task) = busy_with(state, source) {
                return Err(refused(
                    RefusalCode::Conflict,
                    format!("image {from} is busy with task {task}"),
                ));
            }
            let (node, size) = (source.node.clone(), source.size_gib);
            let pool = pool.clone().unwrap_or_else(|| source.pool.clone());
            check_pool(state, &node, &pool)?;
            check_quota(state, owner, size)?;
            let op = ImageOp::Convert {
                from: from.clone(),
                compress: *compress,
            };
            let place = Place {
                node: &node,
                pool: &pool,
            };
            Ok(new_record(state, name, owner, place, size, None, op, at))
        }
        ImageCommand::Act { name, work: op } => {
            let image = state.images.get(name).ok_or_else(|| {
                refused(RefusalCode::NotFound, format!("no image named {name:?}"))
            })?;
            if let Some(task) = busy_with(state, image) {
                return Err(refused(
                    RefusalCode::Conflict,
                    format!("image {name} is busy with task {task}"),
                ));
            }
            let state_err = |m: String| refused(RefusalCode::InvalidState, m);
            if !image.ready && *op != ImageOp::Remove {
                return Err(state_err(format!("image {name} was never made: remove it")));
            }
            match op {
                ImageOp::Create { .. }
                | ImageOp::Clone { .. }
                | ImageOp::Upload
                | ImageOp::Convert { .. } => {
                    return Err(invalid(
                        "create, clone, upload and convert make new images".into(),
                    ))
                }
                ImageOp::Flatten => check_flatten(state, image)?,
                ImageOp::MakeMaster => {
                    if image.master {
                        return Err(state_err(format!("image {name} is already a master")));
                    }
                }
                ImageOp::Unmaster => {
                    if !image.master {
                        return Err(state_err(format!("image {name} is not a master")));
                    }
                    if let Some(users) = in_use_by(state, name) {
                        return Err(state_err(format!(
                            "master {name} is the base of {users}: it stays a master"
                        )));
                    }
                }
                ImageOp::Snapshot { snapshot } | ImageOp::Revert { snapshot } => {
                    check_image_name("snapshot", snapshot).map_err(invalid)?;
                    if image.master {
                        return Err(state_err(format!(
                            "image {name} is a master (read-only): unmaster it first"
                        )));
                    }
                    let exists = image.snapshots.contains(snapshot);
                    match op {
                        ImageOp::Snapshot { .. } if exists => {
                            return Err(refused(
                                RefusalCode::NameTaken,
                                format!("image {name} already has a snapshot {snapshot:?}"),
                            ))
                        }
                        ImageOp::Revert { .. } if !exists => {
                            return Err(refused(
                                RefusalCode::NotFound,
                                format!("image {name} has no snapshot {snapshot:?}"),
                            ))
                        }
                        _ => {}
                    }
                }
                ImageOp::Resize { size_gib } => {
                    check_image_size(*size_gib).map_err(invalid)?;
                    if image.master {
                        return Err(state_err(format!(
                            "image {name} is a master (read-only): unmaster it first"
                        )));
                    }
                    if *size_gib <= image.size_gib {
                        return Err(invalid(format!(
                            "images only grow: {name} has {} GiB, {size_gib} asked",
                            image.size_gib
                        )));
                    }
                    let (owner, extra) = (image.owner.clone(), size_gib - image.size_gib);
                    check_quota(state, &owner, extra)?;
                }
                ImageOp::Remove => {
                    if let Some(users) = in_use_by(state, name) {
                        return Err(state_err(format!(
                            "master {name} is the base of {users}: remove them first"
                        )));
                    }
                }
            }
            let image = state.images.get(name).cloned().ok_or_else(|| {
                refused(RefusalCode::NotFound, format!("no image named {name:?}"))
            })?;
            let task_id = open_task(
                state,
                &image.owner,
                op.kind(),
                name,
                Some(image.node.clone()),
                at,
            );
            if let Some(rec) = state.images.get_mut(name) {
                rec.pending = Some(PendingImageOp {
                    task_id,
                    op: op.clone(),
                });
            }
            Ok(CommandOutcome::TaskStarted { task_id })
        }
        ImageCommand::Settle {
            name,
            task_id,
            ok,
            size_gib,
        } => {
            let rec = state.images.get_mut(name).ok_or_else(|| {
                refused(RefusalCode::NotFound, format!("no image named {name:?}"))
            })?;
            let Some(pending) = rec.pending.take_if(|p| p.task_id == *task_id) else {
                return Err(refused(
                    RefusalCode::Conflict,
                    format!("image {name} has no pending operation of task {task_id}"),
                ));
            };
            match (pending.op, *ok) {
                (
                    ImageOp::Create { .. } | ImageOp::Clone { .. } | ImageOp::Convert { .. },
                    true,
                ) => rec.ready = true,
                (ImageOp::Upload, true) => {
                    rec.ready = true;
                    rec.size_gib = size_gib.unwrap_or(rec.size_gib);
                }
                (
                    ImageOp::Create { .. }
                    | ImageOp::Clone { .. }
                    | ImageOp::Upload
                    | ImageOp::Convert { .. },
                    false,
                ) => {
                    // The node made nothing (it rolls back what it started).
                    state.images.remove(name);
                }
                (ImageOp::MakeMaster, true) => rec.master = true,
                (ImageOp::Unmaster, true) => rec.master = false,
                (ImageOp::Snapshot { snapshot }, true) => rec.snapshots.push(snapshot),
                (ImageOp::Resize { size_gib }, true) => rec.size_gib = size_gib,
                // Standalone now: its master no longer counts it as a child.
                (ImageOp::Flatten, true) => rec.parent = None,
                (ImageOp::Remove, true) => {
                    state.images.remove(name);
                }
                (ImageOp::Revert { .. }, true) | (_, false) => {}
            }
            Ok(CommandOutcome::Done)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tasks::TaskCommand;
    use crate::state::{Command, Proposal};

    fn state() -> ClusterState {
        crate::state::tests::bootstrapped()
    }

    fn run(s: &mut ClusterState, cmd: ImageCommand) -> CommandOutcome {
        s.apply(&Proposal::new("user:admin", 100, Command::Image(cmd)))
    }

    fn task_of(o: &CommandOutcome) -> u64 {
        match o {
            CommandOutcome::TaskStarted { task_id } => *task_id,
            other => panic!("expected a task, got {other:?}"),
        }
    }

    fn settle(s: &mut ClusterState, name: &str, task_id: u64, ok: bool) {
        let o = run(
            s,
            ImageCommand::Settle {
                name: name.into(),
                task_id,
                ok,
                size_gib: None,
            },
        );
        assert_eq!(o, CommandOutcome::Done);
        s.apply(&Proposal::system(
            101,
            Command::Task(TaskCommand::Finish {
                id: task_id,
                ok,
                result: "x".into(),
            }),
        ));
    }

    fn create(s: &mut ClusterState, name: &str, gib: u64) -> u64 {
        let node = s.nodes.keys().next().cloned().unwrap_or_default();
        task_of(&run(
            s,
            ImageCommand::Create {
                pool: None,
                name: name.into(),
                owner: "admin".into(),
                node,
                size_gib: gib,
            },
        ))
    }

    fn act(s: &mut ClusterState, name: &str, op: ImageOp) -> CommandOutcome {
        run(
            s,
            ImageCommand::Act {
                name: name.into(),
                work: op,
            },
        )
    }

    fn code(o: &CommandOutcome) -> Option<RefusalCode> {
        match o {
            CommandOutcome::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }

    #[test]
    fn commands_round_trip_through_json() {
        // The Raft log carries commands as JSON: every field must survive next to the tags.
        let cmds = [
            Command::Image(ImageCommand::Act {
                name: "a".into(),
                work: ImageOp::Snapshot {
                    snapshot: "s".into(),
                },
            }),
            Command::Image(ImageCommand::Create {
                pool: None,
                name: "a".into(),
                owner: "o".into(),
                node: "n".into(),
                size_gib: 1,
            }),
        ];
        for c in cmds {
            let json = serde_json::to_string(&c).unwrap_or_default();
            let back: Result<Command, _> = serde_json::from_str(&json);
            assert_eq!(back.ok(), Some(c), "{json}");
        }
    }

    #[test]
    fn new_operations_round_trip_and_old_entries_still_parse() {
        let cmds = [
            Command::Image(ImageCommand::Act {
                name: "a".into(),
                work: ImageOp::Flatten,
            }),
            Command::Image(ImageCommand::Convert {
                pool: None,
                name: "b".into(),
                from: "a".into(),
                owner: "o".into(),
                compress: true,
            }),
        ];
        for c in cmds {
            let json = serde_json::to_string(&c).unwrap_or_default();
            let back: Result<Command, _> = serde_json::from_str(&json);
            assert_eq!(back.ok(), Some(c), "{json}");
        }
        // A log entry written before these operations existed reads as it did.
        let old = serde_json::to_value(Command::Image(ImageCommand::Act {
            name: "a".into(),
            work: ImageOp::Resize { size_gib: 2 },
        }))
        .unwrap_or_default();
        let back: Result<Command, _> = serde_json::from_value(old);
        assert!(matches!(
            back,
            Ok(Command::Image(ImageCommand::Act {
                work: ImageOp::Resize { size_gib: 2 },
                ..
            }))
        ));
        // `compress` may be left out.
        let op: Result<ImageOp, _> = serde_json::from_str(r#"{"image_work":"convert","from":"a"}"#);
        assert_eq!(
            op.ok(),
            Some(ImageOp::Convert {
                from: "a".into(),
                compress: false
            })
        );
        assert_eq!(ImageOp::Flatten.kind(), "image.flatten");
        assert!(ImageOp::Flatten.copies_data() && !ImageOp::Remove.copies_data());
    }

    #[test]
    fn names_are_checked() {
        assert!(check_image_name("image", "debian-12.qcow").is_ok());
        for bad in ["", "-a", ".a", "A", "a/b", "web-disk0", &"a".repeat(65)] {
            assert!(check_image_name("image", bad).is_err(), "{bad:?}");
        }
        assert!(check_image_name("snapshot", "web-disk0").is_ok());
        assert!(check_image_size(0).is_err());
        assert!(check_image_size(IMAGE_MAX_GIB + 1).is_err());
    }

    #[test]
    fn create_is_settled_by_the_node() {
        let mut s = state();
        let t = create(&mut s, "base", 2);
        assert!(!s.images["base"].ready);
        // Busy until settled.
        assert_eq!(
            code(&act(&mut s, "base", ImageOp::MakeMaster)),
            Some(RefusalCode::Conflict)
        );
        settle(&mut s, "base", t, true);
        assert!(s.images["base"].ready);
        assert!(s.images["base"].pending.is_none());
        // A failed create leaves nothing.
        let t = create(&mut s, "broken", 1);
        settle(&mut s, "broken", t, false);
        assert!(!s.images.contains_key("broken"));
        // A settle for another task is refused.
        let o = run(
            &mut s,
            ImageCommand::Settle {
                name: "base".into(),
                task_id: 999,
                ok: true,
                size_gib: None,
            },
        );
        assert_eq!(code(&o), Some(RefusalCode::Conflict));
    }

    #[test]
    fn masters_clones_and_their_rules() {
        let mut s = state();
        let t = create(&mut s, "base", 2);
        settle(&mut s, "base", t, true);
        let clone = |s: &mut ClusterState| {
            run(
                s,
                ImageCommand::Clone {
                    node: None,
                    pool: None,
                    name: "child".into(),
                    from: "base".into(),
                    owner: "admin".into(),
                },
            )
        };
        assert_eq!(code(&clone(&mut s)), Some(RefusalCode::InvalidState));
        let t = task_of(&act(&mut s, "base", ImageOp::MakeMaster));
        settle(&mut s, "base", t, true);
        assert!(s.images["base"].master);
        let t = task_of(&clone(&mut s));
        settle(&mut s, "child", t, true);
        assert_eq!(s.images["child"].parent.as_deref(), Some("base"));
        assert_eq!(s.images["child"].size_gib, 2);
        // A master with a child can be neither removed nor unmastered, nor snapshotted.
        for op in [ImageOp::Remove, ImageOp::Unmaster] {
            assert_eq!(
                code(&act(&mut s, "base", op)),
                Some(RefusalCode::InvalidState)
            );
        }
        let snap = ImageOp::Snapshot {
            snapshot: "s1".into(),
        };
        assert_eq!(
            code(&act(&mut s, "base", snap.clone())),
            Some(RefusalCode::InvalidState)
        );
        // The child: snapshot, revert, grow.
        let t = task_of(&act(&mut s, "child", snap.clone()));
        settle(&mut s, "child", t, true);
        assert_eq!(s.images["child"].snapshots, ["s1"]);
        assert_eq!(
            code(&act(&mut s, "child", snap)),
            Some(RefusalCode::NameTaken)
        );
        let missing = ImageOp::Revert {
            snapshot: "nope".into(),
        };
        assert_eq!(
            code(&act(&mut s, "child", missing)),
            Some(RefusalCode::NotFound)
        );
        let shrink = ImageOp::Resize { size_gib: 1 };
        assert_eq!(
            code(&act(&mut s, "child", shrink)),
            Some(RefusalCode::Invalid)
        );
        let t = task_of(&act(&mut s, "child", ImageOp::Resize { size_gib: 5 }));
        settle(&mut s, "child", t, true);
        assert_eq!(s.images["child"].size_gib, 5);
        // Removing the child frees the master.
        let t = task_of(&act(&mut s, "child", ImageOp::Remove));
        settle(&mut s, "child", t, true);
        assert!(!s.images.contains_key("child"));
        let t = task_of(&act(&mut s, "base", ImageOp::Unmaster));
        settle(&mut s, "base", t, true);
        assert!(!s.images["base"].master);
    }

    /// A ready master `base` (2 GiB) with a ready clone `child`.
    fn master_and_child(s: &mut ClusterState) {
        let t = create(s, "base", 2);
        settle(s, "base", t, true);
        let t = task_of(&act(s, "base", ImageOp::MakeMaster));
        settle(s, "base", t, true);
        let t = task_of(&run(
            s,
            ImageCommand::Clone {
                node: None,
                pool: None,
                name: "child".into(),
                from: "base".into(),
                owner: "admin".into(),
            },
        ));
        settle(s, "child", t, true);
    }

    fn message(o: &CommandOutcome) -> String {
        match o {
            CommandOutcome::Refused { message, .. } => message.clone(),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn flattening_a_child_frees_its_master() {
        let mut s = state();
        master_and_child(&mut s);
        // The master itself has nothing to fold in.
        let o = act(&mut s, "base", ImageOp::Flatten);
        assert_eq!(code(&o), Some(RefusalCode::InvalidState));
        assert!(message(&o).contains("is the base of images child"), "{o:?}");
        let t = task_of(&act(&mut s, "child", ImageOp::Flatten));
        assert_eq!(s.tasks[&t].kind, "image.flatten");
        // Until the node has done it, the child still uses the master.
        assert_eq!(
            code(&act(&mut s, "base", ImageOp::Unmaster)),
            Some(RefusalCode::InvalidState)
        );
        assert_eq!(
            code(&act(&mut s, "child", ImageOp::Flatten)),
            Some(RefusalCode::Conflict)
        );
        settle(&mut s, "child", t, true);
        assert_eq!(s.images["child"].parent, None);
        assert_eq!(children(&s, "base").count(), 0);
        let t = task_of(&act(&mut s, "base", ImageOp::Unmaster));
        settle(&mut s, "base", t, true);
        assert!(!s.images["base"].master);
        // An image without a master (even one with snapshots): accepted, the node finds
        // nothing to do.
        let snap = ImageOp::Snapshot {
            snapshot: "s1".into(),
        };
        let t = task_of(&act(&mut s, "child", snap));
        settle(&mut s, "child", t, true);
        let t = task_of(&act(&mut s, "child", ImageOp::Flatten));
        settle(&mut s, "child", t, true);
        assert_eq!(s.images["child"].parent, None);
        assert_eq!(s.images["child"].snapshots, ["s1"]);
    }

    #[test]
    fn flatten_refusals_change_nothing() {
        let mut s = state();
        master_and_child(&mut s);
        // A master without children: it has no master of its own.
        let t = create(&mut s, "lone", 1);
        settle(&mut s, "lone", t, true);
        let t = task_of(&act(&mut s, "lone", ImageOp::MakeMaster));
        settle(&mut s, "lone", t, true);
        let o = act(&mut s, "lone", ImageOp::Flatten);
        assert_eq!(code(&o), Some(RefusalCode::InvalidState));
        assert!(message(&o).contains("no master of its own"), "{o:?}");
        // A child with snapshots would lose them.
        let snap = ImageOp::Snapshot {
            snapshot: "s1".into(),
        };
        let t = task_of(&act(&mut s, "child", snap));
        settle(&mut s, "child", t, true);
        let before = s.images.clone();
        let o = act(&mut s, "child", ImageOp::Flatten);
        assert_eq!(code(&o), Some(RefusalCode::InvalidState));
        assert!(message(&o).contains("snapshots (s1)"), "{o:?}");
        // An unknown image.
        assert_eq!(
            code(&act(&mut s, "ghost", ImageOp::Flatten)),
            Some(RefusalCode::NotFound)
        );
        assert_eq!(s.images, before);
        // A failed flatten leaves the child a child.
        let mut s = state();
        master_and_child(&mut s);
        let t = task_of(&act(&mut s, "child", ImageOp::Flatten));
        settle(&mut s, "child", t, false);
        assert_eq!(s.images["child"].parent.as_deref(), Some("base"));
    }

    fn convert(s: &mut ClusterState, name: &str, from: &str, owner: &str) -> CommandOutcome {
        run(
            s,
            ImageCommand::Convert {
                pool: None,
                name: name.into(),
                from: from.into(),
                owner: owner.into(),
                compress: true,
            },
        )
    }

    #[test]
    fn convert_makes_a_new_standalone_image() {
        let mut s = state();
        master_and_child(&mut s);
        let t = task_of(&convert(&mut s, "copy", "child", "admin"));
        let copy = &s.images["copy"];
        assert_eq!(
            (
                copy.ready,
                copy.parent.as_deref(),
                copy.size_gib,
                copy.owner.as_str()
            ),
            (false, None, 2, "admin")
        );
        assert_eq!(copy.node, s.images["child"].node);
        assert_eq!(s.tasks[&t].kind, "image.convert");
        // The source is busy while it is read: no other operation, no second conversion.
        assert_eq!(busy_with(&s, &s.images["child"]), Some(t));
        assert_eq!(
            code(&act(&mut s, "child", ImageOp::Remove)),
            Some(RefusalCode::Conflict)
        );
        assert_eq!(
            code(&convert(&mut s, "copy2", "child", "admin")),
            Some(RefusalCode::Conflict)
        );
        settle(&mut s, "copy", t, true);
        assert!(s.images["copy"].ready && s.images["copy"].pending.is_none());
        assert_eq!(busy_with(&s, &s.images["child"]), None);
        assert_eq!(s.images["child"].parent.as_deref(), Some("base"));
        // A master converts too; a failed conversion leaves nothing.
        let t = task_of(&convert(&mut s, "copy2", "base", "admin"));
        settle(&mut s, "copy2", t, false);
        assert!(!s.images.contains_key("copy2"));
    }

    #[test]
    fn convert_refusals_change_nothing() {
        let mut s = state();
        master_and_child(&mut s);
        let before = s.images.clone();
        let cases = [
            (
                convert(&mut s, "child", "base", "admin"),
                RefusalCode::NameTaken,
            ),
            (
                convert(&mut s, "new", "ghost", "admin"),
                RefusalCode::NotFound,
            ),
            (
                convert(&mut s, "Bad/Name", "base", "admin"),
                RefusalCode::Invalid,
            ),
            (
                convert(&mut s, "x-disk0", "base", "admin"),
                RefusalCode::Invalid,
            ),
            (
                convert(&mut s, "new", "base", "nobody"),
                RefusalCode::NotFound,
            ),
        ];
        for (o, want) in cases {
            assert_eq!(code(&o), Some(want), "{o:?}");
        }
        if let Some(u) = s.users.get_mut("admin") {
            u.quotas.storage_gib = Some(5);
        }
        // 2 (base) + 2 (child) in use, 2 more asked.
        assert_eq!(
            code(&convert(&mut s, "new", "child", "admin")),
            Some(RefusalCode::QuotaExceeded)
        );
        assert_eq!(s.images, before);
    }

    #[test]
    fn quotas_count_images() {
        let mut s = state();
        if let Some(u) = s.users.get_mut("admin") {
            u.quotas.storage_gib = Some(3);
        }
        let t = create(&mut s, "a", 2);
        settle(&mut s, "a", t, true);
        let node = s.nodes.keys().next().cloned().unwrap_or_default();
        let o = run(
            &mut s,
            ImageCommand::Create {
                pool: None,
                name: "b".into(),
                owner: "admin".into(),
                node,
                size_gib: 2,
            },
        );
        assert_eq!(code(&o), Some(RefusalCode::QuotaExceeded));
        assert!(!s.images.contains_key("b"));
    }

    #[test]
    fn a_cancelled_task_does_not_block_the_image() {
        let mut s = state();
        let t = create(&mut s, "a", 1);
        settle(&mut s, "a", t, true);
        let t = task_of(&act(&mut s, "a", ImageOp::MakeMaster));
        s.apply(&Proposal::new(
            "user:admin",
            102,
            Command::Task(TaskCommand::Cancel { id: t }),
        ));
        task_of(&act(&mut s, "a", ImageOp::Remove));
    }
}
