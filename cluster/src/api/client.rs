//! Client of the control API: mutual TLS with the user's credential, finds the leader on its own.
//!
//! The credential lists a few endpoints (`HOST:PORT`). The client asks the one that last answered
//! first, then the others in order. A follower answers 307 with `code = "not_leader"` and the
//! leader's address; the client follows at most [`MAX_LEADER_HOPS`] such hops by itself (reqwest's
//! own redirect handling is off, so a body is never re-sent to a host the credential does not name
//! without this code deciding to). An endpoint that cannot be reached, or that knows no leader,
//! makes the client try the next one.

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::types::{
    ApiError, ClusterView, MembershipRequest, NodeView, TokenRequest, TokenResponse, API_PREFIX,
};
use crate::credential::Credential;
use crate::tls::TlsError;

/// How many times one request follows a follower's pointer to the leader.
pub const MAX_LEADER_HOPS: usize = 3;
/// Time allowed to open a TCP connection and finish the TLS handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Time allowed for a whole request, answer included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request waits for a leader when every endpoint says there is none (an election or
/// a lease renewal under way), asking again with growing pauses; see [`ApiClient::with_leader_wait`].
pub const LEADER_WAIT: Duration = Duration::from_secs(5);

/// Why a call to the control API failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The credential names no endpoint to connect to.
    #[error("the credential lists no cluster endpoint")]
    NoEndpoints,
    /// The credential's certificates or key cannot make a TLS configuration.
    #[error("the credential cannot be used for TLS: {0}")]
    Tls(#[from] TlsError),
    /// The HTTP client could not be built.
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
    /// No endpoint could be reached (connection refused, timeout, TLS handshake failure...).
    #[error("cannot reach the cluster at {}: {detail}", endpoints.join(", "))]
    Unreachable {
        /// Every address tried, in order.
        endpoints: Vec<String>,
        /// What went wrong, per endpoint when the reasons differ.
        detail: String,
    },
    /// Followers kept pointing elsewhere without reaching a leader.
    #[error("no leader answered after {hops} redirects (last pointed to {last})")]
    LeaderLoop { hops: usize, last: String },
    /// The API answered with an error.
    #[error("{message}")]
    Api {
        /// HTTP status of the answer.
        status: u16,
        /// Machine-readable reason ([`ApiError::code`]).
        code: String,
        /// Human-readable reason ([`ApiError::message`]).
        message: String,
    },
    /// The API answered 2xx but the body is not what this client expects (version skew?).
    #[error("unexpected answer from {endpoint}: {message}")]
    Decode { endpoint: String, message: String },
}

impl ClientError {
    /// True when the cluster could not be reached at all (as opposed to refusing a request).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            ClientError::Unreachable { .. } | ClientError::LeaderLoop { .. }
        )
    }

    /// The API's error code, for errors the API itself returned.
    pub fn api_code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// Client of one cluster's control API. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct ApiClient {
    http: reqwest::Client,
    endpoints: Vec<String>,
    /// The endpoint that answered last; asked first next time.
    current: Mutex<String>,
    leader_wait: Duration,
}

impl fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiClient")
            .field("endpoints", &self.endpoints)
            .field("current", &self.current_endpoint())
            .finish()
    }
}

/// What happened when one request was sent to one address.
enum Attempt<T> {
    Done(T),
    /// A follower pointed to the leader at this address.
    Redirect(String),
    /// The address could not be reached; try another.
    Unreachable(String),
    /// The node answered but knows no leader; another endpoint may.
    NoLeader(ClientError),
    Failed(ClientError),
}

impl ApiClient {
    /// A client for the cluster the credential belongs to, authenticating with its certificate.
    pub fn new(cred: &Credential) -> Result<Self, ClientError> {
        let tls = crate::tls::api_client_config(cred)?;
        Self::with_tls_config(cred.endpoints.clone(), tls)
    }

    /// A client for `endpoints` (`HOST:PORT`) with a ready TLS configuration.
    pub fn with_tls_config(
        endpoints: Vec<String>,
        tls: rustls::ClientConfig,
    ) -> Result<Self, ClientError> {
        Self::build(endpoints, tls, reqwest::header::HeaderMap::new())
    }

