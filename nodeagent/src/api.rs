//! The control API over HTTPS (axum on hyper, rustls, mutual TLS with the user's certificate).
//!
//! Every node listens (TCP, same port as its QUIC endpoint) so that clients can start anywhere:
//! only the node running leader services answers; the others redirect (307) to the leader, or say
//! 503 `no_leader` while there is none.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use hyper_util::rt::{TokioExecutor, TokioIo};
use openraft::ChangeMembers;
use serde::Serialize;
use skiff_cluster::api::{
    ApiError, ClusterView, MembershipRequest, NodeView, PoolUsage, TokenRequest, TokenResponse,
};
use skiff_cluster::gossip::{keys, GossipNode};
use skiff_cluster::identity;
use skiff_cluster::state::{
    ClusterState, Command, CommandOutcome, JoinTokenRecord, NodeRecord, UserRole,
};
use skiff_cluster::tls::{peer_identity, Subject};
use skiff_cluster::token::JoinToken;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, error, info};

use crate::agent::Node;

/// Join tokens live at least this long...
pub const MIN_TOKEN_TTL: u64 = 60;
/// ...and at most this long.
pub const MAX_TOKEN_TTL: u64 = 7 * 24 * 3600;

/// The user behind a request, from their client certificate.
#[derive(Clone, Debug)]
struct Caller {
    user: Option<String>,
    serial: Option<String>,
}

/// An API failure: a status and the JSON body every client understands.
#[derive(Debug)]
pub struct Failure(StatusCode, ApiError);

impl Failure {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Failure(status, ApiError::new(code, message))
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

type ApiResult<T> = Result<Json<T>, Failure>;

/// Serves the API until the node shuts down.
pub async fn serve(node: Arc<Node>) {
    let cfg = match node.tls.api_server_config() {
        Ok(c) => c,
        Err(e) => {
            error!(error = %e, "cannot set up the API's TLS");
            return;
        }
    };
    let acceptor = TlsAcceptor::from(Arc::new(cfg));
    let listener = match TcpListener::bind(node.config.listen).await {
        Ok(l) => l,
        Err(e) => {
            error!(addr = %node.config.listen, error = %e, "cannot listen for the API");
            return;
        }
    };
    info!(addr = %node.config.listen, "control API listening (HTTPS)");
    let app = router(node.clone());
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                debug!(error = %e, "API accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        debug!(peer = %remote, error = %e, "API TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
            let id = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(peer_identity);
            let caller = match id {
                Some(p) => match p.subject {
                    Subject::User(u) => Caller {
                        user: Some(u),
                        serial: Some(p.serial_hex),
                    },
                    Subject::Node(_) => Caller {
                        user: None,
                        serial: None,
                    },
                },
                None => Caller {
                    user: None,
                    serial: None,
                },
            };
            let svc = hyper_util::service::TowerToHyperService::new(app.layer(Extension(caller)));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                .await;
        });
    }
}

fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/nodes", get(list_nodes))
        .route("/api/v1/cluster", get(cluster))
        .route("/api/v1/nodes/tokens", post(create_token))
        .route("/api/v1/nodes/promote", post(promote))
        .route("/api/v1/nodes/demote", post(demote))
        .route("/api/v1/nodes/{name}", delete(remove_node))
        .fallback(|| async {
            Failure::new(StatusCode::NOT_FOUND, "not_found", "no such API route")
        })
        .with_state(node)
}

/// Sends the request to the leader unless this node runs leader services.
async fn leader_gate(node: &Node, uri: &Uri) -> Result<ClusterState, Response> {
    if node.serving_term().is_some() {
        if let Some(state) = node.state() {
            return Ok(state);
        }
    }
    match node.leader_hint().await {
        Some(h) if h.addr != node.config.advertise_addr() => {
            let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let location = format!("https://{}{}", h.addr, path);
            let body = ApiError {
                code: ApiError::NOT_LEADER.into(),
                message: format!(
                    "{} is not the leader; the leader is {} at {}",
                    node.name, h.name, h.addr
                ),
                leader: Some(h.addr.to_string()),
            };
            Err((
                StatusCode::TEMPORARY_REDIRECT,
                [(header::LOCATION, location)],
                Json(body),
            )
                .into_response())
        }
        _ => Err(Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NO_LEADER,
            "no leader is known right now (an election may be under way); retry in a moment",
        )
        .into_response()),
    }
}

