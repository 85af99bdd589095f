//! Frame time and memory of the cockpit's servers view with 10,000 servers.
//!
//! `cargo bench -p skiff-tui --bench frame`: loads 10,000 servers into an `App`, prints the
//! process's resident memory (VmRSS) after loading and drawing once, then draws the servers view
//! on a 200x50 `TestBackend` 200 times (moving the selection each frame, as scrolling does) and
//! prints the median and p99 frame time. Targets: ≤ 2 ms a frame, ≤ 30 MB resident.
//! Without `--bench` (as `cargo test --all-targets` runs it) it only draws a few frames.

use std::io::Write;
use std::time::{Duration, Instant};

use ratatui::backend::TestBackend;
use ratatui::Terminal;
use skiff_cluster::agentproto::{DomainPower, ServerFigures};
use skiff_cluster::api::servers::ServerView;
use skiff_cluster::api::tasks::{ActualView, Convergence, ServerActual};
use skiff_cluster::api::{ClusterView, NodeView, PoolUsage};
use skiff_cluster::state::servers::{PowerState, ServerSpec};
use skiff_tui::cockpit::app::{App, Key, Snapshot, Update};
use skiff_tui::cockpit::view;
use skiff_tui::cockpit::views::ViewKind;

const SERVERS: usize = 10_000;
const FRAMES: usize = 200;
const WIDTH: u16 = 200;
const HEIGHT: u16 = 50;

fn node(i: u64) -> NodeView {
    NodeView {
        name: format!("node-{i}"),
        id: i,
        address: format!("10.0.0.{i}:7000"),
        role: "compute".into(),
        voter: i <= 3,
        alive: true,
        leader: i == 1,
        term: 7,
        generation: 1,
        version: "0.1.0".into(),
        cores: 32,
        memory_total: 128 << 30,
        memory_used: 64 << 30,
        cpu_milli: 12_000,
        storage: vec![PoolUsage {
            name: "local".into(),
            total: 2 << 40,
            used: 1 << 40,
        }],
        servers: (SERVERS / 10) as u32,
    }
}

fn snapshot() -> Update {
    let nodes: Vec<NodeView> = (1..=10).map(node).collect();
    let mut views = Vec::with_capacity(SERVERS);
    let mut actual = ActualView::default();
    for i in 0..SERVERS {
        let view = ServerView {
            name: format!("server-{i:05}"),
            owner: format!("user-{}", i % 50),
            node: Some(format!("node-{}", i % 10 + 1)),
            desired: PowerState::Running,
            spec: ServerSpec::new(2048, 2),
            created_at: 1_700_000_000,
            generation: 1,
        };
        actual.servers.push(ServerActual {
            name: view.name.clone(),
            owner: view.owner.clone(),
            node: view.node.clone(),
            desired: view.desired,
            generation: 1,
            power: Some(DomainPower::Running),
            actual_generation: Some(1),
            convergence: Convergence::InSync,
            note: String::new(),
            figures: Some(ServerFigures {
                name: view.name.clone(),
                cpu_milli: (i as u64 * 37) % 2000,
                memory_mib: 2048,
                ..ServerFigures::default()
            }),
        });
        views.push(view);
    }
    let cluster = ClusterView {
        cluster_id: "bench".into(),
        leader: Some("node-1".into()),
        term: 7,
        voters: vec!["node-1".into(), "node-2".into(), "node-3".into()],
        learners: vec![],
    };
    let mut s = Snapshot::new("10.0.0.1:7000", cluster, nodes);
    s.servers = Some(views);
    s.actual = Some(actual);
    Update::Snapshot(Box::new(s))
}

/// The process's resident memory in kB, from /proc/self/status (Linux).
fn vm_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let frames = if full { FRAMES } else { 5 };

    let load = Instant::now();
    let mut app = App::new("bench", "admin", "10.0.0.1:7000").with_view(ViewKind::Servers);
    app.resize(WIDTH, HEIGHT);
    app.apply(snapshot());
    let load = load.elapsed();
    let mut terminal = match Terminal::new(TestBackend::new(WIDTH, HEIGHT)) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot make a test terminal: {e}");
            std::process::exit(1);
        }
    };
    let draw = |terminal: &mut Terminal<TestBackend>, app: &App| {
        if let Err(e) = terminal.draw(|f| view::render(app, f)) {
            eprintln!("drawing failed: {e}");
            std::process::exit(1);
        }
    };
    draw(&mut terminal, &app);
    let rss = vm_rss_kb();

    let mut times = Vec::with_capacity(frames);
    for i in 0..frames {
        // Scroll as an operator would: the window moves every few frames.
        app.handle_key(if i % 50 < 25 {
            Key::Ctrl('d')
        } else {
            Key::Ctrl('u')
        });
        let start = Instant::now();
        draw(&mut terminal, &app);
        times.push(start.elapsed());
    }
    times.sort();
    let median = times[times.len() / 2];
    let p99 = times[(times.len() * 99 / 100).min(times.len() - 1)];
    // Written at once, a closed pipe (`| head`) is not an error worth a panic.
    let mut report = format!(
        "cockpit servers view, {SERVERS} servers, {WIDTH}x{HEIGHT}, {frames} frames: median {:.3} ms, p99 {:.3} ms (target <= 2 ms)\n",
        ms(median),
        ms(p99)
    );
    report.push_str(&format!(
        "loading {SERVERS} servers into App (merge, sort, rows): {:.1} ms\n",
        ms(load)
    ));
    report.push_str(&match rss {
        Some(kb) => format!(
            "VmRSS after loading {SERVERS} servers and drawing: {:.1} MB (target <= 30 MB)\n",
            kb as f64 / 1024.0
        ),
        None => "VmRSS: not available (no /proc/self/status)\n".to_owned(),
    });
    let _ = std::io::stdout().write_all(report.as_bytes());
}
