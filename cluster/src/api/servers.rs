//! API types and client calls for servers (`/api/v1/servers`) and for node maintenance
//! (`/api/v1/nodes/{name}/maintenance`, `/api/v1/nodes/{name}/evacuate`).

use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::client::{ApiClient, ClientError};
use super::seg;
use crate::state::servers::{BootDevice, DiskSpec, NicSpec, PowerState, ServerRecord, ServerSpec};

/// Body of `POST /api/v1/servers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateServerRequest {
    pub name: String,
    pub memory_mib: u64,
    pub vcpus: u32,
    #[serde(default)]
    pub disks: Vec<DiskSpec>,
    #[serde(default)]
    pub nics: Vec<NicSpec>,
    #[serde(default)]
    pub boot_order: Vec<BootDevice>,
    #[serde(default)]
    pub autostart: bool,
    /// Only ever place the server on this node.
    #[serde(default)]
    pub lock_to_node: Option<String>,
    /// Place it on this node (checked by the scheduler) instead of letting the scheduler choose.
    #[serde(default)]
    pub node: Option<String>,
    #[serde(default)]
    pub ha: bool,
    #[serde(default)]
    pub iso: Option<String>,
    /// Start it once created.
    #[serde(default)]
    pub start: bool,
}

impl CreateServerRequest {
    /// The spec the request describes.
    pub fn spec(&self) -> ServerSpec {
        ServerSpec {
            memory_mib: self.memory_mib,
            vcpus: self.vcpus,
            disks: self.disks.clone(),
            nics: self.nics.clone(),
            boot_order: self.boot_order.clone(),
            autostart: self.autostart,
            lock_to_node: self.lock_to_node.clone(),
            ha: self.ha,
            iso: self.iso.clone(),
        }
    }
}

/// A server as the API shows it (`GET /api/v1/servers[/{name}]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerView {
    pub name: String,
    pub owner: String,
    /// The node it is placed on.
    pub node: Option<String>,
    /// Whether it should run (`running`, `stopped`, `suspended`).
    pub desired: PowerState,
    pub spec: ServerSpec,
    pub created_at: u64,
    pub generation: u64,
}

impl From<&ServerRecord> for ServerView {
    fn from(r: &ServerRecord) -> Self {
        ServerView {
            name: r.name.clone(),
            owner: r.owner.clone(),
            node: r.node.clone(),
            desired: r.desired,
            spec: r.spec.clone(),
            created_at: r.created_at,
            generation: r.generation,
        }
    }
}

/// Answer (202) to a write that started a long operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskAccepted {
    pub task_id: u64,
    /// The node the server is (or will be) on, when the operation placed it.
    #[serde(default)]
    pub node: Option<String>,
}

/// Actions of `POST /api/v1/servers/{name}/{action}`.
pub const SERVER_ACTIONS: &[&str] = &[
    "start",
    "shutdown",
    "destroy",
    "suspend",
    "resume",
    "reboot",
    "move",
    "attach_disk",
    "detach_disk",
    "mount_iso",
    "unmount_iso",
];

/// `GET /api/v1/servers/{name}/console`: the end of the server's serial console output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleView {
    pub server: String,
    pub node: String,
    pub text: String,
    /// Older output was left out (ask for more with `bytes`).
    pub truncated: bool,
}

/// How long one attached console may last before the client drops it (a day).
pub const CONSOLE_SESSION_LIMIT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// Bytes buffered inside a [`ConsoleStream`] each way, and chunks queued for the request body:
/// a caller that stops reading holds the console back instead of growing memory.
const CONSOLE_BUFFER: usize = 64 * 1024;
const CONSOLE_QUEUE: usize = 16;

/// An attached two-way serial console ([`ApiClient::attach_console`]): read the console's output,
/// write what to type. Shutting down the write half detaches (the output ends soon after);
/// dropping the stream detaches at once. Reads end (EOF) when the console closes: the server
/// stopped, or another session took the console over.
#[derive(Debug)]
pub struct ConsoleStream {
    io: tokio::io::DuplexStream,
    endpoint: String,
}

