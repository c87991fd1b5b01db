//! Reads of the task event log (`task_events`), what the API's Server-Sent Events
//! streams send. Triggers write it (see the migration `task_events`): one event per
//! status change of a task, its creation included, and one per service request that
//! reached a final status, in the transaction of the change.
//!
//! Every event has a position, [`EventPosition`]: the id of the transaction that wrote
//! it, then a sequence within it. Reads return only events whose transaction is older
//! than the oldest one still running (the *horizon*): those are settled for good, so a
//! reader that has passed a position never finds an event before it later. An event
//! therefore becomes readable once every transaction that started before its own has
//! ended: a few milliseconds on this service's short transactions.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Bool, Int4, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel::{OptionalExtension, QueryableByName};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use orchestrator_core::TenantName;
use uuid::Uuid;

use crate::StoreError;

/// The channel the log's triggers notify, once per transaction that logged events.
pub const TASK_EVENTS: &str = "orchestrator_task_events";

/// Where an event sits in the log; what a stream sends as its `id:` and takes back as
/// `Last-Event-ID`, written `TX-SEQ`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EventPosition {
    pub tx: i64,
    pub seq: i64,
}

impl fmt::Display for EventPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.tx, self.seq)
    }
}

/// A `Last-Event-ID` that is not a position this service wrote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an event id: expected TX-SEQ, two non-negative integers")]
pub struct InvalidEventId;

impl FromStr for EventPosition {
    type Err = InvalidEventId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (tx, seq) = s.trim().split_once('-').ok_or(InvalidEventId)?;
        let number = |part: &str| {
            // `i64::from_str` takes a leading `+`; an id never has one.
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(InvalidEventId);
            }
            part.parse::<i64>().map_err(|_| InvalidEventId)
        };
        Ok(EventPosition {
            tx: number(tx)?,
            seq: number(seq)?,
        })
    }
}

/// One event of the log, with what a stream shows of its task and service request.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct TaskEvent {
    #[diesel(sql_type = BigInt)]
    pub tx: i64,
    #[diesel(sql_type = BigInt)]
    pub seq: i64,
    #[diesel(sql_type = SqlUuid)]
    pub task_id: Uuid,
    #[diesel(sql_type = Text)]
    pub tenant: String,
    #[diesel(sql_type = Text)]
    pub task_name: String,
    /// `None` for a change of the task itself.
    #[diesel(sql_type = Nullable<SqlUuid>)]
    pub service_request_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<Text>)]
    pub service_name: Option<String>,
    #[diesel(sql_type = Nullable<Int4>)]
    pub item_index: Option<i32>,
    #[diesel(sql_type = Text)]
    pub status: String,
    /// `None` when the task was created.
    #[diesel(sql_type = Nullable<Text>)]
    pub previous_status: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub error_message: Option<String>,
    #[diesel(sql_type = Timestamptz)]
    pub at: DateTime<Utc>,
}

impl TaskEvent {
    pub fn position(&self) -> EventPosition {
        EventPosition {
            tx: self.tx,
            seq: self.seq,
        }
    }

    /// Whether this is a change of the task itself (not of one of its service
    /// requests).
    pub fn is_task_change(&self) -> bool {
        self.service_request_id.is_none()
    }
}

/// Which events a read returns.
#[derive(Debug, Clone, Copy)]
pub enum EventFilter<'a> {
    /// Every task's: the API replica's one feed.
    All,
    /// One task's.
    Task(Uuid),
    /// The tasks of one tenant.
    Tenant(&'a TenantName),
}

const SELECT: &str = "SELECT e.tx, e.seq, e.task_id, t.tenant, t.task_name::text AS task_name, \
       e.service_request_id, sr.service_name, sr.item_index, e.status, e.previous_status, \
       e.error_message, e.at \
     FROM task_events e \
     JOIN tasks t ON t.task_id = e.task_id \
     LEFT JOIN service_requests sr ON sr.id = e.service_request_id \
     WHERE (e.tx, e.seq) > ($1, $2) \
       AND e.tx < pg_snapshot_xmin(pg_current_snapshot())::text::bigint";

