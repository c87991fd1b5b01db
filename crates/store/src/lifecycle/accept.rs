//! **accept**: a new task, stored `PENDING`; in Kafka mode with its outbox row in the
//! same statement. See the state machine in [`super`].

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use orchestrator_core::Status;
use serde_json::Value;
use uuid::Uuid;

use crate::models::DbStatus;
use crate::schema::tasks;
use crate::{StoreError, TaskRow};

/// A task to insert; it starts `PENDING`.
#[derive(Debug, Insertable)]
#[diesel(table_name = tasks)]
pub struct NewTask<'a> {
    pub task_id: Uuid,
    pub task_name: &'a str,
    pub task_description: Option<&'a str>,
    pub payload: &'a Value,
    /// Unique within the tenant.
    pub idempotency_key: Option<&'a str>,
    /// The tenant of the credential that submitted it.
    pub tenant: &'a str,
    /// How long it may take, and so when it must be final (both or neither).
    pub deadline_seconds: Option<i32>,
    pub deadline_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Where to POST its summary when it is final (checked by the caller).
    pub callback_url: Option<&'a str>,
    /// The W3C `traceparent` of the accepting request's span.
    pub traceparent: Option<&'a str>,
}

impl NewTask<'_> {
    /// Its row, as the database `created` it: the rest is what was inserted.
    fn row(&self, created: Created) -> TaskRow {
        TaskRow {
            id: created.id,
            task_id: created.task_id,
            task_name: self.task_name.to_owned(),
            task_description: self.task_description.map(str::to_owned),
            status: created.status,
            created_at: created.created_at,
            updated_at: created.updated_at,
            payload: self.payload.clone(),
            error_message: None,
            idempotency_key: self.idempotency_key.map(str::to_owned),
            tenant: self.tenant.to_owned(),
            deadline_seconds: self.deadline_seconds,
            deadline_at: created.deadline_at,
            callback_url: self.callback_url.map(str::to_owned),
            traceparent: self.traceparent.map(str::to_owned),
        }
    }
}

/// What the database decided for a task it created (its deadline too, which it stores
/// to the microsecond). The insert returns only this: the rest of the row is what was
/// sent, and returning it too had PostgreSQL print each payload's `jsonb` back as text
/// for the API to parse into a `Value` again (7.7% of the API's instructions per task).
#[derive(Debug, Queryable, QueryableByName)]
#[diesel(check_for_backend(diesel::pg::Pg))]
struct Created {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    task_id: Uuid,
    #[diesel(sql_type = Text, deserialize_as = DbStatus)]
    status: Status,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    updated_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    deadline_at: Option<DateTime<Utc>>,
}

/// The result of inserting a task that may carry an idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub enum InsertedTask {
    Created(TaskRow),
    /// A task with the same idempotency key already existed; nothing was inserted.
    Existing(TaskRow),
}

/// Inserts a task, or finds the one its tenant stored earlier under the same
/// idempotency key.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    new_task: &NewTask<'_>,
) -> Result<InsertedTask, StoreError> {
    insert_many(conn, std::slice::from_ref(new_task))
        .await?
        .pop()
        .ok_or_else(|| StoreError::Corrupt("an insert answered nothing".into()))
}

