//! Queries behind the dashboard (`/ui`) that stay fast with millions of tasks: counts
//! per status, throughput per minute, and search by task id or name, each of one
//! tenant's tasks.
//!
//! Each reads a bounded amount of data whatever the size of `tasks`:
//! - counts sum the short delta log `task_status_counts` kept by triggers (see the
//!   migration `2026-12-01-000001_dashboard`), never `tasks` itself;
//! - throughput walks the recent end of the tenant's part of
//!   `tasks_tenant_newest_first_idx` (submitted) and `tasks_tenant_finished_at_idx`
//!   (finished), one range per minute;
//! - search finds a whole id through the primary key's unique index, and anything else
//!   (an id prefix, part of a name) by walking the newest-first index in bounded slices
//!   under a time budget, with the same keyset cursor as the task list to continue.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Integer, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use orchestrator_core::{Status, TenantName};
use uuid::Uuid;

use crate::cursor::keyset;
use crate::schema::tasks;
use crate::{StoreError, TaskCursor, TaskRow};

/// How many tasks have each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusCounts {
    pub pending: i64,
    pub in_progress: i64,
    pub completed: i64,
    pub failed: i64,
    pub cancelled: i64,
}

impl StatusCounts {
    pub fn get(&self, status: Status) -> i64 {
        match status {
            Status::Pending => self.pending,
            Status::InProgress => self.in_progress,
            Status::Completed => self.completed,
            Status::Failed => self.failed,
            Status::Cancelled => self.cancelled,
        }
    }

    pub fn total(&self) -> i64 {
        self.pending + self.in_progress + self.completed + self.failed + self.cancelled
    }

    fn slot(&mut self, status: Status) -> &mut i64 {
        match status {
            Status::Pending => &mut self.pending,
            Status::InProgress => &mut self.in_progress,
            Status::Completed => &mut self.completed,
            Status::Failed => &mut self.failed,
            Status::Cancelled => &mut self.cancelled,
        }
    }
}

#[derive(QueryableByName)]
struct CountRow {
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = BigInt)]
    count: i64,
}

/// Exact counts per status of a tenant's tasks, as of the statement's snapshot: the sum
/// of the delta log, a few hundred rows however many tasks there are.
pub async fn status_counts(
    conn: &mut AsyncPgConnection,
    tenant: &TenantName,
) -> Result<StatusCounts, StoreError> {
    let rows: Vec<CountRow> = diesel::sql_query(
        "SELECT status, sum(delta)::bigint AS count FROM task_status_counts \
         WHERE tenant = $1 GROUP BY status",
    )
    .bind::<Text, _>(tenant.as_str())
    .load(conn)
    .await?;
    let mut counts = StatusCounts::default();
    for row in rows {
        let status = Status::parse(&row.status).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        *counts.slot(status) = row.count;
    }
    Ok(counts)
}

/// Tasks submitted and finished during one minute.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct ThroughputBucket {
    /// The minute's first instant (UTC, on the database's clock).
    #[diesel(sql_type = Timestamptz)]
    pub start: DateTime<Utc>,
    /// Tasks created during the minute.
    #[diesel(sql_type = BigInt)]
    pub submitted: i64,
    /// Tasks that are `COMPLETED` and finished (last updated) during the minute.
    #[diesel(sql_type = BigInt)]
    pub completed: i64,
    /// The same for `FAILED`.
    #[diesel(sql_type = BigInt)]
    pub failed: i64,
}

/// The last `minutes` whole minutes, the current one included, oldest first; every
/// minute is present, with zeros when nothing happened.
///
/// One index range per minute (a correlated subquery each), so the plan does not depend
/// on how the planner estimates "the last N minutes" and the work grows with the tasks
/// of the window only.
pub async fn throughput(
    conn: &mut AsyncPgConnection,
    tenant: &TenantName,
    minutes: i32,
) -> Result<Vec<ThroughputBucket>, StoreError> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        // The planner cannot size the series and overestimates the plan, enough to
        // have it compiled first (JIT), which takes far longer than running it.
        diesel::sql_query("SET LOCAL jit = off")
            .execute(conn)
            .await?;
        Ok(diesel::sql_query(THROUGHPUT_SQL)
            .bind::<Integer, _>(minutes)
            .bind::<Text, _>(tenant.as_str())
            .load(conn)
            .await?)
    })
    .await
}

