//! Membership and health by gossip: chitchat carried over the node's QUIC endpoint.
//!
//! Each chitchat message rides its own one-way QUIC stream (a message can reach 64 KiB, far more
//! than a datagram). `send` only queues, since chitchat's loop awaits it.
//!
//! Messages travel zstd-compressed ([`Codec`]): a digest names every node with fields that are
//! mostly zeros and repeated prefixes, and digests are most of gossip's bytes (docs/benchmarks.md
//! §1). A message that does not start with zstd's magic number is read as plain chitchat, which is
//! what agents before this format sent.
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
use crate::transport::{QuicEndpoint, ALPN_GOSSIP, MAX_GOSSIP_MESSAGE};

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
        Ok(Box::new(QuicGossipSocket {
            inbox,
            out_tx,
            codec: Codec::new(),
        }))
    }
}

struct QuicGossipSocket {
    inbox: mpsc::Receiver<(SocketAddr, Vec<u8>)>,
    out_tx: mpsc::Sender<(SocketAddr, Vec<u8>)>,
    codec: Codec,
}

#[async_trait::async_trait]
impl Socket for QuicGossipSocket {
    async fn send(&mut self, to: SocketAddr, msg: ChitchatMessage) -> anyhow::Result<()> {
        // Only queue: a full queue drops the message, the next round repairs it.
        let _ = self.out_tx.try_send((to, self.codec.encode(&msg)));
        Ok(())
    }

    async fn recv(&mut self) -> anyhow::Result<(SocketAddr, ChitchatMessage)> {
        loop {
            let (from, bytes) = self
                .inbox
                .recv()
                .await
                .ok_or_else(|| anyhow!("the QUIC endpoint is closed"))?;
            match self.codec.decode(&bytes) {
                Ok(msg) => return Ok((from, msg)),
                Err(e) => {
                    warn!(peer = %from, error = %e, len = bytes.len(), "invalid gossip message")
                }
            }
        }
    }
}

/// The first bytes of every zstd frame.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// zstd's fastest standard level: gossip is sent every round, so speed matters more than ratio.
const ZSTD_LEVEL: i32 = 1;

/// Gossip's wire format: each chitchat message as one zstd frame. The (de)compression contexts
/// and the buffer for a message's plain form are made once per socket, not per message.
struct Codec {
    compressor: Option<zstd::bulk::Compressor<'static>>,
    decompressor: Option<zstd::bulk::Decompressor<'static>>,
    /// The plain form of the message being encoded or decoded.
    plain: Vec<u8>,
}

impl Codec {
    fn new() -> Self {
        Codec {
            compressor: zstd::bulk::Compressor::new(ZSTD_LEVEL).ok(),
            decompressor: zstd::bulk::Decompressor::new().ok(),
            plain: Vec::new(),
        }
    }

    /// The message as it goes on the wire. Falls back to the plain encoding in the (never seen)
    /// case that zstd cannot be used.
    fn encode(&mut self, msg: &ChitchatMessage) -> Vec<u8> {
        self.plain.clear();
        msg.serialize(&mut self.plain);
        match self.compressor.as_mut().map(|c| c.compress(&self.plain)) {
            Some(Ok(compressed)) => compressed,
            _ => self.plain.clone(),
        }
    }

    /// Reads a message [`Codec::encode`] wrote, or a plain one. A plain chitchat message starts
    /// with chitchat's own magic number (`53 b0`), never with zstd's. Decompression stops at
    /// [`MAX_GOSSIP_MESSAGE`] (the buffer's capacity), so a small frame cannot make a node use
    /// more memory than that.
    fn decode(&mut self, bytes: &[u8]) -> anyhow::Result<ChitchatMessage> {
        let mut slice = if bytes.starts_with(&ZSTD_MAGIC) {
            let decompressor = self
                .decompressor
                .as_mut()
                .ok_or_else(|| anyhow!("no zstd decompression context"))?;
            self.plain.clear();
            self.plain.reserve_exact(MAX_GOSSIP_MESSAGE);
            decompressor
                .decompress_to_buffer(bytes, &mut self.plain)
                .map_err(|e| anyhow!("not a valid compressed gossip message: {e}"))?;
            &self.plain[..]
        } else {
            bytes
        };
        let msg = ChitchatMessage::deserialize(&mut slice)?;
        Ok(msg)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A SYN as a node of an `n`-node cluster sends it (chitchat does not export `Digest`, so the
    /// message is built in its wire format and read back).
    fn syn(n: u16) -> ChitchatMessage {
        let mut buf = Vec::new();
        buf.extend(45_139u16.to_le_bytes()); // chitchat's magic number
        buf.extend([0, 0]); // protocol version 0, SYN
        n.serialize(&mut buf);
        for i in 0..n {
            let addr: SocketAddr = format!("198.18.0.{}:7946", i % 250 + 1).parse().unwrap();
            ChitchatId::new(
                format!("node-{i}"),
                1_795_000_000_000 + u64::from(i) * 977,
                addr,
            )
            .serialize(&mut buf);
            (1_000 + u64::from(i) * 13).serialize(&mut buf); // heartbeat
            0u64.serialize(&mut buf); // last gc version
            (7 + u64::from(i % 5)).serialize(&mut buf); // max version
        }
        "cluster-id".to_string().serialize(&mut buf);
        ChitchatMessage::deserialize(&mut &buf[..]).unwrap()
    }

    fn plain(msg: &ChitchatMessage) -> Vec<u8> {
        let mut buf = Vec::new();
        msg.serialize(&mut buf);
        buf
    }

    #[test]
    fn messages_go_compressed_and_come_back_whole() {
        let msg = syn(100);
        let mut codec = Codec::new();
        let wire = codec.encode(&msg);
        assert!(wire.starts_with(&ZSTD_MAGIC));
        let plain_len = plain(&msg).len();
        assert!(
            wire.len() * 2 < plain_len,
            "a 100-node digest should compress to less than half: {} of {plain_len} bytes",
            wire.len()
        );
        assert_eq!(codec.decode(&wire).unwrap(), msg);
        let bad = codec.encode(&ChitchatMessage::BadCluster);
        assert_eq!(codec.decode(&bad).unwrap(), ChitchatMessage::BadCluster);
    }

    #[test]
    fn plain_messages_of_older_agents_are_read() {
        let msg = syn(3);
        assert_eq!(Codec::new().decode(&plain(&msg)).unwrap(), msg);
    }

    #[test]
    fn garbage_and_oversized_frames_are_refused() {
        let mut codec = Codec::new();
        assert!(codec.decode(b"").is_err());
        assert!(codec.decode(b"garbage on the gossip stream").is_err());
        let mut broken = codec.encode(&syn(10));
        broken.truncate(broken.len() / 2);
        assert!(codec.decode(&broken).is_err());
        // The context is still good after an error.
        let msg = syn(10);
        let wire = codec.encode(&msg);
        assert_eq!(codec.decode(&wire).unwrap(), msg);
        // A small frame that expands past the limit is refused, not allocated.
        let bomb = zstd::bulk::compress(&vec![0u8; MAX_GOSSIP_MESSAGE + 1], 3).unwrap();
        assert!(bomb.len() < 1024);
        let err = codec.decode(&bomb).unwrap_err().to_string();
        assert!(
            err.contains("not a valid compressed gossip message"),
            "{err}"
        );
    }
}