    /// A client that authenticates with an API bearer token (`skt_ID_SECRET`) instead of a
    /// certificate: every request, the event stream included, carries `Authorization: Bearer`.
    /// It trusts only nodes of the CA in `ca_pem` (no client certificate is presented) and finds
    /// the leader like any other client. The SSH cockpit uses it to act as its user.
    pub fn with_token(
        endpoints: Vec<String>,
        ca_pem: &str,
        token: &str,
    ) -> Result<Self, ClientError> {
        let verifier = crate::tls::node_verifier_for_ca(ca_pem)?;
        let mut tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Setup(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
            .map_err(|_| ClientError::Setup("the API token is not a valid header value".into()))?;
        value.set_sensitive(true);
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, value);
        Self::build(endpoints, tls, headers)
    }

    fn build(
        endpoints: Vec<String>,
        tls: rustls::ClientConfig,
        headers: reqwest::header::HeaderMap,
    ) -> Result<Self, ClientError> {
        let endpoints: Vec<String> = endpoints
            .into_iter()
            .map(|e| e.trim().to_owned())
            .filter(|e| !e.is_empty())
            .collect();
        let first = endpoints.first().cloned().ok_or(ClientError::NoEndpoints)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .default_headers(headers)
            .user_agent(concat!("skiff/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Setup(error_chain(&e)))?;
        Ok(Self {
            http,
            endpoints,
            current: Mutex::new(first),
            leader_wait: LEADER_WAIT,
        })
    }

    /// How long a request waits for a leader when no endpoint knows one ([`LEADER_WAIT`] unless
    /// set; zero reports `no_leader` at once). A `no_leader` answer means the request changed
    /// nothing, so it is sent again; an `outcome_unknown` one is not.
    pub fn with_leader_wait(mut self, wait: Duration) -> Self {
        self.leader_wait = wait;
        self
    }

    /// The address (`HOST:PORT`) of the node that answered last, or the first endpoint if none has.
    pub fn current_endpoint(&self) -> String {
        self.current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The endpoints from the credential, in order.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// `GET /api/v1/nodes`: every member of the cluster.
    pub async fn nodes(&self) -> Result<Vec<NodeView>, ClientError> {
        self.call::<(), _>(Method::GET, "/nodes", None).await
    }

    /// `GET /api/v1/cluster`: Raft membership and leadership.
    pub async fn cluster(&self) -> Result<ClusterView, ClientError> {
        self.call::<(), _>(Method::GET, "/cluster", None).await
    }

    /// `POST /api/v1/nodes/tokens`: a join token valid for `ttl_secs` seconds (admin only).
    pub async fn create_token(&self, ttl_secs: u64) -> Result<TokenResponse, ClientError> {
        self.call(
            Method::POST,
            "/nodes/tokens",
            Some(&TokenRequest { ttl_secs }),
        )
        .await
    }

    /// `POST /api/v1/nodes/promote`: make the named nodes Raft voters.
    pub async fn promote(
        &self,
        names: Vec<String>,
        allow_even: bool,
    ) -> Result<ClusterView, ClientError> {
        self.call(
            Method::POST,
            "/nodes/promote",
            Some(&MembershipRequest { names, allow_even }),
        )
        .await
    }

    /// `POST /api/v1/nodes/demote`: make the named nodes non-voting learners.
    pub async fn demote(
        &self,
        names: Vec<String>,
        allow_even: bool,
    ) -> Result<ClusterView, ClientError> {
        self.call(
            Method::POST,
            "/nodes/demote",
            Some(&MembershipRequest { names, allow_even }),
        )
        .await
    }

    /// `DELETE /api/v1/nodes/{name}`: remove a node and revoke its certificate.
    pub async fn remove_node(&self, name: &str) -> Result<NodeView, ClientError> {
        let path = format!("/nodes/{}", super::seg(name));
        self.call::<(), _>(Method::DELETE, &path, None).await
    }

    /// Sends one request, finding the leader as the module documentation says, and decodes its
    /// JSON answer.
    pub(crate) async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let body = match body {
            Some(b) => Some(serde_json::to_vec(b).map_err(|e| ClientError::Setup(e.to_string()))?),
            None => None,
        };
        let idempotent = method == Method::GET;
        let (addr, response) = self
            .send_to_leader(
                path,
                |http, url| {
                    let request = http.request(method.clone(), url);
                    match &body {
                        Some(body) => request
                            .header(reqwest::header::CONTENT_TYPE, "application/json")
                            .body(body.clone()),
                        None => request,
                    }
                },
                idempotent,
            )
            .await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::Unreachable {
                endpoints: vec![addr.clone()],
                detail: error_chain(&e),
            })?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            endpoint: addr,
            message: e.to_string(),
        })
    }

    /// Sends one request to the leader and answers its successful (2xx) response, unread, with
    /// the address that gave it: tries the current endpoint, then the others, following each
    /// follower's pointer to the leader. `build(http, url)` makes the request for one attempt
    /// (called again for each, so a streamed body is made afresh); `idempotent`: a request that
    /// may have reached a node is sent again elsewhere (otherwise only connection failures are
    /// retried). Errors are the API's, or why no leader could be reached.
    pub(crate) async fn send_to_leader(
        &self,
        path: &str,
        mut build: impl FnMut(&reqwest::Client, String) -> reqwest::RequestBuilder,
        idempotent: bool,
    ) -> Result<(String, reqwest::Response), ClientError> {
        let deadline = tokio::time::Instant::now() + self.leader_wait;
        let mut pause = Duration::from_millis(100);
        loop {
            match self.send_round(path, &mut build, idempotent).await {
                Err(e)
                    if e.api_code() == Some(ApiError::NO_LEADER)
                        && tokio::time::Instant::now() + pause <= deadline =>
                {
                    tracing::debug!(error = %e, ?pause, "no leader yet; asking again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                other => return other,
            }
        }
    }

    /// One pass of [`send_to_leader`](Self::send_to_leader) over the endpoints.
    async fn send_round(
        &self,
        path: &str,
        build: &mut impl FnMut(&reqwest::Client, String) -> reqwest::RequestBuilder,
        idempotent: bool,
    ) -> Result<(String, reqwest::Response), ClientError> {
        let current = self.current_endpoint();
        let mut candidates = vec![current.clone()];
        candidates.extend(self.endpoints.iter().filter(|e| **e != current).cloned());

        let mut tried: Vec<String> = Vec::new();
        let mut failures: Vec<(String, String)> = Vec::new();
        let mut no_leader: Option<ClientError> = None;

        for start in candidates {
            let mut addr = start;
            let mut hops = 0;
            loop {
                if !tried.contains(&addr) {
                    tried.push(addr.clone());
                }
                let request = build(&self.http, format!("https://{addr}{API_PREFIX}{path}"));
                match self.attempt(&addr, request, idempotent).await {
                    Attempt::Done(response) => {
                        self.set_current(&addr);
                        return Ok((addr, response));
                    }
                    Attempt::Redirect(leader) => {
                        if hops >= MAX_LEADER_HOPS {
                            return Err(ClientError::LeaderLoop { hops, last: leader });
                        }
                        tracing::debug!(from = %addr, to = %leader, "following the leader");
                        hops += 1;
                        addr = leader;
                    }
                    Attempt::Unreachable(reason) => {
                        tracing::debug!(endpoint = %addr, %reason, "endpoint unreachable");
                        failures.push((addr, reason));
                        break;
                    }
                    Attempt::NoLeader(err) => {
                        self.set_current(&addr);
                        no_leader = Some(err);
                        break;
                    }
                    Attempt::Failed(err) => {
                        if !matches!(err, ClientError::Unreachable { .. }) {
                            self.set_current(&addr);
                        }
                        return Err(err);
                    }
                }
            }
        }
        if let Some(err) = no_leader {
            return Err(err);
        }
        Err(unreachable(tried, &failures))
    }

    /// Sends one request to one address and sorts out the answer (a 2xx response is not read).
    async fn attempt(
        &self,
        addr: &str,
        request: reqwest::RequestBuilder,
        idempotent: bool,
    ) -> Attempt<reqwest::Response> {
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                // A request that may have reached the server is not sent again elsewhere,
                // unless repeating it is harmless.
                if e.is_connect() || idempotent {
                    return Attempt::Unreachable(error_chain(&e));
                }
                return Attempt::Failed(ClientError::Unreachable {
                    endpoints: vec![addr.to_owned()],
                    detail: error_chain(&e),
                });
            }
        };
        let status = response.status();
        if status.is_success() {
            return Attempt::Done(response);
        }
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = match response.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return Attempt::Failed(ClientError::Unreachable {
                    endpoints: vec![addr.to_owned()],
                    detail: error_chain(&e),
                })
            }
        };
        let api = parse_api_error(status, &bytes);
        let redirect = status == StatusCode::TEMPORARY_REDIRECT
            || status == StatusCode::PERMANENT_REDIRECT
            || api.code == ApiError::NOT_LEADER;
        if redirect {
            let leader = api
                .leader
                .clone()
                .filter(|l| !l.trim().is_empty())
                .or_else(|| location.as_deref().and_then(address_of_url));
            return match leader {
                Some(leader) if leader != addr => Attempt::Redirect(leader),
                _ => Attempt::NoLeader(ClientError::Api {
                    status: status.as_u16(),
                    code: api.code,
                    message: api.message,
                }),
            };
        }
        let err = ClientError::Api {
            status: status.as_u16(),
            code: api.code,
            message: api.message,
        };
        if err.api_code() == Some(ApiError::NO_LEADER) {
            Attempt::NoLeader(err)
        } else {
            Attempt::Failed(err)
        }
    }

    /// The HTTP client (for calls that do not fit [`ApiClient::call`], like the event stream).
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub(crate) fn set_current(&self, addr: &str) {
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *current != addr {
            *current = addr.to_owned();
        }
    }
}

