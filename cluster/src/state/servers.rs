//! Servers (virtual machines) as the desired state records them: what each should be, where it
//! is placed, and whether it should run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ClusterState, CommandOutcome};

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

/// Changes to servers.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "server_op", rename_all = "snake_case")]
pub enum ServerCommand {}

impl ServerCommand {
    /// The operation and its target, for the audit log.
    pub fn describe(&self) -> (&'static str, String) {
        match *self {}
    }
}

pub(super) fn apply(
    _state: &mut ClusterState,
    cmd: &ServerCommand,
    _actor: &str,
    _at: u64,
) -> CommandOutcome {
    match *cmd {}
}

/// Servers by name.
pub type Servers = BTreeMap<String, ServerRecord>;
