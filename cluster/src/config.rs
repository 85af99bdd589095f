//! The node configuration file (`DATA_DIR/node.toml`) and the node's own facts (`node-state.json`).
//!
//! Unknown keys are refused with the key named, so a typo never silently falls back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::state::NodeId;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// How the hypervisor runs guests.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Accelerator {
    /// KVM when `/dev/kvm` is usable, TCG otherwise.
    #[default]
    Auto,
    Kvm,
    Tcg,
}

/// Which hypervisor a compute node drives.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HypervisorKind {
    /// libvirt when `libvirt_uri` answers at start, else the in-memory fake (with a warning).
    #[default]
    Auto,
    Libvirt,
    /// In memory: nothing runs (tests, and machines without libvirt).
    Fake,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The node's name (1-63 characters a-z, 0-9, '-').
    pub name: String,
    /// QUIC (UDP) address for node-to-node traffic; the HTTPS API listens on the same port (TCP).
    pub listen: SocketAddr,
    /// Address other nodes use to reach this one, when it differs from `listen` (e.g. 0.0.0.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise: Option<SocketAddr>,
    /// Whether this node may hold a Raft replica and become the admin node.
    pub admin_eligible: bool,
    /// QUIC addresses of other nodes to gossip with at start.
    #[serde(default)]
    pub seeds: Vec<String>,
    #[serde(default)]
    pub gossip: GossipSettings,
    #[serde(default)]
    pub raft: RaftSettings,
    #[serde(default)]
    pub compute: ComputeSettings,
    /// Overcommit rules the scheduler applies while this node leads. Keep them the same on every
    /// admin-eligible node: the leader's own file is the one in force.
    #[serde(default)]
    pub scheduler: SchedulerSettings,
    #[serde(default)]
    pub ha: HaSettings,
    #[serde(default, skip_serializing_if = "SshSettings::is_default")]
    pub ssh: SshSettings,
}

/// `[ssh]`: the cockpit served over SSH by the leader (see docs/design/ssh-cockpit.md).
///
/// Off unless `listen` is set. Only the node running leader services listens; give every
/// admin-eligible node the same setting so that the cockpit follows the leader.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SshSettings {
    /// TCP address (`HOST:PORT`) the SSH cockpit listens on while this node leads; unset: no
    /// SSH cockpit on this node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// Most SSH connections served at once (authenticated or not); more are refused at once.
    /// Unset: [`SshSettings::DEFAULT_MAX_CONNECTIONS`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
}

impl SshSettings {
    pub const DEFAULT_MAX_CONNECTIONS: usize = 64;

    pub fn is_default(&self) -> bool {
        *self == SshSettings::default()
    }

    /// [`SshSettings::max_connections`] or its default.
    pub fn connection_limit(&self) -> usize {
        self.max_connections
            .unwrap_or(Self::DEFAULT_MAX_CONNECTIONS)
    }
}

/// `[ha]`: restart of highly available servers when their node is lost.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct HaSettings {
    /// A compute node that could not renew its lease with the leader for this long powers off its
    /// highly available servers (self-fencing); the leader restarts them elsewhere only after this
    /// plus a margin. The leader's value is the one in force (it hands it out with each lease).
    pub fence_after_secs: u64,
}

