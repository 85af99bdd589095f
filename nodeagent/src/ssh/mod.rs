//! The cockpit over SSH: while this node leads, `ssh -p PORT alice@leader` opens alice's cockpit.
//!
//! A [`LeaderService`]: it listens only while this node runs leader services and, when
//! leadership is lost, ends every session with "leadership moved; reconnect to the new leader".
//! Design notes: docs/design/ssh-cockpit.md. In short:
//!
//! - **Authentication** is by public key only: a key is accepted iff it is listed in the
//!   `ssh_keys` of the enabled user whose name is the SSH user name, in this node's replica of the
//!   desired state. Everything else (passwords, keyboard-interactive, other keys) is refused.
//! - **Permissions**: the session's cockpit calls this node's own API with a short-lived bearer
//!   token minted for the user (created by `ssh:USER`, revoked when the session ends), so every
//!   permission check stays in the API.
//! - **Terminal**: [`terminal::SshBackend`] encodes frames for the size the client's PTY request
//!   and window changes give; [`keys::KeyDecoder`] decodes the client's bytes. Output goes through
//!   a bounded [`terminal::Outbox`].
//! - **Host key**: `DATA_DIR/ssh_host_ed25519_key` if present, else derived from the cluster CA
//!   (so every leader presents the same key) and written there.

pub mod keys;
pub mod terminal;

/// The SSH library this module is built on, at the exact version pinned: integration tests drive
/// the server with its client.
pub use russh;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use ratatui::layout::Rect;
use ratatui::{Terminal, TerminalOptions, Viewport};
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::LineEnding;
use russh::keys::{HashAlg, PrivateKey, PublicKey};
use russh::server::{Auth, ChannelOpenHandle, Msg, Session};
use russh::{
    Channel, ChannelId, ChannelMsg, ChannelOpenFailure, ChannelReadHalf, ChannelWriteHalf,
    MethodKind, MethodSet, SshId,
};
use sha2::{Digest, Sha256};
use skiff_cluster::api::client::ApiClient;
use skiff_cluster::api::users::BearerToken;
use skiff_cluster::config::SshSettings;
use skiff_cluster::state::users::ApiTokenRecord;
use skiff_cluster::state::{ClusterState, Command, CommandOutcome, UserCommand};
use skiff_tui::cockpit::app::App;
use skiff_tui::cockpit::{run_session, Input};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, error, info, warn};

use crate::agent::Node;
use crate::supervisor::LeaderService;
use keys::{KeyDecoder, ESC_TIMEOUT};
use terminal::{clamp_size, Next, Outbox, OutputStats, SharedSize, SshBackend, OUTPUT_LIMIT};

/// The host key file in the data dir (OpenSSH format, 0600); `.pub` beside it.
pub const HOST_KEY_FILE: &str = "ssh_host_ed25519_key";
/// Lifetime of a session's API token: it outlives a leader that dies without revoking it by at
/// most this much. A session ends when its token would expire.
pub const TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);
/// Label of the API tokens sessions use; tokens with this label that no open session holds are
/// revoked when the same user opens a new session.
pub const TOKEN_LABEL: &str = "ssh cockpit session";
/// Exit status when the session ended for a reason worth reconnecting for (leadership moved,
/// time limit): EX_TEMPFAIL.
pub const EXIT_RECONNECT: u32 = 75;
/// What the client reads when this node stops leading.
pub const LEADERSHIP_MOVED: &str = "leadership moved; reconnect to the new leader";

/// Time allowed for the SSH version exchange.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed from connecting to opening a session channel (authentication included).
const LOGIN_GRACE: Duration = Duration::from_secs(30);
/// Time allowed from opening the channel to asking for a shell.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for the last words to a client (teardown, message, exit status, close).
const GOODBYE_TIMEOUT: Duration = Duration::from_millis(700);
/// How long `stop` waits for sessions to say goodbye.
const STOP_WAIT: Duration = Duration::from_millis(1500);
/// How often an open session checks that its user and key are still allowed.
const REVALIDATE_EVERY: Duration = Duration::from_secs(5);
/// Keys and resizes waiting for the cockpit (the client is slowed down beyond this).
const INPUT_QUEUE: usize = 64;
/// Sessions whose statistics are kept (the open ones and the latest closed ones).
const SESSIONS_KEPT: usize = 32;
/// Refused logins logged at info per minute; the rest are counted.
const REFUSALS_LOGGED_PER_MINUTE: u64 = 20;

