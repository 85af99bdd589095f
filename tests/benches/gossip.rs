//! Gossip benchmark: chitchat over Skiff's QUIC transport (mutual TLS) against chitchat's own UDP
//! transport, in the same run, with the same chitchat settings.
//!
//! For each cluster size N and each transport, N in-process nodes on 127.0.0.1 (seeds: the first
//! three) measure
//! - convergence: from the first node's start until every node sees every node alive, and the
//!   process CPU time spent until then (per run only);
//! - steady state, after a settling period: process CPU time (`/proc/self/stat`) over a window,
//!   divided by N, as a percentage of one core, and bytes per node per second counted on the
//!   loopback interface (`/proc/net/dev`, whole packets), and UDP datagrams dropped because a
//!   socket's receive buffer was full (`/proc/net/snmp`);
//! - detection: after one node (not a seed) is aborted (chitchat aborted, endpoint closed), the
//!   time until every other node sees it dead.
//!
//! Convergence and detection each have a 20 s deadline; detection is skipped when the cluster did
//! not converge. Each scenario is repeated and medians are reported, with the QUIC/UDP ratios. The benchmark
//! re-executes itself in a private network namespace (`unshare -n`) when it can, so that the
//! loopback counters see only its own traffic.
//!
//! Run: `cargo bench -p skiff-tests --bench gossip` or `scripts/bench-gossip`. Environment:
//! `SKIFF_BENCH_SIZES` (default `10,50,100`), `SKIFF_BENCH_SETTINGS` (`interval_ms:phi` pairs,
//! default: the product's, `GossipSettings::default()`), `SKIFF_BENCH_REPEATS` (3),
//! `SKIFF_BENCH_WINDOW_SECS` (10), `SKIFF_BENCH_SETTLE_SECS` (3), `SKIFF_BENCH_POLL_MS` (50),
//! `SKIFF_BENCH_TRANSPORTS` (`quic,udp`), `SKIFF_BENCH_TRACE` (print convergence progress to
//! stderr: nodes done, CPU in use, and which peers pending nodes know but do not see alive yet).

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chitchat::transport::UdpTransport;
use chitchat::{spawn_chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig};
use skiff_cluster::config::GossipSettings;
use skiff_cluster::gossip::{keys, new_generation, Gossip, GossipOptions};
use skiff_cluster::identity::{self, CertKind, NodeIdentity};
use skiff_cluster::tls::TlsContext;
use skiff_cluster::transport::QuicEndpoint;
use skiff_tests::inprocess::free_port;

