//! Users of the control API as the desired state records them, and the commands that change them.
//!
//! `apply` is deterministic: the API handler validates the request, generates ids and secrets,
//! signs certificates and puts the results into the command; `apply` re-checks everything that
//! depends on the state (existence, the last admin, limits) and changes nothing when it refuses.

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::{ClusterState, CommandOutcome, RefusalCode, Revocation};

/// At most this many SSH keys per user.
pub const MAX_SSH_KEYS: usize = 32;
/// At most this many API tokens per user.
pub const MAX_API_TOKENS: usize = 32;
/// At most this many valid certificates (credentials) per user; `replace` revokes the others.
pub const MAX_CERTS: usize = 16;
/// Longest label of an API token.
pub const MAX_TOKEN_LABEL: usize = 64;

/// What a user may do.
///
/// - `admin` sees and does everything (users, nodes, every user's objects, the audit log).
/// - `user` sees and acts on their own objects only (for users: themselves).
/// - `read-only` sees their own objects and cannot change anything (every write is refused).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum UserRole {
    Admin,
    User,
    ReadOnly,
}

impl UserRole {
    pub fn as_str(self) -> &'static str {
        match self {
            UserRole::Admin => "admin",
            UserRole::User => "user",
            UserRole::ReadOnly => "read-only",
        }
    }

    /// Parses `admin`, `user` or `read-only`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(UserRole::Admin),
            "user" => Some(UserRole::User),
            "read-only" | "readonly" | "read_only" => Some(UserRole::ReadOnly),
            _ => None,
        }
    }
}

impl std::fmt::Display for UserRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user of the control API.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserRecord {
    pub name: String,
    pub role: UserRole,
    /// Hex serials of the client certificates issued to this user (the valid ones).
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

impl UserRecord {
    /// A new enabled user with no credentials.
    pub fn new(name: &str, role: UserRole, quotas: Quotas) -> Self {
        UserRecord {
            name: name.to_string(),
            role,
            cert_serials: Vec::new(),
            disabled: false,
            quotas,
            ssh_keys: Vec::new(),
            api_tokens: Vec::new(),
        }
    }
}

/// Per-user limits on the sum over all servers the user owns.
///
/// Semantics (enforced by the server handlers at create/resize time, against
/// `state.users[owner].quotas`): each field bounds the total the user's servers may take together —
/// memory in MiB, vCPUs, disk storage in GiB, external IP addresses. `None` is unlimited;
/// `Some(0)` forbids any. Lowering a quota below current use is allowed: it stops growth, it does
/// not remove anything. Admins are subject to their own quotas like anyone else (theirs are
/// normally unlimited).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Quotas {
    #[serde(default)]
    pub memory_mib: Option<u64>,
    #[serde(default)]
    pub vcpus: Option<u32>,
    #[serde(default)]
    pub storage_gib: Option<u64>,
    #[serde(default)]
    pub external_ips: Option<u32>,
}

/// A bearer token for scripts: `Authorization: Bearer skt_ID_SECRET`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApiTokenRecord {
    pub id: String,
    /// SHA-256 (lowercase hex) of the secret; the secret itself is never stored.
    pub secret_sha256: String,
    pub label: String,
    pub created_at: u64,
    /// Unix seconds after which the token no longer works; `None`: until revoked.
    #[serde(default)]
    pub expires_at: Option<u64>,
}

/// Changes to users. The actor comes with the proposal (`user:NAME`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "user_op", rename_all = "snake_case")]
pub enum UserCommand {
    Add {
        name: String,
        role: UserRole,
        #[serde(default)]
        quotas: Quotas,
    },
    /// Removes the user and revokes their certificates. Not the last admin, not oneself, not a
    /// user who still owns servers.
    Remove {
        name: String,
    },
    /// Disables (or enables again) a user: a disabled user's certificates and tokens are refused.
    SetDisabled {
        name: String,
        disabled: bool,
    },
    SetRole {
        name: String,
        role: UserRole,
    },
    SetQuotas {
        name: String,
        quotas: Quotas,
    },
    /// `key` is already normalized by [`parse_ssh_public_key`].
    AddSshKey {
        name: String,
        key: String,
    },
    /// Removes the key whose type and blob match `key` (comments are ignored).
    RemoveSshKey {
        name: String,
        key: String,
    },
    /// Records a certificate the leader issued; `replace` revokes the user's others.
    AddCertificate {
        name: String,
        serial: String,
        #[serde(default)]
        replace: bool,
    },
    CreateToken {
        name: String,
        token: ApiTokenRecord,
    },
    RevokeToken {
        name: String,
        id: String,
    },
}

