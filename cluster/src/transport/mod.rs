//! The one QUIC endpoint every node has. Traffic kinds are told apart by ALPN:
//! gossip (one-way streams carrying chitchat messages), Raft and agent tasks (request/response on a
//! bidirectional stream), consoles (a bidirectional stream handed as it is to a [`StreamHandler`]:
//! a byte pipe), and join (the only protocol a peer without a certificate may speak).
//!
//! Every connection is mutual TLS 1.3 against the cluster CA ([`crate::tls`]); connections of peers
//! whose certificate the CRL revokes are closed as soon as the CRL arrives. [`Faults`] lets tests cut
//! links between nodes (partitions) without touching the network.
//!
//! Connections are kept per peer and protocol, with at most one handshake in flight per pair: a
//! message to a peer that is still being connected waits for that handshake instead of starting
//! another. Gossip uses one connection per *pair* of nodes, both ways: a gossip connection a peer
//! opened is also the one replies travel on. When both nodes of a pair dial each other at once,
//! the connection opened by the node with the lower certificate serial is kept and the other is
//! closed, so both ends agree without talking about it. The UDP socket asks for a 4 MiB receive
//! buffer (capped by `net.core.rmem_max`), as QUIC stacks recommend: with the 208 KiB default,
//! bursts of gossip between 50+ nodes overflow it (measured in docs/benchmarks.md).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::CertificateDer;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::identity::NODE_SAN;
use crate::tls::{peer_identity, PeerIdentity, Subject, TlsContext, TlsError};

pub const ALPN_GOSSIP: &[u8] = b"skiff-gossip/1";
pub const ALPN_RAFT: &[u8] = b"skiff-raft/1";
pub const ALPN_JOIN: &[u8] = b"skiff-join/1";
pub const ALPN_AGENT: &[u8] = b"skiff-agent/1";
/// A compute node renewing its HA lease with the leader (see `nodeagent/src/fencing.rs`).
pub const ALPN_LEASE: &[u8] = b"skiff-lease/1";
/// The leader attaching to a server's serial console on its node: a raw byte pipe after a
/// framed header (see `crate::agentproto::console`), served by a [`StreamHandler`].
pub const ALPN_CONSOLE: &[u8] = b"skiff-console/1";
/// The leader uploading an image to, or downloading one from, a node's pool: a byte pipe after a
/// framed header (see `crate::agentproto::image_stream`), served by a [`StreamHandler`].
pub const ALPN_IMAGE: &[u8] = b"skiff-image/1";
const ALPNS: [&[u8]; 7] = [
    ALPN_GOSSIP,
    ALPN_RAFT,
    ALPN_JOIN,
    ALPN_AGENT,
    ALPN_LEASE,
    ALPN_CONSOLE,
    ALPN_IMAGE,
];

/// Largest request or response body.
pub const MAX_MESSAGE: usize = 64 << 20;
/// Largest gossip message (chitchat keeps its messages under 64 KiB).
pub const MAX_GOSSIP_MESSAGE: usize = 1 << 20;
/// Gossip messages queued for the gossip loop before new ones are dropped.
const GOSSIP_QUEUE: usize = 1024;
/// Socket receive and send buffers asked for (the kernel caps them at `net.core.[rw]mem_max`).
const SOCKET_BUFFER: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot bind QUIC endpoint on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("peer {0} is unreachable: {1}")]
    Unreachable(SocketAddr, String),
    #[error("request to {0} timed out")]
    Timeout(SocketAddr),
    #[error("stream to {0} failed: {1}")]
    Stream(SocketAddr, String),
    #[error("message from {0} is larger than {1} bytes")]
    TooLarge(SocketAddr, usize),
}

impl TransportError {
    /// Whether the peer could not be reached at all (as opposed to failing mid-exchange).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            TransportError::Unreachable(..) | TransportError::Timeout(_)
        )
    }
}

/// The verified peer of an incoming request.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    pub addr: SocketAddr,
    pub identity: Option<PeerIdentity>,
}

impl PeerInfo {
    /// The node name, when the peer presented a node certificate.
    pub fn node_name(&self) -> Option<&str> {
        match &self.identity {
            Some(PeerIdentity {
                subject: Subject::Node(n),
                ..
            }) => Some(n),
            _ => None,
        }
    }
}

