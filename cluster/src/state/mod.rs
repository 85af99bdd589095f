//! The cluster's desired state: what the Raft log replicates and every admin-eligible node applies.
//!
//! Every change is a [`Command`]; [`ClusterState::apply`] is deterministic (it never reads the clock
//! or any other local fact: the leader puts the time into the command), so every replica that applies
//! the same log reaches the same state.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

mod audit;
pub mod backups;
pub mod connections;
pub mod images;
mod nodes;
pub mod pools;
pub mod servers;
pub mod stacks;
pub mod tasks;
pub mod users;

pub use audit::{AuditRecord, AUDIT_KEEP};
pub use backups::{BackupCommand, BackupRecord, BackupTarget};
pub use connections::{ConnectionCommand, ConnectionKind, ConnectionRecord, NetworkSettings};
pub use images::{ImageCommand, ImageOp, ImageRecord};
pub use nodes::{CaMaterial, JoinTokenRecord, NodeRecord, NodeRole, Revocation};
pub use pools::{PoolCommand, PoolKind, PoolRecord, PoolSpec};
pub use servers::{ServerCommand, ServerRecord, ServerSpec};
pub use stacks::{StackCommand, StackRecord};
pub use tasks::{TaskCommand, TaskRecord, TaskState};
pub use users::{Quotas, UserCommand, UserRecord, UserRole};

/// Raft node id of a cluster member (assigned by the leader when the node joins; the first node is 1).
pub type NodeId = u64;

/// Who proposes a write and when: what the Raft log carries. The leader fills both in; `apply`
/// records them in the audit log with the command's outcome.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Proposal {
    /// `user:NAME`, `node:NAME`, or `system` for what the leader does by itself.
    pub actor: String,
    /// Unix seconds, the leader's clock.
    pub at: u64,
    pub command: Command,
}

impl Proposal {
    pub fn new(actor: impl Into<String>, at: u64, command: Command) -> Self {
        Proposal {
            actor: actor.into(),
            at,
            command,
        }
    }

    /// A proposal the leader makes by itself.
    pub fn system(at: u64, command: Command) -> Self {
        Self::new("system", at, command)
    }
}

/// What one Raft log entry carries: one proposal, or several that were committed together
/// (group commit, [`crate::raft::writes`]). A single proposal is written as the bare
/// [`Proposal`], the format every entry had before batches existed, so old logs still read.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
// Most entries are `One`: boxing it would cost an allocation per entry to save bytes on batches.
#[allow(clippy::large_enum_variant)]
pub enum Write {
    One(Proposal),
    Batch { batch: Vec<Proposal> },
}

impl Write {
    /// One entry for `proposals`, in their order.
    pub fn from_proposals(proposals: Vec<Proposal>) -> Self {
        match <[Proposal; 1]>::try_from(proposals) {
            Ok([p]) => Write::One(p),
            Err(batch) => Write::Batch { batch },
        }
    }

    pub fn proposals(&self) -> &[Proposal] {
        match self {
            Write::One(p) => std::slice::from_ref(p),
            Write::Batch { batch } => batch,
        }
    }
}