/// One session, as [`SshService::sessions`] reports it.
#[derive(Clone, Debug)]
pub struct SessionStats {
    pub user: String,
    pub open: bool,
    pub output: OutputStats,
}

/// The SSH cockpit of one admin-eligible node (a leader service).
pub struct SshService {
    settings: SshSettings,
    node: OnceLock<Weak<Node>>,
    running: Mutex<Option<Running>>,
    shared: Arc<Shared>,
}

/// A session in the statistics: its user, its outbox, whether it is open.
type SessionEntry = (String, Arc<Outbox>, Arc<AtomicBool>);

struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// What the listener, its connections and the service share.
#[derive(Default)]
struct Shared {
    /// Token ids of the sessions open now.
    tokens: Mutex<HashSet<String>>,
    sessions: Mutex<Vec<SessionEntry>>,
    local_addr: Mutex<Option<SocketAddr>>,
    refusals: RefusalLog,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SshService {
    pub fn new(settings: SshSettings) -> Arc<Self> {
        Arc::new(SshService {
            settings,
            node: OnceLock::new(),
            running: Mutex::new(None),
            shared: Arc::new(Shared::default()),
        })
    }

    /// Gives the service its node (once, before the supervisor starts it).
    pub fn attach(&self, node: &Arc<Node>) {
        let _ = self.node.set(Arc::downgrade(node));
    }

    /// The address the SSH cockpit listens on now (`None` when it does not listen).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        *lock(&self.shared.local_addr)
    }

    /// The open sessions and the latest closed ones, oldest first.
    pub fn sessions(&self) -> Vec<SessionStats> {
        lock(&self.shared.sessions)
            .iter()
            .map(|(user, outbox, open)| SessionStats {
                user: user.clone(),
                open: open.load(Ordering::Relaxed),
                output: outbox.stats(),
            })
            .collect()
    }
}

#[async_trait::async_trait]
impl LeaderService for SshService {
    fn name(&self) -> &'static str {
        "ssh-cockpit"
    }

    async fn start(&self, term: u64) {
        let Some(listen) = self.settings.listen else {
            return;
        };
        let Some(node) = self.node.get().cloned() else {
            return;
        };
        let (stop, stopped) = watch::channel(false);
        let limit = self.settings.connection_limit();
        let task = tokio::spawn(serve(
            self.shared.clone(),
            node,
            listen,
            limit,
            term,
            stopped,
        ));
        let old = lock(&self.running).replace(Running { stop, task });
        if let Some(old) = old {
            old.stop.send_replace(true);
        }
    }

    async fn stop(&self) {
        let running = lock(&self.running).take();
        if let Some(r) = running {
            r.stop.send_replace(true);
            let _ = tokio::time::timeout(STOP_WAIT, r.task).await;
        }
        *lock(&self.shared.local_addr) = None;
    }
}

/// Returns once `stop` says stop (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// What a connection needs from the service.
struct Ctx {
    shared: Arc<Shared>,
    node: Weak<Node>,
    config: Arc<russh::server::Config>,
    ca_pem: String,
}

