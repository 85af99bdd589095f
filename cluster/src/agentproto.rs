//! The leader ↔ node agent protocol (ALPN `skiff-agent/1`): one JSON request, one JSON reply, on
//! one QUIC stream.
//!
//! The leader asks an agent what actually exists ([`AgentRequest::Report`]), tells it what a server
//! should be ([`AgentRequest::Ensure`]: define it if missing, update it if its generation is older,
//! bring its power to the desired state) and to drop one ([`AgentRequest::Remove`]). Every request
//! is idempotent, so the leader may repeat it after a timeout, an agent restart or a change of
//! leader. A request an agent cannot decode gets an [`AgentReply::Error`], never a panic.
//!
//! One request goes the other way: a compute node tells the leader that something changed on it
//! ([`AgentRequest::Changed`], e.g. a guest powered itself off), so the leader reconciles at once
//! instead of at its next pass. It is only a hint: the leader still asks for a `Report`.

use serde::{Deserialize, Serialize};

use crate::state::servers::PowerState;
use crate::state::ServerRecord;

/// Time the leader gives an agent to answer a `Report`.
pub const REPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Time the leader gives an agent to carry out an `Ensure` or `Remove`, beyond the wait of a
/// graceful shutdown (see [`AgentRequest::timeout`]).
pub const WORK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// Time a node gives the leader to take a `Changed` hint (it is only a hint: the leader's
/// periodic pass is the fallback).
pub const CHANGED_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// Largest request an agent accepts (a server record is a few KiB).
pub const MAX_REQUEST: usize = 1 << 20;

/// A one-off action the desired state alone cannot express.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PowerAction {
    /// Reboot a running server.
    Reboot,
    /// Power off at once (destroy) instead of asking the guest to shut down.
    ForceStop,
}

/// What the leader asks of an agent.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "request", rename_all = "snake_case", deny_unknown_fields)]
pub enum AgentRequest {
    /// What exists on the node.
    Report,
    /// Make the server exist as `server` says, powered as `server.desired` says.
    Ensure {
        server: Box<ServerRecord>,
        #[serde(default)]
        action: Option<PowerAction>,
        /// How long a graceful shutdown waits for the guest before forcing it off.
        #[serde(default = "default_force_after")]
        force_after_secs: u64,
    },
    /// Stop (forcibly) and undefine the server if it exists, and delete its disks in the node's
    /// own pools. Its disks in shared pools are deleted only with `shared_disks` (the server is
    /// removed for good): a stale copy left on a node after a move or failover shares them with
    /// the copy that runs elsewhere.
    Remove {
        name: String,
        #[serde(default)]
        shared_disks: bool,
    },
    /// Carry out `op` on the image `name` in the node's pool `pool`. Idempotent: an image
    /// already made, a snapshot already taken, an image already gone count as done. A master
    /// that `op` reads (`Clone`, `Convert`) may be in any pool of the node.
    Image {
        name: String,
        op: crate::state::ImageOp,
        #[serde(default = "crate::state::pools::local_pool_name")]
        pool: String,
    },
    /// Carry out `op` for backup `id` of the images `files` of the pool `pool`, or of the whole
    /// pool (idempotent, like `Image`).
    Backup {
        id: u64,
        files: Vec<String>,
        op: crate::state::backups::BackupOp,
        #[serde(default = "crate::state::pools::local_pool_name")]
        pool: String,
        /// A backup of the whole (ZFS) pool rather than of `files`: a snapshot named after
        /// `at` (the backup's creation, Unix seconds), sent to the pool's backup dataset.
        #[serde(default)]
        whole_pool: bool,
        #[serde(default)]
        at: u64,
    },
    /// The end of the server's serial console output (at most `max_bytes`).
    Console {
        name: String,
        #[serde(default = "default_console_bytes")]
        max_bytes: u64,
    },
    /// Node to leader: the domain `server` on node `node` changed by itself (a lifecycle event
    /// of its hypervisor): reconcile soon. Carries no state; the leader answers `Done` (a node
    /// that does not lead answers it too: it is harmless). An older leader refuses it as a bad
    /// request, and the sender falls back on the leader's periodic pass.
    Changed { node: String, server: String },
    /// Move the image file `name` of the node's pool `pool`, which nothing in the desired state
    /// explains, aside into the pool's `.orphans/` directory (kept for an operator, out of the
    /// pool's namespace). Idempotent: a file already gone counts as done.
    SetAside {
        name: String,
        #[serde(default = "crate::state::pools::local_pool_name")]
        pool: String,
    },
    /// The pools the node has besides `local`, all of them: it opens those it has not opened
    /// (making their directories), and forgets those not listed (their files stay). Idempotent.
    Pools { pools: Vec<crate::state::PoolSpec> },
}

