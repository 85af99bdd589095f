//! Durable Raft storage in one redb database (`raft.redb`).
//!
//! The log entries are in their own append-only file next to the database (`raft.wal`, see
//! [`wal`](super::wal)). Tables:
//! - `raft_log`: empty; log entries an older Skiff stored here move to `raft.wal` on open.
//! - `raft_meta`: small records keyed by name: the vote, the committed log id and the last purged
//!   log id (log store), and the current snapshot (its meta as JSON and its data as raw bytes).
//!   `state_machine`, the state an older Skiff wrote after every applied batch, is read once if
//!   it is newer than the snapshot and removed by the next snapshot.
//!
//! Every write runs on tokio's blocking pool. A log append is synced (`fdatasync`) before the log
//! store calls openraft's `LogFlushed` callback. The vote and installed snapshots are redb
//! transactions with redb's default durability (fsync), and so is a purge that rewrites the log
//! file. The committed log id is a hint (Raft keeps it in memory) and commits without fsync: it
//! reaches the disk with the next durable commit (redb commits in order). So do the last purged
//! log id when the purge leaves the purged entries in the log file (most purges, see
//! [`wal`](super::wal)) and a snapshot this node builds: the log file keeps every entry after the
//! last durably recorded purge, so a crash that loses them leaves an older snapshot or purge
//! record and the whole log after it.
//!
//! The state machine lives in memory: applying a batch does not write to disk. What is applied is
//! durable anyway, because every applied entry is in the durable log. On start the state is the
//! current snapshot's (built or installed); openraft re-applies the log from its last entry up
//! to the committed one (`get_initial_state`), and never purges log entries the last snapshot
//! does not hold. So one write costs one fsync on each
//! node, not three, and no longer serializes the whole state.
//!
//! Nothing read from disk is trusted: a record that does not decode, or a log entry stored under the
//! wrong index, becomes a [`StorageError`], never a panic.