/// Longest wait for convergence or detection before a run is reported as timed out.
const PHASE_DEADLINE: Duration = Duration::from_secs(20);
/// Nodes the others are seeded with.
const SEEDS: usize = 3;
const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Transport {
    /// The product: `Gossip::start` over `QuicEndpoint`.
    Quic,
    /// Chitchat's own UDP transport: the reference.
    Udp,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Quic => "quic",
            Transport::Udp => "udp",
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Params {
    interval_ms: u64,
    phi: f64,
}

impl Params {
    fn settings(&self) -> GossipSettings {
        GossipSettings {
            interval_ms: self.interval_ms,
            phi_threshold: self.phi,
            dead_grace_secs: GossipSettings::default().dead_grace_secs,
        }
    }
}

/// What a node publishes, close to what `skiffd` publishes, so digests have a realistic size.
fn initial_values(i: usize) -> Vec<(String, String)> {
    vec![
        (keys::ROLE.into(), "compute".into()),
        (keys::NODE_ID.into(), (i + 1).to_string()),
        (keys::VERSION.into(), skiff_cluster::VERSION.into()),
        (keys::CORES.into(), "2".into()),
        (keys::MEMORY_TOTAL.into(), "25275969536".into()),
        (keys::MEMORY_USED.into(), "1073741824".into()),
    ]
}

/// The chitchat configuration `Gossip::start` builds, for the transports started without it.
fn udp_config(name: String, addr: SocketAddr, seeds: Vec<String>, p: Params) -> ChitchatConfig {
    let s = p.settings();
    let interval = s.interval();
    ChitchatConfig {
        chitchat_id: ChitchatId::new(name, new_generation(), addr),
        cluster_id: "bench".into(),
        gossip_interval: interval,
        listen_addr: addr,
        seed_nodes: seeds,
        failure_detector_config: FailureDetectorConfig {
            phi_threshold: s.phi_threshold,
            sampling_window_size: 1000,
            max_interval: Duration::from_secs(10),
            initial_interval: interval * 2,
            dead_node_grace_period: Duration::from_secs(s.dead_grace_secs),
        },
        marked_for_deletion_grace_period: Duration::from_secs(3600),
        catchup_callback: None,
        extra_liveness_predicate: None,
    }
}

enum BenchNode {
    Quic {
        gossip: Gossip,
        endpoint: QuicEndpoint,
    },
    Udp {
        handle: ChitchatHandle,
    },
}

impl BenchNode {
    /// Every node this node knows, by name, with whether it considers it alive. Both arms do the
    /// same work (`Gossip::nodes` and a copy of it), so polling costs the same for both.
    async fn view(&self) -> BTreeMap<String, bool> {
        match self {
            BenchNode::Quic { gossip, .. } => gossip
                .nodes()
                .await
                .into_iter()
                .map(|n| (n.name, n.alive))
                .collect(),
            BenchNode::Udp { handle } => {
                let chitchat = handle.chitchat();
                let c = chitchat.lock().await;
                let live: HashSet<&ChitchatId> = c.live_nodes().collect();
                let mut by_name: BTreeMap<String, (u64, bool, BTreeMap<String, String>)> =
                    BTreeMap::new();
                for (id, state) in c.node_states() {
                    let values = state
                        .key_values()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect();
                    let entry = (id.generation_id, live.contains(id), values);
                    match by_name.get(id.node_id.as_ref()) {
                        Some(old) if old.0 >= entry.0 => {}
                        _ => {
                            by_name.insert(id.node_id.to_string(), entry);
                        }
                    }
                }
                by_name.into_iter().map(|(k, v)| (k, v.1)).collect()
            }
        }
    }

    fn stop(&self) {
        match self {
            BenchNode::Quic { gossip, endpoint } => {
                gossip.abort();
                endpoint.close();
            }
            BenchNode::Udp { handle } => handle.abort(),
        }
    }
}

/// Process CPU time (user + system, all threads).
fn process_cpu(ticks_per_sec: f64) -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after ") ".
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| f.get(i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    Duration::from_secs_f64(ticks as f64 / ticks_per_sec)
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Bytes transmitted on `lo` (on loopback every byte sent is also received once).
fn loopback_tx_bytes() -> u64 {
    let dev = std::fs::read_to_string("/proc/net/dev").unwrap_or_default();
    for line in dev.lines() {
        if let Some((name, rest)) = line.split_once(':') {
            if name.trim() == "lo" {
                let f: Vec<&str> = rest.split_whitespace().collect();
                return f.get(8).and_then(|v| v.parse().ok()).unwrap_or(0);
            }
        }
    }
    0
}

/// UDP datagrams received and dropped for want of socket receive buffer (`/proc/net/snmp`,
/// per network namespace).
fn udp_counters() -> (u64, u64) {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut lines = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return (0, 0);
    };
    let field = |name: &str| {
        names
            .split_whitespace()
            .position(|n| n == name)
            .and_then(|i| values.split_whitespace().nth(i))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("InDatagrams"), field("RcvbufErrors"))
}

struct Identities {
    contexts: Vec<Arc<TlsContext>>,
}

impl Identities {
    fn new(n: usize) -> anyhow::Result<Self> {
        let ca = identity::new_ca("bench")?;
        let mut contexts = Vec::with_capacity(n);
        for i in 0..n {
            let key = identity::new_key_pem()?;
            let cert = identity::issue_for_key(
                &ca,
                &format!("n{i}"),
                CertKind::Node { ips: &[LOOPBACK] },
                &key,
            )?;
            contexts.push(TlsContext::new(&NodeIdentity {
                ca_pem: ca.cert_pem.clone(),
                cert_pem: cert.cert_pem,
                key_pem: key,
                crl_pem: None,
            })?);
        }
        Ok(Identities { contexts })
    }
}

#[derive(Clone, Debug, Default)]
struct RunResult {
    /// Time until every node saw every node alive; `None` on timeout.
    convergence: Option<Duration>,
    /// Nodes that had converged at the deadline (for timeouts).
    converged_nodes: usize,
    /// Process CPU time from starting the nodes until convergence (or the deadline).
    convergence_cpu: Duration,
    /// Time until every live node saw the aborted node dead; `None` on timeout.
    detection: Option<Duration>,
    detected_by: usize,
    /// Steady-state CPU per node, % of one core.
    cpu_pct_per_node: f64,
    /// Steady-state bytes sent per node per second, counted on `lo`.
    bytes_per_node_per_sec: f64,
    /// Datagrams received, and dropped because a socket's receive buffer was full, from the
    /// start until the end of the steady-state window.
    datagrams: u64,
    rcvbuf_drops: u64,
}

/// Polls the nodes in `pending` until `done(view)` holds for each of them or the deadline passes.
/// Returns, per node, when it first held (relative to `start`).
async fn wait_each<F>(
    nodes: &[BenchNode],
    poll: Duration,
    mut pending: Vec<usize>,
    start: Instant,
    done: F,
) -> BTreeMap<usize, Duration>
where
    F: Fn(&BTreeMap<String, bool>) -> bool,
{
    let mut at = BTreeMap::new();
    let trace = std::env::var_os("SKIFF_BENCH_TRACE").is_some();
    let mut next_trace = Duration::ZERO;
    let ticks = clock_ticks();
    let mut last_cpu = (Instant::now(), process_cpu(ticks));
    while !pending.is_empty() && start.elapsed() < PHASE_DEADLINE {
        let sweep = Instant::now();
        let mut still = Vec::with_capacity(pending.len());
        let mut alive_seen = Vec::new();
        // Per peer name: how many pending nodes see it known but not alive.
        let mut not_alive: BTreeMap<String, usize> = BTreeMap::new();
        for i in pending {
            let view = nodes[i].view().await;
            alive_seen.push(view.values().filter(|a| **a).count());
            if done(&view) {
                at.insert(i, start.elapsed());
            } else {
                still.push(i);
                if trace {
                    for (name, _) in view.iter().filter(|(_, a)| !**a) {
                        *not_alive.entry(name.clone()).or_default() += 1;
                    }
                }
            }
        }
        if trace && start.elapsed() >= next_trace {
            next_trace += Duration::from_millis(500);
            alive_seen.sort_unstable();
            eprintln!(
                "trace {:>6.2}s: sweep {:>5.1} ms, {} nodes done, {} pending; alive seen by pending nodes: min {:?} median {:?}",
                start.elapsed().as_secs_f64(),
                sweep.elapsed().as_secs_f64() * 1000.0,
                at.len(),
                still.len(),
                alive_seen.first(),
                alive_seen.get(alive_seen.len() / 2),
            );
            let now = (Instant::now(), process_cpu(ticks));
            eprintln!(
                "      process CPU since the last trace: {:.2} cores",
                (now.1 - last_cpu.1).as_secs_f64() / (now.0 - last_cpu.0).as_secs_f64()
            );
            last_cpu = now;
            let mut worst: Vec<_> = not_alive.iter().collect();
            worst.sort_by_key(|(_, c)| std::cmp::Reverse(**c));
            worst.truncate(8);
            eprintln!("      known but not alive (peer: pending nodes): {worst:?}");
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(poll).await;
        }
    }
    at
}

struct Bench {
    ids: Identities,
    ticks: f64,
    window: Duration,
    settle: Duration,
    /// Pause between two looks at every pending node's view.
    poll: Duration,
}

impl Bench {
    async fn start_nodes(
        &self,
        transport: Transport,
        n: usize,
        p: Params,
    ) -> anyhow::Result<(Vec<BenchNode>, Instant)> {
        let addrs: Vec<SocketAddr> = (0..n)
            .map(|_| SocketAddr::new(LOOPBACK, free_port()))
            .collect();
        let seeds: Vec<String> = addrs.iter().take(SEEDS).map(|a| a.to_string()).collect();
        let mut nodes = Vec::with_capacity(n);
        match transport {
            Transport::Quic => {
                // Endpoints (TLS configurations, sockets) are ready before the clock starts; the
                // UDP reference binds its sockets inside `spawn_chitchat`, which is cheap.
                let mut endpoints = Vec::with_capacity(n);
                for (i, addr) in addrs.iter().enumerate() {
                    endpoints.push(QuicEndpoint::bind(*addr, self.ids.contexts[i].clone())?);
                }
                let start = Instant::now();
                for (i, endpoint) in endpoints.into_iter().enumerate() {
                    let gossip = Gossip::start(
                        endpoint.clone(),
                        GossipOptions {
                            name: format!("n{i}"),
                            cluster_id: "bench".into(),
                            advertise: addrs[i],
                            seeds: seeds.clone(),
                            settings: p.settings(),
                            initial: initial_values(i),
                        },
                    )
                    .await?;
                    nodes.push(BenchNode::Quic { gossip, endpoint });
                }
                Ok((nodes, start))
            }
            Transport::Udp => {
                let start = Instant::now();
                for (i, addr) in addrs.iter().enumerate() {
                    let config = udp_config(format!("n{i}"), *addr, seeds.clone(), p);
                    let handle = spawn_chitchat(config, initial_values(i), &UdpTransport).await?;
                    nodes.push(BenchNode::Udp { handle });
                }
                Ok((nodes, start))
            }
        }
    }

    async fn run_once(
        &self,
        transport: Transport,
        n: usize,
        p: Params,
    ) -> anyhow::Result<RunResult> {
        let mut r = RunResult::default();
        let udp0 = udp_counters();
        let cpu0 = process_cpu(self.ticks);
        let (nodes, start) = self.start_nodes(transport, n, p).await?;

        // (a) Convergence.
        let all: Vec<usize> = (0..n).collect();
        let conv = wait_each(&nodes, self.poll, all, start, |v| {
            v.len() == n && v.values().all(|alive| *alive)
        })
        .await;
        r.converged_nodes = conv.len();
        r.convergence_cpu = process_cpu(self.ticks).saturating_sub(cpu0);
        if conv.len() == n {
            r.convergence = conv.values().max().copied();
        }

        // (c) Steady state: let connections and failure detectors settle, then measure.
        tokio::time::sleep(self.settle).await;
        let cpu0 = process_cpu(self.ticks);
        let lo0 = loopback_tx_bytes();
        let t0 = Instant::now();
        tokio::time::sleep(self.window).await;
        let secs = t0.elapsed().as_secs_f64();
        let cpu = process_cpu(self.ticks).saturating_sub(cpu0).as_secs_f64();
        let bytes = loopback_tx_bytes().saturating_sub(lo0) as f64;
        r.cpu_pct_per_node = 100.0 * cpu / secs / n as f64;
        r.bytes_per_node_per_sec = bytes / secs / n as f64;
        let udp1 = udp_counters();
        r.datagrams = udp1.0.saturating_sub(udp0.0);
        r.rcvbuf_drops = udp1.1.saturating_sub(udp0.1);

        // (b) Detection of a node that stops (the last one; never a seed). Only meaningful once
        // the cluster has converged.
        if r.convergence.is_none() {
            shutdown(nodes).await;
            return Ok(r);
        }
        let victim = n - 1;
        let victim_name = format!("n{victim}");
        nodes[victim].stop();
        let start = Instant::now();
        let others: Vec<usize> = (0..n - 1).collect();
        let det = wait_each(&nodes, self.poll, others, start, |v| {
            !v.get(&victim_name).copied().unwrap_or(false)
        })
        .await;
        r.detected_by = det.len();
        if det.len() == n - 1 {
            r.detection = det.values().max().copied();
        }

        shutdown(nodes).await;
        Ok(r)
    }
}

async fn shutdown(nodes: Vec<BenchNode>) {
    for node in &nodes {
        node.stop();
    }
    drop(nodes);
    // Let aborted tasks and closing connections drain before the next run.
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

fn secs(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.2}", d.as_secs_f64()))
        .unwrap_or_else(|| "timeout".into())
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$}"))
        .unwrap_or_else(|| "—".into())
}