/// " in pool P" for a pool other than `local` (which goes without saying).
fn in_pool(pool: &str) -> String {
    if pool == crate::state::pools::LOCAL_POOL {
        String::new()
    } else {
        format!(" in pool {pool}")
    }
}

/// How much console output is sent when the request does not say.
pub const CONSOLE_BYTES: u64 = 16 * 1024;
/// The most console output one request may ask for.
pub const MAX_CONSOLE_BYTES: u64 = 512 * 1024;

fn default_console_bytes() -> u64 {
    CONSOLE_BYTES
}

fn default_force_after() -> u64 {
    crate::state::servers::SHUTDOWN_FORCE_AFTER_SECS
}

/// What a domain is doing, as the hypervisor says.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DomainPower {
    Running,
    /// Defined, not running.
    Shutoff,
    /// Suspended (paused) in memory.
    Paused,
    /// Stopped by a fault of the guest or the hypervisor.
    Crashed,
}

impl DomainPower {
    /// Whether this is what `desired` asks for.
    pub fn satisfies(self, desired: PowerState) -> bool {
        matches!(
            (self, desired),
            (DomainPower::Running, PowerState::Running)
                | (DomainPower::Shutoff, PowerState::Stopped)
                | (DomainPower::Paused, PowerState::Suspended)
        )
    }
}

/// One domain on a node.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DomainReport {
    /// The server's name (the domain's name).
    pub name: String,
    pub power: DomainPower,
    /// The generation of the server record it was last defined from.
    pub generation: u64,
}

/// The answer to [`AgentRequest::Report`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AgentReport {
    /// The node answering.
    pub node: String,
    /// The incarnation of the agent (new on every start): a change means its memory is gone.
    pub agent_generation: u64,
    /// Which hypervisor answers (`fake` until the compute issue brings libvirt).
    pub hypervisor: String,
    /// The Skiff-managed domains, sorted by name.
    pub domains: Vec<DomainReport>,
    /// Live figures of the running servers (rates over the agent's last sampling interval).
    #[serde(default)]
    pub figures: Vec<ServerFigures>,
    /// The image files of the node's pools (images and servers' disks), sorted by pool and
    /// name; `None` when the agent did not list them (an older agent, or its pools could not be
    /// read; a pool that cannot be read is left out and its [`PoolReport`] says why).
    #[serde(default)]
    pub images: Option<Vec<ImageFileReport>>,
    /// The node's pools (`local` first) and whether each is usable; `None` from an older agent.
    #[serde(default)]
    pub pools: Option<Vec<PoolReport>>,
}

/// One pool of a node, as its agent has it open.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PoolReport {
    pub name: String,
    /// `dir` or `zfs`.
    pub kind: String,
    /// Its directory (a ZFS pool's mountpoint).
    pub path: String,
    /// Why the node cannot use it (`None`: usable).
    pub error: Option<String>,
    /// Bytes of its file system, and in use there.
    pub total: u64,
    pub used: u64,
}

/// One image file that exists in a node's pool.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageFileReport {
    /// The pool holding it.
    #[serde(default = "crate::state::pools::local_pool_name")]
    pub pool: String,
    /// The image name (the file is `NAME.qcow2`).
    pub name: String,
    /// Bytes the file takes on disk.
    pub bytes: u64,
    /// Seconds since the file last changed.
    pub age_secs: u64,
}

