//! The hypervisor helper: libvirt runs in a child process of the agent, `skiff-hv`, not in
//! `skiffd` itself.
//!
//! Why: linking libvirt maps its client library and everything it pulls in (gnutls, glib, ICU,
//! libxml2, libssh...) into every process that uses it, about 9 MB resident before a single call.
//! Kept in a helper, `skiffd` stays small on every node (admin-only nodes never start the helper),
//! a libvirt call that hangs or crashes takes the helper down, not the agent, and the agent starts
//! a new helper (see docs/design/compute.md, "The hypervisor helper").
//!
//! - [`client::HelperHypervisor`] is the [`Hypervisor`] `skiffd` uses: each call is a request on
//!   the helper's stdin, answered on its stdout; lifecycle events come on the same stdout.
//! - [`server`] is the helper's side, generic over any [`Hypervisor`] (tests serve the fake).
//! - A serial console is one more helper process of its own (`skiff-hv console NAME`), whose stdin
//!   and stdout carry the console's bytes after one header line: consoles are rare and long-lived,
//!   and a byte pipe per console needs no framing.
//!
//! The protocol, one JSON document per line (`\n`), requests and replies matched by `id`;
//! replies may come in any order (every request runs on its own thread in the helper):
//!
//! | direction | line |
//! |---|---|
//! | helper → agent, first | [`ToAgent::Hello`] (ready), or [`ToAgent::Fatal`] (cannot serve; exits) |
//! | agent → helper | [`Request`] `{id, call}` |
//! | helper → agent | [`ToAgent::Reply`] `{id, result}`, or [`ToAgent::Event`] at any time |
//!
//! The helper exits when its stdin ends, so it never outlives the agent.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use skiff_cluster::config::Accelerator;

use super::libvirt_events::LifecycleEvent;
use super::{DomainInfo, DomainSpec, DomainStats, HypervisorError, ShutdownOutcome};

pub mod client;
pub mod server;

/// The helper binary's name, looked for next to `skiffd` (see [`client::helper_program`]).
pub const HELPER_BIN: &str = "skiff-hv";

/// Longest line either side accepts (a listing of thousands of domains fits many times over).
pub const MAX_LINE: usize = 16 << 20;

/// One call of the [`super::Hypervisor`] contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Call {
    List,
    Define(Box<DomainSpec>),
    Start(String),
    Shutdown { name: String, timeout_ms: u64 },
    Destroy(String),
    Suspend(String),
    Resume(String),
    Reboot(String),
    Undefine(String),
    ConsoleTail { name: String, max_bytes: u64 },
    Stats,
}

/// A call with the number its reply will carry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub id: u64,
    pub call: Call,
}

/// What a call answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    Done,
    List(Vec<DomainInfo>),
    Shutdown(ShutdownOutcome),
    ConsoleTail { text: String, cut: bool },
    Stats(Vec<DomainStats>),
}

/// A line from the helper.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToAgent {
    /// Ready: the hypervisor answered; `kind` is what it is (`libvirt`).
    Hello { kind: String },
    /// Cannot serve at all (libvirt does not answer): the reason; the helper exits.
    Fatal(String),
    Reply {
        id: u64,
        result: Result<Answer, HypervisorError>,
    },
    /// A domain lifecycle event.
    Event(LifecycleEvent),
}

/// What the helper serves: `skiff-hv serve|console` take these as flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelperArgs {
    /// libvirt's URI (`qemu:///system`).
    pub uri: String,
    pub accelerator: Accelerator,
    /// Where serial consoles are logged.
    pub log_dir: PathBuf,
}

impl HelperArgs {
    /// The flags that say this to `skiff-hv`.
    pub fn to_flags(&self) -> Vec<std::ffi::OsString> {
        let accel = match self.accelerator {
            Accelerator::Auto => "auto",
            Accelerator::Kvm => "kvm",
            Accelerator::Tcg => "tcg",
        };
        vec![
            "--uri".into(),
            self.uri.clone().into(),
            "--accelerator".into(),
            accel.into(),
            "--log-dir".into(),
            self.log_dir.clone().into_os_string(),
        ]
    }
}

/// Moves what `from` reads, in chunks of at most [`CONSOLE_CHUNK`](crate::compute::CONSOLE_CHUNK)
/// bytes, into `to`, until `from` ends or fails or `to` is closed (a console's bytes, both ways).
pub fn pump(mut from: impl std::io::Read, to: &tokio::sync::mpsc::Sender<Vec<u8>>) {
    let mut buf = vec![0u8; crate::compute::CONSOLE_CHUNK];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.blocking_send(buf[..n].to_vec()).is_err() {
                    return;
                }
            }
        }
    }
}

/// Writes `msg` as one line and flushes.
pub fn write_line<T: Serialize>(w: &mut impl Write, msg: &T) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line)?;
    w.flush()
}

/// Reads one line (without its `\n`) into `buf`; `Ok(false)` at the end of the input. A line
/// longer than [`MAX_LINE`] is an error.
pub fn read_line(r: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    buf.clear();
    let n = std::io::Read::take(&mut *r, MAX_LINE as u64 + 1).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(false);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    } else if buf.len() > MAX_LINE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a line longer than {MAX_LINE} bytes"),
        ));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_long_lines_are_refused() {
        let mut out = Vec::new();
        let req = Request {
            id: 7,
            call: Call::Shutdown {
                name: "web".into(),
                timeout_ms: 1500,
            },
        };
        write_line(&mut out, &req).unwrap();
        write_line(
            &mut out,
            &ToAgent::Reply {
                id: 7,
                result: Err(HypervisorError::NotFound("web".into())),
            },
        )
        .unwrap();
        let mut r = std::io::BufReader::new(&out[..]);
        let mut buf = Vec::new();
        assert!(read_line(&mut r, &mut buf).unwrap());
        assert_eq!(serde_json::from_slice::<Request>(&buf).unwrap(), req);
        assert!(read_line(&mut r, &mut buf).unwrap());
        assert!(matches!(
            serde_json::from_slice::<ToAgent>(&buf).unwrap(),
            ToAgent::Reply { id: 7, result: Err(HypervisorError::NotFound(n)) } if n == "web"
        ));
        assert!(!read_line(&mut r, &mut buf).unwrap());

        let long = vec![b'x'; MAX_LINE + 10];
        let mut r = std::io::BufReader::new(&long[..]);
        assert!(read_line(&mut r, &mut buf).is_err());
    }
}
