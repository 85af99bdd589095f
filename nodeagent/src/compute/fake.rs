//! `FakeHypervisor`: an in-memory stand-in for a hypervisor. Nothing runs: it only remembers
//! definitions and power states, and forgets everything when the agent restarts (like a machine
//! that lost its domains). It serves unit and cluster tests, and nodes with `[compute] enabled`
//! until the compute issue brings the libvirt hypervisor. Tests can inject failures and guests
//! that ignore ACPI, and crash domains.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use skiff_cluster::agentproto::DomainPower;

use super::{DomainInfo, DomainSpec, DomainStats, Hypervisor, HypervisorError, ShutdownOutcome};

#[derive(Clone, Debug)]
struct FakeDomain {
    spec: DomainSpec,
    power: DomainPower,
    /// CPU time (ns) and bytes read, as tests make the "guest" use them.
    cpu_time_ns: u64,
    disk_read_bytes: u64,
    /// What the "guest" wrote on its console (tests).
    console: Vec<u8>,
}

#[derive(Default)]
struct Inner {
    domains: BTreeMap<String, FakeDomain>,
    /// Operations that fail once, by name (`start`, `define`...).
    fail_next: Vec<&'static str>,
    /// Guests that ignore ACPI shutdown requests.
    ignore_acpi: bool,
    /// Every operation that changed something, in order (`start web`...).
    journal: Vec<String>,
    /// How long each change takes (the calling thread sleeps), to test work interrupted midway.
    delay: Duration,
}

/// The in-memory fake hypervisor (see the module documentation).
#[derive(Default)]
pub struct FakeHypervisor {
    /// Shared with the threads of attached consoles.
    inner: Arc<Mutex<Inner>>,
}

impl FakeHypervisor {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        with_inner(&self.inner, f)
    }

    /// Makes the next call of `op` fail (tests).
    pub fn fail_next(&self, op: &'static str) {
        self.with(|i| i.fail_next.push(op));
    }

    /// Makes guests ignore ACPI shutdown, so shutdowns end forced (tests).
    pub fn set_ignore_acpi(&self, ignore: bool) {
        self.with(|i| i.ignore_acpi = ignore);
    }

    /// Makes every change take `delay` (tests of interrupted work).
    pub fn set_delay(&self, delay: Duration) {
        self.with(|i| i.delay = delay);
    }

    fn pause(&self) {
        let d = self.with(|i| i.delay);
        if !d.is_zero() {
            std::thread::sleep(d);
        }
    }

    /// Makes a running domain use `cpu_ns` of CPU and read `read_bytes` from its disks (tests).
    pub fn add_usage(&self, name: &str, cpu_ns: u64, read_bytes: u64) {
        self.with(|i| {
            if let Some(d) = i.domains.get_mut(name) {
                d.cpu_time_ns += cpu_ns;
                d.disk_read_bytes += read_bytes;
            }
        });
    }

    /// Makes the "guest" write `text` on its serial console (tests).
    pub fn write_console(&self, name: &str, text: &str) {
        self.with(|i| {
            if let Some(d) = i.domains.get_mut(name) {
                d.console.extend_from_slice(text.as_bytes());
            }
        });
    }

    /// Makes a domain crash, as a guest fault would (tests).
    pub fn crash(&self, name: &str) {
        self.with(|i| {
            if let Some(d) = i.domains.get_mut(name) {
                d.power = DomainPower::Crashed;
            }
        });
    }

    /// Every change so far, e.g. `["define web 1", "start web"]`.
    pub fn journal(&self) -> Vec<String> {
        self.with(|i| i.journal.clone())
    }

    /// The definition of a domain.
    pub fn spec(&self, name: &str) -> Option<DomainSpec> {
        self.with(|i| i.domains.get(name).map(|d| d.spec.clone()))
    }

    /// Looks up the domain, checks an injected failure and the power states `op` applies to, then
    /// sets its new power state.
    fn transition(
        &self,
        op: &'static str,
        name: &str,
        from: &[DomainPower],
        to: DomainPower,
    ) -> Result<(), HypervisorError> {
        self.pause();
        self.with(|i| {
            take_failure(i, op)?;
            let d = i
                .domains
                .get_mut(name)
                .ok_or_else(|| HypervisorError::NotFound(name.to_string()))?;
            if !from.contains(&d.power) {
                return Err(HypervisorError::InvalidState {
                    name: name.to_string(),
                    power: d.power,
                    op: op.into(),
                });
            }
            d.power = to;
            i.journal.push(format!("{op} {name}"));
            Ok(())
        })
    }
}