/// What a running server uses, measured by its node's agent over its last sampling interval
/// (about 2 s). Integers so that figures compare exactly.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServerFigures {
    pub name: String,
    /// CPU in thousandths of one host core (1500: one and a half cores busy).
    pub cpu_milli: u64,
    /// Memory the guest has (MiB).
    pub memory_mib: u64,
    pub disk_read_bps: u64,
    pub disk_write_bps: u64,
    pub net_rx_bps: u64,
    pub net_tx_bps: u64,
}

/// Why an agent could not do what it was asked.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AgentErrorCode {
    /// The request was not a valid `AgentRequest`.
    BadRequest,
    /// The peer is not a cluster node.
    Forbidden,
    /// This node does not run servers.
    ComputeDisabled,
    /// The hypervisor refused or failed.
    Hypervisor,
    /// A highly available server may not run here now: this node holds no HA lease (it is, or
    /// was just, cut off from the leader and fenced itself).
    NoLease,
}

/// What an agent answers.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum AgentReply {
    Report(AgentReport),
    /// The end of a console's output; `truncated` when older output was left out.
    Console {
        text: String,
        truncated: bool,
    },
    /// The request was carried out; `log` says what was done (empty: nothing needed doing).
    Done {
        log: Vec<String>,
        /// The domain afterwards (`None` after a `Remove`).
        domain: Option<DomainReport>,
    },
    Error {
        code: AgentErrorCode,
        message: String,
        /// What was done before the failure.
        log: Vec<String>,
    },
}

/// A message that could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    #[error("message of {0} bytes is larger than {MAX_REQUEST}")]
    TooLarge(usize),
    #[error("malformed message: {0}")]
    Malformed(String),
}

impl AgentRequest {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a request from a peer (size-checked; never panics).
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtoError> {
        if bytes.len() > MAX_REQUEST {
            return Err(ProtoError::TooLarge(bytes.len()));
        }
        serde_json::from_slice(bytes).map_err(|e| ProtoError::Malformed(e.to_string()))
    }

    /// How long the leader waits for the answer: an `Ensure` may wait out a graceful shutdown.
    pub fn timeout(&self) -> std::time::Duration {
        match self {
            AgentRequest::Report => REPORT_TIMEOUT,
            AgentRequest::Ensure {
                force_after_secs, ..
            } => WORK_TIMEOUT + std::time::Duration::from_secs(*force_after_secs),
            // Copies of whole disks.
            AgentRequest::Image { op, .. } if op.copies_data() => WORK_TIMEOUT * 30,
            AgentRequest::Remove { .. }
            | AgentRequest::Image { .. }
            | AgentRequest::SetAside { .. }
            | AgentRequest::Pools { .. } => WORK_TIMEOUT,
            AgentRequest::Backup { .. } => WORK_TIMEOUT * 30,
            AgentRequest::Console { .. } => REPORT_TIMEOUT,
            AgentRequest::Changed { .. } => CHANGED_TIMEOUT,
        }
    }

    /// A short description for logs.
    pub fn describe(&self) -> String {
        match self {
            AgentRequest::Report => "report".into(),
            AgentRequest::Ensure { server, action, .. } => match action {
                Some(a) => format!("ensure {} ({a:?})", server.name),
                None => format!("ensure {} {:?}", server.name, server.desired),
            },
            AgentRequest::Remove { name, .. } => format!("remove {name}"),
            AgentRequest::Console { name, .. } => format!("console {name}"),
            AgentRequest::Changed { node, server } => format!("changed {server} on {node}"),
            AgentRequest::SetAside { name, pool } => format!("set aside {name}{}", in_pool(pool)),
            AgentRequest::Image { name, op, pool } => {
                format!("{} {name}{}", op.kind(), in_pool(pool))
            }
            AgentRequest::Pools { pools } => format!("open {} pool(s)", pools.len()),
            AgentRequest::Backup { id, op, .. } => format!("{} {id}", op.kind()),
        }
    }
}