const THROUGHPUT_SQL: &str = "
SELECT b.start,
       (SELECT count(*) FROM tasks t
         WHERE t.tenant = $2
           AND t.created_at >= b.start
           AND t.created_at < b.start + interval '1 minute') AS submitted,
       f.completed,
       f.failed
FROM generate_series(date_trunc('minute', now()) - make_interval(mins => $1 - 1),
                     date_trunc('minute', now()),
                     interval '1 minute') AS b(start)
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE t.status = 'COMPLETED') AS completed,
           count(*) FILTER (WHERE t.status = 'FAILED') AS failed
    FROM tasks t
    WHERE t.tenant = $2
      AND t.status IN ('COMPLETED', 'FAILED')
      AND t.updated_at >= b.start
      AND t.updated_at < b.start + interval '1 minute'
) AS f
ORDER BY b.start";

/// What a search looks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskSearch {
    /// A whole task id.
    Id(Uuid),
    /// Text that could be the start of an id (hexadecimal digits, maybe with dashes) or
    /// part of a name: either matches.
    IdPrefixOrName {
        low: Uuid,
        high: Uuid,
        name_pattern: String,
    },
    /// Part of a name, case-insensitive.
    Name { name_pattern: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSearch {
    #[error("must be a task id or at least {MIN_SEARCH_CHARS} characters of a name")]
    TooShort,
    #[error("must be at most {MAX_SEARCH_CHARS} characters")]
    TooLong,
}

/// Shorter text cannot use the trigram index (a trigram is three characters).
pub const MIN_SEARCH_CHARS: usize = 3;
/// Names are at most 255 characters.
pub const MAX_SEARCH_CHARS: usize = 255;
/// An id prefix needs this many hexadecimal digits to be taken as one (4 digits narrow
/// a million tasks to about 15).
const MIN_ID_PREFIX_DIGITS: usize = 4;

impl TaskSearch {
    /// Reads what a user typed: surrounding white space is ignored.
    pub fn parse(text: &str) -> Result<Self, InvalidSearch> {
        let text = text.trim();
        if let Ok(id) = Uuid::try_parse(text) {
            return Ok(TaskSearch::Id(id));
        }
        let chars = text.chars().count();
        if chars < MIN_SEARCH_CHARS {
            return Err(InvalidSearch::TooShort);
        }
        if chars > MAX_SEARCH_CHARS {
            return Err(InvalidSearch::TooLong);
        }
        let name_pattern = format!("%{}%", escape_like(text));
        let digits: String = text.chars().filter(|c| *c != '-').collect();
        let looks_like_id = text.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
            && (MIN_ID_PREFIX_DIGITS..32).contains(&digits.len());
        if looks_like_id {
            let bound = |fill: char| {
                let mut hex = digits.to_ascii_lowercase();
                hex.extend(std::iter::repeat_n(fill, 32 - digits.len()));
                Uuid::try_parse(&hex)
            };
            if let (Ok(low), Ok(high)) = (bound('0'), bound('f')) {
                return Ok(TaskSearch::IdPrefixOrName {
                    low,
                    high,
                    name_pattern,
                });
            }
        }
        Ok(TaskSearch::Name { name_pattern })
    }
}

/// Escapes LIKE's wildcards so the text matches literally (backslash is the default
/// escape character).
fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// The time window a search looks in: tasks created at or after `since` and before
/// `until` (either open).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SearchWindow {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// One search request.
#[derive(Debug, Clone, Copy)]
pub struct SearchRequest<'a> {
    pub tenant: &'a TenantName,
    pub search: &'a TaskSearch,
    pub status: Option<Status>,
    pub window: SearchWindow,
    /// Continue after this position (a previous answer's).
    pub cursor: Option<TaskCursor>,
    /// Page size.
    pub limit: i64,
    /// How long to look before answering with what was found so far.
    pub budget: Duration,
}

/// What a search found, and how far back it looked.
#[derive(Debug)]
pub struct SearchPage {
    /// Matches, newest first: up to `limit + 1` (one more than the page tells the caller
    /// that the page is full and another may follow).
    pub rows: Vec<TaskRow>,
    /// Set when the time budget ran out before the page was full and before the oldest
    /// task of the window: every task from the cursor back to this position (inclusive)
    /// was searched, and a search continued from here finds the rest.
    pub stopped_at: Option<TaskCursor>,
}

