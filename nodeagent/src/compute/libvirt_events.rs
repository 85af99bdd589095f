//! Domain lifecycle events from libvirt: the crate's one FFI module (the `virt` crate has no safe
//! wrapper for domain event registration).
//!
//! [`ensure_event_loop`] registers libvirt's default event loop implementation and runs it on a
//! named thread (`libvirt-events`), once per process (a `OnceLock`; [`super::libvirt`] needs the
//! same loop for two-way consoles). [`LibvirtEvents::start`] opens a connection of its own to the
//! hypervisor and registers a lifecycle callback on it; each event reaches the caller as a
//! [`LifecycleEvent`] on an unbounded channel. [`LibvirtEvents::stop`] (or dropping it)
//! deregisters the callback and closes the connection; the channel ends.
//!
//! Safety argument, in one place (each `unsafe` block says which part it relies on):
//! - The connection pointer comes from a live [`virt::connect::Connect`] that this module owns
//!   until after the callback is deregistered, so it is valid for every call that takes it.
//! - The callback's opaque pointer is a `Box<Arc<Shared>>` given to libvirt with
//!   `Box::into_raw`; libvirt hands it back to [`on_lifecycle`] (borrowed) and to [`free_opaque`]
//!   exactly once (which takes it back with `Box::from_raw`). If registration fails libvirt does
//!   not keep it, and this module takes it back itself.
//! - `Shared` is `Sync` (a mutex around the sender), so the callback may run on any thread.
//! - The callback never unwinds into C: everything it does is inside `catch_unwind`.
//! - The domain pointer and its name are only read during the callback, while libvirt holds its
//!   reference; the name is copied into a Rust `String` at once.

use std::ffi::CStr;
use std::os::raw::{c_int, c_void};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use virt::connect::Connect;
use virt::sys;

/// What happened to a domain (libvirt's `virDomainEventType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LifecycleKind {
    Defined,
    Undefined,
    Started,
    Suspended,
    Resumed,
    Stopped,
    Shutdown,
    PMSuspended,
    Crashed,
    /// A kind this build does not know (a newer libvirt).
    Other(i32),
}

impl LifecycleKind {
    /// The kind of libvirt's event number `event`.
    pub fn from_raw(event: i32) -> Self {
        let Ok(e) = u32::try_from(event) else {
            return LifecycleKind::Other(event);
        };
        match e {
            sys::VIR_DOMAIN_EVENT_DEFINED => LifecycleKind::Defined,
            sys::VIR_DOMAIN_EVENT_UNDEFINED => LifecycleKind::Undefined,
            sys::VIR_DOMAIN_EVENT_STARTED => LifecycleKind::Started,
            sys::VIR_DOMAIN_EVENT_SUSPENDED => LifecycleKind::Suspended,
            sys::VIR_DOMAIN_EVENT_RESUMED => LifecycleKind::Resumed,
            sys::VIR_DOMAIN_EVENT_STOPPED => LifecycleKind::Stopped,
            sys::VIR_DOMAIN_EVENT_SHUTDOWN => LifecycleKind::Shutdown,
            sys::VIR_DOMAIN_EVENT_PMSUSPENDED => LifecycleKind::PMSuspended,
            sys::VIR_DOMAIN_EVENT_CRASHED => LifecycleKind::Crashed,
            _ => LifecycleKind::Other(event),
        }
    }
}

/// One lifecycle event of one domain.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LifecycleEvent {
    /// The domain's name.
    pub domain: String,
    pub event: LifecycleKind,
    /// libvirt's detail number for the kind (e.g. `Stopped`: 0 shut down, 1 destroyed, 2 crashed).
    pub detail: i32,
}

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// The default event loop implementation could not be registered.
    #[error("cannot register libvirt's event loop: {0}")]
    EventLoop(String),
    /// The connection for events could not be opened.
    #[error("cannot connect to {uri} for events: {reason}")]
    Connect { uri: String, reason: String },
    /// libvirt refused the lifecycle callback (the driver has no events).
    #[error("libvirt refused the lifecycle event callback on {uri}: {reason}")]
    Register { uri: String, reason: String },
}

/// What the callback shares with the listener: the sender, taken out (dropped) on stop so the
/// receiver ends at once, whenever libvirt gets to calling the free callback.
struct Shared {
    tx: Mutex<Option<UnboundedSender<LifecycleEvent>>>,
}

