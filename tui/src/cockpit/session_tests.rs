//! One whole session against a fake leader: the first full round, the event stream (which the
//! fake ends after each answer, so the session also reconnects; once the operation was posted it
//! carries the operation's task), an operation from the keyboard, and quitting when the input
//! channel closes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ratatui::backend::TestBackend;
use ratatui::Terminal;
use skiff_cluster::api::client::ApiClient;
use skiff_cluster::api::events::ApiEvent;
use skiff_cluster::api::fake_node::{FakeNode, Pki, Reply, Request};
use skiff_cluster::api::servers::TaskAccepted;
use skiff_cluster::state::{TaskState, UserRole};
use tokio::sync::mpsc;

use super::app::{App, Key};
use super::fixtures;
use super::{run_session, Input};
use crate::output::tests::sample_nodes;

/// The fake leader: `posts` records what was posted; `told` counts the event streams that carried
/// the posted operation's task (only streams opened after the post do: before, a stream says
/// nothing, so the task event cannot arrive before the cockpit tracks the task).
fn handler(
    posts: Arc<Mutex<Vec<String>>>,
    told: Arc<AtomicUsize>,
) -> impl Fn(&Request) -> Reply + Send + Sync {
    move |req: &Request| {
        let path = req.path.strip_prefix("/api/v1").unwrap_or(&req.path);
        let (views, actual) = fixtures::servers();
        match (req.method.as_str(), path) {
            ("GET", "/cluster") => Reply::json(200, &fixtures::cluster()),
            ("GET", "/nodes") => Reply::json(200, &sample_nodes()),
            ("GET", "/servers") => Reply::json(200, &views),
            ("GET", "/actual") => Reply::json(200, &actual),
            ("GET", "/tasks") => Reply::json(200, &fixtures::tasks()),
            ("GET", "/whoami") => Reply::json(200, &fixtures::user("admin", UserRole::Admin)),
            ("GET", "/users") => Reply::json(200, &vec![fixtures::user("admin", UserRole::Admin)]),
            ("GET", p) if p.starts_with("/audit") => Reply::json(200, &fixtures::audit()),
            ("GET", "/events") => {
                let posted = posts.lock().map(|p| !p.is_empty()).unwrap_or(false);
                let mut body = ": hello\n\n".to_string();
                if posted {
                    let event = ApiEvent::Task {
                        task: fixtures::task(77, "server.start", "batch", TaskState::Running, 50),
                    };
                    let data = serde_json::to_string(&event).unwrap_or_default();
                    body.push_str(&format!("data: {data}\n\n"));
                    told.fetch_add(1, Ordering::SeqCst);
                }
                Reply {
                    status: 200,
                    headers: vec![("Content-Type".into(), "text/event-stream".into())],
                    body: body.into_bytes(),
                }
            }
            ("POST", p) => {
                if let Ok(mut posts) = posts.lock() {
                    posts.push(p.to_owned());
                }
                Reply::json(
                    202,
                    &TaskAccepted {
                        task_id: 77,
                        node: None,
                    },
                )
            }
            _ => Reply::json(
                404,
                &skiff_cluster::api::ApiError::new("not_found", "no such route"),
            ),
        }
    }
}

