//! A *prototype* chitchat transport over QUIC, for the gossip benchmark only (not product code):
//! what `skiff_cluster::gossip::QuicGossipTransport` would cost with two changes to the QUIC
//! endpoint, measured next to it.
//!
//! 1. One connection per pair of nodes, used both ways: a connection a peer opened to us is also
//!    the one we send on (the product opens a second connection back for every reply).
//! 2. One connection attempt at a time per peer: concurrent sends to a peer that is still being
//!    connected wait for that handshake instead of starting their own (the product starts one
//!    handshake per message and keeps the losers open, kept alive, until the peer goes away).
//!
//! Optionally (`rcvbuf`), a third: a larger socket receive buffer than the system default, as
//! QUIC stacks recommend (quic-go asks for 7 MB).
//!
//! Everything else is as in the product: the same TLS configurations (mutual TLS 1.3 against the
//! cluster CA, node certificates required), the same QUIC transport settings, one one-way stream
//! per chitchat message, sends that only queue.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context};
use chitchat::transport::{Socket, Transport};
use chitchat::{ChitchatMessage, Deserializable, Serializable};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::CertificateDer;
use skiff_cluster::identity::NODE_SAN;
use skiff_cluster::tls::{peer_identity, Subject, TlsContext};
use skiff_cluster::transport::{ALPN_GOSSIP, MAX_GOSSIP_MESSAGE};
use tokio::sync::mpsc;

/// Same queue sizes as the product.
const INBOX: usize = 1024;
const OUTBOX: usize = 4096;

type Slot = Arc<tokio::sync::Mutex<Option<quinn::Connection>>>;
type Message = (SocketAddr, Vec<u8>);

struct Inner {
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    peers: Mutex<HashMap<SocketAddr, Slot>>,
    inbox_tx: mpsc::Sender<Message>,
}

/// A node's QUIC endpoint in the prototype (gossip only).
pub struct SharedQuicEndpoint {
    inner: Arc<Inner>,
    inbox_rx: Mutex<Option<mpsc::Receiver<Message>>>,
}

/// The product's transport settings (`skiff_cluster::transport::transport_config`).
fn transport_config(keep_alive: bool) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(quinn::VarInt::from_u32(10_000).into()));
    if keep_alive {
        t.keep_alive_interval(Some(Duration::from_secs(2)));
    }
    t.max_concurrent_uni_streams(256u32.into());
    t.max_concurrent_bidi_streams(256u32.into());
    Arc::new(t)
}

fn is_node(conn: &quinn::Connection) -> bool {
    conn.peer_identity()
        .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
        .and_then(|certs| certs.first().and_then(peer_identity))
        .is_some_and(|id| matches!(id.subject, Subject::Node(_)))
}

impl SharedQuicEndpoint {
    /// Binds on `listen`; `rcvbuf` (bytes) sets SO_RCVBUF when not zero.
    pub fn bind(listen: SocketAddr, tls: Arc<TlsContext>, rcvbuf: usize) -> anyhow::Result<Self> {
        let server_crypto = QuicServerConfig::try_from(tls.quic_server_config(&[ALPN_GOSSIP])?)?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
        server.transport_config(transport_config(false));
        let client_crypto = QuicClientConfig::try_from(tls.quic_client_config(ALPN_GOSSIP)?)?;
        let mut client = quinn::ClientConfig::new(Arc::new(client_crypto));
        client.transport_config(transport_config(true));
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(listen),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        if rcvbuf > 0 {
            socket.set_recv_buffer_size(rcvbuf)?;
        }
        socket.set_nonblocking(true)?;
        socket
            .bind(&listen.into())
            .with_context(|| format!("cannot bind {listen}"))?;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server),
            socket.into(),
            Arc::new(quinn::TokioRuntime),
        )?;
        let (inbox_tx, inbox_rx) = mpsc::channel(INBOX);
        let inner = Arc::new(Inner {
            endpoint: endpoint.clone(),
            client,
            peers: Mutex::new(HashMap::new()),
            inbox_tx,
        });
        let weak = Arc::downgrade(&inner);
        tokio::spawn(async move {
            while let Some(incoming) = endpoint.accept().await {
                let Some(inner) = weak.upgrade() else { break };
                tokio::spawn(async move {
                    let Ok(conn) = incoming.await else { return };
                    if !is_node(&conn) {
                        conn.close(
                            quinn::VarInt::from_u32(403),
                            b"a node certificate is required",
                        );
                        return;
                    }
                    // Send on this connection too, unless we hold (or are making) one already.
                    let slot = inner.slot(conn.remote_address());
                    if let Ok(mut s) = slot.try_lock() {
                        if s.as_ref().is_none_or(|c| c.close_reason().is_some()) {
                            *s = Some(conn.clone());
                        }
                    }
                    let tx = inner.inbox_tx.clone();
                    drop(inner);
                    read_loop(conn, tx).await;
                });
            }
        });
        Ok(SharedQuicEndpoint {
            inner,
            inbox_rx: Mutex::new(Some(inbox_rx)),
        })
    }

    pub fn close(&self) {
        self.inner
            .endpoint
            .close(quinn::VarInt::from_u32(0), b"shutdown");
    }
}

