//! Servers (virtual machines) as the desired state records them: what each should be, where it
//! is placed, and whether it should run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::tasks::open_task;
use super::{ClusterState, CommandOutcome, RefusalCode};

/// Whether a server should run.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PowerState {
    Running,
    Stopped,
    Suspended,
}

/// A device to boot from.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BootDevice {
    Disk,
    Cdrom,
    Network,
}

/// One disk of a server.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DiskSpec {
    /// The image (a master) the disk is a child of; `None`: a blank disk.
    #[serde(default)]
    pub image: Option<String>,
    pub size_gib: u64,
    /// Storage pool; `None`: the node-local default.
    #[serde(default)]
    pub pool: Option<String>,
}

/// One network interface of a server.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NicSpec {
    /// The connection (internal IP, external IP, ...) it is attached to.
    #[serde(default)]
    pub connection: Option<String>,
}

/// What a server is made of.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    pub memory_mib: u64,
    pub vcpus: u32,
    #[serde(default)]
    pub disks: Vec<DiskSpec>,
    #[serde(default)]
    pub nics: Vec<NicSpec>,
    #[serde(default)]
    pub boot_order: Vec<BootDevice>,
    /// Start when its node starts.
    #[serde(default)]
    pub autostart: bool,
    /// Only ever place it on this node.
    #[serde(default)]
    pub lock_to_node: Option<String>,
    /// Restart it elsewhere when its node dies (needs all disks on shared storage).
    #[serde(default)]
    pub ha: bool,
    /// An ISO image in the CD-ROM drive.
    #[serde(default)]
    pub iso: Option<String>,
}

impl ServerSpec {
    /// A server of `memory_mib` and `vcpus` with nothing else: no disks, no NICs, default boot
    /// order, not autostarted, not locked, not highly available, no ISO.
    pub fn new(memory_mib: u64, vcpus: u32) -> Self {
        ServerSpec {
            memory_mib,
            vcpus,
            disks: Vec::new(),
            nics: Vec::new(),
            boot_order: Vec::new(),
            autostart: false,
            lock_to_node: None,
            ha: false,
            iso: None,
        }
    }
}

/// A server in the desired state.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServerRecord {
    pub name: String,
    /// The user who owns it.
    pub owner: String,
    pub spec: ServerSpec,
    /// The node it is placed on.
    pub node: Option<String>,
    /// Whether it should run.
    pub desired: PowerState,
    pub created_at: u64,
    /// Bumped by every change, so agents and the reconciler can tell a new desire from an old one.
    pub generation: u64,
}

/// Default time an ACPI shutdown gets before the server is forced off.
pub const SHUTDOWN_FORCE_AFTER_SECS: u64 = 60;
/// Longest time a shutdown may wait before forcing (one hour).
pub const SHUTDOWN_FORCE_AFTER_MAX: u64 = 3600;
/// A `server.shutdown` task's first log line: this prefix and the seconds before forcing.
pub const FORCE_AFTER_PREFIX: &str = "acpi shutdown, force off after secs: ";

/// Seconds a `server.shutdown` task waits after the ACPI request before forcing the server off.
pub fn shutdown_force_after(task: &super::TaskRecord) -> u64 {
    task.log
        .iter()
        .find_map(|l| l.strip_prefix(FORCE_AFTER_PREFIX)?.parse().ok())
        .unwrap_or(SHUTDOWN_FORCE_AFTER_SECS)
}

/// Longest server or node name.
pub const NAME_MAX: usize = 63;

/// One server to move while evacuating a node: the leader's scheduler chose `to`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PlannedMove {
    pub server: String,
    pub to: String,
}

/// Changes to servers, and to node maintenance (which decides where servers may go).
///
/// The leader decides every placement (with the scheduler) before proposing; `apply` re-checks
/// what must still hold when the command is applied: the name is free, the node is a member and
/// not in maintenance, the server is not locked elsewhere, the owner's quotas still fit.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "server_op", rename_all = "snake_case")]
pub enum ServerCommand {
    /// Records a new server on `node`; `start`: it should run once created.
    Create {
        name: String,
        owner: String,
        spec: ServerSpec,
        node: String,
        #[serde(default)]
        start: bool,
    },
    Start {
        name: String,
    },
    /// ACPI shutdown, forced off after `force_after_secs`.
    Shutdown {
        name: String,
        force_after_secs: u64,
    },
    /// Forced power off.
    Destroy {
        name: String,
    },
    Suspend {
        name: String,
    },
    Resume {
        name: String,
    },
    Reboot {
        name: String,
    },
    /// Moves the server to `to` (chosen or checked by the scheduler).
    Move {
        name: String,
        to: String,
    },
    /// Restarts a highly available server on `to` because its node `from` is lost (proposed by the
    /// leader's reconciler only after `from` had time to fence itself). Refused when the server
    /// is no longer on `from`: a newer change won.
    Failover {
        name: String,
        from: String,
        to: String,
    },
    AttachDisk {
        name: String,
        disk: DiskSpec,
    },
    /// Detaches the disk at `index` in the server's disk list.
    DetachDisk {
        name: String,
        index: usize,
    },
    MountIso {
        name: String,
        iso: String,
    },
    UnmountIso {
        name: String,
    },
    /// Removes the server (its node destroys it and deletes its disks).
    Remove {
        name: String,
    },
    /// Puts a node in maintenance: nothing new is placed on it.
    MaintenanceOn {
        node: String,
    },
    MaintenanceOff {
        node: String,
    },
    /// Puts a node in maintenance and moves each of its servers as planned.
    Evacuate {
        node: String,
        moves: Vec<PlannedMove>,
    },
}

