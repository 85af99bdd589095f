//! Tests of the Raft store, the RPC encoding and handler, and small in-process clusters whose RPCs
//! go through the real encoding and [`RaftRpcHandler`] (only the QUIC hop is replaced).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, RaftLogReader,
    RaftSnapshotBuilder, StorageError, Vote,
};

use super::*;
use crate::state::{
    CaMaterial, ClusterState, Command, CommandOutcome, JoinTokenRecord, NodeRecord, NodeRole,
    Proposal, UserRecord, UserRole, Write,
};
use crate::tls::{PeerIdentity, Subject};
use crate::transport::{PeerInfo, RequestHandler};

// ------------------------------------------------------------------------------------------------
// Storage
// ------------------------------------------------------------------------------------------------

struct TempStoreBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for TempStoreBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, sm) = open_store(&dir.path().join(DB_FILE)).await?;
        Ok((dir, log, sm))
    }
}

#[test]
fn raft_storage_suite() {
    Suite::test_all(TempStoreBuilder).expect("openraft storage suite");
}

fn log_id(term: u64, index: u64) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn entry(term: u64, index: u64, payload: EntryPayload<TypeConfig>) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(term, index),
        payload,
    }
}

fn bootstrap_cmd(addr: SocketAddr) -> Proposal {
    Proposal::system(
        1,
        Command::Bootstrap {
            cluster_id: "test-cluster".into(),
            ca: CaMaterial {
                cert_pem: "CERT".into(),
                key_pem: "KEY".into(),
            },
            node: NodeRecord {
                id: 1,
                name: "n1".into(),
                addr,
                role: NodeRole::AdminEligible,
                cert_serial: "01".into(),
                joined_at: 1,
            },
            admin: UserRecord {
                name: "admin".into(),
                role: UserRole::Admin,
                cert_serials: vec!["02".into()],
                disabled: false,
                quotas: Default::default(),
                ssh_keys: Vec::new(),
                api_tokens: Vec::new(),
            },
        },
    )
}

fn token_cmd(i: u64) -> Proposal {
    Proposal::system(
        1,
        Command::CreateJoinToken {
            token: JoinTokenRecord {
                id: format!("t{i}"),
                secret_sha256: "h".into(),
                expires_at: u64::MAX,
                created_by: "admin".into(),
                used_by: None,
            },
        },
    )
}

#[tokio::test]
async fn store_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    let addr: SocketAddr = "127.0.0.1:7401".parse().unwrap();
    let membership = Membership::new(
        vec![BTreeSet::from([1u64])],
        BTreeMap::from([(1u64, raft_node(addr))]),
    );
    let expected_state = {
        let mut s = ClusterState::default();
        s.apply(&bootstrap_cmd(addr));
        s.apply(&token_cmd(1));
        s
    };

    {
        let (mut log, mut sm) = open_store(&path).await.unwrap();
        let handle = sm.state_handle();
        let mut changes = handle.subscribe();
        log.save_vote(&Vote::new_committed(3, 1)).await.unwrap();
        log.blocking_append([
            entry(1, 1, EntryPayload::Membership(membership.clone())),
            entry(1, 2, EntryPayload::Normal(bootstrap_cmd(addr).into())),
            entry(1, 3, EntryPayload::Normal(token_cmd(1).into())),
            entry(2, 4, EntryPayload::Blank),
        ])
        .await
        .unwrap();
        log.save_committed(Some(log_id(1, 3))).await.unwrap();
        let out = sm
            .apply(log.try_get_log_entries(1..4).await.unwrap())
            .await
            .unwrap();
        assert_eq!(
            out,
            vec![
                vec![CommandOutcome::Done],
                vec![CommandOutcome::Done],
                vec![CommandOutcome::Done]
            ]
        );
        assert!(changes.has_changed().unwrap());
        changes.borrow_and_update();
        assert_eq!(*handle.read(), expected_state);
        assert_eq!(handle.last_applied(), Some(log_id(1, 3)));
        let snap = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(snap.meta.last_log_id, Some(log_id(1, 3)));
        log.purge(log_id(1, 1)).await.unwrap();
    }

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the database holds the CA key");
    }

    // Reopen the same file: everything is back.
    let (mut log, mut sm) = open_store(&path).await.unwrap();
    assert_eq!(
        log.read_vote().await.unwrap(),
        Some(Vote::new_committed(3, 1))
    );
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(1, 3)));
    let st = log.get_log_state().await.unwrap();
    assert_eq!(st.last_purged_log_id, Some(log_id(1, 1)));
    assert_eq!(st.last_log_id, Some(log_id(2, 4)));
    let entries = log.try_get_log_entries(0..100).await.unwrap();
    assert_eq!(
        entries.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    assert!(matches!(
        &entries[0].payload,
        EntryPayload::Normal(Write::One(Proposal {
            command: Command::Bootstrap { .. },
            ..
        }))
    ));

    let (applied, mem) = sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(1, 3)));
    assert_eq!(mem.log_id(), &Some(log_id(1, 1)));
    assert_eq!(mem.membership(), &membership);
    assert_eq!(*sm.state_handle().read(), expected_state);
    let snap = sm
        .get_current_snapshot()
        .await
        .unwrap()
        .expect("snapshot kept");
    assert_eq!(snap.meta.last_log_id, Some(log_id(1, 3)));
    let data: ClusterState = serde_json::from_slice(snap.snapshot.get_ref()).unwrap();
    assert_eq!(data, expected_state);
}

