//! The control API over HTTPS (axum on hyper, rustls, mutual TLS with the user's certificate).
//!
//! Every node listens (TCP, same port as its QUIC endpoint) so that clients can start anywhere:
//! only the node running leader services answers; the others redirect (307) to the leader, or say
//! 503 `no_leader` while there is none. One file per entity: [`nodes`], ...

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;
use skiff_cluster::api::users::BearerToken;
use skiff_cluster::api::ApiError;
use skiff_cluster::state::{ClusterState, Command, CommandOutcome, UserRole};
use skiff_cluster::tls::{peer_identity, Subject};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, error, info};

use crate::agent::{Node, ProposeError};

/// The user behind a request: from their client certificate, or from a bearer token
/// (`Authorization: Bearer skt_ID_SECRET`), which then takes precedence.
#[derive(Clone, Debug, Default)]
pub(crate) struct Caller {
    /// The user's name (for a token: its owner, as this node's state knows it).
    pub(crate) user: Option<String>,
    /// Serial of the client certificate (none when a token authenticates).
    pub(crate) serial: Option<String>,
    /// The bearer token presented, if any.
    pub(crate) token: Option<TokenAuth>,
    /// The request may change something (any method but GET, HEAD, OPTIONS): read-only users
    /// are refused by [`authorize`].
    pub(crate) writes: bool,
}

/// A bearer token as presented: its id and the SHA-256 of its secret (the secret is dropped).
#[derive(Clone, Debug)]
pub(crate) struct TokenAuth {
    pub(crate) id: String,
    pub(crate) secret_sha256: String,
}

/// The caller's name for messages and records (`?` when unauthenticated).
pub(crate) fn caller_name(caller: &Caller) -> &str {
    caller.user.as_deref().unwrap_or("?")
}

/// An authenticated user and their role, for handlers that check ownership.
#[derive(Clone, Debug)]
pub(crate) struct Principal {
    pub(crate) name: String,
    pub(crate) role: UserRole,
}

impl Principal {
    pub(crate) fn is_admin(&self) -> bool {
        self.role == UserRole::Admin
    }
    /// Admins see everything; others see what they own.
    pub(crate) fn may_see(&self, owner: &str) -> bool {
        self.is_admin() || self.name == owner
    }
    /// Admins act on everything; users on what they own; read-only users on nothing.
    pub(crate) fn may_act_on(&self, owner: &str) -> Result<(), Failure> {
        if self.role == UserRole::ReadOnly {
            return Err(read_only());
        }
        if self.may_see(owner) {
            Ok(())
        } else {
            Err(Failure::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("{owner:?} is not yours: users act only on their own objects"),
            ))
        }
    }
}

fn read_only() -> Failure {
    Failure::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        "read-only users cannot change anything",
    )
}

/// An API failure: a status and the JSON body every client understands.
#[derive(Debug)]
pub struct Failure(pub(crate) StatusCode, pub(crate) ApiError);

impl Failure {
    pub(crate) fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Failure(status, ApiError::new(code, message))
    }
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

pub(crate) type ApiResult<T> = Result<Json<T>, Failure>;

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
        // Without TCP_NODELAY, Nagle's algorithm holds a small TLS record (an HTTP/2 frame of
        // one response) until the client acknowledges the previous one, and the client delays
        // that ACK by up to 40 ms: every request in flight on the connection stalled for ~45 ms
        // a few times per second under the write benchmark (docs/benchmarks.md §6).
        if let Err(e) = tcp.set_nodelay(true) {
            debug!(peer = %remote, error = %e, "cannot set TCP_NODELAY on an API connection");
        }
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
                        ..Caller::default()
                    },
                    Subject::Node(_) => Caller::default(),
                },
                None => Caller::default(),
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
        .route("/api/v1/nodes", get(nodes::list))
        .route("/api/v1/cluster", get(nodes::cluster))
        .route("/api/v1/nodes/tokens", post(nodes::create_token))
        .route("/api/v1/nodes/promote", post(nodes::promote))
        .route("/api/v1/nodes/demote", post(nodes::demote))
        .route("/api/v1/nodes/{name}", delete(nodes::remove))
        .merge(users::routes())
        .merge(servers::routes())
        .merge(images::routes())
        .merge(pools::routes())
        .merge(backups::routes())
        .merge(connections::routes())
        .merge(stacks::routes())
        .merge(tasks::routes())
        .route("/api/v1/events", get(events::stream))
        .merge(openapi::routes())
        .fallback(|| async {
            Failure::new(StatusCode::NOT_FOUND, "not_found", "no such API route")
        })
        .method_not_allowed_fallback(|| async {
            Failure::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            node.clone(),
            authenticate,
        ))
        .with_state(node)
}

