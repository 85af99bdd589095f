//! Backups in the desired state: copies of an image, or of every disk of a server, kept in the
//! node-local pool's backup area, made now or daily on a schedule with retention.
//!
//! Like images (see `images.rs`), every operation is two writes: [`BackupCommand::Create`],
//! [`BackupCommand::Restore`] or [`BackupCommand::Remove`] records the operation as pending and
//! opens a `backup.*` task on the node; the reconciler has the node do it and writes
//! [`BackupCommand::Settle`]. A backup is listed as ready only once its copies exist; a failed
//! backup is forgotten. Running servers are not backed up (their disks change under the copy:
//! shut them down first); restoring puts the copies back in place of the disks, so the server must
//! be stopped and the image must not be a master.

use serde::{Deserialize, Serialize};

use super::images::busy_with;
use super::pools::{PoolKind, LOCAL_POOL};
use super::servers::PowerState;
use super::tasks::open_task;
use super::{ClusterState, CommandOutcome, RefusalCode};

/// Most scheduled backups kept per target.
pub const KEEP_MAX: u32 = 365;

/// What a backup is of.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BackupTarget {
    Image {
        name: String,
    },
    /// Every disk of the server.
    Server {
        name: String,
    },
    /// A whole ZFS pool: a snapshot of its dataset, sent incrementally to its backup dataset.
    Pool {
        name: String,
    },
}

impl BackupTarget {
    /// `image NAME` or `server NAME`.
    pub fn describe(&self) -> String {
        match self {
            BackupTarget::Image { name } => format!("image {name}"),
            BackupTarget::Server { name } => format!("server {name}"),
            BackupTarget::Pool { name } => format!("pool {name}"),
        }
    }

    /// The schedule key: `image:NAME` or `server:NAME`.
    pub fn key(&self) -> String {
        match self {
            BackupTarget::Image { name } => format!("image:{name}"),
            BackupTarget::Server { name } => format!("server:{name}"),
            BackupTarget::Pool { name } => format!("pool:{name}"),
        }
    }
}

/// What is done with a backup on its node.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BackupOp {
    /// Copy the files into the backup.
    Create,
    /// Put the backup's copies back in place of the files.
    Restore,
    /// Delete the backup's copies.
    Remove,
}

impl BackupOp {
    pub fn kind(self) -> &'static str {
        match self {
            BackupOp::Create => "backup.create",
            BackupOp::Restore => "backup.restore",
            BackupOp::Remove => "backup.remove",
        }
    }
}

/// One backup.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackupRecord {
    pub id: u64,
    pub target: BackupTarget,
    pub owner: String,
    pub node: String,
    /// The pool holding `files` (and, in its `.backups/`, the copies).
    #[serde(default = "super::pools::local_pool_name")]
    pub pool: String,
    /// The pool images copied (the image, or the server's `SERVER-diskN`).
    pub files: Vec<String>,
    pub created_at: u64,
    /// Made by a schedule (counted by its retention), not by hand.
    pub scheduled: bool,
    /// False until the node has made it.
    pub ready: bool,
    pub pending: Option<PendingBackupOp>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PendingBackupOp {
    pub task_id: u64,
    pub op: BackupOp,
}

/// A daily backup with retention.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackupSchedule {
    pub target: BackupTarget,
    pub owner: String,
    /// Hour of the day (UTC) after which the day's backup is made.
    pub hour_utc: u8,
    /// Scheduled backups kept; older ones are removed.
    pub keep: u32,
}

/// Changes to backups.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "backup_op", rename_all = "snake_case")]
pub enum BackupCommand {
    Create {
        target: BackupTarget,
        owner: String,
        #[serde(default)]
        scheduled: bool,
    },
    Restore {
        id: u64,
    },
    Remove {
        id: u64,
    },
    /// The reconciler's report that the node finished the pending operation of `task_id`.
    Settle {
        id: u64,
        task_id: u64,
        ok: bool,
    },
    /// Sets (or, with `None`, drops) the daily schedule of a target.
    Schedule {
        target: BackupTarget,
        owner: String,
        #[serde(default)]
        hour_utc: Option<u8>,
        #[serde(default)]
        keep: Option<u32>,
    },
}