/// Checks the caller is a known, enabled user holding a current certificate; `admin` for writes.
fn authorize(state: &ClusterState, caller: &Caller, admin: bool) -> Result<UserRole, Failure> {
    let (Some(name), Some(serial)) = (&caller.user, &caller.serial) else {
        return Err(Failure::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "present a user certificate (a skiff credential)",
        ));
    };
    let user = state
        .users
        .get(name)
        .filter(|u| !u.disabled && u.cert_serials.contains(serial))
        .ok_or_else(|| {
            Failure::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                format!("user {name:?} is unknown, disabled, or this credential was replaced"),
            )
        })?;
    if admin && user.role != UserRole::Admin {
        return Err(Failure::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this operation needs the admin role",
        ));
    }
    Ok(user.role)
}

macro_rules! gate {
    ($node:expr, $uri:expr, $caller:expr, $admin:expr) => {{
        let state = match leader_gate(&$node, &$uri).await {
            Ok(s) => s,
            Err(resp) => return Ok(resp),
        };
        if let Err(f) = authorize(&state, &$caller, $admin) {
            return Ok(f.into_response());
        }
        state
    }};
}

fn ok<T: Serialize>(v: T) -> Result<Response, Failure> {
    Ok(Json(v).into_response())
}

#[derive(Serialize)]
struct Status {
    name: String,
    node_id: u64,
    cluster_id: String,
    serving_term: Option<u64>,
    leader: Option<String>,
}

/// Answered by every node itself (no redirect): who it is and whom it follows.
async fn status(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Status> {
    if caller.user.is_none() {
        return Err(Failure::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "present a user certificate",
        ));
    }
    Ok(Json(Status {
        name: node.name.clone(),
        node_id: node.node_id,
        cluster_id: node.cluster_id.clone(),
        serving_term: node.serving_term(),
        leader: node.leader_hint().await.map(|h| h.name),
    }))
}

fn view_of(
    rec: &NodeRecord,
    g: Option<&GossipNode>,
    voters: &BTreeSet<u64>,
    leader: Option<u64>,
) -> NodeView {
    let storage = g
        .and_then(|g| g.get(keys::STORAGE))
        .and_then(|s| serde_json::from_str::<Vec<PoolUsage>>(s).ok())
        .unwrap_or_default();
    NodeView {
        name: rec.name.clone(),
        id: rec.id,
        address: rec.addr.to_string(),
        role: rec.role.as_str().into(),
        voter: voters.contains(&rec.id),
        alive: g.is_some_and(|g| g.alive),
        leader: leader == Some(rec.id),
        term: g.map(|g| g.get_u64(keys::TERM)).unwrap_or(0),
        generation: g.map(|g| g.generation).unwrap_or(0),
        version: g.and_then(|g| g.get(keys::VERSION)).unwrap_or("").into(),
        cores: g.map(|g| g.get_u64(keys::CORES) as u32).unwrap_or(0),
        memory_total: g.map(|g| g.get_u64(keys::MEMORY_TOTAL)).unwrap_or(0),
        memory_used: g.map(|g| g.get_u64(keys::MEMORY_USED)).unwrap_or(0),
        storage,
        servers: g.map(|g| g.get_u64(keys::SERVERS) as u32).unwrap_or(0),
    }
}

fn voters_and_leader(node: &Node) -> (BTreeSet<u64>, BTreeSet<u64>, Option<u64>, u64) {
    let Some(r) = &node.replica else {
        return (BTreeSet::new(), BTreeSet::new(), None, 0);
    };
    let m = r.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let learners: BTreeSet<u64> = membership.learner_ids().collect();
    (voters, learners, m.current_leader, m.current_term)
}

async fn node_views(node: &Node, state: &ClusterState) -> Vec<NodeView> {
    let gossip = node.gossip_nodes().await;
    let (voters, _, leader, _) = voters_and_leader(node);
    state
        .nodes
        .values()
        .map(|rec| {
            view_of(
                rec,
                gossip.iter().find(|g| g.name == rec.name),
                &voters,
                leader,
            )
        })
        .collect()
}

