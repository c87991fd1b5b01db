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
//! - search finds ids through the primary key's unique index (a whole id, or an id
//!   prefix as a range) and names through the trigram index, newest first with the same
//!   keyset cursor as the task list.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Integer, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
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

/// How many of the newest tasks (after the cursor, of the status asked for) a search
/// reads in order before it turns to the trigram index. Bounds the first step: a name
/// common among recent tasks fills its page within these rows.
const RECENT_WINDOW: i64 = 10_000;

type TaskFilter<'a> = Box<dyn BoxableExpression<tasks::table, Pg, SqlType = Bool> + 'a>;

/// One page of the tasks of `tenant` a search finds, newest first, optionally of one status, after
/// `cursor`. Fetches `limit + 1` rows so the caller can tell whether another page
/// follows, like [`crate::tasks::list_page`].
///
/// Two steps, so that neither a common nor a rare name scans the table:
/// 1. the newest [`RECENT_WINDOW`] candidates, read in index order and filtered: a
///    name found often among recent tasks fills the page here;
/// 2. if the page is not full, the older tasks through the trigram (and id) indexes
///    only, sorted afterwards: their cost grows with the matches, not with the table.
///    Plain index scans are turned off for this step, or the planner, misled by a
///    LIMIT, may walk the whole newest-first index looking for a name that only old
///    tasks have.
pub async fn search_page(
    conn: &mut AsyncPgConnection,
    tenant: &TenantName,
    search: &TaskSearch,
    status: Option<Status>,
    cursor: Option<TaskCursor>,
    limit: i64,
) -> Result<Vec<TaskRow>, StoreError> {
    let wanted = limit + 1;
    if let TaskSearch::Id(_) = search {
        return load_page(conn, matching(tenant, search, status, cursor), wanted).await;
    }
    conn.transaction::<_, StoreError, _>(async |conn| {
        // A plan costed high enough (a sort of many matches) would be compiled first,
        // which takes longer than running it.
        diesel::sql_query("SET LOCAL jit = off")
            .execute(conn)
            .await?;
        let mut window = tasks::table
            .select((tasks::created_at, tasks::id))
            .filter(tasks::tenant.eq(tenant.as_str()))
            .into_boxed();
        if let Some(status) = status {
            window = window.filter(tasks::status.eq(status.as_str()));
        }
        if let Some(cursor) = cursor {
            window = window.filter(before(cursor));
        }
        let oldest_recent: Option<(DateTime<Utc>, i64)> = window
            .order((tasks::created_at.desc(), tasks::id.desc()))
            .offset(RECENT_WINDOW - 1)
            .limit(1)
            .get_result(conn)
            .await
            .optional()?;
        let Some((created_at, id)) = oldest_recent else {
            // Fewer candidates than the window: step 1 covers them all.
            return load_page(conn, matching(tenant, search, status, cursor), wanted).await;
        };
        let boundary = TaskCursor { created_at, id };
        let recent = Box::new(matching(tenant, search, status, cursor).and(not_before(boundary)));
        let mut rows = load_page(conn, recent, wanted).await?;
        let missing = wanted - i64::try_from(rows.len()).unwrap_or(wanted);
        if missing > 0 {
            diesel::sql_query("SET LOCAL enable_indexscan = off")
                .execute(conn)
                .await?;
            let older = matching(tenant, search, status, Some(boundary));
            rows.extend(load_page(conn, older, missing).await?);
        }
        Ok(rows)
    })
    .await
}

/// Tasks of `tenant` the search finds, of `status`, older than `cursor`.
fn matching<'a>(
    tenant: &'a TenantName,
    search: &'a TaskSearch,
    status: Option<Status>,
    cursor: Option<TaskCursor>,
) -> TaskFilter<'a> {
    let mut filter: TaskFilter<'a> = match search {
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
    };
    filter = Box::new(filter.and(tasks::tenant.eq(tenant.as_str())));
    if let Some(status) = status {
        filter = Box::new(filter.and(tasks::status.eq(status.as_str())));
    }
    if let Some(cursor) = cursor {
        filter = Box::new(filter.and(before(cursor)));
    }
    filter
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