/// Listens until `stop`, then lets the sessions say goodbye.
async fn serve(
    shared: Arc<Shared>,
    node: Weak<Node>,
    listen: SocketAddr,
    limit: usize,
    term: u64,
    mut stop: watch::Receiver<bool>,
) {
    // A brand-new cluster commits its CA right after its first leader starts: wait for it.
    let (config, ca_pem) = loop {
        if *stop.borrow() {
            return;
        }
        let Some(n) = node.upgrade() else { return };
        match prepare(&n) {
            Ok(Some(ready)) => break ready,
            Ok(None) => {}
            Err(e) => {
                error!(error = %e, "no SSH host key: the SSH cockpit stays off");
                return;
            }
        }
        drop(n);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = stopped(&mut stop) => return,
        }
    };
    let listener = match TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            error!(addr = %listen, error = %e, "cannot listen for the SSH cockpit");
            return;
        }
    };
    let addr = listener.local_addr().unwrap_or(listen);
    *lock(&shared.local_addr) = Some(addr);
    info!(%addr, term, "SSH cockpit listening");
    let ctx = Arc::new(Ctx {
        shared: shared.clone(),
        node,
        config,
        ca_pem,
    });
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = stopped(&mut stop) => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((tcp, peer)) => {
                while connections.try_join_next().is_some() {}
                if connections.len() >= limit {
                    if ctx.shared.refusals.may_log() {
                        info!(%peer, limit, "SSH connection refused: too many connections");
                    }
                    continue;
                }
                let _ = tcp.set_nodelay(true);
                connections.spawn(serve_connection(ctx.clone(), tcp, peer, stop.clone()));
            }
            Err(e) => {
                debug!(error = %e, "SSH accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    *lock(&shared.local_addr) = None;
    info!(%addr, "SSH cockpit stopped listening");
    // Every session saw the same signal and is saying goodbye; wait a little, then cut.
    let _ = tokio::time::timeout(GOODBYE_TIMEOUT * 2, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
}

/// The russh configuration and the CA certificate, once the state has the CA (`Ok(None)`
/// before); `Err` when there is no usable host key.
fn prepare(node: &Node) -> Result<Option<(Arc<russh::server::Config>, String)>, String> {
    let Some(replica) = node.replica.as_ref() else {
        return Ok(None);
    };
    let Some((ca_pem, seed)) = replica.state.with(|s| {
        s.ca.as_ref().map(|ca| {
            (
                ca.cert_pem.clone(),
                host_key_seed(&node.cluster_id, &ca.key_pem),
            )
        })
    }) else {
        return Ok(None);
    };
    let key = host_key(&node.data_dir, &seed)?;
    let config = russh::server::Config {
        server_id: SshId::Standard(concat!("SSH-2.0-skiff_", env!("CARGO_PKG_VERSION")).into()),
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        auth_rejection_time: Duration::from_millis(500),
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![key],
        max_auth_attempts: 6,
        // A cockpit left open is fine; a vanished client is found by keepalives.
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 3,
        nodelay: true,
        ..Default::default()
    };
    Ok(Some((Arc::new(config), ca_pem)))
}

/// The seed of the derived host key: the same on every admin-eligible node of the cluster, and
/// known only to holders of the CA key.
fn host_key_seed(cluster_id: &str, ca_key_pem: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"skiff ssh host key v1\0");
    h.update(cluster_id.as_bytes());
    h.update(b"\0");
    h.update(ca_key_pem.as_bytes());
    h.finalize().into()
}

/// The host key: the file in the data dir if there is one (an operator may put their own there,
/// on every admin-eligible node), else the key derived from `seed`, written there (0600).
pub fn host_key(data_dir: &Path, seed: &[u8; 32]) -> Result<PrivateKey, String> {
    let path = data_dir.join(HOST_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                if let Ok(meta) = std::fs::metadata(&path) {
                    if meta.permissions().mode() & 0o077 != 0 {
                        warn!(path = %path.display(), "the SSH host key is readable by others: chmod 600 it");
                    }
                }
            }
            PrivateKey::from_openssh(text.as_bytes())
                .map_err(|e| format!("{}: {e}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = PrivateKey::from(Ed25519Keypair::from_seed(seed));
            key.set_comment("skiff cluster host key");
            let text = key
                .to_openssh(LineEnding::LF)
                .map_err(|e| format!("cannot encode the SSH host key: {e}"))?;
            skiff_cluster::identity::write_file(&path, &text, true).map_err(|e| e.to_string())?;
            if let Ok(public) = key.public_key().to_openssh() {
                let _ = skiff_cluster::identity::write_file(
                    &path.with_extension("pub"),
                    &format!("{public}\n"),
                    false,
                );
            }
            info!(
                fingerprint = %key.public_key().fingerprint(HashAlg::Sha256),
                "SSH host key written"
            );
            Ok(key)
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Why `user` may not log in with `key`, per `state` (`Ok` when they may).
pub fn key_verdict(state: &ClusterState, user: &str, key: &PublicKey) -> Result<(), &'static str> {
    let record = state.users.get(user).ok_or("no such user")?;
    if record.disabled {
        return Err("the user is disabled");
    }
    let wanted = key.key_data();
    let listed = record.ssh_keys.iter().any(|line| {
        PublicKey::from_openssh(line)
            .map(|k| k.key_data() == wanted)
            .unwrap_or(false)
    });
    if listed {
        Ok(())
    } else {
        Err("the key is not registered for this user")
    }
}

impl Ctx {
    /// [`key_verdict`] on this node's replica (`Err` when the node is gone).
    fn verdict(&self, user: &str, key: &PublicKey) -> Result<(), &'static str> {
        let node = self.node.upgrade().ok_or("the node is shutting down")?;
        let replica = node.replica.as_ref().ok_or("this node has no state")?;
        replica.state.with(|s| key_verdict(s, user, key))
    }

    /// Makes an API token for `user`'s session, after revoking the user's session tokens that no
    /// open session holds (left behind by a leader that died).
    async fn mint_token(&self, node: &Node, user: &str) -> Result<BearerToken, String> {
        let actor = format!("ssh:{user}");
        let stale: Vec<String> = {
            let open = lock(&self.shared.tokens).clone();
            node.replica
                .as_ref()
                .map(|r| {
                    r.state.with(|s| {
                        s.users
                            .get(user)
                            .map(|u| {
                                u.api_tokens
                                    .iter()
                                    .filter(|t| t.label == TOKEN_LABEL && !open.contains(&t.id))
                                    .map(|t| t.id.clone())
                                    .collect()
                            })
                            .unwrap_or_default()
                    })
                })
                .unwrap_or_default()
        };
        for id in stale {
            let cmd = Command::User(UserCommand::RevokeToken {
                name: user.to_string(),
                id,
            });
            let _ = node.propose(&actor, cmd).await;
        }
        let token = BearerToken::generate();
        lock(&self.shared.tokens).insert(token.id.clone());
        let now = skiff_cluster::unix_now();
        let record = ApiTokenRecord {
            id: token.id.clone(),
            secret_sha256: token.secret_sha256(),
            label: TOKEN_LABEL.to_string(),
            created_at: now,
            expires_at: Some(now + TOKEN_TTL.as_secs()),
        };
        let cmd = Command::User(UserCommand::CreateToken {
            name: user.to_string(),
            token: record,
        });
        let result = match node.propose(&actor, cmd).await {
            Ok(CommandOutcome::Done) => Ok(token),
            Ok(CommandOutcome::Refused { message, .. }) => Err(message),
            Ok(other) => Err(format!("unexpected outcome {other:?}")),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = &result {
            warn!(%user, error = %e, "cannot make the SSH session's API token");
        }
        result
    }
}

/// Removes a session's token from the open set and revokes it, however the session ends.
struct TokenGuard {
    shared: Arc<Shared>,
    node: Weak<Node>,
    user: String,
    id: String,
}

impl Drop for TokenGuard {
    fn drop(&mut self) {
        lock(&self.shared.tokens).remove(&self.id);
        let node = self.node.clone();
        let actor = format!("ssh:{}", self.user);
        let cmd = Command::User(UserCommand::RevokeToken {
            name: self.user.clone(),
            id: self.id.clone(),
        });
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Some(node) = node.upgrade() {
                    // Not the leader any more: the token expires on its own, or the next leader
                    // revokes it when the user comes back.
                    let _ = node.propose(&actor, cmd).await;
                }
            });
        }
    }
}

