//! Live events: the Server-Sent Events streams of `GET /api/tasks/{id}/events` (one
//! task) and `GET /api/events` (every task of the caller's tenant).
//!
//! The events are rows of the task event log (`orchestrator_store::events`), written by
//! triggers in the transaction of each change. Each API replica has one [`EventFeed`]:
//! woken by the log's notification (one per transaction that logged events, heard on
//! the process's one listening connection), it reads the new events once, in order,
//! and hands them to every stream of the replica in memory. So a thousand open streams
//! cost one query per change, not a thousand.
//!
//! A stream first subscribes to the feed, then catches up from the database from the
//! client's `Last-Event-ID` (a task's stream without one: from the task's first event;
//! `GET /api/events` without one: from now), then sends the feed's events past what it
//! sent. Reading the backlog after subscribing leaves no gap between the two, and the
//! positions, which only grow, drop what both gave. A stream that falls behind the feed
//! catches up from the database again. Nothing is sent twice, nothing is skipped, and
//! the order is the log's.

use std::sync::Arc;
use std::time::Duration;

use actix_web::web::Bytes;
use futures::SinkExt;
use futures::channel::mpsc;
use orchestrator_core::{Status, TenantName};
use orchestrator_store::DbPool;
use orchestrator_store::events::{self, EventFilter, EventPosition, TaskEvent};
use orchestrator_store::notify::{self, Listener};
use orchestrator_telemetry::metrics::Registry;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::dto::TaskEventResponse;

/// A comment line this often keeps an idle stream from being cut by a load balancer
/// or proxy that closes quiet connections.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// Events read per query.
const BATCH: i64 = 500;
/// Events a slow stream may fall behind the feed by before it catches up from the
/// database instead.
const BUFFERED_EVENTS: usize = 8_192;
/// Frames waiting for a slow client per stream.
const FRAMES_PER_STREAM: usize = 64;
/// While committed events wait for older transactions to end, the feed looks again
/// after these waits (then every 200 ms).
const HELD_BACK_RETRY: [Duration; 4] = [
    Duration::from_millis(5),
    Duration::from_millis(20),
    Duration::from_millis(50),
    Duration::from_millis(200),
];
/// With streams open, the feed also reads this often without a notification: a safety
/// net, never the way events normally arrive.
const SAFETY_READ: Duration = Duration::from_secs(5);
/// With no stream open, the feed moves its position to "now" at most this often.
const IDLE_ADVANCE: Duration = Duration::from_secs(1);

/// This replica's feed of the event log. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EventFeed {
    events: broadcast::Sender<Arc<TaskEvent>>,
    /// Streams open now.
    streams: Gauge,
    /// Ends every stream (the API is shutting down).
    stop: CancellationToken,
}

impl EventFeed {
    /// With the gauge of open streams in `registry`; `stop` ends the feed and every
    /// stream.
    pub fn register(registry: &mut Registry, stop: CancellationToken) -> Self {
        let streams = Gauge::default();
        registry.register(
            "event_streams",
            "Server-Sent Events streams open on this replica",
            streams.clone(),
        );
        Self {
            events: broadcast::channel(BUFFERED_EVENTS).0,
            streams,
            stop,
        }
    }

    /// Reads the log whenever `listener` says it grew, until the feed is stopped. Where
    /// it starts is read here, before any stream can open: a stream reads its own
    /// backlog after subscribing, so the feed must not start past it.
    pub async fn start(
        &self,
        listener: &Listener,
        pool: DbPool,
    ) -> Result<(), orchestrator_store::StoreError> {
        let mut conn = pool.get().await?;
        let position = events::now(&mut conn).await?;
        drop(conn);
        let feed = self.clone();
        let notices = listener.subscribe();
        tokio::spawn(async move { feed.run(notices, pool, position).await });
        Ok(())
    }