use std::fmt::Debug;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use super::wal::Wal;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, EntryPayload, ErrorSubject, ErrorVerb, LogId, RaftLogReader,
    RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use redb::{Database, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::TypeConfig;
use crate::state::{ClusterState, CommandOutcome, NodeId};

type Entry = openraft::Entry<TypeConfig>;
type StorageResult<T> = Result<T, StorageError<NodeId>>;

const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_LAST_PURGED: &str = "last_purged";
const KEY_STATE_MACHINE: &str = "state_machine";
const KEY_SNAPSHOT_META: &str = "snapshot_meta";
const KEY_SNAPSHOT_DATA: &str = "snapshot_data";
const KEY_SNAPSHOT_SEQ: &str = "snapshot_seq";

/// The file name of the Raft database inside a node's data directory.
pub const DB_FILE: &str = "raft.redb";

/// Internal error before it gets an openraft subject and verb.
#[derive(Debug, thiserror::Error)]
enum DbError {
    #[error("raft database: {0}")]
    Redb(Box<redb::Error>),
    #[error("corrupt raft record {what}: {source}")]
    Corrupt {
        what: String,
        source: serde_json::Error,
    },
    #[error("inconsistent raft record: {0}")]
    Inconsistent(String),
    #[error("raft log file: {0}")]
    Wal(#[from] std::io::Error),
    #[error("cannot encode raft record {what}: {source}")]
    Encode {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("raft storage task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

macro_rules! redb_from {
    ($($t:ty),*) => {$(
        impl From<$t> for DbError {
            fn from(e: $t) -> Self {
                DbError::Redb(Box::new(e.into()))
            }
        }
    )*};
}
redb_from!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl DbError {
    fn into_storage(self, subject: ErrorSubject<NodeId>, verb: ErrorVerb) -> StorageError<NodeId> {
        StorageIOError::new(subject, verb, AnyError::new(&self)).into()
    }
}

fn encode<T: Serialize>(what: &'static str, v: &T) -> Result<Vec<u8>, DbError> {
    serde_json::to_vec(v).map_err(|source| DbError::Encode { what, source })
}

fn decode<T: DeserializeOwned>(what: impl Into<String>, bytes: &[u8]) -> Result<T, DbError> {
    serde_json::from_slice(bytes).map_err(|source| DbError::Corrupt {
        what: what.into(),
        source,
    })
}

/// Runs a blocking database job on tokio's blocking pool.
async fn blocking<T, F>(f: F) -> Result<T, DbError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, DbError> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await?
}

fn read_meta_raw(db: &Database, key: &str) -> Result<Option<Vec<u8>>, DbError> {
    let txn = db.begin_read()?;
    let table = txn.open_table(META)?;
    let value = table.get(key)?;
    Ok(value.map(|v| v.value().to_vec()))
}

fn read_meta<T: DeserializeOwned>(db: &Database, key: &str) -> Result<Option<T>, DbError> {
    match read_meta_raw(db, key)? {
        Some(bytes) => decode(key, &bytes).map(Some),
        None => Ok(None),
    }
}

/// Writes (or, for `None`, deletes) meta records in one durable transaction.
fn write_meta(db: &Database, records: &[(&str, Option<&[u8]>)]) -> Result<(), DbError> {
    write_meta_with(db, records, redb::Durability::Immediate)
}

/// [`write_meta`] with the given durability.
fn write_meta_with(
    db: &Database,
    records: &[(&str, Option<&[u8]>)],
    durability: redb::Durability,
) -> Result<(), DbError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(durability);
    {
        let mut table = txn.open_table(META)?;
        for (key, value) in records {
            match value {
                Some(v) => {
                    table.insert(*key, *v)?;
                }
                None => {
                    table.remove(*key)?;
                }
            }
        }
    }
    txn.commit()?;
    Ok(())
}

/// Opens (or creates) the Raft database at `path` and makes sure both tables exist. Blocking:
/// [`open_store`] runs it on the blocking pool.
fn open_db(path: &Path) -> Result<Database, DbError> {
    // The state holds the cluster CA's private key: only the owner may read the file.
    restrict_permissions(path).map_err(|e| DbError::Redb(Box::new(e.into())))?;
    let db = Database::create(path)?;
    // Create the tables so that read transactions always find them.
    let txn = db.begin_write()?;
    {
        txn.open_table(LOGS)?;
        txn.open_table(META)?;
    }
    txn.commit()?;
    Ok(db)
}

/// Creates `path` empty with mode 0600 if missing (redb initializes an empty file), and makes an
/// existing file mode 0600.
#[cfg(unix)]
fn restrict_permissions(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn restrict_permissions(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Opens the Raft database at `path` (created if missing) and loads the applied state machine.
pub async fn open_store(path: &Path) -> StorageResult<(LogStore, StateMachineStore)> {
    let path = path.to_path_buf();
    let (db, wal) = blocking(move || {
        let db = open_db(&path)?;
        let wal = open_wal(&db, &path.with_extension("wal"))?;
        Ok((db, wal))
    })
    .await
    .map_err(|e| e.into_storage(ErrorSubject::Store, ErrorVerb::Read))?;
    let db = Arc::new(db);
    let sm = StateMachineStore::load(db.clone())
        .map_err(|e| e.into_storage(ErrorSubject::StateMachine, ErrorVerb::Read))?;
    Ok((
        LogStore {
            db,
            wal: Arc::new(Mutex::new(wal)),
        },
        sm,
    ))
}

/// Opens the log file next to the database. Moves the entries an older Skiff kept in the
/// database's `raft_log` table into it, and drops entries a crash left behind a purge.
fn open_wal(db: &Database, path: &Path) -> Result<Wal, DbError> {
    let (mut wal, recovery) = Wal::open(path)?;
    if recovery.truncated_bytes > 0 {
        tracing::warn!(
            file = %path.display(),
            bytes = recovery.truncated_bytes,
            "cut an incomplete or corrupt tail off the raft log (an append that never finished)"
        );
    }
    let old: Vec<(u64, Vec<u8>)> = {
        let txn = db.begin_read()?;
        let table = txn.open_table(LOGS)?;
        let mut old = Vec::new();
        for item in table.range::<u64>(..)? {
            let (k, v) = item?;
            old.push((k.value(), v.value().to_vec()));
        }
        old
    };
    if !old.is_empty() {
        if wal.is_empty() {
            wal.append(&old)?;
        }
        let txn = db.begin_write()?;
        {
            let mut table = txn.open_table(LOGS)?;
            table.retain(|_, _| false)?;
        }
        txn.commit()?;
    }
    if let Some(purged) = read_meta::<LogId<NodeId>>(db, KEY_LAST_PURGED)? {
        wal.purge(purged.index)?;
    }
    Ok(wal)
}

fn check_index(index: u64, entry: &Entry) -> Result<(), DbError> {
    if entry.log_id.index != index {
        return Err(DbError::Inconsistent(format!(
            "log entry stored under index {index} has index {}",
            entry.log_id.index
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Log store
// ---------------------------------------------------------------------------------------------

/// Raft log, vote, committed log id and last purged log id. Cheap to clone (the log reader is a
/// clone).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    /// The log entries ([`wal`](super::wal)); everything else is in `db`.
    wal: Arc<Mutex<Wal>>,
}

fn lock_wal(wal: &Mutex<Wal>) -> MutexGuard<'_, Wal> {
    match wal.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn decode_entry(index: u64, bytes: &[u8]) -> Result<Entry, DbError> {
    let entry: Entry = decode(format!("log entry {index}"), bytes)?;
    check_index(index, &entry)?;
    Ok(entry)
}

impl LogStore {
    fn read_entries<RB: RangeBounds<u64>>(&self, range: RB) -> Result<Vec<Entry>, DbError> {
        let raw = lock_wal(&self.wal).read(range)?;
        raw.iter().map(|(i, b)| decode_entry(*i, b)).collect()
    }

    fn read_log_state(&self) -> Result<LogState<TypeConfig>, DbError> {
        let last_purged: Option<LogId<NodeId>> = read_meta(&self.db, KEY_LAST_PURGED)?;
        let last = match lock_wal(&self.wal).last()? {
            Some((index, bytes)) => Some(decode_entry(index, &bytes)?.log_id),
            None => None,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last.or(last_purged),
        })
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry>> {
        self.read_entries(range)
            .map_err(|e| e.into_storage(ErrorSubject::Logs, ErrorVerb::Read))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        self.read_log_state()
            .map_err(|e| e.into_storage(ErrorSubject::Logs, ErrorVerb::Read))
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        let to_storage = |e: DbError| e.into_storage(ErrorSubject::Vote, ErrorVerb::Write);
        let bytes = encode("vote", vote).map_err(to_storage)?;
        let db = self.db.clone();
        blocking(move || write_meta(&db, &[(KEY_VOTE, Some(&bytes))]))
            .await
            .map_err(to_storage)
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        read_meta(&self.db, KEY_VOTE)
            .map_err(|e| e.into_storage(ErrorSubject::Vote, ErrorVerb::Read))
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        let to_storage = |e: DbError| e.into_storage(ErrorSubject::Store, ErrorVerb::Write);
        let bytes = match &committed {
            Some(c) => Some(encode("committed log id", c).map_err(to_storage)?),
            None => None,
        };
        let db = self.db.clone();
        // A hint: losing the newest value in a crash only means re-applying less on start (the
        // leader commits the rest again). Made durable by the next durable commit.
        blocking(move || {
            write_meta_with(
                &db,
                &[(KEY_COMMITTED, bytes.as_deref())],
                redb::Durability::None,
            )
        })
        .await
        .map_err(to_storage)
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<NodeId>>> {
        read_meta(&self.db, KEY_COMMITTED)
            .map_err(|e| e.into_storage(ErrorSubject::Store, ErrorVerb::Read))
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let to_storage = |e: DbError| e.into_storage(ErrorSubject::Logs, ErrorVerb::Write);
        let mut records = Vec::new();
        for entry in entries {
            records.push((
                entry.log_id.index,
                encode("log entry", &entry).map_err(to_storage)?,
            ));
        }
        let wal = self.wal.clone();
        let res = blocking(move || Ok(lock_wal(&wal).append(&records)?)).await;
        match res {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(to_storage(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let wal = self.wal.clone();
        let from = log_id.index;
        blocking(move || Ok(lock_wal(&wal).truncate(from)?))
            .await
            .map_err(|e| e.into_storage(ErrorSubject::Logs, ErrorVerb::Delete))
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let to_storage = |e: DbError| e.into_storage(ErrorSubject::Logs, ErrorVerb::Delete);
        let bytes = encode("last purged log id", &log_id).map_err(to_storage)?;
        let db = self.db.clone();
        let wal = self.wal.clone();
        let upto = log_id.index;
        blocking(move || {
            let mut wal = lock_wal(&wal);
            wal.forget(upto);
            if wal.needs_compaction() {
                // First the record (durable), then the file: after a crash in between,
                // `open_store` drops the entries the record says are purged.
                write_meta(&db, &[(KEY_LAST_PURGED, Some(&bytes))])?;
                wal.compact()?;
            } else {
                // The purged entries stay in the file (see `wal`), so the record is a hint like
                // the committed id: losing it in a crash only means the log starts at an older
                // entry, still on disk and still valid (entries a snapshot holds may stay in the
                // log). No fsync here: openraft's core waits for the purge, and every write with
                // it.
                write_meta_with(
                    &db,
                    &[(KEY_LAST_PURGED, Some(&bytes))],
                    redb::Durability::None,
                )?;
            }
            Ok(())
        })
        .await
        .map_err(to_storage)
    }
}

// ---------------------------------------------------------------------------------------------
// State machine
// ---------------------------------------------------------------------------------------------

/// The applied state machine (in memory; a snapshot stores its state, see the module comment).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct SmRecord {
    last_applied: Option<LogId<NodeId>>,
    last_membership: StoredMembership<NodeId, BasicNode>,
    /// Shared with readers ([`StateHandle::read`]); applying copies it only while one holds it.
    state: Arc<ClusterState>,
}

/// The applied state, shared between the state machine and every [`StateHandle`].
struct Shared {
    record: RwLock<SmRecord>,
}

impl Shared {
    fn get(&self) -> SmRecord {
        match self.record.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&SmRecord) -> R) -> R {
        match self.record.read() {
            Ok(g) => f(&g),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    fn set(&self, rec: SmRecord) {
        self.update(|r| *r = rec);
    }

    /// Changes the record in place under the write lock (do not block inside `f`).
    fn update<R>(&self, f: impl FnOnce(&mut SmRecord) -> R) -> R {
        match self.record.write() {
            Ok(mut g) => f(&mut g),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }
}

/// Read access to the applied [`ClusterState`]. Cheap to clone.
#[derive(Clone)]
pub struct StateHandle {
    shared: Arc<Shared>,
    changes: watch::Receiver<u64>,
}

impl StateHandle {
    /// The applied state as of now: a shared, immutable version (cheap; later writes make a new
    /// version instead of changing this one).
    pub fn read(&self) -> Arc<ClusterState> {
        self.shared.with(|r| r.state.clone())
    }

    /// Runs `f` on the applied state without copying it. Do not block inside `f`.
    pub fn with<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> R {
        self.shared.with(|r| f(&r.state))
    }

    /// The log id of the last entry applied to the state (`None` before the first one).
    pub fn last_applied(&self) -> Option<LogId<NodeId>> {
        self.shared.with(|r| r.last_applied)
    }

    /// A receiver whose value (a change counter) moves on every applied batch and every installed
    /// snapshot: `changed().await` on it to wait for the state to change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }
}

/// The Raft state machine: the applied [`ClusterState`], last applied log id, last membership and
/// the current snapshot, all in the database.
pub struct StateMachineStore {
    db: Arc<Database>,
    shared: Arc<Shared>,
    changes: Arc<watch::Sender<u64>>,
}

impl StateMachineStore {
    /// The state as of the current snapshot, or the record an older Skiff wrote after every
    /// applied batch if that is newer; openraft re-applies the log after it.
    fn load(db: Arc<Database>) -> Result<Self, DbError> {
        let legacy: Option<SmRecord> = read_meta(&db, KEY_STATE_MACHINE)?;
        let from_snapshot = match read_snapshot(&db)? {
            Some((meta, data)) => Some(SmRecord {
                last_applied: meta.last_log_id,
                last_membership: meta.last_membership,
                state: Arc::new(decode(KEY_SNAPSHOT_DATA, &data)?),
            }),
            None => None,
        };
        let record = match (legacy, from_snapshot) {
            (Some(l), Some(s)) if l.last_applied > s.last_applied => l,
            (_, Some(s)) => s,
            (l, None) => l.unwrap_or_default(),
        };
        let (tx, _) = watch::channel(0u64);
        Ok(StateMachineStore {
            db,
            shared: Arc::new(Shared {
                record: RwLock::new(record),
            }),
            changes: Arc::new(tx),
        })
    }

    /// A read handle on the applied state.
    pub fn state_handle(&self) -> StateHandle {
        StateHandle {
            shared: self.shared.clone(),
            changes: self.changes.subscribe(),
        }
    }

    fn publish(&self, rec: SmRecord) {
        self.shared.set(rec);
        self.notify();
    }

    fn notify(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn read_current_snapshot(&self) -> Result<Option<Snapshot<TypeConfig>>, DbError> {
        Ok(read_snapshot(&self.db)?.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

type Meta = SnapshotMeta<NodeId, BasicNode>;

/// The stored snapshot: its meta and its data (the state as JSON).
fn read_snapshot(db: &Database) -> Result<Option<(Meta, Vec<u8>)>, DbError> {
    let txn = db.begin_read()?;
    let table = txn.open_table(META)?;
    let Some(meta) = table.get(KEY_SNAPSHOT_META)? else {
        return Ok(None);
    };
    let meta: Meta = decode(KEY_SNAPSHOT_META, meta.value())?;
    let Some(data) = table.get(KEY_SNAPSHOT_DATA)? else {
        return Err(DbError::Inconsistent(
            "snapshot meta is stored but its data is missing".into(),
        ));
    };
    Ok(Some((meta, data.value().to_vec())))
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>)> {
        Ok(self
            .shared
            .with(|r| (r.last_applied, r.last_membership.clone())))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Vec<CommandOutcome>>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        // In memory only: the log holds every applied entry durably (module comment). The state
        // is copied only when a reader still holds the current version.
        let out = self.shared.update(|rec| {
            let mut out = Vec::with_capacity(entries.len());
            for entry in entries {
                rec.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => out.push(vec![CommandOutcome::Done]),
                    EntryPayload::Normal(write) => {
                        out.push(Arc::make_mut(&mut rec.state).apply_write(&write))
                    }
                    EntryPayload::Membership(m) => {
                        rec.last_membership = StoredMembership::new(Some(entry.log_id), m);
                        out.push(vec![CommandOutcome::Done]);
                    }
                }
            }
            out
        });
        self.notify();
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            db: self.db.clone(),
            record: self.shared.get(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let signature = meta.signature();
        let to_storage = |verb: ErrorVerb| {
            let signature = signature.clone();
            move |e: DbError| e.into_storage(ErrorSubject::Snapshot(Some(signature)), verb)
        };
        let data = snapshot.into_inner();
        let state: ClusterState =
            decode("received snapshot data", &data).map_err(to_storage(ErrorVerb::Read))?;
        let rec = SmRecord {
            last_applied: meta.last_log_id,
            last_membership: meta.last_membership.clone(),
            state: Arc::new(state),
        };
        let meta_bytes = encode("snapshot meta", meta).map_err(to_storage(ErrorVerb::Write))?;
        let db = self.db.clone();
        blocking(move || {
            write_meta(
                &db,
                &[
                    // The state is the snapshot's now; an older Skiff's record is stale.
                    (KEY_STATE_MACHINE, None),
                    (KEY_SNAPSHOT_META, Some(&meta_bytes)),
                    (KEY_SNAPSHOT_DATA, Some(&data)),
                ],
            )
        })
        .await
        .map_err(to_storage(ErrorVerb::Write))?;
        self.publish(rec);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        self.read_current_snapshot()
            .map_err(|e| e.into_storage(ErrorSubject::Snapshot(None), ErrorVerb::Read))
    }
}

/// Builds a snapshot of the state as it was when openraft asked for the builder, and stores it as
/// the current snapshot unless a newer one is already stored.
pub struct SnapshotBuilder {
    db: Arc<Database>,
    record: SmRecord,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let last_log_id = self.record.last_applied;
        let last_membership = self.record.last_membership.clone();
        let to_storage =
            |e: DbError| e.into_storage(ErrorSubject::Snapshot(None), ErrorVerb::Write);
        let db = self.db.clone();
        let state = self.record.state.clone();
        // Encoding the whole state takes tens of milliseconds once it holds thousands of users
        // and audit records: it runs on a blocking thread, never on a runtime worker, where it
        // would hold up requests and Raft RPCs (the write benchmark's tail, docs/benchmarks.md
        // §6).
        let (meta, data) = blocking(move || {
            let data = encode("snapshot data", &*state)?;
            let data_for_db = &data;
            let mut txn = db.begin_write()?;
            // Without fsync: a durable commit of 1.4 MB (5,000 users) took 25–35 ms here, and
            // the log appends of every node waited behind it for the disk (the write benchmark's
            // remaining tail, docs/benchmarks.md §6). It is safe because the log entries this
            // snapshot holds stay in the log file until a durable commit, which makes this one
            // durable too (redb commits in order): a purge only rewrites the log file after a
            // durable commit of the purge record (`LogStore::purge`), and a start only drops the
            // entries the stored purge record names. A crash that loses this snapshot leaves the
            // previous one and the whole log after it, and the state is rebuilt from those.
            txn.set_durability(redb::Durability::None);
            let meta;
            {
                let mut table = txn.open_table(META)?;
                let seq: u64 = match table.get(KEY_SNAPSHOT_SEQ)? {
                    Some(v) => decode::<u64>(KEY_SNAPSHOT_SEQ, v.value())?,
                    None => 0,
                } + 1;
                let snapshot_id = match &last_log_id {
                    Some(id) => format!("{}-{}-{seq}", id.leader_id, id.index),
                    None => format!("none-{seq}"),
                };
                meta = SnapshotMeta {
                    last_log_id,
                    last_membership,
                    snapshot_id,
                };
                let stored: Option<SnapshotMeta<NodeId, BasicNode>> =
                    match table.get(KEY_SNAPSHOT_META)? {
                        Some(v) => Some(decode(KEY_SNAPSHOT_META, v.value())?),
                        None => None,
                    };
                let newer_stored = stored
                    .as_ref()
                    .is_some_and(|s| s.last_log_id > meta.last_log_id);
                table.insert(KEY_SNAPSHOT_SEQ, encode("snapshot seq", &seq)?.as_slice())?;
                if !newer_stored {
                    table.insert(
                        KEY_SNAPSHOT_META,
                        encode("snapshot meta", &meta)?.as_slice(),
                    )?;
                    table.insert(KEY_SNAPSHOT_DATA, data_for_db.as_slice())?;
                    // The snapshot is where a restart re-applies the log from; an older
                    // Skiff's state machine record is stale now.
                    table.remove(KEY_STATE_MACHINE)?;
                }
            }
            txn.commit()?;
            Ok((meta, data))
        })
        .await
        .map_err(to_storage)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}