/// Marks a session closed in the statistics when dropped.
struct OpenFlag(Arc<AtomicBool>);

impl Drop for OpenFlag {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// Logs refused logins at info, at most [`REFUSALS_LOGGED_PER_MINUTE`] a minute.
#[derive(Default)]
struct RefusalLog {
    minute: AtomicU64,
    count: AtomicU64,
}

impl RefusalLog {
    fn may_log(&self) -> bool {
        let now = skiff_cluster::unix_now() / 60;
        if self.minute.swap(now, Ordering::Relaxed) != now {
            self.count.store(0, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed) < REFUSALS_LOGGED_PER_MINUTE
    }
}

/// A session channel opened by an authenticated user.
struct Opened {
    channel: Channel<Msg>,
    user: String,
    key: PublicKey,
}

/// The russh handler of one connection: authentication and channel requests. The session itself
/// runs in [`run_channel`], fed by the channel's messages.
struct Connection {
    ctx: Arc<Ctx>,
    peer: SocketAddr,
    user: Option<(String, PublicKey)>,
    opened: Option<mpsc::Sender<Opened>>,
}

/// A user name as logs show it: at most 64 characters.
fn shown(user: &str) -> String {
    user.chars().take(64).collect()
}

impl Connection {
    fn check(&self, user: &str, key: &PublicKey) -> bool {
        match self.ctx.verdict(user, key) {
            Ok(()) => true,
            Err(reason) => {
                if self.ctx.shared.refusals.may_log() {
                    info!(
                        user = ?shown(user),
                        peer = %self.peer,
                        key = %key.fingerprint(HashAlg::Sha256),
                        reason,
                        "SSH key refused"
                    );
                }
                false
            }
        }
    }
}

fn reject() -> Auth {
    Auth::Reject {
        proceed_with_methods: None,
        partial_success: false,
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        key: &PublicKey,
    ) -> Result<Auth, Self::Error> {
        Ok(if self.check(user, key) {
            Auth::Accept
        } else {
            reject()
        })
    }

    async fn auth_publickey(&mut self, user: &str, key: &PublicKey) -> Result<Auth, Self::Error> {
        if !self.check(user, key) {
            return Ok(reject());
        }
        info!(
            user = ?shown(user),
            peer = %self.peer,
            key = %key.fingerprint(HashAlg::Sha256),
            "SSH cockpit login"
        );
        self.user = Some((user.to_string(), key.clone()));
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // One cockpit per connection.
        match (self.user.clone(), self.opened.take()) {
            (Some((user, key)), Some(tx)) => {
                reply.accept().await;
                let _ = tx.try_send(Opened { channel, user, key });
            }
            _ => {
                reply
                    .reject(ChannelOpenFailure::AdministrativelyProhibited)
                    .await
            }
        }
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        _value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }
}

/// Sends the connection's SSH disconnect when dropped (the russh session runs on its own task,
/// which would otherwise outlive an aborted connection).
struct DisconnectOnDrop(russh::server::Handle);

impl Drop for DisconnectOnDrop {
    fn drop(&mut self) {
        let handle = self.0.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = handle
                    .disconnect(
                        russh::Disconnect::ByApplication,
                        "the SSH cockpit closed the connection".into(),
                        String::new(),
                    )
                    .await;
            });
        }
    }
}