fn with_inner<T>(inner: &Mutex<Inner>, f: impl FnOnce(&mut Inner) -> T) -> T {
    let mut g = match inner.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    f(&mut g)
}

/// How often a fake console looks for typed bytes and at its domain's power state.
const CONSOLE_TICK: Duration = Duration::from_millis(10);

/// The "guest" behind a fake console: echoes what is typed, like a terminal in cooked mode, and
/// on a carriage return answers like the busybox test guest's shell would: `echo WORDS` prints
/// the words (with `$((A*B))` and `$((A+B))` worked out), anything else is not found; then a
/// `# ` prompt. ctrl-C drops the line being typed. Everything it writes is kept in the console log too. Ends when the input is
/// dropped, the reader is gone, or the domain stops running.
fn fake_console(
    inner: Arc<Mutex<Inner>>,
    name: String,
    mut input: tokio::sync::mpsc::Receiver<Vec<u8>>,
    output: tokio::sync::mpsc::Sender<Vec<u8>>,
) {
    use tokio::sync::mpsc::error::TryRecvError;
    let mut line: Vec<u8> = Vec::new();
    loop {
        let running = with_inner(&inner, |i| {
            i.domains.get(&name).map(|d| d.power) == Some(DomainPower::Running)
        });
        if !running || output.is_closed() {
            return;
        }
        let typed = match input.try_recv() {
            Ok(b) => b,
            Err(TryRecvError::Empty) => {
                std::thread::sleep(CONSOLE_TICK);
                continue;
            }
            Err(TryRecvError::Disconnected) => return,
        };
        let mut out = Vec::new();
        for b in typed {
            match b {
                b'\r' | b'\n' => {
                    out.extend_from_slice(b"\r\n");
                    let text = String::from_utf8_lossy(&line).trim().to_string();
                    line.clear();
                    if let Some(words) = text.strip_prefix("echo ") {
                        out.extend_from_slice(expand(words).as_bytes());
                        out.extend_from_slice(b"\r\n");
                    } else if !text.is_empty() {
                        let cmd = text.split_whitespace().next().unwrap_or_default();
                        out.extend_from_slice(format!("sh: {cmd}: not found\r\n").as_bytes());
                    }
                    out.extend_from_slice(b"# ");
                }
                // ctrl-C drops the line, as a tty's line discipline and the shell do.
                0x03 => {
                    line.clear();
                    out.extend_from_slice(b"^C\r\n# ");
                }
                // Backspace and delete rub out the last character.
                0x08 | 0x7f => {
                    if line.pop().is_some() {
                        out.extend_from_slice(b"\x08 \x08");
                    }
                }
                b => {
                    // A line longer than a terminal's is cut, as a tty would.
                    if line.len() < 4096 {
                        line.push(b);
                        out.push(b);
                    }
                }
            }
        }
        with_inner(&inner, |i| {
            if let Some(d) = i.domains.get_mut(&name) {
                d.console.extend_from_slice(&out);
            }
        });
        if !out.is_empty() && output.blocking_send(out).is_err() {
            return;
        }
    }
}