/// Sends the request to the leader unless this node runs leader services; answers the state the
/// handler works on.
///
/// A read gets a linearizable state (a read-index round with a quorum). A write gets the leader's
/// applied state as it is: the leader holds its lease (no other node can be leader), and it has
/// applied every write acknowledged to anyone (openraft answers a write once it is applied, and a
/// new leader serves only after applying an entry of its own term), so the handler's checks
/// (permissions, ownership, references) see every acknowledged write; `apply` checks again what
/// must not race (names, quotas, addresses). That saves a quorum round per write: the write
/// itself is the round.
pub(crate) async fn leader_gate(
    node: &Node,
    uri: &Uri,
    writes: bool,
) -> Result<Arc<ClusterState>, Response> {
    if node.serving_term().is_some() {
        if writes {
            if let Some(state) = node.state() {
                return Ok(state);
            }
        }
        if let Some(state) = node.read_state().await {
            return Ok(state);
        }
        return Err(Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NO_LEADER,
            "this node could not confirm its leadership with a quorum; retry in a moment",
        )
        .into_response());
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

/// Reads the request's credentials into its [`Caller`]: the method (does it write?) and a bearer
/// token, resolved to its owner with this node's state. [`authorize`] checks again against the
/// leader's state; this only lets handlers (and `status`) know who is calling.
async fn authenticate(
    State(node): State<Arc<Node>>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::http::Method;
    let mut caller = req
        .extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or_default();
    caller.writes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or("the Authorization header takes `Bearer skt_ID_SECRET`".to_string())
            .and_then(BearerToken::parse);
        let token = match token {
            Ok(t) => t,
            Err(message) => {
                return Failure::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
                    .into_response()
            }
        };
        let auth = TokenAuth {
            id: token.id.clone(),
            secret_sha256: token.secret_sha256(),
        };
        // Looked up in place: copying the whole desired state per request would cost O(state).
        let owner = node.replica.as_ref().and_then(|r| {
            r.state
                .with(|s| token_owner(s, &auth).ok().map(|u| u.name.clone()))
        });
        if let (Some(cert_user), Some(owner)) = (&caller.user, &owner) {
            if cert_user != owner {
                return Failure::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "the bearer token and the client certificate name different users",
                )
                .into_response();
            }
        }
        caller.user = owner;
        caller.serial = None;
        caller.token = Some(auth);
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

fn unauthenticated(message: impl Into<String>) -> Failure {
    Failure::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
}

/// The enabled user owning a valid, unexpired token.
fn token_owner<'a>(
    state: &'a ClusterState,
    auth: &TokenAuth,
) -> Result<&'a skiff_cluster::state::UserRecord, Failure> {
    let refused =
        || unauthenticated("the API token is unknown, revoked, expired, or its user is disabled");
    let (user, token) = state
        .users
        .values()
        .find_map(|u| {
            u.api_tokens
                .iter()
                .find(|t| t.id == auth.id)
                .map(|t| (u, t))
        })
        .ok_or_else(refused)?;
    let now = skiff_cluster::unix_now();
    if user.disabled
        || token.secret_sha256 != auth.secret_sha256
        || token.expires_at.is_some_and(|e| e <= now)
    {
        return Err(refused());
    }
    Ok(user)
}

/// The user behind the request, checked against `state`: a known, enabled user holding a current
/// certificate or a valid token.
pub(crate) fn authenticated<'a>(
    state: &'a ClusterState,
    caller: &Caller,
) -> Result<&'a skiff_cluster::state::UserRecord, Failure> {
    if let Some(auth) = &caller.token {
        let user = token_owner(state, auth)?;
        if caller.user.as_deref() != Some(user.name.as_str()) {
            // The token was made a moment ago, after this request was read: the client retries.
            return Err(unauthenticated("the API token is not known yet; retry"));
        }
        return Ok(user);
    }
    let (Some(name), Some(serial)) = (&caller.user, &caller.serial) else {
        return Err(unauthenticated(
            "present a user certificate (a skiff credential) or an API token (Authorization: Bearer skt_...)",
        ));
    };
    state
        .users
        .get(name)
        .filter(|u| !u.disabled && u.cert_serials.contains(serial))
        .ok_or_else(|| {
            unauthenticated(format!(
                "user {name:?} is unknown, disabled, or this credential was replaced"
            ))
        })
}

