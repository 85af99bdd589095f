//! The `skiff-image/1` handler every compute node serves: the leader uploads images into this
//! node's pools and downloads them from them (protocol: `skiff_cluster::agentproto::image_stream`).
//!
//! An upload is written to a temporary file in the pool (removed on every path out, and by
//! `remove_stale_temp_files` after a crash), then checked and put in place by
//! [`ImageStore::import`]: qcow2 without a backing file is taken as it is, raw is converted, and
//! anything else (a backing file that would make the image read other host files, encryption,
//! corruption, garbage) is refused. At most [`MAX_UPLOAD_BYTES`] are accepted. Only the cluster's
//! nodes (the leader) may open these streams.

use std::io::Write as _;

use skiff_cluster::agentproto::console::{read_frame, write_frame};
use skiff_cluster::agentproto::image_stream::{
    Direction, ImageStreamAnswer, ImageStreamOpen, ImageStreamResult, MAX_UPLOAD_BYTES,
    OPEN_TIMEOUT,
};
use skiff_cluster::transport::{PeerInfo, StreamHandler};
use tokio::io::AsyncReadExt as _;
use tracing::{info, warn};

use super::images::{validate_image_name, ImageStore};

/// Bytes moved per read or write.
const CHUNK: usize = 256 * 1024;

/// Serves `skiff-image/1` on one node.
pub struct ImageStreamHandler {
    node: String,
    pools: Option<super::pools::Pools>,
}

impl ImageStreamHandler {
    /// `pools: None`: this node has no image pool (it does not run servers).
    pub fn new(node: String, pools: Option<super::pools::Pools>) -> Self {
        ImageStreamHandler { node, pools }
    }
}

#[async_trait::async_trait]
impl StreamHandler for ImageStreamHandler {
    async fn handle(
        &self,
        peer: PeerInfo,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
    ) {
        let refuse = |message: String| ImageStreamAnswer::Error { message };
        let opened: Result<(ImageStreamOpen, ImageStore), ImageStreamAnswer> = async {
            if peer.node_name().is_none() {
                warn!(peer = %peer.addr, "image transfer from a peer that is not a node: refused");
                return Err(refuse("only cluster nodes may transfer images".into()));
            }
            let open: ImageStreamOpen = tokio::time::timeout(OPEN_TIMEOUT, read_frame(&mut recv))
                .await
                .map_err(|_| refuse("no transfer request within the time allowed".into()))?
                .map_err(|e| refuse(e.to_string()))?;
            validate_image_name(&open.name).map_err(|e| refuse(e.to_string()))?;
            let store = self
                .pools
                .as_ref()
                .ok_or_else(|| refuse(format!("node {} has no image pool", self.node)))?
                .get(&open.pool)
                .map_err(|e| refuse(format!("node {}: {e}", self.node)))?;
            Ok((open, store))
        }
        .await;
        let (open, store) = match opened {
            Ok(o) => o,
            Err(answer) => {
                if write_frame(&mut send, &answer).await.is_ok() {
                    let _ = send.finish();
                }
                return;
            }
        };
        match open.direction {
            Direction::Upload => upload(store, open.name, send, recv).await,
            Direction::Download => download(store, open.name, send).await,
        }
    }
}

/// Receives an image into the pool; answers how it ended.
async fn upload(
    store: ImageStore,
    name: String,
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
) {
    let result = match receive(&store, &name, &mut send, recv).await {
        Ok(Some(virtual_size)) => {
            info!(image = %name, virtual_size, "image uploaded");
            ImageStreamResult::Imported { virtual_size }
        }
        // The refusal was the answer to the opening frame.
        Ok(None) => return,
        Err(message) => {
            warn!(image = %name, %message, "image upload failed");
            ImageStreamResult::Error { message }
        }
    };
    if write_frame(&mut send, &result).await.is_ok() {
        let _ = send.finish();
    }
}

/// The upload's work: `Ok(None)` when it was refused at the start (answered already).
async fn receive(
    store: &ImageStore,
    name: &str,
    send: &mut quinn::SendStream,
    mut recv: quinn::RecvStream,
) -> Result<Option<u64>, String> {
    let refused = match store.exists(name) {
        Ok(true) => Some(format!(
            "an image named {name:?} exists already on this node"
        )),
        Ok(false) => None,
        Err(e) => Some(e.to_string()),
    };
    if let Some(message) = refused {
        let answer = ImageStreamAnswer::Error { message };
        if write_frame(send, &answer).await.is_ok() {
            let _ = send.finish();
        }
        return Ok(None);
    }
    let tmp = tempfile::Builder::new()
        .prefix(".upload-")
        .suffix(".tmp")
        .tempfile_in(store.root())
        .map_err(|e| format!("cannot make a temporary file in the pool: {e}"))?;
    write_frame(send, &ImageStreamAnswer::Ready { size_bytes: None })
        .await
        .map_err(|e| e.to_string())?;
    // Bytes are written on a blocking thread; a bounded queue keeps memory flat.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
    let file = tmp.reopen().map_err(|e| e.to_string())?;
    let writer = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let mut file = std::io::BufWriter::new(file);
        while let Some(chunk) = rx.blocking_recv() {
            file.write_all(&chunk).map_err(|e| e.to_string())?;
        }
        file.flush().map_err(|e| e.to_string())
    });
    let mut total: u64 = 0;
    let mut buf = vec![0u8; CHUNK];
    let read: Result<(), String> = loop {
        match recv.read(&mut buf).await {
            Ok(None) => break Ok(()),
            Ok(Some(n)) => {
                total += n as u64;
                if total > MAX_UPLOAD_BYTES {
                    break Err(format!("uploads are at most {MAX_UPLOAD_BYTES} bytes"));
                }
                if tx.send(buf[..n].to_vec()).await.is_err() {
                    break Err("writing the upload failed".into());
                }
            }
            Err(e) => break Err(format!("the upload broke off: {e}")),
        }
    };
    drop(tx);
    let written = writer
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| format!("writing the upload failed: {e}")));
    read?;
    written?;
    if total == 0 {
        return Err("the upload is empty".into());
    }
    let store = store.clone();
    let name = name.to_string();
    tokio::task::spawn_blocking(move || -> Result<u64, String> {
        store.import(&name, tmp.path()).map_err(|e| e.to_string())?;
        // `tmp` is removed when dropped here.
        store
            .info(&name)
            .map(|i| i.virtual_size)
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
    .map(Some)
}

/// Sends an image file's bytes.
async fn download(store: ImageStore, name: String, mut send: quinn::SendStream) {
    let file = match store.path(&name) {
        Ok(path) => tokio::fs::File::open(&path)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let size = match &file {
        Ok(f) => f
            .metadata()
            .await
            .map(|m| m.len())
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.clone()),
    };
    let (mut file, size) = match (file, size) {
        (Ok(f), Ok(s)) => (f, s),
        (Err(message), _) | (_, Err(message)) => {
            let answer = ImageStreamAnswer::Error { message };
            if write_frame(&mut send, &answer).await.is_ok() {
                let _ = send.finish();
            }
            return;
        }
    };
    let ready = ImageStreamAnswer::Ready {
        size_bytes: Some(size),
    };
    if write_frame(&mut send, &ready).await.is_err() {
        return;
    }
    let mut buf = vec![0u8; CHUNK];
    loop {
        match file.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                if send.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                warn!(image = %name, error = %e, "reading the image failed mid-download");
                let _ = send.reset(quinn::VarInt::from_u32(500));
                return;
            }
        }
    }
    let _ = send.finish();
}
