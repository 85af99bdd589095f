//! The libvirt hypervisor: [`LibvirtHypervisor`] drives QEMU (KVM or TCG) through libvirt with
//! the `virt` crate. Domains are defined from typed specs ([`super::domain_xml`]) and marked with
//! Skiff's metadata; every other domain on the host is invisible to it (never listed, never
//! touched, never replaced). Each domain's serial console is logged to a file under the
//! hypervisor's log directory.
//!
//! Every call blocks on libvirt (the trait says so): call it from `spawn_blocking`.
//!
//! Two-way consoles ([`Hypervisor::open_console`]) use a non-blocking libvirt stream, shuttled by
//! a thread of their own. Non-blocking streams of a remote connection only receive data while an
//! event loop runs, so the first connection registers libvirt's default event loop and runs it on
//! a thread (`libvirt-events`) for the life of the process ([`super::libvirt_events`], which also
//! delivers domain lifecycle events).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use skiff_cluster::agentproto::DomainPower;
use skiff_cluster::config::Accelerator;
use virt::connect::Connect;
use virt::domain::{Domain, DomainShutoffReason, DomainState, DomainStateReason};
use virt::enumutil::Enum;
use virt::error::{Error as VirtError, ErrorNumber};

use super::domain_xml::{self, DomainType, DomainXmlOptions, SKIFF_XMLNS};
use super::{DomainInfo, DomainSpec, DomainStats, Hypervisor, HypervisorError, ShutdownOutcome};

/// How often [`Hypervisor::shutdown`] looks at the domain while it waits for the guest.
const SHUTDOWN_POLL: Duration = Duration::from_millis(100);

/// How long a console thread sleeps when nothing moved either way.
const CONSOLE_IDLE: Duration = Duration::from_millis(15);

/// Registers libvirt's default event loop and runs it, once per process, before the first
/// connection is opened (connections opened earlier would not use it); says once when it cannot.
fn ensure_event_loop() {
    static WARNED: std::sync::Once = std::sync::Once::new();
    if let Err(e) = super::libvirt_events::ensure_event_loop() {
        WARNED.call_once(|| {
            tracing::warn!(error = %e, "cannot register libvirt's event loop: two-way consoles will not receive output");
        });
    }
}

/// Why [`LibvirtHypervisor::connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// libvirt refused or the daemon is not reachable.
    #[error("cannot connect to libvirt at {uri}: {message} (is libvirtd running? start it with `libvirtd -d` after `virtlogd -d`)")]
    Libvirt { uri: String, message: String },
    /// The console log directory cannot be created.
    #[error("cannot create the console log directory {path}: {source}")]
    LogDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A [`Hypervisor`] backed by a libvirt connection (see the module documentation).
pub struct LibvirtHypervisor {
    conn: Connect,
    uri: String,
    domain_type: DomainType,
    log_dir: PathBuf,
}

impl std::fmt::Debug for LibvirtHypervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibvirtHypervisor")
            .field("uri", &self.uri)
            .field("domain_type", &self.domain_type)
            .field("log_dir", &self.log_dir)
            .finish()
    }
}

impl LibvirtHypervisor {
    /// Connects to libvirt at `uri` (`qemu:///system`; `test:///default` for unit tests, whose
    /// domains get type `test`). `accelerator` picks the domain type of QEMU guests; serial
    /// consoles are logged under `log_dir`, which is created when missing.
    pub fn connect(
        uri: &str,
        accelerator: Accelerator,
        log_dir: &Path,
    ) -> Result<Self, ConnectError> {
        // libvirt's default error handler prints every error on stderr, including the expected
        // ones (a missing domain); errors reach us as values anyway.
        virt::error::clear_error_callback();
        std::fs::create_dir_all(log_dir).map_err(|source| ConnectError::LogDir {
            path: log_dir.to_path_buf(),
            source,
        })?;
        // Absolute: the path goes into domain XML, read by virtlogd, not by us.
        let log_dir = std::fs::canonicalize(log_dir).map_err(|source| ConnectError::LogDir {
            path: log_dir.to_path_buf(),
            source,
        })?;
        let libvirt_err = |e: VirtError| ConnectError::Libvirt {
            uri: uri.to_string(),
            message: e.to_string(),
        };
        ensure_event_loop();
        let conn = Connect::open(Some(uri)).map_err(libvirt_err)?;
        let driver = conn.driver_type().map_err(libvirt_err)?;
        let domain_type = if driver.eq_ignore_ascii_case("test") {
            DomainType::Test
        } else {
            DomainType::from_accelerator(accelerator)
        };
        Ok(LibvirtHypervisor {
            conn,
            uri: uri.to_string(),
            domain_type,
            log_dir,
        })
    }

