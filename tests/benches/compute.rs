//! Compute benchmark: the server lifecycle through the node agent against the raw `qemu-img` +
//! `virsh` sequence, and the clone of a master image, in the same run.
//!
//! - *lifecycle*: per round, on each side, create-and-start a server with one disk that is a
//!   linked clone of a 1 GiB master, then stop-and-remove it.
//!   - agent: `AgentHandler` (the agent's real code path) over `LibvirtHypervisor` (TCG) in the
//!     hypervisor helper process `skiff-hv` (`HelperHypervisor`, as in `skiffd`) and a
//!     `DiskProvisioner`; create+start = `serve(Ensure { desired: Running })` until its reply (the
//!     domain runs), stop+remove = `serve(Remove)` until its reply;
//!   - raw: child processes, one after the other: create+start = `qemu-img create -f qcow2 -b
//!     MASTER -F qcow2 CHILD`, `virsh define FILE.xml`, `virsh start NAME`; stop+remove = `virsh
//!     destroy NAME`, `virsh undefine NAME`, `rm -f CHILD CONSOLE_LOG`. The XML file (written
//!     before the clock starts) is what the agent would generate for that server
//!     (`domain_xml::domain_xml`, same options), so both sides run the same guest.
//!
//!   The side that goes first alternates from round to round; one unrecorded warm-up round comes
//!   first; the guest runs `SKIFF_BENCH_RUN_MS` between the two phases (untimed).
//! - *clone*: `ImageStore::clone_child` of a 1 GiB and a 20 GiB master (sparse qcow2 with 16 MiB
//!   of data written at the start and at the end when `qemu-io` is there), against the raw
//!   `qemu-img create -q -f qcow2 -b MASTER -F qcow2 CHILD`; the child is removed between rounds
//!   (untimed); sides alternate.
//!
//! Medians and p90 (nearest rank) in milliseconds, with the agent/raw ratios, printed as markdown
//! tables. Every domain is made under a unique name (`skiff-bench-PID-...`) and destroyed and
//! undefined at the end, also when a step fails.
//!
//! Run: `cargo bench -p skiff-tests --bench compute` or `scripts/bench-compute` (which also runs
//! the memory benchmark of a real `skiffd`). Environment: `SKIFF_BENCH_ROUNDS` (lifecycle rounds,
//! default 10), `SKIFF_BENCH_CLONE_ROUNDS` (default 20), `SKIFF_BENCH_RUN_MS` (default 500),
//! `SKIFF_BENCH_PARTS` (`lifecycle,clone`), `SKIFF_BENCH_URI` (`qemu:///system`),
//! `SKIFF_BENCH_KEEP=1` (keep the work directory).

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use skiff_cluster::agentproto::{AgentReply, AgentRequest, DomainPower};
use skiff_cluster::config::Accelerator;
use skiff_cluster::state::servers::{DiskSpec, PowerState, ServerSpec};
use skiff_cluster::state::ServerRecord;
use skiff_nodeagent::compute::agent_handler::AgentHandler;
use skiff_nodeagent::compute::disks::DiskProvisioner;
use skiff_nodeagent::compute::domain_xml::{self, DomainType, DomainXmlOptions};
use skiff_nodeagent::compute::helper::client::{helper_program, HelperHypervisor, ProcessSpawner};
use skiff_nodeagent::compute::helper::HelperArgs;
use skiff_nodeagent::compute::libvirt::LibvirtHypervisor;
use skiff_nodeagent::compute::DomainSpec;
use skiff_nodeagent::storage::images::ImageStore;
use skiff_tests::bench::env_num;

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
const LIFECYCLE_MASTER: &str = "bench-master";

#[derive(Clone, Debug)]
struct Config {
    rounds: usize,
    clone_rounds: usize,
    run: Duration,
    lifecycle: bool,
    clone: bool,
    uri: String,
    keep: bool,
}

