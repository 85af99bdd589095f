//! Domain lifecycle events from the real libvirtd (`qemu:///system`): the listener of
//! `skiff_nodeagent::compute::libvirt_events` (the crate's one FFI module) sees a tiny domain
//! defined, started, destroyed and undefined with `virsh`. The domain has no disk and 32 MiB, is
//! emulated (TCG: nested KVM hangs on the CI machines) and just sits in its firmware.
//!
//! Without a reachable libvirtd the test fails with a clear message, unless
//! `SKIFF_SKIP_LIBVIRT=1`, which makes it print `SKIPPED: ...` and return.

use std::time::{Duration, Instant};

use skiff_nodeagent::compute::libvirt_events::{LibvirtEvents, LifecycleEvent, LifecycleKind};
use skiff_tests::guest::{libvirt_reachable, virsh, DomainGuard, LIBVIRT_URI};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::mpsc::UnboundedReceiver;

/// How long one event may take to arrive (a busy 2-core machine).
const EVENT_DEADLINE: Duration = Duration::from_secs(30);

/// Waits for the event `kind` of `domain`, and answers every event of `domain` seen until then.
fn wait_for(
    rx: &mut UnboundedReceiver<LifecycleEvent>,
    domain: &str,
    kind: LifecycleKind,
) -> Vec<LifecycleEvent> {
    let deadline = Instant::now() + EVENT_DEADLINE;
    let mut seen = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(ev) if ev.domain == domain => {
                let done = ev.event == kind;
                seen.push(ev);
                if done {
                    return seen;
                }
            }
            Ok(_) => {}
            Err(TryRecvError::Empty) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("no {kind:?} event for {domain} ({e:?}); seen: {seen:?}"),
        }
    }
}

#[test]
fn lifecycle_events_of_a_real_domain() {
    let test = "lifecycle_events_of_a_real_domain";
    if !libvirt_reachable(test) {
        return;
    }
    let (events, mut rx) = LibvirtEvents::start(LIBVIRT_URI).expect("the event listener starts");
    let name = format!("skiff-events-{}", std::process::id());
    let _guard = DomainGuard(name.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let xml = dir.path().join("domain.xml");
    std::fs::write(
        &xml,
        format!(
            "<domain type='qemu'><name>{name}</name><memory unit='MiB'>32</memory>\
             <vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os>\
             <devices><serial type='pty'/></devices></domain>"
        ),
    )
    .expect("write the domain XML");
    let xml = xml.to_string_lossy().into_owned();

    virsh(&["define", &xml]).expect("virsh define");
    let seen = wait_for(&mut rx, &name, LifecycleKind::Defined);
    assert_eq!(seen.len(), 1, "{seen:?}");

    virsh(&["start", &name]).expect("virsh start");
    wait_for(&mut rx, &name, LifecycleKind::Started);

    virsh(&["destroy", &name]).expect("virsh destroy");
    let stopped = wait_for(&mut rx, &name, LifecycleKind::Stopped);
    assert_eq!(
        stopped.last().map(|e| e.detail),
        Some(1),
        "destroyed: {stopped:?}"
    );

    virsh(&["undefine", &name]).expect("virsh undefine");
    wait_for(&mut rx, &name, LifecycleKind::Undefined);

    // Stopping ends the channel.
    events.stop();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match rx.try_recv() {
            Err(TryRecvError::Disconnected) => break,
            _ if Instant::now() > deadline => panic!("the channel did not end after stop"),
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}