/// A running lifecycle event listener. Stops (callback deregistered, connection closed, channel
/// ended) on [`LibvirtEvents::stop`] or when dropped.
pub struct LibvirtEvents {
    conn: Option<Connect>,
    callback_id: c_int,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LibvirtEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibvirtEvents")
            .field("callback_id", &self.callback_id)
            .finish_non_exhaustive()
    }
}

/// Registers libvirt's default event loop implementation and runs it on a thread
/// (`libvirt-events`) for the life of the process, once per process. Every connection that wants
/// events (lifecycle callbacks here, non-blocking console streams in [`super::libvirt`]) must be
/// opened after this. One loop for the whole process: libvirt's default implementation is
/// process-global, so a second thread running it would only compete with the first.
pub fn ensure_event_loop() -> Result<(), EventsError> {
    static STARTED: OnceLock<Result<(), String>> = OnceLock::new();
    let r = STARTED.get_or_init(|| {
        virt::event::event_register_default_impl().map_err(|e| e.to_string())?;
        std::thread::Builder::new()
            .name("libvirt-events".into())
            .spawn(|| loop {
                if virt::event::event_run_default_impl().is_err() {
                    // Not expected once registered; do not spin.
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
            .map(|_| ())
            .map_err(|e| format!("cannot start the event thread: {e}"))
    });
    r.clone().map_err(EventsError::EventLoop)
}

impl LibvirtEvents {
    /// Starts listening to the lifecycle events of every domain at `uri`. Blocks while it
    /// connects: call it off the async runtime.
    pub fn start(
        uri: &str,
    ) -> Result<(LibvirtEvents, UnboundedReceiver<LifecycleEvent>), EventsError> {
        ensure_event_loop()?;
        let conn = Connect::open(Some(uri)).map_err(|e| EventsError::Connect {
            uri: uri.to_string(),
            reason: e.to_string(),
        })?;
        let (tx, rx) = unbounded_channel();
        let shared = Arc::new(Shared {
            tx: Mutex::new(Some(tx)),
        });
        let opaque = Box::into_raw(Box::new(shared.clone())).cast::<c_void>();
        let callback: unsafe extern "C" fn(
            sys::virConnectPtr,
            sys::virDomainPtr,
            c_int,
            c_int,
            *mut c_void,
        ) = on_lifecycle;
        // SAFETY: `conn` is a live connection owned here. The callback is cast to the generic
        // callback type as libvirt's API requires for `VIR_DOMAIN_EVENT_ID_LIFECYCLE`: libvirt
        // calls it with the lifecycle signature (`virConnectDomainEventCallback`), which is the
        // signature of `on_lifecycle`. `opaque` is a valid `Box<Arc<Shared>>` whose ownership
        // passes to libvirt on success (freed by `free_opaque`).
        let id = unsafe {
            let generic: sys::virConnectDomainEventGenericCallback = Some(std::mem::transmute::<
                unsafe extern "C" fn(
                    sys::virConnectPtr,
                    sys::virDomainPtr,
                    c_int,
                    c_int,
                    *mut c_void,
                ),
                unsafe extern "C" fn(sys::virConnectPtr, sys::virDomainPtr, *mut c_void),
            >(callback));
            sys::virConnectDomainEventRegisterAny(
                conn.as_ptr(),
                std::ptr::null_mut(),
                sys::VIR_DOMAIN_EVENT_ID_LIFECYCLE as c_int,
                generic,
                opaque,
                Some(free_opaque),
            )
        };
        if id < 0 {
            // SAFETY: registration failed, so libvirt kept neither the pointer nor a duty to free
            // it: it is still ours, made by `Box::into_raw` above and not freed.
            drop(unsafe { Box::from_raw(opaque.cast::<Arc<Shared>>()) });
            return Err(EventsError::Register {
                uri: uri.to_string(),
                reason: virt::error::Error::last_error().to_string(),
            });
        }
        let events = LibvirtEvents {
            conn: Some(conn),
            callback_id: id,
            shared,
        };
        Ok((events, rx))
    }

    /// Deregisters the callback and closes the connection; the receiver sees the end of the
    /// channel. Blocks on libvirt: call it off the async runtime.
    pub fn stop(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        if let Some(conn) = self.conn.take() {
            // SAFETY: `conn` is still live (taken out of `self` only here) and `callback_id` was
            // returned by the registration on this very connection.
            unsafe {
                sys::virConnectDomainEventDeregisterAny(conn.as_ptr(), self.callback_id);
            }
            // `Connect`'s drop closes the connection and panics when that fails: keep such a
            // panic here (this also runs from `Drop`).
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(conn)));
        }
        if let Ok(mut tx) = self.shared.tx.lock() {
            tx.take();
        }
    }
}

impl Drop for LibvirtEvents {
    fn drop(&mut self) {
        self.shut();
    }
}

/// libvirt's lifecycle callback: sends the event to the listener's channel.
unsafe extern "C" fn on_lifecycle(
    _conn: sys::virConnectPtr,
    dom: sys::virDomainPtr,
    event: c_int,
    detail: c_int,
    opaque: *mut c_void,
) {
    let _ = std::panic::catch_unwind(|| {
        if opaque.is_null() || dom.is_null() {
            return;
        }
        // SAFETY: `opaque` is the `Box<Arc<Shared>>` given at registration; libvirt keeps it
        // alive until it calls `free_opaque`, which it does not do while a callback runs. Only
        // borrowed.
        let shared: &Arc<Shared> = unsafe { &*opaque.cast::<Arc<Shared>>() };
        // SAFETY: `dom` is non-null and valid for the duration of the callback (libvirt holds a
        // reference); the name is a NUL-terminated string owned by the domain object (or null on
        // failure), copied at once.
        let name = unsafe {
            let p = sys::virDomainGetName(dom);
            if p.is_null() {
                return;
            }
            CStr::from_ptr(p).to_string_lossy().into_owned()
        };
        let ev = LifecycleEvent {
            domain: name,
            event: LifecycleKind::from_raw(event),
            detail,
        };
        if let Ok(tx) = shared.tx.lock() {
            if let Some(tx) = tx.as_ref() {
                let _ = tx.send(ev);
            }
        }
    });
}

/// libvirt's free callback for the opaque pointer: takes the box back.
unsafe extern "C" fn free_opaque(opaque: *mut c_void) {
    if opaque.is_null() {
        return;
    }
    // SAFETY: libvirt calls this exactly once for the pointer made by `Box::into_raw` in
    // `LibvirtEvents::start`, after the last callback.
    let shared = unsafe { Box::from_raw(opaque.cast::<Arc<Shared>>()) };
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(shared)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_of_raw_events() {
        assert_eq!(LifecycleKind::from_raw(0), LifecycleKind::Defined);
        assert_eq!(LifecycleKind::from_raw(2), LifecycleKind::Started);
        assert_eq!(LifecycleKind::from_raw(5), LifecycleKind::Stopped);
        assert_eq!(LifecycleKind::from_raw(8), LifecycleKind::Crashed);
        assert_eq!(LifecycleKind::from_raw(99), LifecycleKind::Other(99));
        assert_eq!(LifecycleKind::from_raw(-1), LifecycleKind::Other(-1));
    }

    /// The events of `domain` that arrive within `wait`, until one of kind `last`.
    pub(crate) fn events_until(
        rx: &mut UnboundedReceiver<LifecycleEvent>,
        domain: &str,
        last: LifecycleKind,
        wait: Duration,
    ) -> Vec<LifecycleKind> {
        let deadline = std::time::Instant::now() + wait;
        let mut seen = Vec::new();
        while std::time::Instant::now() < deadline {
            match rx.try_recv() {
                Ok(ev) if ev.domain == domain => {
                    seen.push(ev.event);
                    if ev.event == last {
                        break;
                    }
                }
                Ok(_) => {}
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => break,
            }
        }
        seen
    }

    /// libvirt's in-process test driver has events too: the whole path (callback, opaque
    /// pointer, channel, stop) without a daemon.
    #[test]
    fn lifecycle_events_of_the_test_driver() {
        let uri = "test:///default";
        let (events, mut rx) = LibvirtEvents::start(uri).expect("listener");
        let conn = Connect::open(Some(uri)).expect("connect");
        let name = format!("skiff-events-{}", std::process::id());
        let xml = format!(
            "<domain type='test'><name>{name}</name><memory>8192</memory>\
             <os><type>hvm</type></os></domain>"
        );
        let dom = conn.define_domain_xml(&xml).expect("define");
        dom.create().expect("start");
        dom.destroy().expect("destroy");
        dom.undefine().expect("undefine");
        let seen = events_until(
            &mut rx,
            &name,
            LifecycleKind::Undefined,
            Duration::from_secs(10),
        );
        assert_eq!(
            seen,
            vec![
                LifecycleKind::Defined,
                LifecycleKind::Started,
                LifecycleKind::Stopped,
                LifecycleKind::Undefined
            ]
        );
        events.stop();
        // The channel ends once the listener stops.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match rx.try_recv() {
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => break,
                _ if std::time::Instant::now() > deadline => panic!("the channel did not end"),
                _ => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
}