impl Config {
    fn from_env() -> Result<Self> {
        let parts = std::env::var("SKIFF_BENCH_PARTS").unwrap_or_else(|_| "lifecycle,clone".into());
        let parts: Vec<&str> = parts.split(',').map(str::trim).collect();
        for p in &parts {
            if !matches!(*p, "lifecycle" | "clone" | "") {
                bail!("SKIFF_BENCH_PARTS: unknown part {p:?} (lifecycle, clone)");
            }
        }
        let rounds = env_num::<usize>("SKIFF_BENCH_ROUNDS", 10)?;
        let clone_rounds = env_num::<usize>("SKIFF_BENCH_CLONE_ROUNDS", 20)?;
        if rounds == 0 || clone_rounds == 0 {
            bail!("SKIFF_BENCH_ROUNDS and SKIFF_BENCH_CLONE_ROUNDS must be at least 1");
        }
        Ok(Config {
            rounds,
            clone_rounds,
            run: Duration::from_millis(env_num::<u64>("SKIFF_BENCH_RUN_MS", 500)?),
            lifecycle: parts.contains(&"lifecycle"),
            clone: parts.contains(&"clone"),
            uri: std::env::var("SKIFF_BENCH_URI").unwrap_or_else(|_| "qemu:///system".into()),
            keep: std::env::var("SKIFF_BENCH_KEEP").as_deref() == Ok("1"),
        })
    }
}

/// Runs a program; fails with its stderr when it fails.
fn run(program: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .with_context(|| format!("non-UTF-8 path {}", p.display()))
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}

/// Destroys and undefines every domain it was told about when dropped (passed or failed), with
/// `virsh`, so that it works whatever state the agent or a half-done raw sequence left.
struct DomainCleanup {
    uri: String,
    names: Mutex<Vec<String>>,
}

impl DomainCleanup {
    fn track(&self, name: &str) {
        let mut n = match self.names.lock() {
            Ok(n) => n,
            Err(p) => p.into_inner(),
        };
        n.push(name.to_string());
    }
}

impl Drop for DomainCleanup {
    fn drop(&mut self) {
        let names = match self.names.get_mut() {
            Ok(n) => std::mem::take(n),
            Err(p) => std::mem::take(p.into_inner()),
        };
        for name in names {
            let exists = Command::new("virsh")
                .args(["-c", &self.uri, "domstate", &name])
                .output()
                .is_ok_and(|o| o.status.success());
            if !exists {
                continue;
            }
            eprintln!("cleanup: destroying and undefining leftover domain {name}");
            let _ = Command::new("virsh")
                .args(["-c", &self.uri, "destroy", &name])
                .output();
            let _ = Command::new("virsh")
                .args(["-c", &self.uri, "undefine", &name])
                .output();
        }
    }
}

/// Median (mean of the two middle values for an even count) and p90 (nearest rank), in ms.
fn stats(samples: &[Duration]) -> (f64, f64) {
    let mut v: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let m = v.len() / 2;
    let median = if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    };
    // Nearest rank: the smallest value with at least 90 % of the samples at or below it.
    let rank = (0.9 * v.len() as f64).ceil() as usize;
    let p90 = v[rank.clamp(1, v.len()) - 1];
    (median, p90)
}

fn min_max(samples: &[Duration]) -> (f64, f64) {
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    let min = samples.iter().map(ms).fold(f64::INFINITY, f64::min);
    let max = samples.iter().map(ms).fold(0.0, f64::max);
    (min, max)
}

fn server(name: &str, image: Option<&str>) -> ServerRecord {
    ServerRecord {
        name: name.into(),
        owner: "bench".into(),
        spec: ServerSpec {
            disks: vec![DiskSpec {
                image: image.map(str::to_string),
                size_gib: 1,
                pool: None,
            }],
            ..ServerSpec::new(128, 1)
        },
        node: Some("bench".into()),
        desired: PowerState::Running,
        created_at: 0,
        generation: 1,
    }
}

fn describe(reply: &AgentReply) -> String {
    serde_json::to_string(reply).unwrap_or_else(|_| format!("{reply:?}"))
}

/// Everything one lifecycle run shares.
struct Lifecycle<'a> {
    cfg: &'a Config,
    handler: AgentHandler,
    store: ImageStore,
    log_dir: PathBuf,
    xml_dir: PathBuf,
    master_path: PathBuf,
    cleanup: &'a DomainCleanup,
}

