//! Write benchmark: acknowledged creates through Skiff's HTTPS API on a 3-voter loopback cluster,
//! against etcd (3 members on loopback) doing puts of the same size, in the same run.
//!
//! - *skiff*: 3 release `skiffd` processes on 127.0.0.1 (`SKIFFD` names the binary; default
//!   `skiffd` next to this benchmark's target directory), built as an operator would: `skiffd init`,
//!   join tokens from the API, `skiffd join --admin-eligible`, `POST /api/v1/nodes/promote`; every
//!   node's `[compute] hypervisor = "fake"` (no libvirt). Real QUIC + mutual TLS between the nodes,
//!   every node's Raft log synced (`fdatasync`) before it acknowledges an append. Each write is
//!   `POST /api/v1/users` with the admin credential (mutual TLS, HTTP/2, one connection),
//!   acknowledged once the create is committed by a quorum and applied: the same path as
//!   `skiff user add`. The benchmark process runs only the clients, as for etcd.
//!   `SKIFF_BENCH_SKIFF=inprocess` runs the old variant instead (the 3 nodes in the benchmark's own
//!   process and tokio runtime, `TestCluster`); `SKIFF_BENCH_SKIFF=both` measures both each round.
//! - *etcd*: 3 `etcd` processes (Debian `etcd-server`; `SKIFF_BENCH_ETCD` names the binary), data
//!   directories on the same file system, default durability (WAL fsync). Each write is a native
//!   gRPC `KV/Put` (HTTP/2 without TLS, one connection) to the leader, whose key and value together
//!   are as long as Skiff's request body.
//!
//! `SKIFF_BENCH_CLIENTS` concurrent clients share `SKIFF_BENCH_WRITES` writes per side and round;
//! sides alternate who goes first; `SKIFF_BENCH_ROUNDS` rounds after 200 unrecorded writes on each
//! side. Reports per round: writes/s (writes over wall time), p50 and p99 latency (nearest rank)
//! of each write, and the Skiff/etcd throughput ratio.
//!
//! Run: `cargo bench -p skiff-tests --bench writes` or `scripts/bench-writes`. Environment:
//! `SKIFF_BENCH_WRITES` (default 3000), `SKIFF_BENCH_CLIENTS` (default 32), `SKIFF_BENCH_ROUNDS`
//! (default 3), `SKIFF_BENCH_ETCD` (default `etcd`), `SKIFF_BENCH_SKIFF` (`processes`, the
//! default, `inprocess` or `both`), `SKIFFD`, `SKIFF_BENCH_KEEP=1` (keep the data dirs and logs),
//! `SKIFF_BENCH_DUMP=DIR` (each measured batch's writes as CSV, `start_ms,latency_ms`, to see
//! whether slow writes come together).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use skiff_cluster::api::client::ApiClient;
use skiff_cluster::api::users::AddUserRequest;
use skiff_cluster::config::{HypervisorKind, NodeConfig};
use skiff_cluster::credential::Credential;
use skiff_cluster::state::users::{Quotas, UserRole};
use skiff_tests::bench::{env_num, init_logging};
use skiff_tests::inprocess::{free_port, ClusterSpec, TestCluster};

const WARMUP: usize = 200;

/// How the Skiff side runs (`SKIFF_BENCH_SKIFF`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SkiffMode {
    /// 3 `skiffd` processes (the default).
    Processes,
    /// 3 nodes inside the benchmark process, on its runtime (`TestCluster`).
    InProcess,
    /// Both, measured one after the other in every round.
    Both,
}

#[derive(Clone, Debug)]
struct Config {
    writes: usize,
    clients: usize,
    rounds: usize,
    etcd: String,
    skiff: SkiffMode,
    skiffd: PathBuf,
    keep: bool,
}

/// `skiffd` next to the target directory this benchmark was built in (`target/release/deps/x`
/// -> `target/release/skiffd`).
fn default_skiffd() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    exe.parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("skiffd"))
        .unwrap_or_else(|| PathBuf::from("skiffd"))
}