/// `echo`'s words with `$((A*B))` and `$((A+B))` worked out (what the test shell command uses).
fn expand(words: &str) -> String {
    let mut out = String::new();
    let mut rest = words;
    while let Some(start) = rest.find("$((") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 3..];
        let Some(end) = after.find("))") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let expr = &after[..end];
        let value = expr
            .split_once('*')
            .map(|(a, b)| (a, b, '*'))
            .or_else(|| expr.split_once('+').map(|(a, b)| (a, b, '+')))
            .and_then(|(a, b, op)| {
                let (a, b) = (a.trim().parse::<i64>().ok()?, b.trim().parse::<i64>().ok()?);
                if op == '*' {
                    a.checked_mul(b)
                } else {
                    a.checked_add(b)
                }
            });
        match value {
            Some(v) => out.push_str(&v.to_string()),
            None => out.push('0'),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

fn take_failure(i: &mut Inner, op: &'static str) -> Result<(), HypervisorError> {
    if let Some(pos) = i.fail_next.iter().position(|o| *o == op) {
        i.fail_next.remove(pos);
        return Err(HypervisorError::Failed(format!("injected failure of {op}")));
    }
    Ok(())
}

use DomainPower::{Crashed, Paused, Running, Shutoff};

impl Hypervisor for FakeHypervisor {
    fn kind(&self) -> &'static str {
        "fake"
    }

    fn list(&self) -> Result<Vec<DomainInfo>, HypervisorError> {
        self.with(|i| {
            take_failure(i, "list")?;
            Ok(i.domains
                .iter()
                .map(|(name, d)| DomainInfo {
                    name: name.clone(),
                    power: d.power,
                    generation: d.spec.generation,
                    ha: d.spec.ha,
                })
                .collect())
        })
    }

    fn define(&self, spec: &DomainSpec) -> Result<(), HypervisorError> {
        self.pause();
        self.with(|i| {
            take_failure(i, "define")?;
            i.journal
                .push(format!("define {} {}", spec.name, spec.generation));
            match i.domains.get_mut(&spec.name) {
                Some(d) => d.spec = spec.clone(),
                None => {
                    i.domains.insert(
                        spec.name.clone(),
                        FakeDomain {
                            spec: spec.clone(),
                            power: Shutoff,
                            cpu_time_ns: 0,
                            disk_read_bytes: 0,
                            console: Vec::new(),
                        },
                    );
                }
            }
            Ok(())
        })
    }

    fn start(&self, name: &str) -> Result<(), HypervisorError> {
        self.transition("start", name, &[Shutoff, Crashed], Running)
    }

    fn shutdown(&self, name: &str, _timeout: Duration) -> Result<ShutdownOutcome, HypervisorError> {
        // A fake guest either obeys at once or never: no need to wait out the timeout.
        let forced = self.with(|i| i.ignore_acpi);
        self.transition("shutdown", name, &[Running], Shutoff)?;
        Ok(if forced {
            ShutdownOutcome::Forced
        } else {
            ShutdownOutcome::Graceful
        })
    }

    fn destroy(&self, name: &str) -> Result<(), HypervisorError> {
        self.transition("destroy", name, &[Running, Paused, Crashed], Shutoff)
    }

    fn suspend(&self, name: &str) -> Result<(), HypervisorError> {
        self.transition("suspend", name, &[Running], Paused)
    }

    fn resume(&self, name: &str) -> Result<(), HypervisorError> {
        self.transition("resume", name, &[Paused], Running)
    }

    fn reboot(&self, name: &str) -> Result<(), HypervisorError> {
        self.transition("reboot", name, &[Running], Running)
    }

    fn console_tail(&self, name: &str, max_bytes: u64) -> Result<(String, bool), HypervisorError> {
        self.with(|i| {
            let d = i
                .domains
                .get(name)
                .ok_or_else(|| HypervisorError::NotFound(name.to_string()))?;
            Ok(super::tail_text(&d.console, max_bytes))
        })
    }

    fn open_console(&self, name: &str) -> Result<super::ConsoleSession, HypervisorError> {
        self.with(|i| {
            take_failure(i, "open_console")?;
            let d = i
                .domains
                .get(name)
                .ok_or_else(|| HypervisorError::NotFound(name.to_string()))?;
            if d.power != Running {
                return Err(HypervisorError::InvalidState {
                    name: name.to_string(),
                    power: d.power,
                    op: "attach to the console of".into(),
                });
            }
            Ok(())
        })?;
        let (input_tx, input_rx) = tokio::sync::mpsc::channel(super::CONSOLE_QUEUE);
        let (output_tx, output_rx) = tokio::sync::mpsc::channel(super::CONSOLE_QUEUE);
        let (inner, n) = (self.inner.clone(), name.to_string());
        std::thread::Builder::new()
            .name(format!("console-{name}"))
            .spawn(move || fake_console(inner, n, input_rx, output_tx))
            .map_err(|e| HypervisorError::Failed(format!("cannot start the console: {e}")))?;
        Ok(super::ConsoleSession {
            output: output_rx,
            input: input_tx,
        })
    }

    fn stats(&self) -> Result<Vec<DomainStats>, HypervisorError> {
        self.with(|i| {
            take_failure(i, "stats")?;
            Ok(i.domains
                .iter()
                .filter(|(_, d)| d.power == Running)
                .map(|(name, d)| DomainStats {
                    name: name.clone(),
                    cpu_time_ns: d.cpu_time_ns,
                    memory_kib: d.spec.memory_mib * 1024,
                    disk_read_bytes: d.disk_read_bytes,
                    ..Default::default()
                })
                .collect())
        })
    }

    fn undefine(&self, name: &str) -> Result<(), HypervisorError> {
        self.with(|i| {
            take_failure(i, "undefine")?;
            let d = i
                .domains
                .get(name)
                .ok_or_else(|| HypervisorError::NotFound(name.to_string()))?;
            if d.power != Shutoff {
                return Err(HypervisorError::InvalidState {
                    name: name.to_string(),
                    power: d.power,
                    op: "undefine".into(),
                });
            }
            i.domains.remove(name);
            i.journal.push(format!("undefine {name}"));
            Ok(())
        })
    }
}