#[tokio::test]
async fn corrupt_records_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    {
        let (mut log, _sm) = open_store(&path).await.unwrap();
        log.save_vote(&Vote::new(1, 1)).await.unwrap();
        log.blocking_append([entry(1, 1, EntryPayload::Blank)])
            .await
            .unwrap();
    }
    // Overwrite records with garbage behind the store's back.
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta: redb::Table<&str, &[u8]> = txn
                .open_table(redb::TableDefinition::new("raft_meta"))
                .unwrap();
            meta.insert("vote", b"{not json".as_slice()).unwrap();
            meta.insert("state_machine", b"[]".as_slice()).unwrap();
        }
        txn.commit().unwrap();
        // Log records with valid checksums but bad contents: garbage, and a valid entry stored
        // under the wrong index.
        let wal = path.with_extension("wal");
        std::fs::remove_file(&wal).unwrap();
        let (mut w, _) = super::wal::Wal::open(&wal).unwrap();
        let misplaced = serde_json::to_vec(&entry(1, 7, EntryPayload::Blank)).unwrap();
        w.append(&[(1, b"\x00\x01".to_vec()), (2, misplaced)])
            .unwrap();
    }
    // A corrupt state machine record fails the open.
    assert!(open_store(&path).await.is_err());
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta: redb::Table<&str, &[u8]> = txn
                .open_table(redb::TableDefinition::new("raft_meta"))
                .unwrap();
            meta.remove("state_machine").unwrap();
        }
        txn.commit().unwrap();
    }
    let (mut log, _sm) = open_store(&path).await.unwrap();
    assert!(log.read_vote().await.is_err());
    assert!(log.try_get_log_entries(1..2).await.is_err());
    assert!(log.try_get_log_entries(2..3).await.is_err());
    assert!(log.get_log_state().await.is_err());
}

// ------------------------------------------------------------------------------------------------
// RPC handler and encoding
// ------------------------------------------------------------------------------------------------

/// A transport where every peer is unreachable.
#[derive(Clone)]
struct NoTransport;

impl RpcTransport for NoTransport {
    async fn call(
        &self,
        to: SocketAddr,
        _body: Vec<u8>,
        _timeout: Duration,
    ) -> Result<Vec<u8>, RpcCallError> {
        Err(RpcCallError {
            unreachable: true,
            message: format!("{to} unreachable"),
        })
    }
}

fn fast_timings() -> RaftTimings {
    RaftTimings {
        heartbeat_ms: 50,
        election_min_ms: 200,
        election_max_ms: 400,
    }
}

fn node_peer() -> PeerInfo {
    PeerInfo {
        addr: "127.0.0.1:9".parse().unwrap(),
        identity: Some(PeerIdentity {
            subject: Subject::Node("n-test".into()),
            serial_hex: "aa".into(),
        }),
    }
}

fn decode_reply(bytes: &[u8]) -> RaftRpcReply {
    serde_json::from_slice(bytes).expect("reply decodes")
}