/// Serves requests of one ALPN.
#[async_trait::async_trait]
pub trait RequestHandler: Send + Sync + 'static {
    async fn handle(&self, peer: PeerInfo, body: Vec<u8>) -> Vec<u8>;
}

/// Serves the bidirectional streams of one ALPN as they are (byte pipes, not one request and one
/// reply): the handler owns both halves until it returns.
#[async_trait::async_trait]
pub trait StreamHandler: Send + Sync + 'static {
    async fn handle(&self, peer: PeerInfo, send: quinn::SendStream, recv: quinn::RecvStream);
}

/// Links a test has cut. Messages to or from a blocked address are dropped both ways.
#[derive(Debug, Default)]
pub struct Faults {
    blocked: RwLock<HashSet<SocketAddr>>,
}

impl Faults {
    pub fn block(&self, peer: SocketAddr) {
        if let Ok(mut b) = self.blocked.write() {
            b.insert(peer);
        }
    }
    pub fn unblock(&self, peer: SocketAddr) {
        if let Ok(mut b) = self.blocked.write() {
            b.remove(&peer);
        }
    }
    pub fn heal(&self) {
        if let Ok(mut b) = self.blocked.write() {
            b.clear();
        }
    }
    pub fn is_blocked(&self, peer: &SocketAddr) -> bool {
        self.blocked
            .read()
            .map(|b| !b.is_empty() && b.contains(peer))
            .unwrap_or(false)
    }
}

type ConnKey = (SocketAddr, &'static [u8]);
/// The connection used to send to one peer over one protocol; the async lock is held across a
/// handshake, so there is one attempt at a time per peer and protocol.
type Slot = Arc<tokio::sync::Mutex<Option<quinn::Connection>>>;
/// A gossip message and the peer it came from.
type GossipDelivery = (SocketAddr, Vec<u8>);

struct Inner {
    endpoint: quinn::Endpoint,
    tls: Arc<TlsContext>,
    client_configs: HashMap<&'static [u8], quinn::ClientConfig>,
    /// The serial of this node's certificate: of two connections between a pair of nodes, the one
    /// opened by the lower serial is kept.
    own_serial: String,
    outgoing: Mutex<HashMap<ConnKey, Slot>>,
    /// Every open connection with its peer's certificate serial, to close revoked ones.
    live: Mutex<HashMap<usize, (quinn::Connection, String)>>,
    handlers: RwLock<HashMap<&'static [u8], Arc<dyn RequestHandler>>>,
    stream_handlers: RwLock<HashMap<&'static [u8], Arc<dyn StreamHandler>>>,
    gossip_tx: mpsc::Sender<GossipDelivery>,
    gossip_rx: Mutex<Option<mpsc::Receiver<GossipDelivery>>>,
    faults: Faults,
}

/// A node's QUIC endpoint (cheap to clone).
#[derive(Clone)]
pub struct QuicEndpoint {
    inner: Arc<Inner>,
}

fn transport_config(keep_alive: bool) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(Duration::from_secs(10))
            .unwrap_or(quinn::VarInt::from_u32(10_000).into()),
    ));
    if keep_alive {
        t.keep_alive_interval(Some(Duration::from_secs(2)));
    }
    t.max_concurrent_uni_streams(256u32.into());
    t.max_concurrent_bidi_streams(256u32.into());
    Arc::new(t)
}