impl ServerCommand {
    /// The operation and its target, for the audit log.
    pub fn describe(&self) -> (&'static str, String) {
        use ServerCommand as C;
        match self {
            C::Create { name, .. } => ("server.create", name.clone()),
            C::Start { name } => ("server.start", name.clone()),
            C::Shutdown { name, .. } => ("server.shutdown", name.clone()),
            C::Destroy { name } => ("server.destroy", name.clone()),
            C::Suspend { name } => ("server.suspend", name.clone()),
            C::Resume { name } => ("server.resume", name.clone()),
            C::Reboot { name } => ("server.reboot", name.clone()),
            C::Move { name, .. } => ("server.move", name.clone()),
            C::Failover { name, .. } => ("server.failover", name.clone()),
            C::AttachDisk { name, .. } => ("server.attach_disk", name.clone()),
            C::DetachDisk { name, .. } => ("server.detach_disk", name.clone()),
            C::MountIso { name, .. } => ("server.mount_iso", name.clone()),
            C::UnmountIso { name } => ("server.unmount_iso", name.clone()),
            C::Remove { name } => ("server.remove", name.clone()),
            C::MaintenanceOn { node } => ("node.maintenance.on", node.clone()),
            C::MaintenanceOff { node } => ("node.maintenance.off", node.clone()),
            C::Evacuate { node, .. } => ("node.evacuate", node.clone()),
        }
    }
}

/// Checks a server name: 1 to [`NAME_MAX`] characters of `a-z 0-9 -`, starting with a letter
/// or digit (it becomes a libvirt domain name and a host name).
pub fn check_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if name.is_empty() || name.len() > NAME_MAX || !ok_chars || name.starts_with('-') {
        return Err(format!(
            "invalid server name {name:?}: use 1 to {NAME_MAX} of a-z, 0-9 and '-', not starting with '-'"
        ));
    }
    Ok(())
}

/// Checks a spec's figures (sizes, counts) without looking at the cluster.
pub fn check_spec(spec: &ServerSpec) -> Result<(), String> {
    if !(16..=4 << 20).contains(&spec.memory_mib) {
        return Err(format!(
            "memory_mib must be between 16 and {} (4 TiB), not {}",
            4u64 << 20,
            spec.memory_mib
        ));
    }
    if !(1..=512).contains(&spec.vcpus) {
        return Err(format!(
            "vcpus must be between 1 and 512, not {}",
            spec.vcpus
        ));
    }
    if spec.disks.len() > 16 {
        return Err("at most 16 disks".into());
    }
    for d in &spec.disks {
        check_disk(d)?;
    }
    if spec.nics.len() > 8 {
        return Err("at most 8 network interfaces".into());
    }
    if spec.boot_order.len() > 3 {
        return Err("boot_order lists at most 3 devices".into());
    }
    if let Some(iso) = &spec.iso {
        check_ref("iso", iso)?;
    }
    Ok(())
}

fn check_disk(d: &DiskSpec) -> Result<(), String> {
    if !(1..=64 * 1024).contains(&d.size_gib) {
        return Err(format!(
            "disk size_gib must be between 1 and 65536, not {}",
            d.size_gib
        ));
    }
    if let Some(i) = &d.image {
        check_ref("image", i)?;
    }
    if let Some(p) = &d.pool {
        check_ref("pool", p)?;
    }
    Ok(())
}

fn check_ref(what: &str, v: &str) -> Result<(), String> {
    let ok = !v.is_empty()
        && v.len() <= 255
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !v.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid {what} {v:?}: use 1 to 255 of letters, digits, '-', '_' and '.'"
        ))
    }
}

