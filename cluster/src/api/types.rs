//! Request and response bodies of the control API (`/api/v1/...`), shared by the server in
//! `skiffd` and the client in `skiff`. Field names are the JSON names: renaming one breaks the
//! wire format.

use serde::{Deserialize, Serialize};

/// Path prefix of every control API route.
pub const API_PREFIX: &str = "/api/v1";

/// Role a node was admitted with.
pub const ROLE_ADMIN_ELIGIBLE: &str = "admin-eligible";
/// Role of a node that runs servers but never votes.
pub const ROLE_COMPUTE: &str = "compute";

/// Usage of one storage pool on a node, in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolUsage {
    pub name: String,
    pub total: u64,
    pub used: u64,
}

/// One member of the cluster as the leader sees it (`GET /api/v1/nodes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    pub name: String,
    pub id: u64,
    /// QUIC listen address, `HOST:PORT`; the API is served on the same address over TCP.
    pub address: String,
    /// [`ROLE_ADMIN_ELIGIBLE`] or [`ROLE_COMPUTE`].
    pub role: String,
    /// Whether the node is a Raft voter (false: learner or not a Raft member).
    pub voter: bool,
    /// Whether gossip considers the node alive.
    pub alive: bool,
    /// Whether the node is the current Raft leader.
    pub leader: bool,
    /// Raft term the node last reported.
    pub term: u64,
    /// Incarnation of the node's agent, new on every restart.
    pub generation: u64,
    /// Version of the node's agent.
    pub version: String,
    pub cores: u32,
    /// Bytes of memory.
    pub memory_total: u64,
    /// Bytes of memory in use.
    pub memory_used: u64,
    /// CPU in use on the machine, in thousandths of a core (2000: two cores busy).
    #[serde(default)]
    pub cpu_milli: u64,
    pub storage: Vec<PoolUsage>,
    /// Number of servers (virtual machines) placed on the node.
    pub servers: u32,
}

/// Raft membership and leadership (`GET /api/v1/cluster`, and the answer to promote/demote).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    pub cluster_id: String,
    /// Name of the current leader, if one is known.
    pub leader: Option<String>,
    pub term: u64,
    /// Names of the voting members.
    pub voters: Vec<String>,
    /// Names of the non-voting members.
    pub learners: Vec<String>,
}

/// Body of `POST /api/v1/nodes/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRequest {
    /// How long the join token stays valid, in seconds.
    pub ttl_secs: u64,
}

/// Answer to `POST /api/v1/nodes/tokens`: a join token for a new node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    pub token: String,
    /// Unix time (seconds) after which the token is refused.
    pub expires_at: u64,
}

/// Body of `POST /api/v1/nodes/promote` and `POST /api/v1/nodes/demote`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipRequest {
    pub names: Vec<String>,
    /// Accept a change that leaves an even number of voters.
    #[serde(default)]
    pub allow_even: bool,
}

/// Body of every non-2xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Machine-readable reason, e.g. [`ApiError::NOT_LEADER`].
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// With [`ApiError::NOT_LEADER`]: the leader's API address, `HOST:PORT`.
    #[serde(default)]
    pub leader: Option<String>,
}

impl ApiError {
    /// A follower answered; `leader` holds the address to ask instead (HTTP 307).
    pub const NOT_LEADER: &'static str = "not_leader";
    /// No leader is known right now (HTTP 503).
    pub const NO_LEADER: &'static str = "no_leader";
    /// A write reached the Raft log but its commit could not be confirmed (HTTP 503): it may
    /// still take effect. Unlike [`ApiError::NO_LEADER`], clients do not send it again blindly.
    pub const OUTCOME_UNKNOWN: &'static str = "outcome_unknown";

    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            leader: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_view_round_trips_with_wire_names() {
        let node = NodeView {
            name: "n1".into(),
            id: 7,
            address: "10.0.0.1:7000".into(),
            role: ROLE_ADMIN_ELIGIBLE.into(),
            voter: true,
            alive: true,
            leader: false,
            term: 3,
            generation: 1_700_000_000,
            version: "0.1.0".into(),
            cores: 8,
            memory_total: 16 << 30,
            memory_used: 4 << 30,
            cpu_milli: 0,
            storage: vec![PoolUsage {
                name: "local".into(),
                total: 100,
                used: 10,
            }],
            servers: 2,
        };
        let json = serde_json::to_value(&node).unwrap();
        for key in [
            "name",
            "id",
            "address",
            "role",
            "voter",
            "alive",
            "leader",
            "term",
            "generation",
            "version",
            "cores",
            "memory_total",
            "memory_used",
            "cpu_milli",
            "storage",
            "servers",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        let back: NodeView = serde_json::from_value(json).unwrap();
        assert_eq!(back, node);
    }

    #[test]
    fn api_error_leader_is_optional() {
        let e: ApiError = serde_json::from_str(r#"{"code":"no_leader","message":"none"}"#).unwrap();
        assert_eq!(e.leader, None);
        assert_eq!(e.code, ApiError::NO_LEADER);
    }
}