    /// The domain type guests are defined with.
    pub fn domain_type(&self) -> DomainType {
        self.domain_type
    }

    /// The file domain `name`'s serial console is logged to (rewritten at each start).
    pub fn console_log(&self, name: &str) -> Result<PathBuf, HypervisorError> {
        domain_xml::validate_name(name).map_err(|_| HypervisorError::NotFound(name.into()))?;
        Ok(domain_xml::console_log_path(&self.log_dir, name))
    }

    /// Looks up a Skiff-managed domain; unmanaged ones are reported as missing.
    fn managed(&self, name: &str) -> Result<Domain, HypervisorError> {
        // An invalid name cannot be one of ours (and could not cross the C boundary if it held NUL).
        domain_xml::validate_name(name).map_err(|_| HypervisorError::NotFound(name.into()))?;
        let dom = self
            .conn
            .lookup_domain_by_name(name)
            .map_err(|e| map_err(name, "look up", None, e))?;
        match generation(&dom) {
            Ok(Some(_)) => Ok(dom),
            Ok(None) => Err(HypervisorError::NotFound(name.into())),
            Err(e) => Err(map_err(name, "read metadata of", None, e)),
        }
    }

    /// Runs `act` on a managed domain when its power state is one of `from`.
    fn transition(
        &self,
        op: &'static str,
        name: &str,
        from: &[DomainPower],
        act: impl FnOnce(&Domain) -> Result<(), VirtError>,
    ) -> Result<(), HypervisorError> {
        let dom = self.managed(name)?;
        let power = power_of(&dom).map_err(|e| map_err(name, op, None, e))?;
        if !from.contains(&power) {
            return Err(HypervisorError::InvalidState {
                name: name.into(),
                power,
                op: op.into(),
            });
        }
        act(&dom).map_err(|e| map_err(name, op, Some(&dom), e))
    }
}

/// Moves bytes between a libvirt console stream and a [`super::ConsoleSession`]'s channels until
/// the stream ends (EOF or error: the domain stopped, another session took the console over), the
/// input channel is dropped (detach) or the reader of the output is gone. Polls both ways, and
/// sleeps [`CONSOLE_IDLE`] when nothing moved. Finishes the stream on a detach, aborts it on
/// failure.
fn shuttle_console(
    name: &str,
    stream: virt::stream::Stream,
    mut input: tokio::sync::mpsc::Receiver<Vec<u8>>,
    output: tokio::sync::mpsc::Sender<Vec<u8>>,
) {
    use tokio::sync::mpsc::error::{TryRecvError, TrySendError};
    let mut buf = vec![0u8; super::CONSOLE_CHUNK];
    // Output read from the stream that the reader has no room for yet.
    let mut held: Option<Vec<u8>> = None;
    // Typed bytes not written to the stream yet.
    let mut typed: Vec<u8> = Vec::new();
    let end = loop {
        let mut moved = false;
        // Typing: take more only once what was taken is written.
        if typed.is_empty() {
            match input.try_recv() {
                Ok(b) => typed = b,
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => break Ok(()),
            }
        }
        if !typed.is_empty() {
            match stream.send(&typed) {
                Ok(n) if n > 0 => {
                    let n = usize::try_from(n).unwrap_or(0).min(typed.len());
                    typed.drain(..n);
                    moved = true;
                }
                // -2: the stream cannot take more now.
                Ok(_) => {}
                Err(e) => break Err(e.to_string()),
            }
        }
        // Output: read more only once the reader took what was read.
        if let Some(chunk) = held.take() {
            match output.try_send(chunk) {
                Ok(()) => moved = true,
                Err(TrySendError::Full(chunk)) => held = Some(chunk),
                Err(TrySendError::Closed(_)) => break Ok(()),
            }
        }
        if held.is_none() {
            match stream.recv(&mut buf) {
                Ok(0) => break Err("the console closed".into()),
                Ok(n) if n > 0 => {
                    let n = usize::try_from(n).unwrap_or(0).min(buf.len());
                    held = Some(buf[..n].to_vec());
                    moved = true;
                }
                // -2: nothing to read now.
                Ok(_) => {}
                Err(e) => break Err(e.to_string()),
            }
        }
        if output.is_closed() {
            break Ok(());
        }
        if !moved {
            std::thread::sleep(CONSOLE_IDLE);
        }
    };
    // What was read before the end still reaches a reader that is there.
    if let Some(chunk) = held {
        let _ = output.try_send(chunk);
    }
    match end {
        Ok(()) => {
            if let Err(e) = stream.finish() {
                tracing::debug!(server = %name, error = %e, "finishing the console stream");
            }
        }
        Err(reason) => {
            tracing::debug!(server = %name, %reason, "console stream ended");
            let _ = stream.abort();
        }
    }
}

