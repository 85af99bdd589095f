//! The libvirt hypervisor against the real thing: libvirtd at `qemu:///system` running a QEMU
//! guest under software emulation (TCG; nested KVM guests hang on the CI machines). The guest is
//! the busybox test guest of `skiff_tests::guest`, booted with direct kernel boot and one qcow2
//! disk made with `qemu-img`; the test walks it through its whole life and checks that `list()`
//! follows every state.
//!
//! Without a reachable libvirtd the test fails with a clear message, unless
//! `SKIFF_SKIP_LIBVIRT=1`, which makes it print `SKIPPED: ...` and return.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use skiff_cluster::agentproto::DomainPower;
use skiff_cluster::config::Accelerator;
use skiff_cluster::state::servers::DiskSpec;
use skiff_nodeagent::compute::domain_xml::DomainType;
use skiff_nodeagent::compute::libvirt::LibvirtHypervisor;
use skiff_nodeagent::compute::{
    ConsoleSession, DirectBoot, DomainSpec, Hypervisor, HypervisorError, ShutdownOutcome,
};
use skiff_tests::guest::{skip_without_libvirt, test_guest, READY_LINE};

const URI: &str = "qemu:///system";
/// The most the guest may take from start to its ready line (TCG on a busy 2-core machine).
const BOOT_DEADLINE: Duration = Duration::from_secs(90);

/// Connects, or explains why not: fails unless `SKIFF_SKIP_LIBVIRT=1` says to skip.
fn connect(test: &str, log_dir: &Path) -> Option<LibvirtHypervisor> {
    match LibvirtHypervisor::connect(URI, Accelerator::Tcg, log_dir) {
        Ok(h) => Some(h),
        Err(e) => {
            skip_without_libvirt(test, URI, &e.to_string());
            None
        }
    }
}

/// Destroys and undefines the domain when the test ends, passed or failed.
struct DomainGuard<'a> {
    h: &'a LibvirtHypervisor,
    name: String,
}

impl Drop for DomainGuard<'_> {
    fn drop(&mut self) {
        let _ = self.h.destroy(&self.name);
        let _ = self.h.undefine(&self.name);
    }
}

fn power(h: &LibvirtHypervisor, name: &str) -> Option<DomainPower> {
    h.list()
        .expect("list")
        .into_iter()
        .find(|d| d.name == name)
        .map(|d| d.power)
}

