//! Group commit: writes that arrive while earlier ones are being committed share one log entry.
//!
//! openraft 0.9 appends and flushes each `client_write` on its own, one after the other, and
//! replicates, commits and applies it as its own entry. Under many concurrent writers that per-entry
//! work, not the disk, sets the pace (docs/benchmarks.md §6). A [`WriteBatcher`] keeps at most
//! [`IN_FLIGHT`] entries of its own in flight; the proposals that arrive meanwhile wait, then go
//! together as one [`Write::Batch`] entry of at most [`MAX_BATCH`] proposals. Applying a batch
//! applies its proposals one after the other, each with its own outcome and audit record, exactly
//! as if they had been separate entries in that order. Nothing changes for a single writer: a
//! proposal that finds nothing in flight goes at once, as [`Write::One`].
//!
//! A batch is one entry, so it commits or fails as a whole: every proposal in it gets the same
//! error when the write fails (not the leader, or the outcome unknown).

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::state::{CommandOutcome, Proposal, Write};

use super::ClusterRaft;

/// Entries this batcher has in flight at once. Two keep the log busy: one is being replicated
/// while the next is appended.
pub const IN_FLIGHT: usize = 2;
/// Largest number of proposals in one entry.
pub const MAX_BATCH: usize = 128;

/// Why a proposal did not take effect (or might not have).
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProposeError {
    /// Not proposed, or its entry was overwritten by a new leader: it never takes effect.
    #[error("this node is not the leader")]
    NotLeader,
    /// The write failed in a way that leaves its outcome unknown.
    #[error("the replicated write failed: {0}")]
    Raft(String),
}

type Reply = oneshot::Sender<Result<CommandOutcome, ProposeError>>;

/// Batches proposals into log entries; see the module comment. Cheap to clone.
#[derive(Clone)]
pub struct WriteBatcher {
    tx: mpsc::UnboundedSender<(Proposal, Reply)>,
}

impl WriteBatcher {
    /// Starts the batcher in front of `raft` (on the current tokio runtime). It stops when the
    /// last clone is dropped.
    pub fn new(raft: ClusterRaft) -> Self {
        Self::with_submit(move |write| {
            let raft = raft.clone();
            async move {
                match raft.client_write(write).await {
                    Ok(resp) => Ok(resp.data),
                    Err(e) if e.forward_to_leader().is_some() => Err(ProposeError::NotLeader),
                    Err(e) => Err(ProposeError::Raft(e.to_string())),
                }
            }
        })
    }

    /// A batcher that hands each entry to `submit`, which returns one outcome per proposal.
    pub fn with_submit<F, Fut>(submit: F) -> Self
    where
        F: Fn(Write) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<CommandOutcome>, ProposeError>> + Send + 'static,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(rx, submit));
        WriteBatcher { tx }
    }

    /// Proposes `p` and returns what applying it produced.
    pub async fn propose(&self, p: Proposal) -> Result<CommandOutcome, ProposeError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((p, reply))
            .map_err(|_| ProposeError::NotLeader)?;
        answer.await.unwrap_or(Err(ProposeError::Raft(
            "the write was dropped before its outcome was known".into(),
        )))
    }
}