fn screen(terminal: &Terminal<TestBackend>) -> String {
    let buffer = terminal.backend().buffer();
    let mut text = String::new();
    for y in 0..buffer.area.height {
        for x in 0..buffer.area.width {
            text.push_str(buffer[(x, y)].symbol());
        }
        text.push('\n');
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_reads_follows_the_stream_and_operates() {
    let pki = Pki::new();
    let posts = Arc::new(Mutex::new(Vec::new()));
    let told = Arc::new(AtomicUsize::new(0));
    let node = FakeNode::start(&pki, Arc::new(handler(posts.clone(), told.clone())));
    let cred = pki.credential(vec![node.addr()]);
    let client = Arc::new(ApiClient::new(&cred).expect("client"));
    let mut terminal = Terminal::new(TestBackend::new(100, 30)).expect("terminal");
    let (inputs, rx) = mpsc::channel(16);
    let driver = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let keys: Vec<Key> = ":servers"
            .chars()
            .map(Key::Char)
            .chain([Key::Enter, Key::Char('s'), Key::Char('y')])
            .collect();
        for key in keys {
            let _ = inputs.send(Input::Key(key)).await;
        }
        let _ = inputs.send(Input::Resize { cols: 90, rows: 25 }).await;
        // Until a stream carried the task (the session reconnects with a backoff of at most
        // 8 s), then a moment to draw it. Dropping the sender ends the session.
        for _ in 0..300 {
            if told.load(Ordering::SeqCst) > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    });
    let app = App::new("c-42", "admin", node.addr());
    let result = tokio::time::timeout(
        Duration::from_secs(40),
        run_session(&mut terminal, client, app, rx),
    )
    .await;
    assert!(
        matches!(result, Ok(Ok(()))),
        "the session did not end cleanly"
    );
    let _ = driver.await;
    let text = screen(&terminal);
    assert_eq!(
        posts.lock().map(|p| p.clone()).unwrap_or_default(),
        ["/servers/batch/start"]
    );
    assert!(text.contains("servers [4]"), "{text}");
    assert!(text.contains("start batch · task 77 running 50%"), "{text}");
    assert!(node.hits() >= 9, "a full round and the stream");
}

#[tokio::test]
async fn a_round_without_a_leader_is_refused_and_a_dead_endpoint_unreachable() {
    let pki = Pki::new();
    let node = FakeNode::start(
        &pki,
        Arc::new(|_: &Request| {
            Reply::json(
                503,
                &skiff_cluster::api::ApiError::new("no_leader", "no leader is known right now"),
            )
        }),
    );
    let client = ApiClient::new(&pki.credential(vec![node.addr()]))
        .expect("client")
        .with_leader_wait(Duration::ZERO);
    match super::refresh::fetch(&client).await {
        super::app::Update::Refused { error, .. } => {
            assert!(error.contains("no leader"), "{error}")
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.to_string())
        .expect("a free port");
    let client = ApiClient::new(&pki.credential(vec![closed])).expect("client");
    assert!(matches!(
        super::refresh::fetch(&client).await,
        super::app::Update::Unreachable { .. }
    ));
}

#[tokio::test]
async fn a_non_admin_round_does_not_ask_for_users_or_audit() {
    let pki = Pki::new();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = asked.clone();
    let node = FakeNode::start(
        &pki,
        Arc::new(move |req: &Request| {
            if let Ok(mut seen) = seen.lock() {
                seen.push(req.path.clone());
            }
            match req.path.as_str() {
                "/api/v1/cluster" => Reply::json(200, &fixtures::cluster()),
                "/api/v1/nodes" => Reply::json(200, &sample_nodes()),
                "/api/v1/whoami" => Reply::json(200, &fixtures::user("bob", UserRole::User)),
                _ => Reply::json(
                    403,
                    &skiff_cluster::api::ApiError::new("forbidden", "not for you"),
                ),
            }
        }),
    );
    let client = ApiClient::new(&pki.credential(vec![node.addr()])).expect("client");
    let super::app::Update::Snapshot(snapshot) = super::refresh::fetch(&client).await else {
        panic!("expected a snapshot");
    };
    assert_eq!(snapshot.me.map(|m| m.name).as_deref(), Some("bob"));
    assert!(snapshot.servers.is_none() && snapshot.users.is_none() && snapshot.audit.is_none());
    let asked = asked.lock().map(|a| a.clone()).unwrap_or_default();
    assert!(
        !asked
            .iter()
            .any(|p| p.starts_with("/api/v1/users") || p.starts_with("/api/v1/audit")),
        "{asked:?}"
    );
}