impl AgentReply {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a reply from an agent.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtoError> {
        serde_json::from_slice(bytes).map_err(|e| ProtoError::Malformed(e.to_string()))
    }

    pub fn error(code: AgentErrorCode, message: impl Into<String>) -> Self {
        AgentReply::Error {
            code,
            message: message.into(),
            log: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ServerSpec;

    fn server() -> ServerRecord {
        ServerRecord {
            name: "web".into(),
            owner: "alice".into(),
            spec: ServerSpec::new(512, 1),
            node: Some("n1".into()),
            desired: PowerState::Running,
            created_at: 1,
            generation: 2,
        }
    }

    #[test]
    fn requests_round_trip() {
        for r in [
            AgentRequest::Report,
            AgentRequest::Ensure {
                server: Box::new(server()),
                action: Some(PowerAction::Reboot),
                force_after_secs: 5,
            },
            AgentRequest::Remove {
                name: "x".into(),
                shared_disks: false,
            },
            AgentRequest::Changed {
                node: "n1".into(),
                server: "web".into(),
            },
        ] {
            assert_eq!(AgentRequest::decode(&r.encode()).unwrap(), r);
        }
        // `action` may be left out.
        let text = format!(
            r#"{{"request":"ensure","server":{}}}"#,
            serde_json::to_string(&server()).unwrap()
        );
        assert!(matches!(
            AgentRequest::decode(text.as_bytes()),
            Ok(AgentRequest::Ensure {
                action: None,
                force_after_secs: 60,
                ..
            })
        ));
    }

    #[test]
    fn changed_wire_format() {
        // The format other versions see: tagged like every request.
        let r = AgentRequest::Changed {
            node: "n1".into(),
            server: "web".into(),
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"request": "changed", "node": "n1", "server": "web"})
        );
        assert_eq!(
            AgentRequest::decode(br#"{"server":"web","request":"changed","node":"n1"}"#).unwrap(),
            r
        );
        assert_eq!(r.timeout(), CHANGED_TIMEOUT);
        assert_eq!(r.describe(), "changed web on n1");
    }

    #[test]
    fn image_copies_get_the_long_timeout() {
        use crate::state::ImageOp;
        let image = |op| AgentRequest::Image {
            name: "a".into(),
            op,
            pool: "local".into(),
        };
        assert_eq!(image(ImageOp::Flatten).timeout(), WORK_TIMEOUT * 30);
        let convert = ImageOp::Convert {
            from: "b".into(),
            compress: false,
        };
        assert_eq!(image(convert).timeout(), WORK_TIMEOUT * 30);
        assert_eq!(image(ImageOp::Remove).timeout(), WORK_TIMEOUT);
        assert_eq!(image(ImageOp::Flatten).describe(), "image.flatten a");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let big = vec![b'{'; MAX_REQUEST + 1];
        let cases: Vec<&[u8]> = vec![
            b"",
            b"\xff\xfe\x00",
            b"null",
            b"[]",
            b"{}",
            br#"{"request":"reboot_everything"}"#,
            br#"{"request":"remove"}"#,
            br#"{"request":"remove","name":7}"#,
            br#"{"request":"ensure","server":{"name":"x"}}"#,
            br#"{"request":"changed"}"#,
            br#"{"request":"changed","node":"n1"}"#,
            br#"{"request":"changed","node":"n1","server":7}"#,
            br#"{"request":"changed","node":null,"server":"web"}"#,
            br#"{"request":"changed","node":"n1","server":"web","extra":1}"#,
            br#"{"request":"Changed","node":"n1","server":"web"}"#,
            &big,
        ];
        for c in cases {
            assert!(
                AgentRequest::decode(c).is_err(),
                "{:?}",
                String::from_utf8_lossy(c)
            );
        }
        assert!(AgentReply::decode(b"{\"reply\":\"nope\"}").is_err());
    }

    #[test]
    fn power_matches_desire() {
        assert!(DomainPower::Running.satisfies(PowerState::Running));
        assert!(DomainPower::Shutoff.satisfies(PowerState::Stopped));
        assert!(DomainPower::Paused.satisfies(PowerState::Suspended));
        assert!(!DomainPower::Crashed.satisfies(PowerState::Stopped));
        assert!(!DomainPower::Paused.satisfies(PowerState::Running));
    }
}

/// The leader's answer to a compute node renewing its HA lease (ALPN `skiff-lease/1`; the request
/// body is empty: the node is who its certificate says).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "lease", rename_all = "snake_case", deny_unknown_fields)]
pub enum LeaseReply {
    /// Renewed: the node may keep running its highly available servers for `fence_after_ms`
    /// from when it sent the request (the leader's setting, so both sides count alike).
    Granted { fence_after_ms: u64 },
    /// This node does not serve as leader (now): ask the leader.
    NotLeader,
}

impl LeaseReply {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// The serial console protocol (ALPN `skiff-console/1`): on one bidirectional QUIC stream the
/// leader sends one [`ConsoleOpen`] frame, the agent answers one [`ConsoleAnswer`] frame, and
/// after an `Attached` answer the stream is a raw byte pipe: what the leader sends is typed on
/// the console, what the agent sends is the console's output. Either side finishing its send
/// half ends the session (the leader: the user detached; the agent: the console closed, e.g. the
/// domain stopped). A frame is a 4-byte big-endian length and that many bytes of JSON, at most
/// [`MAX_CONSOLE_FRAME`].
pub mod console {
    use serde::{Deserialize, Serialize};
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