impl Lifecycle<'_> {
    async fn agent_round(&self, name: &str) -> Result<(Duration, Duration)> {
        self.cleanup.track(name);
        let req = AgentRequest::Ensure {
            server: Box::new(server(name, Some(LIFECYCLE_MASTER))),
            action: None,
            force_after_secs: 60,
        };
        let t = Instant::now();
        let reply = self.handler.serve(req).await;
        let create = t.elapsed();
        match &reply {
            AgentReply::Done {
                domain: Some(d), ..
            } if d.power == DomainPower::Running => {}
            other => bail!(
                "agent Ensure of {name} did not leave it running: {}",
                describe(other)
            ),
        }
        tokio::time::sleep(self.cfg.run).await;
        let t = Instant::now();
        let reply = self
            .handler
            .serve(AgentRequest::Remove {
                name: name.into(),
                shared_disks: true,
            })
            .await;
        let remove = t.elapsed();
        match &reply {
            AgentReply::Done { domain: None, .. } => {}
            other => bail!("agent Remove of {name} failed: {}", describe(other)),
        }
        Ok((create, remove))
    }

    fn raw_round(&self, name: &str) -> Result<(Duration, Duration)> {
        let uri = self.cfg.uri.as_str();
        let child = self.store.root().join(format!("{name}-disk0.qcow2"));
        let console = domain_xml::console_log_path(&self.log_dir, name);
        // What the agent would define for this server, with the disk the raw side makes.
        let mut spec = DomainSpec::from_server(&server(name, Some(LIFECYCLE_MASTER)));
        spec.disk_paths = vec![child.clone()];
        let xml = domain_xml::domain_xml(
            &spec,
            &DomainXmlOptions {
                domain_type: DomainType::from_accelerator(Accelerator::Tcg),
                console_log: &console,
                uuid: None,
            },
        )
        .context("domain XML for the raw side")?;
        let xml_file = self.xml_dir.join(format!("{name}.xml"));
        std::fs::write(&xml_file, xml)
            .with_context(|| format!("writing {}", xml_file.display()))?;
        let (master, child_s, xml_s) = (
            path_str(&self.master_path)?,
            path_str(&child)?,
            path_str(&xml_file)?,
        );
        self.cleanup.track(name);

        let t = Instant::now();
        run(
            "qemu-img",
            &[
                "create", "-q", "-f", "qcow2", "-b", master, "-F", "qcow2", child_s,
            ],
        )?;
        run("virsh", &["-q", "-c", uri, "define", xml_s])?;
        run("virsh", &["-q", "-c", uri, "start", name])?;
        let create = t.elapsed();

        std::thread::sleep(self.cfg.run);
        let t = Instant::now();
        run("virsh", &["-q", "-c", uri, "destroy", name])?;
        run("virsh", &["-q", "-c", uri, "undefine", name])?;
        run("rm", &["-f", child_s, path_str(&console)?])?;
        let remove = t.elapsed();
        Ok((create, remove))
    }
}

