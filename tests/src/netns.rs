//! Hosts made of Linux network namespaces, for multi-host tests of the real binaries.
//!
//! A [`Lab`] is one bridge in the root namespace and N "hosts": each host is a network namespace
//! with `lo` up and one veth pair whose inner end (`eth0`) has an address from a /24 of
//! 198.18.0.0/15 (the benchmarking range, RFC 2544, never routed anywhere) and whose outer end is a
//! port of the bridge. The bridge itself holds `.1`, so that tools in the root namespace (the
//! `skiff` client) reach every host; hosts are `.11`, `.12`, ... No default route is set: traffic
//! only ever goes to those addresses or to loopback.
//!
//! Processes run inside a host with `ip netns exec` ([`Lab::spawn`], [`Lab::exec`]); a partition is
//! a host's link taken down ([`Lab::link_down`]) and a crash is `kill -9` ([`Lab::kill9`]).
//!
//! Everything a lab creates carries the test process's pid in its name (namespaces
//! `skifftest-PID-LAB-hN`, links `skbPID-LAB` and `skvPID-LAB-N`, PID in hex for links), so tests
//! can run concurrently, and its `Drop` kills its processes and deletes namespaces, veths and the
//! bridge even when the test panics (then it also prints the tail of every process log). Leftovers
//! of test processes that died without unwinding (SIGKILL, abort) are reaped by the next lab.
//!
//! Not every machine allows this (it needs root, `ip`, and namespace, veth and bridge support):
//! [`available`] says why not, and [`available_or_skip`] prints `SKIPPED: <reason>` for a test
//! that then returns. Setting `SKIFF_REQUIRE_NETNS=1` (CI does) turns a skip into a failure.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Prefix of every namespace a lab creates.
const NS_PREFIX: &str = "skifftest-";
/// Prefix of a lab's bridge.
const BRIDGE_PREFIX: &str = "skb";
/// Prefix of the root-namespace end of a host's veth pair.
const VETH_PREFIX: &str = "skv";
/// The first host's last octet; the bridge is `.1`.
const FIRST_HOST_OCTET: u8 = 11;
/// How many /24 subnets 198.18.0.0/15 holds.
const SUBNETS: u32 = 512;
/// How long one `ip` command may take.
const IP_TIMEOUT: Duration = Duration::from_secs(20);

static NEXT_LAB: AtomicUsize = AtomicUsize::new(0);

/// Whether this environment can build labs: `Err` says what is missing. Checked once per process
/// (it creates and deletes a probe namespace, veth pair and bridge).
pub fn available() -> Result<(), String> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE.get_or_init(probe).clone()
}

/// For the top of a test: `if !netns::available_or_skip("my_test") { return; }`. Prints
/// `SKIPPED: <test>: <reason>` on stderr (also without `--nocapture`) when namespaces cannot be used, unless
/// `SKIFF_REQUIRE_NETNS=1`, which makes it panic instead.
pub fn available_or_skip(test: &str) -> bool {
    match available() {
        Ok(()) => true,
        Err(reason) => {
            if std::env::var("SKIFF_REQUIRE_NETNS").is_ok_and(|v| v == "1" || v == "true") {
                panic!("{test}: network namespaces are required (SKIFF_REQUIRE_NETNS) but unusable: {reason}");
            }
            // Straight to the process's stderr: libtest captures `eprintln!` of passing tests, and a
            // skip must show without `--nocapture`.
            let _ = writeln!(std::io::stderr(), "SKIPPED: {test}: {reason}");
            false
        }
    }
}

