//! The live event stream (`GET /api/v1/events`, Server-Sent Events) for the cockpit: what the
//! leader sends, and [`ApiClient::events`], which opens the stream on the leader and yields the
//! parsed events.
//!
//! Each SSE `data:` line is one JSON [`ApiEvent`] tagged by `kind`. The stream ends when the
//! node stops leading: call [`ApiClient::events`] again to reach the new leader.

use std::pin::Pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};

use super::client::{ApiClient, ClientError};
use super::types::{ApiError, NodeView, API_PREFIX};
pub use crate::state::{AuditRecord, TaskRecord};

/// Path of the stream under [`API_PREFIX`].
pub const EVENTS_PATH: &str = "/events";
/// The leader sends a keep-alive comment this often.
pub const KEEP_ALIVE: Duration = Duration::from_secs(10);
/// The client gives up on a stream that sent nothing (not even a keep-alive) for this long.
pub const IDLE_LIMIT: Duration = Duration::from_secs(30);
/// Largest event the client accepts (a bigger one ends the stream with an error).
pub const MAX_EVENT_BYTES: usize = 8 << 20;

/// One event of the stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ApiEvent {
    /// The desired state changed: the audit records (who, what, target, result) written since the
    /// last `state` event that the subscriber may see (admins: all; others: their own writes and
    /// writes about their own servers and tasks).
    State { records: Vec<AuditRecord> },
    /// A task appeared or changed (state, progress, log, result).
    Task { task: TaskRecord },
    /// The nodes' figures, as `GET /api/v1/nodes` answers them (about every 2 s).
    Nodes { nodes: Vec<NodeView> },
    /// Live figures of the running servers the subscriber may see (about every 2 s, right after
    /// `nodes`).
    Servers {
        servers: Vec<crate::agentproto::ServerFigures>,
    },
    /// The leader could not keep up with this subscriber and dropped events: re-read what you
    /// show (`GET` the lists) instead of relying on the missed deltas.
    Lagged,
    /// A kind this client does not know (sent by a newer leader).
    #[serde(other)]
    Unknown,
}

