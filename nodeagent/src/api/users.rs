//! The control API's users routes, `whoami` and the audit log.
//!
//! Permissions: an admin sees and manages every user; a `user` sees only themselves and may act
//! on themselves only for their own SSH keys, credentials and API tokens (adding users, removing,
//! disabling, roles and quotas are for admins); another user is answered 404, as if they did not
//! exist. A read-only user sees themselves and is refused every write (403, in `authorize`).
//! The audit log is for admins.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use skiff_cluster::api::users::{
    ssh_key_fingerprint, AddUserRequest, BearerToken, CreateTokenRequest, CreatedToken,
    CredentialRequest, CredentialResponse, SetRoleRequest, SshKeyRequest, TokenView, UserView,
    AUDIT_DEFAULT_LIMIT, CSR_MAX_LEN, TOKEN_MAX_TTL,
};
use skiff_cluster::identity::{self, CertKind};
use skiff_cluster::state::users::{
    parse_ssh_public_key, ssh_key_identity, ApiTokenRecord, MAX_TOKEN_LABEL,
};
use skiff_cluster::state::{
    ClusterState, Command, CommandOutcome, Quotas, RefusalCode, UserCommand, UserRecord, AUDIT_KEEP,
};

use super::{leader_gate, ok, principal, propose, refused, Caller, Failure, Principal};
use crate::agent::Node;

/// Shortest lifetime of an API token that expires.
const TOKEN_MIN_TTL: u64 = 60;
/// Upper bounds of quotas, so that sums over a user's servers never overflow.
const QUOTA_MAX_MEMORY_MIB: u64 = 1 << 40;
const QUOTA_MAX_VCPUS: u32 = 1 << 20;
const QUOTA_MAX_STORAGE_GIB: u64 = 1 << 40;
const QUOTA_MAX_EXTERNAL_IPS: u32 = 1 << 24;

/// The users routes (merged into the API router).
pub(super) fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/users", get(list).post(add))
        .route("/api/v1/users/{name}", get(show).delete(remove))
        .route("/api/v1/users/{name}/disable", post(disable))
        .route("/api/v1/users/{name}/enable", post(enable))
        .route("/api/v1/users/{name}/role", put(set_role))
        .route("/api/v1/users/{name}/quotas", put(set_quotas))
        .route("/api/v1/users/{name}/ssh-keys", post(add_ssh_key))
        .route("/api/v1/users/{name}/ssh-keys/remove", post(remove_ssh_key))
        .route("/api/v1/users/{name}/credentials", post(issue_credential))
        .route(
            "/api/v1/users/{name}/tokens",
            get(tokens).post(create_token),
        )
        .route("/api/v1/users/{name}/tokens/{id}", delete(revoke_token))
}

type Body<T> = Result<Json<T>, JsonRejection>;

fn body<T>(b: Body<T>) -> Result<T, Failure> {
    b.map(|Json(v)| v)
        .map_err(|e| Failure::bad_request(e.body_text()))
}

fn no_user(name: &str) -> Failure {
    Failure::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no user named {name:?}"),
    )
}

/// The user `name` if the caller may see it (others are answered 404).
fn visible<'a>(
    state: &'a ClusterState,
    p: &Principal,
    name: &str,
) -> Result<&'a UserRecord, Failure> {
    if !p.may_see(name) {
        return Err(no_user(name));
    }
    state.users.get(name).ok_or_else(|| no_user(name))
}

/// The user `name` if the caller may act on it (an admin, or the user themselves).
fn actionable<'a>(
    state: &'a ClusterState,
    p: &Principal,
    name: &str,
) -> Result<&'a UserRecord, Failure> {
    let u = visible(state, p, name)?;
    p.may_act_on(name)?;
    Ok(u)
}

/// Proposes a command; a refusal becomes its 4xx answer (malformed values: 400).
async fn commit(node: &Node, caller: &Caller, cmd: UserCommand) -> Result<(), Failure> {
    match propose(node, caller, Command::User(cmd)).await? {
        CommandOutcome::Done => Ok(()),
        CommandOutcome::Refused {
            code: RefusalCode::Invalid,
            message,
        } => Err(Failure::bad_request(message)),
        other => Err(refused(other)),
    }
}

/// The user as the leader's state has it after a write.
fn view_now(node: &Node, name: &str) -> Result<Response, Failure> {
    let state = node
        .state()
        .ok_or_else(|| Failure::internal("this node has no state"))?;
    let u = state.users.get(name).ok_or_else(|| no_user(name))?;
    ok(UserView::from(u))
}

