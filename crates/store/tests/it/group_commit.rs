//! Group commit's batching, with a real pool. The writes themselves touch no table: what
//! is tested is which requests share a batch.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrator_store::group_commit::{BatchObserver, Batching, GroupCommit};
use orchestrator_testkit::database::TestDatabase;
use tokio::sync::Semaphore;

/// A group commit whose first batch is held "committing" until the test opens `gate`;
/// every batch's size is written down in `sizes` when its write starts, and in
/// `observed` when the observer hears of it.
struct Harness {
    writer: GroupCommit<u32, u32>,
    sizes: Arc<Mutex<Vec<usize>>>,
    observed: Arc<Mutex<Vec<(&'static str, usize)>>>,
    gate: Arc<Semaphore>,
    sent: Arc<AtomicUsize>,
}

impl Harness {
    fn start(db: &TestDatabase, linger: Duration) -> Harness {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(Semaphore::new(0));
        let observed = Arc::new(Mutex::new(Vec::new()));
        let observer: BatchObserver = {
            let observed = Arc::clone(&observed);
            Arc::new(move |name, writes, _elapsed| {
                observed.lock().expect("observed").push((name, writes));
            })
        };
        let writer = {
            let sizes = Arc::clone(&sizes);
            let gate = Arc::clone(&gate);
            GroupCommit::start(
                "test",
                db.pool(),
                Batching {
                    loops: 2,
                    max_batch: 64,
                    linger,
                },
                observer,
                move |_conn, batch: &[u32]| {
                    let first = {
                        let mut sizes = sizes.lock().expect("sizes");
                        sizes.push(batch.len());
                        sizes.len() == 1
                    };
                    let gate = Arc::clone(&gate);
                    Box::pin(async move {
                        if first {
                            let _open = gate.acquire().await.expect("gate");
                        }
                        Ok(batch.iter().map(|n| Ok(n * 10)).collect())
                    })
                },
            )
        };
        Harness {
            writer,
            sizes,
            observed,
            gate,
            sent: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Writes `n` from a task of its own. On the current-thread runtime the request is
    /// queued by the time `sent` counts it (the send never waits: the queue has room).
    fn spawn_write(&self, n: u32) -> tokio::task::JoinHandle<u32> {
        let writer = self.writer.clone();
        let sent = Arc::clone(&self.sent);
        tokio::spawn(async move {
            sent.fetch_add(1, Ordering::SeqCst);
            writer.write(n).await.expect("write")
        })
    }

    fn sizes(&self) -> Vec<usize> {
        self.sizes.lock().expect("sizes").clone()
    }

    /// Until `sent` requests were queued and a loop took every one of them.
    async fn wait_taken(&self, sent: usize) {
        poll_until(|| self.sent.load(Ordering::SeqCst) == sent && self.writer.queued() == 0).await;
    }

    /// Writes 0 and holds its batch committing; then writes 1, which a free loop takes
    /// at once; then 2 to 5. Returns the batch sizes once all are answered.
    async fn trickle_during_a_commit(&self) -> Vec<usize> {
        let mut writes = vec![self.spawn_write(0)];
        poll_until(|| self.sizes().len() == 1).await;
        writes.push(self.spawn_write(1));
        self.wait_taken(2).await;
        for n in 2..=5 {
            writes.push(self.spawn_write(n));
        }
        self.wait_taken(6).await;
        self.gate.add_permits(1);
        for (n, write) in (0u32..).zip(writes) {
            assert_eq!(write.await.expect("join"), n * 10, "answer of {n}");
        }
        self.sizes()
    }
}

async fn poll_until(mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached within 10 s"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_batch_waits_for_the_commit_in_progress_and_takes_what_queued_meanwhile() {
    let db = TestDatabase::create().await;
    let harness = Harness::start(&db, Duration::from_secs(60));
    // The lingering batch leaves when the held commit ends, not when its linger is up.
    let sizes = tokio::time::timeout(Duration::from_secs(30), harness.trickle_during_a_commit())
        .await
        .expect("the lingering batch left when the commit ended");
    assert_eq!(sizes, vec![1, 5]);
    let mut observed = harness.observed.lock().expect("observed").clone();
    observed.sort_unstable();
    assert_eq!(
        observed,
        vec![("test", 1), ("test", 5)],
        "the observer hears of each batch"
    );
}

#[tokio::test]
async fn without_linger_a_free_loop_commits_what_it_takes_at_once() {
    let db = TestDatabase::create().await;
    let harness = Harness::start(&db, Duration::ZERO);
    let sizes = harness.trickle_during_a_commit().await;
    assert_eq!(sizes.first(), Some(&1));
    assert_eq!(sizes.get(1), Some(&1), "1 went alone: {sizes:?}");
    assert_eq!(sizes.iter().sum::<usize>(), 6);
}

#[tokio::test]
async fn an_idle_writer_does_not_linger() {
    let db = TestDatabase::create().await;
    let harness = Harness::start(&db, Duration::from_secs(60));
    harness.gate.add_permits(1);
    // Nothing is committing: each write goes at once, far inside the linger.
    for n in 0..3 {
        let answer = tokio::time::timeout(Duration::from_secs(30), harness.spawn_write(n))
            .await
            .expect("no linger when idle")
            .expect("join");
        assert_eq!(answer, n * 10);
    }
    assert_eq!(harness.sizes(), vec![1, 1, 1]);
}
