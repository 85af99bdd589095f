//! Compute: what a node does with the servers placed on it. [`Hypervisor`] is the contract the
//! hypervisor backends implement: [`libvirt::LibvirtHypervisor`] (domain XML from
//! [`domain_xml`]) and the in-memory [`fake::FakeHypervisor`]. `skiffd` never links libvirt in:
//! it drives libvirt through [`helper`], a child process `skiff-hv` that runs
//! `LibvirtHypervisor`. [`disks`] makes the servers' disk images in the node's pools;
//! [`agent_handler`] serves the leader's `skiff-agent/1` requests against them. With libvirt,
//! [`changes`] turns domain lifecycle events ([`libvirt_events`], the crate's one FFI module, run
//! in the helper) into `Changed` hints, so the leader reconciles at once.
//!
//! Architecture invariant: every `Hypervisor` method may block (libvirt calls do): call them from
//! `tokio::task::spawn_blocking`, never on the async runtime.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use skiff_cluster::agentproto::DomainPower;
use skiff_cluster::config::HypervisorKind;
use skiff_cluster::state::servers::{BootDevice, DiskSpec, NicSpec};
use skiff_cluster::state::ServerRecord;
use tracing::{error, info, warn};

use crate::agent::Node;

pub mod agent_handler;
pub mod changes;
pub mod console;
pub mod disks;
pub mod domain_xml;
pub mod fake;
pub mod figures;
pub mod helper;
pub mod libvirt;
/// The crate's one FFI module: libvirt's domain event API has no safe wrapper in `virt`.
#[allow(unsafe_code)]
pub mod libvirt_events;

/// Gossip key a compute node publishes with the kind of its hypervisor (`fake`, later `libvirt`);
/// the reconciler asks only nodes that publish it for reports.
pub const GOSSIP_HYPERVISOR: &str = "hypervisor";

/// What a domain is made of: the typed input of [`Hypervisor::define`] (backends generate their
/// configuration from it, never from user text).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Highly available: kept with the domain too (see [`crate::fencing`]).
    pub ha: bool,
    /// The resolved qcow2 file of each entry of `disks`, in the same order (the agent fills it
    /// from its image store; empty until then).
    pub disk_paths: Vec<PathBuf>,
    /// Boot this kernel directly instead of from `boot_order` (tests, appliance guests).
    pub direct_boot: Option<DirectBoot>,
}

/// Direct kernel boot: the hypervisor loads the kernel and initrd itself, no bootloader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectBoot {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    /// The kernel command line (e.g. `console=ttyS0`).
    pub cmdline: String,
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
            ha: s.spec.ha,
            disk_paths: Vec::new(),
            direct_boot: None,
        }
    }
}

/// One domain as the hypervisor lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainInfo {
    pub name: String,
    pub power: DomainPower,
    pub generation: u64,
    /// Highly available (kept with the domain, so fencing works after an agent restart).
    pub ha: bool,
}

/// Cumulative counters of one running domain, as the hypervisor keeps them (rates come from two
/// samples: [`figures`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainStats {
    pub name: String,
    /// CPU time used since the domain started, all vCPUs (ns).
    pub cpu_time_ns: u64,
    /// Memory the guest has (KiB).
    pub memory_kib: u64,
    pub disk_read_bytes: u64,
    pub disk_write_bytes: u64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
}

/// The last `max_bytes` of `bytes` as text, starting at a line when one starts in that window,
/// and whether anything was left out.
pub fn tail_text(bytes: &[u8], max_bytes: u64) -> (String, bool) {
    let max = usize::try_from(max_bytes).unwrap_or(usize::MAX);
    if bytes.len() <= max {
        return (String::from_utf8_lossy(bytes).into_owned(), false);
    }
    let mut start = bytes.len() - max;
    if let Some(nl) = bytes[start..].iter().position(|b| *b == b'\n') {
        if nl + 1 < bytes.len() - start {
            start += nl + 1;
        }
    }
    (String::from_utf8_lossy(&bytes[start..]).into_owned(), true)
}

/// Chunks queued each way between a console and its reader (each at most [`CONSOLE_CHUNK`]
/// bytes): a slow client holds the console back instead of growing memory.
pub const CONSOLE_QUEUE: usize = 32;
/// Largest chunk of console bytes moved at once.
pub const CONSOLE_CHUNK: usize = 4096;

/// An attached two-way serial console ([`Hypervisor::open_console`]). The hypervisor side runs on
/// its own thread; both channels are bounded ([`CONSOLE_QUEUE`]).
#[derive(Debug)]
pub struct ConsoleSession {
    /// What the guest writes; closed when the console ends (the domain stopped, another session
    /// took the console over, or `input` was dropped).
    pub output: tokio::sync::mpsc::Receiver<Vec<u8>>,
    /// What is typed to the guest; dropping it detaches and closes the console.
    pub input: tokio::sync::mpsc::Sender<Vec<u8>>,
}

