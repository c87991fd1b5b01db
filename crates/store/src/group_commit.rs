//! Group commit: many concurrent callers' writes of one kind go to the database
//! together, one transaction for everything that queued up while the previous one was
//! committing. Under load a commit (and its WAL flush) carries many writes; at low
//! load a batch is a single write and nothing waits for company. Each caller is
//! answered only once the commit holding its write is done, so durability is the
//! same as writing alone.
//!
//! At an even load between those two, requests trickle in one or two per commit time,
//! and with several loops each would take its own small batch and its own commit.
//! A batch that is not full therefore waits, up to [`Batching::linger`], for the
//! batch another loop is committing: like PostgreSQL's `commit_delay`, it gathers
//! company only when there is a commit to wait for, so an idle system adds no delay.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use diesel_async::AsyncPgConnection;
use orchestrator_stdx::error_chain;
use orchestrator_telemetry::trace::{ExportedSpan, KeyValue, SpanKind, TraceContext};
use tokio::sync::{Mutex, MutexGuard, Notify, mpsc, oneshot};

use crate::{DbPool, StoreError};

/// Writes waiting for a loop, at most; a full queue makes callers wait (back-pressure).
const QUEUE: usize = 8192;

/// The future a batch write returns: one answer per request, in order, or an error of
/// the whole batch.
pub type BatchFuture<'c, Resp> =
    Pin<Box<dyn Future<Output = Result<Vec<Result<Resp, StoreError>>, StoreError>> + Send + 'c>>;

/// Where a write's answer goes, and the span it was asked from (while spans are
/// exported: the batch's span links to it).
struct Reply<Resp> {
    answer: oneshot::Sender<Result<Resp, StoreError>>,
    caller: Option<TraceContext>,
}

impl<Resp> Reply<Resp> {
    fn send(self, answer: Result<Resp, StoreError>) {
        // A caller that went away (cancelled) needs no answer.
        let _ = self.answer.send(answer);
    }
}

type Queue<Req, Resp> = mpsc::Receiver<(Req, Reply<Resp>)>;

/// Told about every batch written: the writer's name, how many writes the batch
/// carried and how long it took (taking a connection, the statements, the commit).
/// For metrics; it runs on the writer loop, so it must be quick.
pub type BatchObserver = Arc<dyn Fn(&'static str, usize, Duration) + Send + Sync>;

/// How a [`GroupCommit`] forms its batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// Writer loops. More than one keeps commits overlapping when one is slow (a
    /// batch may still start while another waits for its flush once `linger` is up).
    pub loops: usize,
    /// Most requests in one transaction.
    pub max_batch: usize,
    /// How long a batch that is not full waits for more requests while another loop's
    /// batch is committing; it goes as soon as that commit ends. Zero: never waits.
    pub linger: Duration,
}

/// What the loops share: whichever loop is free takes what has queued up; the rest
/// is how a loop knows another one is committing.
struct Shared<Req, Resp> {
    queue: Mutex<Queue<Req, Resp>>,
    committing: AtomicUsize,
    committed: Notify,
}

/// Cheap to clone. Its loops stop once every clone is gone.
pub struct GroupCommit<Req, Resp> {
    name: &'static str,
    queue: mpsc::Sender<(Req, Reply<Resp>)>,
}

impl<Req, Resp> Clone for GroupCommit<Req, Resp> {
    fn clone(&self) -> Self {
        Self {
            name: self.name,
            queue: self.queue.clone(),
        }
    }
}

