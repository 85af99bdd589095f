//! The cockpit over SSH, driven by OpenSSH's real `ssh` client inside tmux: login with a
//! registered key, the cockpit shows the user's view, window changes are followed, `q` ends the
//! session, unknown keys and disabled users are refused, and a change of leader ends sessions
//! with a message. Also measures the bytes written for the first paint and for typical updates.
//!
//! Needs `ssh`, `ssh-keygen` and `tmux` (Debian: openssh-client tmux); without them each test
//! prints that it was skipped and why.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use skiff_cluster::gossip::keys;
use skiff_cluster::state::{Quotas, UserRole};
use skiff_nodeagent::ssh::russh;
use skiff_nodeagent::ssh::terminal::OUTPUT_LIMIT;
use skiff_tests::inprocess::{ClusterSpec, TestCluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The binaries these tests drive; `None` when all are there, else a message naming the missing.
fn missing_tools() -> Option<String> {
    let missing: Vec<&str> = ["ssh", "ssh-keygen", "tmux"]
        .into_iter()
        .filter(|tool| {
            Command::new("sh")
                .arg("-c")
                .arg(format!("command -v {tool}"))
                .output()
                .map(|o| !o.status.success())
                .unwrap_or(true)
        })
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "SKIPPED: {} not installed (apt-get install openssh-client tmux)",
            missing.join(", ")
        )
    })
}

macro_rules! need_tools {
    () => {
        if let Some(why) = missing_tools() {
            eprintln!("{why}");
            println!("{why}");
            return;
        }
    };
}

/// An ed25519 key pair made by ssh-keygen: `(private key path, public key line)`.
fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .output()
        .expect("ssh-keygen");
    assert!(out.status.success(), "ssh-keygen: {out:?}");
    let public = std::fs::read_to_string(path.with_extension("pub")).expect("public key");
    (path, public.trim().to_string())
}

/// The `ssh` command line for `user` with `key` to `port` on 127.0.0.1.
fn ssh_command(key: &Path, port: u16, user: &str) -> String {
    format!(
        "ssh -F /dev/null -i {} -p {port} -o IdentitiesOnly=yes -o IdentityAgent=none \
         -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
         -o BatchMode=yes -o ConnectTimeout=5 -t {user}@127.0.0.1",
        key.display()
    )
}

/// A tmux server of our own (its own socket), killed when dropped.
struct Tmux {
    socket: String,
}

static TMUX_SERVERS: AtomicU32 = AtomicU32::new(0);

