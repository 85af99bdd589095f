//! API types and client calls for disk images (`/api/v1/images`).

use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::client::{ApiClient, ClientError};
use super::seg;
use super::servers::TaskAccepted;
use crate::state::images::{busy_with, children, ImageRecord};
use crate::state::ClusterState;

/// The actions of `POST /api/v1/images/{name}/{action}`.
pub const IMAGE_ACTIONS: &[&str] = &[
    "clone", "master", "unmaster", "snapshot", "revert", "resize", "flatten", "convert",
];

/// An image as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageView {
    pub name: String,
    pub owner: String,
    /// The node whose pool holds it.
    pub node: String,
    pub pool: String,
    pub size_gib: u64,
    /// Read-only base of clones.
    pub master: bool,
    /// The master it is a clone of.
    pub parent: Option<String>,
    /// Images cloned from it.
    pub children: Vec<String>,
    pub snapshots: Vec<String>,
    pub created_at: u64,
    /// False until its node has made it.
    pub ready: bool,
    /// The open task working on it.
    pub busy_task: Option<u64>,
}

impl ImageView {
    pub fn of(state: &ClusterState, r: &ImageRecord) -> Self {
        ImageView {
            name: r.name.clone(),
            owner: r.owner.clone(),
            node: r.node.clone(),
            pool: r.pool.clone(),
            size_gib: r.size_gib,
            master: r.master,
            parent: r.parent.clone(),
            children: children(state, &r.name).map(str::to_string).collect(),
            snapshots: r.snapshots.clone(),
            created_at: r.created_at,
            ready: r.ready,
            busy_task: busy_with(state, r),
        }
    }
}

/// Body of `POST /api/v1/images`: a blank image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateImageRequest {
    pub name: String,
    pub size_gib: u64,
    /// The node whose pool gets it; absent: the node of `pool` when it is node-local, else the
    /// alive compute node with the most free space in the pool.
    #[serde(default)]
    pub node: Option<String>,
    /// The pool; absent: shared pool `0` when there is one, else the node's `local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
}

/// Optional body of `POST /api/v1/images/{name}/{action}`; each action reads its own field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageActionRequest {
    /// `clone`: the new image's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `snapshot`, `revert`: the snapshot's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// `resize`: the new (larger) size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_gib: Option<u64>,
    /// `convert`: the new image's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// `convert`: compress the new image's data (qcow2 compression: smaller, slower to write).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub compress: bool,
    /// `clone`, `convert`: the new image's pool on the same node (default: the source's pool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// `clone` of a master in a shared pool: the node of the new image (default: the master's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl ApiClient {
    /// `GET /api/v1/images`: the caller's images and every admin's masters (all for admins).
    pub async fn images(&self) -> Result<Vec<ImageView>, ClientError> {
        self.call::<(), _>(Method::GET, "/images", None).await
    }

    /// `GET /api/v1/images/{name}`.
    pub async fn image(&self, name: &str) -> Result<ImageView, ClientError> {
        self.call::<(), _>(Method::GET, &format!("/images/{}", seg(name)), None)
            .await
    }

    /// `POST /api/v1/images`: a blank image (a task on its node).
    pub async fn create_image(
        &self,
        req: &CreateImageRequest,
    ) -> Result<TaskAccepted, ClientError> {
        self.call(Method::POST, "/images", Some(req)).await
    }

    /// `POST /api/v1/images/{name}/{action}` (one of [`IMAGE_ACTIONS`]).
    pub async fn image_action(
        &self,
        name: &str,
        action: &str,
        body: &ImageActionRequest,
    ) -> Result<TaskAccepted, ClientError> {
        let path = format!("/images/{}/{}", seg(name), seg(action));
        self.call(Method::POST, &path, Some(body)).await
    }

    /// `DELETE /api/v1/images/{name}`.
    pub async fn remove_image(&self, name: &str) -> Result<TaskAccepted, ClientError> {
        self.call::<(), _>(Method::DELETE, &format!("/images/{}", seg(name)), None)
            .await
    }

    /// `PUT /api/v1/images/{name}/content`: uploads the file at `path` (qcow2 without a backing
    /// file, or raw) as a new image on `node` in `pool` (defaults as for
    /// [`CreateImageRequest`]). The file is read afresh for each attempt, so following the
    /// leader is safe.
    pub async fn upload_image(
        &self,
        name: &str,
        node: Option<&str>,
        pool: Option<&str>,
        path: &std::path::Path,
    ) -> Result<ImageView, ClientError> {
        let unreadable =
            |e: std::io::Error| ClientError::Setup(format!("cannot read {}: {e}", path.display()));
        let len = std::fs::metadata(path).map_err(unreadable)?.len();
        let params: Vec<String> = [("node", node), ("pool", pool)]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| format!("{k}={}", seg(v))))
            .collect();
        let query = if params.is_empty() {
            String::new()
        } else {
            format!("?{}", params.join("&"))
        };
        let route = format!("/images/{}/content{query}", seg(name));
        let mut opened: Option<std::io::Error> = None;
        let result = self
            .send_to_leader(
                &route,
                |http, url| {
                    let request = http
                        .put(url)
                        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                        .header(reqwest::header::CONTENT_LENGTH, len);
                    match std::fs::File::open(path) {
                        Ok(f) => request.body(reqwest::Body::wrap_stream(file_chunks(
                            tokio::fs::File::from_std(f),
                        ))),
                        Err(e) => {
                            opened = Some(e);
                            request
                        }
                    }
                },
                false,
            )
            .await;
        if let Some(e) = opened {
            return Err(unreadable(e));
        }
        let (addr, response) = result?;
        let body = response
            .bytes()
            .await
            .map_err(|e| ClientError::Unreachable {
                endpoints: vec![addr.clone()],
                detail: super::client::error_chain(&e),
            })?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Decode {
            endpoint: addr,
            message: e.to_string(),
        })
    }

    /// `GET /api/v1/images/{name}/content`: writes the image (qcow2) to `path`, which must not
    /// exist; returns the bytes written. A partial file is removed when the download fails.
    pub async fn download_image(
        &self,
        name: &str,
        path: &std::path::Path,
    ) -> Result<u64, ClientError> {
        use tokio::io::AsyncWriteExt as _;
        let io =
            |e: std::io::Error| ClientError::Setup(format!("cannot write {}: {e}", path.display()));
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .await
            .map_err(io)?;
        let route = format!("/images/{}/content", seg(name));
        let copied: Result<u64, ClientError> = async {
            let (addr, mut response) = self
                .send_to_leader(&route, |http, url| http.get(url), true)
                .await?;
            let mut total = 0u64;
            loop {
                let chunk = response
                    .chunk()
                    .await
                    .map_err(|e| ClientError::Unreachable {
                        endpoints: vec![addr.clone()],
                        detail: super::client::error_chain(&e),
                    })?;
                let Some(chunk) = chunk else { break };
                file.write_all(&chunk).await.map_err(io)?;
                total += chunk.len() as u64;
            }
            file.flush().await.map_err(io)?;
            Ok(total)
        }
        .await;
        if copied.is_err() {
            let _ = tokio::fs::remove_file(path).await;
        }
        copied
    }
}

/// A file's bytes as a stream of chunks, for a request body.
fn file_chunks(
    file: tokio::fs::File,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    futures::stream::unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt as _;
        let mut buf = vec![0u8; 256 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    })
}