/// Skiff's generation in a domain's persistent metadata; `None` when it is not Skiff's.
fn generation(dom: &Domain) -> Result<Option<u64>, VirtError> {
    Ok(skiff_metadata(dom)?.map(|(generation, _)| generation))
}

/// Skiff's generation and HA flag in a domain's persistent metadata; `None` when it is not
/// Skiff's.
fn skiff_metadata(dom: &Domain) -> Result<Option<(u64, bool)>, VirtError> {
    if !dom.is_persistent()? {
        return Ok(None);
    }
    match dom.metadata(
        virt::sys::VIR_DOMAIN_METADATA_ELEMENT as i32,
        Some(SKIFF_XMLNS),
        virt::sys::VIR_DOMAIN_AFFECT_CONFIG,
    ) {
        Ok(xml) => Ok(domain_xml::parse_generation(&xml).map(|g| (g, domain_xml::parse_ha(&xml)))),
        Err(e) if e.code() == Enum::Known(ErrorNumber::NoDomainMetadata) => Ok(None),
        Err(e) => Err(e),
    }
}

/// What `list` reports of a domain; `None` when it is not Skiff's.
fn managed_info(dom: &Domain) -> Result<Option<DomainInfo>, VirtError> {
    let Some((generation, ha)) = skiff_metadata(dom)? else {
        return Ok(None);
    };
    Ok(Some(DomainInfo {
        name: dom.name()?,
        power: power_of(dom)?,
        generation,
        ha,
    }))
}

/// The counters of a running managed domain: CPU time and memory from its info, bytes read and
/// written summed over its disks (`vda`, `vdb`... as the domain XML names them).
fn domain_stats(dom: &Domain) -> Result<Option<DomainStats>, VirtError> {
    if skiff_metadata(dom)?.is_none() || !dom.is_active()? {
        return Ok(None);
    }
    let info = dom.info()?;
    let mut s = DomainStats {
        name: dom.name()?,
        cpu_time_ns: info.cpu_time,
        memory_kib: info.memory,
        ..Default::default()
    };
    let xml = dom.xml_desc(0)?;
    for dev in disk_targets(&xml) {
        if let Ok(b) = dom.block_stats(&dev) {
            s.disk_read_bytes += u64::try_from(b.rd_bytes).unwrap_or(0);
            s.disk_write_bytes += u64::try_from(b.wr_bytes).unwrap_or(0);
        }
    }
    Ok(Some(s))
}

/// The `vdX` disk targets in a domain's XML.
fn disk_targets(xml: &str) -> Vec<String> {
    xml.match_indices("<target dev=")
        .filter_map(|(i, m)| {
            let rest = xml.get(i + m.len() + 1..)?;
            let end = rest.find(['\'', '"'])?;
            let dev = rest.get(..end)?;
            dev.starts_with("vd").then(|| dev.to_string())
        })
        .collect()
}