impl Config {
    fn from_env() -> Result<Self> {
        let c = Config {
            writes: env_num("SKIFF_BENCH_WRITES", 3000)?,
            clients: env_num("SKIFF_BENCH_CLIENTS", 32)?,
            rounds: env_num("SKIFF_BENCH_ROUNDS", 3)?,
            etcd: std::env::var("SKIFF_BENCH_ETCD").unwrap_or_else(|_| "etcd".into()),
            skiff: match std::env::var("SKIFF_BENCH_SKIFF").as_deref() {
                Err(_) | Ok("") | Ok("processes") => SkiffMode::Processes,
                Ok("inprocess") => SkiffMode::InProcess,
                Ok("both") => SkiffMode::Both,
                Ok(other) => {
                    bail!("SKIFF_BENCH_SKIFF={other:?}: expected processes, inprocess or both")
                }
            },
            skiffd: std::env::var_os("SKIFFD")
                .map(PathBuf::from)
                .unwrap_or_else(default_skiffd),
            keep: std::env::var("SKIFF_BENCH_KEEP").as_deref() == Ok("1"),
        };
        if c.writes == 0 || c.clients == 0 || c.rounds == 0 {
            bail!(
                "SKIFF_BENCH_WRITES, SKIFF_BENCH_CLIENTS and SKIFF_BENCH_ROUNDS must be at least 1"
            );
        }
        Ok(c)
    }
}

/// What one side measured in one round.
#[derive(Clone, Copy, Debug)]
struct Figures {
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn nearest_rank(sorted: &[Duration], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1000.0
}

/// Runs `writes` calls of `one(i)` from `clients` concurrent tasks; every call must succeed.
async fn drive<F, Fut>(writes: usize, clients: usize, one: F) -> Result<Figures>
where
    F: Fn(usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let next = next.clone();
        let one = one.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= writes {
                    return Ok::<_, anyhow::Error>(lat);
                }
                let t = Instant::now();
                one(i).await?;
                lat.push((t - start, t.elapsed()));
            }
        }));
    }
    let mut timed = Vec::with_capacity(writes);
    for t in tasks {
        timed.extend(t.await??);
    }
    let wall = start.elapsed();
    if let Ok(dir) = std::env::var("SKIFF_BENCH_DUMP") {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let path = format!("{dir}/drive-{}.csv", SEQ.fetch_add(1, Ordering::Relaxed));
        let mut text = String::from("start_ms,latency_ms\n");
        timed.sort_unstable();
        for (at, lat) in &timed {
            text.push_str(&format!(
                "{:.3},{:.3}\n",
                at.as_secs_f64() * 1000.0,
                lat.as_secs_f64() * 1000.0
            ));
        }
        std::fs::write(&path, text)?;
    }
    let mut all: Vec<Duration> = timed.iter().map(|(_, l)| *l).collect();
    all.sort_unstable();
    Ok(Figures {
        per_sec: writes as f64 / wall.as_secs_f64(),
        p50_ms: nearest_rank(&all, 0.50),
        p99_ms: nearest_rank(&all, 0.99),
    })
}

// ---------------------------------------------------------------------------------------------
// Skiff
// ---------------------------------------------------------------------------------------------

fn user_request(prefix: &str, i: usize) -> AddUserRequest {
    AddUserRequest {
        name: format!("{prefix}-{i:06}"),
        role: UserRole::User,
        quotas: Quotas {
            memory_mib: Some(4096),
            vcpus: Some(4),
            storage_gib: Some(100),
            external_ips: Some(1),
        },
    }
}

async fn skiff_round(
    client: &Arc<ApiClient>,
    prefix: &str,
    writes: usize,
    clients: usize,
) -> Result<Figures> {
    let client = client.clone();
    let prefix: Arc<str> = prefix.into();
    drive(writes, clients, move |i| {
        let client = client.clone();
        let prefix = prefix.clone();
        async move {
            let r = user_request(&prefix, i);
            client
                .add_user(&r.name, r.role, r.quotas)
                .await
                .with_context(|| format!("skiff: add user {}", r.name))?;
            Ok(())
        }
    })
    .await
}

/// Child processes and their work directory: the processes are killed (and the directory removed
/// unless `keep`) when dropped, also when the benchmark fails half-way.
struct Children {
    children: Vec<Child>,
    dir: tempfile::TempDir,
    keep: bool,
}

impl Children {
    fn new(dir: tempfile::TempDir, keep: bool) -> Self {
        Children {
            children: Vec::new(),
            dir,
            keep,
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if self.keep {
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
            eprintln!("kept {}", dir.keep().display());
        }
    }
}

/// A 3-voter cluster of `skiffd` processes on 127.0.0.1 (see [`Children`] for its end).
struct SkiffProcesses {
    procs: Children,
    cred: Credential,
}

/// Runs `skiffd ARGS` to completion (init, join), appending its output to `log`.
async fn skiffd_once(skiffd: &Path, args: Vec<String>, log: PathBuf) -> Result<()> {
    let skiffd = skiffd.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(&skiffd)
            .arg("--log")
            .arg("warn")
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {}", skiffd.display()))?;
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        std::io::Write::write_all(&mut f, text.as_bytes())?;
        if !out.status.success() {
            bail!("skiffd {args:?} failed ({}): {text}", out.status);
        }
        Ok(())
    })
    .await?
}

