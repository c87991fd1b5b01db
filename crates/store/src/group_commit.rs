//! Group commit: many concurrent callers' writes of one kind go to the database
//! together, one transaction for everything that queued up while the previous one was
//! committing. Under load a commit (and its WAL flush) carries many writes; at low
//! load a batch is a single write and nothing waits for company. Each caller is
//! answered only once the commit holding its write is done, so durability is the
//! same as writing alone.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use diesel_async::AsyncPgConnection;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::{DbPool, StoreError};

/// Writes waiting for a loop, at most; a full queue makes callers wait (back-pressure).
const QUEUE: usize = 8192;

/// The future a batch write returns: one answer per request, in order, or an error of
/// the whole batch.
pub type BatchFuture<'c, Resp> =
    Pin<Box<dyn Future<Output = Result<Vec<Result<Resp, StoreError>>, StoreError>> + Send + 'c>>;

type Reply<Resp> = oneshot::Sender<Result<Resp, StoreError>>;

/// The queue the loops share: whichever loop is free takes what has queued up.
type SharedQueue<Req, Resp> = Arc<Mutex<mpsc::Receiver<(Req, Reply<Resp>)>>>;

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
    /// Starts `loops` writer loops (more than one keeps commits overlapping: one batch
    /// fills while another waits for its flush), each writing at most `max_batch`
    /// requests at once with `write`, which must run them in one transaction.
    ///
    /// When a batch fails as a whole, an unreachable database fails every request in
    /// it; any other error (one request the database refuses, a deadlock) makes the
    /// loop write the requests one by one, so the others are not refused with it.
    pub fn start<W>(
        name: &'static str,
        pool: DbPool,
        loops: usize,
        max_batch: usize,
        write: W,
    ) -> Self
    where
        W: for<'c> Fn(&'c mut AsyncPgConnection, &'c [Req]) -> BatchFuture<'c, Resp>
            + Send
            + Sync
            + 'static,
    {
        let (queue, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let write = Arc::new(write);
        for _ in 0..loops.max(1) {
            tokio::spawn(write_loop(
                name,
                pool.clone(),
                Arc::clone(&rx),
                max_batch.max(1),
                Arc::clone(&write),
            ));
        }
        Self { name, queue }
    }

    /// Queues the write and returns its answer once its batch has committed.
    pub async fn write(&self, request: Req) -> Result<Resp, StoreError> {
        let stopped = || StoreError::Unavailable(format!("the {} writer has stopped", self.name));
        let (reply, answer) = oneshot::channel();
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
    queue: SharedQueue<Req, Resp>,
    max_batch: usize,
    write: Arc<W>,
) where
    W: for<'c> Fn(&'c mut AsyncPgConnection, &'c [Req]) -> BatchFuture<'c, Resp>,
{
    let mut batch = Vec::with_capacity(max_batch);
    loop {
        {
            // One loop takes what has queued up; the others wait their turn here.
            let mut queue = queue.lock().await;
            if queue.recv_many(&mut batch, max_batch).await == 0 {
                return;
            }
        }
        let (requests, replies): (Vec<Req>, Vec<Reply<Resp>>) = batch.drain(..).unzip();
        match run(&pool, &*write, &requests).await {
            Ok(answers) => {
                for (reply, answer) in replies.into_iter().zip(answers) {
                    // A caller that went away (cancelled) needs no answer.
                    let _ = reply.send(answer);
                }
            }
            Err(error) if error.is_unavailable() || requests.len() == 1 => {
                let reason = error_chain(&error);
                tracing::warn!(writer = name, writes = requests.len(), error = %reason, "Batch write failed.");
                let mut replies = replies.into_iter();
                if let Some(first) = replies.next() {
                    let _ = first.send(Err(error));
                }
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Unavailable(reason.clone())));
                }
            }
            Err(error) => {
                tracing::warn!(writer = name, writes = requests.len(), error = %error_chain(&error), "Batch write failed; writing one by one.");
                for (request, reply) in requests.iter().zip(replies) {
                    let answer = run(&pool, &*write, std::slice::from_ref(request))
                        .await
                        .and_then(|mut answers| {
                            answers.pop().unwrap_or_else(|| {
                                Err(StoreError::Corrupt("a batch write answered nothing".into()))
                            })
                        });
                    let _ = reply.send(answer);
                }
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

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