fn env_list<T: std::str::FromStr>(name: &str, default: &str) -> Vec<T> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Re-runs this benchmark in a private network namespace, so that the loopback byte counters
/// count only its own traffic. Returns `Some(exit code)` when it did.
fn rerun_in_private_netns() -> Option<i32> {
    if std::env::var_os("SKIFF_BENCH_IN_NETNS").is_some() {
        return None;
    }
    let probe = std::process::Command::new("unshare")
        .args(["-n", "true"])
        .stderr(std::process::Stdio::null())
        .status();
    if !matches!(probe, Ok(s) if s.success()) {
        return None;
    }
    let exe = std::env::current_exe().ok()?;
    let status = std::process::Command::new("unshare")
        .args([
            "-n",
            "--",
            "sh",
            "-c",
            "ip link set lo up && exec \"$0\" \"$@\"",
        ])
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env("SKIFF_BENCH_IN_NETNS", "1")
        .status()
        .ok()?;
    Some(status.code().unwrap_or(1))
}

fn private_netns() -> bool {
    let own = std::fs::read_link("/proc/self/ns/net").ok();
    let init = std::fs::read_link("/proc/1/ns/net").ok();
    std::env::var_os("SKIFF_BENCH_IN_NETNS").is_some() || (own.is_some() && own != init)
}