impl QuicEndpoint {
    /// Binds the endpoint and starts accepting connections.
    pub fn bind(listen: SocketAddr, tls: Arc<TlsContext>) -> Result<Self, TransportError> {
        let server_tls = tls.quic_server_config(&ALPNS)?;
        let server_crypto = QuicServerConfig::try_from(server_tls)
            .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
        server_config.transport_config(transport_config(false));
        let bind_error = |source| TransportError::Bind {
            addr: listen,
            source,
        };
        let socket = bind_socket(listen).map_err(bind_error)?;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server_config),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(bind_error)?;
        let own_serial = peer_identity(tls.own_cert())
            .map(|id| id.serial_hex)
            .unwrap_or_default();
        let mut client_configs = HashMap::new();
        for alpn in ALPNS {
            let c = tls.quic_client_config(alpn)?;
            let crypto = QuicClientConfig::try_from(c)
                .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
            let mut cc = quinn::ClientConfig::new(Arc::new(crypto));
            cc.transport_config(transport_config(true));
            client_configs.insert(alpn, cc);
        }
        let (gossip_tx, gossip_rx) = mpsc::channel(GOSSIP_QUEUE);
        let inner = Arc::new(Inner {
            endpoint,
            tls,
            client_configs,
            own_serial,
            outgoing: Mutex::new(HashMap::new()),
            live: Mutex::new(HashMap::new()),
            handlers: RwLock::new(HashMap::new()),
            stream_handlers: RwLock::new(HashMap::new()),
            gossip_tx,
            gossip_rx: Mutex::new(Some(gossip_rx)),
            faults: Faults::default(),
        });
        let weak = Arc::downgrade(&inner);
        let endpoint = inner.endpoint.clone();
        tokio::spawn(async move {
            while let Some(incoming) = endpoint.accept().await {
                let Some(inner) = weak.upgrade() else { break };
                tokio::spawn(accept_connection(inner, incoming));
            }
        });
        Ok(QuicEndpoint { inner })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.inner
            .endpoint
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    pub fn tls(&self) -> &Arc<TlsContext> {
        &self.inner.tls
    }

    /// Links cut for tests.
    pub fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    /// How many connections (either direction) are open with authenticated peers.
    pub fn live_connections(&self) -> usize {
        self.inner.live.lock().map(|l| l.len()).unwrap_or(0)
    }

    pub fn set_request_handler(&self, alpn: &'static [u8], handler: Arc<dyn RequestHandler>) {
        if let Ok(mut h) = self.inner.handlers.write() {
            h.insert(alpn, handler);
        }
    }

    /// Serves the streams of `alpn` (one of the byte-pipe protocols, e.g. [`ALPN_CONSOLE`]).
    pub fn set_stream_handler(&self, alpn: &'static [u8], handler: Arc<dyn StreamHandler>) {
        if let Ok(mut h) = self.inner.stream_handlers.write() {
            h.insert(alpn, handler);
        }
    }

    /// Opens a bidirectional stream to `to` over `alpn` (a byte-pipe protocol), within `timeout`
    /// for the connection and the stream. The caller owns both halves.
    pub async fn open_stream(
        &self,
        to: SocketAddr,
        alpn: &'static [u8],
        timeout: Duration,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), TransportError> {
        if self.inner.faults.is_blocked(&to) {
            return Err(TransportError::Unreachable(
                to,
                "link cut by fault injection".into(),
            ));
        }
        let open = async {
            let conn = self.connection(to, alpn).await?;
            match conn.open_bi().await {
                Ok(s) => Ok(s),
                Err(e) => {
                    self.forget_if_closed(to, alpn, &conn);
                    Err(TransportError::Unreachable(to, e.to_string()))
                }
            }
        };
        match tokio::time::timeout(timeout, open).await {
            Ok(r) => r,
            Err(_) => Err(TransportError::Timeout(to)),
        }
    }

    /// The stream of incoming gossip messages (taken once, by the gossip transport).
    pub fn take_gossip_inbox(&self) -> Option<mpsc::Receiver<GossipDelivery>> {
        self.inner.gossip_rx.lock().ok()?.take()
    }

    /// The connection to send on to `to` over `alpn`: the one in use, or a new one. Concurrent
    /// callers for the same peer and protocol wait for one handshake.
    async fn connection(
        &self,
        to: SocketAddr,
        alpn: &'static [u8],
    ) -> Result<quinn::Connection, TransportError> {
        let slot = self.inner.slot((to, alpn));
        let mut current = slot.lock_owned().await;
        if let Some(c) = current.as_ref().filter(|c| c.close_reason().is_none()) {
            return Ok(c.clone());
        }
        *current = None;
        // The handshake runs on its own task, which holds the slot until it ends: a caller that
        // gives up (its request timed out) does not abort it, so a handshake slower than one
        // request's deadline (a loaded machine) still gives the next request its connection,
        // instead of every attempt being cut short the same way.
        let inner = self.inner.clone();
        let handshake = tokio::spawn(async move {
            let conn = handshake(&inner, to, alpn).await?;
            *current = Some(conn.clone());
            Ok(conn)
        });
        handshake
            .await
            .map_err(|e| TransportError::Unreachable(to, format!("handshake task ended: {e}")))?
    }

