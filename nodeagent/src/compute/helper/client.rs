//! The agent's side of the helper protocol ([`super`]): [`HelperHypervisor`] is a [`Hypervisor`]
//! whose calls go to a `skiff-hv serve` child process.
//!
//! A helper that exits (crashed, killed) fails the calls waiting on it with the reason; the next
//! call starts a new one, at most once a second. Dropping the `HelperHypervisor` ends its helper
//! (stdin closed, then killed). Like every [`Hypervisor`], calls block: use `spawn_blocking`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tracing::{info, warn};

use super::{pump, read_line, write_line, Answer, Call, HelperArgs, Request, ToAgent, HELPER_BIN};
use crate::compute::libvirt_events::LifecycleEvent;
use crate::compute::{
    ConsoleSession, DomainInfo, DomainSpec, DomainStats, Hypervisor, HypervisorError,
    ShutdownOutcome, CONSOLE_QUEUE,
};

/// A helper that exited is started again at most this often.
pub const RESTART_INTERVAL: Duration = Duration::from_secs(1);

/// The two ends of a started helper: what it reads, what it writes, and its process (tests run
/// helpers on threads: no process).
pub struct Pipes {
    pub stdin: Box<dyn Write + Send>,
    pub stdout: Box<dyn Read + Send>,
    pub child: Option<Child>,
}

/// Starts helpers: `skiff-hv serve` for calls and events, `skiff-hv console NAME` per console.
pub trait Spawn: Send + Sync + 'static {
    fn serve(&self) -> std::io::Result<Pipes>;
    fn console(&self, name: &str) -> std::io::Result<Pipes>;
}

/// Starts the `skiff-hv` binary at `program` with `args`; its stderr is the agent's (its log
/// lines land in the agent's log).
pub struct ProcessSpawner {
    pub program: PathBuf,
    pub args: HelperArgs,
}

impl ProcessSpawner {
    fn spawn(&self, mode: &[&str]) -> std::io::Result<Pipes> {
        let mut child = Command::new(&self.program)
            .args(mode)
            .args(self.args.to_flags())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot run {}: {e}", self.program.display()),
                )
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::other("the helper's pipes are missing"));
        };
        Ok(Pipes {
            stdin: Box::new(stdin),
            stdout: Box::new(stdout),
            child: Some(child),
        })
    }
}

impl Spawn for ProcessSpawner {
    fn serve(&self) -> std::io::Result<Pipes> {
        self.spawn(&["serve"])
    }
    fn console(&self, name: &str) -> std::io::Result<Pipes> {
        self.spawn(&["console", name])
    }
}

/// Where the helper binary is: `configured` when set; else `skiff-hv` next to the running
/// executable, or one directory up (test binaries run from `target/debug/deps`); else `skiff-hv`
/// on `PATH`.
pub fn helper_program(configured: Option<&Path>) -> PathBuf {
    if let Some(p) = configured {
        return p.to_path_buf();
    }
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(2) {
            let p = dir.join(HELPER_BIN);
            if p.is_file() {
                return p;
            }
        }
    }
    PathBuf::from(HELPER_BIN)
}

type Waiter = SyncSender<Result<Answer, HypervisorError>>;

/// One running `skiff-hv serve`.
struct Link {
    stdin: Mutex<Box<dyn Write + Send>>,
    /// Calls waiting for their reply; `None` once the helper is gone.
    pending: Mutex<Option<HashMap<u64, Waiter>>>,
    child: Mutex<Option<Child>>,
}

impl Link {
    fn alive(&self) -> bool {
        lock(&self.pending).is_some()
    }

    /// The helper is gone: every waiting call fails with [`gone`]'s error.
    fn fail_all(&self) {
        if let Some(waiting) = lock(&self.pending).take() {
            for (_, w) in waiting {
                let _ = w.send(Err(gone()));
            }
        }
    }