/// The API error in a non-2xx body, or one made up from the status when the body is not one.
pub(crate) fn parse_api_error(status: StatusCode, body: &[u8]) -> ApiError {
    if let Ok(err) = serde_json::from_slice::<ApiError>(body) {
        return err;
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let reason = status.canonical_reason().unwrap_or("error");
    let message = if text.is_empty() {
        format!("the server answered {} {reason}", status.as_u16())
    } else {
        let short: String = text.chars().take(200).collect();
        format!("the server answered {} {reason}: {short}", status.as_u16())
    };
    ApiError::new(format!("http_{}", status.as_u16()), message)
}

/// `HOST:PORT` of an absolute `https://HOST:PORT/...` URL (IPv6 hosts keep their brackets).
pub(crate) fn address_of_url(location: &str) -> Option<String> {
    let url = reqwest::Url::parse(location).ok()?;
    let host = url.host_str()?;
    let port = url.port_or_known_default()?;
    Some(format!("{host}:{port}"))
}

/// The innermost causes of an error, which say what really happened ("Connection refused"),
/// unlike reqwest's outer message ("error sending request for url").
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut messages: Vec<String> = Vec::new();
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        messages.push(e.to_string());
        current = e.source();
    }
    // Keep the last two levels at most: "tcp connect error: Connection refused (os error 111)".
    let keep = messages.len().min(2);
    let tail = &messages[messages.len() - keep..];
    let mut out: Vec<&str> = Vec::new();
    for m in tail {
        if !out.iter().any(|o| o.contains(m.as_str()) || m.contains(o)) {
            out.push(m);
        } else if let Some(last) = out.last_mut() {
            if m.len() > last.len() {
                *last = m;
            }
        }
    }
    if out.is_empty() {
        err.to_string()
    } else {
        out.join(": ")
    }
}