impl UserCommand {
    /// The operation and its target, for the audit log (never secrets).
    pub fn describe(&self) -> (&'static str, String) {
        match self {
            UserCommand::Add { name, .. } => ("user.add", name.clone()),
            UserCommand::Remove { name } => ("user.remove", name.clone()),
            UserCommand::SetDisabled {
                name,
                disabled: true,
            } => ("user.disable", name.clone()),
            UserCommand::SetDisabled {
                name,
                disabled: false,
            } => ("user.enable", name.clone()),
            UserCommand::SetRole { name, role } => ("user.role", format!("{name} {role}")),
            UserCommand::SetQuotas { name, .. } => ("user.quotas", name.clone()),
            UserCommand::AddSshKey { name, .. } => ("user.ssh_key.add", name.clone()),
            UserCommand::RemoveSshKey { name, .. } => ("user.ssh_key.remove", name.clone()),
            UserCommand::AddCertificate { name, serial, .. } => {
                ("user.credential.issue", format!("{name} {serial}"))
            }
            UserCommand::CreateToken { name, token } => {
                ("user.token.create", format!("{name} {}", token.id))
            }
            UserCommand::RevokeToken { name, id } => ("user.token.revoke", format!("{name} {id}")),
        }
    }
}

/// The key types accepted for SSH public keys.
pub const SSH_KEY_TYPES: [&str; 5] = [
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
];