    fn kill(&self) {
        if let Some(mut c) = lock(&self.child).take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Current {
    link: Option<Arc<Link>>,
    started: Instant,
}

/// A [`Hypervisor`] served by a helper process (see the module documentation).
pub struct HelperHypervisor {
    spawner: Box<dyn Spawn>,
    current: Mutex<Current>,
    next_id: AtomicU64,
    kind: &'static str,
    events_tx: UnboundedSender<LifecycleEvent>,
    events_rx: Mutex<Option<UnboundedReceiver<LifecycleEvent>>>,
}

impl std::fmt::Debug for HelperHypervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HelperHypervisor")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// The `&'static str` of a kind the helper names.
fn static_kind(kind: &str) -> &'static str {
    match kind {
        "libvirt" => "libvirt",
        "fake" => "fake",
        _ => "helper",
    }
}

impl HelperHypervisor {
    /// Starts the helper and waits for its hello: an error says why it cannot serve (libvirt does
    /// not answer, the binary is missing). Blocks.
    pub fn start(spawner: Box<dyn Spawn>) -> Result<HelperHypervisor, String> {
        let (events_tx, events_rx) = unbounded_channel();
        let (link, kind) = start_link(&*spawner, &events_tx)?;
        info!(kind, "hypervisor helper started");
        Ok(HelperHypervisor {
            spawner,
            current: Mutex::new(Current {
                link: Some(link),
                started: Instant::now(),
            }),
            next_id: AtomicU64::new(1),
            kind: static_kind(&kind),
            events_tx,
            events_rx: Mutex::new(Some(events_rx)),
        })
    }

    /// The domain lifecycle events the helpers report, across restarts; the first caller gets
    /// them, later ones `None`.
    pub fn take_events(&self) -> Option<UnboundedReceiver<LifecycleEvent>> {
        lock(&self.events_rx).take()
    }

    /// The helper to send to: the running one, or a new one when it exited (at most once per
    /// [`RESTART_INTERVAL`]).
    fn link(&self) -> Result<Arc<Link>, HypervisorError> {
        let mut cur = lock(&self.current);
        if let Some(l) = &cur.link {
            if l.alive() {
                return Ok(l.clone());
            }
        }
        if cur.started.elapsed() < RESTART_INTERVAL {
            return Err(HypervisorError::Failed(format!(
                "the hypervisor helper {HELPER_BIN} exited; it is started again within a second"
            )));
        }
        cur.started = Instant::now();
        match start_link(&*self.spawner, &self.events_tx) {
            Ok((l, _)) => {
                warn!("hypervisor helper started again");
                cur.link = Some(l.clone());
                Ok(l)
            }
            Err(e) => Err(HypervisorError::Failed(format!(
                "cannot start the hypervisor helper {HELPER_BIN} again: {e}"
            ))),
        }
    }

    fn call(&self, call: Call) -> Result<Answer, HypervisorError> {
        let link = self.link()?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = sync_channel(1);
        match lock(&link.pending).as_mut() {
            Some(p) => p.insert(id, tx),
            None => return Err(gone()),
        };
        let sent = write_line(&mut *lock(&link.stdin), &Request { id, call });
        if let Err(e) = sent {
            if let Some(p) = lock(&link.pending).as_mut() {
                p.remove(&id);
            }
            return Err(HypervisorError::Failed(format!(
                "cannot reach the hypervisor helper {HELPER_BIN}: {e}"
            )));
        }
        rx.recv().unwrap_or_else(|_| Err(gone()))
    }
}

fn gone() -> HypervisorError {
    HypervisorError::Failed(format!(
        "the hypervisor helper {HELPER_BIN} exited during the call"
    ))
}

fn unexpected(a: Answer) -> HypervisorError {
    HypervisorError::Failed(format!(
        "the hypervisor helper answered {a:?} to another question"
    ))
}

/// Starts one helper, reads its hello, and starts the thread that reads its replies and events.
fn start_link(
    spawner: &dyn Spawn,
    events: &UnboundedSender<LifecycleEvent>,
) -> Result<(Arc<Link>, String), String> {
    let Pipes {
        stdin,
        stdout,
        mut child,
    } = spawner.serve().map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stdout);
    let mut line = Vec::new();
    let hello = match read_line(&mut reader, &mut line) {
        Ok(true) => serde_json::from_slice::<ToAgent>(&line)
            .map_err(|e| format!("{HELPER_BIN} said something else than hello: {e}")),
        Ok(false) => Err(format!("{HELPER_BIN} exited before it was ready")),
        Err(e) => Err(format!("cannot read from {HELPER_BIN}: {e}")),
    };
    let kind = match hello {
        Ok(ToAgent::Hello { kind }) => Ok(kind),
        Ok(ToAgent::Fatal(why)) => Err(why),
        Ok(other) => Err(format!(
            "{HELPER_BIN} began with {other:?} instead of hello"
        )),
        Err(e) => Err(e),
    }
    .inspect_err(|_| {
        if let Some(c) = child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    })?;
    let link = Arc::new(Link {
        stdin: Mutex::new(stdin),
        pending: Mutex::new(Some(HashMap::new())),
        child: Mutex::new(child),
    });
    let (l, events) = (link.clone(), events.clone());
    std::thread::Builder::new()
        .name("hv-replies".into())
        .spawn(move || read_replies(&l, reader, &events))
        .map_err(|e| format!("cannot start the thread that reads {HELPER_BIN}: {e}"))?;
    Ok((link, kind))
}