/// The domain's power state as Skiff names it. A domain that libvirt stopped because the guest
/// crashed (`on_crash` destroy) is `Crashed` until it starts again.
fn power_of(dom: &Domain) -> Result<DomainPower, VirtError> {
    let (state, reason) = dom.state()?;
    Ok(match state {
        Enum::Known(DomainState::Running | DomainState::Blocked | DomainState::Shutdown) => {
            DomainPower::Running
        }
        Enum::Known(DomainState::Paused | DomainState::PMSuspended) => DomainPower::Paused,
        Enum::Known(DomainState::Crashed) => DomainPower::Crashed,
        Enum::Known(DomainState::Shutoff) => match reason {
            Enum::Known(DomainStateReason::Shutoff(Enum::Known(DomainShutoffReason::Crashed))) => {
                DomainPower::Crashed
            }
            _ => DomainPower::Shutoff,
        },
        Enum::Known(DomainState::NoState) | Enum::Unknown(_) => {
            if dom.is_active()? {
                DomainPower::Running
            } else {
                DomainPower::Shutoff
            }
        }
    })
}

/// Maps a libvirt error of `op` on domain `name`: a missing domain is `NotFound`, an operation
/// that does not fit the state is `InvalidState` (with the state `dom` is in now).
fn map_err(name: &str, op: &'static str, dom: Option<&Domain>, e: VirtError) -> HypervisorError {
    match e.code() {
        Enum::Known(ErrorNumber::NoDomain) => HypervisorError::NotFound(name.into()),
        Enum::Known(ErrorNumber::OperationInvalid) => match dom.map(power_of) {
            Some(Ok(power)) => HypervisorError::InvalidState {
                name: name.into(),
                power,
                op: op.into(),
            },
            _ => HypervisorError::Failed(format!("cannot {op} domain {name:?}: {e}")),
        },
        _ => HypervisorError::Failed(format!("cannot {op} domain {name:?}: {e}")),
    }
}

use DomainPower::{Crashed, Paused, Running, Shutoff};

