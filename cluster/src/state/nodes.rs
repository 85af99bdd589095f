//! Members of the cluster, join tokens and revoked certificates, as the desired state records them.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::NodeId;

/// The cluster CA's certificate and private key. Held only in the Raft state, which only
/// admin-eligible nodes replicate, so any of them can sign joins once it leads.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CaMaterial {
    pub cert_pem: String,
    pub key_pem: String,
}

/// What kind of node a member is.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum NodeRole {
    /// Can hold a Raft replica, be promoted to voter, and lead.
    AdminEligible,
    /// Runs servers only; never part of Raft.
    Compute,
}

impl NodeRole {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::AdminEligible => "admin-eligible",
            NodeRole::Compute => "compute",
        }
    }
}

/// A member of the cluster as the desired state records it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeRecord {
    pub id: NodeId,
    pub name: String,
    /// The node's QUIC address (UDP); the HTTPS API listens on the same port over TCP.
    pub addr: SocketAddr,
    pub role: NodeRole,
    /// Hex serial number of the certificate the cluster CA issued to it.
    pub cert_serial: String,
    pub joined_at: u64,
}

/// A single-use join token. Only a hash of its secret is stored.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct JoinTokenRecord {
    pub id: String,
    pub secret_sha256: String,
    pub expires_at: u64,
    pub created_by: String,
    /// The node that used it; a used token is refused.
    pub used_by: Option<String>,
}

/// A revoked certificate (a removed node or user).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Revocation {
    pub cert_serial: String,
    pub subject: String,
    pub revoked_at: u64,
}