/// Hands each reply to its caller and each event to `events`, until the helper's output ends;
/// then fails what still waits and reaps the process.
fn read_replies(link: &Link, mut reader: impl BufRead, events: &UnboundedSender<LifecycleEvent>) {
    let mut line = Vec::new();
    let why = loop {
        match read_line(&mut reader, &mut line) {
            Ok(true) => {}
            Ok(false) => break "its output ended".to_string(),
            Err(e) => break format!("its output cannot be read: {e}"),
        }
        match serde_json::from_slice::<ToAgent>(&line) {
            Ok(ToAgent::Reply { id, result }) => {
                let waiter = lock(&link.pending).as_mut().and_then(|p| p.remove(&id));
                if let Some(w) = waiter {
                    let _ = w.send(result);
                }
            }
            Ok(ToAgent::Event(ev)) => {
                let _ = events.send(ev);
            }
            Ok(other) => warn!(line = ?other, "unexpected line from the hypervisor helper"),
            Err(e) => warn!(error = %e, "a line from the hypervisor helper that does not parse"),
        }
    };
    link.fail_all();
    let status = lock(&link.child).take().map(|mut c| c.wait());
    match status {
        Some(Ok(s)) => warn!(%s, reason = %why, "the hypervisor helper exited"),
        Some(Err(e)) => warn!(error = %e, reason = %why, "the hypervisor helper is gone"),
        None => {}
    }
}

impl Drop for HelperHypervisor {
    fn drop(&mut self) {
        if let Some(l) = lock(&self.current).link.take() {
            // Its stdin ends with it, so a helper that is not killed exits by itself.
            l.kill();
        }
    }
}

impl Hypervisor for HelperHypervisor {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn list(&self) -> Result<Vec<DomainInfo>, HypervisorError> {
        match self.call(Call::List)? {
            Answer::List(l) => Ok(l),
            a => Err(unexpected(a)),
        }
    }

    fn define(&self, spec: &DomainSpec) -> Result<(), HypervisorError> {
        self.done(Call::Define(Box::new(spec.clone())))
    }

    fn start(&self, name: &str) -> Result<(), HypervisorError> {
        self.done(Call::Start(name.into()))
    }

    fn shutdown(&self, name: &str, timeout: Duration) -> Result<ShutdownOutcome, HypervisorError> {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        match self.call(Call::Shutdown {
            name: name.into(),
            timeout_ms,
        })? {
            Answer::Shutdown(o) => Ok(o),
            a => Err(unexpected(a)),
        }
    }

    fn destroy(&self, name: &str) -> Result<(), HypervisorError> {
        self.done(Call::Destroy(name.into()))
    }

    fn suspend(&self, name: &str) -> Result<(), HypervisorError> {
        self.done(Call::Suspend(name.into()))
    }