/// How a graceful shutdown ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShutdownOutcome {
    /// The guest shut down by itself.
    Graceful,
    /// The guest did not stop within the timeout and was forced off.
    Forced,
}

/// A hypervisor failure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum HypervisorError {
    /// No domain has this name.
    #[error("no domain named {0:?}")]
    NotFound(String),
    /// The operation does not apply to the domain's power state.
    #[error("domain {name:?} is {power:?}: cannot {op}")]
    InvalidState {
        name: String,
        power: DomainPower,
        op: String,
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
    /// The end of the domain's serial console output, at most `max_bytes` (cut at a line start
    /// when it can be), and whether older output was left out.
    fn console_tail(&self, name: &str, max_bytes: u64) -> Result<(String, bool), HypervisorError> {
        let _ = max_bytes;
        Err(HypervisorError::NotFound(name.to_string()))
    }
    /// Attaches to the serial console of a running domain, both ways (see [`ConsoleSession`]).
    /// A newer session takes the console over from an older one. Returns at once: the bytes move
    /// on a thread of the hypervisor's own.
    fn open_console(&self, name: &str) -> Result<ConsoleSession, HypervisorError> {
        Err(HypervisorError::NotFound(name.to_string()))
    }
    /// Counters of the running managed domains (none by default).
    fn stats(&self) -> Result<Vec<DomainStats>, HypervisorError> {
        Ok(Vec::new())
    }
}

/// How often a compute node publishes the number of its servers in gossip.
pub const SERVERS_FIGURE_INTERVAL: Duration = Duration::from_secs(2);

/// Publishes the hypervisor kind, then keeps the `servers` figure (domains on this node) and the
/// servers' summed CPU and memory current in gossip, sampling the servers' live figures into
/// `sampler`, until the node shuts down.
async fn publish_servers(
    node: std::sync::Weak<Node>,
    h: Arc<dyn Hypervisor>,
    sampler: Arc<figures::Sampler>,
) {
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
        let stats = h.clone();
        if let Ok(Ok(stats)) = tokio::task::spawn_blocking(move || stats.stats()).await {
            let figures = sampler.sample(std::time::Instant::now(), stats);
            let Some(n) = node.upgrade() else { return };
            let cpu: u64 = figures.iter().map(|f| f.cpu_milli).sum();
            let memory: u64 = figures.iter().map(|f| f.memory_mib).sum();
            n.gossip.set(figures::GOSSIP_SERVERS_CPU, cpu).await;
            n.gossip.set(figures::GOSSIP_SERVERS_MEMORY, memory).await;
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(SERVERS_FIGURE_INTERVAL) => {}
        }
    }
}

/// What [`pick_hypervisor`] chose: the hypervisor, the disk provisioner (libvirt), and the
/// domain lifecycle events (libvirt, through its helper).
type Picked = (
    Arc<dyn Hypervisor>,
    Option<disks::DiskProvisioner>,
    Option<tokio::sync::mpsc::UnboundedReceiver<libvirt_events::LifecycleEvent>>,
);

/// The hypervisor a compute node drives, as `[compute]` asks: libvirt through its helper process
/// `skiff-hv` (with the node's pools for disks; see [`helper`]), or the in-memory fake. `auto`
/// takes libvirt when it answers and says loudly when it falls back to the fake.
fn pick_hypervisor(node: &Node) -> Picked {
    let c = &node.config.compute;
    let libvirt = || -> anyhow::Result<Picked> {
        // qemu runs as its own user: it must reach the local pool through the data dir.
        crate::storage::pools::traversable(&node.data_dir)?;
        let spawner = helper::client::ProcessSpawner {
            program: helper::client::helper_program(c.helper.as_deref()),
            args: helper::HelperArgs {
                uri: c.libvirt_uri.clone(),
                accelerator: c.accelerator,
                log_dir: node.data_dir.join("console"),
            },
        };
        let h = helper::client::HelperHypervisor::start(Box::new(spawner))
            .map_err(anyhow::Error::msg)?;
        let events = h.take_events();
        Ok((
            Arc::new(h),
            Some(disks::DiskProvisioner::new(node.pools.clone())),
            events,
        ))
    };
    let fake = |why: &str| -> Picked {
        warn!(
            node = %node.name,
            "using the in-memory FakeHypervisor ({why}): servers are simulated, nothing runs, \
             and it forgets everything on restart"
        );
        let fake = Arc::new(fake::FakeHypervisor::new());
        fake::register(&node.data_dir, fake.clone());
        (fake, None, None)
    };
    match c.hypervisor {
        HypervisorKind::Fake => fake("[compute] hypervisor = \"fake\""),
        HypervisorKind::Libvirt | HypervisorKind::Auto => match libvirt() {
            Ok(picked) => {
                info!(node = %node.name, uri = %c.libvirt_uri, "compute through libvirt");
                picked
            }
            Err(e) if c.hypervisor == HypervisorKind::Auto => fake(&format!(
                "libvirt at {} is not usable: {e:#}",
                c.libvirt_uri
            )),
            Err(e) => {
                // Asked for libvirt explicitly: run no servers rather than pretend.
                error!(node = %node.name, error = %format!("{e:#}"), "libvirt is not usable: this node runs no servers");
                (Arc::new(Unavailable(format!("{e:#}"))), None, None)
            }
        },
    }
}