fn probe() -> Result<(), String> {
    if !cfg!(target_os = "linux") {
        return Err("network namespaces need Linux".into());
    }
    match effective_uid() {
        Some(0) => {}
        Some(uid) => {
            return Err(format!(
                "needs root to create network namespaces (running as uid {uid})"
            ))
        }
        None => return Err("cannot read the effective uid from /proc/self/status".into()),
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            return Err(format!(
                "`ip -V` failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ))
        }
        Err(e) => {
            return Err(format!(
                "the `ip` command is not usable ({e}): install iproute2"
            ))
        }
    }
    let pid = std::process::id();
    let ns = format!("{NS_PREFIX}{pid}-probe");
    let veth = format!("{VETH_PREFIX}{pid:x}-p");
    let bridge = format!("{BRIDGE_PREFIX}{pid:x}-p");
    let result = (|| {
        ip(&["netns", "add", &ns])
            .map_err(|e| format!("cannot create a network namespace: {e:#}"))?;
        ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"])
            .map_err(|e| format!("cannot run a command in a network namespace: {e:#}"))?;
        ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ])
        .map_err(|e| format!("cannot create a veth pair: {e:#}"))?;
        ip(&["link", "add", &bridge, "type", "bridge"])
            .map_err(|e| format!("cannot create a bridge: {e:#}"))?;
        ip(&["link", "set", &veth, "master", &bridge])
            .map_err(|e| format!("cannot attach a veth to a bridge: {e:#}"))?;
        Ok(())
    })();
    let _ = ip(&["link", "del", &bridge]);
    let _ = ip(&["link", "del", &veth]);
    let _ = ip(&["netns", "del", &ns]);
    result
}