impl ConsoleStream {
    /// The node (`HOST:PORT`) serving the session (the leader).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Joins the caller's end of a duplex pipe to the HTTP exchange: what the caller writes goes
    /// to `typed` (the request body), the response body is written for the caller to read.
    fn start(
        response: reqwest::Response,
        typed: tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>,
        endpoint: String,
    ) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (user, ours) = tokio::io::duplex(CONSOLE_BUFFER);
        let (mut from_user, mut to_user) = tokio::io::split(ours);
        tokio::spawn(async move {
            let typing = async move {
                let mut buf = vec![0u8; 4096];
                loop {
                    match from_user.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let chunk = bytes::Bytes::copy_from_slice(&buf[..n]);
                            if typed.send(Ok(chunk)).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                // Dropping `typed` ends the request body: the server detaches.
            };
            let showing = async move {
                let mut response = response;
                while let Ok(Some(chunk)) = response.chunk().await {
                    if to_user.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
                let _ = to_user.shutdown().await;
            };
            let mut showing = std::pin::pin!(showing);
            tokio::select! {
                () = &mut showing => {}
                () = typing => showing.await,
            }
        });
        ConsoleStream { io: user, endpoint }
    }
}

impl tokio::io::AsyncRead for ConsoleStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for ConsoleStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Optional body of `POST /api/v1/servers/{name}/{action}`; each action reads its own field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerActionRequest {
    /// `move`: the destination; absent, the scheduler chooses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// `shutdown`: seconds before forcing it off (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_after_secs: Option<u64>,
    /// `attach_disk`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<DiskSpec>,
    /// `detach_disk`: index in the server's disk list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// `mount_iso`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iso: Option<String>,
}

/// Body of `POST /api/v1/nodes/{name}/maintenance`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceRequest {
    pub on: bool,
}

/// Answer to `POST /api/v1/nodes/{name}/maintenance`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceView {
    pub node: String,
    pub maintenance: bool,
}

/// One planned move of an evacuation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvacuationMove {
    pub server: String,
    pub to: String,
    pub task_id: u64,
}

/// Answer (202) to `POST /api/v1/nodes/{name}/evacuate`: the node is in maintenance and each of
/// its servers has a `server.move` task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvacuationView {
    pub node: String,
    pub moves: Vec<EvacuationMove>,
}

impl ApiClient {
    /// `POST /api/v1/servers`: create a server (placed by the scheduler unless `node` is given).
    pub async fn create_server(
        &self,
        req: &CreateServerRequest,
    ) -> Result<TaskAccepted, ClientError> {
        self.call(Method::POST, "/servers", Some(req)).await
    }

    /// `GET /api/v1/servers`: the servers the caller may see (all of them for admins).
    pub async fn servers(&self) -> Result<Vec<ServerView>, ClientError> {
        self.call::<(), _>(Method::GET, "/servers", None).await
    }

    /// `GET /api/v1/servers/{name}`.
    pub async fn server(&self, name: &str) -> Result<ServerView, ClientError> {
        self.call::<(), _>(Method::GET, &format!("/servers/{}", seg(name)), None)
            .await
    }

    /// `POST /api/v1/servers/{name}/{action}` (one of [`SERVER_ACTIONS`]).
    pub async fn server_action(
        &self,
        name: &str,
        action: &str,
        body: &ServerActionRequest,
    ) -> Result<TaskAccepted, ClientError> {
        let path = format!("/servers/{}/{}", seg(name), seg(action));
        self.call(Method::POST, &path, Some(body)).await
    }