#[tokio::test]
async fn handler_rejects_garbage_and_strangers() {
    let dir = tempfile::tempdir().unwrap();
    let (raft, _state) = start_raft(
        1,
        dir.path(),
        fast_timings().to_config().unwrap(),
        NoTransport,
    )
    .await
    .unwrap();
    let handler = RaftRpcHandler::new(raft.clone());

    for garbage in [
        &b""[..],
        b"\xff\xfe\x00",
        b"null",
        b"{}",
        b"{\"Vote\":{}}",
        b"{\"AppendEntries\":{\"vote\":1}}",
        b"{\"InstallSnapshot\":{\"vote\":{\"leader_id\":{\"term\":1,\"node_id\":2},\"committed\":false},\"meta\":null,\"offset\":0,\"data\":[1,2],\"done\":true}}",
        b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    ] {
        let reply = decode_reply(&handler.handle(node_peer(), garbage.to_vec()).await);
        assert!(
            matches!(reply, RaftRpcReply::Rejected { .. }),
            "{garbage:?} gave {reply:?}"
        );
        assert!(decode_rpc(garbage).is_err());
    }

    let vote = serde_json::to_vec(&RaftRpc::Vote(openraft::raft::VoteRequest::new(
        Vote::new(5, 2),
        None,
    )))
    .unwrap();

    // Not a node: refused even with a valid body.
    let stranger = PeerInfo {
        addr: "127.0.0.1:9".parse().unwrap(),
        identity: None,
    };
    let user = PeerInfo {
        addr: "127.0.0.1:9".parse().unwrap(),
        identity: Some(PeerIdentity {
            subject: Subject::User("alice".into()),
            serial_hex: "bb".into(),
        }),
    };
    for peer in [stranger, user] {
        let reply = decode_reply(&handler.handle(peer, vote.clone()).await);
        assert!(matches!(reply, RaftRpcReply::Rejected { .. }), "{reply:?}");
    }

    // A node with a valid body is served.
    let reply = decode_reply(&handler.handle(node_peer(), vote).await);
    match reply {
        RaftRpcReply::Vote(Ok(resp)) => assert!(resp.vote_granted, "{resp:?}"),
        other => panic!("unexpected reply {other:?}"),
    }
    raft.shutdown().await.unwrap();
}

#[tokio::test]
async fn unreachable_and_bad_addresses_map_to_unreachable() {
    use openraft::error::RPCError;
    use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};

    let mut factory = RpcNetworkFactory::new(NoTransport);
    let opt = RPCOption::new(Duration::from_millis(100));
    for addr in ["127.0.0.1:7401", "not an address"] {
        let mut net = factory.new_client(2, &BasicNode::new(addr)).await;
        let err = net
            .vote(
                openraft::raft::VoteRequest::new(Vote::new(1, 1), None),
                opt.clone(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, RPCError::Unreachable(_)), "{addr}: {err:?}");
    }

    // A peer that answers garbage is a network error; one that refuses is unreachable.
    #[derive(Clone)]
    struct Fixed(Vec<u8>);
    impl RpcTransport for Fixed {
        async fn call(
            &self,
            _to: SocketAddr,
            _body: Vec<u8>,
            _timeout: Duration,
        ) -> Result<Vec<u8>, RpcCallError> {
            Ok(self.0.clone())
        }
    }
    type VoteError = RPCError<NodeId, BasicNode, openraft::error::RaftError<NodeId>>;
    type Check = fn(&VoteError) -> bool;
    let cases: [(&[u8], Check); 3] = [
        (b"garbage", |e| matches!(e, RPCError::Network(_))),
        (b"{\"Rejected\":{\"reason\":\"no\"}}", |e| {
            matches!(e, RPCError::Unreachable(_))
        }),
        (
            b"{\"InstallSnapshot\":{\"Ok\":{\"vote\":{\"leader_id\":{\"term\":1,\"node_id\":1},\"committed\":false}}}}",
            |e| matches!(e, RPCError::Network(_)),
        ),
    ];
    for (reply, check) in cases {
        let mut factory = RpcNetworkFactory::new(Fixed(reply.to_vec()));
        let mut net = factory
            .new_client(2, &BasicNode::new("127.0.0.1:7401"))
            .await;
        let err = net
            .vote(
                openraft::raft::VoteRequest::new(Vote::new(1, 1), None),
                opt.clone(),
            )
            .await
            .unwrap_err();
        assert!(check(&err), "{:?}: {err:?}", String::from_utf8_lossy(reply));
    }
}

