//! Raft election and the replicated desired-state store (openraft 0.9).
//!
//! - [`store`]: durable vote, snapshots and state machine in one redb database
//!   (`<data_dir>/raft.redb`), the log in an append-only file next to it (`raft.wal`).
//! - [`reads`]: linearizable reads that share read-index rounds.
//! - [`network`]: Raft RPCs as request/response exchanges on the QUIC endpoint (ALPN
//!   [`ALPN_RAFT`](crate::transport::ALPN_RAFT)), and the handler that serves them.
//!
//! [`open_raft`] puts them together. The applied [`ClusterState`](crate::state::ClusterState) is
//! read through the [`StateHandle`] it returns; changes go through a [`WriteBatcher`] (group
//! commit) on the leader.

pub mod network;
pub mod reads;
pub mod store;
#[cfg(test)]
mod tests;
pub(crate) mod wal;
pub mod writes;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use network::{
    decode_rpc, encode_reply, RaftRpc, RaftRpcHandler, RaftRpcReply, RpcCallError, RpcNetwork,
    RpcNetworkFactory, RpcTransport,
};
pub use store::{open_store, LogStore, SnapshotBuilder, StateHandle, StateMachineStore, DB_FILE};
pub use writes::{ProposeError, WriteBatcher};

use crate::state::{CommandOutcome, NodeId, Write};
use crate::transport::{QuicEndpoint, ALPN_RAFT};

openraft::declare_raft_types!(
    /// Openraft type configuration of the cluster's desired-state Raft group.
    pub TypeConfig:
        D = Write,
        R = Vec<CommandOutcome>,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = std::io::Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A running Raft node of the cluster. Cheap to clone.
pub type ClusterRaft = openraft::Raft<TypeConfig>;

/// The network factory used in production: Raft RPCs over the QUIC endpoint.
pub type QuicNetworkFactory = RpcNetworkFactory<QuicEndpoint>;

/// Build a snapshot (and allow purging the log before it) every this many applied entries.
pub const SNAPSHOT_EVERY_LOGS: u64 = 5000;
/// How many entries already in a snapshot stay in the log (so slightly lagging followers catch up
/// from the log rather than with a snapshot).
pub const KEEP_LOGS_AFTER_SNAPSHOT: u64 = 1000;
/// Largest snapshot chunk sent in one `InstallSnapshot` RPC (before JSON encoding, which makes the
/// bytes about 3.5 times larger).
pub const SNAPSHOT_CHUNK_BYTES: u64 = 256 * 1024;

/// Raft timing settings, in milliseconds.
///
/// The heartbeat interval is also openraft's deadline for one `AppendEntries` RPC, so it must
/// cover a round trip on the QUIC transport; the election timeout must be well above it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftTimings {
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
}

impl Default for RaftTimings {
    fn default() -> Self {
        RaftTimings {
            heartbeat_ms: 200,
            election_min_ms: 1000,
            election_max_ms: 2000,
        }
    }
}

impl RaftTimings {
    /// The openraft configuration for these timings (validated): snapshot every
    /// [`SNAPSHOT_EVERY_LOGS`] entries, keep [`KEEP_LOGS_AFTER_SNAPSHOT`] entries behind it.
    #[allow(clippy::result_large_err)] // openraft's error type
    pub fn to_config(&self) -> Result<openraft::Config, openraft::ConfigError> {
        self.config_with(SNAPSHOT_EVERY_LOGS, KEEP_LOGS_AFTER_SNAPSHOT)
    }

    /// Like [`to_config`](Self::to_config) with an explicit snapshot interval and the number of
    /// snapshotted entries to keep in the log.
    #[allow(clippy::result_large_err)] // openraft's error type
    pub fn config_with(
        &self,
        snapshot_every_logs: u64,
        keep_logs: u64,
    ) -> Result<openraft::Config, openraft::ConfigError> {
        let mut c = openraft::Config {
            cluster_name: "skiff".to_string(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_min_ms,
            election_timeout_max: self.election_max_ms,
            ..Default::default()
        };
        // Per-chunk deadline for sending a snapshot.
        c.install_snapshot_timeout = self.election_max_ms.max(2000);
        c.snapshot_policy = openraft::SnapshotPolicy::LogsSinceLast(snapshot_every_logs.max(1));
        c.max_in_snapshot_log_to_keep = keep_logs;
        c.snapshot_max_chunk_size = SNAPSHOT_CHUNK_BYTES;
        // A follower further behind than this gets a snapshot instead of log entries.
        c.replication_lag_threshold = snapshot_every_logs.max(1) + keep_logs;
        c.validate()
    }
}

/// Why a Raft node could not be started.
#[derive(Debug, thiserror::Error)]
pub enum RaftSetupError {
    #[error("invalid raft timings: {0}")]
    Config(#[from] openraft::ConfigError),
    #[error("cannot create the raft data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the raft store {path}: {source}")]
    Store {
        path: PathBuf,
        source: openraft::StorageError<NodeId>,
    },
    #[error("cannot start raft: {0}")]
    Start(#[from] openraft::error::Fatal<NodeId>),
}

/// The Raft node record of a member: its QUIC address.
pub fn raft_node(addr: SocketAddr) -> openraft::BasicNode {
    openraft::BasicNode::new(addr.to_string())
}

/// Opens the Raft store at `data_dir/raft.redb` (creating the directory and the database if
/// missing), starts the Raft node `node_id` with RPCs over `endpoint`, and registers the Raft RPC
/// handler on the endpoint for ALPN [`ALPN_RAFT`].
///
/// A restarted node recovers its vote, log and applied state from the same `data_dir`. A new node
/// starts uninitialized: the first node of a cluster calls `raft.initialize(..)`, later ones are
/// added by the leader (`add_learner`, then `change_membership`).
pub async fn open_raft(
    node_id: NodeId,
    data_dir: &Path,
    timings: RaftTimings,
    endpoint: QuicEndpoint,
) -> Result<(ClusterRaft, StateHandle), RaftSetupError> {
    let config = timings.to_config()?;
    let (raft, state) = start_raft(node_id, data_dir, config, endpoint.clone()).await?;
    endpoint.set_request_handler(ALPN_RAFT, Arc::new(RaftRpcHandler::new(raft.clone())));
    Ok((raft, state))
}

/// [`open_raft`] over any [`RpcTransport`], without registering a handler (the caller routes
/// incoming RPCs to a [`RaftRpcHandler`]).
pub async fn start_raft<T: RpcTransport>(
    node_id: NodeId,
    data_dir: &Path,
    config: openraft::Config,
    transport: T,
) -> Result<(ClusterRaft, StateHandle), RaftSetupError> {
    std::fs::create_dir_all(data_dir).map_err(|source| RaftSetupError::DataDir {
        path: data_dir.to_path_buf(),
        source,
    })?;
    let path = data_dir.join(DB_FILE);
    let (log_store, state_machine) =
        open_store(&path)
            .await
            .map_err(|source| RaftSetupError::Store {
                path: path.clone(),
                source,
            })?;
    let state = state_machine.state_handle();
    let raft = ClusterRaft::new(
        node_id,
        Arc::new(config),
        RpcNetworkFactory::new(transport),
        log_store,
        state_machine,
    )
    .await?;
    Ok((raft, state))
}
