//! The cluster's desired state: what the Raft log replicates and every admin-eligible node applies.
//!
//! Every change is a [`Command`]; [`ClusterState::apply`] is deterministic (it never reads the clock
//! or any other local fact: the leader puts the time into the command), so every replica that applies
//! the same log reaches the same state.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Raft node id of a cluster member (assigned by the leader when the node joins; the first node is 1).
pub type NodeId = u64;

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

/// What a user may do.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum UserRole {
    Admin,
    User,
    ReadOnly,
}

/// A user of the control API.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserRecord {
    pub name: String,
    pub role: UserRole,
    /// Hex serials of the client certificates issued to this user.
    pub cert_serials: Vec<String>,
    pub disabled: bool,
}

/// The whole replicated desired state.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClusterState {
    pub cluster_id: String,
    pub ca: Option<CaMaterial>,
    pub nodes: BTreeMap<String, NodeRecord>,
    pub next_node_id: NodeId,
    pub join_tokens: BTreeMap<String, JoinTokenRecord>,
    pub revoked: BTreeMap<String, Revocation>,
    /// Increases with every revocation: the number of the CRL the leader publishes.
    pub crl_number: u64,
    pub users: BTreeMap<String, UserRecord>,
}

/// A change to the desired state. The leader fills in every time and id before proposing it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// The first command of a new cluster: written once by the node `skiffd init` created.
    Bootstrap {
        cluster_id: String,
        ca: CaMaterial,
        node: NodeRecord,
        admin: UserRecord,
    },
    CreateJoinToken {
        token: JoinTokenRecord,
    },
    /// Uses a join token and records the new node under the next free id.
    Join {
        token_id: String,
        secret_sha256: String,
        now: u64,
        name: String,
        addr: SocketAddr,
        role: NodeRole,
        cert_serial: String,
    },
    /// Removes a node and revokes its certificate.
    RemoveNode {
        name: String,
        now: u64,
    },
    /// Drops expired join tokens.
    PruneTokens {
        now: u64,
    },
}

/// What applying a command produced.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum CommandOutcome {
    Done,
    Joined {
        node_id: NodeId,
    },
    Removed {
        node: NodeRecord,
    },
    /// The command was refused; the state is unchanged.
    Refused {
        code: RefusalCode,
        message: String,
    },
}

/// Why a command was refused.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RefusalCode {
    AlreadyBootstrapped,
    NotBootstrapped,
    TokenUnknown,
    TokenUsed,
    TokenExpired,
    NameTaken,
    AddressTaken,
    NotFound,
    Conflict,
}

impl CommandOutcome {
    fn refused(code: RefusalCode, message: impl Into<String>) -> Self {
        CommandOutcome::Refused {
            code,
            message: message.into(),
        }
    }
}

impl ClusterState {
    /// Applies one command. Deterministic: the same state and command give the same result.
    pub fn apply(&mut self, cmd: &Command) -> CommandOutcome {
        match cmd {
            Command::Bootstrap {
                cluster_id,
                ca,
                node,
                admin,
            } => {
                if self.ca.is_some() {
                    return CommandOutcome::refused(
                        RefusalCode::AlreadyBootstrapped,
                        "the cluster is already bootstrapped",
                    );
                }
                self.cluster_id = cluster_id.clone();
                self.ca = Some(ca.clone());
                self.next_node_id = self.next_node_id.max(node.id + 1);
                self.nodes.insert(node.name.clone(), node.clone());
                self.users.insert(admin.name.clone(), admin.clone());
                CommandOutcome::Done
            }
            Command::CreateJoinToken { token } => {
                if self.ca.is_none() {
                    return CommandOutcome::refused(
                        RefusalCode::NotBootstrapped,
                        "the cluster is not bootstrapped yet",
                    );
                }
                if self.join_tokens.contains_key(&token.id) {
                    return CommandOutcome::refused(
                        RefusalCode::Conflict,
                        "token id already exists",
                    );
                }
                self.join_tokens.insert(token.id.clone(), token.clone());
                CommandOutcome::Done
            }
            Command::Join {
                token_id,
                secret_sha256,
                now,
                name,
                addr,
                role,
                cert_serial,
            } => {
                let Some(token) = self.join_tokens.get(token_id) else {
                    return CommandOutcome::refused(
                        RefusalCode::TokenUnknown,
                        "the join token is not known to this cluster",
                    );
                };
                if token.secret_sha256 != *secret_sha256 {
                    return CommandOutcome::refused(
                        RefusalCode::TokenUnknown,
                        "the join token is not known to this cluster",
                    );
                }
                if let Some(by) = &token.used_by {
                    return CommandOutcome::refused(
                        RefusalCode::TokenUsed,
                        format!("the join token was already used (by node {by}); ask an admin for a new one with `skiff node token`"),
                    );
                }
                if token.expires_at <= *now {
                    return CommandOutcome::refused(
                        RefusalCode::TokenExpired,
                        "the join token has expired; ask an admin for a new one with `skiff node token`",
                    );
                }
                if self.nodes.contains_key(name) {
                    return CommandOutcome::refused(
                        RefusalCode::NameTaken,
                        format!("a node named {name:?} is already a member"),
                    );
                }
                if let Some(other) = self.nodes.values().find(|n| n.addr == *addr) {
                    return CommandOutcome::refused(
                        RefusalCode::AddressTaken,
                        format!("node {:?} already uses address {addr}", other.name),
                    );
                }
                let id = self.next_node_id.max(1);
                self.next_node_id = id + 1;
                if let Some(t) = self.join_tokens.get_mut(token_id) {
                    t.used_by = Some(name.clone());
                }
                self.nodes.insert(
                    name.clone(),
                    NodeRecord {
                        id,
                        name: name.clone(),
                        addr: *addr,
                        role: *role,
                        cert_serial: cert_serial.clone(),
                        joined_at: *now,
                    },
                );
                CommandOutcome::Joined { node_id: id }
            }
            Command::RemoveNode { name, now } => {
                let Some(node) = self.nodes.remove(name) else {
                    return CommandOutcome::refused(
                        RefusalCode::NotFound,
                        format!("no node named {name:?}"),
                    );
                };
                self.crl_number += 1;
                self.revoked.insert(
                    node.cert_serial.clone(),
                    Revocation {
                        cert_serial: node.cert_serial.clone(),
                        subject: format!("node:{}", node.name),
                        revoked_at: *now,
                    },
                );
                CommandOutcome::Removed { node }
            }
            Command::PruneTokens { now } => {
                self.join_tokens
                    .retain(|_, t| t.expires_at > *now && t.used_by.is_none());
                CommandOutcome::Done
            }
        }
    }