async fn lifecycle(
    cfg: &Config,
    work: &Path,
    cleanup: &DomainCleanup,
    out: &mut String,
) -> Result<()> {
    let pool = work.join("pool");
    let log_dir = work.join("console");
    let xml_dir = work.join("xml");
    for d in [&pool, &log_dir, &xml_dir] {
        std::fs::create_dir_all(d).with_context(|| format!("mkdir {}", d.display()))?;
        set_mode(d, 0o755)?;
    }
    let store = ImageStore::new(pool).context("image store")?;
    store
        .create(LIFECYCLE_MASTER, GIB)
        .context("creating the 1 GiB master")?;
    store
        .make_master(LIFECYCLE_MASTER)
        .context("making the master")?;
    let master_path = store.path(LIFECYCLE_MASTER)?;
    let direct = LibvirtHypervisor::connect(&cfg.uri, Accelerator::Tcg, &log_dir)
        .with_context(|| format!("connecting to libvirt at {}", cfg.uri))?;
    if direct.domain_type() != DomainType::Qemu {
        bail!(
            "{} gives domain type {:?}, expected qemu (TCG)",
            cfg.uri,
            direct.domain_type()
        );
    }
    drop(direct);
    // As skiffd does: libvirt in the helper process `skiff-hv` (target/release/skiff-hv, next to
    // this benchmark's deps directory; scripts/bench-compute builds it).
    let hypervisor = HelperHypervisor::start(Box::new(ProcessSpawner {
        program: helper_program(None),
        args: HelperArgs {
            uri: cfg.uri.clone(),
            accelerator: Accelerator::Tcg,
            log_dir: log_dir.clone(),
        },
    }))
    .map_err(anyhow::Error::msg)
    .context("starting the hypervisor helper skiff-hv (cargo build --release --bin skiff-hv)")?;
    let handler = AgentHandler::new("bench".into(), Some(Arc::new(hypervisor)))
        .with_disks(DiskProvisioner::in_store(store.clone()));
    let lc = Lifecycle {
        cfg,
        handler,
        store,
        log_dir,
        xml_dir,
        master_path,
        cleanup,
    };

    let pid = std::process::id();
    let (mut agent_create, mut agent_remove, mut raw_create, mut raw_remove) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // Round 0 is the warm-up, not recorded.
    for round in 0..=cfg.rounds {
        let agent_name = format!("skiff-bench-{pid}-a{round}");
        let raw_name = format!("skiff-bench-{pid}-r{round}");
        let agent_first = round % 2 == 0;
        let mut results = [None, None];
        for side in 0..2 {
            let agent = (side == 0) == agent_first;
            if agent {
                results[0] = Some(lc.agent_round(&agent_name).await?);
            } else {
                results[1] = Some(lc.raw_round(&raw_name)?);
            }
        }
        let (Some((ac, ar)), Some((rc, rr))) = (results[0], results[1]) else {
            bail!("round {round}: a side did not run");
        };
        eprintln!(
            "lifecycle round {round}{}: agent {:.0}/{:.0} ms, raw {:.0}/{:.0} ms ({} first)",
            if round == 0 { " (warm-up)" } else { "" },
            ac.as_secs_f64() * 1e3,
            ar.as_secs_f64() * 1e3,
            rc.as_secs_f64() * 1e3,
            rr.as_secs_f64() * 1e3,
            if agent_first { "agent" } else { "raw" }
        );
        if round > 0 {
            agent_create.push(ac);
            agent_remove.push(ar);
            raw_create.push(rc);
            raw_remove.push(rr);
        }
    }

    writeln!(
        out,
        "\n### Lifecycle: {} rounds (+1 warm-up), 1 disk cloned from a 1 GiB master, 128 MiB, 1 vCPU, TCG\n",
        cfg.rounds
    )?;
    writeln!(
        out,
        "| phase | agent median ms | agent p90 ms | raw median ms | raw p90 ms | agent/raw median | agent/raw p90 | target ≤ 1.2 |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|---|---|")?;
    for (phase, a, r) in [
        ("create + start", &agent_create, &raw_create),
        ("stop + remove", &agent_remove, &raw_remove),
    ] {
        let (am, ap) = stats(a);
        let (rm, rp) = stats(r);
        let ratio = am / rm;
        writeln!(
            out,
            "| {phase} | {am:.1} | {ap:.1} | {rm:.1} | {rp:.1} | {ratio:.2} | {:.2} | {} |",
            ap / rp,
            if ratio <= 1.2 { "met" } else { "not met" }
        )?;
    }
    writeln!(out)?;
    for (label, v) in [
        ("agent create+start", &agent_create),
        ("raw create+start", &raw_create),
        ("agent stop+remove", &agent_remove),
        ("raw stop+remove", &raw_remove),
    ] {
        let (lo, hi) = min_max(v);
        writeln!(out, "- {label}: min–max {lo:.1}–{hi:.1} ms")?;
    }
    Ok(())
}

/// Writes 16 MiB of data at the start and at the end of an image (not a master yet), so the
/// master holds data, not only a header; skipped without `qemu-io`.
fn fill(path: &Path, size: u64) -> Result<bool> {
    let p = path_str(path)?;
    let end = size - 16 * MIB;
    for cmd in [
        "write -q -P 0xab 0 16M".to_string(),
        format!("write -q -P 0xcd {end} 16M"),
    ] {
        match Command::new("qemu-io")
            .args(["-f", "qcow2", "-c", &cmd, p])
            .output()
        {
            Ok(o) if o.status.success() => {}
            Ok(o) => bail!(
                "qemu-io {cmd:?} on {p} failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e).context("running qemu-io"),
        }
    }
    Ok(true)
}

fn allocated_mib(path: &Path) -> Result<f64> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).with_context(|| format!("stat {}", path.display()))?;
    Ok(m.blocks() as f64 * 512.0 / MIB as f64)
}