    async fn run(
        self,
        mut notices: broadcast::Receiver<notify::Notice>,
        pool: DbPool,
        mut position: EventPosition,
    ) {
        let mut last_idle_advance: Option<Instant> = None;
        let mut held_back = 0usize;
        loop {
            let wait = if held_back > 0 {
                HELD_BACK_RETRY[(held_back - 1).min(HELD_BACK_RETRY.len() - 1)]
            } else {
                SAFETY_READ
            };
            tokio::select! {
                () = self.stop.cancelled() => return,
                notice = notify::next_notice(&mut notices, &self.stop) => {
                    if notice.is_none() {
                        return;
                    }
                    // One read answers every notice already here.
                    while notices.try_recv().is_ok() {}
                }
                () = tokio::time::sleep(wait) => {}
            }
            if self.events.receiver_count() == 0 {
                held_back = 0;
                if last_idle_advance.is_some_and(|at| at.elapsed() < IDLE_ADVANCE) {
                    continue;
                }
                last_idle_advance = Some(Instant::now());
                match self.advance_while_idle(&pool).await {
                    Ok(Some(now)) => position = now,
                    Ok(None) => {}
                    Err(error) => tracing::warn!(%error, "The event feed could not read the log."),
                }
                continue;
            }
            match self.read(&pool, &mut position).await {
                Ok(true) => held_back += 1,
                Ok(false) => held_back = 0,
                Err(error) => {
                    tracing::warn!(%error, "The event feed could not read the log; retrying.");
                    held_back = HELD_BACK_RETRY.len();
                }
            }
        }
    }

    /// With no stream to serve, moves on to "now" rather than keep a backlog. The
    /// position is read before the streams are counted: a stream that subscribes after
    /// the count reads its own backlog later still, so it misses nothing between.
    async fn advance_while_idle(
        &self,
        pool: &DbPool,
    ) -> Result<Option<EventPosition>, orchestrator_store::StoreError> {
        let mut conn = pool.get().await?;
        let now = events::now(&mut conn).await?;
        Ok((self.events.receiver_count() == 0).then_some(now))
    }

    /// Reads and hands out everything settled past `position`; true when committed
    /// events wait behind older transactions (read again shortly).
    async fn read(
        &self,
        pool: &DbPool,
        position: &mut EventPosition,
    ) -> Result<bool, orchestrator_store::StoreError> {
        let mut conn = pool.get().await?;
        loop {
            let batch = events::after(&mut conn, *position, EventFilter::All, BATCH).await?;
            let full = batch.len() as i64 == BATCH;
            for event in batch {
                *position = event.position();
                let _ = self.events.send(Arc::new(event));
            }
            if !full {
                break;
            }
        }
        let (_, held) = events::horizon(&mut conn).await?;
        Ok(held)
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<TaskEvent>> {
        self.events.subscribe()
    }
}

/// Whose events a stream sends.
#[derive(Debug, Clone)]
pub enum Subject {
    /// One task's; the stream ends after the event that makes it final.
    Task(Uuid),
    /// Every task of this tenant's.
    Tenant(TenantName),
}

impl Subject {
    fn filter(&self) -> EventFilter<'_> {
        match self {
            Subject::Task(task_id) => EventFilter::Task(*task_id),
            Subject::Tenant(tenant) => EventFilter::Tenant(tenant),
        }
    }

    fn selects(&self, event: &TaskEvent) -> bool {
        match self {
            Subject::Task(task_id) => event.task_id == *task_id,
            Subject::Tenant(tenant) => event.tenant == tenant.as_str(),
        }
    }

    /// Whether the stream ends after this event: its task became final.
    fn ends_with(&self, event: &TaskEvent) -> bool {
        matches!(self, Subject::Task(_))
            && event.is_task_change()
            && Status::parse(&event.status).is_ok_and(Status::is_terminal)
    }
}

/// The frames of one stream, from the events after `after`: what the response body
/// sends. The stream ends when its task is final, when the API shuts down, when the
/// client goes away, or when the database fails it (the client reconnects with its
/// `Last-Event-ID` and loses nothing).
pub fn open(
    feed: &EventFeed,
    pool: DbPool,
    subject: Subject,
    after: EventPosition,
) -> mpsc::Receiver<Result<Bytes, std::convert::Infallible>> {
    let (out, frames) = mpsc::channel(FRAMES_PER_STREAM);
    // Subscribed before the backlog is read: see the module's doc.
    let live = feed.subscribe();
    let feed = feed.clone();
    tokio::spawn(async move {
        feed.streams.inc();
        let stream = Stream {
            pool,
            subject,
            after,
            out,
        };
        tokio::select! {
            result = stream.pump(live) => {
                if let Err(error) = result {
                    tracing::warn!(%error, "An event stream ended early; its client resumes it.");
                }
            }
            () = feed.stop.cancelled() => {}
        }
        feed.streams.dec();
    });
    frames
}