/// Checks the caller is a known, enabled user holding a current certificate or token; `admin`:
/// the operation needs the admin role. Read-only users are refused any request that writes.
pub(crate) fn authorize(
    state: &ClusterState,
    caller: &Caller,
    admin: bool,
) -> Result<UserRole, Failure> {
    principal(state, caller, admin).map(|p| p.role)
}

/// [`authorize`], answering who the caller is.
pub(crate) fn principal(
    state: &ClusterState,
    caller: &Caller,
    admin: bool,
) -> Result<Principal, Failure> {
    let user = authenticated(state, caller)?;
    if admin && user.role != UserRole::Admin {
        return Err(Failure::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this operation needs the admin role",
        ));
    }
    if caller.writes && user.role == UserRole::ReadOnly {
        return Err(read_only());
    }
    Ok(Principal {
        name: user.name.clone(),
        role: user.role,
    })
}

/// Sends the request to the leader, or checks the caller may act (`$admin`: needs the admin
/// role); evaluates to the desired state the handler works on.
macro_rules! gate {
    ($node:expr, $uri:expr, $caller:expr, $admin:expr) => {{
        let state = match leader_gate(&$node, &$uri, $caller.writes).await {
            Ok(s) => s,
            Err(resp) => return Ok(resp),
        };
        if let Err(f) = authorize(&state, &$caller, $admin) {
            return Ok(f.into_response());
        }
        state
    }};
}

/// [`gate!`] that also answers who the caller is: evaluates to `(state, Principal)`.
macro_rules! gate_as {
    ($node:expr, $uri:expr, $caller:expr, $admin:expr) => {{
        let state = match leader_gate(&$node, &$uri, $caller.writes).await {
            Ok(s) => s,
            Err(resp) => return Ok(resp),
        };
        match principal(&state, &$caller, $admin) {
            Ok(p) => (state, p),
            Err(f) => return Ok(f.into_response()),
        }
    }};
}

mod backups;
mod connections;
mod events;
mod images;
pub(crate) use images::uploading;
mod nodes;
mod openapi;
mod pools;
mod servers;
mod stacks;
mod tasks;
mod users;

pub(crate) fn ok<T: Serialize>(v: T) -> Result<Response, Failure> {
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

pub(crate) async fn propose(
    node: &Node,
    caller: &Caller,
    cmd: Command,
) -> Result<CommandOutcome, Failure> {
    let actor = format!("user:{}", caller_name(caller));
    node.propose(&actor, cmd).await.map_err(|e| match e {
        // Not proposed, or its entry was overwritten by a new leader: it never takes effect, and
        // sending it again is safe.
        ProposeError::NotLeader => Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NO_LEADER,
            "this node lost its leadership before the write was committed; retry in a moment",
        ),
        ProposeError::Raft(_) => Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ApiError::OUTCOME_UNKNOWN,
            format!("{e}; it may still take effect: look before sending it again"),
        ),
    })
}

/// The answer to a write that queued a task: 202 with the task's id and the node doing it, or
/// the refusal.
pub(crate) fn task_accepted(
    outcome: CommandOutcome,
    node: Option<String>,
) -> Result<Response, Failure> {
    match outcome {
        CommandOutcome::TaskStarted { task_id } => Ok((
            StatusCode::ACCEPTED,
            Json(skiff_cluster::api::servers::TaskAccepted { task_id, node }),
        )
            .into_response()),
        other => Err(refused(other)),
    }
}

pub(crate) fn refused(outcome: CommandOutcome) -> Failure {
    match outcome {
        CommandOutcome::Refused { code, message } => {
            let status = match code {
                skiff_cluster::state::RefusalCode::NotFound => StatusCode::NOT_FOUND,
                skiff_cluster::state::RefusalCode::Invalid => StatusCode::BAD_REQUEST,
                _ => StatusCode::CONFLICT,
            };
            Failure(status, ApiError::new(refusal_code_name(code), message))
        }
        other => Failure::internal(format!("unexpected outcome {other:?}")),
    }
}

/// The JSON name of a refusal code (`quota_exceeded`, `name_taken`, ...), as serde writes it.
fn refusal_code_name(code: skiff_cluster::state::RefusalCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_else(|| "refused".into())
}