pub(crate) fn unreachable(endpoints: Vec<String>, failures: &[(String, String)]) -> ClientError {
    let detail = match failures {
        [] => "no endpoint answered".to_owned(),
        [(_, only), rest @ ..] if rest.iter().all(|(_, r)| r == only) => only.clone(),
        many => many
            .iter()
            .map(|(addr, reason)| format!("{addr}: {reason}"))
            .collect::<Vec<_>>()
            .join("; "),
    };
    ClientError::Unreachable { endpoints, detail }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::types::{NodeView, PoolUsage, ROLE_ADMIN_ELIGIBLE};
    use fake::{FakeNode, Reply};
    use std::sync::Arc;

    fn node(name: &str, leader: bool) -> NodeView {
        NodeView {
            name: name.into(),
            id: 1,
            address: "127.0.0.1:7000".into(),
            role: ROLE_ADMIN_ELIGIBLE.into(),
            voter: true,
            alive: true,
            leader,
            term: 4,
            generation: 9,
            version: "0.1.0".into(),
            cores: 4,
            memory_total: 8 << 30,
            memory_used: 2 << 30,
            cpu_milli: 0,
            storage: vec![PoolUsage {
                name: "local".into(),
                total: 10,
                used: 1,
            }],
            servers: 0,
        }
    }

    fn leader_handler() -> fake::Handler {
        Arc::new(
            |req: &fake::Request| match (req.method.as_str(), req.path.as_str()) {
                ("GET", "/api/v1/nodes") => Reply::json(200, &vec![node("n1", true)]),
                ("POST", "/api/v1/nodes/tokens") => {
                    let body: TokenRequest = serde_json::from_slice(&req.body).unwrap();
                    Reply::json(
                        200,
                        &TokenResponse {
                            token: format!("tok-{}", body.ttl_secs),
                            expires_at: 100 + body.ttl_secs,
                        },
                    )
                }
                ("DELETE", "/api/v1/nodes/a%20b") => Reply::json(200, &node("a b", false)),
                ("POST", "/api/v1/nodes/promote") => Reply::json(
                    409,
                    &ApiError::new(
                        "even_voters",
                        "that would leave 2 voters; pass --allow-even",
                    ),
                ),
                _ => Reply::json(404, &ApiError::new("not_found", "no such route")),
            },
        )
    }

    fn follower_handler(leader: String) -> fake::Handler {
        Arc::new(move |req: &fake::Request| {
            let mut reply = Reply::json(
                307,
                &ApiError {
                    code: ApiError::NOT_LEADER.into(),
                    message: "ask the leader".into(),
                    leader: Some(leader.clone()),
                },
            );
            reply
                .headers
                .push(("Location".into(), format!("https://{leader}{}", req.path)));
            reply
        })
    }

    fn no_leader_handler() -> fake::Handler {
        Arc::new(|_: &fake::Request| {
            Reply::json(
                503,
                &ApiError::new(ApiError::NO_LEADER, "no leader is known"),
            )
        })
    }

    fn client(pki: &fake::Pki, endpoints: Vec<String>) -> ApiClient {
        ApiClient::new(&pki.credential(endpoints)).unwrap()
    }

    /// An address nobody listens on.
    fn dead_addr() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        addr
    }

    #[tokio::test]
    async fn talks_to_the_leader_directly() {
        let pki = fake::Pki::new();
        let leader = FakeNode::start(&pki, leader_handler());
        let c = client(&pki, vec![leader.addr()]);
        let nodes = c.nodes().await.unwrap();
        assert_eq!(nodes, vec![node("n1", true)]);
        let tok = c.create_token(3600).await.unwrap();
        assert_eq!(tok.token, "tok-3600");
        assert_eq!(tok.expires_at, 3700);
        let removed = c.remove_node("a b").await.unwrap();
        assert_eq!(removed.name, "a b");
        assert_eq!(c.current_endpoint(), leader.addr());
    }

    #[tokio::test]
    async fn follows_a_follower_to_the_leader() {
        let pki = fake::Pki::new();
        let leader = FakeNode::start(&pki, leader_handler());
        let follower = FakeNode::start(&pki, follower_handler(leader.addr()));
        let c = client(&pki, vec![follower.addr()]);
        assert_eq!(c.nodes().await.unwrap().len(), 1);
        assert_eq!(c.current_endpoint(), leader.addr());
        assert_eq!(follower.hits(), 1);
        // The next call goes straight to the leader.
        c.nodes().await.unwrap();
        assert_eq!(follower.hits(), 1);
        assert_eq!(leader.hits(), 2);
    }

    #[tokio::test]
    async fn skips_an_unreachable_endpoint() {
        let pki = fake::Pki::new();
        let leader = FakeNode::start(&pki, leader_handler());
        let c = client(&pki, vec![dead_addr(), leader.addr()]);
        assert_eq!(c.nodes().await.unwrap().len(), 1);
        assert_eq!(c.current_endpoint(), leader.addr());
    }

    #[tokio::test]
    async fn says_which_endpoints_it_could_not_reach() {
        let pki = fake::Pki::new();
        let (a, b) = (dead_addr(), dead_addr());
        let c = client(&pki, vec![a.clone(), b.clone()]);
        let err = c.nodes().await.unwrap_err();
        assert!(err.is_unreachable(), "{err:?}");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("cannot reach the cluster at {a}, {b}: ")),
            "{text}"
        );
        assert!(text.to_lowercase().contains("refused"), "{text}");
    }

    #[tokio::test]
    async fn gives_up_after_three_hops() {
        let pki = fake::Pki::new();
        // Two followers pointing at each other.
        let slot = Arc::new(Mutex::new(String::new()));
        let s = slot.clone();
        let b = FakeNode::start(
            &pki,
            Arc::new(move |req: &fake::Request| {
                let target = s.lock().unwrap().clone();
                follower_handler(target)(req)
            }),
        );
        let a = FakeNode::start(&pki, follower_handler(b.addr()));
        *slot.lock().unwrap() = a.addr();
        let c = client(&pki, vec![a.addr()]);
        let err = c.cluster().await.unwrap_err();
        assert!(
            matches!(err, ClientError::LeaderLoop { hops: 3, .. }),
            "{err:?}"
        );
        assert_eq!(a.hits() + b.hits(), 4);
    }

    #[tokio::test]
    async fn api_errors_carry_code_and_message() {
        let pki = fake::Pki::new();
        let leader = FakeNode::start(&pki, leader_handler());
        let c = client(&pki, vec![leader.addr()]);
        let err = c.promote(vec!["n2".into()], false).await.unwrap_err();
        assert_eq!(err.api_code(), Some("even_voters"));
        assert_eq!(
            err.to_string(),
            "that would leave 2 voters; pass --allow-even"
        );
        assert!(!err.is_unreachable());
    }

    #[tokio::test]
    async fn no_leader_tries_the_other_endpoints_then_reports_it() {
        let pki = fake::Pki::new();
        let lost = FakeNode::start(&pki, no_leader_handler());
        let leader = FakeNode::start(&pki, leader_handler());
        let c = client(&pki, vec![lost.addr(), leader.addr()]);
        assert_eq!(c.nodes().await.unwrap().len(), 1);

        let c = client(&pki, vec![lost.addr()]).with_leader_wait(Duration::ZERO);
        let before = lost.hits();
        let err = c.nodes().await.unwrap_err();
        assert_eq!(err.api_code(), Some(ApiError::NO_LEADER));
        assert_eq!(lost.hits(), before + 1, "no wait: asked once");
    }

    #[tokio::test]
    async fn no_leader_is_asked_again_until_one_is_elected() {
        let pki = fake::Pki::new();
        let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (during, after) = (no_leader_handler(), leader_handler());
        let n = asked.clone();
        let electing = FakeNode::start(
            &pki,
            Arc::new(move |req: &fake::Request| {
                if n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 {
                    during(req)
                } else {
                    after(req)
                }
            }),
        );
        let c = client(&pki, vec![electing.addr()]);
        assert_eq!(c.nodes().await.unwrap().len(), 1);
        assert_eq!(electing.hits(), 3);

        // An answer that the write may have happened is not sent again.
        let unsure = FakeNode::start(
            &pki,
            Arc::new(|_: &fake::Request| {
                Reply::json(
                    503,
                    &ApiError::new(ApiError::OUTCOME_UNKNOWN, "not confirmed"),
                )
            }),
        );
        let c = client(&pki, vec![unsure.addr()]);
        let err = c.nodes().await.unwrap_err();
        assert_eq!(err.api_code(), Some(ApiError::OUTCOME_UNKNOWN));
        assert_eq!(unsure.hits(), 1);
    }

    #[tokio::test]
    async fn refuses_a_server_outside_the_cluster_ca() {
        let pki = fake::Pki::new();
        let other = fake::Pki::new();
        let stranger = FakeNode::start(&other, leader_handler());
        let c = client(&pki, vec![stranger.addr()]);
        let err = c.nodes().await.unwrap_err();
        assert!(err.is_unreachable(), "{err:?}");
        assert_eq!(stranger.hits(), 0);
    }

    #[test]
    fn token_clients_need_endpoints_a_ca_and_a_header_safe_token() {
        let pki = fake::Pki::new();
        let ca = pki.credential(vec![]).ca_pem;
        let token = "skt_0011223344556677_".to_string() + &"ab".repeat(32);
        let c = ApiClient::with_token(vec!["127.0.0.1:1".into()], &ca, &token).unwrap();
        assert_eq!(c.endpoints(), ["127.0.0.1:1"]);
        assert!(matches!(
            ApiClient::with_token(vec![], &ca, &token),
            Err(ClientError::NoEndpoints)
        ));
        assert!(ApiClient::with_token(vec!["127.0.0.1:1".into()], "not a CA", &token).is_err());
        assert!(matches!(
            ApiClient::with_token(vec!["127.0.0.1:1".into()], &ca, "a\nb"),
            Err(ClientError::Setup(_))
        ));
    }

    #[test]
    fn location_and_path_helpers() {
        assert_eq!(
            address_of_url("https://10.0.0.2:7443/api/v1/nodes").as_deref(),
            Some("10.0.0.2:7443")
        );
        assert_eq!(
            address_of_url("https://[::1]:7443/x").as_deref(),
            Some("[::1]:7443")
        );
        assert_eq!(address_of_url("not a url"), None);
        assert_eq!(crate::api::seg("node-1.a_b~"), "node-1.a_b~");
        assert_eq!(crate::api::seg("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn non_json_errors_get_a_readable_message() {
        let e = parse_api_error(StatusCode::BAD_GATEWAY, b"upstream down");
        assert_eq!(e.code, "http_502");
        assert_eq!(
            e.message,
            "the server answered 502 Bad Gateway: upstream down"
        );
    }

    use crate::api::fake_node as fake;
}
