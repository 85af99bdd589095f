//! Membership and health by gossip: chitchat carried over the node's QUIC endpoint.
//!
//! Each chitchat message rides its own one-way QUIC stream (a message can reach 64 KiB, far more
//! than a datagram). `send` only queues, since chitchat's loop awaits it.
//!
//! Architecture invariant: gossip is for membership, health and load figures. It is never proof of
//! leadership or of desired state: any node with a certificate could publish any value.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::anyhow;
use chitchat::transport::{Socket, Transport};
use chitchat::{
    spawn_chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, ChitchatMessage, Deserializable,
    FailureDetectorConfig, Serializable,
};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::config::GossipSettings;
use crate::transport::{QuicEndpoint, ALPN_GOSSIP};

/// Keys every node publishes about itself.
pub mod keys {
    /// `admin-eligible` or `compute`.
    pub const ROLE: &str = "role";
    /// Raft node id.
    pub const NODE_ID: &str = "node_id";
    /// Agent version.
    pub const VERSION: &str = "version";
    /// The highest Raft term this node knows.
    pub const TERM: &str = "term";
    /// The leader this node knows (its name), empty when none.
    pub const LEADER: &str = "leader";
    /// The term for which this node runs leader services, absent when it runs none.
    pub const SERVING_TERM: &str = "serving_term";
    pub const CORES: &str = "cores";
    pub const MEMORY_TOTAL: &str = "memory_total";
    pub const MEMORY_USED: &str = "memory_used";
    /// CPU in use on the machine, thousandths of a core.
    pub const CPU: &str = "cpu_milli";
    /// JSON array of `{name, total, used}`.
    pub const STORAGE: &str = "storage";
    pub const SERVERS: &str = "servers";
    /// The newest CRL (PEM) this node has; CRLs are signed by the CA, so gossip cannot forge them.
    pub const CRL: &str = "crl";
    /// `false` when the node does not run servers (`[compute] enabled = false`).
    pub const COMPUTE: &str = "compute";
}

/// Chitchat over the node's QUIC endpoint.
pub struct QuicGossipTransport {
    endpoint: QuicEndpoint,
}

impl QuicGossipTransport {
    pub fn new(endpoint: QuicEndpoint) -> Self {
        QuicGossipTransport { endpoint }
    }
}

#[async_trait::async_trait]
impl Transport for QuicGossipTransport {
    async fn open(&self, _listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let inbox = self
            .endpoint
            .take_gossip_inbox()
            .ok_or_else(|| anyhow!("the gossip socket of this endpoint is already open"))?;
        let (out_tx, mut out_rx) = mpsc::channel::<(SocketAddr, Vec<u8>)>(4096);
        let endpoint = self.endpoint.clone();
        tokio::spawn(async move {
            while let Some((to, bytes)) = out_rx.recv().await {
                let endpoint = endpoint.clone();
                tokio::spawn(async move {
                    if let Err(e) = endpoint.send_oneway(to, ALPN_GOSSIP, &bytes).await {
                        debug!(peer = %to, error = %e, "gossip send failed");
                    }
                });
            }
        });
        Ok(Box::new(QuicGossipSocket { inbox, out_tx }))
    }
}

struct QuicGossipSocket {
    inbox: mpsc::Receiver<(SocketAddr, Vec<u8>)>,
    out_tx: mpsc::Sender<(SocketAddr, Vec<u8>)>,
}

#[async_trait::async_trait]
impl Socket for QuicGossipSocket {
    async fn send(&mut self, to: SocketAddr, msg: ChitchatMessage) -> anyhow::Result<()> {
        let mut buf = Vec::with_capacity(msg.serialized_len());
        msg.serialize(&mut buf);
        // Only queue: a full queue drops the message, the next round repairs it.
        let _ = self.out_tx.try_send((to, buf));
        Ok(())
    }