fn check_quotas(q: &Quotas) -> Result<(), Failure> {
    let over =
        |what: &str, max: u64| Failure::bad_request(format!("quota {what} is at most {max}"));
    if q.memory_mib.is_some_and(|v| v > QUOTA_MAX_MEMORY_MIB) {
        return Err(over("memory_mib", QUOTA_MAX_MEMORY_MIB));
    }
    if q.vcpus.is_some_and(|v| v > QUOTA_MAX_VCPUS) {
        return Err(over("vcpus", QUOTA_MAX_VCPUS.into()));
    }
    if q.storage_gib.is_some_and(|v| v > QUOTA_MAX_STORAGE_GIB) {
        return Err(over("storage_gib", QUOTA_MAX_STORAGE_GIB));
    }
    if q.external_ips.is_some_and(|v| v > QUOTA_MAX_EXTERNAL_IPS) {
        return Err(over("external_ips", QUOTA_MAX_EXTERNAL_IPS.into()));
    }
    Ok(())
}

async fn whoami(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> Result<Response, Failure> {
    let (state, p) = gate_as!(node, uri, caller, false);
    ok(UserView::from(visible(&state, &p, &p.name)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    limit: Option<usize>,
}

async fn audit(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, Failure> {
    let (state, _) = gate_as!(node, uri, caller, true);
    let Query(q) = query.map_err(|e| Failure::bad_request(e.body_text()))?;
    let limit = q.limit.unwrap_or(AUDIT_DEFAULT_LIMIT);
    if !(1..=AUDIT_KEEP).contains(&limit) {
        return Err(Failure::bad_request(format!(
            "limit must be between 1 and {AUDIT_KEEP}"
        )));
    }
    let skip = state.audit.len().saturating_sub(limit);
    ok(state.audit.iter().skip(skip).collect::<Vec<_>>())
}

async fn list(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> Result<Response, Failure> {
    let (state, p) = gate_as!(node, uri, caller, false);
    ok(state
        .users
        .values()
        .filter(|u| p.may_see(&u.name))
        .map(UserView::from)
        .collect::<Vec<_>>())
}

async fn show(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    Path(name): Path<String>,
) -> Result<Response, Failure> {
    let (state, p) = gate_as!(node, uri, caller, false);
    ok(UserView::from(visible(&state, &p, &name)?))
}

async fn add(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    req: Body<AddUserRequest>,
) -> Result<Response, Failure> {
    let _ = gate_as!(node, uri, caller, true);
    let req = body(req)?;
    identity::validate_name(&req.name).map_err(|e| Failure::bad_request(e.to_string()))?;
    check_quotas(&req.quotas)?;
    commit(
        &node,
        &caller,
        UserCommand::Add {
            name: req.name.clone(),
            role: req.role,
            quotas: req.quotas,
        },
    )
    .await?;
    let resp = view_now(&node, &req.name)?;
    Ok((StatusCode::CREATED, resp).into_response())
}

async fn remove(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    Path(name): Path<String>,
) -> Result<Response, Failure> {
    let (state, p) = gate_as!(node, uri, caller, true);
    let view = UserView::from(visible(&state, &p, &name)?);
    commit(&node, &caller, UserCommand::Remove { name }).await?;
    ok(view)
}

async fn set_disabled(
    node: Arc<Node>,
    caller: Caller,
    uri: Uri,
    name: String,
    disabled: bool,
) -> Result<Response, Failure> {
    let (state, p) = gate_as!(node, uri, caller, true);
    visible(&state, &p, &name)?;
    commit(
        &node,
        &caller,
        UserCommand::SetDisabled {
            name: name.clone(),
            disabled,
        },
    )
    .await?;
    view_now(&node, &name)
}

async fn disable(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    Path(name): Path<String>,
) -> Result<Response, Failure> {
    set_disabled(node, caller, uri, name, true).await
}

async fn enable(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    Path(name): Path<String>,
) -> Result<Response, Failure> {
    set_disabled(node, caller, uri, name, false).await
}

async fn set_role(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    Path(name): Path<String>,
    req: Body<SetRoleRequest>,
) -> Result<Response, Failure> {
    let (state, p) = gate_as!(node, uri, caller, true);
    let req = body(req)?;
    visible(&state, &p, &name)?;
    commit(
        &node,
        &caller,
        UserCommand::SetRole {
            name: name.clone(),
            role: req.role,
        },
    )
    .await?;
    view_now(&node, &name)
}

async fn set_quotas(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    Path(name): Path<String>,
    req: Body<Quotas>,
) -> Result<Response, Failure> {
    let (state, p) = gate_as!(node, uri, caller, true);
    let quotas = body(req)?;
    check_quotas(&quotas)?;
    visible(&state, &p, &name)?;
    commit(
        &node,
        &caller,
        UserCommand::SetQuotas {
            name: name.clone(),
            quotas,
        },
    )
    .await?;
    view_now(&node, &name)
}

async fn add_ssh_key(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    Path(name): Path<String>,
    req: Body<SshKeyRequest>,
) -> Result<Response, Failure> {
    let (state, p) = gate_as!(node, uri, caller, false);
    actionable(&state, &p, &name)?;
    let key = parse_ssh_public_key(&body(req)?.key).map_err(Failure::bad_request)?;
    commit(
        &node,
        &caller,
        UserCommand::AddSshKey {
            name: name.clone(),
            key,
        },
    )
    .await?;
    view_now(&node, &name)
}

async fn remove_ssh_key(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    Path(name): Path<String>,
    req: Body<SshKeyRequest>,
) -> Result<Response, Failure> {
    let (state, p) = gate_as!(node, uri, caller, false);
    let user = actionable(&state, &p, &name)?;
    let wanted = body(req)?.key;
    let wanted = wanted.trim();
    let key = user
        .ssh_keys
        .iter()
        .find(|k| {
            ssh_key_fingerprint(k).as_deref() == Some(wanted)
                || ssh_key_identity(k) == ssh_key_identity(wanted)
        })
        .cloned()
        .ok_or_else(|| {
            Failure::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!(
                    "{name:?} has no such SSH key (give the key line or its SHA256: fingerprint)"
                ),
            )
        })?;
    commit(
        &node,
        &caller,
        UserCommand::RemoveSshKey {
            name: name.clone(),
            key,
        },
    )
    .await?;
    view_now(&node, &name)
}

async fn issue_credential(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    Path(name): Path<String>,
    req: Body<CredentialRequest>,
) -> Result<Response, Failure> {
    let (state, p) = gate_as!(node, uri, caller, false);
    actionable(&state, &p, &name)?;
    let req = body(req)?;
    if req.csr_pem.len() > CSR_MAX_LEN || !req.csr_pem.contains("BEGIN CERTIFICATE REQUEST") {
        return Err(Failure::bad_request(
            "csr_pem must be a PEM certificate signing request (at most 16 KiB)",
        ));
    }
    let ca = state
        .ca
        .as_ref()
        .ok_or_else(|| Failure::internal("the cluster has no CA yet"))?;
    let cert = identity::issue_for_csr(ca, &name, CertKind::User, &req.csr_pem)
        .map_err(|e| Failure::bad_request(e.to_string()))?;
    commit(
        &node,
        &caller,
        UserCommand::AddCertificate {
            name: name.clone(),
            serial: cert.serial_hex.clone(),
            replace: req.replace,
        },
    )
    .await?;
    ok(CredentialResponse {
        user: name,
        cluster_id: state.cluster_id.clone(),
        serial: cert.serial_hex,
        cert_pem: cert.cert_pem,
        ca_pem: ca.cert_pem.clone(),
    })
}

async fn tokens(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    Path(name): Path<String>,
) -> Result<Response, Failure> {
    let (state, p) = gate_as!(node, uri, caller, false);
    ok(UserView::from(visible(&state, &p, &name)?).tokens)
}

async fn create_token(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    Path(name): Path<String>,
    req: Body<CreateTokenRequest>,
) -> Result<Response, Failure> {
    let (state, p) = gate_as!(node, uri, caller, false);
    actionable(&state, &p, &name)?;
    let req = body(req)?;
    if req.label.chars().count() > MAX_TOKEN_LABEL || req.label.chars().any(char::is_control) {
        return Err(Failure::bad_request(format!(
            "label is at most {MAX_TOKEN_LABEL} printable characters"
        )));
    }
    if let Some(ttl) = req.ttl_secs {
        if !(TOKEN_MIN_TTL..=TOKEN_MAX_TTL).contains(&ttl) {
            return Err(Failure::bad_request(format!(
                "ttl_secs must be between {TOKEN_MIN_TTL} and {TOKEN_MAX_TTL}"
            )));
        }
    }
    let token = BearerToken::generate();
    let now = skiff_cluster::unix_now();
    let expires_at = req.ttl_secs.map(|t| now + t);
    commit(
        &node,
        &caller,
        UserCommand::CreateToken {
            name,
            token: ApiTokenRecord {
                id: token.id.clone(),
                secret_sha256: token.secret_sha256(),
                label: req.label.clone(),
                created_at: now,
                expires_at,
            },
        },
    )
    .await?;
    let resp = ok(CreatedToken {
        id: token.id.clone(),
        token: token.to_string(),
        label: req.label,
        expires_at,
    })?;
    Ok((StatusCode::CREATED, resp).into_response())
}

async fn revoke_token(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response, Failure> {
    let (state, p) = gate_as!(node, uri, caller, false);
    let user = actionable(&state, &p, &name)?;
    let view = UserView::from(user)
        .tokens
        .into_iter()
        .find(|t| t.id == id)
        .ok_or_else(|| {
            Failure::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{name:?} has no API token {id:?}"),
            )
        })?;
    commit(&node, &caller, UserCommand::RevokeToken { name, id }).await?;
    ok::<TokenView>(view)
}