impl BackupCommand {
    /// The operation and its target, for the audit log.
    pub fn describe(&self) -> (&'static str, String) {
        match self {
            BackupCommand::Create { target, .. } => ("backup.create", target.describe()),
            BackupCommand::Restore { id } => ("backup.restore", id.to_string()),
            BackupCommand::Remove { id } => ("backup.remove", id.to_string()),
            BackupCommand::Settle { id, .. } => ("backup.settle", id.to_string()),
            BackupCommand::Schedule { target, .. } => ("backup.schedule", target.describe()),
        }
    }
}

fn refused(code: RefusalCode, m: impl Into<String>) -> CommandOutcome {
    CommandOutcome::Refused {
        code,
        message: m.into(),
    }
}

/// What a backup of a target copies: the images of one pool on one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetFiles {
    pub owner: String,
    pub node: String,
    pub pool: String,
    pub files: Vec<String>,
}

/// The node, pool and files of a target as it stands, or why it cannot be backed up or restored
/// now.
pub fn target_files(
    state: &ClusterState,
    target: &BackupTarget,
) -> Result<TargetFiles, CommandOutcome> {
    let invalid = |m: String| refused(RefusalCode::InvalidState, m);
    match target {
        BackupTarget::Image { name } => {
            let image = state.images.get(name).ok_or_else(|| {
                refused(RefusalCode::NotFound, format!("no image named {name:?}"))
            })?;
            if !image.ready {
                return Err(invalid(format!("image {name} is not made yet")));
            }
            if let Some(t) = busy_with(state, image) {
                return Err(refused(
                    RefusalCode::Conflict,
                    format!("image {name} is busy with task {t}"),
                ));
            }
            Ok(TargetFiles {
                owner: image.owner.clone(),
                node: image.node.clone(),
                pool: image.pool.clone(),
                files: vec![name.clone()],
            })
        }
        BackupTarget::Server { name } => {
            let server = state.servers.get(name).ok_or_else(|| {
                refused(RefusalCode::NotFound, format!("no server named {name:?}"))
            })?;
            if server.desired != PowerState::Stopped {
                return Err(invalid(format!(
                    "server {name} is not stopped: shut it down first (its disks would change under the copy)"
                )));
            }
            let node = server
                .node
                .clone()
                .ok_or_else(|| invalid(format!("server {name} is on no node")))?;
            if server.spec.disks.is_empty() {
                return Err(invalid(format!("server {name} has no disks")));
            }
            let pool_of = |d: &super::servers::DiskSpec| {
                d.pool.clone().unwrap_or_else(|| LOCAL_POOL.to_string())
            };
            let pool = pool_of(&server.spec.disks[0]);
            if server.spec.disks.iter().any(|d| pool_of(d) != pool) {
                return Err(invalid(format!(
                    "server {name} has disks in more than one pool: back up its disks' pools one image at a time"
                )));
            }
            let files = (0..server.spec.disks.len())
                .map(|i| super::images::disk_name(name, i))
                .collect();
            Ok(TargetFiles {
                owner: server.owner.clone(),
                node,
                pool,
                files,
            })
        }
        BackupTarget::Pool { name } => {
            let pool = state
                .pools
                .get(name)
                .ok_or_else(|| refused(RefusalCode::NotFound, format!("no pool named {name:?}")))?;
            match (&pool.kind, &pool.node) {
                (PoolKind::Zfs { .. }, Some(node)) => Ok(TargetFiles {
                    owner: ADMIN_OWNER.into(),
                    node: node.clone(),
                    pool: name.clone(),
                    files: Vec::new(),
                }),
                _ => Err(invalid(format!(
                    "pool {name} is not on ZFS: back up its images (or servers) one by one"
                ))),
            }
        }
    }
}

/// The owner recorded for backups of whole pools (which only admins make and see).
pub const ADMIN_OWNER: &str = "admin";

/// The open task of a backup or restore of `target`, if any (its image or disks must not change
/// under the copy).
pub fn target_busy_with(state: &ClusterState, target: &BackupTarget) -> Option<u64> {
    state
        .backups
        .values()
        .filter(|b| &b.target == target)
        .find_map(|b| backup_busy_with(state, b))
}