    use super::ProtoError;

    /// Largest header frame either side accepts.
    pub const MAX_CONSOLE_FRAME: usize = 4096;
    /// Time the leader gives an agent to open a console and answer.
    pub const OPEN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

    /// What the leader asks: attach to the serial console of domain `name`.
    #[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
    #[serde(deny_unknown_fields)]
    pub struct ConsoleOpen {
        pub name: String,
    }

    /// Why an agent could not attach.
    #[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
    #[serde(rename_all = "snake_case")]
    pub enum ConsoleErrorCode {
        /// The header was not a valid `ConsoleOpen`.
        BadRequest,
        /// The peer is not a cluster node.
        Forbidden,
        /// This node does not run servers.
        ComputeDisabled,
        /// No such domain on this node.
        NotFound,
        /// The domain exists but does not run.
        NotRunning,
        /// The hypervisor refused or failed.
        Hypervisor,
    }

    /// The agent's answer to a [`ConsoleOpen`].
    #[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
    #[serde(tag = "answer", rename_all = "snake_case")]
    pub enum ConsoleAnswer {
        /// Attached: raw bytes follow both ways.
        Attached,
        Error {
            code: ConsoleErrorCode,
            message: String,
        },
    }

    /// Writes one frame holding `value` as JSON.
    pub async fn write_frame<W, T>(w: &mut W, value: &T) -> Result<(), ProtoError>
    where
        W: AsyncWrite + Unpin,
        T: Serialize,
    {
        let body = serde_json::to_vec(value).map_err(|e| ProtoError::Malformed(e.to_string()))?;
        if body.len() > MAX_CONSOLE_FRAME {
            return Err(ProtoError::TooLarge(body.len()));
        }
        let len = u32::try_from(body.len()).map_err(|_| ProtoError::TooLarge(body.len()))?;
        let mut out = Vec::with_capacity(4 + body.len());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&body);
        w.write_all(&out)
            .await
            .map_err(|e| ProtoError::Malformed(format!("cannot write the frame: {e}")))
    }