fn clone_bench(cfg: &Config, work: &Path, out: &mut String) -> Result<()> {
    let pool = work.join("clone-pool");
    std::fs::create_dir_all(&pool).with_context(|| format!("mkdir {}", pool.display()))?;
    set_mode(&pool, 0o755)?;
    let store = ImageStore::new(pool).context("image store")?;
    writeln!(
        out,
        "\n### Clone of a master: {} rounds per size\n",
        cfg.clone_rounds
    )?;
    writeln!(
        out,
        "| master | allocated MiB | `clone_child` median ms | p90 ms | raw `qemu-img create -b` median ms | p90 ms | clone/raw median | target ≤ 50 ms |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|---|---|")?;
    let mut filled_all = true;
    for gib in [1u64, 20] {
        let master = format!("clone-master-{gib}g");
        let size = gib * GIB;
        let path = store
            .create(&master, size)
            .with_context(|| format!("creating the {gib} GiB master"))?;
        filled_all &= fill(&path, size)?;
        store.make_master(&master)?;
        let allocated = allocated_mib(&path)?;
        let master_s = path_str(&path)?.to_string();
        let (mut ours, mut raw) = (Vec::new(), Vec::new());
        let raw_child = store.root().join(format!("raw-child-{gib}g.qcow2"));
        let raw_child_s = path_str(&raw_child)?.to_string();
        // Round 0 is the warm-up, not recorded.
        for round in 0..=cfg.clone_rounds {
            let child = format!("clone-child-{gib}g");
            let ours_first = round % 2 == 0;
            for side in 0..2 {
                if (side == 0) == ours_first {
                    let t = Instant::now();
                    store
                        .clone_child(&master, &child)
                        .with_context(|| format!("clone_child {master} -> {child}"))?;
                    let d = t.elapsed();
                    store.remove(&child)?;
                    if round > 0 {
                        ours.push(d);
                    }
                } else {
                    let t = Instant::now();
                    run(
                        "qemu-img",
                        &[
                            "create",
                            "-q",
                            "-f",
                            "qcow2",
                            "-b",
                            &master_s,
                            "-F",
                            "qcow2",
                            &raw_child_s,
                        ],
                    )?;
                    let d = t.elapsed();
                    std::fs::remove_file(&raw_child)
                        .with_context(|| format!("rm {}", raw_child.display()))?;
                    if round > 0 {
                        raw.push(d);
                    }
                }
            }
        }
        let (om, op) = stats(&ours);
        let (rm, rp) = stats(&raw);
        writeln!(
            out,
            "| {gib} GiB | {allocated:.1} | {om:.1} | {op:.1} | {rm:.1} | {rp:.1} | {:.2} | {} |",
            om / rm,
            if om <= 50.0 { "met" } else { "not met" }
        )?;
        eprintln!("clone {gib} GiB: ours median {om:.1} ms, raw median {rm:.1} ms");
        store.unmaster(&master)?;
        store.remove(&master)?;
    }
    if !filled_all {
        writeln!(out, "\n(qemu-io not found: the masters are blank)")?;
    }
    Ok(())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

async fn bench(cfg: &Config, work: &Path) -> Result<String> {
    let mut out = String::new();
    writeln!(out, "\nload average at start: {}", load_average())?;
    if cfg.clone {
        clone_bench(cfg, work, &mut out)?;
    }
    if cfg.lifecycle {
        let cleanup = DomainCleanup {
            uri: cfg.uri.clone(),
            names: Mutex::new(Vec::new()),
        };
        lifecycle(cfg, work, &cleanup, &mut out).await?;
    }
    writeln!(out, "\nload average at end: {}", load_average())?;
    Ok(out)
}

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; there is nothing to filter.
    let cfg = Config::from_env()?;
    let work = tempfile::Builder::new()
        .prefix("skiff-bench-compute.")
        .tempdir()
        .context("temp dir")?;
    // libvirt runs QEMU as another user: it must traverse every directory down to the disks.
    set_mode(work.path(), 0o755)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    eprintln!(
        "# bench compute: work dir {}, {} lifecycle rounds, {} clone rounds",
        work.path().display(),
        cfg.rounds,
        cfg.clone_rounds
    );
    let result = rt.block_on(bench(&cfg, work.path()));
    if cfg.keep {
        let kept = work.keep();
        eprintln!("kept {}", kept.display());
    }
    match result {
        Ok(out) => {
            println!("{out}");
            Ok(())
        }
        Err(e) => {
            eprintln!("bench compute failed: {e:#}");
            Err(e)
        }
    }
}