/// The hypervisor of a node asked to use libvirt where libvirt is not usable: every call fails
/// with the reason.
struct Unavailable(String);

impl Hypervisor for Unavailable {
    fn kind(&self) -> &'static str {
        "unavailable"
    }
    fn list(&self) -> Result<Vec<DomainInfo>, HypervisorError> {
        Err(HypervisorError::Failed(self.0.clone()))
    }
    fn define(&self, _: &DomainSpec) -> Result<(), HypervisorError> {
        Err(HypervisorError::Failed(self.0.clone()))
    }
    fn start(&self, _: &str) -> Result<(), HypervisorError> {
        Err(HypervisorError::Failed(self.0.clone()))
    }
    fn shutdown(&self, _: &str, _: Duration) -> Result<ShutdownOutcome, HypervisorError> {
        Err(HypervisorError::Failed(self.0.clone()))
    }
    fn destroy(&self, _: &str) -> Result<(), HypervisorError> {
        Err(HypervisorError::Failed(self.0.clone()))
    }
    fn suspend(&self, _: &str) -> Result<(), HypervisorError> {
        Err(HypervisorError::Failed(self.0.clone()))
    }
    fn resume(&self, _: &str) -> Result<(), HypervisorError> {
        Err(HypervisorError::Failed(self.0.clone()))
    }
    fn reboot(&self, _: &str) -> Result<(), HypervisorError> {
        Err(HypervisorError::Failed(self.0.clone()))
    }
    fn undefine(&self, _: &str) -> Result<(), HypervisorError> {
        Err(HypervisorError::Failed(self.0.clone()))
    }
    fn open_console(&self, _: &str) -> Result<ConsoleSession, HypervisorError> {
        Err(HypervisorError::Failed(self.0.clone()))
    }
}

/// Sets up compute on a starting node: when `[compute] enabled`, picks the hypervisor (off the
/// async runtime: connecting to libvirt blocks), publishes its kind in gossip and serves
/// `skiff-agent/1`.
pub async fn start(node: &Arc<Node>) {
    let (hypervisor, disks, events) = if node.config.compute.enabled {
        let n = node.clone();
        match tokio::task::spawn_blocking(move || pick_hypervisor(&n)).await {
            Ok((h, d, ev)) => (Some(h), d, ev),
            Err(e) => {
                error!(error = %e, "choosing the hypervisor failed: this node runs no servers");
                (None, None, None)
            }
        }
    } else {
        (None, None, None)
    };
    let sampler = Arc::new(figures::Sampler::new());
    if let Some(h) = &hypervisor {
        tokio::spawn(publish_servers(
            Arc::downgrade(node),
            h.clone(),
            sampler.clone(),
        ));
        tokio::spawn(crate::fencing::run(Arc::downgrade(node), h.clone()));
        if let Some(events) = events {
            tokio::spawn(changes::run(Arc::downgrade(node), events));
        }
    }
    let mut handler = agent_handler::AgentHandler::new(node.name.clone(), hypervisor.clone())
        .with_fencing(node.fencing.clone())
        .with_figures(sampler)
        .with_reconcile_wake(node.reconcile_wake.clone());
    // Images live in the node's pools whatever the hypervisor (the fake one too: qemu-img
    // works without it), on every node that runs servers.
    let images = hypervisor.is_some().then(|| node.pools.clone());
    node.endpoint.set_stream_handler(
        skiff_cluster::transport::ALPN_IMAGE,
        Arc::new(crate::storage::stream::ImageStreamHandler::new(
            node.name.clone(),
            images.clone(),
        )),
    );
    if let Some(pools) = images {
        handler = handler.with_images(pools);
    }
    if let Some(d) = disks {
        handler = handler.with_disks(d);
    }
    node.endpoint.set_stream_handler(
        skiff_cluster::transport::ALPN_CONSOLE,
        Arc::new(console::ConsoleHandler::new(
            node.name.clone(),
            hypervisor.clone(),
        )),
    );
    node.endpoint
        .set_request_handler(skiff_cluster::transport::ALPN_AGENT, Arc::new(handler));
}