    /// Reads one frame and decodes its JSON (size-checked; never panics).
    pub async fn read_frame<R, T>(r: &mut R) -> Result<T, ProtoError>
    where
        R: AsyncRead + Unpin,
        T: serde::de::DeserializeOwned,
    {
        let mut len = [0u8; 4];
        r.read_exact(&mut len)
            .await
            .map_err(|e| ProtoError::Malformed(format!("no frame: {e}")))?;
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_CONSOLE_FRAME {
            return Err(ProtoError::TooLarge(len));
        }
        let mut body = vec![0u8; len];
        r.read_exact(&mut body)
            .await
            .map_err(|e| ProtoError::Malformed(format!("short frame: {e}")))?;
        serde_json::from_slice(&body).map_err(|e| ProtoError::Malformed(e.to_string()))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[tokio::test]
        async fn frames_round_trip_and_garbage_is_refused() {
            let mut buf = Vec::new();
            let open = ConsoleOpen { name: "web".into() };
            write_frame(&mut buf, &open).await.unwrap();
            let back: ConsoleOpen = read_frame(&mut buf.as_slice()).await.unwrap();
            assert_eq!(back, open);

            let mut buf = Vec::new();
            let err = ConsoleAnswer::Error {
                code: ConsoleErrorCode::NotRunning,
                message: "stopped".into(),
            };
            write_frame(&mut buf, &err).await.unwrap();
            let back: ConsoleAnswer = read_frame(&mut buf.as_slice()).await.unwrap();
            assert_eq!(back, err);

            let huge = (MAX_CONSOLE_FRAME as u32 + 1).to_be_bytes();
            let cases: Vec<Vec<u8>> = vec![
                vec![],
                vec![0, 0],
                huge.to_vec(),
                [&[0u8, 0, 0, 5][..], b"{}"].concat(),
                [&[0u8, 0, 0, 2][..], b"{}"].concat(),
                [&[0u8, 0, 0, 12][..], br#"{"name":"a","x":1}"#].concat(),
            ];
            for c in cases {
                assert!(
                    read_frame::<_, ConsoleOpen>(&mut c.as_slice())
                        .await
                        .is_err(),
                    "{c:?}"
                );
            }
        }
    }
}

/// The image transfer protocol (ALPN `skiff-image/1`): on one bidirectional QUIC stream the leader
/// sends one [`ImageStreamOpen`] frame and the agent answers one [`ImageStreamAnswer`] frame
/// (frames as in [`console`]). After `Ready`:
/// - **upload**: the leader sends the image's bytes and finishes its half; the agent checks them
///   (`qemu-img info`: qcow2 without a backing file, or raw, which it converts), puts the image in
///   place, and answers one [`ImageStreamResult`] frame. Nothing is left behind when anything
///   fails: the bytes go to a temporary file that is removed on every path out.
/// - **download**: the agent sends the image file's bytes (`size_bytes` of them) and finishes.
pub mod image_stream {
    use serde::{Deserialize, Serialize};

    /// Time the leader gives an agent to answer the opening frame.
    pub const OPEN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
    /// Largest upload an agent takes (1 TiB of file; sparse images are much smaller).
    pub const MAX_UPLOAD_BYTES: u64 = 1 << 40;

    #[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
    #[serde(rename_all = "snake_case")]
    pub enum Direction {
        Upload,
        Download,
    }

    /// What the leader asks.
    #[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
    #[serde(deny_unknown_fields)]
    pub struct ImageStreamOpen {
        /// The image, in the node's pool `pool`.
        pub name: String,
        pub direction: Direction,
        #[serde(default = "crate::state::pools::local_pool_name")]
        pub pool: String,
    }

    /// The agent's answer to an [`ImageStreamOpen`].
    #[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
    #[serde(tag = "answer", rename_all = "snake_case")]
    pub enum ImageStreamAnswer {
        /// Send (upload) or receive (download) the bytes; `size_bytes`: the file's size, for a
        /// download.
        Ready {
            #[serde(default)]
            size_bytes: Option<u64>,
        },
        Error {
            message: String,
        },
    }

    /// How an upload ended.
    #[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
    #[serde(tag = "result", rename_all = "snake_case")]
    pub enum ImageStreamResult {
        /// In place, as a qcow2 image of this virtual size.
        Imported {
            virtual_size: u64,
        },
        Error {
            message: String,
        },
    }
}