/// One TCP connection: the SSH handshake, authentication, and at most one cockpit session.
async fn serve_connection(
    ctx: Arc<Ctx>,
    tcp: TcpStream,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    let (opened_tx, mut opened_rx) = mpsc::channel(1);
    let handler = Connection {
        ctx: ctx.clone(),
        peer,
        user: None,
        opened: Some(opened_tx),
    };
    let mut session = match tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        russh::server::run_stream(ctx.config.clone(), tcp, handler),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            debug!(%peer, error = %e, "SSH handshake failed");
            return;
        }
        Err(_) => return,
    };
    let _disconnect = DisconnectOnDrop(session.handle());
    let opened = tokio::select! {
        r = &mut session => {
            if let Err(e) = r {
                debug!(%peer, error = %e, "SSH connection ended before a session");
            }
            return;
        }
        _ = stopped(&mut stop) => return,
        _ = tokio::time::sleep(LOGIN_GRACE) => {
            debug!(%peer, "SSH login took too long");
            return;
        }
        o = opened_rx.recv() => match o {
            Some(o) => o,
            None => return,
        },
    };
    tokio::select! {
        _ = &mut session => return,
        _ = run_channel(&ctx, opened, &mut stop) => {}
    }
    // The client closes the connection once its channel is closed; do not wait long for it.
    let _ = tokio::time::timeout(GOODBYE_TIMEOUT, &mut session).await;
}