    /// After a failed exchange: stops sending on `conn` if it is closed (a new one is made next
    /// time). A connection that is still open stays: a timed-out request says nothing about the
    /// connection, and dropping it would leave it open, unused, until the peer goes away.
    fn forget_if_closed(&self, to: SocketAddr, alpn: &'static [u8], conn: &quinn::Connection) {
        if conn.close_reason().is_none() {
            return;
        }
        let slot = self.inner.slot((to, alpn));
        let Ok(mut current) = slot.try_lock() else {
            return;
        };
        if current.as_ref().map(|c| c.stable_id()) == Some(conn.stable_id()) {
            *current = None;
        }
    }

    /// Sends `body` to `to` and waits for the reply, within `timeout`.
    pub async fn request(
        &self,
        to: SocketAddr,
        alpn: &'static [u8],
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, TransportError> {
        if self.inner.faults.is_blocked(&to) {
            return Err(TransportError::Unreachable(
                to,
                "link cut by fault injection".into(),
            ));
        }
        let mut used = None;
        let exchange = async {
            let conn = self.connection(to, alpn).await?;
            used = Some(conn.clone());
            let (mut send, mut recv) = conn
                .open_bi()
                .await
                .map_err(|e| TransportError::Unreachable(to, e.to_string()))?;
            send.write_all(&body)
                .await
                .map_err(|e| TransportError::Stream(to, e.to_string()))?;
            send.finish()
                .map_err(|e| TransportError::Stream(to, e.to_string()))?;
            recv.read_to_end(MAX_MESSAGE).await.map_err(|e| match e {
                quinn::ReadToEndError::TooLong => TransportError::TooLarge(to, MAX_MESSAGE),
                other => TransportError::Stream(to, other.to_string()),
            })
        };
        let res = match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(TransportError::Timeout(to)),
        };
        if let (Err(_), Some(conn)) = (&res, &used) {
            self.forget_if_closed(to, alpn, conn);
        }
        res
    }

    /// Sends `body` one way on its own stream (gossip). Returns once it is written.
    pub async fn send_oneway(
        &self,
        to: SocketAddr,
        alpn: &'static [u8],
        body: &[u8],
    ) -> Result<(), TransportError> {
        if self.inner.faults.is_blocked(&to) {
            return Err(TransportError::Unreachable(
                to,
                "link cut by fault injection".into(),
            ));
        }
        let conn = self.connection(to, alpn).await?;
        let res = async {
            let mut send = conn
                .open_uni()
                .await
                .map_err(|e| TransportError::Unreachable(to, e.to_string()))?;
            send.write_all(body)
                .await
                .map_err(|e| TransportError::Stream(to, e.to_string()))?;
            send.finish()
                .map_err(|e| TransportError::Stream(to, e.to_string()))
        }
        .await;
        if res.is_err() {
            self.forget_if_closed(to, alpn, &conn);
        }
        res
    }

    /// Closes every connection whose peer certificate the CRL in force revokes.
    pub fn close_revoked(&self) {
        let Ok(live) = self.inner.live.lock() else {
            return;
        };
        for (conn, serial) in live.values() {
            if self.inner.tls.is_revoked(serial) {
                warn!(peer = %conn.remote_address(), serial = %serial, "closing connection of a revoked certificate");
                conn.close(quinn::VarInt::from_u32(403), b"certificate revoked");
            }
        }
    }

    /// Closes the endpoint: every connection ends, the accept loop stops.
    pub fn close(&self) {
        self.inner
            .endpoint
            .close(quinn::VarInt::from_u32(0), b"shutdown");
    }
}

/// The endpoint's UDP socket, with larger buffers than the system default.
fn bind_socket(listen: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(listen),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if let Err(e) = socket.set_recv_buffer_size(SOCKET_BUFFER) {
        debug!(error = %e, "cannot enlarge the UDP receive buffer");
    }
    if let Err(e) = socket.set_send_buffer_size(SOCKET_BUFFER) {
        debug!(error = %e, "cannot enlarge the UDP send buffer");
    }
    socket.set_nonblocking(true)?;
    socket.bind(&listen.into())?;
    Ok(socket.into())
}

impl Inner {
    fn slot(&self, key: ConnKey) -> Slot {
        let mut outgoing = self.outgoing.lock().unwrap_or_else(|e| e.into_inner());
        outgoing.entry(key).or_default().clone()
    }