/// `[compute] hypervisor = "fake"` in the node's `node.toml`: libvirt stays out of the benchmark.
fn use_fake_hypervisor(data_dir: &Path) -> Result<()> {
    let path = data_dir.join("node.toml");
    let mut cfg = NodeConfig::load(&path).with_context(|| format!("{}", path.display()))?;
    cfg.compute.hypervisor = HypervisorKind::Fake;
    std::fs::write(&path, cfg.to_toml())?;
    Ok(())
}

/// Polls `cond` every 100 ms until it holds, failing after `limit`.
async fn wait_for<F, Fut>(limit: Duration, what: &str, mut cond: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !cond().await {
        if Instant::now() > deadline {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

impl SkiffProcesses {
    /// Builds the cluster as an operator would (see `scripts/bench-failover`): `skiffd init` of
    /// node a, join tokens from its API, `skiffd join --admin-eligible` of b and c, promotion of
    /// b and c to voters; then waits until the 3 voters are alive.
    async fn start(cfg: &Config) -> Result<Self> {
        let dir = tempfile::tempdir().context("tempdir")?;
        let names = ["a", "b", "c"];
        let addrs: Vec<String> = (0..3)
            .map(|_| format!("127.0.0.1:{}", free_port()))
            .collect();
        let data = |i: usize| dir.path().join(names[i]);
        let log = |i: usize| dir.path().join(format!("{}.log", names[i]));
        skiffd_once(
            &cfg.skiffd,
            vec![
                "init".into(),
                "--data-dir".into(),
                data(0).display().to_string(),
                "--name".into(),
                names[0].into(),
                "--listen".into(),
                addrs[0].clone(),
            ],
            log(0),
        )
        .await?;
        let mut cred = Credential::load(&data(0).join("admin.credential"))?;
        cred.endpoints = addrs.clone();
        let logs: Vec<PathBuf> = (0..3).map(log).collect();
        let datas: Vec<PathBuf> = (0..3).map(data).collect();
        let mut procs = SkiffProcesses {
            procs: Children::new(dir, cfg.keep),
            cred,
        };
        let spawn = |procs: &mut SkiffProcesses, i: usize| -> Result<()> {
            use_fake_hypervisor(&datas[i])?;
            let out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&logs[i])?;
            let child = Command::new(&cfg.skiffd)
                .arg("--log")
                .arg("warn")
                .arg("run")
                .arg("--data-dir")
                .arg(&datas[i])
                .stdin(Stdio::null())
                .stdout(out.try_clone()?)
                .stderr(out)
                .spawn()
                .with_context(|| format!("cannot run {}", cfg.skiffd.display()))?;
            procs.procs.children.push(child);
            Ok(())
        };
        spawn(&mut procs, 0)?;
        let client = ApiClient::new(&procs.cred)?;
        wait_for(Duration::from_secs(30), "node a to lead", || async {
            matches!(client.cluster().await, Ok(c) if c.leader.as_deref() == Some("a"))
        })
        .await?;
        for i in 1..3 {
            let token = client.create_token(600).await?.token;
            let args = vec![
                "join".into(),
                "--data-dir".into(),
                datas[i].display().to_string(),
                "--name".into(),
                names[i].into(),
                "--listen".into(),
                addrs[i].clone(),
                "--seed".into(),
                addrs[0].clone(),
                "--token".into(),
                token,
                "--admin-eligible".into(),
            ];
            skiffd_once(&cfg.skiffd, args, logs[i].clone()).await?;
            spawn(&mut procs, i)?;
        }
        let voters = vec!["b".to_string(), "c".to_string()];
        wait_for(Duration::from_secs(60), "promotion of b and c", || async {
            client.promote(voters.clone(), false).await.is_ok()
        })
        .await?;
        wait_for(Duration::from_secs(60), "3 alive voters", || async {
            matches!(client.nodes().await,
                Ok(n) if n.iter().filter(|n| n.voter && n.alive).count() == 3)
        })
        .await?;
        Ok(procs)
    }
}

// ---------------------------------------------------------------------------------------------
// etcd
// ---------------------------------------------------------------------------------------------

struct Etcd {
    procs: Children,
    clients: Vec<String>,
}

/// Starts 3 etcd members on 127.0.0.1, data under a temporary directory on the same file system
/// as Skiff's (the system temp dir), and waits until every member is healthy.
async fn start_etcd(cfg: &Config) -> Result<Etcd> {
    let dir = tempfile::tempdir().context("tempdir")?;
    let peers: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let clients: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let cluster = (0..3)
        .map(|i| format!("e{i}=http://127.0.0.1:{}", peers[i]))
        .collect::<Vec<_>>()
        .join(",");
    let mut etcd = Etcd {
        procs: Children::new(dir, cfg.keep),
        clients: clients
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect(),
    };
    for (i, peer) in peers.iter().enumerate() {
        let data = etcd.procs.dir.path().join(format!("e{i}"));
        let log = std::fs::File::create(etcd.procs.dir.path().join(format!("e{i}.log")))?;
        let child = Command::new(&cfg.etcd)
            .arg("--name")
            .arg(format!("e{i}"))
            .arg("--data-dir")
            .arg(&data)
            .arg("--listen-client-urls")
            .arg(&etcd.clients[i])
            .arg("--advertise-client-urls")
            .arg(&etcd.clients[i])
            .arg("--listen-peer-urls")
            .arg(format!("http://127.0.0.1:{peer}"))
            .arg("--initial-advertise-peer-urls")
            .arg(format!("http://127.0.0.1:{peer}"))
            .arg("--initial-cluster")
            .arg(&cluster)
            .arg("--initial-cluster-state")
            .arg("new")
            .arg("--initial-cluster-token")
            .arg(format!("skiff-bench-{}", std::process::id()))
            .arg("--logger")
            .arg("zap")
            .arg("--log-level")
            .arg("error")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot run {} (Debian package etcd-server)", cfg.etcd))?;
        etcd.procs.children.push(child);
    }
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    for url in &etcd.clients {
        loop {
            let ok = match http.get(format!("{url}/health")).send().await {
                Ok(r) => r.text().await.unwrap_or_default().contains("\"true\""),
                Err(_) => false,
            };
            if ok {
                break;
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(etcd.procs.dir.path().join("e0.log"))
                    .unwrap_or_default();
                bail!("etcd at {url} did not become healthy in 30 s; e0.log:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(etcd)
}

/// The client URL of the member that leads (from the JSON gateway's maintenance status).
async fn etcd_leader(etcd: &Etcd) -> Result<String> {
    let http = reqwest::Client::new();
    for url in &etcd.clients {
        let v: serde_json::Value = http
            .post(format!("{url}/v3/maintenance/status"))
            .body("{}")
            .send()
            .await?
            .json()
            .await?;
        let me = v["header"]["member_id"].as_str().unwrap_or_default();
        if !me.is_empty() && v["leader"].as_str() == Some(me) {
            return Ok(url.clone());
        }
    }
    bail!("no etcd member says it leads")
}

fn varint(mut v: usize, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A gRPC frame holding `etcdserverpb.PutRequest { key = 1, value = 2 }`.
fn put_frame(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(key.len() + value.len() + 8);
    msg.push(0x0a);
    varint(key.len(), &mut msg);
    msg.extend_from_slice(key);
    msg.push(0x12);
    varint(value.len(), &mut msg);
    msg.extend_from_slice(value);
    let mut frame = Vec::with_capacity(msg.len() + 5);
    frame.push(0);
    frame.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    frame.extend_from_slice(&msg);
    frame
}

async fn etcd_round(
    http: &reqwest::Client,
    leader: &str,
    prefix: &str,
    writes: usize,
    clients: usize,
) -> Result<Figures> {
    let url: Arc<str> = format!("{leader}/etcdserverpb.KV/Put").into();
    // Same size as Skiff's request body (names are fixed-width, so one size serves the round);
    // computed here, outside the timed writes.
    let body_len = serde_json::to_vec(&user_request(prefix, 0))?.len();
    let http = http.clone();
    let prefix: Arc<str> = prefix.into();
    drive(writes, clients, move |i| {
        let http = http.clone();
        let url = url.clone();
        let prefix = prefix.clone();
        async move {
            let key = format!("/bench/{prefix}-{i:06}");
            let value = vec![b'x'; body_len.saturating_sub(key.len())];
            let resp = http
                .post(&*url)
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(put_frame(key.as_bytes(), &value))
                .send()
                .await
                .context("etcd: put")?;
            if let Some(status) = resp.headers().get("grpc-status") {
                if status.as_bytes() != b"0" {
                    bail!("etcd: put refused: grpc-status {status:?}");
                }
            }
            if !resp.status().is_success() {
                bail!("etcd: put answered HTTP {}", resp.status());
            }
            let body = resp.bytes().await.context("etcd: put response")?;
            // A PutResponse always carries its header: an empty message means a failure whose
            // status came in the trailers.
            if body.len() <= 5 {
                bail!("etcd: put answered no PutResponse");
            }
            Ok(())
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------------

fn main() -> Result<()> {
    let cfg = Config::from_env()?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    init_logging();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(cfg))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

async fn run(cfg: Config) -> Result<()> {
    eprintln!(
        "writes: {} per side and round, {} clients, {} rounds, skiff {:?}",
        cfg.writes, cfg.clients, cfg.rounds, cfg.skiff
    );
    // The Skiff variants measured, each with its own client (same credential kind: the admin's).
    let mut sides: Vec<(&str, Arc<ApiClient>)> = Vec::new();
    let mut processes = None;
    if matches!(cfg.skiff, SkiffMode::Processes | SkiffMode::Both) {
        eprintln!("starting 3 skiffd processes ({})", cfg.skiffd.display());
        let p = SkiffProcesses::start(&cfg).await?;
        sides.push(("processes", Arc::new(ApiClient::new(&p.cred)?)));
        processes = Some(p);
    }
    let mut inprocess = None;
    if matches!(cfg.skiff, SkiffMode::InProcess | SkiffMode::Both) {
        let cluster = TestCluster::start(ClusterSpec::new(3, 3)).await;
        sides.push(("in-process", Arc::new(cluster.client())));
        inprocess = Some(cluster);
    }
    let etcd = start_etcd(&cfg).await?;
    let leader = etcd_leader(&etcd).await?;
    let http = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .context("HTTP/2 client")?;
    let sample = serde_json::to_vec(&user_request("r0", 0))?.len();
    eprintln!("request body {sample} bytes; etcd leader {leader}; warming up");
    // Separate clusters: the same names (hence the same request size as etcd's) serve every side.
    for (_, client) in &sides {
        skiff_round(client, "warm", WARMUP, cfg.clients).await?;
    }
    etcd_round(&http, &leader, "warm", WARMUP, cfg.clients).await?;

    let mut rows = Vec::new();
    for round in 0..cfg.rounds {
        let prefix = format!("r{round}");
        let load = loadavg();
        let skiff_first = round % 2 == 0;
        let mut e = None;
        if !skiff_first {
            e = Some(etcd_round(&http, &leader, &prefix, cfg.writes, cfg.clients).await?);
        }
        let mut s = Vec::new();
        for (name, client) in &sides {
            s.push((
                *name,
                skiff_round(client, &prefix, cfg.writes, cfg.clients).await?,
            ));
        }
        let e = match e {
            Some(e) => e,
            None => etcd_round(&http, &leader, &prefix, cfg.writes, cfg.clients).await?,
        };
        for (name, s) in &s {
            eprintln!("round {round} (load {load}): skiff {name} {s:?}, etcd {e:?}");
        }
        rows.push((round, load, s, e));
    }
    println!();
    println!("| round | load at start | first | Skiff | Skiff writes/s | p50 ms | p99 ms | etcd writes/s | p50 ms | p99 ms | Skiff/etcd | target (>= 0.5x, p99 <= 20 ms) |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (round, load, s, e) in &rows {
        for (name, s) in s {
            let ratio = s.per_sec / e.per_sec;
            let verdict = match (ratio >= 0.5, s.p99_ms <= 20.0) {
                (true, true) => "met",
                (true, false) => "throughput met, p99 not",
                (false, true) => "p99 met, throughput not",
                (false, false) => "not met",
            };
            println!(
                "| {round} | {load} | {} | {name} | {:.0} | {:.1} | {:.1} | {:.0} | {:.1} | {:.1} | {ratio:.2} | {verdict} |",
                if round % 2 == 0 { "Skiff" } else { "etcd" },
                s.per_sec,
                s.p50_ms,
                s.p99_ms,
                e.per_sec,
                e.p50_ms,
                e.p99_ms,
            );
        }
    }
    drop(etcd);
    drop(processes);
    if let Some(cluster) = inprocess {
        cluster.shutdown().await;
    }
    Ok(())
}