/// The effective uid, from `/proc/self/status` (`Uid: real effective saved fs`).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Runs `ip ARGS` in the root namespace; an error carries its stderr.
fn ip(args: &[&str]) -> anyhow::Result<String> {
    let out = output_with_timeout(Command::new("ip").args(args), IP_TIMEOUT)
        .with_context(|| format!("ip {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command to completion with its output captured, killing it when it takes longer than
/// `timeout` (then the error's kind is `TimedOut`).
pub fn output_with_timeout(cmd: &mut Command, timeout: Duration) -> std::io::Result<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("still running after {timeout:?}; killed"),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// One host of a lab.
#[derive(Clone, Debug)]
pub struct Host {
    /// Short name for messages (`h1`, `h2`, ...).
    pub name: String,
    /// The network namespace.
    pub netns: String,
    /// The address of its `eth0`.
    pub ip: Ipv4Addr,
    /// The root-namespace end of its veth pair (a bridge port).
    veth: String,
}

impl Host {
    /// `ip:port` of this host.
    pub fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::from((self.ip, port))
    }
}

/// A background process started by [`Lab::spawn`]; the lab owns the process itself.
#[derive(Clone, Debug)]
pub struct Process {
    index: usize,
    /// The process id (of the program itself: `ip netns exec` execs it).
    pub pid: u32,
    /// Index of the host it runs on.
    pub host: usize,
    /// Label given at spawn, for messages.
    pub label: String,
    /// File receiving its stdout and stderr.
    pub log: PathBuf,
}

struct Running {
    child: Child,
    label: String,
    log: PathBuf,
    reaped: Option<ExitStatus>,
}

/// A bridge with hosts on it; everything is torn down on drop.
pub struct Lab {
    bridge: String,
    subnet: [u8; 3],
    hosts: Vec<Host>,
    procs: Vec<Running>,
    subnet_lock: Option<PathBuf>,
    dir: tempfile::TempDir,
}

impl Lab {
    /// Builds a bridge and `hosts` namespaces on it. Check [`available`] first.
    pub fn new(hosts: usize) -> anyhow::Result<Lab> {
        if hosts == 0 || hosts > 200 {
            bail!("a lab holds 1 to 200 hosts, not {hosts}");
        }
        available().map_err(|e| anyhow::anyhow!("network namespaces are unusable here: {e}"))?;
        reap_leftovers();
        let pid = std::process::id();
        let lab = NEXT_LAB.fetch_add(1, Ordering::Relaxed);
        if lab > 0xff {
            bail!("too many labs in one test process");
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("skifftest-{pid}-{lab}-"))
            .tempdir()
            .context("cannot create the lab's directory")?;
        let (subnet, subnet_lock) = claim_subnet()?;
        let mut me = Lab {
            bridge: format!("{BRIDGE_PREFIX}{pid:x}-{lab:x}"),
            subnet,
            hosts: Vec::new(),
            procs: Vec::new(),
            subnet_lock: Some(subnet_lock),
            dir,
        };
        // From here on, Drop cleans up whatever was created when a step fails.
        me.build(pid, lab, hosts)?;
        Ok(me)
    }

    fn build(&mut self, pid: u32, lab: usize, count: usize) -> anyhow::Result<()> {
        let [a, b, c] = self.subnet;
        ip(&[
            "link",
            "add",
            &self.bridge,
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        ])?;
        ip(&[
            "addr",
            "add",
            &format!("{a}.{b}.{c}.1/24"),
            "dev",
            &self.bridge,
        ])?;
        quiet_ipv6(None, &self.bridge);
        ip(&["link", "set", &self.bridge, "up"])?;
        for i in 0..count {
            let host = Host {
                name: format!("h{}", i + 1),
                netns: format!("{NS_PREFIX}{pid}-{lab}-h{}", i + 1),
                ip: Ipv4Addr::new(a, b, c, FIRST_HOST_OCTET + i as u8),
                veth: format!("{VETH_PREFIX}{pid:x}-{lab:x}-{i:x}"),
            };
            ip(&["netns", "add", &host.netns])?;
            // Recorded before the links exist, so that Drop removes a half-built host too.
            self.hosts.push(host.clone());
            let ns = host.netns.as_str();
            ip(&[
                "link", "add", &host.veth, "type", "veth", "peer", "name", "eth0", "netns", ns,
            ])?;
            ip(&["link", "set", &host.veth, "master", &self.bridge])?;
            quiet_ipv6(None, &host.veth);
            quiet_ipv6(Some(ns), "eth0");
            ip(&["link", "set", &host.veth, "up"])?;
            let inside = |args: &[&str]| {
                let mut full = vec!["-n", ns];
                full.extend_from_slice(args);
                ip(&full)
            };
            inside(&["link", "set", "lo", "up"])?;
            inside(&["addr", "add", &format!("{}/24", host.ip), "dev", "eth0"])?;
            inside(&["link", "set", "eth0", "up"])?;
        }
        Ok(())
    }

    /// The hosts, in order (`h1` first).
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// Host `i` (0-based).
    pub fn host(&self, i: usize) -> &Host {
        &self.hosts[i]
    }

    /// The bridge's address (the root namespace's address on the lab's subnet).
    pub fn gateway(&self) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, 1)
    }

    /// A directory for the test's files (data dirs, logs), removed with the lab.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A command that runs `program` inside host `i`'s namespace.
    pub fn command(&self, i: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.hosts[i].netns])
            .arg(program);
        cmd
    }

    /// Runs `program ARGS` inside host `i` to completion (at most `timeout`); fails unless it
    /// exits with success. Returns its stdout.
    pub fn exec<S: AsRef<std::ffi::OsStr>>(
        &self,
        i: usize,
        program: impl AsRef<std::ffi::OsStr>,
        args: impl IntoIterator<Item = S>,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let mut cmd = self.command(i, program);
        cmd.args(args);
        let what = format!("{cmd:?} on {}", self.hosts[i].name);
        let out = output_with_timeout(&mut cmd, timeout).with_context(|| what.clone())?;
        if !out.status.success() {
            bail!(
                "{what} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts `program ARGS` in the background inside host `i`, its stdout and stderr going to
    /// `DIR/LABEL.log`. The lab kills it on drop if the test did not.
    pub fn spawn<S: AsRef<std::ffi::OsStr>>(
        &mut self,
        i: usize,
        label: &str,
        program: impl AsRef<std::ffi::OsStr>,
        args: impl IntoIterator<Item = S>,
    ) -> anyhow::Result<Process> {
        let index = self.procs.len();
        let log = self.dir().join(format!("{label}.{index}.log"));
        let out = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let err = out.try_clone()?;
        let mut cmd = self.command(i, program);
        cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {cmd:?} on {}", self.hosts[i].name))?;
        let pid = child.id();
        self.procs.push(Running {
            child,
            label: label.to_string(),
            log: log.clone(),
            reaped: None,
        });
        Ok(Process {
            index,
            pid,
            host: i,
            label: label.to_string(),
            log,
        })
    }

    /// Whether the process still runs (false once it exited or was killed).
    pub fn is_running(&mut self, p: &Process) -> bool {
        let r = &mut self.procs[p.index];
        if r.reaped.is_some() {
            return false;
        }
        match r.child.try_wait() {
            Ok(Some(status)) => {
                r.reaped = Some(status);
                false
            }
            Ok(None) => true,
            Err(_) => false,
        }
    }

    /// `kill -9` the process (a crash: no shutdown code runs) and reap it.
    pub fn kill9(&mut self, p: &Process) -> anyhow::Result<()> {
        let r = &mut self.procs[p.index];
        if r.reaped.is_some() {
            bail!("{} (pid {}) had already exited", p.label, p.pid);
        }
        r.child
            .kill()
            .with_context(|| format!("cannot kill {} (pid {})", p.label, p.pid))?;
        r.reaped = Some(r.child.wait()?);
        Ok(())
    }

    /// Sends SIGTERM and waits up to `timeout` for the process to exit (then SIGKILL).
    pub fn stop(&mut self, p: &Process, timeout: Duration) -> anyhow::Result<ExitStatus> {
        if !self.is_running(p) {
            return Ok(self.procs[p.index].reaped.expect("reaped"));
        }
        let _ = output_with_timeout(
            Command::new("kill").args(["-TERM", &p.pid.to_string()]),
            Duration::from_secs(5),
        );
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if !self.is_running(p) {
                return Ok(self.procs[p.index].reaped.expect("reaped"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill9(p)?;
        bail!(
            "{} (pid {}) ignored SIGTERM for {timeout:?}; killed",
            p.label,
            p.pid
        )
    }

    /// The process's output so far.
    pub fn log_of(&self, p: &Process) -> String {
        std::fs::read_to_string(&p.log).unwrap_or_default()
    }

    /// Takes host `i`'s link down (its bridge port): the host is cut off from every other host
    /// and from the root namespace; its processes keep running.
    pub fn link_down(&self, i: usize) -> anyhow::Result<()> {
        ip(&["link", "set", &self.hosts[i].veth, "down"]).map(drop)
    }

    /// Brings host `i`'s link back up.
    pub fn link_up(&self, i: usize) -> anyhow::Result<()> {
        ip(&["link", "set", &self.hosts[i].veth, "up"]).map(drop)
    }

    fn teardown(&mut self) {
        let panicking = std::thread::panicking();
        for r in &mut self.procs {
            if r.reaped.is_none() {
                let _ = r.child.kill();
                r.reaped = r.child.wait().ok();
            }
        }
        if panicking {
            for r in &self.procs {
                print_log_tail(&r.label, &r.log, 60);
            }
        }
        for h in &self.hosts {
            // Deleting one end of a veth pair deletes both; the namespace goes with its mount.
            let _ = ip(&["link", "del", &h.veth]);
            if let Err(e) = ip(&["netns", "del", &h.netns]) {
                let _ = writeln!(std::io::stderr(), "netns lab cleanup: {e:#}");
            }
        }
        self.hosts.clear();
        if link_exists(&self.bridge) {
            if let Err(e) = ip(&["link", "del", &self.bridge]) {
                let _ = writeln!(std::io::stderr(), "netns lab cleanup: {e:#}");
            }
        }
        if let Some(lock) = self.subnet_lock.take() {
            let _ = std::fs::remove_file(lock);
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Turns IPv6 off on a link (best effort: the kernel may have no IPv6), so that the lab's links
/// carry only the IPv4 traffic of the test, without link-local autoconfiguration chatter.
fn quiet_ipv6(netns: Option<&str>, ifname: &str) {
    let knob = format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6");
    match netns {
        None => {
            let _ = std::fs::write(&knob, "1");
        }
        // /proc/sys/net shows the namespace of the process reading it.
        Some(ns) => {
            let _ = output_with_timeout(
                Command::new("ip").args([
                    "netns",
                    "exec",
                    ns,
                    "sh",
                    "-c",
                    &format!("echo 1 > {knob}"),
                ]),
                IP_TIMEOUT,
            );
        }
    }
}

fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", "dev", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Prints the end of a process log on stderr. Write errors are ignored (unlike `eprintln!`, which
/// panics on them, and a panic in `Drop` while unwinding would abort the cleanup).
fn print_log_tail(label: &str, log: &Path, lines: usize) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let from = all.len().saturating_sub(lines);
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "----- last {} lines of {label} ({}) -----",
        all.len() - from,
        log.display()
    );
    for l in &all[from..] {
        let _ = writeln!(err, "{l}");
    }
    let _ = writeln!(err, "----- end of {label} -----");
}

/// Claims a free /24 of 198.18.0.0/15: one not on any interface of the root namespace and not
/// claimed by another live test process (claims are lock files holding the claimer's pid).
fn claim_subnet() -> anyhow::Result<([u8; 3], PathBuf)> {
    let locks = std::env::temp_dir().join("skifftest-subnets");
    std::fs::create_dir_all(&locks)
        .with_context(|| format!("cannot create {}", locks.display()))?;
    let in_use: HashSet<[u8; 3]> = ip(&["-4", "-o", "addr", "show"])?
        .lines()
        .filter_map(|l| {
            let addr = l.split_whitespace().skip_while(|w| *w != "inet").nth(1)?;
            let ip: Ipv4Addr = addr.split('/').next()?.parse().ok()?;
            let [a, b, c, _] = ip.octets();
            Some([a, b, c])
        })
        .collect();
    let pid = std::process::id();
    // Start at a pid-dependent subnet so that concurrent processes rarely contend.
    let start = pid % SUBNETS;
    for k in 0..SUBNETS {
        let n = (start + k) % SUBNETS;
        let subnet = [198, 18 + (n / 256) as u8, (n % 256) as u8];
        if in_use.contains(&subnet) {
            continue;
        }
        let lock = locks.join(format!("{}.{}.{}.0", subnet[0], subnet[1], subnet[2]));
        for _attempt in 0..2 {
            match OpenOptions::new().write(true).create_new(true).open(&lock) {
                Ok(mut f) => {
                    writeln!(f, "{pid}")?;
                    return Ok((subnet, lock));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let owner = std::fs::read_to_string(&lock)
                        .ok()
                        .and_then(|s| s.trim().parse::<u32>().ok());
                    match owner {
                        Some(o) if pid_alive(o) => break,
                        // The claimer died (or is still writing its pid: then we lose at most a
                        // race we would lose anyway on create_new).
                        _ => {
                            let _ = std::fs::remove_file(&lock);
                        }
                    }
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot create {}", lock.display()))
                }
            }
        }
    }
    bail!("no free /24 left in 198.18.0.0/15")
}

/// Removes namespaces, links, subnet claims and lab directories left by test processes that died without
/// unwinding, and kills what still runs inside those namespaces (skiffd processes they started).
fn reap_leftovers() {
    let dead = |pid: Option<u32>| pid.is_some_and(|p| !pid_alive(p));
    if let Ok(list) = ip(&["netns", "list"]) {
        for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
            let Some(rest) = ns.strip_prefix(NS_PREFIX) else {
                continue;
            };
            if !dead(rest.split('-').next().and_then(|p| p.parse().ok())) {
                continue;
            }
            if let Ok(pids) = ip(&["netns", "pids", ns]) {
                for p in pids.split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", p]).status();
                }
            }
            let _ = ip(&["netns", "del", ns]);
        }
    }
    // Lab directories: skifftest-PID-LAB-RANDOM.
    if let Ok(dirs) = std::fs::read_dir(std::env::temp_dir()) {
        for d in dirs.flatten() {
            let name = d.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(NS_PREFIX) else {
                continue;
            };
            if d.path().is_dir() && dead(rest.split('-').next().and_then(|p| p.parse().ok())) {
                let _ = std::fs::remove_dir_all(d.path());
            }
        }
    }
    if let Ok(locks) = std::fs::read_dir(std::env::temp_dir().join("skifftest-subnets")) {
        for lock in locks.flatten() {
            let owner = std::fs::read_to_string(lock.path())
                .ok()
                .and_then(|s| s.trim().parse().ok());
            if dead(owner) {
                let _ = std::fs::remove_file(lock.path());
            }
        }
    }
    if let Ok(links) = ip(&["-o", "link", "show"]) {
        for l in links.lines() {
            // "12: skv1a2b-0-1@if3: <...>"
            let Some(name) = l.split(": ").nth(1).and_then(|n| n.split('@').next()) else {
                continue;
            };
            let Some(rest) = name
                .strip_prefix(BRIDGE_PREFIX)
                .or_else(|| name.strip_prefix(VETH_PREFIX))
            else {
                continue;
            };
            if dead(
                rest.split('-')
                    .next()
                    .and_then(|p| u32::from_str_radix(p, 16).ok()),
            ) {
                let _ = ip(&["link", "del", name]);
            }
        }
    }
}