    /// `GET /api/v1/servers/{name}/console?bytes=N`.
    pub async fn server_console(
        &self,
        name: &str,
        bytes: Option<u64>,
    ) -> Result<ConsoleView, ClientError> {
        let mut path = format!("/servers/{}/console", seg(name));
        if let Some(b) = bytes {
            path.push_str(&format!("?bytes={b}"));
        }
        self.call::<(), _>(Method::GET, &path, None).await
    }

    /// `POST /api/v1/servers/{name}/console/attach`: attaches to the server's serial console,
    /// both ways, on the leader (followed like every call). The exchange is full duplex over the
    /// client's HTTP/2 connection: the request body carries what is typed, the response body the
    /// console's output. Refused with the API's error (`not_found`, `not_running`, `forbidden`,
    /// `node_unavailable`) before anything is typed.
    pub async fn attach_console(&self, name: &str) -> Result<ConsoleStream, ClientError> {
        let path = format!("/servers/{}/console/attach", seg(name));
        // Each attempt gets its own typing channel; the one that reached the leader is kept.
        let mut typing = None;
        let (addr, response) = self
            .send_to_leader(
                &path,
                |http, url| {
                    let (tx, rx) = tokio::sync::mpsc::channel(CONSOLE_QUEUE);
                    typing = Some(tx);
                    let typed = futures::stream::unfold(rx, |mut rx| async move {
                        rx.recv().await.map(|item| (item, rx))
                    });
                    http.post(url)
                        .timeout(CONSOLE_SESSION_LIMIT)
                        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                        .body(reqwest::Body::wrap_stream(typed))
                },
                // Nothing was typed yet: trying another endpoint is harmless.
                true,
            )
            .await?;
        let tx = typing.ok_or_else(|| ClientError::Setup("no console request was made".into()))?;
        Ok(ConsoleStream::start(response, tx, addr))
    }

    /// `DELETE /api/v1/servers/{name}`.
    pub async fn remove_server(&self, name: &str) -> Result<TaskAccepted, ClientError> {
        self.call::<(), _>(Method::DELETE, &format!("/servers/{}", seg(name)), None)
            .await
    }

    /// `POST /api/v1/nodes/{name}/maintenance` (admin only).
    pub async fn set_maintenance(
        &self,
        node: &str,
        on: bool,
    ) -> Result<MaintenanceView, ClientError> {
        let path = format!("/nodes/{}/maintenance", seg(node));
        self.call(Method::POST, &path, Some(&MaintenanceRequest { on }))
            .await
    }

    /// `POST /api/v1/nodes/{name}/evacuate` (admin only).
    pub async fn evacuate(&self, node: &str) -> Result<EvacuationView, ClientError> {
        let path = format!("/nodes/{}/evacuate", seg(node));
        self.call::<(), _>(Method::POST, &path, None).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_refuse_unknown_fields() {
        let ok: CreateServerRequest =
            serde_json::from_str(r#"{"name":"web","memory_mib":512,"vcpus":1}"#).unwrap();
        assert_eq!(ok.spec().memory_mib, 512);
        assert!(!ok.start && ok.disks.is_empty() && ok.node.is_none());
        assert!(serde_json::from_str::<CreateServerRequest>(
            r#"{"name":"web","memory_mib":512,"vcpus":1,"colour":"red"}"#
        )
        .is_err());
        assert!(serde_json::from_str::<ServerActionRequest>(r#"{"target":"n2"}"#).is_err());
        assert_eq!(
            serde_json::to_string(&ServerActionRequest::default()).unwrap(),
            "{}"
        );
        assert!(serde_json::from_str::<MaintenanceRequest>(r#"{"on":true,"x":1}"#).is_err());
    }

    #[test]
    fn a_console_stream_is_an_async_byte_pipe() {
        fn pipe<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static>() {}
        pipe::<ConsoleStream>();
    }

    #[test]
    fn names_stay_one_segment() {
        assert_eq!(seg("web-1"), "web-1");
        assert_eq!(seg("../x y"), "..%2Fx%20y");
    }
}