/// Inserts many tasks in one statement (one transaction, one commit): the API's group
/// commit. Answers in the order given. Tasks whose idempotency key was taken (by an
/// earlier request, or an earlier entry of `new_tasks`) come back as the stored task.
pub async fn insert_many(
    conn: &mut AsyncPgConnection,
    new_tasks: &[NewTask<'_>],
) -> Result<Vec<InsertedTask>, StoreError> {
    if new_tasks.is_empty() {
        return Ok(Vec::new());
    }
    let created: Vec<Created> = diesel::insert_into(tasks::table)
        .values(new_tasks)
        .on_conflict((tasks::tenant, tasks::idempotency_key))
        .do_nothing()
        .returning((
            tasks::id,
            tasks::task_id,
            tasks::status,
            tasks::created_at,
            tasks::updated_at,
            tasks::deadline_at,
        ))
        .get_results(conn)
        .await?;
    answer_inserted(conn, new_tasks, created).await
}

/// Inserts tasks as [`insert_many`] does, and puts those it created in the outbox
/// (`crate::outbox`), in one statement (so one round trip and one commit): a task is never stored
/// without its outbox row. A task found under its idempotency key gets no row; it was
/// published when it was created.
pub async fn insert_many_queued(
    conn: &mut AsyncPgConnection,
    new_tasks: &[NewTask<'_>],
) -> Result<Vec<InsertedTask>, StoreError> {
    if new_tasks.is_empty() {
        return Ok(Vec::new());
    }
    // Columns as arrays, so the statement is the same whatever the batch holds.
    // Two rows of one batch with the same idempotency key: the second is skipped (and
    // answered with the first) as if it came later.
    // Prepared once per connection (see `crate::prepared`), so the columns it returns
    // are named: a cached statement whose result gained a column (a migration adding
    // one to `tasks`) would be refused by PostgreSQL.
    let created: Vec<Created> = crate::prepared::prepared(
        "WITH created AS ( \
           INSERT INTO tasks (task_id, task_name, task_description, payload, idempotency_key, tenant, \
                              deadline_seconds, deadline_at, callback_url, traceparent) \
           SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::text[], $6::text[], \
                                $7::int4[], $8::timestamptz[], $9::text[], $10::text[]) \
           ON CONFLICT (tenant, idempotency_key) DO NOTHING \
           RETURNING id, task_id, status, created_at, updated_at, deadline_at \
         ), queued AS ( \
           INSERT INTO task_outbox (task_id, created_at) \
           SELECT task_id, created_at FROM created \
           ON CONFLICT (task_id) DO NOTHING \
         ) \
         SELECT * FROM created",
    )
    .bind::<Array<diesel::sql_types::Uuid>, _>(
        new_tasks.iter().map(|t| t.task_id).collect::<Vec<_>>(),
    )
    .bind::<Array<Text>, _>(new_tasks.iter().map(|t| t.task_name).collect::<Vec<_>>())
    .bind::<Array<Nullable<Text>>, _>(
        new_tasks
            .iter()
            .map(|t| t.task_description)
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Jsonb>, _>(new_tasks.iter().map(|t| t.payload).collect::<Vec<_>>())
    .bind::<Array<Nullable<Text>>, _>(
        new_tasks
            .iter()
            .map(|t| t.idempotency_key)
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Text>, _>(new_tasks.iter().map(|t| t.tenant).collect::<Vec<_>>())
    .bind::<Array<Nullable<diesel::sql_types::Int4>>, _>(
        new_tasks
            .iter()
            .map(|t| t.deadline_seconds)
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Nullable<diesel::sql_types::Timestamptz>>, _>(
        new_tasks.iter().map(|t| t.deadline_at).collect::<Vec<_>>(),
    )
    .bind::<Array<Nullable<Text>>, _>(
        new_tasks
            .iter()
            .map(|t| t.callback_url)
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Nullable<Text>>, _>(
        new_tasks
            .iter()
            .map(|t| t.traceparent)
            .collect::<Vec<_>>(),
    )
    .load(conn)
    .await?;
    answer_inserted(conn, new_tasks, created).await
}

/// Answers each of `new_tasks` in order from what a multi-row insert created: the
/// created row, or else the task its tenant stored earlier under the same idempotency
/// key.
async fn answer_inserted(
    conn: &mut AsyncPgConnection,
    new_tasks: &[NewTask<'_>],
    created: Vec<Created>,
) -> Result<Vec<InsertedTask>, StoreError> {
    let mut created: std::collections::HashMap<Uuid, Created> =
        created.into_iter().map(|row| (row.task_id, row)).collect();
    let mut answers = Vec::with_capacity(new_tasks.len());
    for new_task in new_tasks {
        match created.remove(&new_task.task_id) {
            Some(row) => answers.push(InsertedTask::Created(new_task.row(row))),
            None => {
                let key = new_task.idempotency_key.ok_or_else(|| {
                    StoreError::Corrupt("insert skipped without an idempotency key".into())
                })?;
                let existing = tasks::table
                    .filter(tasks::tenant.eq(new_task.tenant))
                    .filter(tasks::idempotency_key.eq(key))
                    .select(TaskRow::as_select())
                    .get_result(conn)
                    .await?;
                answers.push(InsertedTask::Existing(existing));
            }
        }
    }
    Ok(answers)
}