impl Default for HaSettings {
    fn default() -> Self {
        HaSettings {
            fence_after_secs: 20,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GossipSettings {
    /// Time between gossip rounds.
    pub interval_ms: u64,
    /// Phi-accrual threshold above which a node is considered dead.
    pub phi_threshold: f64,
    /// How long a dead node stays listed before it is forgotten.
    pub dead_grace_secs: u64,
}

impl Default for GossipSettings {
    fn default() -> Self {
        GossipSettings {
            interval_ms: 250,
            phi_threshold: 8.0,
            dead_grace_secs: 3600,
        }
    }
}

impl GossipSettings {
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RaftSettings {
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    /// A leader runs leader services only while a quorum confirmed its term within this time.
    /// Must be shorter than `election_min_ms`, so that a cut-off leader stops before anyone
    /// else can be elected.
    pub lease_ms: u64,
}

impl Default for RaftSettings {
    fn default() -> Self {
        RaftSettings {
            heartbeat_ms: 100,
            election_min_ms: 400,
            election_max_ms: 600,
            lease_ms: 300,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ComputeSettings {
    /// Whether this node runs servers (an admin node is also a compute node by default).
    pub enabled: bool,
    pub accelerator: Accelerator,
    pub hypervisor: HypervisorKind,
    pub libvirt_uri: String,
    /// The hypervisor helper binary `skiff-hv` (libvirt runs in it, not in `skiffd`); default:
    /// next to `skiffd`, else on `PATH`.
    pub helper: Option<std::path::PathBuf>,
}

impl Default for ComputeSettings {
    fn default() -> Self {
        ComputeSettings {
            enabled: true,
            accelerator: Accelerator::Auto,
            hypervisor: HypervisorKind::Auto,
            libvirt_uri: "qemu:///system".into(),
            helper: None,
        }
    }
}

/// `[scheduler]`: how far a compute node may be committed (Origo OS's defaults).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerSettings {
    /// vCPUs a node offers per physical core (1-32).
    pub vcpus_per_core: u32,
    /// Memory (MiB) always kept free on a compute node for the host itself.
    pub memory_reserve_mib: u64,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        SchedulerSettings {
            vcpus_per_core: 2,
            memory_reserve_mib: 512,
        }
    }
}

impl NodeConfig {
    pub fn advertise_addr(&self) -> SocketAddr {
        self.advertise.unwrap_or(self.listen)
    }

    /// Checks what serde cannot: names, timing relations, addresses.
    pub fn validate(&self) -> Result<(), String> {
        crate::identity::validate_name(&self.name).map_err(|e| e.to_string())?;
        if self.advertise_addr().ip().is_unspecified() {
            return Err("listen is an unspecified address (0.0.0.0 or ::): set `advertise` to the address other nodes reach".into());
        }
        if self.listen.port() == 0 {
            return Err("listen needs a port other than 0".into());
        }
        let r = &self.raft;
        if r.heartbeat_ms == 0 || r.election_min_ms <= r.heartbeat_ms * 2 {
            return Err("raft.election_min_ms must be more than twice raft.heartbeat_ms".into());
        }
        if r.election_max_ms <= r.election_min_ms {
            return Err("raft.election_max_ms must be more than raft.election_min_ms".into());
        }
        if r.lease_ms >= r.election_min_ms || r.lease_ms <= r.heartbeat_ms {
            return Err(
                "raft.lease_ms must be between raft.heartbeat_ms and raft.election_min_ms".into(),
            );
        }
        if self.gossip.interval_ms == 0
            || self.gossip.phi_threshold.is_nan()
            || self.gossip.phi_threshold <= 0.0
        {
            return Err("gossip.interval_ms and gossip.phi_threshold must be positive".into());
        }
        if !(2..=3600).contains(&self.ha.fence_after_secs) {
            return Err("ha.fence_after_secs must be between 2 and 3600".into());
        }
        if !(1..=32).contains(&self.scheduler.vcpus_per_core) {
            return Err("scheduler.vcpus_per_core must be between 1 and 32".into());
        }
        if self.ssh.listen.is_some_and(|a| a.port() == 0) {
            return Err("ssh.listen needs a port other than 0".into());
        }
        if self.ssh.listen.is_some_and(|a| {
            a.port() == self.listen.port()
                && (a.ip() == self.listen.ip()
                    || a.ip().is_unspecified()
                    || self.listen.ip().is_unspecified())
        }) {
            return Err("ssh.listen must not use the API's TCP port (listen)".into());
        }
        if self
            .ssh
            .max_connections
            .is_some_and(|n| !(1..=4096).contains(&n))
        {
            return Err("ssh.max_connections must be between 1 and 4096".into());
        }
        for s in &self.seeds {
            s.parse::<SocketAddr>()
                .map_err(|_| format!("seed {s:?} is not an IP:PORT address"))?;
        }
        Ok(())
    }

    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let cfg: NodeConfig = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        cfg.validate().map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(cfg)
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

/// Facts about this node that the cluster decided (not for editing): stored as JSON.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeFacts {
    pub cluster_id: String,
    pub node_id: NodeId,
}

impl NodeFacts {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("node-state.json")
    }

    pub fn load(data_dir: &Path) -> Result<Self, ConfigError> {
        let path = Self::path(data_dir);
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Io {
            path: path.clone(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| ConfigError::Invalid {
            path,
            message: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "n1"
listen = "127.0.0.1:7400"
admin_eligible = true
"#;

    #[test]
    fn minimal_config_parses_with_defaults() {
        let c = NodeConfig::from_toml(GOOD, Path::new("x")).unwrap();
        assert_eq!(c.raft, RaftSettings::default());
        assert!(c.compute.enabled);
        assert_eq!(c.scheduler.vcpus_per_core, 2);
        assert_eq!(c.scheduler.memory_reserve_mib, 512);
        let c = NodeConfig::from_toml(
            &format!("{GOOD}\n[scheduler]\nvcpus_per_core = 4\nmemory_reserve_mib = 2048\n"),
            Path::new("x"),
        )
        .unwrap();
        assert_eq!(c.scheduler.vcpus_per_core, 4);
        assert_eq!(c.scheduler.memory_reserve_mib, 2048);
    }

    #[test]
    fn ssh_is_off_unless_listen_is_set() {
        let c = NodeConfig::from_toml(GOOD, Path::new("x")).unwrap();
        assert_eq!(c.ssh.listen, None);
        assert!(!c.to_toml().contains("[ssh]"));
        let text = format!("{GOOD}\n[ssh]\nlisten = \"127.0.0.1:2222\"\n");
        let c = NodeConfig::from_toml(&text, Path::new("x")).unwrap();
        assert_eq!(c.ssh.listen, Some("127.0.0.1:2222".parse().unwrap()));
        assert_eq!(
            c.ssh.connection_limit(),
            SshSettings::DEFAULT_MAX_CONNECTIONS
        );
        let again = NodeConfig::from_toml(&c.to_toml(), Path::new("x")).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn unknown_key_is_named() {
        let bad = format!("{GOOD}\nlisten_port = 3\n");
        let e = NodeConfig::from_toml(&bad, Path::new("x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen_port"), "{e}");
        let bad = format!("{GOOD}\n[raft]\nlease = 3\n");
        let e = NodeConfig::from_toml(&bad, Path::new("x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("lease"), "{e}");
    }

    #[test]
    fn bad_values_are_refused() {
        for (bad, needle) in [
            (GOOD.replace("n1", "N 1"), "invalid name"),
            (GOOD.replace("127.0.0.1:7400", "0.0.0.0:7400"), "advertise"),
            (GOOD.replace("127.0.0.1:7400", "nonsense"), "listen"),
            (format!("{GOOD}\n[raft]\nlease_ms = 5000\n"), "lease_ms"),
            (format!("{GOOD}\nseeds = [\"x\"]\n"), "seed"),
            (
                format!("{GOOD}\n[scheduler]\nvcpus_per_core = 0\n"),
                "vcpus_per_core",
            ),
            (format!("{GOOD}\n[scheduler]\nreserve = 1\n"), "reserve"),
            (format!("{GOOD}\n[ssh]\nport = 22\n"), "port"),
            (
                format!("{GOOD}\n[ssh]\nlisten = \"127.0.0.1:0\"\n"),
                "ssh.listen",
            ),
            (
                format!("{GOOD}\n[ssh]\nlisten = \"0.0.0.0:7400\"\n"),
                "ssh.listen",
            ),
            (
                format!("{GOOD}\n[ssh]\nlisten = \"127.0.0.1:2222\"\nmax_connections = 0\n"),
                "max_connections",
            ),
        ] {
            let e = NodeConfig::from_toml(&bad, Path::new("x"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{e} should mention {needle}");
        }
    }
}