/// Rows of the newest-first order the first slice of a search reads; each next slice of
/// the same request reads twice as many, up to [`MAX_SLICE_ROWS`].
const FIRST_SLICE_ROWS: i64 = 1_000;
/// Bounds one slice's cost (an index range and its heap rows, a few milliseconds),
/// whatever the table's size: a search stops between slices, so its time is its budget
/// plus one slice at most.
const MAX_SLICE_ROWS: i64 = 16_000;

type TaskFilter<'a> = Box<dyn BoxableExpression<tasks::table, Pg, SqlType = Bool> + 'a>;

/// One page of the tasks of `tenant` (of `status`, in `window`, after `cursor`) that a
/// search finds, newest first.
///
/// A whole id is looked up in the primary key's index. Anything else walks the tenant's
/// tasks newest first in slices of the newest-first index (a slice's last row found by
/// an offset from where the previous one ended): the matches of each slice are read
/// from that index range alone, never from the trigram index, whose matches grow with
/// the table. The walk stops when the page is full, at the oldest task of the window,
/// or at the first slice boundary after `budget` has passed, saying where
/// ([`SearchPage::stopped_at`]), as log-search tools do. So a search costs the same at
/// ten million tasks as at ten thousand; a rare name among old tasks takes several
/// requests (each continuing from the last) instead of one slow one.
pub async fn search_page(
    conn: &mut AsyncPgConnection,
    request: &SearchRequest<'_>,
) -> Result<SearchPage, StoreError> {
    let started = Instant::now();
    let SearchRequest {
        tenant,
        search,
        status,
        window,
        cursor,
        limit,
        budget,
    } = *request;
    let wanted = limit + 1;
    let scope = Scope {
        tenant,
        status,
        window,
    };
    if let TaskSearch::Id(_) = search {
        let filter = scope.filter(matching(search), cursor);
        return Ok(SearchPage {
            rows: load_page(conn, filter, wanted).await?,
            stopped_at: None,
        });
    }
    conn.transaction::<_, StoreError, _>(async |conn| {
        // Each slice is an index range: never a bitmap of the trigram index (the whole
        // table's matches) nor a sequential scan, whatever the planner estimates. And a
        // plan costed high enough would be compiled first (JIT), which takes longer than
        // running it.
        conn.batch_execute(
            "SET LOCAL enable_bitmapscan = off; SET LOCAL enable_seqscan = off; \
             SET LOCAL jit = off",
        )
        .await?;
        let mut rows: Vec<TaskRow> = Vec::new();
        let mut position = cursor;
        let mut slice = FIRST_SLICE_ROWS;
        loop {
            let missing = wanted - i64::try_from(rows.len()).unwrap_or(wanted);
            let boundary = slice_end(conn, &scope, position, slice).await?;
            let mut filter = scope.filter(matching(search), position);
            if let Some(boundary) = boundary {
                filter = Box::new(filter.and(not_before(boundary)).and(
                    // The same bound as a plain range, which the planner can estimate.
                    tasks::created_at.ge(boundary.created_at),
                ));
            }
            rows.extend(load_page(conn, filter, missing).await?);
            let full = i64::try_from(rows.len()).unwrap_or(wanted) >= wanted;
            let Some(boundary) = boundary.filter(|_| !full) else {
                // The page is full, or this slice reached the window's oldest task.
                return Ok(SearchPage {
                    rows,
                    stopped_at: None,
                });
            };
            if started.elapsed() >= budget {
                return Ok(SearchPage {
                    rows,
                    stopped_at: Some(boundary),
                });
            }
            position = Some(boundary);
            slice = (slice * 2).min(MAX_SLICE_ROWS);
        }
    })
    .await
}

/// Which of the tenant's tasks a search looks at, whatever it looks for.
struct Scope<'a> {
    tenant: &'a TenantName,
    status: Option<Status>,
    window: SearchWindow,
}