    fn resume(&self, name: &str) -> Result<(), HypervisorError> {
        self.done(Call::Resume(name.into()))
    }

    fn reboot(&self, name: &str) -> Result<(), HypervisorError> {
        self.done(Call::Reboot(name.into()))
    }

    fn undefine(&self, name: &str) -> Result<(), HypervisorError> {
        self.done(Call::Undefine(name.into()))
    }

    fn console_tail(&self, name: &str, max_bytes: u64) -> Result<(String, bool), HypervisorError> {
        match self.call(Call::ConsoleTail {
            name: name.into(),
            max_bytes,
        })? {
            Answer::ConsoleTail { text, cut } => Ok((text, cut)),
            a => Err(unexpected(a)),
        }
    }

    fn open_console(&self, name: &str) -> Result<ConsoleSession, HypervisorError> {
        let Pipes {
            mut stdin,
            stdout,
            mut child,
        } = self.spawner.console(name).map_err(|e| {
            HypervisorError::Failed(format!("cannot start the console helper: {e}"))
        })?;
        let mut reader = BufReader::new(stdout);
        let mut line = Vec::new();
        let header = match read_line(&mut reader, &mut line) {
            Ok(true) => serde_json::from_slice::<Result<(), HypervisorError>>(&line)
                .unwrap_or_else(|e| {
                    Err(HypervisorError::Failed(format!(
                        "the console helper said something else: {e}"
                    )))
                }),
            Ok(false) => Err(HypervisorError::Failed(
                "the console helper exited before attaching".into(),
            )),
            Err(e) => Err(HypervisorError::Failed(format!(
                "cannot read from the console helper: {e}"
            ))),
        };
        if let Err(e) = header {
            if let Some(c) = child.as_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
            return Err(e);
        }
        let (input_tx, mut input_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(CONSOLE_QUEUE);
        let (output_tx, output_rx) = tokio::sync::mpsc::channel(CONSOLE_QUEUE);
        let spawned = std::thread::Builder::new()
            .name(format!("console-out-{name}"))
            .spawn(move || {
                pump(reader, &output_tx);
                if let Some(mut c) = child {
                    let _ = c.kill();
                    let _ = c.wait();
                }
            })
            .and_then(|_| {
                std::thread::Builder::new()
                    .name(format!("console-in-{name}"))
                    .spawn(move || {
                        while let Some(bytes) = input_rx.blocking_recv() {
                            if stdin.write_all(&bytes).and_then(|_| stdin.flush()).is_err() {
                                return;
                            }
                        }
                        // Dropping stdin detaches: the helper ends the console and exits.
                    })
            });
        spawned.map_err(|e| {
            HypervisorError::Failed(format!("cannot start the console threads: {e}"))
        })?;
        Ok(ConsoleSession {
            output: output_rx,
            input: input_tx,
        })
    }

    fn stats(&self) -> Result<Vec<DomainStats>, HypervisorError> {
        match self.call(Call::Stats)? {
            Answer::Stats(s) => Ok(s),
            a => Err(unexpected(a)),
        }
    }
}

impl HelperHypervisor {
    fn done(&self, call: Call) -> Result<(), HypervisorError> {
        match self.call(call)? {
            Answer::Done => Ok(()),
            a => Err(unexpected(a)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;

    use skiff_cluster::agentproto::DomainPower;

    use super::*;
    use crate::compute::fake::FakeHypervisor;
    use crate::compute::helper::server;
    use crate::compute::libvirt_events::LifecycleKind;

    /// Runs helpers on threads over socket pairs, all serving one fake (so, like libvirt, what
    /// was defined outlives a helper).
    struct ThreadSpawner {
        fake: Arc<FakeHypervisor>,
        events: Mutex<Option<UnboundedReceiver<LifecycleEvent>>>,
        /// The helper ends of the `serve` links started, to cut them (a helper that dies).
        helpers: Mutex<Vec<UnixStream>>,
        fatal: Option<String>,
    }

    impl ThreadSpawner {
        fn new(fake: Arc<FakeHypervisor>) -> (Arc<Self>, UnboundedSender<LifecycleEvent>) {
            let (tx, rx) = unbounded_channel();
            let s = Arc::new(ThreadSpawner {
                fake,
                events: Mutex::new(Some(rx)),
                helpers: Mutex::new(Vec::new()),
                fatal: None,
            });
            (s, tx)
        }

        fn kill_helpers(&self) {
            for s in lock(&self.helpers).drain(..) {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }

        fn pair() -> std::io::Result<(Pipes, UnixStream)> {
            let (agent, helper) = UnixStream::pair()?;
            let pipes = Pipes {
                stdin: Box::new(agent.try_clone()?),
                stdout: Box::new(agent),
                child: None,
            };
            Ok((pipes, helper))
        }
    }

    impl Spawn for Arc<ThreadSpawner> {
        fn serve(&self) -> std::io::Result<Pipes> {
            let (pipes, helper) = ThreadSpawner::pair()?;
            lock(&self.helpers).push(helper.try_clone()?);
            let input = BufReader::new(helper.try_clone()?);
            if let Some(why) = &self.fatal {
                let mut out = helper;
                write_line(&mut out, &ToAgent::Fatal(why.clone()))?;
                return Ok(pipes);
            }
            let h: Arc<dyn Hypervisor> = self.fake.clone();
            let events = lock(&self.events).take();
            std::thread::spawn(move || server::serve(h, events, input, helper));
            Ok(pipes)
        }

        fn console(&self, name: &str) -> std::io::Result<Pipes> {
            let (pipes, helper) = ThreadSpawner::pair()?;
            let (fake, name) = (self.fake.clone(), name.to_string());
            let input = helper.try_clone()?;
            let end = helper.try_clone()?;
            std::thread::spawn(move || {
                let _ = server::console(&*fake, &name, input, helper);
                // A helper process exits here, closing its ends; a thread must say so.
                let _ = end.shutdown(std::net::Shutdown::Both);
            });
            Ok(pipes)
        }
    }

    fn spec(name: &str) -> DomainSpec {
        DomainSpec {
            ha: true,
            disk_paths: vec![PathBuf::from("/pools/local/web-disk0.qcow2")],
            ..crate::compute::fake::tests::spec(name, 3)
        }
    }

    #[test]
    fn calls_answers_and_errors_cross_the_helper() {
        let fake = Arc::new(FakeHypervisor::new());
        let (spawner, _events) = ThreadSpawner::new(fake.clone());
        let h = HelperHypervisor::start(Box::new(spawner)).unwrap();
        assert_eq!(h.kind(), "fake");

        assert_eq!(h.start("web"), Err(HypervisorError::NotFound("web".into())));
        h.define(&spec("web")).unwrap();
        assert_eq!(fake.spec("web"), Some(spec("web")));
        h.start("web").unwrap();
        let listed = h.list().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].power, listed[0].generation, listed[0].ha),
            (DomainPower::Running, 3, true)
        );
        assert!(matches!(
            h.start("web"),
            Err(HypervisorError::InvalidState { power: DomainPower::Running, op, .. }) if op == "start"
        ));
        fake.add_usage("web", 5_000, 7);
        let stats = h.stats().unwrap();
        assert_eq!((stats[0].cpu_time_ns, stats[0].disk_read_bytes), (5_000, 7));
        fake.write_console("web", "booted\n");
        assert_eq!(
            h.console_tail("web", 100).unwrap(),
            ("booted\n".into(), false)
        );
        h.suspend("web").unwrap();
        h.resume("web").unwrap();
        h.reboot("web").unwrap();
        assert_eq!(
            h.shutdown("web", Duration::from_millis(50)).unwrap(),
            ShutdownOutcome::Graceful
        );
        fake.fail_next("undefine");
        assert!(matches!(h.undefine("web"), Err(HypervisorError::Failed(_))));
        h.undefine("web").unwrap();
        assert!(h.list().unwrap().is_empty());
        h.destroy("web").unwrap_err();
    }

    #[test]
    fn calls_run_side_by_side() {
        let fake = Arc::new(FakeHypervisor::new());
        let (spawner, _events) = ThreadSpawner::new(fake.clone());
        let h = Arc::new(HelperHypervisor::start(Box::new(spawner)).unwrap());
        for n in ["a", "b", "c", "d"] {
            h.define(&spec(n)).unwrap();
        }
        fake.set_delay(Duration::from_millis(300));
        let started = Instant::now();
        let threads: Vec<_> = ["a", "b", "c", "d"]
            .into_iter()
            .map(|n| {
                let h = h.clone();
                std::thread::spawn(move || h.start(n))
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        // One after the other would take 1.2 s.
        assert!(
            started.elapsed() < Duration::from_millis(1100),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_helper_that_dies_fails_its_calls_and_is_started_again() {
        let fake = Arc::new(FakeHypervisor::new());
        let (spawner, _events) = ThreadSpawner::new(fake.clone());
        let h = Arc::new(HelperHypervisor::start(Box::new(spawner.clone())).unwrap());
        h.define(&spec("web")).unwrap();
        fake.set_delay(Duration::from_millis(500));
        let slow = {
            let h = h.clone();
            std::thread::spawn(move || h.start("web"))
        };
        std::thread::sleep(Duration::from_millis(150));
        spawner.kill_helpers();
        let r = slow.join().unwrap();
        assert!(
            matches!(&r, Err(HypervisorError::Failed(m)) if m.contains("exited")),
            "{r:?}"
        );
        fake.set_delay(Duration::ZERO);
        std::thread::sleep(RESTART_INTERVAL);
        // A new helper answers, and the hypervisor kept what it had.
        assert_eq!(h.list().unwrap().len(), 1);
        assert_eq!(lock(&spawner.helpers).len(), 1);
    }

    #[test]
    fn a_helper_that_cannot_serve_says_why() {
        let fake = Arc::new(FakeHypervisor::new());
        let spawner = Arc::new(ThreadSpawner {
            fake,
            events: Mutex::new(None),
            helpers: Mutex::new(Vec::new()),
            fatal: Some("cannot connect to qemu:///system: no libvirtd".into()),
        });
        let e = HelperHypervisor::start(Box::new(spawner)).unwrap_err();
        assert_eq!(e, "cannot connect to qemu:///system: no libvirtd");
    }

    #[test]
    fn events_reach_the_agent() {
        let fake = Arc::new(FakeHypervisor::new());
        let (spawner, events) = ThreadSpawner::new(fake);
        let h = HelperHypervisor::start(Box::new(spawner)).unwrap();
        let mut rx = h.take_events().unwrap();
        assert!(h.take_events().is_none());
        let ev = LifecycleEvent {
            domain: "web".into(),
            event: LifecycleKind::Started,
            detail: 0,
        };
        events.send(ev.clone()).unwrap();
        assert_eq!(rx.blocking_recv(), Some(ev));
    }

    #[test]
    fn consoles_go_through_a_helper_of_their_own() {
        let fake = Arc::new(FakeHypervisor::new());
        let (spawner, _events) = ThreadSpawner::new(fake.clone());
        let h = HelperHypervisor::start(Box::new(spawner)).unwrap();
        h.define(&spec("web")).unwrap();
        assert!(matches!(
            h.open_console("web"),
            Err(HypervisorError::InvalidState {
                power: DomainPower::Shutoff,
                ..
            })
        ));
        assert_eq!(
            h.open_console("nope").unwrap_err(),
            HypervisorError::NotFound("nope".into())
        );
        h.start("web").unwrap();
        let mut session = h.open_console("web").unwrap();
        session.input.blocking_send(b"echo hi\r".to_vec()).unwrap();
        let mut seen = Vec::new();
        while !String::from_utf8_lossy(&seen).contains("hi\r\n") {
            seen.extend(session.output.blocking_recv().expect("console output"));
        }
        // The domain stops: the console ends.
        h.destroy("web").unwrap();
        while session.output.blocking_recv().is_some() {}
    }
}