async fn run<F, Fut>(mut rx: mpsc::UnboundedReceiver<(Proposal, Reply)>, submit: F)
where
    F: Fn(Write) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Vec<CommandOutcome>, ProposeError>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        // Wait for a free slot first: what arrives meanwhile joins this entry.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (proposals, replies): (Vec<Proposal>, Vec<Reply>) = batch.into_iter().unzip();
        let write = Write::from_proposals(proposals);
        let done = submit(write);
        tokio::spawn(async move {
            let result = done.await.and_then(|outcomes| {
                if outcomes.len() == replies.len() {
                    Ok(outcomes)
                } else {
                    Err(ProposeError::Raft(format!(
                        "{} outcomes for {} proposals",
                        outcomes.len(),
                        replies.len()
                    )))
                }
            });
            drop(slot);
            match result {
                Ok(outcomes) => {
                    for (reply, outcome) in replies.into_iter().zip(outcomes) {
                        let _ = reply.send(Ok(outcome));
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::state::Command;

    fn proposal(i: u64) -> Proposal {
        Proposal::new(format!("user:u{i}"), i, Command::PruneTokens { now: i })
    }

    /// A fake log: records each entry, takes `delay` to "commit", answers one `Done` per proposal
    /// (or `fail`).
    fn fake(delay: Duration, fail: Option<ProposeError>) -> (WriteBatcher, Arc<Mutex<Vec<Write>>>) {
        let entries = Arc::new(Mutex::new(Vec::new()));
        let seen = entries.clone();
        let batcher = WriteBatcher::with_submit(move |w: Write| {
            let n = w.proposals().len();
            seen.lock().unwrap().push(w);
            let fail = fail.clone();
            async move {
                tokio::time::sleep(delay).await;
                match fail {
                    Some(e) => Err(e),
                    None => Ok((0..n).map(|_| CommandOutcome::Done).collect()),
                }
            }
        });
        (batcher, entries)
    }

    #[tokio::test]
    async fn a_lone_write_goes_at_once_as_one_entry() {
        let (b, entries) = fake(Duration::ZERO, None);
        assert_eq!(b.propose(proposal(1)).await, Ok(CommandOutcome::Done));
        assert_eq!(*entries.lock().unwrap(), vec![Write::One(proposal(1))]);
    }

    #[tokio::test]
    async fn concurrent_writes_share_entries_and_each_gets_its_outcome() {
        let (b, entries) = fake(Duration::from_millis(30), None);
        let all = (0..50).map(|i| {
            let b = b.clone();
            tokio::spawn(async move { b.propose(proposal(i)).await })
        });
        for r in futures::future::join_all(all).await {
            assert_eq!(r.unwrap(), Ok(CommandOutcome::Done));
        }
        let entries = entries.lock().unwrap();
        // The first ones go alone (free slots), the rest wait and go together.
        assert!(
            entries.len() < 10,
            "{} entries for 50 writes",
            entries.len()
        );
        let mut carried: Vec<u64> = entries
            .iter()
            .flat_map(|w| w.proposals().iter().map(|p| p.at))
            .collect();
        carried.sort_unstable();
        assert_eq!(
            carried,
            (0..50).collect::<Vec<_>>(),
            "each write exactly once"
        );
        assert!(entries.iter().all(|w| w.proposals().len() <= MAX_BATCH));
    }

    #[tokio::test]
    async fn a_failed_entry_fails_every_write_in_it() {
        let (b, _) = fake(Duration::from_millis(10), Some(ProposeError::NotLeader));
        let all = (0..5).map(|i| {
            let b = b.clone();
            tokio::spawn(async move { b.propose(proposal(i)).await })
        });
        for r in futures::future::join_all(all).await {
            assert_eq!(r.unwrap(), Err(ProposeError::NotLeader));
        }
    }

    #[test]
    fn entries_written_before_batching_still_read_and_batches_round_trip() {
        // A log entry's payload as it was written before batches existed: one proposal.
        let old = serde_json::to_vec(&proposal(7)).unwrap();
        let w: Write = serde_json::from_slice(&old).unwrap();
        assert_eq!(w, Write::One(proposal(7)));
        let one = Write::from_proposals(vec![proposal(1)]);
        assert_eq!(
            serde_json::to_vec(&one).unwrap(),
            serde_json::to_vec(&proposal(1)).unwrap()
        );
        let batch = Write::from_proposals(vec![proposal(1), proposal(2)]);
        let back: Write = serde_json::from_slice(&serde_json::to_vec(&batch).unwrap()).unwrap();
        assert_eq!(back, batch);
        assert_eq!(back.proposals(), &[proposal(1), proposal(2)]);
    }
}
