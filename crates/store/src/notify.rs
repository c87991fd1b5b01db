//! Telling every process that tasks changed: PostgreSQL `NOTIFY`, sent inside the
//! transaction that changes them (so it is delivered when, and only if, it commits),
//! and one [`Listener`] per process, a dedicated connection outside the pool that
//! `LISTEN`s and hands each notification to every subscriber in the process.
//!
//! A notification names task ids, as many as fit in PostgreSQL's 8,000-byte payload;
//! more are sent as several. Notifications sent while a listener is disconnected are
//! lost, so after every (re)connection, the first included, the listener tells its
//! subscribers to [`Notice::Resync`]: read again what they are waiting for.

use std::sync::Arc;
use std::time::Duration;

use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::StoreError;
use crate::pool::PgConnector;

/// Tasks stopped from outside their run (cancelled, or failed at their deadline): the
/// process running one drops its calls.
pub const TASKS_STOPPED: &str = "orchestrator_tasks_stopped";

/// Tasks that became final by their run (settled `COMPLETED` or `FAILED`, or failed at
/// start): whoever waits for them answers.
pub const TASKS_FINISHED: &str = "orchestrator_tasks_finished";

/// PostgreSQL refuses payloads of 8,000 bytes or more; ids are 36 bytes and a comma.
const MAX_PAYLOAD_BYTES: usize = 7_900;
/// Notices a slow subscriber may fall behind by before it is told to resync.
const BUFFERED_NOTICES: usize = 4_096;
/// How often an idle listening connection is checked (a query with a timeout), so that
/// a connection that died without a word is noticed.
const PING_INTERVAL: Duration = Duration::from_secs(15);
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// Waits between attempts to connect again.
const RECONNECT_BACKOFF: [Duration; 4] = [
    Duration::from_millis(100),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// Sends `channel` the task ids, in as few notifications as fit. Call inside the
/// transaction that changed the tasks.
pub async fn send(
    conn: &mut AsyncPgConnection,
    channel: &str,
    task_ids: &[Uuid],
) -> Result<(), StoreError> {
    for payload in payloads(task_ids) {
        crate::prepared::prepared("SELECT pg_notify($1, $2)")
            .bind::<Text, _>(channel)
            .bind::<Text, _>(payload)
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// [`send`] on [`TASKS_STOPPED`].
pub async fn tasks_stopped(
    conn: &mut AsyncPgConnection,
    task_ids: &[Uuid],
) -> Result<(), StoreError> {
    send(conn, TASKS_STOPPED, task_ids).await
}

/// [`send`] on [`TASKS_FINISHED`].
pub async fn tasks_finished(
    conn: &mut AsyncPgConnection,
    task_ids: &[Uuid],
) -> Result<(), StoreError> {
    send(conn, TASKS_FINISHED, task_ids).await
}

/// The ids as comma-separated payloads, each under PostgreSQL's limit.
pub fn payloads(task_ids: &[Uuid]) -> Vec<String> {
    let mut payloads = Vec::new();
    let mut current = String::new();
    for id in task_ids {
        if !current.is_empty() && current.len() + 37 > MAX_PAYLOAD_BYTES {
            payloads.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(',');
        }
        current.push_str(&id.hyphenated().to_string());
    }
    if !current.is_empty() {
        payloads.push(current);
    }
    payloads
}

/// The task ids of a payload; anything that is not one is skipped.
pub fn parse_payload(payload: &str) -> Vec<Uuid> {
    payload
        .split(',')
        .filter_map(|id| Uuid::parse_str(id.trim()).ok())
        .collect()
}

/// What a subscriber hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// These tasks changed, as `channel` says.
    Tasks {
        channel: Arc<str>,
        task_ids: Arc<[Uuid]>,
    },
    /// Notifications may have been missed (the listener (re)connected, or this
    /// subscriber fell behind): read again what you wait for.
    Resync,
}

/// One process's listening connection. Cheap to clone; the connection closes when
/// `stop` (given to [`Listener::start`]) is cancelled.
#[derive(Debug, Clone)]
pub struct Listener {
    notices: broadcast::Sender<Notice>,
}

impl Listener {
    /// Connects (and keeps connecting) with `connector` and listens on `channels`.
    pub fn start(
        connector: PgConnector,
        channels: &'static [&'static str],
        stop: CancellationToken,
    ) -> Listener {
        let (notices, _) = broadcast::channel(BUFFERED_NOTICES);
        let sender = notices.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = listen_forever(&connector, channels, &sender) => {}
                () = stop.cancelled() => {}
            }
        });
        Listener { notices }
    }

    /// Notices from now on. A receiver that falls more than a few thousand behind gets
    /// `RecvError::Lagged`: treat it as [`Notice::Resync`].
    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.notices.subscribe()
    }
}

