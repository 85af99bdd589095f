//! Network work of the cockpit, each piece on a tokio task reporting over the [`Update`]
//! channel, so the drawing loop never waits on the network:
//!
//! - [`spawn`]: one full round of `GET`s, then the live event stream; deltas (tasks, node and
//!   server figures) go to the app as they come, a `state` event triggers a (debounced) full
//!   round, and so do `lagged`, a reconnect and the operator's `r`. When the stream ends (the
//!   leader changed or went away) the link shows "reconnecting" and the stream is opened again
//!   with backoff; the client follows the new leader by itself.
//! - [`operate`]: one operation (a task for servers, images and backups; one task per server for
//!   stacks; an immediate answer for connections).
//! - [`console_task`]: a server's console while its pane is open.

use std::sync::Arc;
use std::time::Duration;

use skiff_cluster::api::client::{ApiClient, ClientError};
use skiff_cluster::api::events::ApiEvent;
use skiff_cluster::api::servers::ServerActionRequest;
use skiff_cluster::state::UserRole;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::app::{Operation, ServerOp, Snapshot, Update};
use super::console;

/// First wait before trying again after a failure; doubles up to [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// Longest wait between two attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(8);
/// A burst of `state` events makes one full round this long after the first.
pub const STATE_DEBOUNCE: Duration = Duration::from_millis(300);
/// How often a read-only console pane asks for new output.
pub const CONSOLE_POLL: Duration = Duration::from_millis(500);
/// How much of the console's end each poll reads.
pub const CONSOLE_BYTES: u64 = 64 * 1024;
/// Audit records a full round reads (admins only).
pub const AUDIT_LIMIT: usize = 200;
/// What the console pane says when typing into it was refused (followed by why).
pub const CONSOLE_READ_ONLY: &str = "read-only console";

/// One full round: cluster and nodes first (without them nothing is shown), then servers, the
/// reconciler's view, tasks, `whoami`, images, backups, connections, the address plan and stacks, then
/// users and audit for admins, each set concurrently. A list the API refuses (or a leader too old
/// to serve it) stays `None`, so the previous copy is kept.
pub async fn fetch(client: &ApiClient) -> Update {
    let (cluster, nodes) = tokio::join!(client.cluster(), client.nodes());
    let endpoint = client.current_endpoint();
    let (cluster, nodes) = match (cluster, nodes) {
        (Ok(cluster), Ok(nodes)) => (cluster, nodes),
        (Err(e), _) | (_, Err(e)) => return failure(endpoint, &e),
    };
    let (servers, actual, tasks, me, images, backups, connections, network, stacks) = tokio::join!(
        client.servers(),
        client.actual(),
        client.tasks(),
        client.whoami(),
        client.images(),
        client.backups(),
        client.connections(),
        client.network(),
        client.stacks()
    );
    let admin = me.as_ref().is_ok_and(|m| m.role == UserRole::Admin);
    let (users, audit) = if admin {
        let (users, audit) = tokio::join!(client.users(), client.audit(Some(AUDIT_LIMIT)));
        (users.ok(), audit.ok())
    } else {
        (None, None)
    };
    let mut snapshot = Snapshot::new(endpoint, cluster, nodes);
    snapshot.servers = servers.ok();
    snapshot.actual = actual.ok();
    snapshot.tasks = tasks.ok();
    snapshot.me = me.ok();
    snapshot.images = images.ok();
    snapshot.backups = backups.ok();
    snapshot.connections = connections.ok();
    snapshot.network = network.ok();
    snapshot.stacks = stacks.ok();
    snapshot.users = users;
    snapshot.audit = audit;
    Update::Snapshot(Box::new(snapshot))
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
/// `wake` asks for a full round now.
pub fn spawn(
    client: Arc<ApiClient>,
    updates: mpsc::Sender<Update>,
    wake: Arc<Notify>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let _ = follow(&client, &updates, &wake).await;
    })
}

/// The receiver is gone: the session ended.
struct Closed;

async fn send(updates: &mpsc::Sender<Update>, update: Update) -> Result<(), Closed> {
    updates.send(update).await.map_err(|_| Closed)
}

/// Waits `delay`, or less if woken.
async fn pause(
    delay: Duration,
    wake: &Notify,
    updates: &mpsc::Sender<Update>,
) -> Result<(), Closed> {
    tokio::select! {
        _ = tokio::time::sleep(delay) => Ok(()),
        _ = wake.notified() => Ok(()),
        _ = updates.closed() => Err(Closed),
    }
}