    pub fn node_by_id(&self, id: NodeId) -> Option<&NodeRecord> {
        self.nodes.values().find(|n| n.id == id)
    }

    pub fn is_revoked(&self, serial_hex: &str) -> bool {
        self.revoked.contains_key(serial_hex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boot() -> ClusterState {
        let mut s = ClusterState::default();
        let out = s.apply(&Command::Bootstrap {
            cluster_id: "c1".into(),
            ca: CaMaterial {
                cert_pem: "C".into(),
                key_pem: "K".into(),
            },
            node: NodeRecord {
                id: 1,
                name: "a".into(),
                addr: "127.0.0.1:1".parse().unwrap(),
                role: NodeRole::AdminEligible,
                cert_serial: "01".into(),
                joined_at: 0,
            },
            admin: UserRecord {
                name: "admin".into(),
                role: UserRole::Admin,
                cert_serials: vec!["02".into()],
                disabled: false,
            },
        });
        assert_eq!(out, CommandOutcome::Done);
        s
    }

    fn token(s: &mut ClusterState, id: &str, expires_at: u64) {
        let out = s.apply(&Command::CreateJoinToken {
            token: JoinTokenRecord {
                id: id.into(),
                secret_sha256: "h".into(),
                expires_at,
                created_by: "admin".into(),
                used_by: None,
            },
        });
        assert_eq!(out, CommandOutcome::Done);
    }

    fn join(s: &mut ClusterState, tid: &str, name: &str, port: u16, now: u64) -> CommandOutcome {
        s.apply(&Command::Join {
            token_id: tid.into(),
            secret_sha256: "h".into(),
            now,
            name: name.into(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            role: NodeRole::Compute,
            cert_serial: format!("s-{name}"),
        })
    }

    #[test]
    fn bootstrap_only_once() {
        let mut s = boot();
        let again = s.clone().apply(&Command::PruneTokens { now: 0 });
        assert_eq!(again, CommandOutcome::Done);
        let out = s.apply(&Command::Bootstrap {
            cluster_id: "c2".into(),
            ca: CaMaterial {
                cert_pem: "x".into(),
                key_pem: "y".into(),
            },
            node: s.nodes["a"].clone(),
            admin: s.users["admin"].clone(),
        });
        assert!(matches!(
            out,
            CommandOutcome::Refused {
                code: RefusalCode::AlreadyBootstrapped,
                ..
            }
        ));
        assert_eq!(s.cluster_id, "c1");
    }

    #[test]
    fn token_is_single_use_and_expires() {
        let mut s = boot();
        token(&mut s, "t1", 100);
        assert_eq!(
            join(&mut s, "t1", "b", 2, 10),
            CommandOutcome::Joined { node_id: 2 }
        );
        let before = s.clone();
        assert!(matches!(
            join(&mut s, "t1", "c", 3, 10),
            CommandOutcome::Refused {
                code: RefusalCode::TokenUsed,
                ..
            }
        ));
        assert_eq!(s, before, "a refused join changes nothing");
        token(&mut s, "t2", 100);
        assert!(matches!(
            join(&mut s, "t2", "c", 3, 100),
            CommandOutcome::Refused {
                code: RefusalCode::TokenExpired,
                ..
            }
        ));
        assert!(matches!(
            join(&mut s, "nope", "c", 3, 1),
            CommandOutcome::Refused {
                code: RefusalCode::TokenUnknown,
                ..
            }
        ));
        assert!(matches!(
            join(&mut s, "t2", "b", 4, 1),
            CommandOutcome::Refused {
                code: RefusalCode::NameTaken,
                ..
            }
        ));
    }

    #[test]
    fn remove_revokes() {
        let mut s = boot();
        token(&mut s, "t1", 100);
        join(&mut s, "t1", "b", 2, 10);
        let out = s.apply(&Command::RemoveNode {
            name: "b".into(),
            now: 11,
        });
        assert!(matches!(out, CommandOutcome::Removed { .. }));
        assert!(s.is_revoked("s-b"));
        assert_eq!(s.crl_number, 1);
        assert!(!s.nodes.contains_key("b"));
    }
}
