//! Raft RPCs over the QUIC transport.
//!
//! Every RPC is one request/response exchange on the endpoint with ALPN
//! [`ALPN_RAFT`]: the body is a serde_json [`RaftRpc`], the reply a serde_json [`RaftRpcReply`]
//! holding openraft's own `Result<Response, RaftError>` for that RPC. Snapshots use openraft's
//! default chunked `full_snapshot`, one `InstallSnapshot` RPC per chunk.
//!
//! Client side errors: a peer that cannot be reached (no connection), an unusable peer address,
//! and a request the peer refused ([`RaftRpcReply::Rejected`]) become [`RPCError::Unreachable`],
//! so openraft backs off (50 ms doubling to 500 ms) before retrying; a timed-out exchange and
//! other transport and decoding failures become [`RPCError::Network`], retried with the next
//! heartbeat.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use openraft::error::{
    Infallible, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::{Deserialize, Serialize};

use super::{ClusterRaft, TypeConfig};
use crate::state::NodeId;
use crate::tls::Subject;
use crate::transport::{PeerInfo, QuicEndpoint, RequestHandler, TransportError, ALPN_RAFT};

/// A Raft RPC as sent on the wire (serde_json).
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftRpc {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
}

/// The reply to a [`RaftRpc`] (serde_json): the variant of the request with openraft's result, or
/// `Rejected` when the request was not served at all.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftRpcReply {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    /// The request did not decode, or the caller is not a cluster node.
    Rejected {
        reason: String,
    },
}

/// A failed exchange on an [`RpcTransport`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct RpcCallError {
    /// The peer could not be reached at all (no connection): openraft should back off.
    pub unreachable: bool,
    pub message: String,
}

impl RpcCallError {
    fn unreachable(message: impl Into<String>) -> Self {
        RpcCallError {
            unreachable: true,
            message: message.into(),
        }
    }

    fn network(message: impl Into<String>) -> Self {
        RpcCallError {
            unreachable: false,
            message: message.into(),
        }
    }
}

/// How Raft RPC bytes reach a peer: the QUIC endpoint in production, an in-process router in
/// tests.
pub trait RpcTransport: Clone + Send + Sync + 'static {
    /// Sends `body` to `to` and returns the reply body.
    fn call(
        &self,
        to: SocketAddr,
        body: Vec<u8>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Vec<u8>, RpcCallError>> + Send;
}

impl RpcTransport for QuicEndpoint {
    async fn call(
        &self,
        to: SocketAddr,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, RpcCallError> {
        self.request(to, ALPN_RAFT, body, timeout)
            .await
            .map_err(|e| RpcCallError {
                // A timed-out exchange is not a dead peer: openraft retries it with the next
                // heartbeat or entry instead of backing off (a loaded node answers late).
                unreachable: matches!(e, TransportError::Unreachable(..)),
                message: e.to_string(),
            })
    }
}

/// Creates one [`RpcNetwork`] per target node.
#[derive(Clone)]
pub struct RpcNetworkFactory<T> {
    transport: T,
}

impl<T: RpcTransport> RpcNetworkFactory<T> {
    pub fn new(transport: T) -> Self {
        RpcNetworkFactory { transport }
    }
}

impl<T: RpcTransport> RaftNetworkFactory<TypeConfig> for RpcNetworkFactory<T> {
    type Network = RpcNetwork<T>;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        let addr = node
            .addr
            .parse::<SocketAddr>()
            .map_err(|e| format!("node {target} has an unusable address {:?}: {e}", node.addr));
        RpcNetwork {
            transport: self.transport.clone(),
            target,
            node: node.clone(),
            addr,
        }
    }
}

/// Sends Raft RPCs to one target node.
pub struct RpcNetwork<T> {
    transport: T,
    target: NodeId,
    node: BasicNode,
    addr: Result<SocketAddr, String>,
}