async fn follow(
    client: &ApiClient,
    updates: &mpsc::Sender<Update>,
    wake: &Notify,
) -> Result<(), Closed> {
    let mut backoff = BACKOFF_MIN;
    loop {
        let round = fetch(client).await;
        let ok = matches!(round, Update::Snapshot(_));
        send(updates, round).await?;
        if !ok {
            pause(backoff, wake, updates).await?;
            backoff = (backoff * 2).min(BACKOFF_MAX);
            continue;
        }
        let mut stream = match client.events().await {
            Ok(stream) => stream,
            Err(e) => {
                send(
                    updates,
                    Update::Reconnecting {
                        error: e.to_string(),
                    },
                )
                .await?;
                pause(backoff, wake, updates).await?;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        backoff = BACKOFF_MIN;
        send(
            updates,
            Update::Streaming {
                endpoint: stream.endpoint().to_owned(),
            },
        )
        .await?;
        let mut due: Option<Instant> = None;
        let error = loop {
            let debounce = async {
                match due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = stream.next() => match event {
                    Some(Ok(ApiEvent::Lagged)) => {
                        send(updates, Update::Event(ApiEvent::Lagged)).await?;
                        send(updates, fetch(client).await).await?;
                    }
                    Some(Ok(event @ ApiEvent::State { .. })) => {
                        send(updates, Update::Event(event)).await?;
                        due.get_or_insert_with(|| Instant::now() + STATE_DEBOUNCE);
                    }
                    Some(Ok(event)) => send(updates, Update::Event(event)).await?,
                    Some(Err(e)) => break e.to_string(),
                    None => break format!("the event stream from {} ended", stream.endpoint()),
                },
                _ = debounce => {
                    due = None;
                    send(updates, fetch(client).await).await?;
                }
                _ = wake.notified() => send(updates, fetch(client).await).await?,
                _ = updates.closed() => return Err(Closed),
            }
        };
        send(updates, Update::Reconnecting { error }).await?;
        pause(backoff, wake, updates).await?;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Sends one operation to the API: the answer is the started task (tasks for a stack), the result
/// of an immediate operation (connections), or the API's error.
pub async fn operate(client: &ApiClient, operation: Operation) -> Update {
    let name = operation.server.as_str();
    let accepted = match operation.op {
        ServerOp::StartStack => Some(client.start_stack(name).await),
        ServerOp::StopStack => Some(client.stop_stack(name, None).await),
        ServerOp::DeleteStack => Some(client.remove_stack(name).await),
        _ => None,
    };
    match accepted {
        Some(Ok(accepted)) => {
            return Update::TasksStarted {
                operation,
                task_ids: accepted.tasks.iter().map(|t| t.task_id).collect(),
            }
        }
        Some(Err(e)) => {
            return Update::OperationFailed {
                operation,
                error: e.to_string(),
            }
        }
        None => {}
    }
    let done = match operation.op {
        ServerOp::ActivateConnection => client.set_connection_active(name, true).await,
        ServerOp::DeactivateConnection => client.set_connection_active(name, false).await,
        ServerOp::DeleteConnection => client.remove_connection(name).await,
        _ => return start_task(client, operation).await,
    };
    match done {
        Ok(connection) => Update::OperationDone {
            operation,
            connection,
        },
        Err(e) => Update::OperationFailed {
            operation,
            error: e.to_string(),
        },
    }
}

/// An operation that runs as a task: the answer is the started task, or the API's error.
async fn start_task(client: &ApiClient, operation: Operation) -> Update {
    use skiff_cluster::api::backups::BackupTargetRequest;
    use skiff_cluster::api::images::ImageActionRequest;
    use skiff_cluster::api::servers::TaskAccepted;
    let name = operation.server.as_str();
    let arg = operation.to.clone();
    let image_action = |action: &'static str, body: ImageActionRequest| async move {
        client.image_action(name, action, &body).await
    };
    let backup_id = || -> Result<u64, ClientError> {
        name.parse().map_err(|_| ClientError::Api {
            status: 400,
            code: "bad_request".into(),
            message: format!("{name:?} is not a backup id"),
        })
    };
    let result: Result<TaskAccepted, ClientError> = match operation.op {
        ServerOp::Delete => client.remove_server(name).await,
        ServerOp::BackupServer => {
            let target = BackupTargetRequest {
                pool: None,
                image: None,
                server: Some(name.to_owned()),
            };
            client.create_backup(&target).await
        }
        ServerOp::BackupImage => {
            let target = BackupTargetRequest {
                pool: None,
                image: Some(name.to_owned()),
                server: None,
            };
            client.create_backup(&target).await
        }
        ServerOp::CloneImage => {
            let body = ImageActionRequest {
                name: arg,
                ..Default::default()
            };
            image_action("clone", body).await
        }
        ServerOp::SnapshotImage | ServerOp::RevertImage => {
            let body = ImageActionRequest {
                snapshot: arg,
                ..Default::default()
            };
            let action = if operation.op == ServerOp::SnapshotImage {
                "snapshot"
            } else {
                "revert"
            };
            image_action(action, body).await
        }
        ServerOp::DeleteImage => client.remove_image(name).await,
        ServerOp::RestoreBackup => match backup_id() {
            Ok(id) => client.restore_backup(id).await,
            Err(e) => Err(e),
        },
        ServerOp::DeleteBackup => match backup_id() {
            Ok(id) => client.remove_backup(id).await,
            Err(e) => Err(e),
        },
        op => {
            let body = ServerActionRequest {
                to: arg,
                ..ServerActionRequest::default()
            };
            let action = op.api_action().unwrap_or_default();
            client.server_action(name, action, &body).await
        }
    };
    match result {
        Ok(accepted) => Update::OperationStarted {
            operation,
            task_id: accepted.task_id,
        },
        Err(e) => Update::OperationFailed {
            operation,
            error: e.to_string(),
        },
    }
}

/// Polls failures in a row after which the console pane says the console is gone.
const CONSOLE_MAX_FAILURES: u32 = 10;

/// The console of `server` while its pane is open: the end of its output first (so the pane
/// shows the last screen), then the two-way console (`ApiClient::attach_console`): output as it
/// comes, what the operator types (`input`) sent as typed. When attaching is refused (a read-only
/// user, a server that is not running) the pane falls back to polling the read-only tail every
/// [`CONSOLE_POLL`] and says why typing does nothing. Closing the pane drops `input`, which
/// detaches.
pub async fn console_task(
    client: Arc<ApiClient>,
    server: String,
    mut input: mpsc::Receiver<Vec<u8>>,
    updates: mpsc::Sender<Update>,
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut seen = String::new();
    if let Ok(view) = client.server_console(&server, Some(CONSOLE_BYTES)).await {
        if !view.text.is_empty()
            && updates
                .send(Update::ConsoleOutput(view.text.as_bytes().to_vec()))
                .await
                .is_err()
        {
            return;
        }
        seen = view.text;
    }
    let stream = match client.attach_console(&server).await {
        Ok(s) => s,
        Err(e) => {
            let notice = format!("{CONSOLE_READ_ONLY}: {e}");
            if updates.send(Update::Notice(notice)).await.is_err() {
                return;
            }
            return poll_console(client, server, seen, input, updates).await;
        }
    };
    let (mut output, mut typing) = tokio::io::split(stream);
    let mut buf = vec![0u8; 4096];
    loop {
        tokio::select! {
            read = output.read(&mut buf) => match read {
                Ok(0) | Err(_) => {
                    let _ = updates
                        .send(Update::ConsoleClosed("the console closed".into()))
                        .await;
                    return;
                }
                Ok(n) => {
                    if updates.send(Update::ConsoleOutput(buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
            },
            typed = input.recv() => match typed {
                Some(bytes) => {
                    if typing.write_all(&bytes).await.is_err() {
                        let _ = updates
                            .send(Update::ConsoleClosed("the console closed".into()))
                            .await;
                        return;
                    }
                }
                // The pane closed: detach.
                None => {
                    let _ = typing.shutdown().await;
                    return;
                }
            },
        }
    }
}

/// The read-only console: the tail, polled every [`CONSOLE_POLL`], only what is new sent on.
async fn poll_console(
    client: Arc<ApiClient>,
    server: String,
    mut seen: String,
    mut input: mpsc::Receiver<Vec<u8>>,
    updates: mpsc::Sender<Update>,
) {
    let mut failures = 0;
    loop {
        let poll = tokio::time::sleep(CONSOLE_POLL);
        tokio::pin!(poll);
        loop {
            tokio::select! {
                _ = &mut poll => break,
                typed = input.recv() => if typed.is_none() { return },
            }
        }
        match client.server_console(&server, Some(CONSOLE_BYTES)).await {
            Ok(view) => {
                failures = 0;
                let new = console::new_suffix(&seen, &view.text);
                if !new.is_empty()
                    && updates
                        .send(Update::ConsoleOutput(new.as_bytes().to_vec()))
                        .await
                        .is_err()
                {
                    return;
                }
                seen = view.text;
            }
            Err(e) => {
                failures += 1;
                if e.api_code().is_some() || failures >= CONSOLE_MAX_FAILURES {
                    let _ = updates.send(Update::ConsoleClosed(e.to_string())).await;
                    return;
                }
            }
        }
    }
}