    /// Sends gossip to the peer of an incoming gossip connection on that connection, unless a
    /// connection to it is in use already. Of two open connections between the pair, the one the
    /// lower certificate serial opened is kept, the other closed: both ends decide alike.
    fn adopt_gossip_connection(&self, conn: &quinn::Connection, peer: &PeerInfo) {
        let Some(peer_serial) = peer.identity.as_ref().map(|id| id.serial_hex.as_str()) else {
            return;
        };
        let slot = self.slot((peer.addr, ALPN_GOSSIP));
        // Busy means a handshake to the peer is under way: the two connections meet the rule
        // below when the next one arrives.
        let Ok(mut current) = slot.try_lock() else {
            return;
        };
        match current.as_ref().filter(|c| c.close_reason().is_none()) {
            None => *current = Some(conn.clone()),
            // A newer connection from the peer replaces its older one (the peer restarted, or
            // dropped it); the peer's connection also wins over ours when its serial is lower.
            Some(existing)
                if existing.side() == quinn::Side::Server
                    || peer_serial < self.own_serial.as_str() =>
            {
                if existing.stable_id() != conn.stable_id() {
                    existing.close(quinn::VarInt::from_u32(0), b"replaced");
                }
                *current = Some(conn.clone());
            }
            Some(_) => {}
        }
    }
}

/// Opens a new connection to `to` over `alpn`; gossip connections are also served (the peer
/// answers on them).
async fn handshake(
    inner: &Arc<Inner>,
    to: SocketAddr,
    alpn: &'static [u8],
) -> Result<quinn::Connection, TransportError> {
    let config = inner
        .client_configs
        .get(alpn)
        .cloned()
        .ok_or_else(|| TransportError::Unreachable(to, "unknown protocol".into()))?;
    let conn = inner
        .endpoint
        .connect_with(config, to, NODE_SAN)
        .map_err(|e| TransportError::Unreachable(to, e.to_string()))?
        .await
        .map_err(|e| TransportError::Unreachable(to, e.to_string()))?;
    track_live(inner, &conn);
    if alpn == ALPN_GOSSIP {
        let peer = PeerInfo {
            addr: to,
            identity: identity_of(&conn),
        };
        tokio::spawn(serve_gossip(inner.clone(), conn.clone(), peer));
    }
    Ok(conn)
}

fn identity_of(conn: &quinn::Connection) -> Option<PeerIdentity> {
    let any = conn.peer_identity()?;
    let certs = any.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    certs.first().and_then(peer_identity)
}

fn track_live(inner: &Arc<Inner>, conn: &quinn::Connection) {
    let Some(id) = identity_of(conn) else { return };
    let key = conn.stable_id();
    if let Ok(mut live) = inner.live.lock() {
        live.insert(key, (conn.clone(), id.serial_hex));
    }
    let weak = Arc::downgrade(inner);
    let conn = conn.clone();
    tokio::spawn(async move {
        conn.closed().await;
        if let Some(inner) = weak.upgrade() {
            if let Ok(mut live) = inner.live.lock() {
                live.remove(&key);
            }
        }
    });
}