impl Hypervisor for LibvirtHypervisor {
    fn kind(&self) -> &'static str {
        "libvirt"
    }

    fn list(&self) -> Result<Vec<DomainInfo>, HypervisorError> {
        let domains = self
            .conn
            .list_all_domains(virt::sys::VIR_CONNECT_LIST_DOMAINS_PERSISTENT)
            .map_err(|e| HypervisorError::Failed(format!("cannot list domains: {e}")))?;
        let mut out = Vec::new();
        for dom in domains {
            match managed_info(&dom) {
                Ok(Some(info)) => out.push(info),
                Ok(None) => {}
                // The domain vanished between the listing and this look at it.
                Err(e) if e.code() == Enum::Known(ErrorNumber::NoDomain) => {}
                Err(e) => return Err(HypervisorError::Failed(format!("cannot list domains: {e}"))),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn console_tail(&self, name: &str, max_bytes: u64) -> Result<(String, bool), HypervisorError> {
        self.managed(name)?;
        let path = self.console_log(name)?;
        match std::fs::read(&path) {
            Ok(bytes) => Ok(super::tail_text(&bytes, max_bytes)),
            // Never started since it was defined: no output yet.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((String::new(), false)),
            Err(e) => Err(HypervisorError::Failed(format!(
                "cannot read the console log {}: {e}",
                path.display()
            ))),
        }
    }

    fn open_console(&self, name: &str) -> Result<super::ConsoleSession, HypervisorError> {
        let op = "attach to the console of";
        let dom = self.managed(name)?;
        let power = power_of(&dom).map_err(|e| map_err(name, op, None, e))?;
        if power != Running {
            return Err(HypervisorError::InvalidState {
                name: name.into(),
                power,
                op: op.into(),
            });
        }
        let stream = virt::stream::Stream::new(&self.conn, virt::sys::VIR_STREAM_NONBLOCK)
            .map_err(|e| map_err(name, op, None, e))?;
        // FORCE: a new session takes the console over from an older one (one byte pipe a
        // console); the older one sees its stream end.
        dom.open_console(None, &stream, virt::sys::VIR_DOMAIN_CONSOLE_FORCE)
            .map_err(|e| map_err(name, op, Some(&dom), e))?;
        let (input_tx, input_rx) = tokio::sync::mpsc::channel(super::CONSOLE_QUEUE);
        let (output_tx, output_rx) = tokio::sync::mpsc::channel(super::CONSOLE_QUEUE);
        let n = name.to_string();
        std::thread::Builder::new()
            .name(format!("console-{name}"))
            .spawn(move || shuttle_console(&n, stream, input_rx, output_tx))
            .map_err(|e| {
                HypervisorError::Failed(format!("cannot start the console thread: {e}"))
            })?;
        Ok(super::ConsoleSession {
            output: output_rx,
            input: input_tx,
        })
    }

    fn stats(&self) -> Result<Vec<DomainStats>, HypervisorError> {
        let domains = self
            .conn
            .list_all_domains(
                virt::sys::VIR_CONNECT_LIST_DOMAINS_PERSISTENT
                    | virt::sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE,
            )
            .map_err(|e| HypervisorError::Failed(format!("cannot list domains: {e}")))?;
        let mut out = Vec::new();
        for dom in domains {
            // A domain that stops or vanishes meanwhile is simply left out of this sample.
            if let Ok(Some(s)) = domain_stats(&dom) {
                out.push(s);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn define(&self, spec: &DomainSpec) -> Result<(), HypervisorError> {
        let invalid = |e: domain_xml::DomainXmlError| {
            HypervisorError::Failed(format!("invalid domain spec: {e}"))
        };
        domain_xml::validate_name(&spec.name).map_err(invalid)?;
        let existing = match self.conn.lookup_domain_by_name(&spec.name) {
            Ok(dom) => Some(dom),
            Err(e) if e.code() == Enum::Known(ErrorNumber::NoDomain) => None,
            Err(e) => return Err(map_err(&spec.name, "look up", None, e)),
        };
        let uuid = match &existing {
            Some(dom) => {
                let ours = generation(dom).map_err(|e| map_err(&spec.name, "define", None, e))?;
                if ours.is_none() {
                    return Err(HypervisorError::Failed(format!(
                        "a domain named {:?} exists that Skiff does not manage: refusing to \
                         replace it",
                        spec.name
                    )));
                }
                Some(
                    dom.uuid_string()
                        .map_err(|e| map_err(&spec.name, "define", None, e))?,
                )
            }
            None => None,
        };
        let console_log = domain_xml::console_log_path(&self.log_dir, &spec.name);
        let xml = domain_xml::domain_xml(
            spec,
            &DomainXmlOptions {
                domain_type: self.domain_type,
                console_log: &console_log,
                uuid: uuid.as_deref(),
            },
        )
        .map_err(invalid)?;
        self.conn
            .define_domain_xml(&xml)
            .map(drop)
            .map_err(|e| map_err(&spec.name, "define", None, e))
    }

    fn start(&self, name: &str) -> Result<(), HypervisorError> {
        self.transition("start", name, &[Shutoff, Crashed], |d| d.create())
    }

    fn shutdown(&self, name: &str, timeout: Duration) -> Result<ShutdownOutcome, HypervisorError> {
        let dom = self.managed(name)?;
        let op = "shut down";
        let power = power_of(&dom).map_err(|e| map_err(name, op, None, e))?;
        if power != Running {
            return Err(HypervisorError::InvalidState {
                name: name.into(),
                power,
                op: op.into(),
            });
        }
        // The hypervisor's default method: ACPI power button for QEMU guests without an agent.
        dom.shutdown()
            .map_err(|e| map_err(name, op, Some(&dom), e))?;
        let deadline = Instant::now() + timeout;
        loop {
            let active = dom.is_active().map_err(|e| map_err(name, op, None, e))?;
            if !active {
                return Ok(ShutdownOutcome::Graceful);
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            std::thread::sleep(SHUTDOWN_POLL.min(deadline - now));
        }
        match dom.destroy() {
            Ok(()) => Ok(ShutdownOutcome::Forced),
            // It stopped by itself between the last look and the destroy.
            Err(e) if e.code() == Enum::Known(ErrorNumber::OperationInvalid) => {
                match dom.is_active() {
                    Ok(false) => Ok(ShutdownOutcome::Graceful),
                    _ => Err(map_err(name, op, Some(&dom), e)),
                }
            }
            Err(e) => Err(map_err(name, op, Some(&dom), e)),
        }
    }

    fn destroy(&self, name: &str) -> Result<(), HypervisorError> {
        let dom = self.managed(name)?;
        let power = power_of(&dom).map_err(|e| map_err(name, "destroy", None, e))?;
        let active = dom
            .is_active()
            .map_err(|e| map_err(name, "destroy", None, e))?;
        match (power, active) {
            (Shutoff, _) => Err(HypervisorError::InvalidState {
                name: name.into(),
                power,
                op: "destroy".into(),
            }),
            // Stopped after a crash already: nothing left to power off.
            (Crashed, false) => Ok(()),
            _ => dom
                .destroy()
                .map_err(|e| map_err(name, "destroy", Some(&dom), e)),
        }
    }

    fn suspend(&self, name: &str) -> Result<(), HypervisorError> {
        self.transition("suspend", name, &[Running], |d| d.suspend())
    }

    fn resume(&self, name: &str) -> Result<(), HypervisorError> {
        self.transition("resume", name, &[Paused], |d| d.resume())
    }

    fn reboot(&self, name: &str) -> Result<(), HypervisorError> {
        // The hypervisor's default method (ACPI for QEMU): the guest reboots itself, cleanly.
        self.transition("reboot", name, &[Running], |d| d.reboot(0))
    }

    fn undefine(&self, name: &str) -> Result<(), HypervisorError> {
        let dom = self.managed(name)?;
        let active = dom
            .is_active()
            .map_err(|e| map_err(name, "undefine", None, e))?;
        if active {
            let power = power_of(&dom).map_err(|e| map_err(name, "undefine", None, e))?;
            return Err(HypervisorError::InvalidState {
                name: name.into(),
                power,
                op: "undefine".into(),
            });
        }
        dom.undefine_flags(
            virt::sys::VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                | virt::sys::VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA,
        )
        .map_err(|e| map_err(name, "undefine", Some(&dom), e))?;
        // The console log belongs to the domain: it goes with it.
        let _ = std::fs::remove_file(domain_xml::console_log_path(&self.log_dir, name));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_targets_are_read_from_the_xml() {
        let xml = "<disk><target dev='vda' bus='virtio'/></disk><disk><target dev=\"vdb\"/></disk>\
                   <disk device='cdrom'><target dev='sda' bus='sata'/></disk>";
        assert_eq!(disk_targets(xml), ["vda", "vdb"]);
        assert!(disk_targets("<domain/>").is_empty());
    }
    use std::sync::atomic::{AtomicU32, Ordering};

    /// `test:///default` is shared by the whole test process: every test uses its own names.
    fn unique(prefix: &str) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        format!(
            "{prefix}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
    }

    fn hypervisor() -> (LibvirtHypervisor, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let h =
            LibvirtHypervisor::connect("test:///default", Accelerator::Tcg, dir.path()).unwrap();
        assert_eq!(h.domain_type(), DomainType::Test);
        (h, dir)
    }

    fn spec(name: &str, generation: u64) -> DomainSpec {
        DomainSpec {
            name: name.into(),
            memory_mib: 128,
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

    fn info(h: &LibvirtHypervisor, name: &str) -> Option<DomainInfo> {
        h.list().unwrap().into_iter().find(|d| d.name == name)
    }

    #[test]
    fn lifecycle() {
        let (h, _dir) = hypervisor();
        let name = unique("life");
        h.define(&spec(&name, 1)).unwrap();
        assert_eq!(
            info(&h, &name),
            Some(DomainInfo {
                name: name.clone(),
                power: Shutoff,
                generation: 1,
                ha: false,
            })
        );
        h.start(&name).unwrap();
        assert_eq!(info(&h, &name).unwrap().power, Running);
        h.suspend(&name).unwrap();
        assert_eq!(info(&h, &name).unwrap().power, Paused);
        h.resume(&name).unwrap();
        assert_eq!(info(&h, &name).unwrap().power, Running);
        h.reboot(&name).unwrap();
        assert_eq!(info(&h, &name).unwrap().power, Running);
        // The test driver obeys shutdown requests at once.
        assert_eq!(
            h.shutdown(&name, Duration::from_secs(5)).unwrap(),
            ShutdownOutcome::Graceful
        );
        assert_eq!(info(&h, &name).unwrap().power, Shutoff);
        h.start(&name).unwrap();
        h.destroy(&name).unwrap();
        assert_eq!(info(&h, &name).unwrap().power, Shutoff);
        h.undefine(&name).unwrap();
        assert_eq!(info(&h, &name), None);
    }

    #[test]
    fn redefine_keeps_the_domain_and_updates_the_generation() {
        let (h, _dir) = hypervisor();
        let name = unique("redef");
        h.define(&spec(&name, 1)).unwrap();
        h.start(&name).unwrap();
        h.define(&spec(&name, 2)).unwrap();
        let i = info(&h, &name).unwrap();
        assert_eq!((i.power, i.generation), (Running, 2));
        h.destroy(&name).unwrap();
        h.undefine(&name).unwrap();
    }

    #[test]
    fn wrong_states_and_missing_domains_are_typed_errors() {
        let (h, _dir) = hypervisor();
        let name = unique("state");
        h.define(&spec(&name, 1)).unwrap();
        for (op, r) in [
            ("suspend", h.suspend(&name)),
            ("resume", h.resume(&name)),
            ("reboot", h.reboot(&name)),
            ("destroy", h.destroy(&name)),
        ] {
            assert!(
                matches!(r, Err(HypervisorError::InvalidState { power: Shutoff, .. })),
                "{op}: {r:?}"
            );
        }
        assert!(matches!(
            h.shutdown(&name, Duration::from_millis(10)),
            Err(HypervisorError::InvalidState { power: Shutoff, .. })
        ));
        assert!(matches!(
            h.open_console(&name),
            Err(HypervisorError::InvalidState { power: Shutoff, .. })
        ));
        h.start(&name).unwrap();
        assert!(matches!(
            h.start(&name),
            Err(HypervisorError::InvalidState { power: Running, .. })
        ));
        assert!(matches!(
            h.undefine(&name),
            Err(HypervisorError::InvalidState { power: Running, .. })
        ));
        h.destroy(&name).unwrap();
        h.undefine(&name).unwrap();

        let missing = unique("missing");
        assert_eq!(
            h.start(&missing),
            Err(HypervisorError::NotFound(missing.clone()))
        );
        assert_eq!(
            h.undefine(&missing),
            Err(HypervisorError::NotFound(missing.clone()))
        );
        assert!(matches!(
            h.open_console(&missing),
            Err(HypervisorError::NotFound(_))
        ));
        // Names that could never be ours, including one that cannot cross into C.
        for bad in ["a\0b", "../x", ""] {
            assert_eq!(h.start(bad), Err(HypervisorError::NotFound(bad.into())));
            assert!(matches!(
                h.open_console(bad),
                Err(HypervisorError::NotFound(_))
            ));
        }
    }

    #[test]
    fn unmanaged_domains_are_invisible_and_never_replaced() {
        let (h, _dir) = hypervisor();
        // test:///default comes with a running domain named "test" that Skiff did not define.
        assert!(h.list().unwrap().iter().all(|d| d.name != "test"));
        assert_eq!(
            h.destroy("test"),
            Err(HypervisorError::NotFound("test".into()))
        );
        assert!(matches!(
            h.define(&spec("test", 1)),
            Err(HypervisorError::Failed(m)) if m.contains("does not manage")
        ));
        assert!(h
            .conn
            .lookup_domain_by_name("test")
            .unwrap()
            .is_active()
            .unwrap());
    }

    #[test]
    fn invalid_specs_change_nothing() {
        let (h, _dir) = hypervisor();
        let mut s = spec("evil'/><devices>", 1);
        assert!(matches!(h.define(&s), Err(HypervisorError::Failed(_))));
        assert!(h.list().unwrap().iter().all(|d| !d.name.contains("evil")));
        s.name = unique("zero");
        s.vcpus = 0;
        assert!(matches!(h.define(&s), Err(HypervisorError::Failed(m)) if m.contains("vcpus")));
        assert_eq!(info(&h, &s.name), None);
    }

    #[test]
    fn connecting_to_a_missing_daemon_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = LibvirtHypervisor::connect(
            "qemu+unix:///system?socket=/nonexistent/libvirt-sock",
            Accelerator::Tcg,
            dir.path(),
        )
        .unwrap_err();
        assert!(matches!(err, ConnectError::Libvirt { .. }), "{err}");
        assert!(err.to_string().contains("libvirtd"), "{err}");
    }
}