/// Checks an OpenSSH one-line public key (`TYPE BASE64 [COMMENT]`) and returns it normalized
/// (single spaces, trimmed). The blob must be base64 and start with the same key type.
pub fn parse_ssh_public_key(line: &str) -> Result<String, String> {
    let line = line.trim();
    if line.contains(['\n', '\r', '\0']) {
        return Err("an SSH public key is one line".into());
    }
    if line.len() > 16 * 1024 {
        return Err("the SSH public key is too long".into());
    }
    let mut parts = line.split_ascii_whitespace();
    let (Some(kind), Some(blob)) = (parts.next(), parts.next()) else {
        return Err("expected an OpenSSH public key: TYPE BASE64 [COMMENT]".into());
    };
    if !SSH_KEY_TYPES.contains(&kind) {
        return Err(format!(
            "unknown SSH key type {kind:?} (known: {})",
            SSH_KEY_TYPES.join(", ")
        ));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .map_err(|_| "the SSH key's blob is not valid base64".to_string())?;
    let inner = bytes
        .get(..4)
        .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
        .and_then(|n| bytes.get(4..4 + n));
    if inner != Some(kind.as_bytes()) {
        return Err(format!("the SSH key's blob is not a {kind} key"));
    }
    if bytes.len() < 4 + kind.len() + 16 {
        return Err("the SSH key's blob is too short".into());
    }
    let comment: Vec<&str> = parts.collect();
    let comment = comment.join(" ");
    if comment.chars().any(|c| c.is_control()) {
        return Err("the SSH key's comment has control characters".into());
    }
    Ok(if comment.is_empty() {
        format!("{kind} {blob}")
    } else {
        format!("{kind} {blob} {comment}")
    })
}

/// `TYPE BLOB` of a key line, what identifies the key.
pub fn ssh_key_identity(line: &str) -> String {
    line.split_ascii_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn refuse(code: RefusalCode, message: impl Into<String>) -> CommandOutcome {
    CommandOutcome::Refused {
        code,
        message: message.into(),
    }
}

fn not_found(name: &str) -> CommandOutcome {
    refuse(RefusalCode::NotFound, format!("no user named {name:?}"))
}

/// Enabled admins other than `except`.
fn other_admins(state: &ClusterState, except: &str) -> usize {
    state
        .users
        .values()
        .filter(|u| u.name != except && u.role == UserRole::Admin && !u.disabled)
        .count()
}

fn is_actor(actor: &str, name: &str) -> bool {
    actor.strip_prefix("user:") == Some(name)
}

fn revoke_serials(state: &mut ClusterState, name: &str, serials: &[String], at: u64) {
    if serials.is_empty() {
        return;
    }
    state.crl_number += 1;
    for s in serials {
        state.revoked.insert(
            s.clone(),
            Revocation {
                cert_serial: s.clone(),
                subject: format!("user:{name}"),
                revoked_at: at,
            },
        );
    }
}

fn is_hex_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

pub(super) fn apply(
    state: &mut ClusterState,
    cmd: &UserCommand,
    actor: &str,
    at: u64,
) -> CommandOutcome {
    // Every command names an existing user, except `Add`.
    let name = match cmd {
        UserCommand::Add { name, role, quotas } => {
            if crate::identity::validate_name(name).is_err() {
                return refuse(
                    RefusalCode::Invalid,
                    format!("invalid user name {name:?}: use 1 to 63 characters a-z, 0-9 and '-', starting with a letter or digit"),
                );
            }
            if state.users.contains_key(name) {
                return refuse(
                    RefusalCode::NameTaken,
                    format!("a user named {name:?} already exists"),
                );
            }
            state
                .users
                .insert(name.clone(), UserRecord::new(name, *role, quotas.clone()));
            return CommandOutcome::Done;
        }
        UserCommand::Remove { name }
        | UserCommand::SetDisabled { name, .. }
        | UserCommand::SetRole { name, .. }
        | UserCommand::SetQuotas { name, .. }
        | UserCommand::AddSshKey { name, .. }
        | UserCommand::RemoveSshKey { name, .. }
        | UserCommand::AddCertificate { name, .. }
        | UserCommand::CreateToken { name, .. }
        | UserCommand::RevokeToken { name, .. } => name,
    };
    let Some(user) = state.users.get(name) else {
        return not_found(name);
    };
    let admin_needed = user.role == UserRole::Admin && !user.disabled;
    match cmd {
        UserCommand::Add { .. } => unreachable_done(),
        UserCommand::Remove { .. } => {
            if is_actor(actor, name) {
                return refuse(
                    RefusalCode::Conflict,
                    "you cannot remove yourself; ask another admin",
                );
            }
            if admin_needed && other_admins(state, name) == 0 {
                return refuse(
                    RefusalCode::LastAdmin,
                    format!("{name:?} is the last enabled admin; make another admin first"),
                );
            }
            let owned = state.servers.values().filter(|s| s.owner == *name).count();
            if owned > 0 {
                return refuse(
                    RefusalCode::Conflict,
                    format!("{name:?} still owns {owned} server(s); remove them first"),
                );
            }
            let conns = state
                .connections
                .values()
                .filter(|c| c.owner == *name)
                .count();
            if conns > 0 {
                return refuse(
                    RefusalCode::Conflict,
                    format!("{name:?} still owns {conns} connection(s); remove them first"),
                );
            }
            let Some(user) = state.users.remove(name) else {
                return not_found(name);
            };
            revoke_serials(state, name, &user.cert_serials, at);
            CommandOutcome::Done
        }
        UserCommand::SetDisabled { disabled, .. } => {
            if *disabled && is_actor(actor, name) {
                return refuse(
                    RefusalCode::Conflict,
                    "you cannot disable yourself; ask another admin",
                );
            }
            if *disabled && admin_needed && other_admins(state, name) == 0 {
                return refuse(
                    RefusalCode::LastAdmin,
                    format!("{name:?} is the last enabled admin; make another admin first"),
                );
            }
            if let Some(u) = state.users.get_mut(name) {
                u.disabled = *disabled;
            }
            CommandOutcome::Done
        }
        UserCommand::SetRole { role, .. } => {
            if *role != UserRole::Admin && admin_needed && other_admins(state, name) == 0 {
                return refuse(
                    RefusalCode::LastAdmin,
                    format!("{name:?} is the last enabled admin; make another admin first"),
                );
            }
            if let Some(u) = state.users.get_mut(name) {
                u.role = *role;
            }
            CommandOutcome::Done
        }
        UserCommand::SetQuotas { quotas, .. } => {
            if let Some(u) = state.users.get_mut(name) {
                u.quotas = quotas.clone();
            }
            CommandOutcome::Done
        }
        UserCommand::AddSshKey { key, .. } => {
            let key = match parse_ssh_public_key(key) {
                Ok(k) => k,
                Err(e) => return refuse(RefusalCode::Invalid, e),
            };
            let id = ssh_key_identity(&key);
            if user.ssh_keys.iter().any(|k| ssh_key_identity(k) == id) {
                return refuse(
                    RefusalCode::Conflict,
                    format!("{name:?} already has this SSH key"),
                );
            }
            if user.ssh_keys.len() >= MAX_SSH_KEYS {
                return refuse(
                    RefusalCode::LimitReached,
                    format!("{name:?} already has {MAX_SSH_KEYS} SSH keys; remove one first"),
                );
            }
            if let Some(u) = state.users.get_mut(name) {
                u.ssh_keys.push(key);
            }
            CommandOutcome::Done
        }
        UserCommand::RemoveSshKey { key, .. } => {
            let id = ssh_key_identity(key);
            let Some(pos) = user.ssh_keys.iter().position(|k| ssh_key_identity(k) == id) else {
                return refuse(
                    RefusalCode::NotFound,
                    format!("{name:?} has no such SSH key"),
                );
            };
            if let Some(u) = state.users.get_mut(name) {
                u.ssh_keys.remove(pos);
            }
            CommandOutcome::Done
        }
        UserCommand::AddCertificate {
            serial, replace, ..
        } => {
            if !is_hex_id(serial) {
                return refuse(RefusalCode::Invalid, "a certificate serial is hex");
            }
            if user.cert_serials.contains(serial) || state.revoked.contains_key(serial) {
                return refuse(RefusalCode::Conflict, "this certificate serial is known");
            }
            if !replace && user.cert_serials.len() >= MAX_CERTS {
                return refuse(
                    RefusalCode::LimitReached,
                    format!("{name:?} already has {MAX_CERTS} credentials; issue the new one with replace (--replace) to revoke the others"),
                );
            }
            let old = if *replace {
                user.cert_serials.clone()
            } else {
                Vec::new()
            };
            revoke_serials(state, name, &old, at);
            if let Some(u) = state.users.get_mut(name) {
                if *replace {
                    u.cert_serials.clear();
                }
                u.cert_serials.push(serial.clone());
            }
            CommandOutcome::Done
        }
        UserCommand::CreateToken { token, .. } => {
            if !is_hex_id(&token.id) || !is_hex_id(&token.secret_sha256) {
                return refuse(RefusalCode::Invalid, "token id and hash are hex");
            }
            if token.label.chars().count() > MAX_TOKEN_LABEL
                || token.label.chars().any(|c| c.is_control())
            {
                return refuse(
                    RefusalCode::Invalid,
                    format!("a token label is at most {MAX_TOKEN_LABEL} printable characters"),
                );
            }
            if state
                .users
                .values()
                .any(|u| u.api_tokens.iter().any(|t| t.id == token.id))
            {
                return refuse(RefusalCode::Conflict, "token id already exists");
            }
            if user.api_tokens.len() >= MAX_API_TOKENS {
                return refuse(
                    RefusalCode::LimitReached,
                    format!("{name:?} already has {MAX_API_TOKENS} API tokens; revoke one first"),
                );
            }
            if let Some(u) = state.users.get_mut(name) {
                u.api_tokens.push(token.clone());
            }
            CommandOutcome::Done
        }
        UserCommand::RevokeToken { id, .. } => {
            let Some(pos) = user.api_tokens.iter().position(|t| t.id == *id) else {
                return refuse(
                    RefusalCode::NotFound,
                    format!("{name:?} has no API token {id:?}"),
                );
            };
            if let Some(u) = state.users.get_mut(name) {
                u.api_tokens.remove(pos);
            }
            CommandOutcome::Done
        }
    }
}

/// `Add` returns before the match above; this keeps the match exhaustive without a panic.
fn unreachable_done() -> CommandOutcome {
    CommandOutcome::Done
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Command, Proposal};

    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop";

    fn run(s: &mut ClusterState, actor: &str, c: UserCommand) -> CommandOutcome {
        s.apply(&Proposal::new(actor, 100, Command::User(c)))
    }

    fn admin(s: &mut ClusterState, c: UserCommand) -> CommandOutcome {
        run(s, "user:admin", c)
    }

    fn state() -> ClusterState {
        let mut s = ClusterState::default();
        let mut root = UserRecord::new("admin", UserRole::Admin, Quotas::default());
        root.cert_serials.push("0a".into());
        s.users.insert("admin".into(), root);
        for (n, r) in [("alice", UserRole::User), ("carol", UserRole::ReadOnly)] {
            assert_eq!(
                admin(
                    &mut s,
                    UserCommand::Add {
                        name: n.into(),
                        role: r,
                        quotas: Quotas::default()
                    }
                ),
                CommandOutcome::Done
            );
        }
        s
    }

    /// Applies a command that must be refused with `code`, and checks that only the audit log moved.
    fn refused(s: &mut ClusterState, actor: &str, c: UserCommand, code: RefusalCode) {
        let before = s.clone();
        match run(s, actor, c.clone()) {
            CommandOutcome::Refused { code: got, message } => {
                assert_eq!(got, code, "{c:?}: {message}");
                assert!(!message.is_empty());
            }
            other => panic!("{c:?} was not refused: {other:?}"),
        }
        let mut after = s.clone();
        after.audit = before.audit.clone();
        after.writes = before.writes;
        assert_eq!(after, before, "a refused {c:?} changed the state");
        assert!(s.audit.back().unwrap().result.starts_with("refused: "));
    }

    fn token(id: &str) -> ApiTokenRecord {
        ApiTokenRecord {
            id: id.into(),
            secret_sha256: "ab".repeat(32),
            label: "ci".into(),
            created_at: 100,
            expires_at: None,
        }
    }

    #[test]
    fn add_and_its_refusals() {
        let mut s = state();
        assert_eq!(s.users["alice"].role, UserRole::User);
        let add = |n: &str| UserCommand::Add {
            name: n.into(),
            role: UserRole::User,
            quotas: Quotas::default(),
        };
        refused(&mut s, "user:admin", add("alice"), RefusalCode::NameTaken);
        refused(&mut s, "user:admin", add("Bad_Name"), RefusalCode::Invalid);
        refused(&mut s, "user:admin", add(""), RefusalCode::Invalid);
        let last = s.audit.back().unwrap();
        assert_eq!(
            (last.op.as_str(), last.actor.as_str()),
            ("user.add", "user:admin")
        );
    }

    #[test]
    fn remove_revokes_and_guards_admins_and_self() {
        let mut s = state();
        assert_eq!(
            admin(
                &mut s,
                UserCommand::AddCertificate {
                    name: "alice".into(),
                    serial: "beef".into(),
                    replace: false
                }
            ),
            CommandOutcome::Done
        );
        let rm = |n: &str| UserCommand::Remove { name: n.into() };
        refused(&mut s, "user:admin", rm("admin"), RefusalCode::Conflict);
        refused(&mut s, "user:alice", rm("admin"), RefusalCode::LastAdmin);
        refused(&mut s, "user:admin", rm("nobody"), RefusalCode::NotFound);
        // Built from JSON so that this test does not follow every new server field.
        let web: crate::state::ServerRecord = serde_json::from_value(serde_json::json!({
            "name": "web", "owner": "alice", "spec": {"memory_mib": 512, "vcpus": 1},
            "node": null, "desired": "stopped", "created_at": 0, "generation": 0
        }))
        .unwrap();
        s.servers.insert("web".into(), web);
        refused(&mut s, "user:admin", rm("alice"), RefusalCode::Conflict);
        s.servers.clear();
        let crl = s.crl_number;
        assert_eq!(admin(&mut s, rm("alice")), CommandOutcome::Done);
        assert!(!s.users.contains_key("alice"));
        assert!(s.is_revoked("beef"));
        assert_eq!(s.crl_number, crl + 1);
        // With a second admin the first may go (by the second).
        admin(
            &mut s,
            UserCommand::SetRole {
                name: "carol".into(),
                role: UserRole::Admin,
            },
        );
        assert_eq!(run(&mut s, "user:carol", rm("admin")), CommandOutcome::Done);
    }

    #[test]
    fn disable_role_quotas() {
        let mut s = state();
        let dis = |n: &str, d: bool| UserCommand::SetDisabled {
            name: n.into(),
            disabled: d,
        };
        assert_eq!(admin(&mut s, dis("alice", true)), CommandOutcome::Done);
        assert!(s.users["alice"].disabled);
        assert_eq!(s.audit.back().unwrap().op, "user.disable");
        assert_eq!(admin(&mut s, dis("alice", false)), CommandOutcome::Done);
        assert!(!s.users["alice"].disabled);
        refused(
            &mut s,
            "user:admin",
            dis("admin", true),
            RefusalCode::Conflict,
        );
        refused(
            &mut s,
            "user:alice",
            dis("admin", true),
            RefusalCode::LastAdmin,
        );
        refused(
            &mut s,
            "user:admin",
            dis("zed", true),
            RefusalCode::NotFound,
        );
        let role = |n: &str, r| UserCommand::SetRole {
            name: n.into(),
            role: r,
        };
        refused(
            &mut s,
            "user:admin",
            role("admin", UserRole::User),
            RefusalCode::LastAdmin,
        );
        refused(
            &mut s,
            "user:admin",
            role("zed", UserRole::User),
            RefusalCode::NotFound,
        );
        assert_eq!(
            admin(&mut s, role("alice", UserRole::ReadOnly)),
            CommandOutcome::Done
        );
        assert_eq!(s.users["alice"].role, UserRole::ReadOnly);
        let q = Quotas {
            memory_mib: Some(4096),
            vcpus: Some(4),
            storage_gib: None,
            external_ips: Some(0),
        };
        assert_eq!(
            admin(
                &mut s,
                UserCommand::SetQuotas {
                    name: "alice".into(),
                    quotas: q.clone()
                }
            ),
            CommandOutcome::Done
        );
        assert_eq!(s.users["alice"].quotas, q);
        refused(
            &mut s,
            "user:admin",
            UserCommand::SetQuotas {
                name: "zed".into(),
                quotas: q,
            },
            RefusalCode::NotFound,
        );
    }

    #[test]
    fn ssh_keys() {
        let mut s = state();
        let add = |k: &str| UserCommand::AddSshKey {
            name: "alice".into(),
            key: k.into(),
        };
        assert_eq!(
            run(&mut s, "user:alice", add(ED25519)),
            CommandOutcome::Done
        );
        assert_eq!(s.users["alice"].ssh_keys, vec![ED25519.to_string()]);
        // Same key with another comment is a duplicate.
        let other_comment = ED25519.replace("alice@laptop", "x");
        refused(
            &mut s,
            "user:alice",
            add(&other_comment),
            RefusalCode::Conflict,
        );
        refused(
            &mut s,
            "user:alice",
            add("ssh-ed25519 !!!"),
            RefusalCode::Invalid,
        );
        let rm = |k: &str| UserCommand::RemoveSshKey {
            name: "alice".into(),
            key: k.into(),
        };
        refused(
            &mut s,
            "user:alice",
            rm("ssh-rsa AAAA"),
            RefusalCode::NotFound,
        );
        assert_eq!(
            run(&mut s, "user:alice", rm(&other_comment)),
            CommandOutcome::Done
        );
        assert!(s.users["alice"].ssh_keys.is_empty());
    }

    #[test]
    fn ssh_key_format() {
        assert_eq!(
            parse_ssh_public_key(&format!("  {ED25519} ")).unwrap(),
            ED25519
        );
        let bare = ssh_key_identity(ED25519);
        assert_eq!(parse_ssh_public_key(&bare).unwrap(), bare);
        for bad in [
            "",
            "ssh-ed25519",
            "ssh-dss AAAAB3NzaC1kc3MAAACBAP",
            "ssh-ed25519 not-base64!",
            // A valid blob of another type.
            "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a\nb",
        ] {
            assert!(parse_ssh_public_key(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn certificates() {
        let mut s = state();
        let add = |serial: &str, replace| UserCommand::AddCertificate {
            name: "alice".into(),
            serial: serial.into(),
            replace,
        };
        assert_eq!(admin(&mut s, add("01", false)), CommandOutcome::Done);
        assert_eq!(admin(&mut s, add("02", false)), CommandOutcome::Done);
        refused(
            &mut s,
            "user:admin",
            add("02", false),
            RefusalCode::Conflict,
        );
        refused(&mut s, "user:admin", add("zz", false), RefusalCode::Invalid);
        assert_eq!(s.users["alice"].cert_serials, vec!["01", "02"]);
        assert_eq!(admin(&mut s, add("03", true)), CommandOutcome::Done);
        assert_eq!(s.users["alice"].cert_serials, vec!["03"]);
        assert!(s.is_revoked("01") && s.is_revoked("02"));
        // A revoked serial is never recorded again.
        refused(
            &mut s,
            "user:admin",
            add("01", false),
            RefusalCode::Conflict,
        );
        for i in 0..MAX_CERTS - 1 {
            assert_eq!(
                admin(&mut s, add(&format!("1{i:02x}"), false)),
                CommandOutcome::Done
            );
        }
        refused(
            &mut s,
            "user:admin",
            add("ff", false),
            RefusalCode::LimitReached,
        );
        assert_eq!(admin(&mut s, add("ff", true)), CommandOutcome::Done);
        assert_eq!(s.users["alice"].cert_serials.len(), 1);
    }

    #[test]
    fn tokens() {
        let mut s = state();
        let create = |n: &str, t: ApiTokenRecord| UserCommand::CreateToken {
            name: n.into(),
            token: t,
        };
        assert_eq!(
            run(&mut s, "user:alice", create("alice", token("aa01"))),
            CommandOutcome::Done
        );
        assert_eq!(s.audit.back().unwrap().target, "alice aa01");
        refused(
            &mut s,
            "user:admin",
            create("carol", token("aa01")),
            RefusalCode::Conflict,
        );
        let mut bad = token("aa02");
        bad.label = "a\u{7}".into();
        refused(
            &mut s,
            "user:admin",
            create("alice", bad),
            RefusalCode::Invalid,
        );
        refused(
            &mut s,
            "user:admin",
            create("alice", token("not hex")),
            RefusalCode::Invalid,
        );
        refused(
            &mut s,
            "user:admin",
            create("zed", token("aa03")),
            RefusalCode::NotFound,
        );
        let revoke = |id: &str| UserCommand::RevokeToken {
            name: "alice".into(),
            id: id.into(),
        };
        refused(&mut s, "user:admin", revoke("ffff"), RefusalCode::NotFound);
        assert_eq!(admin(&mut s, revoke("aa01")), CommandOutcome::Done);
        assert!(s.users["alice"].api_tokens.is_empty());
        for i in 0..MAX_API_TOKENS {
            assert_eq!(
                admin(&mut s, create("alice", token(&format!("b{i:03x}")))),
                CommandOutcome::Done
            );
        }
        refused(
            &mut s,
            "user:admin",
            create("alice", token("cccc")),
            RefusalCode::LimitReached,
        );
    }

    #[test]
    fn commands_round_trip_through_json() {
        let c = Command::User(UserCommand::SetQuotas {
            name: "alice".into(),
            quotas: Quotas {
                memory_mib: Some(1),
                ..Default::default()
            },
        });
        let j = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Command>(&j).unwrap(), c);
    }
}