impl<Req, Resp> std::fmt::Debug for GroupCommit<Req, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<Req, Resp> GroupCommit<Req, Resp>
where
    Req: Send + Sync + 'static,
    Resp: Send + 'static,
{
    /// Starts the writer loops of `batching`, each writing its batches with `write`,
    /// which must run them in one transaction, and telling `observer` about each.
    ///
    /// When a batch fails as a whole, an unreachable database fails every request in
    /// it; any other error (one request the database refuses, a deadlock) makes the
    /// loop write the requests one by one, so the others are not refused with it.
    pub fn start<W>(
        name: &'static str,
        pool: DbPool,
        batching: Batching,
        observer: BatchObserver,
        write: W,
    ) -> Self
    where
        W: for<'c> Fn(&'c mut AsyncPgConnection, &'c [Req]) -> BatchFuture<'c, Resp>
            + Send
            + Sync
            + 'static,
    {
        let (queue, rx) = mpsc::channel(QUEUE);
        let shared = Arc::new(Shared {
            queue: Mutex::new(rx),
            committing: AtomicUsize::new(0),
            committed: Notify::new(),
        });
        let write = Arc::new(write);
        let batching = Batching {
            loops: batching.loops.max(1),
            max_batch: batching.max_batch.max(1),
            ..batching
        };
        for _ in 0..batching.loops {
            tokio::spawn(write_loop(
                name,
                pool.clone(),
                Arc::clone(&shared),
                batching,
                Arc::clone(&observer),
                Arc::clone(&write),
            ));
        }
        Self { name, queue }
    }

    /// Requests queued and not yet taken into a batch.
    pub fn queued(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    /// Queues the write and returns its answer once its batch has committed.
    pub async fn write(&self, request: Req) -> Result<Resp, StoreError> {
        let stopped = || StoreError::Unavailable(format!("the {} writer has stopped", self.name));
        let (reply, answer) = oneshot::channel();
        let reply = Reply {
            answer: reply,
            caller: TraceContext::current(),
        };
        self.queue
            .send((request, reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn write_loop<Req, Resp, W>(
    name: &'static str,
    pool: DbPool,
    shared: Arc<Shared<Req, Resp>>,
    batching: Batching,
    observer: BatchObserver,
    write: Arc<W>,
) where
    W: for<'c> Fn(&'c mut AsyncPgConnection, &'c [Req]) -> BatchFuture<'c, Resp>,
{
    let mut batch = Vec::with_capacity(batching.max_batch);
    loop {
        {
            // One loop takes what has queued up; the others wait their turn here.
            let mut queue = shared.queue.lock().await;
            if queue.recv_many(&mut batch, batching.max_batch).await == 0 {
                return;
            }
            gather_while_committing(&shared, &mut queue, &mut batch, batching).await;
        }
        let (requests, replies): (Vec<Req>, Vec<Reply<Resp>>) = batch.drain(..).unzip();
        let writes = requests.len();
        let started = std::time::Instant::now();
        shared.committing.fetch_add(1, Ordering::SeqCst);
        // Observed before the callers hear back, so that what a caller does next (read
        // the metrics, say) sees its batch counted.
        let observe = || observer(name, writes, started.elapsed());
        let span = batch_span(name, writes, &replies);
        write_batch(name, &pool, &*write, requests, replies, observe).await;
        span.end();
        shared.committing.fetch_sub(1, Ordering::SeqCst);
        shared.committed.notify_waiters();
    }
}

/// The span of one batch while spans are exported and some of its writes were asked
/// from a span: one batch serves many tasks, so it is linked to each caller's span
/// rather than the child of one. None otherwise.
fn batch_span<Resp>(name: &'static str, writes: usize, replies: &[Reply<Resp>]) -> ExportedSpan {
    if replies.iter().all(|reply| reply.caller.is_none()) {
        return ExportedSpan::none();
    }
    ExportedSpan::start_linked(
        format!("{name} batch"),
        SpanKind::Internal,
        None,
        || {
            replies
                .iter()
                .filter_map(|reply| reply.caller.clone())
                .collect()
        },
        || {
            vec![
                KeyValue::new("db.system.name", "postgresql"),
                KeyValue::new(
                    "db.operation.batch.size",
                    i64::try_from(writes).unwrap_or(i64::MAX),
                ),
            ]
        },
    )
}

/// Adds requests to a batch that is not full while another loop's batch commits, for
/// at most `batching.linger`; returns when that commit ends.
async fn gather_while_committing<Req, Resp>(
    shared: &Shared<Req, Resp>,
    queue: &mut MutexGuard<'_, Queue<Req, Resp>>,
    batch: &mut Vec<(Req, Reply<Resp>)>,
    batching: Batching,
) {
    if batching.linger.is_zero() {
        return;
    }
    let deadline = tokio::time::Instant::now() + batching.linger;
    while batch.len() < batching.max_batch {
        // Registered before the check, so a commit ending in between still wakes us.
        let committed = shared.committed.notified();
        tokio::pin!(committed);
        committed.as_mut().enable();
        if shared.committing.load(Ordering::SeqCst) == 0 {
            return;
        }
        let room = batching.max_batch - batch.len();
        tokio::select! {
            // What has already queued goes in before the batch leaves. `recv_many` is
            // cancel safe: nothing is lost when another branch wins.
            biased;
            received = queue.recv_many(batch, room) => if received == 0 { return },
            () = &mut committed => return,
            () = tokio::time::sleep_until(deadline) => return,
        }
    }
}

/// Writes one batch, calls `observe` once it is written (or failed), then answers its
/// callers.
async fn write_batch<Req, Resp, W>(
    name: &'static str,
    pool: &DbPool,
    write: &W,
    requests: Vec<Req>,
    replies: Vec<Reply<Resp>>,
    observe: impl FnOnce(),
) where
    W: for<'c> Fn(&'c mut AsyncPgConnection, &'c [Req]) -> BatchFuture<'c, Resp>,
{
    match run(pool, write, &requests).await {
        Ok(answers) => {
            observe();
            for (reply, answer) in replies.into_iter().zip(answers) {
                reply.send(answer);
            }
        }
        Err(error) if error.is_unavailable() || requests.len() == 1 => {
            let reason = error_chain(&error);
            tracing::warn!(writer = name, writes = requests.len(), error = %reason, "Batch write failed.");
            observe();
            let mut replies = replies.into_iter();
            if let Some(first) = replies.next() {
                first.send(Err(error));
            }
            for reply in replies {
                reply.send(Err(StoreError::Unavailable(reason.clone())));
            }
        }
        Err(error) => {
            tracing::warn!(writer = name, writes = requests.len(), error = %error_chain(&error), "Batch write failed; writing one by one.");
            let mut answers = Vec::with_capacity(requests.len());
            for request in &requests {
                answers.push(
                    run(pool, write, std::slice::from_ref(request))
                        .await
                        .and_then(|mut answers| {
                            answers.pop().unwrap_or_else(|| {
                                Err(StoreError::Corrupt("a batch write answered nothing".into()))
                            })
                        }),
                );
            }
            observe();
            for (reply, answer) in replies.into_iter().zip(answers) {
                reply.send(answer);
            }
        }
    }
}

async fn run<Req, Resp, W>(
    pool: &DbPool,
    write: &W,
    requests: &[Req],
) -> Result<Vec<Result<Resp, StoreError>>, StoreError>
where
    W: for<'c> Fn(&'c mut AsyncPgConnection, &'c [Req]) -> BatchFuture<'c, Resp>,
{
    let mut conn = pool.get().await?;
    let answers = write(&mut conn, requests).await?;
    if answers.len() != requests.len() {
        return Err(StoreError::Corrupt(format!(
            "a batch write answered {} of {} requests",
            answers.len(),
            requests.len()
        )));
    }
    Ok(answers)
}