impl From<Proposal> for Write {
    fn from(p: Proposal) -> Self {
        Write::One(p)
    }
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
    pub users: imbl::OrdMap<String, UserRecord>,
    /// The newest writes, oldest first (at most [`AUDIT_KEEP`]).
    #[serde(default)]
    pub audit: imbl::Vector<AuditRecord>,
    /// Number of writes ever applied (the sequence number of the next audit record).
    #[serde(default)]
    pub writes: u64,
    /// Nodes in maintenance: nothing new is placed on them.
    #[serde(default)]
    pub maintenance: std::collections::BTreeSet<String>,
    #[serde(default)]
    pub servers: servers::Servers,
    #[serde(default)]
    pub tasks: tasks::Tasks,
    #[serde(default)]
    pub next_task_id: u64,
    #[serde(default)]
    pub images: BTreeMap<String, ImageRecord>,
    #[serde(default)]
    pub backups: BTreeMap<u64, BackupRecord>,
    #[serde(default)]
    pub next_backup_id: u64,
    /// Daily backups, by target (`image:NAME`, `server:NAME`).
    #[serde(default)]
    pub backup_schedules: BTreeMap<String, backups::BackupSchedule>,
    #[serde(default)]
    pub connections: BTreeMap<String, ConnectionRecord>,
    /// The internal network and the external address pool connections take addresses from.
    #[serde(default)]
    pub network: NetworkSettings,
    /// Storage pools an admin added (every compute node has `local` besides).
    #[serde(default)]
    pub pools: BTreeMap<String, PoolRecord>,
    /// Groups of servers installed together from a recipe.
    #[serde(default)]
    pub stacks: stacks::Stacks,
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
    User(UserCommand),
    Server(ServerCommand),
    Task(TaskCommand),
    Image(ImageCommand),
    Backup(BackupCommand),
    Connection(ConnectionCommand),
    Stack(StackCommand),
    Pool(PoolCommand),
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
    /// A long operation was queued as a task (see [`tasks::open_task`]).
    TaskStarted {
        task_id: u64,
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
    /// A value in the command is malformed (the API validates first; apply checks again).
    Invalid,
    /// The change would leave the cluster without an enabled admin.
    LastAdmin,
    /// A per-user limit (SSH keys, API tokens, credentials) is reached.
    LimitReached,
    /// The task already ended (succeeded, failed or was cancelled): final states are final.
    TaskFinished,
    /// The owner's quotas would be exceeded.
    QuotaExceeded,
    /// The node cannot take servers now (in maintenance, not compute, not a member).
    NodeUnavailable,
    /// The server is not in a state the operation applies to (e.g. resume of a running server).
    InvalidState,
}

impl CommandOutcome {
    fn refused(code: RefusalCode, message: impl Into<String>) -> Self {
        CommandOutcome::Refused {
            code,
            message: message.into(),
        }
    }
}

impl Command {
    /// The operation's name and its target, for the audit log (never secrets).
    pub fn describe(&self) -> (&'static str, String) {
        match self {
            Command::Bootstrap { cluster_id, .. } => ("cluster.bootstrap", cluster_id.clone()),
            Command::CreateJoinToken { token } => ("node.token.create", token.id.clone()),
            Command::Join { name, .. } => ("node.join", name.clone()),
            Command::RemoveNode { name, .. } => ("node.remove", name.clone()),
            Command::PruneTokens { .. } => ("node.token.prune", String::new()),
            Command::User(c) => c.describe(),
            Command::Server(c) => c.describe(),
            Command::Task(c) => c.describe(),
            Command::Image(c) => c.describe(),
            Command::Backup(c) => c.describe(),
            Command::Connection(c) => c.describe(),
            Command::Stack(c) => c.describe(),
            Command::Pool(c) => c.describe(),
        }
    }
}

impl ClusterState {
    /// Applies one proposal and records it in the audit log. Deterministic: the same state and
    /// proposal give the same result.
    pub fn apply(&mut self, p: &Proposal) -> CommandOutcome {
        let outcome = self.apply_command(&p.command, &p.actor, p.at);
        let (op, target) = p.command.describe();
        self.writes += 1;
        self.audit.push_back(AuditRecord {
            seq: self.writes,
            at: p.at,
            actor: p.actor.clone(),
            op: op.to_string(),
            target,
            result: match &outcome {
                CommandOutcome::Refused { message, .. } => format!("refused: {message}"),
                _ => "ok".into(),
            },
        });
        while self.audit.len() > AUDIT_KEEP {
            self.audit.pop_front();
        }
        outcome
    }

    /// Applies every proposal of a log entry in order: the outcomes, one per proposal.
    pub fn apply_write(&mut self, w: &Write) -> Vec<CommandOutcome> {
        w.proposals().iter().map(|p| self.apply(p)).collect()
    }

