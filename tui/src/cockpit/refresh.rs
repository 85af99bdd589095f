//! Background data collection for the cockpit: asks the API every interval (or when woken) and
//! sends each result over a channel, so the drawing loop never waits on the network.

use std::sync::Arc;
use std::time::Duration;

use skiff_cluster::api::client::{ApiClient, ClientError};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use super::app::Update;

/// How often the cockpit asks the cluster for news.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// One round: the cluster view and the node list, asked concurrently.
pub async fn fetch(client: &ApiClient) -> Update {
    let (cluster, nodes) = tokio::join!(client.cluster(), client.nodes());
    let endpoint = client.current_endpoint();
    match (cluster, nodes) {
        (Ok(cluster), Ok(nodes)) => Update::Snapshot {
            endpoint,
            cluster,
            nodes,
        },
        (Err(e), _) | (_, Err(e)) => failure(endpoint, &e),
    }
}

fn failure(endpoint: String, error: &ClientError) -> Update {
    if error.is_unreachable() {
        Update::Unreachable {
            error: error.to_string(),
        }
    } else {
        Update::Refused {
            endpoint,
            error: error.to_string(),
        }
    }
}

/// Starts the refresher on the current runtime. It stops when the receiver is dropped.
/// `wake` asks for a round before the interval is over.
pub fn spawn(
    client: Arc<ApiClient>,
    interval: Duration,
    updates: mpsc::Sender<Update>,
    wake: Arc<Notify>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let update = fetch(&client).await;
            if updates.send(update).await.is_err() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = wake.notified() => {}
                _ = updates.closed() => return,
            }
        }
    })
}
