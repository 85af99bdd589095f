//! Users of the control API as the desired state records them.

use serde::{Deserialize, Serialize};

use super::{ClusterState, CommandOutcome};

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
    /// Limits on what the user's servers may take together.
    #[serde(default)]
    pub quotas: Quotas,
    /// SSH public keys (OpenSSH one-line format) that open this user's cockpit over SSH.
    #[serde(default)]
    pub ssh_keys: Vec<String>,
    /// Bearer tokens for scripts (only hashes are kept).
    #[serde(default)]
    pub api_tokens: Vec<ApiTokenRecord>,
}

/// Per-user limits; `None` is unlimited.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Quotas {
    pub memory_mib: Option<u64>,
    pub vcpus: Option<u32>,
    pub storage_gib: Option<u64>,
    pub external_ips: Option<u32>,
}

/// A bearer token for scripts: `Authorization: Bearer skt_ID_SECRET`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApiTokenRecord {
    pub id: String,
    pub secret_sha256: String,
    pub label: String,
    pub created_at: u64,
}

/// Changes to users.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "user_op", rename_all = "snake_case")]
pub enum UserCommand {}

impl UserCommand {
    /// The operation and its target, for the audit log.
    pub fn describe(&self) -> (&'static str, String) {
        match *self {}
    }
}

pub(super) fn apply(
    _state: &mut ClusterState,
    cmd: &UserCommand,
    _actor: &str,
    _at: u64,
) -> CommandOutcome {
    match *cmd {}
}