    fn apply_command(&mut self, cmd: &Command, actor: &str, at: u64) -> CommandOutcome {
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
            Command::User(c) => users::apply(self, c, actor, at),
            Command::Server(c) => servers::apply(self, c, actor, at),
            Command::Task(c) => tasks::apply(self, c, actor, at),
            Command::Image(c) => images::apply(self, c, at),
            Command::Backup(c) => backups::apply(self, c, at),
            Command::Connection(c) => connections::apply(self, c, at),
            Command::Stack(c) => stacks::apply(self, c, actor, at),
            Command::Pool(c) => pools::apply(self, c, at),
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

    fn run(s: &mut ClusterState, c: Command) -> CommandOutcome {
        s.apply(&Proposal::new("user:admin", 7, c))
    }

    /// A bootstrapped state: node `a`, user `admin` (for other modules' tests).
    pub(crate) fn bootstrapped() -> ClusterState {
        boot()
    }

    fn boot() -> ClusterState {
        let mut s = ClusterState::default();
        let out = run(
            &mut s,
            Command::Bootstrap {
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
                    quotas: Default::default(),
                    ssh_keys: Vec::new(),
                    api_tokens: Vec::new(),
                },
            },
        );
        assert_eq!(out, CommandOutcome::Done);
        s
    }

    fn token(s: &mut ClusterState, id: &str, expires_at: u64) {
        let out = run(
            s,
            Command::CreateJoinToken {
                token: JoinTokenRecord {
                    id: id.into(),
                    secret_sha256: "h".into(),
                    expires_at,
                    created_by: "admin".into(),
                    used_by: None,
                },
            },
        );
        assert_eq!(out, CommandOutcome::Done);
    }

    fn join(s: &mut ClusterState, tid: &str, name: &str, port: u16, now: u64) -> CommandOutcome {
        run(
            s,
            Command::Join {
                token_id: tid.into(),
                secret_sha256: "h".into(),
                now,
                name: name.into(),
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                role: NodeRole::Compute,
                cert_serial: format!("s-{name}"),
            },
        )
    }

    #[test]
    fn state_written_before_newer_fields_still_loads() {
        // A replica saved by an older skiffd (no audit, tasks, servers...) must load after an
        // upgrade: every field added later has a default.
        let old = r#"{"cluster_id":"c1","ca":null,"nodes":{},"next_node_id":2,
            "join_tokens":{},"revoked":{},"crl_number":0,"users":{}}"#;
        let s: ClusterState = serde_json::from_str(old).unwrap();
        assert_eq!(s.cluster_id, "c1");
        assert!(s.audit.is_empty() && s.servers.is_empty() && s.tasks.is_empty());
    }

    #[test]
    fn bootstrap_only_once() {
        let mut s = boot();
        let again = run(&mut s.clone(), Command::PruneTokens { now: 0 });
        assert_eq!(again, CommandOutcome::Done);
        let (node, admin) = (s.nodes["a"].clone(), s.users["admin"].clone());
        let out = run(
            &mut s,
            Command::Bootstrap {
                cluster_id: "c2".into(),
                ca: CaMaterial {
                    cert_pem: "x".into(),
                    key_pem: "y".into(),
                },
                node,
                admin,
            },
        );
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
        assert_eq!(s.nodes, before.nodes, "a refused join changes nothing");
        assert_eq!(s.join_tokens, before.join_tokens);
        let last = s.audit.back().unwrap();
        assert_eq!(
            (last.op.as_str(), last.actor.as_str()),
            ("node.join", "user:admin")
        );
        assert!(
            last.result
                .starts_with("refused: the join token was already used"),
            "{last:?}"
        );
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
        let out = run(
            &mut s,
            Command::RemoveNode {
                name: "b".into(),
                now: 11,
            },
        );
        assert!(matches!(out, CommandOutcome::Removed { .. }));
        assert!(s.is_revoked("s-b"));
        assert_eq!(s.crl_number, 1);
        assert!(!s.nodes.contains_key("b"));
    }
}