impl Tmux {
    /// Runs `command` in a detached `cols`x`rows` window; when it exits, the pane prints its exit
    /// status and stays open.
    fn start(command: &str, cols: u16, rows: u16) -> Tmux {
        let socket = format!(
            "skiff-ssh-test-{}-{}",
            std::process::id(),
            TMUX_SERVERS.fetch_add(1, Ordering::Relaxed)
        );
        let tmux = Tmux { socket };
        let script = format!("{command}; echo \"ssh exited $?\"; sleep 120");
        let out = tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            &cols.to_string(),
            "-y",
            &rows.to_string(),
            &script,
        ]);
        assert!(out.status.success(), "tmux new-session: {out:?}");
        // Keep the window at the size we ask, whatever clients attach.
        let _ = tmux.run(&["set-option", "-g", "window-size", "manual"]);
        tmux
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("tmux")
    }

    fn capture(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-t", "t"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        let out = self.run(&args);
        assert!(out.status.success(), "tmux send-keys: {out:?}");
    }

    fn resize(&self, cols: u16, rows: u16) {
        let out = self.run(&[
            "resize-window",
            "-t",
            "t",
            "-x",
            &cols.to_string(),
            "-y",
            &rows.to_string(),
        ]);
        assert!(out.status.success(), "tmux resize-window: {out:?}");
    }

    /// Polls the pane until `cond` holds; fails with the last screen after `limit`.
    async fn wait_screen(
        &self,
        limit: Duration,
        what: &str,
        cond: impl Fn(&str) -> bool,
    ) -> String {
        let start = Instant::now();
        loop {
            let screen = self.capture();
            if cond(&screen) {
                return screen;
            }
            assert!(
                start.elapsed() < limit,
                "timed out after {limit:?} waiting for {what}; the screen:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// The exit status the pane printed once `ssh` ended.
fn exit_status(screen: &str) -> Option<i32> {
    screen
        .lines()
        .find_map(|l| l.trim().strip_prefix("ssh exited "))
        .and_then(|s| s.trim().parse().ok())
}

/// The character at column `col` of each line.
fn column(screen: &str, col: usize) -> Vec<Option<char>> {
    screen.lines().map(|l| l.chars().nth(col)).collect()
}

/// The SSH port of the node serving now, once it listens.
async fn ssh_port(c: &TestCluster) -> u16 {
    let leader = c.wait_single_leader(Duration::from_secs(20)).await;
    let start = Instant::now();
    loop {
        if let Some(a) = c.node(leader).ssh.as_ref().and_then(|s| s.local_addr()) {
            return a.port();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the SSH cockpit did not start listening"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn cluster(nodes: usize) -> TestCluster {
    let mut spec = ClusterSpec::new(nodes, nodes);
    spec.ssh = true;
    TestCluster::start(spec).await
}

/// Adds a user with one fresh key; returns the key's path.
async fn user_with_key(c: &TestCluster, dir: &Path, name: &str, role: UserRole) -> PathBuf {
    let api = c.client();
    api.add_user(name, role, Quotas::default())
        .await
        .expect("add user");
    let (path, public) = keygen(dir, name);
    api.add_ssh_key(name, &public).await.expect("add ssh key");
    path
}

fn is_cockpit_of(screen: &str, user: &str, node: &str) -> bool {
    screen.contains(user) && screen.contains(node) && screen.contains('┘')
}

fn median(v: &mut [usize]) -> usize {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cockpit_over_ssh_follows_the_window_and_quits() {
    need_tools!();
    let c = cluster(1).await;
    let dir = tempfile::tempdir().unwrap();
    let key = user_with_key(&c, dir.path(), "alice", UserRole::User).await;
    let port = ssh_port(&c).await;
    let ssh = c.node(0).ssh.clone().expect("ssh service");

    let tmux = Tmux::start(&ssh_command(&key, port, "alice"), 120, 40);
    let started = Instant::now();
    let screen = tmux
        .wait_screen(Duration::from_secs(20), "alice's cockpit", |s| {
            is_cockpit_of(s, "alice", "n0")
        })
        .await;
    let shown_after = started.elapsed();
    let cluster_id: String = c.cred.cluster_id.chars().take(8).collect();
    assert!(
        screen.contains(&cluster_id),
        "cluster {cluster_id}:\n{screen}"
    );
    // The box spans the whole 120 columns.
    assert!(column(&screen, 119).contains(&Some('┐')), "{screen}");
    let sessions = ssh.sessions();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].user, "alice");
    assert!(sessions[0].open);
    let first_paint = sessions[0].output.bytes_sent;
    println!("alice's cockpit over SSH, 120x40:\n{screen}");

    // The session's token acts as alice, with her permissions: made by ssh, revoked at the end.
    let admin = c.client();
    let tokens = admin.tokens("alice").await.unwrap();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert_eq!(tokens[0].label, "ssh cockpit session");
    let audit = admin.audit(Some(20)).await.unwrap();
    assert!(
        audit.iter().any(|r| format!("{r:?}").contains("ssh:alice")),
        "{audit:?}"
    );

    // Typical updates: a node's figures change (as gossip reports them), keys move the
    // selection.
    let before = ssh.sessions()[0].output.frames_accepted;
    let n0 = c.node(0);
    let total: u64 = c.client().nodes().await.unwrap()[0].memory_total;
    for (cpu, mem) in [(750u64, total / 2), (250, total / 3), (500, total / 4)] {
        n0.gossip.set(keys::CPU, cpu).await;
        n0.gossip.set(keys::MEMORY_USED, mem).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    tmux.keys(&["Down"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    tmux.keys(&["Up"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let screen = tmux.capture();
    let stats = ssh.sessions()[0].output.clone();
    let new = (stats.frames_accepted - before) as usize;
    // Unchanged frames send nothing: every frame counted here changed something on screen.
    let mut updates: Vec<usize> =
        stats.last_frames[stats.last_frames.len() - new.min(stats.last_frames.len())..].to_vec();
    let in_order = updates.clone();
    let largest = updates.iter().copied().max().unwrap_or(0);
    let typical = median(&mut updates);
    println!("after the figures changed:\n{screen}");
    println!(
        "ssh cockpit 120x40: shown after {shown_after:?}; first paint {first_paint} bytes \
         (frames {:?}); {} updates in 5.5 s: median {typical} bytes, largest {largest} bytes \
         ({in_order:?})",
        &stats.first_frames[..stats.first_frames.len().min(8)],
        updates.len(),
    );
    assert!(first_paint <= 16 * 1024, "first paint {first_paint} bytes");
    assert!(typical <= 8 * 1024, "typical update {typical} bytes");

    // The window shrinks: the box is redrawn at 80x24.
    tmux.resize(80, 24);
    let screen = tmux
        .wait_screen(Duration::from_secs(10), "the cockpit at 80x24", |s| {
            let right = column(s, 79);
            let bottom = right.iter().rposition(|c| *c == Some('┘'));
            right.contains(&Some('┐')) && bottom.is_some_and(|row| row < 24)
        })
        .await;
    assert!(is_cockpit_of(&screen, "alice", "n0"), "{screen}");
    // ...and grows again.
    tmux.resize(100, 30);
    tmux.wait_screen(Duration::from_secs(10), "the cockpit at 100x30", |s| {
        column(s, 99).contains(&Some('┐'))
    })
    .await;

    // q quits: exit status 0, the terminal restored, the token revoked.
    tmux.keys(&["q"]);
    let screen = tmux
        .wait_screen(Duration::from_secs(10), "ssh to exit", |s| {
            exit_status(s).is_some()
        })
        .await;
    assert_eq!(exit_status(&screen), Some(0), "{screen}");
    assert!(
        !screen.contains('┘'),
        "left the alternate screen:\n{screen}"
    );
    let start = Instant::now();
    while !admin.tokens("alice").await.unwrap().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the session token was not revoked"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!ssh.sessions()[0].open);
    drop(tmux);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_keys_and_disabled_users_are_refused_even_mid_session() {
    need_tools!();
    let c = cluster(1).await;
    let dir = tempfile::tempdir().unwrap();
    let alice = user_with_key(&c, dir.path(), "alice", UserRole::User).await;
    let carol = user_with_key(&c, dir.path(), "carol", UserRole::User).await;
    c.client()
        .set_user_disabled("carol", true)
        .await
        .expect("disable carol");
    let (stranger, _) = keygen(dir.path(), "stranger");
    let port = ssh_port(&c).await;

    let run = |key: &Path, user: &str| {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("{} true </dev/null", ssh_command(key, port, user)));
        cmd.output().expect("ssh")
    };
    for (key, user, why) in [
        (&stranger, "alice", "an unknown key"),
        (&alice, "bob", "a user that does not exist"),
        (&alice, "carol", "someone else's key"),
        (&carol, "carol", "a disabled user"),
    ] {
        let out = run(key, user);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{why} was let in: {out:?}");
        assert!(
            err.contains("Permission denied"),
            "{why}: expected Permission denied, got {err}"
        );
    }
    // A command instead of the cockpit: refused after login, with a reason.
    let out = run(&alice, "alice");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(!err.contains("Permission denied"), "{err}");

    // A user disabled while their cockpit is open is thrown out.
    let tmux = Tmux::start(&ssh_command(&alice, port, "alice"), 100, 30);
    tmux.wait_screen(Duration::from_secs(20), "alice's cockpit", |s| {
        is_cockpit_of(s, "alice", "n0")
    })
    .await;
    c.client()
        .set_user_disabled("alice", true)
        .await
        .expect("disable alice");
    let screen = tmux
        .wait_screen(Duration::from_secs(20), "the session to end", |s| {
            exit_status(s).is_some()
        })
        .await;
    assert!(screen.contains("access withdrawn"), "{screen}");
    assert_eq!(exit_status(&screen), Some(1), "{screen}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_end_when_leadership_moves() {
    need_tools!();
    let mut c = cluster(3).await;
    let dir = tempfile::tempdir().unwrap();
    let key = user_with_key(&c, dir.path(), "alice", UserRole::Admin).await;
    let port = ssh_port(&c).await;
    let leader = c.wait_single_leader(Duration::from_secs(20)).await;
    let leader_name = c.names[leader].clone();
    // Every admin-eligible node has its own port in the test (one machine): only the leader's
    // listens.
    for (i, n) in c.running() {
        let listening = n.ssh.as_ref().and_then(|s| s.local_addr()).is_some();
        assert_eq!(listening, i == leader, "n{i}");
    }

    let tmux = Tmux::start(&ssh_command(&key, port, "alice"), 120, 40);
    tmux.wait_screen(Duration::from_secs(20), "alice's cockpit", |s| {
        is_cockpit_of(s, "alice", &leader_name)
    })
    .await;

    // The leader is cut off from the others: it stops its services, and the session ends.
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    c.partition(&[leader], &others);
    let screen = tmux
        .wait_screen(Duration::from_secs(20), "the session to end", |s| {
            exit_status(s).is_some()
        })
        .await;
    assert!(
        screen.contains("leadership moved; reconnect to the new leader"),
        "{screen}"
    );
    assert_eq!(exit_status(&screen), Some(75), "{screen}");
    assert!(
        c.node(leader)
            .ssh
            .as_ref()
            .and_then(|s| s.local_addr())
            .is_none(),
        "the old leader still listens"
    );

    // The new leader serves on its own address; the client reconnects there, and its host key
    // is the same (derived from the cluster CA). On a busy machine leadership may move once more
    // while the client reconnects: that session ends the same way (75), and the client, like an
    // operator, connects to whoever leads then.
    let host_key = |i: usize| {
        std::fs::read_to_string(c.dirs[i].join("ssh_host_ed25519_key.pub"))
            .expect("host public key")
    };
    let start = Instant::now();
    let again = loop {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no stable cockpit on a new leader within 60 s"
        );
        let serving: Vec<usize> = others
            .iter()
            .copied()
            .filter(|i| c.node(*i).serving_term().is_some())
            .collect();
        let [new_leader] = serving[..] else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Some(new_port) = c.node(new_leader).ssh.as_ref().and_then(|s| s.local_addr()) else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        assert_eq!(host_key(leader), host_key(new_leader));
        let again = Tmux::start(&ssh_command(&key, new_port.port(), "alice"), 120, 40);
        let screen = again
            .wait_screen(Duration::from_secs(20), "alice's cockpit again", |s| {
                is_cockpit_of(s, "alice", &c.names[new_leader]) || exit_status(s).is_some()
            })
            .await;
        match exit_status(&screen) {
            None => break again,
            Some(75) => continue,
            Some(other) => panic!("ssh exited {other}:\n{screen}"),
        }
    };
    again.keys(&["C-c"]);
    let screen = again
        .wait_screen(Duration::from_secs(10), "ssh to exit", |s| {
            exit_status(s).is_some()
        })
        .await;
    assert_eq!(exit_status(&screen), Some(0), "{screen}");
    drop((tmux, again));
    c.heal();
    c.kill(leader).await;
    c.shutdown().await;
}

/// A TCP relay between a client and the SSH cockpit whose server-to-client direction can be
/// paused: the client stops getting bytes (as over a stalled link) while its own bytes still
/// reach the server.
struct Relay {
    port: u16,
    paused: Arc<AtomicBool>,
}

impl Relay {
    async fn start(target: u16) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let paused = Arc::new(AtomicBool::new(false));
        let p = paused.clone();
        tokio::spawn(async move {
            let Ok((inbound, _)) = listener.accept().await else {
                return;
            };
            let Ok(outbound) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else {
                return;
            };
            let (mut client_read, mut client_write) = inbound.into_split();
            let (mut server_read, mut server_write) = outbound.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
            });
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                while p.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                match server_read.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if client_write.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Relay { port, paused }
    }
}

struct TrustingClient;

impl russh::client::Handler for TrustingClient {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// A client that stops reading cannot make the server hold more than the output limit: frames
/// are dropped, and once the client reads again it gets a full repaint.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_stops_reading_cannot_grow_the_servers_memory() {
    need_tools!();
    let c = cluster(1).await;
    let dir = tempfile::tempdir().unwrap();
    let key_path = user_with_key(&c, dir.path(), "alice", UserRole::User).await;
    let port = ssh_port(&c).await;
    let ssh = c.node(0).ssh.clone().expect("ssh service");
    let relay = Relay::start(port).await;

    // A small SSH window: the server may have at most 16 KiB in flight to this client.
    let config = Arc::new(russh::client::Config {
        window_size: 16 * 1024,
        maximum_packet_size: 16 * 1024,
        ..Default::default()
    });
    let mut session = russh::client::connect(config, ("127.0.0.1", relay.port), TrustingClient)
        .await
        .expect("connect");
    let key = russh::keys::load_secret_key(&key_path, None).expect("key");
    let auth = session
        .authenticate_publickey(
            "alice",
            russh::keys::PrivateKeyWithHashAlg::new(Arc::new(key), None),
        )
        .await
        .expect("auth");
    assert!(auth.success());
    let channel = session.channel_open_session().await.expect("channel");
    channel
        .request_pty(false, "xterm", 200, 60, 0, 0, &[])
        .await
        .unwrap();
    channel.request_shell(false).await.unwrap();
    let (mut read, write) = channel.split();
    // Read until the first paint is in.
    let start = Instant::now();
    let mut got = 0usize;
    while got < 2_000 {
        match tokio::time::timeout(Duration::from_secs(10), read.wait()).await {
            Ok(Some(russh::ChannelMsg::Data { data })) => got += data.len(),
            Ok(Some(_)) => {}
            other => panic!("no first paint: {other:?}"),
        }
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    // The link stalls; the client keeps resizing its window (each resize is a full repaint).
    relay.paused.store(true, Ordering::Relaxed);
    let start = Instant::now();
    let mut i = 0u32;
    loop {
        let stats = ssh.sessions()[0].output.clone();
        assert!(
            stats.peak_queued <= OUTPUT_LIMIT,
            "the outbox grew past its limit: {stats:?}"
        );
        if stats.frames_dropped > 0 && start.elapsed() > Duration::from_secs(2) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no frame was dropped: {stats:?}"
        );
        i += 1;
        let cols = if i % 2 == 0 { 200 } else { 199 };
        write.window_change(cols, 60, 0, 0).await.unwrap();
        tokio::time::sleep(Duration::from_millis(35)).await;
    }
    let stalled = ssh.sessions()[0].output.clone();
    println!("stalled client: {stalled:?}");
    assert!(stalled.peak_queued <= OUTPUT_LIMIT, "{stalled:?}");

    // The link comes back: the client gets a full repaint and the cockpit still answers keys.
    relay.paused.store(false, Ordering::Relaxed);
    let reader = tokio::spawn(async move {
        let mut status = None;
        while let Some(msg) = read.wait().await {
            if let russh::ChannelMsg::ExitStatus { exit_status } = msg {
                status = Some(exit_status);
            }
        }
        status
    });
    let start = Instant::now();
    while ssh.sessions()[0].output.repaints == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no repaint after the client caught up: {:?}",
            ssh.sessions()[0].output
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    write.data(&b"q"[..]).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("the session ends")
        .unwrap();
    assert_eq!(status, Some(0));
    c.shutdown().await;
}