impl<'a> Scope<'a> {
    /// `filter` narrowed to the scope, after `cursor`.
    fn filter(&self, filter: TaskFilter<'a>, cursor: Option<TaskCursor>) -> TaskFilter<'a> {
        let mut filter: TaskFilter<'a> =
            Box::new(filter.and(tasks::tenant.eq(self.tenant.as_str())));
        if let Some(status) = self.status {
            filter = Box::new(filter.and(tasks::status.eq(status.as_str())));
        }
        if let Some(since) = self.window.since {
            filter = Box::new(filter.and(tasks::created_at.ge(since)));
        }
        if let Some(until) = self.window.until {
            filter = Box::new(filter.and(tasks::created_at.lt(until)));
        }
        if let Some(cursor) = cursor {
            filter = Box::new(filter.and(before(cursor)));
        }
        filter
    }
}

/// The position `rows` rows into the scope after `position` (the slice's last row), or
/// `None` when fewer rows are left. An index-only walk of the newest-first index.
async fn slice_end(
    conn: &mut AsyncPgConnection,
    scope: &Scope<'_>,
    position: Option<TaskCursor>,
    rows: i64,
) -> Result<Option<TaskCursor>, StoreError> {
    let everything: TaskFilter<'_> = Box::new(diesel::dsl::sql::<Bool>("true"));
    let end: Option<(DateTime<Utc>, i64)> = tasks::table
        .select((tasks::created_at, tasks::id))
        .filter(scope.filter(everything, position))
        .order((tasks::created_at.desc(), tasks::id.desc()))
        .offset(rows - 1)
        .limit(1)
        .get_result(conn)
        .await
        .optional()?;
    Ok(end.map(|(created_at, id)| TaskCursor { created_at, id }))
}

/// The tasks a search finds, wherever they are.
fn matching(search: &TaskSearch) -> TaskFilter<'_> {
    match search {
        TaskSearch::Id(id) => Box::new(tasks::task_id.eq(*id)),
        TaskSearch::IdPrefixOrName {
            low,
            high,
            name_pattern,
        } => Box::new(
            tasks::task_id
                .between(*low, *high)
                .or(tasks::task_name.ilike(name_pattern.as_str())),
        ),
        TaskSearch::Name { name_pattern } => {
            Box::new(tasks::task_name.ilike(name_pattern.as_str()))
        }
    }
}

/// Rows after `cursor` in the newest-first order. A row comparison, so PostgreSQL can
/// start an index scan there.
fn before(cursor: TaskCursor) -> TaskFilter<'static> {
    row_compare("<", cursor)
}

/// Rows at or before `cursor` in the newest-first order.
fn not_before(cursor: TaskCursor) -> TaskFilter<'static> {
    row_compare(">=", cursor)
}

fn row_compare(operator: &str, cursor: TaskCursor) -> TaskFilter<'static> {
    keyset("tasks.created_at, tasks.id", operator, cursor)
}

async fn load_page(
    conn: &mut AsyncPgConnection,
    filter: TaskFilter<'_>,
    limit: i64,
) -> Result<Vec<TaskRow>, StoreError> {
    Ok(tasks::table
        .select(TaskRow::as_select())
        .filter(filter)
        .order((tasks::created_at.desc(), tasks::id.desc()))
        .limit(limit)
        .load(conn)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_id_is_looked_up_exactly() {
        let id = Uuid::new_v4();
        assert_eq!(
            TaskSearch::parse(&format!("  {id} ")),
            Ok(TaskSearch::Id(id))
        );
        assert_eq!(
            TaskSearch::parse(&id.simple().to_string()),
            Ok(TaskSearch::Id(id))
        );
    }

    #[test]
    fn hexadecimal_text_is_an_id_prefix_or_a_name() {
        let TaskSearch::IdPrefixOrName {
            low,
            high,
            name_pattern,
        } = TaskSearch::parse("7DCF4835-c1").expect("valid")
        else {
            panic!("not a prefix search");
        };
        assert_eq!(low.to_string(), "7dcf4835-c100-0000-0000-000000000000");
        assert_eq!(high.to_string(), "7dcf4835-c1ff-ffff-ffff-ffffffffffff");
        assert_eq!(name_pattern, "%7DCF4835-c1%");
        // Three digits are too few to narrow anything down: a name search.
        assert!(matches!(
            TaskSearch::parse("abc"),
            Ok(TaskSearch::Name { .. })
        ));
    }

    #[test]
    fn names_match_literally() {
        assert_eq!(
            TaskSearch::parse("50%_off\\"),
            Ok(TaskSearch::Name {
                name_pattern: "%50\\%\\_off\\\\%".into()
            })
        );
    }

    #[test]
    fn too_short_or_too_long() {
        assert_eq!(TaskSearch::parse(" ab "), Err(InvalidSearch::TooShort));
        assert_eq!(TaskSearch::parse(""), Err(InvalidSearch::TooShort));
        assert_eq!(
            TaskSearch::parse(&"x".repeat(256)),
            Err(InvalidSearch::TooLong)
        );
    }
}