/// Up to `limit` events after `after` that `filter` selects, in order, settled ones
/// only (see the module's doc).
pub async fn after(
    conn: &mut AsyncPgConnection,
    after: EventPosition,
    filter: EventFilter<'_>,
    limit: i64,
) -> Result<Vec<TaskEvent>, StoreError> {
    let order = "ORDER BY e.tx, e.seq LIMIT $3";
    let events = match filter {
        EventFilter::All => {
            diesel::sql_query(format!("{SELECT} {order}"))
                .bind::<BigInt, _>(after.tx)
                .bind::<BigInt, _>(after.seq)
                .bind::<BigInt, _>(limit)
                .load(conn)
                .await?
        }
        EventFilter::Task(task_id) => {
            diesel::sql_query(format!("{SELECT} AND e.task_id = $4 {order}"))
                .bind::<BigInt, _>(after.tx)
                .bind::<BigInt, _>(after.seq)
                .bind::<BigInt, _>(limit)
                .bind::<SqlUuid, _>(task_id)
                .load(conn)
                .await?
        }
        EventFilter::Tenant(tenant) => {
            diesel::sql_query(format!("{SELECT} AND t.tenant = $4 {order}"))
                .bind::<BigInt, _>(after.tx)
                .bind::<BigInt, _>(after.seq)
                .bind::<BigInt, _>(limit)
                .bind::<Text, _>(tenant.as_str())
                .load(conn)
                .await?
        }
    };
    Ok(events)
}

#[derive(QueryableByName)]
struct Horizon {
    #[diesel(sql_type = BigInt)]
    horizon: i64,
    #[diesel(sql_type = Bool)]
    held: bool,
}

/// Where a reader that wants only what happens from now on starts: every event
/// readable now lies before it.
pub async fn now(conn: &mut AsyncPgConnection) -> Result<EventPosition, StoreError> {
    let row: Now = diesel::sql_query(
        "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS horizon",
    )
    .get_result(conn)
    .await?;
    Ok(EventPosition {
        tx: row.horizon,
        seq: 0,
    })
}

#[derive(QueryableByName)]
struct Now {
    #[diesel(sql_type = BigInt)]
    horizon: i64,
}

/// The position before which every event is settled, and whether committed events
/// past it wait for older transactions to end (then read again shortly).
pub async fn horizon(conn: &mut AsyncPgConnection) -> Result<(EventPosition, bool), StoreError> {
    // The newest event's transaction, read from the end of the primary key whatever
    // the log's size. `EXISTS (... WHERE tx >= horizon)` read the same, but the
    // planner cannot know the horizon and expects a third of the log past it, so it
    // scanned the table for the first one: every read of the feed went through the
    // whole log (0.6 s at a million tasks).
    let row: Horizon = diesel::sql_query(
        "SELECT h.horizon, COALESCE((SELECT max(tx) FROM task_events) >= h.horizon, false) \
           AS held \
         FROM (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS horizon) h",
    )
    .get_result(conn)
    .await?;
    Ok((
        EventPosition {
            tx: row.horizon,
            seq: 0,
        },
        row.held,
    ))
}

#[derive(QueryableByName)]
struct Latest {
    #[diesel(sql_type = BigInt)]
    tx: i64,
    #[diesel(sql_type = BigInt)]
    seq: i64,
}

/// The position of the task's latest committed event, settled or not.
pub async fn latest_of_task(
    conn: &mut AsyncPgConnection,
    task_id: Uuid,
) -> Result<Option<EventPosition>, StoreError> {
    let row: Option<Latest> = diesel::sql_query(
        "SELECT tx, seq FROM task_events WHERE task_id = $1 ORDER BY tx DESC, seq DESC LIMIT 1",
    )
    .bind::<SqlUuid, _>(task_id)
    .get_result(conn)
    .await
    .optional()?;
    Ok(row.map(|row| EventPosition {
        tx: row.tx,
        seq: row.seq,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_read_back_what_they_write_and_refuse_the_rest() {
        let position = EventPosition { tx: 7_401, seq: 12 };
        assert_eq!(position.to_string(), "7401-12");
        assert_eq!("7401-12".parse::<EventPosition>(), Ok(position));
        for bad in [
            "",
            "7401",
            "-1-2",
            "1--2",
            "+1-2",
            "1-2-3",
            "a-b",
            "1-",
            "99999999999999999999-1",
        ] {
            assert_eq!(bad.parse::<EventPosition>(), Err(InvalidEventId), "{bad:?}");
        }
        assert!(EventPosition { tx: 2, seq: 1 } > EventPosition { tx: 1, seq: 9 });
    }
}
