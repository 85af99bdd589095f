//! The `skiff-console/1` handler every compute node serves: the leader attaches to a server's
//! serial console through it (see `skiff_cluster::agentproto::console` for the protocol). After
//! the header exchange the QUIC stream and the hypervisor's [`ConsoleSession`] are joined: bytes
//! from the leader are typed on the console, the console's output goes back. Both directions go
//! through bounded queues, so a slow leader (or client behind it) holds the console back instead
//! of growing memory.

use std::sync::Arc;

use skiff_cluster::agentproto::console::{
    read_frame, write_frame, ConsoleAnswer, ConsoleErrorCode, ConsoleOpen, OPEN_TIMEOUT,
};
use skiff_cluster::transport::{PeerInfo, StreamHandler};
use tracing::{debug, info, warn};

use super::{ConsoleSession, Hypervisor, HypervisorError, CONSOLE_CHUNK};

/// Serves `skiff-console/1` on one node.
pub struct ConsoleHandler {
    node: String,
    hypervisor: Option<Arc<dyn Hypervisor>>,
}

impl ConsoleHandler {
    /// `hypervisor: None`: this node does not run servers.
    pub fn new(node: String, hypervisor: Option<Arc<dyn Hypervisor>>) -> Self {
        ConsoleHandler { node, hypervisor }
    }

    /// Opens the console the header asks for, or says why not.
    async fn open(&self, peer: &PeerInfo, recv: &mut quinn::RecvStream) -> Opened {
        if peer.node_name().is_none() {
            warn!(peer = %peer.addr, "console request from a peer that is not a node: refused");
            return Opened::Refused(
                ConsoleErrorCode::Forbidden,
                "only cluster nodes may attach to consoles".into(),
            );
        }
        let open: ConsoleOpen = match tokio::time::timeout(OPEN_TIMEOUT, read_frame(recv)).await {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => return Opened::Refused(ConsoleErrorCode::BadRequest, e.to_string()),
            Err(_) => {
                return Opened::Refused(
                    ConsoleErrorCode::BadRequest,
                    "no console request within the time allowed".into(),
                )
            }
        };
        let Some(h) = self.hypervisor.clone() else {
            return Opened::Refused(
                ConsoleErrorCode::ComputeDisabled,
                format!(
                    "node {} does not run servers ([compute] enabled = false)",
                    self.node
                ),
            );
        };
        let name = open.name;
        let n = name.clone();
        match tokio::task::spawn_blocking(move || h.open_console(&n)).await {
            Ok(Ok(session)) => Opened::Attached(name, session),
            Ok(Err(e)) => {
                let code = match e {
                    HypervisorError::NotFound(_) => ConsoleErrorCode::NotFound,
                    HypervisorError::InvalidState { .. } => ConsoleErrorCode::NotRunning,
                    HypervisorError::Failed(_) => ConsoleErrorCode::Hypervisor,
                };
                Opened::Refused(code, e.to_string())
            }
            Err(e) => Opened::Refused(
                ConsoleErrorCode::Hypervisor,
                format!("opening the console failed: {e}"),
            ),
        }
    }
}

enum Opened {
    Attached(String, ConsoleSession),
    Refused(ConsoleErrorCode, String),
}

#[async_trait::async_trait]
impl StreamHandler for ConsoleHandler {
    async fn handle(
        &self,
        peer: PeerInfo,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
    ) {
        let (name, session) = match self.open(&peer, &mut recv).await {
            Opened::Attached(name, session) => (name, session),
            Opened::Refused(code, message) => {
                debug!(peer = %peer.addr, ?code, %message, "console refused");
                let answer = ConsoleAnswer::Error { code, message };
                if write_frame(&mut send, &answer).await.is_ok() {
                    let _ = send.finish();
                }
                return;
            }
        };
        if write_frame(&mut send, &ConsoleAnswer::Attached)
            .await
            .is_err()
        {
            return;
        }
        info!(server = %name, from = ?peer.node_name(), "console attached");
        pipe(session, send, recv).await;
        info!(server = %name, "console detached");
    }
}

/// Joins a console session and a QUIC stream until either ends.
async fn pipe(session: ConsoleSession, mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
    let ConsoleSession { mut output, input } = session;
    // Leader -> console. Ends when the leader finishes its half (detach) or the console closes.
    let typing = async move {
        let mut buf = vec![0u8; CONSOLE_CHUNK];
        while let Ok(Some(n)) = recv.read(&mut buf).await {
            if input.send(buf[..n].to_vec()).await.is_err() {
                break;
            }
        }
        let _ = recv.stop(quinn::VarInt::from_u32(0));
        // Dropping `input` closes the console: its thread ends and `output` closes.
    };
    // Console -> leader. Ends when the console closes (after a detach too) or the leader is gone.
    let showing = async move {
        while let Some(chunk) = output.recv().await {
            if send.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = send.finish();
    };
    let mut typing = std::pin::pin!(typing);
    let mut showing = std::pin::pin!(showing);
    tokio::select! {
        _ = &mut showing => {}
        _ = &mut typing => {
            // Detached: let the console drain and close (its thread sees the input gone).
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), showing).await;
        }
    }
}
