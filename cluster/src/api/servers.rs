//! API types and client calls for servers (`/api/v1/servers`) and for node maintenance
//! (`/api/v1/nodes/{name}/maintenance`, `/api/v1/nodes/{name}/evacuate`).

use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::client::{ApiClient, ClientError};
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

/// Percent-encodes a name so it is always one path segment.
fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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
    fn names_stay_one_segment() {
        assert_eq!(seg("web-1"), "web-1");
        assert_eq!(seg("../x y"), "..%2Fx%20y");
    }
}