/// Why a cockpit session ended: the message the client reads and the exit status it gets.
enum End {
    Quit,
    ClientGone,
    LeadershipMoved,
    TimeLimit,
    Revoked(&'static str),
    Failed(String),
}

impl End {
    fn message(&self) -> String {
        match self {
            End::Quit | End::ClientGone => String::new(),
            End::LeadershipMoved => LEADERSHIP_MOVED.into(),
            End::TimeLimit => "the session reached its time limit; reconnect".into(),
            End::Revoked(why) => format!("access withdrawn: {why}"),
            End::Failed(e) => format!("the cockpit stopped: {e}"),
        }
    }
    fn status(&self) -> u32 {
        match self {
            End::Quit | End::ClientGone => 0,
            End::LeadershipMoved | End::TimeLimit => EXIT_RECONNECT,
            End::Revoked(_) | End::Failed(_) => 1,
        }
    }
}

/// The last words on a channel: `stdout` bytes, a line on stderr, the exit status, EOF, close.
async fn finish(write: &ChannelWriteHalf<Msg>, stdout: &[u8], message: &str, status: u32) {
    let _ = tokio::time::timeout(GOODBYE_TIMEOUT, async {
        if !stdout.is_empty() {
            let _ = write.data_bytes(stdout.to_vec()).await;
        }
        if !message.is_empty() {
            let _ = write
                .extended_data_bytes(1, format!("{message}\r\n").into_bytes())
                .await;
        }
        let _ = write.exit_status(status).await;
        let _ = write.eof().await;
        let _ = write.close().await;
    })
    .await;
}

/// Runs one cockpit session on an open channel until it ends.
async fn run_channel(ctx: &Arc<Ctx>, opened: Opened, stop: &mut watch::Receiver<bool>) {
    let Opened { channel, user, key } = opened;
    let (mut read, write) = channel.split();

    // The client's requests up to the shell: a PTY (its size), then the shell.
    let mut size: Option<(u16, u16)> = None;
    let deadline = Instant::now() + SETUP_TIMEOUT;
    loop {
        let msg = tokio::select! {
            m = tokio::time::timeout_at(deadline.into(), read.wait()) => m,
            _ = stopped(stop) => {
                finish(&write, b"", LEADERSHIP_MOVED, EXIT_RECONNECT).await;
                return;
            }
        };
        match msg {
            Ok(Some(ChannelMsg::RequestPty {
                col_width,
                row_height,
                ..
            })) => size = Some(clamp_size(col_width, row_height)),
            Ok(Some(ChannelMsg::WindowChange {
                col_width,
                row_height,
                ..
            })) if size.is_some() => size = Some(clamp_size(col_width, row_height)),
            Ok(Some(ChannelMsg::RequestShell { .. })) => break,
            Ok(Some(ChannelMsg::Exec { .. } | ChannelMsg::RequestSubsystem { .. })) => {
                let m = "this server serves only the Skiff cockpit: connect without a command";
                finish(&write, b"", m, 2).await;
                return;
            }
            Ok(Some(ChannelMsg::Eof | ChannelMsg::Close)) | Ok(None) => return,
            Ok(Some(_)) => {}
            Err(_) => {
                finish(&write, b"", "no shell was requested in time", 2).await;
                return;
            }
        }
    }
    let Some((cols, rows)) = size else {
        let m = "the Skiff cockpit needs a terminal: connect with ssh -t";
        finish(&write, b"", m, 1).await;
        return;
    };
    let Some(node) = ctx.node.upgrade() else {
        return;
    };
    let token = match ctx.mint_token(&node, &user).await {
        Ok(t) => t,
        Err(e) => {
            finish(&write, b"", &format!("cannot open the cockpit: {e}"), 1).await;
            return;
        }
    };
    let _revoke = TokenGuard {
        shared: ctx.shared.clone(),
        node: ctx.node.clone(),
        user: user.clone(),
        id: token.id.clone(),
    };
    let api = node.config.advertise_addr().to_string();
    let cluster_id = node.cluster_id.clone();
    drop(node);
    let client = match ApiClient::with_token(vec![api.clone()], &ctx.ca_pem, &token.to_string()) {
        // The cockpit shows "no leader" as it happens and polls again by itself.
        Ok(c) => Arc::new(c.with_leader_wait(Duration::ZERO)),
        Err(e) => {
            finish(&write, b"", &format!("cannot open the cockpit: {e}"), 1).await;
            return;
        }
    };
    let app = App::new(cluster_id, user.clone(), api);

    let outbox = Outbox::new(OUTPUT_LIMIT);
    let open = Arc::new(AtomicBool::new(true));
    {
        let mut sessions = lock(&ctx.shared.sessions);
        if sessions.len() >= SESSIONS_KEPT {
            if let Some(i) = sessions
                .iter()
                .position(|(_, _, o)| !o.load(Ordering::Relaxed))
            {
                sessions.remove(i);
            }
        }
        sessions.push((user.clone(), outbox.clone(), open.clone()));
    }
    let _open = OpenFlag(open);
    outbox.push(terminal::SETUP.to_vec());
    let shared_size = SharedSize::new(cols, rows);
    let backend = SshBackend::new(outbox.clone(), shared_size.clone());
    let options = TerminalOptions {
        viewport: Viewport::Fixed(Rect::new(0, 0, cols, rows)),
    };
    let mut terminal = match Terminal::with_options(backend, options) {
        Ok(t) => t,
        Err(e) => {
            finish(
                &write,
                terminal::TEARDOWN,
                &format!("cannot open the cockpit: {e}"),
                1,
            )
            .await;
            return;
        }
    };
    let (inputs, input_rx) = mpsc::channel(INPUT_QUEUE);
    let repaint = inputs.downgrade();
    let end = tokio::select! {
        r = run_session(&mut terminal, client, app, input_rx) => match r {
            Ok(()) => End::Quit,
            Err(e) => End::Failed(e.to_string()),
        },
        _ = read_input(&mut read, inputs, shared_size.clone()) => End::ClientGone,
        _ = write_output(&write, &outbox, repaint, shared_size.clone()) => End::ClientGone,
        _ = stopped(stop) => End::LeadershipMoved,
        _ = tokio::time::sleep(TOKEN_TTL - Duration::from_secs(60)) => End::TimeLimit,
        why = revalidate(ctx, &user, &key) => End::Revoked(why),
    };
    drop(terminal);
    outbox.close();
    if !matches!(end, End::Quit) {
        info!(user = ?shown(&user), reason = %end.message(), "SSH cockpit session ended");
    }
    finish(&write, terminal::TEARDOWN, &end.message(), end.status()).await;
}

/// Decodes the client's bytes into inputs for the cockpit, and follows its window size. When the
/// client sends EOF, closes `inputs` (the cockpit then ends) and waits forever.
async fn read_input(
    read: &mut ChannelReadHalf,
    inputs: mpsc::Sender<Input>,
    size: Arc<SharedSize>,
) {
    let mut decoder = KeyDecoder::new();
    let mut keys = Vec::new();
    'read: loop {
        let msg = if decoder.is_pending() {
            match tokio::time::timeout(ESC_TIMEOUT, read.wait()).await {
                Ok(m) => m,
                Err(_) => {
                    decoder.timeout(&mut keys);
                    for k in keys.drain(..) {
                        if inputs.send(Input::Key(k)).await.is_err() {
                            break 'read;
                        }
                    }
                    continue;
                }
            }
        } else {
            read.wait().await
        };
        match msg {
            Some(ChannelMsg::Data { data }) => decoder.feed(&data, &mut keys),
            Some(ChannelMsg::WindowChange {
                col_width,
                row_height,
                ..
            }) => {
                let (cols, rows) = clamp_size(col_width, row_height);
                size.set(cols, rows);
                if inputs.send(Input::Resize { cols, rows }).await.is_err() {
                    break;
                }
            }
            Some(ChannelMsg::Eof | ChannelMsg::Close) | None => break,
            Some(_) => {}
        }
        for k in keys.drain(..) {
            if inputs.send(Input::Key(k)).await.is_err() {
                break 'read;
            }
        }
    }
    drop(inputs);
    std::future::pending::<()>().await
}

