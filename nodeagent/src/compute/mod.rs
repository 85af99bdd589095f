//! Compute: what a node does with the servers placed on it. [`Hypervisor`] is the contract the
//! hypervisor backends implement (libvirt arrives with the compute issue; until then
//! [`fake::FakeHypervisor`] keeps domains in memory); [`agent_handler`] serves the leader's
//! `skiff-agent/1` requests against it.
//!
//! Architecture invariant: every `Hypervisor` method may block (libvirt calls do): call them from
//! `tokio::task::spawn_blocking`, never on the async runtime.

use std::sync::Arc;
use std::time::Duration;

use skiff_cluster::agentproto::DomainPower;
use skiff_cluster::state::servers::{BootDevice, DiskSpec, NicSpec};
use skiff_cluster::state::ServerRecord;
use tracing::warn;

use crate::agent::Node;

pub mod agent_handler;
pub mod fake;

/// Gossip key a compute node publishes with the kind of its hypervisor (`fake`, later `libvirt`);
/// the reconciler asks only nodes that publish it for reports.
pub const GOSSIP_HYPERVISOR: &str = "hypervisor";

/// What a domain is made of: the typed input of [`Hypervisor::define`] (backends generate their
/// configuration from it, never from user text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainSpec {
    pub name: String,
    pub memory_mib: u64,
    pub vcpus: u32,
    pub disks: Vec<DiskSpec>,
    pub nics: Vec<NicSpec>,
    pub boot_order: Vec<BootDevice>,
    pub iso: Option<String>,
    /// The server record's generation, kept with the domain (libvirt: in its metadata).
    pub generation: u64,
}

impl DomainSpec {
    pub fn from_server(s: &ServerRecord) -> Self {
        DomainSpec {
            name: s.name.clone(),
            memory_mib: s.spec.memory_mib,
            vcpus: s.spec.vcpus,
            disks: s.spec.disks.clone(),
            nics: s.spec.nics.clone(),
            boot_order: s.spec.boot_order.clone(),
            iso: s.spec.iso.clone(),
            generation: s.generation,
        }
    }
}

/// One domain as the hypervisor lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainInfo {
    pub name: String,
    pub power: DomainPower,
    pub generation: u64,
}

/// How a graceful shutdown ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownOutcome {
    /// The guest shut down by itself.
    Graceful,
    /// The guest did not stop within the timeout and was forced off.
    Forced,
}

/// A hypervisor failure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HypervisorError {
    /// No domain has this name.
    #[error("no domain named {0:?}")]
    NotFound(String),
    /// The operation does not apply to the domain's power state.
    #[error("domain {name:?} is {power:?}: cannot {op}")]
    InvalidState {
        name: String,
        power: DomainPower,
        op: &'static str,
    },
    /// The hypervisor itself failed.
    #[error("hypervisor failure: {0}")]
    Failed(String),
}

/// A hypervisor on one node. Every method blocks: call through `spawn_blocking`. Only domains that
/// Skiff manages are listed or touched (libvirt: marked in their metadata).
pub trait Hypervisor: Send + Sync + 'static {
    /// `fake`, `libvirt`...
    fn kind(&self) -> &'static str;
    /// The managed domains with their power state, sorted by name.
    fn list(&self) -> Result<Vec<DomainInfo>, HypervisorError>;
    /// Defines the domain, or replaces the definition of an existing one (takes effect at its next
    /// start when it runs).
    fn define(&self, spec: &DomainSpec) -> Result<(), HypervisorError>;
    /// Starts a defined, stopped domain.
    fn start(&self, name: &str) -> Result<(), HypervisorError>;
    /// Asks the guest to shut down (ACPI) and forces it off after `timeout`.
    fn shutdown(&self, name: &str, timeout: Duration) -> Result<ShutdownOutcome, HypervisorError>;
    /// Powers the domain off at once.
    fn destroy(&self, name: &str) -> Result<(), HypervisorError>;
    fn suspend(&self, name: &str) -> Result<(), HypervisorError>;
    fn resume(&self, name: &str) -> Result<(), HypervisorError>;
    fn reboot(&self, name: &str) -> Result<(), HypervisorError>;
    /// Removes the definition of a stopped domain.
    fn undefine(&self, name: &str) -> Result<(), HypervisorError>;
}

/// How often a compute node publishes the number of its servers in gossip.
pub const SERVERS_FIGURE_INTERVAL: Duration = Duration::from_secs(2);

/// Publishes the hypervisor kind, then keeps the `servers` figure (domains on this node) current
/// in gossip, until the node shuts down.
async fn publish_servers(node: std::sync::Weak<Node>, h: Arc<dyn Hypervisor>) {
    let Some(mut stop) = node.upgrade().map(|n| n.shutdown_signal()) else {
        return;
    };
    if let Some(n) = node.upgrade() {
        n.gossip.set(GOSSIP_HYPERVISOR, h.kind()).await;
    }
    loop {
        let list = h.clone();
        if let Ok(Ok(domains)) = tokio::task::spawn_blocking(move || list.list()).await {
            let Some(n) = node.upgrade() else { return };
            n.gossip
                .set(skiff_cluster::gossip::keys::SERVERS, domains.len())
                .await;
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(SERVERS_FIGURE_INTERVAL) => {}
        }
    }
}

/// Sets up compute on a starting node: when `[compute] enabled`, picks the hypervisor, publishes
/// its kind in gossip and serves `skiff-agent/1`. Until the compute issue brings libvirt, the only
/// hypervisor is the in-memory [`fake::FakeHypervisor`], and this says so loudly.
pub fn start(node: &Arc<Node>) {
    let hypervisor: Option<Arc<dyn Hypervisor>> = if node.config.compute.enabled {
        warn!(
            node = %node.name,
            "compute is enabled but no real hypervisor exists yet: using the in-memory \
             FakeHypervisor (servers are simulated, nothing runs; it forgets everything on restart)"
        );
        let fake = Arc::new(fake::FakeHypervisor::new());
        fake::register(&node.data_dir, fake.clone());
        Some(fake)
    } else {
        None
    };
    if let Some(h) = &hypervisor {
        tokio::spawn(publish_servers(Arc::downgrade(node), h.clone()));
    }
    let handler = agent_handler::AgentHandler::new(node.name.clone(), hypervisor);
    node.endpoint
        .set_request_handler(skiff_cluster::transport::ALPN_AGENT, Arc::new(handler));
}