    async fn recv(&mut self) -> anyhow::Result<(SocketAddr, ChitchatMessage)> {
        loop {
            let (from, bytes) = self
                .inbox
                .recv()
                .await
                .ok_or_else(|| anyhow!("the QUIC endpoint is closed"))?;
            let mut slice = &bytes[..];
            match ChitchatMessage::deserialize(&mut slice) {
                Ok(msg) => return Ok((from, msg)),
                Err(e) => {
                    warn!(peer = %from, error = %e, len = bytes.len(), "invalid gossip message")
                }
            }
        }
    }
}

/// One node as gossip sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct GossipNode {
    pub name: String,
    pub generation: u64,
    pub addr: SocketAddr,
    pub alive: bool,
    pub values: BTreeMap<String, String>,
}

impl GossipNode {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }
    pub fn get_u64(&self, key: &str) -> u64 {
        self.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
    }
}

/// What gossip needs to start.
pub struct GossipOptions {
    pub name: String,
    pub cluster_id: String,
    pub advertise: SocketAddr,
    pub seeds: Vec<String>,
    pub settings: GossipSettings,
    pub initial: Vec<(String, String)>,
}

/// The running gossip of one node.
pub struct Gossip {
    handle: ChitchatHandle,
}

/// A generation id that grows across restarts: milliseconds since the epoch.
pub fn new_generation() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(1)
}

impl Gossip {
    pub async fn start(endpoint: QuicEndpoint, opts: GossipOptions) -> anyhow::Result<Self> {
        let interval = opts.settings.interval();
        let config = ChitchatConfig {
            chitchat_id: ChitchatId::new(opts.name, new_generation(), opts.advertise),
            cluster_id: opts.cluster_id,
            gossip_interval: interval,
            listen_addr: endpoint.local_addr(),
            seed_nodes: opts.seeds,
            failure_detector_config: FailureDetectorConfig {
                phi_threshold: opts.settings.phi_threshold,
                sampling_window_size: 1000,
                max_interval: Duration::from_secs(10),
                initial_interval: interval * 2,
                dead_node_grace_period: Duration::from_secs(opts.settings.dead_grace_secs),
            },
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
        };
        let transport = QuicGossipTransport::new(endpoint);
        let handle = spawn_chitchat(config, opts.initial, &transport).await?;
        Ok(Gossip { handle })
    }

    /// Publishes a value about this node.
    pub async fn set(&self, key: &str, value: impl ToString) {
        let value = value.to_string();
        let chitchat = self.handle.chitchat();
        let mut c = chitchat.lock().await;
        let node = c.self_node_state();
        if node.get(key) != Some(value.as_str()) {
            node.set(key, value);
        }
    }

    /// Removes a value about this node.
    pub async fn unset(&self, key: &str) {
        let chitchat = self.handle.chitchat();
        let mut c = chitchat.lock().await;
        let node = c.self_node_state();
        if node.get(key).is_some() {
            node.delete(key);
        }
    }

    /// Every node gossip knows (the newest generation of each name), alive or not.
    pub async fn nodes(&self) -> Vec<GossipNode> {
        let chitchat = self.handle.chitchat();
        let c = chitchat.lock().await;
        let live: std::collections::HashSet<&ChitchatId> = c.live_nodes().collect();
        let mut by_name: BTreeMap<String, GossipNode> = BTreeMap::new();
        for (id, state) in c.node_states() {
            let node = GossipNode {
                name: id.node_id.to_string(),
                generation: id.generation_id,
                addr: id.gossip_advertise_addr,
                alive: live.contains(id),
                values: state
                    .key_values()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            };
            match by_name.get(&node.name) {
                Some(old) if old.generation >= node.generation => {}
                _ => {
                    by_name.insert(node.name.clone(), node);
                }
            }
        }
        by_name.into_values().collect()
    }

    /// Stops gossiping.
    pub async fn shutdown(self) {
        let _ = self.handle.shutdown().await;
    }

    pub fn abort(&self) {
        self.handle.abort();
    }
}