/// The open task a backup is busy with, if any.
pub fn backup_busy_with(state: &ClusterState, b: &BackupRecord) -> Option<u64> {
    let p = b.pending.as_ref()?;
    state
        .tasks
        .get(&p.task_id)
        .filter(|t| !t.state.is_final())
        .map(|t| t.id)
}

pub(super) fn apply(state: &mut ClusterState, cmd: &BackupCommand, at: u64) -> CommandOutcome {
    match try_apply(state, cmd, at) {
        Ok(o) | Err(o) => o,
    }
}

fn start(state: &mut ClusterState, id: u64, op: BackupOp, at: u64) -> CommandOutcome {
    let Some(b) = state.backups.get(&id) else {
        return refused(RefusalCode::NotFound, format!("no backup {id}"));
    };
    let (owner, node, target) = (b.owner.clone(), b.node.clone(), b.target.describe());
    let task_id = open_task(state, &owner, op.kind(), &target, Some(node), at);
    if let Some(b) = state.backups.get_mut(&id) {
        b.pending = Some(PendingBackupOp { task_id, op });
    }
    CommandOutcome::TaskStarted { task_id }
}

fn existing(state: &ClusterState, id: u64) -> Result<&BackupRecord, CommandOutcome> {
    let b = state
        .backups
        .get(&id)
        .ok_or_else(|| refused(RefusalCode::NotFound, format!("no backup {id}")))?;
    if let Some(t) = backup_busy_with(state, b) {
        return Err(refused(
            RefusalCode::Conflict,
            format!("backup {id} is busy with task {t}"),
        ));
    }
    Ok(b)
}

fn try_apply(
    state: &mut ClusterState,
    cmd: &BackupCommand,
    at: u64,
) -> Result<CommandOutcome, CommandOutcome> {
    match cmd {
        BackupCommand::Create {
            target,
            owner,
            scheduled,
        } => {
            let TargetFiles {
                node, pool, files, ..
            } = target_files(state, target)?;
            state.next_backup_id = state.next_backup_id.max(1);
            let id = state.next_backup_id;
            state.next_backup_id += 1;
            state.backups.insert(
                id,
                BackupRecord {
                    id,
                    target: target.clone(),
                    owner: owner.clone(),
                    node,
                    pool,
                    files,
                    created_at: at,
                    scheduled: *scheduled,
                    ready: false,
                    pending: None,
                },
            );
            Ok(start(state, id, BackupOp::Create, at))
        }
        BackupCommand::Restore { id } => {
            let b = existing(state, *id)?;
            if !b.ready {
                return Err(refused(
                    RefusalCode::InvalidState,
                    format!("backup {id} is not made yet"),
                ));
            }
            let target = b.target.clone();
            if let BackupTarget::Pool { name } = &target {
                return Err(refused(
                    RefusalCode::InvalidState,
                    format!(
                        "backup {id} is a ZFS snapshot of pool {name}: restore its images or servers from their own backups, or files from the dataset's .zfs/snapshot/ (a whole-pool rollback is left to the operator)"
                    ),
                ));
            }
            let now = target_files(state, &target)?;
            if let BackupTarget::Image { name } = &target {
                if state.images.get(name).is_some_and(|i| i.master) {
                    return Err(refused(
                        RefusalCode::InvalidState,
                        format!("image {name} is a master (read-only): unmaster it first"),
                    ));
                }
            }
            let b = existing(state, *id)?;
            if now.node != b.node || now.pool != b.pool || now.files != b.files {
                return Err(refused(
                    RefusalCode::InvalidState,
                    format!(
                        "{} changed since backup {id} (node, pool or disks): it cannot be restored in place",
                        target.describe()
                    ),
                ));
            }
            Ok(start(state, *id, BackupOp::Restore, at))
        }
        BackupCommand::Remove { id } => {
            existing(state, *id)?;
            Ok(start(state, *id, BackupOp::Remove, at))
        }
        BackupCommand::Settle { id, task_id, ok } => {
            let b = state
                .backups
                .get_mut(id)
                .ok_or_else(|| refused(RefusalCode::NotFound, format!("no backup {id}")))?;
            let Some(p) = b.pending.take_if(|p| p.task_id == *task_id) else {
                return Err(refused(
                    RefusalCode::Conflict,
                    format!("backup {id} has no pending operation of task {task_id}"),
                ));
            };
            match (p.op, *ok) {
                (BackupOp::Create, true) => b.ready = true,
                (BackupOp::Create, false) | (BackupOp::Remove, true) => {
                    state.backups.remove(id);
                }
                _ => {}
            }
            Ok(CommandOutcome::Done)
        }
        BackupCommand::Schedule {
            target,
            owner,
            hour_utc,
            keep,
        } => {
            let key = target.key();
            match (hour_utc, keep) {
                (Some(hour), Some(keep)) => {
                    if *hour > 23 || *keep == 0 || *keep > KEEP_MAX {
                        return Err(refused(
                            RefusalCode::Invalid,
                            format!(
                                "a schedule needs an hour 0-23 and keeps 1 to {KEEP_MAX} backups"
                            ),
                        ));
                    }
                    let exists = match target {
                        BackupTarget::Image { name } => state.images.contains_key(name),
                        BackupTarget::Server { name } => state.servers.contains_key(name),
                        BackupTarget::Pool { .. } => target_files(state, target).is_ok(),
                    };
                    if !exists {
                        return Err(refused(
                            RefusalCode::NotFound,
                            format!("no {}", target.describe()),
                        ));
                    }
                    state.backup_schedules.insert(
                        key,
                        BackupSchedule {
                            target: target.clone(),
                            owner: owner.clone(),
                            hour_utc: *hour,
                            keep: *keep,
                        },
                    );
                }
                _ => {
                    state.backup_schedules.remove(&key);
                }
            }
            Ok(CommandOutcome::Done)
        }
    }
}