// ------------------------------------------------------------------------------------------------
// In-process clusters
// ------------------------------------------------------------------------------------------------

/// Routes RPCs to the handlers of in-process nodes, through the encoding and `RequestHandler`.
#[derive(Clone, Default)]
struct Router {
    nodes: Arc<Mutex<HashMap<SocketAddr, Arc<RaftRpcHandler>>>>,
}

impl RpcTransport for Router {
    async fn call(
        &self,
        to: SocketAddr,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, RpcCallError> {
        let handler = self.nodes.lock().unwrap().get(&to).cloned();
        let Some(handler) = handler else {
            return Err(RpcCallError {
                unreachable: true,
                message: format!("{to} unreachable"),
            });
        };
        tokio::time::timeout(timeout, handler.handle(node_peer(), body))
            .await
            .map_err(|_| RpcCallError {
                unreachable: false,
                message: format!("{to} timed out"),
            })
    }
}

struct TestNode {
    raft: ClusterRaft,
    state: StateHandle,
    addr: SocketAddr,
}

async fn start_node(router: &Router, id: NodeId, dir: &Path, config: openraft::Config) -> TestNode {
    let addr: SocketAddr = format!("127.0.0.1:{}", 7400 + id).parse().unwrap();
    // After `shutdown()` openraft drops the store in its state machine task a little later: a
    // restart in the same process may find the database still open for a moment.
    let mut tries = 0;
    let (raft, state) = loop {
        match start_raft(id, dir, config.clone(), router.clone()).await {
            Ok(started) => break started,
            Err(e) if tries < 50 && e.to_string().contains("already open") => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("node {id} does not start: {e}"),
        }
    };
    router
        .nodes
        .lock()
        .unwrap()
        .insert(addr, Arc::new(RaftRpcHandler::new(raft.clone())));
    TestNode { raft, state, addr }
}

async fn wait_for(state: &StateHandle, what: &str, f: impl Fn(&ClusterState) -> bool) {
    let mut rx = state.subscribe();
    let res = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if state.with(&f) {
                return;
            }
            if rx.changed().await.is_err() {
                // The state machine is gone; poll once more then give up.
                assert!(state.with(&f), "{what}: state machine stopped");
                return;
            }
        }
    })
    .await;
    assert!(res.is_ok(), "timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_and_restart() {
    let router = Router::default();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let config = fast_timings().to_config().unwrap();
    let mut nodes = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        nodes.push(start_node(&router, i as u64 + 1, dir.path(), config.clone()).await);
    }

    let leader = TestNode {
        raft: nodes[0].raft.clone(),
        state: nodes[0].state.clone(),
        addr: nodes[0].addr,
    };
    leader
        .raft
        .initialize(BTreeMap::from([(1u64, raft_node(leader.addr))]))
        .await
        .unwrap();
    leader
        .raft
        .wait(Some(Duration::from_secs(10)))
        .current_leader(1, "node 1 leads")
        .await
        .unwrap();
    let out = leader
        .raft
        .client_write(bootstrap_cmd(leader.addr).into())
        .await
        .unwrap();
    assert_eq!(out.data, vec![CommandOutcome::Done]);
    for n in &nodes[1..] {
        leader
            .raft
            .add_learner(n.raft_id(), raft_node(n.addr), true)
            .await
            .unwrap();
    }
    leader
        .raft
        .change_membership(BTreeSet::from([1u64, 2, 3]), false)
        .await
        .unwrap();
    for i in 1..=2 {
        leader.raft.client_write(token_cmd(i).into()).await.unwrap();
    }
    // One entry carrying three proposals (group commit): one outcome each, and node 3 reads the
    // entry back from its log after the restart below.
    let batch = Write::from_proposals(vec![token_cmd(3), token_cmd(4), token_cmd(5)]);
    let out = leader.raft.client_write(batch).await.unwrap();
    assert_eq!(out.data, vec![CommandOutcome::Done; 3]);
    for n in &nodes {
        wait_for(&n.state, "5 tokens everywhere", |s| {
            s.join_tokens.len() == 5 && s.cluster_id == "test-cluster"
        })
        .await;
    }

    // Stop node 3, write more, restart it from its data dir: it recovers and catches up.
    let n3 = nodes.pop().unwrap();
    let n3_addr = n3.addr;
    router.nodes.lock().unwrap().remove(&n3_addr);
    n3.raft.shutdown().await.unwrap();
    drop(n3);
    leader.raft.client_write(token_cmd(6).into()).await.unwrap();
    let n3 = start_node(&router, 3, dirs[2].path(), config.clone()).await;
    assert!(
        n3.state.read().join_tokens.len() >= 5,
        "applied state survives the restart"
    );
    let vote = n3.raft.with_raft_state(|st| *st.vote_ref()).await.unwrap();
    assert!(
        vote.leader_id().term >= 1,
        "vote survives the restart: {vote:?}"
    );
    wait_for(&n3.state, "node 3 catches up", |s| s.join_tokens.len() == 6).await;

    // Concurrent writes through the batcher: each gets its outcome, every node applies them all.
    let writes = super::WriteBatcher::new(leader.raft.clone());
    let all = (7..=26).map(|i| {
        let writes = writes.clone();
        tokio::spawn(async move { writes.propose(token_cmd(i)).await })
    });
    for r in futures::future::join_all(all).await {
        assert_eq!(r.unwrap(), Ok(CommandOutcome::Done));
    }
    for n in nodes.iter().chain([&n3]) {
        wait_for(&n.state, "26 tokens everywhere", |s| {
            s.join_tokens.len() == 26
        })
        .await;
    }

    for n in nodes.iter().chain([&n3]) {
        n.raft.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_learner_gets_a_snapshot() {
    let router = Router::default();
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    // Snapshot every 10 entries and keep none behind it, so the log is purged.
    let config = fast_timings().config_with(10, 0).unwrap();
    let n1 = start_node(&router, 1, d1.path(), config.clone()).await;
    n1.raft
        .initialize(BTreeMap::from([(1u64, raft_node(n1.addr))]))
        .await
        .unwrap();
    n1.raft
        .wait(Some(Duration::from_secs(10)))
        .current_leader(1, "node 1 leads")
        .await
        .unwrap();
    n1.raft
        .client_write(bootstrap_cmd(n1.addr).into())
        .await
        .unwrap();
    for i in 0..40 {
        n1.raft.client_write(token_cmd(i).into()).await.unwrap();
    }
    n1.raft
        .wait(Some(Duration::from_secs(10)))
        .metrics(
            |m| m.purged.is_some_and(|p| p.index >= 10),
            "log purged after a snapshot",
        )
        .await
        .unwrap();

    let n2 = start_node(&router, 2, d2.path(), config.clone()).await;
    n1.raft
        .add_learner(2, raft_node(n2.addr), true)
        .await
        .unwrap();
    wait_for(&n2.state, "learner has all tokens", |s| {
        s.join_tokens.len() == 40
    })
    .await;
    assert_eq!(n2.state.read(), n1.state.read());
    let snap = n2
        .raft
        .with_raft_state(|st| st.snapshot_meta.clone())
        .await
        .unwrap();
    assert!(snap.last_log_id.is_some(), "learner installed a snapshot");

    n1.raft.shutdown().await.unwrap();
    n2.raft.shutdown().await.unwrap();
}

trait RaftId {
    fn raft_id(&self) -> NodeId;
}

impl RaftId for TestNode {
    fn raft_id(&self) -> NodeId {
        self.addr.port() as u64 - 7400
    }
}

#[tokio::test]
async fn log_entries_of_an_older_store_move_to_the_log_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    {
        // What an older Skiff wrote: the entries in the database's `raft_log` table.
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut logs: redb::Table<u64, &[u8]> = txn
                .open_table(redb::TableDefinition::new("raft_log"))
                .unwrap();
            for i in 1..=3 {
                let bytes = serde_json::to_vec(&entry(1, i, EntryPayload::Blank)).unwrap();
                logs.insert(i, bytes.as_slice()).unwrap();
            }
        }
        txn.commit().unwrap();
    }
    for _ in 0..2 {
        let (mut log, _sm) = open_store(&path).await.unwrap();
        let st = log.get_log_state().await.unwrap();
        assert_eq!(st.last_log_id, Some(log_id(1, 3)));
        let got = log.try_get_log_entries(1..10).await.unwrap();
        assert_eq!(
            got.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
    }
    assert!(path.with_extension("wal").exists());
}