async fn accept_connection(inner: Arc<Inner>, incoming: quinn::Incoming) {
    let remote = incoming.remote_address();
    if inner.faults.is_blocked(&remote) {
        incoming.ignore();
        return;
    }
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            warn!(peer = %remote, error = %e, "refused a QUIC connection");
            return;
        }
    };
    let alpn = conn
        .handshake_data()
        .and_then(|h| h.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|h| h.protocol);
    let identity = identity_of(&conn);
    if let Some(id) = &identity {
        if inner.tls.is_revoked(&id.serial_hex) {
            warn!(peer = %remote, subject = %id.subject, "refused a revoked certificate");
            conn.close(quinn::VarInt::from_u32(403), b"certificate revoked");
            return;
        }
    }
    track_live(&inner, &conn);
    let is_node = matches!(
        identity,
        Some(PeerIdentity {
            subject: Subject::Node(_),
            ..
        })
    );
    let alpn: &'static [u8] = match alpn.as_deref() {
        Some(a) if a == ALPN_GOSSIP => ALPN_GOSSIP,
        Some(a) if a == ALPN_RAFT => ALPN_RAFT,
        Some(a) if a == ALPN_AGENT => ALPN_AGENT,
        Some(a) if a == ALPN_JOIN => ALPN_JOIN,
        Some(a) if a == ALPN_LEASE => ALPN_LEASE,
        Some(a) if a == ALPN_CONSOLE => ALPN_CONSOLE,
        Some(a) if a == ALPN_IMAGE => ALPN_IMAGE,
        _ => {
            conn.close(quinn::VarInt::from_u32(400), b"unknown protocol");
            return;
        }
    };
    if alpn != ALPN_JOIN && !is_node {
        warn!(peer = %remote, protocol = %String::from_utf8_lossy(alpn), "refused a peer without a node certificate");
        conn.close(
            quinn::VarInt::from_u32(403),
            b"a node certificate is required",
        );
        return;
    }
    let peer = PeerInfo {
        addr: remote,
        identity,
    };
    if alpn == ALPN_GOSSIP {
        inner.adopt_gossip_connection(&conn, &peer);
        serve_gossip(inner, conn, peer).await;
    } else if alpn == ALPN_CONSOLE || alpn == ALPN_IMAGE {
        serve_streams(inner, conn, peer, alpn).await;
    } else {
        serve_requests(inner, conn, peer, alpn).await;
    }
}

async fn serve_gossip(inner: Arc<Inner>, conn: quinn::Connection, peer: PeerInfo) {
    loop {
        let mut recv = match conn.accept_uni().await {
            Ok(r) => r,
            Err(e) => {
                debug!(peer = %peer.addr, error = %e, "gossip connection ended");
                return;
            }
        };
        if inner.faults.is_blocked(&peer.addr) {
            continue;
        }
        let tx = inner.gossip_tx.clone();
        let from = peer.addr;
        tokio::spawn(async move {
            match recv.read_to_end(MAX_GOSSIP_MESSAGE).await {
                Ok(bytes) => {
                    // A full queue drops the message: gossip repairs itself on the next round.
                    let _ = tx.try_send((from, bytes));
                }
                Err(e) => debug!(peer = %from, error = %e, "bad gossip stream"),
            }
        });
    }
}

/// Hands each incoming bidirectional stream of a byte-pipe protocol to its [`StreamHandler`].
async fn serve_streams(
    inner: Arc<Inner>,
    conn: quinn::Connection,
    peer: PeerInfo,
    alpn: &'static [u8],
) {
    loop {
        let (mut send, recv) = match conn.accept_bi().await {
            Ok(s) => s,
            Err(e) => {
                debug!(peer = %peer.addr, error = %e, "connection ended");
                return;
            }
        };
        if inner.faults.is_blocked(&peer.addr) {
            continue;
        }
        let handler = inner
            .stream_handlers
            .read()
            .ok()
            .and_then(|h| h.get(alpn).cloned());
        let peer = peer.clone();
        tokio::spawn(async move {
            match handler {
                Some(h) => h.handle(peer, send, recv).await,
                None => {
                    let _ = send.reset(quinn::VarInt::from_u32(404));
                }
            }
        });
    }
}

async fn serve_requests(
    inner: Arc<Inner>,
    conn: quinn::Connection,
    peer: PeerInfo,
    alpn: &'static [u8],
) {
    loop {
        let (mut send, mut recv) = match conn.accept_bi().await {
            Ok(s) => s,
            Err(e) => {
                debug!(peer = %peer.addr, error = %e, "connection ended");
                return;
            }
        };
        if inner.faults.is_blocked(&peer.addr) {
            continue;
        }
        let handler = inner
            .handlers
            .read()
            .ok()
            .and_then(|h| h.get(alpn).cloned());
        let peer = peer.clone();
        tokio::spawn(async move {
            let body = match recv.read_to_end(MAX_MESSAGE).await {
                Ok(b) => b,
                Err(e) => {
                    debug!(peer = %peer.addr, error = %e, "bad request stream");
                    return;
                }
            };
            let reply = match handler {
                Some(h) => h.handle(peer.clone(), body).await,
                None => b"{\"error\":\"this node does not serve that protocol yet\"}".to_vec(),
            };
            if send.write_all(&reply).await.is_ok() {
                let _ = send.finish();
            }
        });
    }
}