type Registry = Mutex<HashMap<PathBuf, Arc<FakeHypervisor>>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// Records the fake of the node running from `data_dir` (replacing the one of an earlier start),
/// so in-process tests can look at it.
pub(super) fn register(data_dir: &Path, fake: Arc<FakeHypervisor>) {
    if let Ok(mut r) = registry().lock() {
        r.insert(data_dir.to_path_buf(), fake);
    }
}

/// The fake hypervisor of the node last started from `data_dir` in this process (tests).
pub fn for_data_dir(data_dir: &Path) -> Option<Arc<FakeHypervisor>> {
    registry().lock().ok()?.get(data_dir).cloned()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small domain spec (tests of other modules use it too).
    pub(crate) fn spec(name: &str, generation: u64) -> DomainSpec {
        DomainSpec {
            name: name.into(),
            memory_mib: 256,
            vcpus: 1,
            disks: Vec::new(),
            nics: Vec::new(),
            boot_order: Vec::new(),
            iso: None,
            generation,
            ha: false,
            disk_paths: Vec::new(),
            direct_boot: None,
        }
    }

    fn power(h: &FakeHypervisor, name: &str) -> Option<DomainPower> {
        h.list()
            .unwrap()
            .into_iter()
            .find(|d| d.name == name)
            .map(|d| d.power)
    }

    #[test]
    fn lifecycle() {
        let h = FakeHypervisor::new();
        assert_eq!(h.start("a"), Err(HypervisorError::NotFound("a".into())));
        h.define(&spec("a", 1)).unwrap();
        assert_eq!(power(&h, "a"), Some(Shutoff));
        h.start("a").unwrap();
        assert!(matches!(
            h.start("a"),
            Err(HypervisorError::InvalidState { op, .. }) if op == "start"
        ));
        h.suspend("a").unwrap();
        assert_eq!(power(&h, "a"), Some(Paused));
        assert!(h.reboot("a").is_err());
        h.resume("a").unwrap();
        h.reboot("a").unwrap();
        assert!(h.undefine("a").is_err(), "a running domain stays defined");
        assert_eq!(
            h.shutdown("a", Duration::from_secs(1)),
            Ok(ShutdownOutcome::Graceful)
        );
        h.start("a").unwrap();
        h.set_ignore_acpi(true);
        assert_eq!(
            h.shutdown("a", Duration::from_secs(1)),
            Ok(ShutdownOutcome::Forced)
        );
        // Redefining keeps the power state and updates the generation.
        h.define(&spec("a", 2)).unwrap();
        assert_eq!(h.list().unwrap()[0].generation, 2);
        h.start("a").unwrap();
        h.crash("a");
        assert_eq!(power(&h, "a"), Some(Crashed));
        h.destroy("a").unwrap();
        h.undefine("a").unwrap();
        assert!(h.list().unwrap().is_empty());
        assert_eq!(h.journal().first().map(String::as_str), Some("define a 1"));
    }

    #[test]
    fn the_fake_console_echoes_and_answers() {
        let h = FakeHypervisor::new();
        h.define(&spec("a", 1)).unwrap();
        assert!(matches!(
            h.open_console("a"),
            Err(HypervisorError::InvalidState { .. })
        ));
        assert!(matches!(
            h.open_console("b"),
            Err(HypervisorError::NotFound(_))
        ));
        h.start("a").unwrap();
        let mut s = h.open_console("a").unwrap();
        s.input
            .blocking_send(b"echo skiff-$((6*7))\r".to_vec())
            .unwrap();
        let mut seen = Vec::new();
        while !String::from_utf8_lossy(&seen).contains("# ") {
            seen.extend(s.output.blocking_recv().expect("output"));
        }
        let text = String::from_utf8_lossy(&seen);
        assert!(
            text.contains("echo skiff-$((6*7))\r\nskiff-42\r\n# "),
            "{text:?}"
        );
        assert!(h.console_tail("a", 1024).unwrap().0.contains("skiff-42"));
        // The console closes when the domain stops.
        h.destroy("a").unwrap();
        assert!(s.output.blocking_recv().is_none());
        assert_eq!(expand("x $((2+3)) $((a*b)) $((1"), "x 5 0 $((1");
    }

    #[test]
    fn injected_failures_happen_once() {
        let h = FakeHypervisor::new();
        h.define(&spec("a", 1)).unwrap();
        h.fail_next("start");
        assert!(matches!(h.start("a"), Err(HypervisorError::Failed(_))));
        assert_eq!(
            power(&h, "a"),
            Some(Shutoff),
            "a failed start changes nothing"
        );
        h.start("a").unwrap();
    }
}