type RpcResult<R, E> = Result<R, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl<T: RpcTransport> RpcNetwork<T> {
    async fn send<E: std::error::Error>(
        &self,
        rpc: &RaftRpc,
        timeout: Duration,
    ) -> RpcResult<RaftRpcReply, E> {
        let addr = match &self.addr {
            Ok(addr) => *addr,
            Err(msg) => {
                return Err(RPCError::Unreachable(Unreachable::new(
                    &RpcCallError::unreachable(msg.clone()),
                )))
            }
        };
        let body = serde_json::to_vec(rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let reply = self
            .transport
            .call(addr, body, timeout)
            .await
            .map_err(|e| {
                if e.unreachable {
                    RPCError::Unreachable(Unreachable::new(&e))
                } else {
                    RPCError::Network(NetworkError::new(&e))
                }
            })?;
        let reply: RaftRpcReply = serde_json::from_slice(&reply).map_err(|e| {
            RPCError::Network(NetworkError::new(&RpcCallError::network(format!(
                "undecodable raft reply from node {} ({addr}): {e}",
                self.target
            ))))
        })?;
        if let RaftRpcReply::Rejected { reason } = reply {
            return Err(RPCError::Unreachable(Unreachable::new(
                &RpcCallError::unreachable(format!(
                    "node {} ({addr}) refused the raft request: {reason}",
                    self.target
                )),
            )));
        }
        Ok(reply)
    }

    // The error type is openraft's, as `RaftNetwork` requires.
    #[allow(clippy::result_large_err)]
    fn remote<R, E: std::error::Error>(
        &self,
        res: Result<R, RaftError<NodeId, E>>,
    ) -> RpcResult<R, E> {
        res.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }

    #[allow(clippy::result_large_err)]
    fn mismatch<R, E: std::error::Error>(
        &self,
        wanted: &str,
        got: &RaftRpcReply,
    ) -> RpcResult<R, E> {
        let got = match got {
            RaftRpcReply::AppendEntries(_) => "AppendEntries",
            RaftRpcReply::Vote(_) => "Vote",
            RaftRpcReply::InstallSnapshot(_) => "InstallSnapshot",
            RaftRpcReply::Rejected { .. } => "Rejected",
        };
        Err(RPCError::Network(NetworkError::new(
            &RpcCallError::network(format!(
                "node {} answered a {wanted} request with a {got} reply",
                self.target
            )),
        )))
    }
}

/// The deadline for one exchange: openraft's soft TTL, so that the call ends (with an error we
/// choose) before openraft drops it at the hard TTL.
fn deadline(option: &RPCOption) -> Duration {
    option.soft_ttl().max(Duration::from_millis(1))
}

impl<T: RpcTransport> RaftNetwork<TypeConfig> for RpcNetwork<T> {
    /// After an unreachable peer: 50 ms, doubling to at most 500 ms (openraft's own is a flat
    /// 500 ms, longer than the leader's lease: one refused exchange would cost the lease).
    fn backoff(&self) -> Backoff {
        Backoff::new((0u32..).map(|i| Duration::from_millis((50u64 << i.min(4)).min(500))))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, Infallible> {
        match self
            .send(&RaftRpc::AppendEntries(rpc), deadline(&option))
            .await?
        {
            RaftRpcReply::AppendEntries(res) => self.remote(res),
            other => self.mismatch("AppendEntries", &other),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        match self
            .send(&RaftRpc::InstallSnapshot(rpc), deadline(&option))
            .await?
        {
            RaftRpcReply::InstallSnapshot(res) => self.remote(res),
            other => self.mismatch("InstallSnapshot", &other),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, Infallible> {
        match self.send(&RaftRpc::Vote(rpc), deadline(&option)).await? {
            RaftRpcReply::Vote(res) => self.remote(res),
            other => self.mismatch("Vote", &other),
        }
    }
}

/// Serves Raft RPCs that arrive on the endpoint (ALPN [`ALPN_RAFT`]).
///
/// Only peers that authenticated with a node certificate may call; anything else, and any body
/// that does not decode, gets a [`RaftRpcReply::Rejected`] reply.
#[derive(Clone)]
pub struct RaftRpcHandler {
    raft: ClusterRaft,
}

impl RaftRpcHandler {
    pub fn new(raft: ClusterRaft) -> Self {
        RaftRpcHandler { raft }
    }

    /// Checks the caller, decodes `body` and runs the RPC on the local Raft node.
    pub async fn serve(&self, peer: &PeerInfo, body: &[u8]) -> RaftRpcReply {
        match peer.identity.as_ref().map(|id| &id.subject) {
            Some(Subject::Node(_)) => {}
            Some(subject) => {
                tracing::warn!(peer = %peer.addr, ?subject, "raft request from a non-node certificate refused");
                return RaftRpcReply::Rejected {
                    reason: "only cluster nodes may send raft requests".into(),
                };
            }
            None => {
                tracing::warn!(peer = %peer.addr, "raft request from an unauthenticated peer refused");
                return RaftRpcReply::Rejected {
                    reason: "only cluster nodes may send raft requests".into(),
                };
            }
        }
        let rpc = match decode_rpc(body) {
            Ok(rpc) => rpc,
            Err(reason) => {
                tracing::warn!(peer = %peer.addr, %reason, "undecodable raft request");
                return RaftRpcReply::Rejected { reason };
            }
        };
        match rpc {
            RaftRpc::AppendEntries(req) => {
                RaftRpcReply::AppendEntries(self.raft.append_entries(req).await)
            }
            RaftRpc::Vote(req) => RaftRpcReply::Vote(self.raft.vote(req).await),
            RaftRpc::InstallSnapshot(req) => {
                RaftRpcReply::InstallSnapshot(self.raft.install_snapshot(req).await)
            }
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for RaftRpcHandler {
    async fn handle(&self, peer: PeerInfo, body: Vec<u8>) -> Vec<u8> {
        let reply = self.serve(&peer, &body).await;
        encode_reply(&reply)
    }
}

/// Decodes a request body; the error is a message for a [`RaftRpcReply::Rejected`] reply.
pub fn decode_rpc(body: &[u8]) -> Result<RaftRpc, String> {
    serde_json::from_slice(body).map_err(|e| format!("undecodable raft request: {e}"))
}

/// Encodes a reply. Never fails: if the reply cannot be encoded, a `Rejected` reply is sent.
pub fn encode_reply(reply: &RaftRpcReply) -> Vec<u8> {
    match serde_json::to_vec(reply) {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a raft reply");
            let rejected = RaftRpcReply::Rejected {
                reason: format!("the reply could not be encoded: {e}"),
            };
            serde_json::to_vec(&rejected).unwrap_or_else(|_| {
                br#"{"Rejected":{"reason":"the reply could not be encoded"}}"#.to_vec()
            })
        }
    }
}
