//! Linearizable reads that share read-index rounds.
//!
//! A read-index round (`Raft::ensure_linearizable`) confirms leadership with a quorum and waits
//! until everything committed before it is applied. One round serves every read that arrived
//! before the round started, so concurrent readers need not each pay a quorum round trip: a
//! reader waits for the round in flight to end and then for one more, started after it arrived,
//! unless another reader already ran that one. A burst of readers costs at most two rounds.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

/// Coalesces read-index rounds; see the module comment.
#[derive(Debug, Default)]
pub struct ReadBarrier {
    /// Rounds started so far (a round's number is this value right after it started).
    started: AtomicU64,
    /// The highest round number that succeeded.
    done_ok: AtomicU64,
    /// Held by the task running a round, so that rounds run one at a time.
    runner: tokio::sync::Mutex<()>,
}

impl ReadBarrier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns once a round that started after this call began succeeded (`true`), or when the
    /// round this caller ran itself failed (`false`). `round` runs one round, at most once.
    pub async fn confirm<F, Fut>(&self, round: F) -> bool
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = bool>,
    {
        let seen = self.started.load(Ordering::SeqCst);
        let _turn = self.runner.lock().await;
        if self.done_ok.load(Ordering::SeqCst) > seen {
            return true;
        }
        let number = self.started.fetch_add(1, Ordering::SeqCst) + 1;
        let ok = round().await;
        if ok {
            self.done_ok.fetch_max(number, Ordering::SeqCst);
        }
        ok
    }

    /// How many rounds were started (for tests and metrics).
    pub fn rounds(&self) -> u64 {
        self.started.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_readers_shares_rounds() {
        let barrier = Arc::new(ReadBarrier::new());
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let barrier = barrier.clone();
            let runs = runs.clone();
            tasks.push(tokio::spawn(async move {
                barrier
                    .confirm(|| async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        true
                    })
                    .await
            }));
        }
        for t in tasks {
            assert!(t.await.unwrap());
        }
        let runs = runs.load(Ordering::SeqCst);
        assert!(
            (1..=3).contains(&runs),
            "50 concurrent readers ran {runs} rounds"
        );
        assert_eq!(barrier.rounds(), runs as u64);
    }

    #[tokio::test]
    async fn a_later_reader_gets_a_fresh_round() {
        let barrier = ReadBarrier::new();
        assert!(barrier.confirm(|| async { true }).await);
        // A round that ended before this reader arrived does not serve it.
        let mut ran = false;
        assert!(
            barrier
                .confirm(|| async {
                    ran = true;
                    true
                })
                .await
        );
        assert!(ran);
        assert_eq!(barrier.rounds(), 2);
    }

    #[tokio::test]
    async fn a_failed_round_serves_nobody() {
        let barrier = ReadBarrier::new();
        assert!(!barrier.confirm(|| async { false }).await);
        // The next reader runs its own round instead of trusting the failed one.
        assert!(barrier.confirm(|| async { true }).await);
        assert_eq!(barrier.rounds(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reader_arriving_mid_round_waits_for_the_next() {
        let barrier = Arc::new(ReadBarrier::new());
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
        let first = {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier
                    .confirm(|| async move {
                        let _ = started_tx.send(());
                        let _ = release_rx.await;
                        true
                    })
                    .await
            })
        };
        started_rx.await.unwrap();
        let second = {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let mut ran = false;
                let ok = barrier
                    .confirm(|| async {
                        ran = true;
                        true
                    })
                    .await;
                (ok, ran)
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        release_tx.send(()).unwrap();
        assert!(first.await.unwrap());
        assert_eq!(second.await.unwrap(), (true, true));
        assert_eq!(barrier.rounds(), 2);
    }
}