impl Inner {
    fn slot(&self, peer: SocketAddr) -> Slot {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        peers.entry(peer).or_default().clone()
    }

    async fn send(self: &Arc<Self>, to: SocketAddr, bytes: &[u8]) -> anyhow::Result<()> {
        let slot = self.slot(to);
        let conn = {
            // Held across the handshake: one attempt at a time per peer.
            let mut s = slot.lock().await;
            match s.as_ref() {
                Some(c) if c.close_reason().is_none() => c.clone(),
                _ => {
                    *s = None;
                    let c = self
                        .endpoint
                        .connect_with(self.client.clone(), to, NODE_SAN)?
                        .await?;
                    tokio::spawn(read_loop(c.clone(), self.inbox_tx.clone()));
                    *s = Some(c.clone());
                    c
                }
            }
        };
        let res = async {
            let mut stream = conn.open_uni().await?;
            stream.write_all(bytes).await?;
            stream.finish()?;
            anyhow::Ok(())
        }
        .await;
        if res.is_err() {
            let mut s = slot.lock().await;
            if s.as_ref().map(|c| c.stable_id()) == Some(conn.stable_id()) {
                *s = None;
            }
        }
        res
    }
}

/// Delivers every message a peer sends on `conn`, until it closes.
async fn read_loop(conn: quinn::Connection, tx: mpsc::Sender<(SocketAddr, Vec<u8>)>) {
    let from = conn.remote_address();
    while let Ok(mut recv) = conn.accept_uni().await {
        let tx = tx.clone();
        tokio::spawn(async move {
            if let Ok(bytes) = recv.read_to_end(MAX_GOSSIP_MESSAGE).await {
                let _ = tx.try_send((from, bytes));
            }
        });
    }
}

#[async_trait::async_trait]
impl Transport for SharedQuicEndpoint {
    async fn open(&self, _listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let inbox = self
            .inbox_rx
            .lock()
            .ok()
            .and_then(|mut rx| rx.take())
            .ok_or_else(|| anyhow!("the gossip socket of this endpoint is already open"))?;
        let (out_tx, mut out_rx) = mpsc::channel::<(SocketAddr, Vec<u8>)>(OUTBOX);
        let inner = self.inner.clone();
        tokio::spawn(async move {
            while let Some((to, bytes)) = out_rx.recv().await {
                let inner = inner.clone();
                tokio::spawn(async move {
                    let _ = inner.send(to, &bytes).await;
                });
            }
        });
        Ok(Box::new(SharedQuicSocket { inbox, out_tx }))
    }
}

struct SharedQuicSocket {
    inbox: mpsc::Receiver<(SocketAddr, Vec<u8>)>,
    out_tx: mpsc::Sender<(SocketAddr, Vec<u8>)>,
}

#[async_trait::async_trait]
impl Socket for SharedQuicSocket {
    async fn send(&mut self, to: SocketAddr, msg: ChitchatMessage) -> anyhow::Result<()> {
        let mut buf = Vec::with_capacity(msg.serialized_len());
        msg.serialize(&mut buf);
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
            if let Ok(msg) = ChitchatMessage::deserialize(&mut &bytes[..]) {
                return Ok((from, msg));
            }
        }
    }
}
