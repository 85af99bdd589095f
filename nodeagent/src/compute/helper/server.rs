//! The helper's side of the protocol ([`super`]): `skiff-hv serve` answers calls on a hypervisor
//! and forwards its lifecycle events; `skiff-hv console NAME` joins one serial console to its
//! stdin and stdout. Generic over [`Hypervisor`], so tests serve the in-memory fake through it.

use std::io::{BufRead, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;
use tracing::warn;

use super::{pump, read_line, write_line, Answer, Call, Request, ToAgent};
use crate::compute::libvirt_events::LifecycleEvent;
use crate::compute::{Hypervisor, HypervisorError};

type Output = Arc<Mutex<Box<dyn Write + Send>>>;

fn send(out: &Output, msg: &ToAgent) -> std::io::Result<()> {
    let mut w = out.lock().unwrap_or_else(|p| p.into_inner());
    write_line(&mut *w, msg)
}

/// Runs one call.
pub fn dispatch(h: &dyn Hypervisor, call: Call) -> Result<Answer, HypervisorError> {
    Ok(match call {
        Call::List => Answer::List(h.list()?),
        Call::Define(spec) => {
            h.define(&spec)?;
            Answer::Done
        }
        Call::Start(name) => h.start(&name).map(|_| Answer::Done)?,
        Call::Shutdown { name, timeout_ms } => {
            Answer::Shutdown(h.shutdown(&name, Duration::from_millis(timeout_ms))?)
        }
        Call::Destroy(name) => h.destroy(&name).map(|_| Answer::Done)?,
        Call::Suspend(name) => h.suspend(&name).map(|_| Answer::Done)?,
        Call::Resume(name) => h.resume(&name).map(|_| Answer::Done)?,
        Call::Reboot(name) => h.reboot(&name).map(|_| Answer::Done)?,
        Call::Undefine(name) => h.undefine(&name).map(|_| Answer::Done)?,
        Call::ConsoleTail { name, max_bytes } => {
            let (text, cut) = h.console_tail(&name, max_bytes)?;
            Answer::ConsoleTail { text, cut }
        }
        Call::Stats => Answer::Stats(h.stats()?),
    })
}

/// Serves `h`: says hello, then answers every request read from `input` on a thread of its own
/// (a graceful shutdown may wait minutes; other calls go on meanwhile), and forwards `events`.
/// Returns when `input` ends (the agent is gone) or cannot be read.
pub fn serve(
    h: Arc<dyn Hypervisor>,
    events: Option<UnboundedReceiver<LifecycleEvent>>,
    mut input: impl BufRead,
    output: impl Write + Send + 'static,
) -> std::io::Result<()> {
    let out: Output = Arc::new(Mutex::new(Box::new(output)));
    send(
        &out,
        &ToAgent::Hello {
            kind: h.kind().to_string(),
        },
    )?;
    if let Some(mut events) = events {
        let out = out.clone();
        std::thread::Builder::new()
            .name("hv-events".into())
            .spawn(move || {
                while let Some(ev) = events.blocking_recv() {
                    if send(&out, &ToAgent::Event(ev)).is_err() {
                        return;
                    }
                }
            })?;
    }
    let mut line = Vec::new();
    while read_line(&mut input, &mut line)? {
        let req: Request = match serde_json::from_slice(&line) {
            Ok(r) => r,
            Err(e) => {
                // Only the agent writes here; a line it garbled has no id to answer.
                warn!(error = %e, "skiff-hv: a request that does not parse: ignored");
                continue;
            }
        };
        let (h, out) = (h.clone(), out.clone());
        std::thread::Builder::new()
            .name(format!("hv-call-{}", req.id))
            .spawn(move || {
                let result = dispatch(&*h, req.call);
                // The agent may be gone: nothing left to tell.
                let _ = send(&out, &ToAgent::Reply { id: req.id, result });
            })?;
    }
    Ok(())
}

/// Joins the serial console of `name` to `input` (typed to the guest) and `output` (what the
/// guest writes). First writes one line: `{"Ok":null}` when attached, or `{"Err":…}` (a
/// [`HypervisorError`]) and returns. Returns when the console ends (the domain stopped or another
/// session took it over) or `input` ends (the agent detached).
pub fn console(
    h: &dyn Hypervisor,
    name: &str,
    input: impl Read + Send + 'static,
    mut output: impl Write,
) -> std::io::Result<()> {
    let session = match h.open_console(name) {
        Ok(s) => s,
        Err(e) => return write_line(&mut output, &Err::<(), _>(e)),
    };
    write_line(&mut output, &Ok::<(), HypervisorError>(()))?;
    let typed = session.input;
    std::thread::Builder::new()
        .name("hv-console-in".into())
        // When `typed` is dropped, the console detaches: its output ends, and so does this helper.
        .spawn(move || pump(input, &typed))?;
    let mut from_guest = session.output;
    while let Some(bytes) = from_guest.blocking_recv() {
        output.write_all(&bytes)?;
        output.flush()?;
    }
    Ok(())
}