/// Hands the outbox's frames to SSH (which waits for the client's window), and asks for a full
/// repaint after frames were dropped. Returns when the channel is gone.
async fn write_output(
    write: &ChannelWriteHalf<Msg>,
    outbox: &Outbox,
    repaint: mpsc::WeakSender<Input>,
    size: Arc<SharedSize>,
) {
    loop {
        match outbox.next().await {
            Next::Send(bytes) => {
                let n = bytes.len();
                if write.data_bytes(bytes).await.is_err() {
                    return;
                }
                outbox.sent(n);
            }
            Next::Repaint => {
                let Some(tx) = repaint.upgrade() else {
                    return std::future::pending().await;
                };
                let (cols, rows) = size.get();
                debug!("SSH client caught up after dropped frames: full repaint");
                let _ = tx.send(Input::Resize { cols, rows }).await;
            }
            Next::Closed => return std::future::pending().await,
        }
    }
}

/// Returns why, as soon as the user or key is no longer allowed.
async fn revalidate(ctx: &Ctx, user: &str, key: &PublicKey) -> &'static str {
    let mut tick = tokio::time::interval(REVALIDATE_EVERY);
    tick.tick().await;
    loop {
        tick.tick().await;
        match ctx.verdict(user, key) {
            Ok(()) => {}
            Err("the node is shutting down") => {}
            Err(why) => return why,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_cluster::state::{Quotas, UserRecord, UserRole};

    fn key(seed: u8) -> PrivateKey {
        PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]))
    }

    fn state_with(user: &str, keys: &[&PrivateKey], disabled: bool) -> ClusterState {
        let mut s = ClusterState::default();
        let mut u = UserRecord::new(user, UserRole::User, Quotas::default());
        u.disabled = disabled;
        u.ssh_keys = keys
            .iter()
            .map(|k| format!("{} someone@host", k.public_key().to_openssh().unwrap()))
            .collect();
        s.users.insert(user.to_string(), u);
        s
    }

    #[test]
    fn a_key_opens_only_its_enabled_users_cockpit() {
        let (a, b) = (key(1), key(2));
        let s = state_with("alice", &[&b, &a], false);
        assert_eq!(key_verdict(&s, "alice", a.public_key()), Ok(()));
        assert_eq!(key_verdict(&s, "alice", b.public_key()), Ok(()));
        assert!(key_verdict(&s, "alice", key(3).public_key()).is_err());
        assert!(key_verdict(&s, "bob", a.public_key()).is_err());
        assert!(key_verdict(&s, "Alice", a.public_key()).is_err());
        assert!(key_verdict(&s, "", a.public_key()).is_err());
        let s = state_with("alice", &[&a], true);
        assert_eq!(
            key_verdict(&s, "alice", a.public_key()),
            Err("the user is disabled")
        );
    }

    #[test]
    fn the_host_key_is_derived_once_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let seed = host_key_seed("c1", "CA KEY");
        let k1 = host_key(dir.path(), &seed).unwrap();
        let path = dir.path().join(HOST_KEY_FILE);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(path.with_extension("pub").exists());
        // Another node of the same cluster derives the same key.
        let other = tempfile::tempdir().unwrap();
        let k2 = host_key(other.path(), &seed).unwrap();
        assert_eq!(k1.public_key().key_data(), k2.public_key().key_data());
        // Another cluster does not.
        let third = tempfile::tempdir().unwrap();
        let k3 = host_key(third.path(), &host_key_seed("c2", "CA KEY")).unwrap();
        assert_ne!(k1.public_key().key_data(), k3.public_key().key_data());
        // The file wins over the seed (an operator's own key), and garbage is an error.
        let k4 = host_key(dir.path(), &host_key_seed("c2", "x")).unwrap();
        assert_eq!(k1.public_key().key_data(), k4.public_key().key_data());
        std::fs::write(&path, "garbage").unwrap();
        assert!(host_key(dir.path(), &seed).is_err());
    }
}