async fn list_nodes(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> Result<Response, Failure> {
    let state = gate!(node, uri, caller, false);
    ok(node_views(&node, &state).await)
}

fn cluster_view(node: &Node, state: &ClusterState) -> ClusterView {
    let (voters, learners, leader, term) = voters_and_leader(node);
    let name = |id: &u64| {
        state
            .node_by_id(*id)
            .map(|n| n.name.clone())
            .unwrap_or_else(|| format!("node-{id}"))
    };
    ClusterView {
        cluster_id: state.cluster_id.clone(),
        leader: leader.as_ref().map(name),
        term,
        voters: voters.iter().map(name).collect(),
        learners: learners.iter().map(name).collect(),
    }
}

async fn cluster(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> Result<Response, Failure> {
    let state = gate!(node, uri, caller, false);
    ok(cluster_view(&node, &state))
}

async fn propose(node: &Node, caller: &Caller, cmd: Command) -> Result<CommandOutcome, Failure> {
    let actor = format!("user:{}", caller.user.as_deref().unwrap_or("?"));
    node.propose(&actor, cmd).await.map_err(|e| {
        Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NO_LEADER,
            e.to_string(),
        )
    })
}

fn refused(outcome: CommandOutcome) -> Failure {
    match outcome {
        CommandOutcome::Refused { code, message } => {
            let status = match code {
                skiff_cluster::state::RefusalCode::NotFound => StatusCode::NOT_FOUND,
                _ => StatusCode::CONFLICT,
            };
            Failure(
                status,
                ApiError::new(format!("{code:?}").to_lowercase(), message),
            )
        }
        other => Failure::internal(format!("unexpected outcome {other:?}")),
    }
}

async fn create_token(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    body: Result<Json<TokenRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, Failure> {
    let state = gate!(node, uri, caller, true);
    let Json(req) = body.map_err(|e| Failure::bad_request(e.body_text()))?;
    if !(MIN_TOKEN_TTL..=MAX_TOKEN_TTL).contains(&req.ttl_secs) {
        return Err(Failure::bad_request(format!(
            "ttl_secs must be between {MIN_TOKEN_TTL} and {MAX_TOKEN_TTL}"
        )));
    }
    let ca = state
        .ca
        .as_ref()
        .ok_or_else(|| Failure::internal("the cluster has no CA yet"))?;
    let fingerprint =
        identity::ca_fingerprint(&ca.cert_pem).map_err(|e| Failure::internal(e.to_string()))?;
    let token = JoinToken::generate(&fingerprint);
    let expires_at = skiff_cluster::unix_now() + req.ttl_secs;
    let outcome = propose(
        &node,
        &caller,
        Command::CreateJoinToken {
            token: JoinTokenRecord {
                id: token.id.clone(),
                secret_sha256: token.secret_sha256(),
                expires_at,
                created_by: caller.user.clone().unwrap_or_default(),
                used_by: None,
            },
        },
    )
    .await?;
    if outcome != CommandOutcome::Done {
        return Err(refused(outcome));
    }
    ok(TokenResponse {
        token: token.to_string(),
        expires_at,
    })
}

fn resolve_names(state: &ClusterState, names: &[String]) -> Result<Vec<NodeRecord>, Failure> {
    if names.is_empty() {
        return Err(Failure::bad_request("name at least one node"));
    }
    names
        .iter()
        .map(|n| {
            state.nodes.get(n).cloned().ok_or_else(|| {
                Failure::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("no node named {n:?}"),
                )
            })
        })
        .collect()
}

fn check_voter_count(count: usize, allow_even: bool) -> Result<(), Failure> {
    if count == 0 {
        return Err(Failure::bad_request("the cluster needs at least one voter"));
    }
    if count % 2 == 0 && !allow_even {
        return Err(Failure::bad_request(format!(
            "that leaves {count} voters: an even number tolerates no more failures than one fewer. Change two nodes at once (1, 3 or 5 voters), or pass --allow-even"
        )));
    }
    Ok(())
}

fn membership_failure(e: impl std::fmt::Display) -> Failure {
    Failure::new(
        StatusCode::CONFLICT,
        "membership_change_failed",
        e.to_string(),
    )
}

async fn promote(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    body: Result<Json<MembershipRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, Failure> {
    let state = gate!(node, uri, caller, true);
    let Json(req) = body.map_err(|e| Failure::bad_request(e.body_text()))?;
    let recs = resolve_names(&state, &req.names)?;
    if let Some(c) = recs
        .iter()
        .find(|r| r.role != skiff_cluster::state::NodeRole::AdminEligible)
    {
        return Err(Failure::bad_request(format!(
            "{} is a compute node; only admin-eligible nodes can vote",
            c.name
        )));
    }
    let (voters, learners, _, _) = voters_and_leader(&node);
    let new: BTreeSet<u64> = recs
        .iter()
        .map(|r| r.id)
        .filter(|id| !voters.contains(id))
        .collect();
    check_voter_count(voters.len() + new.len(), req.allow_even)?;
    let raft = &node
        .replica
        .as_ref()
        .ok_or_else(|| Failure::internal("no replica"))?
        .raft;
    for r in recs
        .iter()
        .filter(|r| new.contains(&r.id) && !learners.contains(&r.id))
    {
        raft.add_learner(r.id, openraft::BasicNode::new(r.addr.to_string()), true)
            .await
            .map_err(membership_failure)?;
    }
    if !new.is_empty() {
        raft.change_membership(ChangeMembers::AddVoterIds(new), true)
            .await
            .map_err(membership_failure)?;
    }
    ok(cluster_view(&node, &node.state().unwrap_or(state)))
}

async fn demote(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    body: Result<Json<MembershipRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, Failure> {
    let state = gate!(node, uri, caller, true);
    let Json(req) = body.map_err(|e| Failure::bad_request(e.body_text()))?;
    let recs = resolve_names(&state, &req.names)?;
    let (voters, _, _, _) = voters_and_leader(&node);
    let gone: BTreeSet<u64> = recs
        .iter()
        .map(|r| r.id)
        .filter(|id| voters.contains(id))
        .collect();
    check_voter_count(voters.len() - gone.len(), req.allow_even)?;
    if !gone.is_empty() {
        let raft = &node
            .replica
            .as_ref()
            .ok_or_else(|| Failure::internal("no replica"))?
            .raft;
        raft.change_membership(ChangeMembers::RemoveVoters(gone), true)
            .await
            .map_err(membership_failure)?;
    }
    ok(cluster_view(&node, &node.state().unwrap_or(state)))
}

async fn remove_node(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    Path(name): Path<String>,
) -> Result<Response, Failure> {
    let state = gate!(node, uri, caller, true);
    let rec = resolve_names(&state, std::slice::from_ref(&name))?.remove(0);
    if rec.id == node.node_id {
        return Err(Failure::new(
            StatusCode::CONFLICT,
            "is_leader",
            format!("{name} is the leader: demote it first (`skiff node demote {name}`), then remove it from the new leader"),
        ));
    }
    let view = node_views(&node, &state)
        .await
        .into_iter()
        .find(|v| v.name == name);
    let (voters, learners, _, _) = voters_and_leader(&node);
    let raft = &node
        .replica
        .as_ref()
        .ok_or_else(|| Failure::internal("no replica"))?
        .raft;
    if voters.contains(&rec.id) {
        check_voter_count(voters.len() - 1, true)?;
        raft.change_membership(ChangeMembers::RemoveVoters([rec.id].into()), false)
            .await
            .map_err(membership_failure)?;
    } else if learners.contains(&rec.id) {
        raft.change_membership(ChangeMembers::RemoveNodes([rec.id].into()), false)
            .await
            .map_err(membership_failure)?;
    }
    let outcome = propose(
        &node,
        &caller,
        Command::RemoveNode {
            name: name.clone(),
            now: skiff_cluster::unix_now(),
        },
    )
    .await?;
    match outcome {
        CommandOutcome::Removed { .. } => {
            info!(node = %name, "node removed and its certificate revoked");
            ok(view)
        }
        other => Err(refused(other)),
    }
}