/// The next notice for a subscriber, or `None` once `stop` is cancelled (or the
/// listener is gone). Falling behind comes as [`Notice::Resync`].
pub async fn next_notice(
    notices: &mut broadcast::Receiver<Notice>,
    stop: &CancellationToken,
) -> Option<Notice> {
    tokio::select! {
        () = stop.cancelled() => None,
        notice = notices.recv() => match notice {
            Ok(notice) => Some(notice),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(Notice::Resync),
            Err(broadcast::error::RecvError::Closed) => None,
        },
    }
}

async fn listen_forever(
    connector: &PgConnector,
    channels: &[&str],
    notices: &broadcast::Sender<Notice>,
) {
    let mut failures = 0usize;
    loop {
        let mut listening = false;
        let error = listen_once(connector, channels, notices, &mut listening).await;
        if listening {
            failures = 0;
        }
        let wait = RECONNECT_BACKOFF[failures.min(RECONNECT_BACKOFF.len() - 1)];
        failures += 1;
        tracing::warn!(
            %error,
            retry_in_ms = wait.as_millis(),
            "The notification listener lost its connection; reconnecting."
        );
        tokio::time::sleep(wait).await;
    }
}

/// One connection's life: LISTEN, announce a resync, forward notifications until the
/// connection fails, and say why. `listening` turns true once LISTEN succeeded.
async fn listen_once(
    connector: &PgConnector,
    channels: &[&str],
    notices: &broadcast::Sender<Notice>,
    listening: &mut bool,
) -> String {
    match listen_until_failure(connector, channels, notices, listening).await {
        Ok(never) => match never {},
        Err(error) => error,
    }
}

async fn listen_until_failure(
    connector: &PgConnector,
    channels: &[&str],
    notices: &broadcast::Sender<Notice>,
    listening: &mut bool,
) -> Result<std::convert::Infallible, String> {
    let (client, mut messages) = connector
        .connect_for_notifications()
        .await
        .map_err(|e| orchestrator_stdx::error_chain(&e))?;
    let statement: String = channels
        .iter()
        .map(|channel| format!("LISTEN \"{channel}\";"))
        .collect();
    client
        .batch_execute(&statement)
        .await
        .map_err(|e| orchestrator_stdx::error_chain(&e))?;
    *listening = true;
    tracing::debug!(?channels, "Listening for task notifications.");
    // Anything sent while we were not listening is lost: subscribers read again.
    let _ = notices.send(Notice::Resync);
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.reset();
    loop {
        tokio::select! {
            message = messages.recv() => match message {
                Some(Ok(notification)) => {
                    let task_ids: Arc<[Uuid]> = parse_payload(notification.payload()).into();
                    let _ = notices.send(Notice::Tasks {
                        channel: notification.channel().into(),
                        task_ids,
                    });
                }
                Some(Err(error)) => return Err(orchestrator_stdx::error_chain(&error)),
                None => return Err("the connection closed".to_owned()),
            },
            _ = ping.tick() => {
                match tokio::time::timeout(PING_TIMEOUT, client.simple_query("SELECT 1")).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => return Err(orchestrator_stdx::error_chain(&error)),
                    Err(_) => return Err("the connection did not answer a ping".to_owned()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_stay_under_the_limit_and_keep_every_id() {
        let ids: Vec<Uuid> = (0..1_000).map(|_| Uuid::new_v4()).collect();
        let payloads = payloads(&ids);
        assert!(payloads.len() > 1);
        assert!(payloads.iter().all(|p| p.len() < 8_000));
        let parsed: Vec<Uuid> = payloads.iter().flat_map(|p| parse_payload(p)).collect();
        assert_eq!(parsed, ids);
        assert!(super::payloads(&[]).is_empty());
    }

    #[test]
    fn parse_skips_what_is_not_an_id() {
        let id = Uuid::new_v4();
        assert_eq!(parse_payload(&format!("nonsense,{id},")), vec![id]);
    }
}