/// What a spec takes: memory (MiB), vCPUs, storage (GiB).
pub fn footprint(spec: &ServerSpec) -> (u64, u64, u64) {
    (
        spec.memory_mib,
        spec.vcpus as u64,
        spec.disks.iter().map(|d| d.size_gib).sum(),
    )
}

/// Storage (GiB) of `owner`'s servers' disks.
pub fn storage_gib_of(state: &ClusterState, owner: &str) -> u64 {
    state
        .servers
        .values()
        .filter(|s| s.owner == owner)
        .map(|s| footprint(&s.spec).2)
        .sum()
}

/// Refuses when `owner`'s servers (but `except`) and images plus `extra` would exceed the owner's
/// quotas.
pub(super) fn check_quota(
    state: &ClusterState,
    owner: &str,
    except: Option<&str>,
    extra: (u64, u64, u64),
) -> Result<(), CommandOutcome> {
    let Some(user) = state.users.get(owner) else {
        return Err(CommandOutcome::refused(
            RefusalCode::NotFound,
            format!("no user named {owner:?}"),
        ));
    };
    let (mut mem, mut cpu, mut disk) = extra;
    disk += super::images::owned_gib(state, owner);
    for s in state
        .servers
        .values()
        .filter(|s| s.owner == owner && Some(s.name.as_str()) != except)
    {
        let (m, c, d) = footprint(&s.spec);
        mem += m;
        cpu += c;
        disk += d;
    }
    let q = &user.quotas;
    let checks = [
        ("memory", mem, q.memory_mib, extra.0, "MiB"),
        ("vCPUs", cpu, q.vcpus.map(u64::from), extra.1, ""),
        ("storage", disk, q.storage_gib, extra.2, "GiB"),
    ];
    for (what, total, limit, asked, unit) in checks {
        if let Some(limit) = limit {
            if total > limit {
                let unit = if unit.is_empty() {
                    String::new()
                } else {
                    format!(" {unit}")
                };
                return Err(CommandOutcome::refused(
                    RefusalCode::QuotaExceeded,
                    format!(
                        "{owner}'s {what} quota is {limit}{unit}: {} in use, {asked} more asked",
                        total - asked
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Refuses when no server has this name.
fn existing<'a>(state: &'a ClusterState, name: &str) -> Result<&'a ServerRecord, CommandOutcome> {
    state.servers.get(name).ok_or_else(|| {
        CommandOutcome::refused(RefusalCode::NotFound, format!("no server named {name:?}"))
    })
}

/// Refuses when `node` cannot take `server` (not a member, in maintenance, locked elsewhere).
fn check_target(state: &ClusterState, node: &str, spec: &ServerSpec) -> Result<(), CommandOutcome> {
    if !state.nodes.contains_key(node) {
        return Err(CommandOutcome::refused(
            RefusalCode::NotFound,
            format!("no node named {node:?}"),
        ));
    }
    if state.maintenance.contains(node) {
        return Err(CommandOutcome::refused(
            RefusalCode::NodeUnavailable,
            format!("node {node} is in maintenance"),
        ));
    }
    if let Some(lock) = &spec.lock_to_node {
        if lock != node {
            return Err(CommandOutcome::refused(
                RefusalCode::NodeUnavailable,
                format!("the server is locked to node {lock}"),
            ));
        }
    }
    for pool in spec.disks.iter().filter_map(|d| d.pool.as_deref()) {
        if !super::pools::node_has_pool(state, node, pool) {
            return Err(CommandOutcome::refused(
                RefusalCode::NotFound,
                format!("node {node} has no pool named {pool:?}"),
            ));
        }
    }
    Ok(())
}

fn invalid(name: &str, what: &str) -> CommandOutcome {
    CommandOutcome::refused(RefusalCode::InvalidState, format!("server {name} {what}"))
}

/// Applies `change` to the server, bumps its generation and opens the task `kind`.
fn act(
    state: &mut ClusterState,
    name: &str,
    kind: &str,
    at: u64,
    change: impl FnOnce(&mut ServerRecord),
) -> CommandOutcome {
    let Some(rec) = state.servers.get_mut(name) else {
        return CommandOutcome::refused(RefusalCode::NotFound, format!("no server named {name:?}"));
    };
    change(rec);
    rec.generation += 1;
    let (owner, node) = (rec.owner.clone(), rec.node.clone());
    let task_id = open_task(state, &owner, kind, name, node, at);
    CommandOutcome::TaskStarted { task_id }
}

pub(super) fn apply(
    state: &mut ClusterState,
    cmd: &ServerCommand,
    _actor: &str,
    at: u64,
) -> CommandOutcome {
    match try_apply(state, cmd, at) {
        Ok(o) | Err(o) => o,
    }
}

fn try_apply(
    state: &mut ClusterState,
    cmd: &ServerCommand,
    at: u64,
) -> Result<CommandOutcome, CommandOutcome> {
    use ServerCommand as C;
    let bad = |m: String| CommandOutcome::refused(RefusalCode::Conflict, m);
    // Nothing changes a server while its disks are being backed up or restored.
    let acted_on = match cmd {
        C::Start { name }
        | C::Shutdown { name, .. }
        | C::Destroy { name }
        | C::Suspend { name }
        | C::Resume { name }
        | C::Reboot { name }
        | C::Move { name, .. }
        | C::AttachDisk { name, .. }
        | C::DetachDisk { name, .. }
        | C::MountIso { name, .. }
        | C::UnmountIso { name }
        | C::Remove { name } => Some(name),
        C::Create { .. }
        | C::Failover { .. }
        | C::MaintenanceOn { .. }
        | C::MaintenanceOff { .. }
        | C::Evacuate { .. } => None,
    };
    if let Some(name) = acted_on {
        let target = super::backups::BackupTarget::Server { name: name.clone() };
        if let Some(t) = super::backups::target_busy_with(state, &target) {
            return Err(bad(format!(
                "server {name} is busy with backup task {t}: wait for it to end"
            )));
        }
    }
    Ok(match cmd {
        C::Create {
            name,
            owner,
            spec,
            node,
            start,
        } => {
            check_name(name).map_err(bad)?;
            check_spec(spec).map_err(bad)?;
            if state.servers.contains_key(name) {
                return Err(CommandOutcome::refused(
                    RefusalCode::NameTaken,
                    format!("a server named {name:?} already exists"),
                ));
            }
            check_target(state, node, spec)?;
            check_quota(state, owner, None, footprint(spec))?;
            super::connections::check_nics(state, name, owner, &spec.nics)?;
            state.servers.insert(
                name.clone(),
                ServerRecord {
                    name: name.clone(),
                    owner: owner.clone(),
                    spec: spec.clone(),
                    node: Some(node.clone()),
                    desired: if *start {
                        PowerState::Running
                    } else {
                        PowerState::Stopped
                    },
                    created_at: at,
                    generation: 1,
                },
            );
            let task_id = open_task(state, owner, "server.create", name, Some(node.clone()), at);
            CommandOutcome::TaskStarted { task_id }
        }
        C::Start { name } => {
            if existing(state, name)?.desired == PowerState::Suspended {
                return Err(invalid(name, "is suspended: resume it"));
            }
            act(state, name, "server.start", at, |r| {
                r.desired = PowerState::Running
            })
        }
        C::Shutdown {
            name,
            force_after_secs,
        } => {
            existing(state, name)?;
            if *force_after_secs > SHUTDOWN_FORCE_AFTER_MAX {
                return Err(bad(format!(
                    "force_after_secs is at most {SHUTDOWN_FORCE_AFTER_MAX}"
                )));
            }
            let out = act(state, name, "server.shutdown", at, |r| {
                r.desired = PowerState::Stopped
            });
            if let CommandOutcome::TaskStarted { task_id } = &out {
                if let Some(t) = state.tasks.get_mut(task_id) {
                    t.log
                        .push(format!("{FORCE_AFTER_PREFIX}{force_after_secs}"));
                }
            }
            out
        }
        C::Destroy { name } => {
            existing(state, name)?;
            act(state, name, "server.destroy", at, |r| {
                r.desired = PowerState::Stopped
            })
        }
        C::Suspend { name } => {
            if existing(state, name)?.desired != PowerState::Running {
                return Err(invalid(name, "is not running"));
            }
            act(state, name, "server.suspend", at, |r| {
                r.desired = PowerState::Suspended
            })
        }
        C::Resume { name } => {
            if existing(state, name)?.desired != PowerState::Suspended {
                return Err(invalid(name, "is not suspended"));
            }
            act(state, name, "server.resume", at, |r| {
                r.desired = PowerState::Running
            })
        }
        C::Reboot { name } => {
            if existing(state, name)?.desired != PowerState::Running {
                return Err(invalid(name, "is not running"));
            }
            act(state, name, "server.reboot", at, |_| {})
        }
        C::Move { name, to } => {
            let rec = existing(state, name)?;
            if rec.node.as_deref() == Some(to.as_str()) {
                return Err(invalid(name, &format!("is already on {to}")));
            }
            check_target(state, to, &rec.spec)?;
            let from = rec.node.clone();
            let task = act(state, name, "server.move", at, |r| {
                r.node = Some(to.clone())
            });
            // The source node does the work; the record already names the destination.
            if let CommandOutcome::TaskStarted { task_id } = &task {
                if let Some(t) = state.tasks.get_mut(task_id) {
                    t.node = from.clone();
                    t.log.push(format!(
                        "move from {} to {to}",
                        from.as_deref().unwrap_or("nowhere")
                    ));
                }
            }
            task
        }
        C::Failover { name, from, to } => {
            let rec = existing(state, name)?;
            if rec.node.as_deref() != Some(from.as_str()) {
                return Err(invalid(name, &format!("is no longer on {from}")));
            }
            check_target(state, to, &rec.spec)?;
            let task = act(state, name, "server.failover", at, |r| {
                r.node = Some(to.clone())
            });
            // The destination does the work: the source is gone.
            if let CommandOutcome::TaskStarted { task_id } = &task {
                if let Some(t) = state.tasks.get_mut(task_id) {
                    t.log
                        .push(format!("node {from} is lost: restarting on {to}"));
                }
            }
            task
        }
        C::AttachDisk { name, disk } => {
            check_disk(disk).map_err(bad)?;
            let rec = existing(state, name)?;
            if rec.spec.disks.len() >= 16 {
                return Err(bad("at most 16 disks".into()));
            }
            let owner = rec.owner.clone();
            check_quota(state, &owner, None, (0, 0, disk.size_gib))?;
            act(state, name, "server.attach_disk", at, |r| {
                r.spec.disks.push(disk.clone())
            })
        }
        C::DetachDisk { name, index } => {
            if *index >= existing(state, name)?.spec.disks.len() {
                return Err(CommandOutcome::refused(
                    RefusalCode::NotFound,
                    format!("server {name} has no disk {index}"),
                ));
            }
            act(state, name, "server.detach_disk", at, |r| {
                r.spec.disks.remove(*index);
            })
        }
        C::MountIso { name, iso } => {
            check_ref("iso", iso).map_err(bad)?;
            existing(state, name)?;
            act(state, name, "server.mount_iso", at, |r| {
                r.spec.iso = Some(iso.clone())
            })
        }
        C::UnmountIso { name } => {
            if existing(state, name)?.spec.iso.is_none() {
                return Err(invalid(name, "has no ISO mounted"));
            }
            act(state, name, "server.unmount_iso", at, |r| r.spec.iso = None)
        }
        C::Remove { name } => {
            let rec = existing(state, name)?.clone();
            if let Some(stack) = super::stacks::stack_of(state, name) {
                return Err(bad(format!(
                    "server {name} belongs to stack {0}: its servers are removed with it (skiff stack remove {0})",
                    stack.name
                )));
            }
            state.servers.remove(name);
            let task_id = open_task(state, &rec.owner, "server.remove", name, rec.node, at);
            CommandOutcome::TaskStarted { task_id }
        }
        C::MaintenanceOn { node } | C::MaintenanceOff { node } => {
            if !state.nodes.contains_key(node) {
                return Err(CommandOutcome::refused(
                    RefusalCode::NotFound,
                    format!("no node named {node:?}"),
                ));
            }
            if matches!(cmd, C::MaintenanceOn { .. }) {
                state.maintenance.insert(node.clone());
            } else {
                state.maintenance.remove(node);
            }
            CommandOutcome::Done
        }
        C::Evacuate { node, moves } => {
            if !state.nodes.contains_key(node) {
                return Err(CommandOutcome::refused(
                    RefusalCode::NotFound,
                    format!("no node named {node:?}"),
                ));
            }
            // Check every move first: nothing is changed unless all of them hold.
            let on_node: Vec<&String> = state
                .servers
                .values()
                .filter(|s| s.node.as_deref() == Some(node.as_str()))
                .map(|s| &s.name)
                .collect();
            for name in &on_node {
                if !moves.iter().any(|m| &&m.server == name) {
                    return Err(bad(format!(
                        "server {name} on {node} has no planned move (the state changed: retry)"
                    )));
                }
            }
            for m in moves {
                let rec = existing(state, &m.server)?;
                if rec.node.as_deref() != Some(node.as_str()) {
                    return Err(bad(format!(
                        "server {} is not on {node} (the state changed: retry)",
                        m.server
                    )));
                }
                if m.to == *node {
                    return Err(bad(format!(
                        "server {} cannot move to {node} itself",
                        m.server
                    )));
                }
                check_target(state, &m.to, &rec.spec)?;
            }
            state.maintenance.insert(node.clone());
            let mut first = None;
            for m in moves {
                let to = m.to.clone();
                if let CommandOutcome::TaskStarted { task_id } =
                    act(state, &m.server, "server.move", at, |r| r.node = Some(to))
                {
                    if let Some(t) = state.tasks.get_mut(&task_id) {
                        t.node = Some(node.clone());
                        t.log
                            .push(format!("move from {node} to {} (evacuation)", m.to));
                    }
                    first.get_or_insert(task_id);
                }
            }
            match first {
                Some(task_id) => CommandOutcome::TaskStarted { task_id },
                None => CommandOutcome::Done,
            }
        }
    })
}

/// Servers by name.
pub type Servers = BTreeMap<String, ServerRecord>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{
        Command, NodeRecord, NodeRole, Proposal, Quotas, TaskState, UserRecord, UserRole,
    };

    fn state() -> ClusterState {
        let mut s = ClusterState::default();
        for (i, n) in ["n1", "n2", "n3"].iter().enumerate() {
            s.nodes.insert(
                n.to_string(),
                NodeRecord {
                    id: i as u64 + 1,
                    name: n.to_string(),
                    addr: format!("127.0.0.1:{}", 7000 + i).parse().unwrap(),
                    role: NodeRole::AdminEligible,
                    cert_serial: format!("s{i}"),
                    joined_at: 0,
                },
            );
        }
        for (name, role) in [("alice", UserRole::User), ("admin", UserRole::Admin)] {
            s.users.insert(
                name.into(),
                UserRecord {
                    name: name.into(),
                    role,
                    cert_serials: vec![],
                    disabled: false,
                    quotas: Quotas::default(),
                    ssh_keys: vec![],
                    api_tokens: vec![],
                },
            );
        }
        s
    }

    fn spec(mem: u64, cpus: u32, disk: u64) -> ServerSpec {
        ServerSpec {
            memory_mib: mem,
            vcpus: cpus,
            disks: vec![DiskSpec {
                image: None,
                size_gib: disk,
                pool: None,
            }],
            nics: vec![],
            boot_order: vec![],
            autostart: false,
            lock_to_node: None,
            ha: false,
            iso: None,
        }
    }

    fn run(s: &mut ClusterState, c: ServerCommand) -> CommandOutcome {
        s.apply(&Proposal::new("user:alice", 42, Command::Server(c)))
    }

    fn create(s: &mut ClusterState, name: &str, node: &str, sp: ServerSpec) -> CommandOutcome {
        run(
            s,
            ServerCommand::Create {
                name: name.into(),
                owner: "alice".into(),
                spec: sp,
                node: node.into(),
                start: false,
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
    fn create_records_and_opens_a_task() {
        let mut s = state();
        let out = create(&mut s, "web", "n1", spec(512, 1, 10));
        let CommandOutcome::TaskStarted { task_id } = out else {
            panic!("{out:?}")
        };
        let rec = &s.servers["web"];
        assert_eq!(
            (
                rec.node.as_deref(),
                rec.desired,
                rec.created_at,
                rec.generation
            ),
            (Some("n1"), PowerState::Stopped, 42, 1)
        );
        let t = &s.tasks[&task_id];
        assert_eq!(
            (
                t.kind.as_str(),
                t.target.as_str(),
                t.node.as_deref(),
                t.owner.as_str()
            ),
            ("server.create", "web", Some("n1"), "alice")
        );
        assert_eq!(t.state, TaskState::Queued);
        assert_eq!(s.audit.back().unwrap().op, "server.create");
    }

    #[test]
    fn create_refusals_leave_nothing_behind() {
        let mut s = state();
        create(&mut s, "web", "n1", spec(512, 1, 10));
        s.maintenance.insert("n2".into());
        let mut locked = spec(512, 1, 1);
        locked.lock_to_node = Some("n3".into());
        let cases: Vec<(&str, &str, ServerSpec, RefusalCode)> = vec![
            ("web", "n1", spec(512, 1, 1), RefusalCode::NameTaken),
            ("db", "n9", spec(512, 1, 1), RefusalCode::NotFound),
            ("db", "n2", spec(512, 1, 1), RefusalCode::NodeUnavailable),
            ("db", "n1", locked, RefusalCode::NodeUnavailable),
            ("Bad_Name", "n1", spec(512, 1, 1), RefusalCode::Conflict),
            ("db", "n1", spec(0, 1, 1), RefusalCode::Conflict),
            ("db", "n1", spec(512, 0, 1), RefusalCode::Conflict),
        ];
        for (name, node, sp, want) in cases {
            let before = (s.servers.clone(), s.tasks.clone());
            let out = create(&mut s, name, node, sp);
            assert_eq!(code(&out), Some(want), "{name} on {node}: {out:?}");
            assert_eq!((s.servers.clone(), s.tasks.clone()), before);
        }
    }

    #[test]
    fn quotas_are_enforced_over_all_the_owners_servers() {
        let mut s = state();
        s.users.get_mut("alice").unwrap().quotas = Quotas {
            memory_mib: Some(1024),
            vcpus: Some(3),
            storage_gib: Some(25),
            external_ips: None,
        };
        assert!(matches!(
            create(&mut s, "a", "n1", spec(512, 1, 10)),
            CommandOutcome::TaskStarted { .. }
        ));
        let cases = [
            (
                spec(1024, 1, 1),
                "memory quota is 1024 MiB: 512 in use, 1024 more asked",
            ),
            (spec(256, 3, 1), "vCPUs quota is 3: 1 in use, 3 more asked"),
            (
                spec(256, 1, 16),
                "storage quota is 25 GiB: 10 in use, 16 more asked",
            ),
        ];
        for (sp, msg) in cases {
            match create(&mut s, "b", "n2", sp) {
                CommandOutcome::Refused {
                    code: RefusalCode::QuotaExceeded,
                    message,
                } => assert!(message.contains(msg), "{message}"),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            create(&mut s, "b", "n2", spec(512, 2, 15)),
            CommandOutcome::TaskStarted { .. }
        ));
        let out = run(
            &mut s,
            ServerCommand::AttachDisk {
                name: "b".into(),
                disk: DiskSpec {
                    image: None,
                    size_gib: 1,
                    pool: None,
                },
            },
        );
        assert_eq!(code(&out), Some(RefusalCode::QuotaExceeded));
    }

    #[test]
    fn power_operations_follow_the_desired_state() {
        let mut s = state();
        create(&mut s, "web", "n1", spec(512, 1, 1));
        let n = |name: &str| ServerCommand::Start { name: name.into() };
        let steps: Vec<(ServerCommand, Option<RefusalCode>, PowerState)> = vec![
            (
                ServerCommand::Resume { name: "web".into() },
                Some(RefusalCode::InvalidState),
                PowerState::Stopped,
            ),
            (
                ServerCommand::Suspend { name: "web".into() },
                Some(RefusalCode::InvalidState),
                PowerState::Stopped,
            ),
            (
                ServerCommand::Reboot { name: "web".into() },
                Some(RefusalCode::InvalidState),
                PowerState::Stopped,
            ),
            (n("web"), None, PowerState::Running),
            (
                ServerCommand::Reboot { name: "web".into() },
                None,
                PowerState::Running,
            ),
            (
                ServerCommand::Suspend { name: "web".into() },
                None,
                PowerState::Suspended,
            ),
            (
                n("web"),
                Some(RefusalCode::InvalidState),
                PowerState::Suspended,
            ),
            (
                ServerCommand::Resume { name: "web".into() },
                None,
                PowerState::Running,
            ),
            (
                ServerCommand::Shutdown {
                    name: "web".into(),
                    force_after_secs: 30,
                },
                None,
                PowerState::Stopped,
            ),
            (n("web"), None, PowerState::Running),
            (
                ServerCommand::Destroy { name: "web".into() },
                None,
                PowerState::Stopped,
            ),
            (n("nope"), Some(RefusalCode::NotFound), PowerState::Stopped),
        ];
        for (cmd, want, desired) in steps {
            let (op, _) = cmd.describe();
            let gen = s.servers["web"].generation;
            let tasks = s.tasks.len();
            let out = run(&mut s, cmd);
            assert_eq!(code(&out), want, "{op}: {out:?}");
            assert_eq!(s.servers["web"].desired, desired, "{op}");
            if want.is_none() {
                let CommandOutcome::TaskStarted { task_id } = out else {
                    panic!()
                };
                assert_eq!(s.tasks[&task_id].kind, op);
                assert_eq!(s.servers["web"].generation, gen + 1, "{op}");
            } else {
                assert_eq!(s.tasks.len(), tasks, "{op}: a refusal opens no task");
            }
        }
        let shutdown = s
            .tasks
            .values()
            .find(|t| t.kind == "server.shutdown")
            .unwrap();
        assert_eq!(shutdown_force_after(shutdown), 30);
    }

    #[test]
    fn move_checks_the_target() {
        let mut s = state();
        create(&mut s, "web", "n1", spec(512, 1, 1));
        s.maintenance.insert("n3".into());
        let mv = |to: &str| ServerCommand::Move {
            name: "web".into(),
            to: to.into(),
        };
        assert_eq!(
            code(&run(&mut s, mv("n1"))),
            Some(RefusalCode::InvalidState)
        );
        assert_eq!(
            code(&run(&mut s, mv("n3"))),
            Some(RefusalCode::NodeUnavailable)
        );
        assert_eq!(code(&run(&mut s, mv("n7"))), Some(RefusalCode::NotFound));
        let CommandOutcome::TaskStarted { task_id } = run(&mut s, mv("n2")) else {
            panic!()
        };
        assert_eq!(s.servers["web"].node.as_deref(), Some("n2"));
        assert_eq!(
            s.tasks[&task_id].node.as_deref(),
            Some("n1"),
            "the source does the work"
        );
    }

    #[test]
    fn disks_iso_and_remove() {
        let mut s = state();
        create(&mut s, "web", "n1", spec(512, 1, 1));
        let disk = DiskSpec {
            image: None,
            size_gib: 5,
            pool: Some("local".into()),
        };
        assert!(matches!(
            run(
                &mut s,
                ServerCommand::AttachDisk {
                    name: "web".into(),
                    disk
                }
            ),
            CommandOutcome::TaskStarted { .. }
        ));
        assert_eq!(s.servers["web"].spec.disks.len(), 2);
        assert_eq!(
            code(&run(
                &mut s,
                ServerCommand::DetachDisk {
                    name: "web".into(),
                    index: 2
                }
            )),
            Some(RefusalCode::NotFound)
        );
        run(
            &mut s,
            ServerCommand::DetachDisk {
                name: "web".into(),
                index: 0,
            },
        );
        assert_eq!(s.servers["web"].spec.disks[0].size_gib, 5);
        assert_eq!(
            code(&run(
                &mut s,
                ServerCommand::UnmountIso { name: "web".into() }
            )),
            Some(RefusalCode::InvalidState)
        );
        run(
            &mut s,
            ServerCommand::MountIso {
                name: "web".into(),
                iso: "debian.iso".into(),
            },
        );
        assert_eq!(s.servers["web"].spec.iso.as_deref(), Some("debian.iso"));
        let CommandOutcome::TaskStarted { task_id } =
            run(&mut s, ServerCommand::Remove { name: "web".into() })
        else {
            panic!()
        };
        assert!(s.servers.is_empty());
        assert_eq!(s.tasks[&task_id].kind, "server.remove");
        assert_eq!(s.tasks[&task_id].node.as_deref(), Some("n1"));
    }

    #[test]
    fn maintenance_and_evacuation() {
        let mut s = state();
        create(&mut s, "a", "n1", spec(512, 1, 1));
        create(&mut s, "b", "n1", spec(512, 1, 1));
        create(&mut s, "c", "n2", spec(512, 1, 1));
        assert_eq!(
            run(&mut s, ServerCommand::MaintenanceOn { node: "n3".into() }),
            CommandOutcome::Done
        );
        assert!(s.maintenance.contains("n3"));
        assert_eq!(
            code(&run(
                &mut s,
                ServerCommand::MaintenanceOn { node: "zz".into() }
            )),
            Some(RefusalCode::NotFound)
        );
        let plan = |pairs: &[(&str, &str)]| ServerCommand::Evacuate {
            node: "n1".into(),
            moves: pairs
                .iter()
                .map(|(a, b)| PlannedMove {
                    server: a.to_string(),
                    to: b.to_string(),
                })
                .collect(),
        };
        // A plan missing a server, one aiming at a node in maintenance, one moving a server that
        // is elsewhere: all refused, nothing changed.
        for bad in [
            plan(&[("a", "n2")]),
            plan(&[("a", "n2"), ("b", "n3")]),
            plan(&[("a", "n2"), ("b", "n2"), ("c", "n2")]),
        ] {
            let before = s.clone().servers;
            assert!(code(&run(&mut s, bad)).is_some());
            assert_eq!(s.servers, before);
            assert!(!s.maintenance.contains("n1"));
        }
        let CommandOutcome::TaskStarted { task_id } =
            run(&mut s, plan(&[("a", "n2"), ("b", "n2")]))
        else {
            panic!()
        };
        assert!(s.maintenance.contains("n1"));
        assert_eq!(s.servers["a"].node.as_deref(), Some("n2"));
        assert_eq!(s.servers["b"].node.as_deref(), Some("n2"));
        assert_eq!(s.tasks[&task_id].kind, "server.move");
        assert_eq!(s.tasks[&(task_id + 1)].target, "b");
        assert_eq!(
            run(&mut s, ServerCommand::MaintenanceOff { node: "n1".into() }),
            CommandOutcome::Done
        );
        assert!(!s.maintenance.contains("n1"));
        assert_eq!(
            run(&mut s, plan(&[])),
            CommandOutcome::Done,
            "an empty node is just put in maintenance"
        );
    }

    #[test]
    fn wire_format_is_tagged() {
        let c = ServerCommand::Start { name: "w".into() };
        let v = serde_json::to_value(Command::Server(c.clone())).unwrap();
        assert_eq!(v["op"], "server");
        assert_eq!(v["server_op"], "start");
        assert_eq!(
            serde_json::from_value::<Command>(v).unwrap(),
            Command::Server(c)
        );
    }

    #[test]
    fn names() {
        for ok in ["a", "web-1", "0x", &"a".repeat(63)] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "A", "a_b", "a.b", "a b", &"a".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