struct Stream {
    pool: DbPool,
    subject: Subject,
    /// The last event sent (or where the stream starts).
    after: EventPosition,
    out: mpsc::Sender<Result<Bytes, std::convert::Infallible>>,
}

/// Why a stream stopped sending before its end.
#[derive(Debug, thiserror::Error)]
enum StreamEnd {
    #[error("the client went away")]
    ClientGone,
    #[error(transparent)]
    Store(#[from] orchestrator_store::StoreError),
}

impl Stream {
    async fn pump(
        mut self,
        mut live: broadcast::Receiver<Arc<TaskEvent>>,
    ) -> Result<(), StreamEnd> {
        let result = async {
            // Sent at once, so the client (and any proxy) sees the stream open.
            self.send(Bytes::from_static(b": connected\n\n")).await?;
            self.follow(&mut live).await
        }
        .await;
        match result {
            // Nobody left to tell: a normal end.
            Err(StreamEnd::ClientGone) => Ok(()),
            other => other,
        }
    }

    async fn follow(
        &mut self,
        live: &mut broadcast::Receiver<Arc<TaskEvent>>,
    ) -> Result<(), StreamEnd> {
        'catch_up: loop {
            if self.catch_up().await? {
                return Ok(());
            }
            let mut heartbeat = tokio::time::interval(HEARTBEAT);
            heartbeat.reset();
            loop {
                tokio::select! {
                    _ = heartbeat.tick() => {
                        self.send(Bytes::from_static(b": keep-alive\n\n")).await?;
                    }
                    received = live.recv() => match received {
                        Ok(event) => {
                            if self.subject.selects(&event) && event.position() > self.after {
                                self.send_event(&event).await?;
                                if self.subject.ends_with(&event) {
                                    self.drain(live).await?;
                                    return Ok(());
                                }
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => continue 'catch_up,
                        Err(broadcast::error::RecvError::Closed) => return Ok(()),
                    }
                }
            }
        }
    }

    /// Sends what the log holds past the last event sent; true when the stream is over
    /// (its task is final).
    async fn catch_up(&mut self) -> Result<bool, StreamEnd> {
        loop {
            let batch = {
                let mut conn = self
                    .pool
                    .get()
                    .await
                    .map_err(orchestrator_store::StoreError::from)?;
                events::after(&mut conn, self.after, self.subject.filter(), BATCH).await?
            };
            let mut ended = false;
            for event in &batch {
                self.send_event(event).await?;
                if event.is_task_change() {
                    ended = self.subject.ends_with(event);
                }
            }
            if (batch.len() as i64) < BATCH {
                return Ok(ended);
            }
        }
    }

    /// The events of the final transaction that the feed already handed over: a
    /// task's final change can come before its service requests' in one transaction.
    async fn drain(
        &mut self,
        live: &mut broadcast::Receiver<Arc<TaskEvent>>,
    ) -> Result<(), StreamEnd> {
        while let Ok(event) = live.try_recv() {
            if self.subject.selects(&event) && event.position() > self.after {
                self.send_event(&event).await?;
            }
        }
        Ok(())
    }

    async fn send_event(&mut self, event: &TaskEvent) -> Result<(), StreamEnd> {
        self.after = event.position();
        self.send(frame(event)).await
    }

    async fn send(&mut self, frame: Bytes) -> Result<(), StreamEnd> {
        self.out
            .send(Ok(frame))
            .await
            .map_err(|_| StreamEnd::ClientGone)
    }
}

/// One event as Server-Sent Events put it: `id:`, `event:` (`task` or
/// `service_request`), then the JSON on one `data:` line (compact JSON escapes every
/// line break).
pub fn frame(event: &TaskEvent) -> Bytes {
    let kind = if event.is_task_change() {
        "task"
    } else {
        "service_request"
    };
    let data =
        serde_json::to_string(&TaskEventResponse::from(event)).unwrap_or_else(|_| "{}".to_owned());
    Bytes::from(format!(
        "id: {}\nevent: {kind}\ndata: {data}\n\n",
        event.position()
    ))
}