/// Waits until the console log holds `line`; returns how long that took.
fn wait_for_line(log: &Path, line: &str, deadline: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let text = std::fs::read(log).unwrap_or_default();
        if String::from_utf8_lossy(&text).contains(line) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < deadline,
            "no {line:?} on the console within {deadline:?}; console log {}:\n{}",
            log.display(),
            String::from_utf8_lossy(&text)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Reads the console's output until it holds `want`, typing `poke` every 2 s meanwhile (to get a
/// prompt from a shell that may not have started yet); returns what was read.
fn converse(con: &mut ConsoleSession, poke: Option<&[u8]>, want: &str) -> String {
    let start = Instant::now();
    let mut seen = Vec::new();
    let mut poked: Option<Instant> = None;
    loop {
        while let Ok(chunk) = con.output.try_recv() {
            seen.extend(chunk);
        }
        if String::from_utf8_lossy(&seen).contains(want) {
            return String::from_utf8_lossy(&seen).into_owned();
        }
        assert!(
            start.elapsed() < BOOT_DEADLINE,
            "no {want:?} on the attached console; got {:?}",
            String::from_utf8_lossy(&seen)
        );
        if let Some(p) = poke {
            if poked.is_none_or(|t| t.elapsed() > Duration::from_secs(2)) {
                con.input.blocking_send(p.to_vec()).expect("type");
                poked = Some(Instant::now());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the console's output ends (its stream closed).
fn wait_closed(output: &mut tokio::sync::mpsc::Receiver<Vec<u8>>) {
    let start = Instant::now();
    loop {
        match output.try_recv() {
            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => return,
            _ => {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "the console did not close"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

#[test]
fn real_guest_lifecycle() {
    let test = "real_guest_lifecycle";
    let dir = tempfile::tempdir().unwrap();
    // libvirt runs QEMU as libvirt-qemu: it must traverse the directory of the disk.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let Some(h) = connect(test, &dir.path().join("console")) else {
        return;
    };
    assert_eq!(h.domain_type(), DomainType::Qemu);
    let guest = test_guest().expect("building the test guest");

    let disk = dir.path().join("disk0.qcow2");
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&disk)
        .arg("64M")
        .output()
        .expect("running qemu-img");
    assert!(out.status.success(), "qemu-img: {out:?}");

    let name = format!("skiff-test-{}", std::process::id());
    let spec = DomainSpec {
        name: name.clone(),
        memory_mib: 256,
        vcpus: 1,
        disks: vec![DiskSpec {
            image: None,
            size_gib: 1,
            pool: None,
        }],
        nics: Vec::new(),
        boot_order: Vec::new(),
        iso: None,
        generation: 3,
        ha: false,
        disk_paths: vec![disk.clone()],
        direct_boot: Some(DirectBoot {
            kernel: guest.kernel.clone(),
            initrd: Some(guest.initrd.clone()),
            cmdline: guest.cmdline(),
        }),
    };
    let _guard = DomainGuard {
        h: &h,
        name: name.clone(),
    };

    h.define(&spec).expect("define");
    let info = h.list().unwrap().into_iter().find(|d| d.name == name);
    assert_eq!(
        info.map(|d| (d.power, d.generation)),
        Some((DomainPower::Shutoff, 3))
    );
    let blk = Command::new("virsh")
        .args(["-c", URI, "domblklist", &name])
        .output()
        .expect("virsh");
    assert!(
        String::from_utf8_lossy(&blk.stdout).contains(disk.to_str().unwrap()),
        "the qcow2 disk is not attached: {blk:?}"
    );

    let log = h.console_log(&name).unwrap();
    h.start(&name).expect("start");
    assert_eq!(power(&h, &name), Some(DomainPower::Running));
    let boot = wait_for_line(&log, READY_LINE, BOOT_DEADLINE);
    let _ = writeln!(
        std::io::stderr(),
        "{test}: boot to {READY_LINE} took {:.1} s (TCG)",
        boot.as_secs_f64()
    );

    // Live counters of the running guest: it has used CPU, and has its memory.
    let stats = h.stats().expect("stats");
    let s = stats
        .iter()
        .find(|s| s.name == name)
        .expect("the running domain has counters");
    assert!(s.cpu_time_ns > 0, "{s:?}");
    assert_eq!(s.memory_kib, 256 * 1024, "{s:?}");

    // The console as the agent serves it: the guest's ready line.
    let (text, _) = h.console_tail(&name, 64 * 1024).expect("console");
    assert!(text.contains(READY_LINE), "{text}");

    // Two ways, through a libvirt stream: the guest's shell answers a command.
    let typed = Instant::now();
    let mut con = h.open_console(&name).expect("open the console");
    converse(&mut con, Some(b"\r"), "# ");
    con.input
        .blocking_send(b"echo skiff-$((6*7))\r".to_vec())
        .expect("type");
    converse(&mut con, None, "skiff-42");
    let _ = writeln!(
        std::io::stderr(),
        "{test}: attach, prompt and answer took {:.1} s (TCG)",
        typed.elapsed().as_secs_f64()
    );
    // Detaching closes the stream; the log (and the tail API) still has everything.
    drop(con.input);
    wait_closed(&mut con.output);
    let (text, _) = h.console_tail(&name, 64 * 1024).expect("console");
    assert!(text.contains("skiff-42"), "{text}");
    // A new session works after a detach, and a newer one takes the console over.
    let mut first = h.open_console(&name).expect("attach again");
    converse(&mut first, Some(b"\r"), "# ");
    let mut second = h.open_console(&name).expect("attach over it");
    wait_closed(&mut first.output);
    converse(&mut second, Some(b"\r"), "# ");
    drop(second);
    // Not running: refused.
    h.suspend(&name).expect("suspend");
    assert!(matches!(
        h.open_console(&name),
        Err(HypervisorError::InvalidState { .. })
    ));
    h.resume(&name).expect("resume");

    h.suspend(&name).expect("suspend");
    assert_eq!(power(&h, &name), Some(DomainPower::Paused));
    h.resume(&name).expect("resume");
    assert_eq!(power(&h, &name), Some(DomainPower::Running));
    h.reboot(&name).expect("reboot");
    assert_eq!(power(&h, &name), Some(DomainPower::Running));

    // busybox's init ignores the ACPI power button: the shutdown ends forced.
    let started = Instant::now();
    let outcome = h.shutdown(&name, Duration::from_secs(3)).expect("shutdown");
    assert_eq!(outcome, ShutdownOutcome::Forced);
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert_eq!(power(&h, &name), Some(DomainPower::Shutoff));

    h.undefine(&name).expect("undefine");
    assert_eq!(power(&h, &name), None);
    assert!(!log.exists(), "the console log goes with the domain");
}

/// The agent never links libvirt: it runs in the helper `skiff-hv` (docs/design/compute.md, "The
/// hypervisor helper"). Read from the binaries' dynamic sections (`DT_NEEDED`), as the loader
/// sees them.
#[test]
fn skiffd_does_not_link_libvirt() {
    let needed = |bin: &str| -> String {
        let out = Command::new("readelf")
            .arg("-d")
            .arg(skiff_tests::bins::path(bin))
            .output()
            .expect("readelf (binutils) runs");
        assert!(out.status.success(), "readelf -d {bin} failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("(NEEDED)"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let skiffd = needed("skiffd");
    assert!(!skiffd.is_empty(), "skiffd has no NEEDED entries at all?");
    assert!(
        !skiffd.contains("libvirt"),
        "skiffd links libvirt; it must go through skiff-hv:\n{skiffd}"
    );
    let helper = needed("skiff-hv");
    assert!(
        helper.contains("libvirt.so"),
        "skiff-hv is where libvirt is linked:\n{helper}"
    );
}