fn main() -> anyhow::Result<()> {
    if let Some(code) = rerun_in_private_netns() {
        std::process::exit(code);
    }
    skiff_tests::bench::init_logging();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let sizes: Vec<usize> = env_list("SKIFF_BENCH_SIZES", "10,50,100");
    let settings: Vec<Params> = std::env::var("SKIFF_BENCH_SETTINGS")
        .unwrap_or_else(|_| {
            let d = GossipSettings::default();
            format!("{}:{}", d.interval_ms, d.phi_threshold)
        })
        .split(',')
        .filter_map(|s| {
            let (i, phi) = s.trim().split_once(':')?;
            Some(Params {
                interval_ms: i.parse().ok()?,
                phi: phi.parse().ok()?,
            })
        })
        .collect();
    let transports: Vec<Transport> = std::env::var("SKIFF_BENCH_TRANSPORTS")
        .unwrap_or_else(|_| "quic,udp".into())
        .split(',')
        .filter_map(|t| match t.trim() {
            "quic" => Some(Transport::Quic),
            "udp" => Some(Transport::Udp),
            _ => None,
        })
        .collect();
    let repeats = env_u64("SKIFF_BENCH_REPEATS", 3).max(1) as usize;
    let bench = Bench {
        ids: Identities::new(sizes.iter().copied().max().unwrap_or(0))?,
        ticks: clock_ticks(),
        window: Duration::from_secs(env_u64("SKIFF_BENCH_WINDOW_SECS", 10)),
        settle: Duration::from_secs(env_u64("SKIFF_BENCH_SETTLE_SECS", 3)),
        poll: Duration::from_millis(env_u64("SKIFF_BENCH_POLL_MS", 50)),
    };
    let isolated = private_netns();
    println!(
        "# gossip benchmark: {} cpus, sizes {sizes:?}, repeats {repeats}, window {:?} after {:?} settling, seeds {SEEDS}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        bench.window,
        bench.settle,
    );
    if isolated {
        println!(
            "# bytes: counted on lo in a private network namespace (this benchmark's traffic only)"
        );
    } else {
        println!("# bytes: counted on the shared lo (includes any other local traffic; could not unshare -n)");
    }

    let mut summary = Vec::new();
    for p in &settings {
        for &n in &sizes {
            let mut results: BTreeMap<Transport, Vec<RunResult>> = BTreeMap::new();
            for rep in 0..repeats {
                // Alternate which transport goes first, so drift on a shared machine hits both.
                let mut order = transports.clone();
                if rep % 2 == 1 {
                    order.reverse();
                }
                for &t in &order {
                    let r = bench.run_once(t, n, *p).await?;
                    let detection = if r.convergence.is_none() {
                        "not measured (no convergence)".to_string()
                    } else {
                        format!("{} s ({}/{})", secs(r.detection), r.detected_by, n - 1)
                    };
                    println!(
                        "run interval={}ms phi={} n={n} {} #{rep}: convergence {} s ({}/{n} nodes, {:.2} CPU-s), detection {detection}, cpu {:.3} %/node, {:.0} B/s/node, {} of {} datagrams dropped (receive buffers full)",
                        p.interval_ms,
                        p.phi,
                        t.name(),
                        secs(r.convergence),
                        r.converged_nodes,
                        r.convergence_cpu.as_secs_f64(),
                        r.cpu_pct_per_node,
                        r.bytes_per_node_per_sec,
                        r.rcvbuf_drops,
                        r.datagrams + r.rcvbuf_drops,
                    );
                    results.entry(t).or_default().push(r);
                }
            }
            summary.push((*p, n, results));
        }
    }

    println!();
    println!("| interval | phi | N | transport | convergence s | detection s | CPU %/node | KB/s/node | timeouts |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (p, n, results) in &summary {
        let mut med = BTreeMap::new();
        for (t, rs) in results {
            let conv = median(
                rs.iter()
                    .filter_map(|r| r.convergence.map(|d| d.as_secs_f64()))
                    .collect(),
            );
            let det = median(
                rs.iter()
                    .filter_map(|r| r.detection.map(|d| d.as_secs_f64()))
                    .collect(),
            );
            let cpu = median(rs.iter().map(|r| r.cpu_pct_per_node).collect());
            let kbs = median(
                rs.iter()
                    .map(|r| r.bytes_per_node_per_sec / 1000.0)
                    .collect(),
            );
            let timeouts = rs
                .iter()
                .filter(|r| r.convergence.is_none() || r.detection.is_none())
                .count();
            println!(
                "| {} ms | {} | {n} | {} | {} | {} | {} | {} | {timeouts}/{} |",
                p.interval_ms,
                p.phi,
                t.name(),
                fmt_opt(conv, 2),
                fmt_opt(det, 2),
                fmt_opt(cpu, 3),
                fmt_opt(kbs, 1),
                rs.len(),
            );
            med.insert(*t, (conv, det, cpu, kbs));
        }
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        if let (Some(q), Some(u)) = (med.get(&Transport::Quic), med.get(&Transport::Udp)) {
            println!(
                "| {} ms | {} | {n} | {}/udp | {} | {} | {} | {} | |",
                p.interval_ms,
                p.phi,
                Transport::Quic.name(),
                fmt_opt(ratio(q.0, u.0), 2),
                fmt_opt(ratio(q.1, u.1), 2),
                fmt_opt(ratio(q.2, u.2), 2),
                fmt_opt(ratio(q.3, u.3), 2),
            );
        }
    }
    Ok(())
}
