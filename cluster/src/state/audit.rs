//! The audit log: every write (who, what, when, result), readable by admins.

use serde::{Deserialize, Serialize};

/// How many of the newest writes the replicated state keeps.
pub const AUDIT_KEEP: usize = 10_000;

/// One write.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditRecord {
    /// 1 for the cluster's first write, then one more for each.
    pub seq: u64,
    /// Unix seconds, the leader's clock.
    pub at: u64,
    /// `user:NAME`, `node:NAME` or `system`.
    pub actor: String,
    /// What was done, e.g. `node.remove`.
    pub op: String,
    /// What it was done to, e.g. the node's name.
    pub target: String,
    /// `ok`, or `refused: <reason>`.
    pub result: String,
}