/// An open event stream; [`EventStream::next`] yields events until the leader ends it.
pub struct EventStream {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buf: BytesMut,
    endpoint: String,
    done: bool,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl EventStream {
    /// The node (`HOST:PORT`) serving this stream.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The next event; `None` when the stream ended (the node stopped leading, went away, or
    /// sent nothing for [`IDLE_LIMIT`]). An error is final too.
    pub async fn next(&mut self) -> Option<Result<ApiEvent, ClientError>> {
        loop {
            if self.done {
                return None;
            }
            while let Some(block) = take_block(&mut self.buf) {
                if let Some(data) = block_data(&block) {
                    return Some(serde_json::from_str(&data).map_err(|e| {
                        self.done = true;
                        ClientError::Decode {
                            endpoint: self.endpoint.clone(),
                            message: format!("bad event: {e}"),
                        }
                    }));
                }
            }
            if self.buf.len() > MAX_EVENT_BYTES {
                self.done = true;
                return Some(Err(ClientError::Decode {
                    endpoint: self.endpoint.clone(),
                    message: format!("an event is over {MAX_EVENT_BYTES} bytes"),
                }));
            }
            match tokio::time::timeout(IDLE_LIMIT, self.body.next()).await {
                Ok(Some(Ok(chunk))) => self.buf.extend_from_slice(&chunk),
                // End of the body, a broken connection, or silence: the stream is over.
                Ok(Some(Err(_))) | Ok(None) | Err(_) => {
                    self.done = true;
                    return None;
                }
            }
        }
    }
}

/// Removes and returns the first complete SSE block (up to a blank line) from `buf`.
fn take_block(buf: &mut BytesMut) -> Option<String> {
    let text = &buf[..];
    let (end, sep) = [&b"\n\n"[..], &b"\r\n\r\n"[..]]
        .iter()
        .filter_map(|sep| {
            text.windows(sep.len())
                .position(|w| w == *sep)
                .map(|p| (p, sep.len()))
        })
        .min()?;
    let block = buf.split_to(end + sep);
    Some(String::from_utf8_lossy(&block[..end]).into_owned())
}

/// The data of one SSE block (its `data:` lines joined), or `None` for a comment-only block.
fn block_data(block: &str) -> Option<String> {
    let lines: Vec<&str> = block
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect();
    if lines.is_empty() {
        None
    } else {
        Some(lines.join("\n"))
    }
}

impl ApiClient {
    /// `GET /api/v1/events`: opens the live event stream on the leader (following followers'
    /// redirects like every call) and answers once the leader accepted it: every change after
    /// that comes through the stream.
    pub async fn events(&self) -> Result<EventStream, ClientError> {
        let current = self.current_endpoint();
        let mut candidates = vec![current.clone()];
        candidates.extend(self.endpoints().iter().filter(|e| **e != current).cloned());
        let mut tried: Vec<String> = Vec::new();
        let mut failures: Vec<(String, String)> = Vec::new();
        let mut no_leader: Option<ClientError> = None;
        for start in candidates {
            let mut addr = start;
            let mut hops = 0;
            loop {
                if !tried.contains(&addr) {
                    tried.push(addr.clone());
                }
                let url = format!("https://{addr}{API_PREFIX}{EVENTS_PATH}");
                let response = match self
                    .http()
                    .get(&url)
                    .header(reqwest::header::ACCEPT, "text/event-stream")
                    // The stream lives as long as the leader leads; IDLE_LIMIT guards silence.
                    .timeout(Duration::from_secs(365 * 24 * 3600))
                    .send()
                    .await
                {
                    Ok(r) => r,
                    Err(e) => {
                        failures.push((addr, super::client::error_chain(&e)));
                        break;
                    }
                };
                let status = response.status();
                if status.is_success() {
                    self.set_current(&addr);
                    return Ok(EventStream {
                        body: Box::pin(response.bytes_stream()),
                        buf: BytesMut::new(),
                        endpoint: addr,
                        done: false,
                    });
                }
                let location = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let bytes = response.bytes().await.unwrap_or_default();
                let api = super::client::parse_api_error(status, &bytes);
                let err = ClientError::Api {
                    status: status.as_u16(),
                    code: api.code.clone(),
                    message: api.message.clone(),
                };
                if status.is_redirection() || api.code == ApiError::NOT_LEADER {
                    let leader = api
                        .leader
                        .clone()
                        .filter(|l| !l.trim().is_empty())
                        .or_else(|| location.as_deref().and_then(super::client::address_of_url));
                    match leader {
                        Some(leader) if leader != addr => {
                            if hops >= super::client::MAX_LEADER_HOPS {
                                return Err(ClientError::LeaderLoop { hops, last: leader });
                            }
                            hops += 1;
                            addr = leader;
                            continue;
                        }
                        _ => {
                            no_leader = Some(err);
                            break;
                        }
                    }
                }
                if api.code == ApiError::NO_LEADER {
                    no_leader = Some(err);
                    break;
                }
                return Err(err);
            }
        }
        if let Some(err) = no_leader {
            return Err(err);
        }
        Err(super::client::unreachable(tried, &failures))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sse_blocks() {
        let mut buf = BytesMut::from(
            &b":keep-alive\n\ndata: {\"kind\":\"lagged\"}\n\ndata: {\"kind\":\"new\"}\r\n\r\ndata: {\"ki"[..],
        );
        let a = take_block(&mut buf).unwrap();
        assert_eq!(block_data(&a), None);
        let b = take_block(&mut buf).unwrap();
        let ev: ApiEvent = serde_json::from_str(&block_data(&b).unwrap()).unwrap();
        assert_eq!(ev, ApiEvent::Lagged);
        let c = take_block(&mut buf).unwrap();
        let ev: ApiEvent = serde_json::from_str(&block_data(&c).unwrap()).unwrap();
        assert_eq!(ev, ApiEvent::Unknown);
        assert!(take_block(&mut buf).is_none());
        assert_eq!(&buf[..], b"data: {\"ki");
    }

    #[tokio::test]
    async fn follows_the_leader_and_yields_events_until_the_end() {
        use crate::api::fake_node::{self as fake, FakeNode, Reply};
        use std::sync::Arc;
        let pki = fake::Pki::new();
        let leader = FakeNode::start(
            &pki,
            Arc::new(|req: &fake::Request| {
                assert_eq!(req.path, "/api/v1/events");
                Reply {
                    status: 200,
                    headers: vec![("Content-Type".into(), "text/event-stream".into())],
                    body: b":\n\ndata: {\"kind\":\"nodes\",\"nodes\":[]}\n\ndata: {\"kind\":\"lagged\"}\n\n"
                        .to_vec(),
                }
            }),
        );
        let to = leader.addr();
        let follower = FakeNode::start(
            &pki,
            Arc::new(move |_: &fake::Request| {
                let mut r = Reply::json(
                    307,
                    &ApiError {
                        code: ApiError::NOT_LEADER.into(),
                        message: "ask the leader".into(),
                        leader: Some(to.clone()),
                    },
                );
                r.headers
                    .push(("Location".into(), format!("https://{to}/api/v1/events")));
                r
            }),
        );
        let c = ApiClient::new(&pki.credential(vec![follower.addr()])).unwrap();
        let mut s = c.events().await.unwrap();
        assert_eq!(s.endpoint(), leader.addr());
        assert_eq!(c.current_endpoint(), leader.addr());
        assert_eq!(
            s.next().await.unwrap().unwrap(),
            ApiEvent::Nodes { nodes: vec![] }
        );
        assert_eq!(s.next().await.unwrap().unwrap(), ApiEvent::Lagged);
        assert!(
            s.next().await.is_none(),
            "the body ended: so did the stream"
        );
        assert!(s.next().await.is_none());
    }

    #[test]
    fn event_json_shape() {
        let ev = ApiEvent::Nodes { nodes: vec![] };
        assert_eq!(
            serde_json::to_string(&ev).unwrap(),
            r#"{"kind":"nodes","nodes":[]}"#
        );
    }
}