/// What the daily schedules ask for at `now` (Unix seconds): targets whose backup of the day is
/// due, and scheduled backups beyond their schedule's retention (oldest first).
pub fn schedule_due(state: &ClusterState, now: u64) -> (Vec<BackupSchedule>, Vec<u64>) {
    const DAY: u64 = 86_400;
    let today = now - now % DAY;
    let mut due = Vec::new();
    let mut expired = Vec::new();
    for s in state.backup_schedules.values() {
        let mut ours: Vec<&BackupRecord> = state
            .backups
            .values()
            .filter(|b| b.target == s.target && b.scheduled)
            .collect();
        ours.sort_by_key(|b| b.id);
        let slot = today + u64::from(s.hour_utc) * 3600;
        // One attempt a day: a failed backup is forgotten, but its task is not.
        let what = s.target.describe();
        let done_today = ours.iter().any(|b| b.created_at >= slot)
            || state.tasks.values().any(|t| {
                t.kind == BackupOp::Create.kind() && t.target == what && t.created_at >= slot
            });
        if now >= slot && !done_today && target_files(state, &s.target).is_ok() {
            due.push(s.clone());
        }
        let ready: Vec<&&BackupRecord> = ours.iter().filter(|b| b.ready).collect();
        let extra = ready.len().saturating_sub(s.keep as usize);
        expired.extend(
            ready
                .iter()
                .take(extra)
                .filter(|b| backup_busy_with(state, b).is_none())
                .map(|b| b.id),
        );
    }
    (due, expired)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::images::ImageCommand;
    use crate::state::tasks::TaskCommand;
    use crate::state::{Command, Proposal};

    fn run(s: &mut ClusterState, at: u64, c: Command) -> CommandOutcome {
        s.apply(&Proposal::new("user:admin", at, c))
    }

    fn task(o: &CommandOutcome) -> u64 {
        match o {
            CommandOutcome::TaskStarted { task_id } => *task_id,
            other => panic!("expected a task, got {other:?}"),
        }
    }

    fn finish(s: &mut ClusterState, id: u64) {
        s.apply(&Proposal::system(
            1,
            Command::Task(TaskCommand::Finish {
                id,
                ok: true,
                result: "ok".into(),
            }),
        ));
    }

    /// A state with a ready image `img`.
    fn with_image() -> ClusterState {
        let mut s = crate::state::tests::bootstrapped();
        let node = s.nodes.keys().next().cloned().unwrap_or_default();
        let t = task(&run(
            &mut s,
            1,
            Command::Image(ImageCommand::Create {
                pool: None,
                name: "img".into(),
                owner: "admin".into(),
                node,
                size_gib: 1,
            }),
        ));
        run(
            &mut s,
            1,
            Command::Image(ImageCommand::Settle {
                name: "img".into(),
                task_id: t,
                ok: true,
                size_gib: None,
            }),
        );
        finish(&mut s, t);
        s
    }

    fn settle(s: &mut ClusterState, id: u64, t: u64, ok: bool) {
        let o = run(
            s,
            2,
            Command::Backup(BackupCommand::Settle { id, task_id: t, ok }),
        );
        assert_eq!(o, CommandOutcome::Done);
        finish(s, t);
    }

    fn image() -> BackupTarget {
        BackupTarget::Image { name: "img".into() }
    }

    #[test]
    fn create_restore_remove() {
        let mut s = with_image();
        let create = |s: &mut ClusterState| {
            run(
                s,
                10,
                Command::Backup(BackupCommand::Create {
                    target: image(),
                    owner: "admin".into(),
                    scheduled: false,
                }),
            )
        };
        let t = task(&create(&mut s));
        let id = *s.backups.keys().next().unwrap_or(&0);
        assert_eq!(s.backups[&id].files, ["img"]);
        // The image does not change under the copy: its operations wait for the backup.
        let grow = Command::Image(ImageCommand::Act {
            name: "img".into(),
            work: crate::state::ImageOp::Resize { size_gib: 9 },
        });
        assert!(matches!(
            run(&mut s, 11, grow),
            CommandOutcome::Refused {
                code: RefusalCode::Conflict,
                ..
            }
        ));
        // Not restorable before it is made, nor while busy.
        let restore = Command::Backup(BackupCommand::Restore { id });
        assert!(matches!(
            run(&mut s, 11, restore.clone()),
            CommandOutcome::Refused { .. }
        ));
        settle(&mut s, id, t, true);
        assert!(s.backups[&id].ready);
        let t = task(&run(&mut s, 12, restore));
        settle(&mut s, id, t, true);
        let t = task(&run(
            &mut s,
            13,
            Command::Backup(BackupCommand::Remove { id }),
        ));
        settle(&mut s, id, t, true);
        assert!(s.backups.is_empty());
        // A failed backup is forgotten.
        let t = task(&create(&mut s));
        let id = *s.backups.keys().next().unwrap_or(&0);
        settle(&mut s, id, t, false);
        assert!(s.backups.is_empty());
    }

    #[test]
    fn whole_zfs_pools_are_backed_up_and_not_restored_in_place() {
        use crate::state::pools::{PoolCommand, PoolKind};
        let mut s = with_image();
        let node = s.nodes.keys().next().cloned().unwrap();
        for (name, kind) in [
            (
                "z",
                PoolKind::Zfs {
                    dataset: "tank/skiff".into(),
                    backup: Some("backup/skiff".into()),
                },
            ),
            (
                "d",
                PoolKind::Dir {
                    path: "/srv/d".into(),
                },
            ),
        ] {
            let add = PoolCommand::Add {
                name: Some(name.into()),
                node: Some(node.clone()),
                kind,
                token: String::new(),
            };
            assert_eq!(run(&mut s, 1, Command::Pool(add)), CommandOutcome::Done);
        }
        let pool = |name: &str| BackupTarget::Pool { name: name.into() };
        let create = |s: &mut ClusterState, target| {
            run(
                s,
                1,
                Command::Backup(BackupCommand::Create {
                    target,
                    owner: ADMIN_OWNER.into(),
                    scheduled: false,
                }),
            )
        };
        let t = task(&create(&mut s, pool("z")));
        let id = *s.backups.keys().next_back().unwrap();
        let b = &s.backups[&id];
        assert_eq!((b.node.as_str(), b.pool.as_str()), (node.as_str(), "z"));
        assert!(b.files.is_empty());
        settle(&mut s, id, t, true);
        // Not restored in place; a directory pool has no whole-pool backups; the pool stays
        // while its backups exist.
        let o = run(&mut s, 2, Command::Backup(BackupCommand::Restore { id }));
        assert!(
            matches!(
                o,
                CommandOutcome::Refused {
                    code: RefusalCode::InvalidState,
                    ..
                }
            ),
            "{o:?}"
        );
        let o = create(&mut s, pool("d"));
        assert!(
            matches!(
                o,
                CommandOutcome::Refused {
                    code: RefusalCode::InvalidState,
                    ..
                }
            ),
            "{o:?}"
        );
        let o = create(&mut s, pool("nope"));
        assert!(
            matches!(
                o,
                CommandOutcome::Refused {
                    code: RefusalCode::NotFound,
                    ..
                }
            ),
            "{o:?}"
        );
        let o = run(
            &mut s,
            2,
            Command::Pool(PoolCommand::Remove { name: "z".into() }),
        );
        assert!(
            matches!(
                o,
                CommandOutcome::Refused {
                    code: RefusalCode::Conflict,
                    ..
                }
            ),
            "{o:?}"
        );
        // Daily, with retention, like any target.
        let o = run(
            &mut s,
            2,
            Command::Backup(BackupCommand::Schedule {
                target: pool("z"),
                owner: ADMIN_OWNER.into(),
                hour_utc: Some(3),
                keep: Some(7),
            }),
        );
        assert_eq!(o, CommandOutcome::Done);
        assert!(s.backup_schedules.contains_key("pool:z"));
    }

    #[test]
    fn missing_targets_and_bad_schedules_are_refused() {
        let mut s = with_image();
        let o = run(
            &mut s,
            1,
            Command::Backup(BackupCommand::Create {
                target: BackupTarget::Server {
                    name: "nope".into(),
                },
                owner: "admin".into(),
                scheduled: false,
            }),
        );
        assert!(matches!(
            o,
            CommandOutcome::Refused {
                code: RefusalCode::NotFound,
                ..
            }
        ));
        for (hour, keep) in [(24, 1), (1, 0), (1, KEEP_MAX + 1)] {
            let o = run(
                &mut s,
                1,
                Command::Backup(BackupCommand::Schedule {
                    target: image(),
                    owner: "admin".into(),
                    hour_utc: Some(hour),
                    keep: Some(keep),
                }),
            );
            assert!(matches!(
                o,
                CommandOutcome::Refused {
                    code: RefusalCode::Invalid,
                    ..
                }
            ));
        }
        assert!(s.backup_schedules.is_empty());
    }

    #[test]
    fn a_failed_scheduled_backup_waits_for_the_next_day() {
        let mut s = with_image();
        run(
            &mut s,
            1,
            Command::Backup(BackupCommand::Schedule {
                target: image(),
                owner: "admin".into(),
                hour_utc: Some(0),
                keep: Some(1),
            }),
        );
        let now = 86_400 * 20 + 60;
        assert_eq!(schedule_due(&s, now).0.len(), 1);
        let t = task(&run(
            &mut s,
            now,
            Command::Backup(BackupCommand::Create {
                target: image(),
                owner: "admin".into(),
                scheduled: true,
            }),
        ));
        let id = s.backups.keys().max().copied().unwrap_or(0);
        settle(&mut s, id, t, false);
        assert!(s.backups.is_empty());
        assert!(schedule_due(&s, now + 60).0.is_empty());
        assert_eq!(schedule_due(&s, now + 86_400).0.len(), 1);
    }

    #[test]
    fn schedules_make_one_backup_a_day_and_keep_a_few() {
        let mut s = with_image();
        run(
            &mut s,
            1,
            Command::Backup(BackupCommand::Schedule {
                target: image(),
                owner: "admin".into(),
                hour_utc: Some(3),
                keep: Some(2),
            }),
        );
        let day = 86_400;
        // Before 03:00 nothing is due; after, one backup.
        assert!(schedule_due(&s, 10 * day + 2 * 3600).0.is_empty());
        for d in 10..14 {
            let now = d * day + 4 * 3600;
            let (due, _) = schedule_due(&s, now);
            assert_eq!(due.len(), 1, "day {d}");
            let t = task(&run(
                &mut s,
                now,
                Command::Backup(BackupCommand::Create {
                    target: image(),
                    owner: "admin".into(),
                    scheduled: true,
                }),
            ));
            let id = s.backups.keys().max().copied().unwrap_or(0);
            settle(&mut s, id, t, true);
            assert!(schedule_due(&s, now + 60).0.is_empty(), "once a day");
        }
        // Four made, two kept: the two oldest are due for removal.
        let (_, expired) = schedule_due(&s, 14 * day);
        let mut ids: Vec<u64> = s.backups.keys().copied().collect();
        ids.sort();
        assert_eq!(expired, ids[..2]);
    }
}
