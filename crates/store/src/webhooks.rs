//! Completion webhooks' outbox: a delivery is added in the transaction that makes a
//! task with a callback URL final ([`enqueue`], called by the lifecycle), with the body
//! to send; delivery loops [`claim_due`] rows (SKIP LOCKED, then a claim that expires,
//! so one sender works on a row however many replicas run, and a sender that died
//! leaves it to another), and [`record_attempt`] each attempt.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Integer, Interval, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;
use uuid::Uuid;

use crate::StoreError;
use crate::schema::{webhook_attempts, webhook_deliveries};

/// Adds a delivery for each of these tasks that has a callback URL, with its summary as
/// the body. Call in the transaction that made them final (their rows are up to date).
pub(crate) async fn enqueue(
    conn: &mut AsyncPgConnection,
    task_ids: &[Uuid],
) -> Result<(), StoreError> {
    if task_ids.is_empty() {
        return Ok(());
    }
    diesel::sql_query(
        "INSERT INTO webhook_deliveries (id, task_id, tenant, url, payload) \
         SELECT gen_random_uuid(), t.task_id, t.tenant, t.callback_url, \
                jsonb_build_object( \
                  'type', 'task.finished', \
                  'timestamp', now(), \
                  'data', jsonb_build_object( \
                    'task_id', t.task_id, \
                    'task_name', t.task_name, \
                    'tenant', t.tenant, \
                    'status', t.status, \
                    'error_message', t.error_message, \
                    'created_at', t.created_at, \
                    'finished_at', t.updated_at, \
                    'service_requests', ( \
                      SELECT coalesce(jsonb_agg(jsonb_build_object( \
                               'id', sr.id, 'service_name', sr.service_name, \
                               'item_index', sr.item_index, 'status', sr.status, \
                               'attempts', sr.attempts, 'error_message', sr.error_message) \
                             ORDER BY sr.item_index, sr.service_name), '[]'::jsonb) \
                      FROM service_requests sr WHERE sr.task_id = t.task_id))) \
         FROM tasks t \
         WHERE t.task_id = ANY($1) AND t.callback_url IS NOT NULL",
    )
    .bind::<Array<diesel::sql_types::Uuid>, _>(task_ids)
    .execute(conn)
    .await?;
    Ok(())
}

/// A delivery to send.
#[derive(Debug, Clone, PartialEq, QueryableByName, Queryable, Selectable)]
#[diesel(table_name = webhook_deliveries)]
pub struct DeliveryRow {
    pub id: Uuid,
    pub task_id: Uuid,
    pub tenant: String,
    pub url: String,
    pub payload: Value,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
    pub attempts: i32,
    pub delivered_at: Option<DateTime<Utc>>,
    pub gave_up_at: Option<DateTime<Utc>>,
}

/// One attempt to deliver.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = webhook_attempts)]
pub struct WebhookAttemptRow {
    pub delivery_id: Uuid,
    pub attempt: i32,
    pub attempted_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub status_code: Option<i32>,
    pub error: Option<String>,
}

/// Takes up to `limit` due deliveries for `claim`: no other sender takes them until it
/// runs out.
pub async fn claim_due(
    conn: &mut AsyncPgConnection,
    limit: i64,
    claim: std::time::Duration,
) -> Result<Vec<DeliveryRow>, StoreError> {
    Ok(diesel::sql_query(
        "UPDATE webhook_deliveries SET claimed_until = now() + $2 \
         WHERE id IN ( \
           SELECT id FROM webhook_deliveries \
           WHERE delivered_at IS NULL AND gave_up_at IS NULL AND next_attempt_at <= now() \
             AND (claimed_until IS NULL OR claimed_until < now()) \
           ORDER BY next_attempt_at LIMIT $1 \
           FOR UPDATE SKIP LOCKED) \
         RETURNING id, task_id, tenant, url, payload, created_at, next_attempt_at, attempts, \
                   delivered_at, gave_up_at",
    )
    .bind::<BigInt, _>(limit)
    .bind::<Interval, _>(diesel::pg::data_types::PgInterval::from_microseconds(
        i64::try_from(claim.as_micros()).unwrap_or(i64::MAX),
    ))
    .load(conn)
    .await?)
}

/// How an attempt ended, for the delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptOutcome {
    /// The receiver answered 2xx: done.
    Delivered,
    /// Try again then.
    RetryAt(DateTime<Utc>),
    /// Out of time: no more attempts.
    GaveUp,
}

/// What one attempt was.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub attempted_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub status_code: Option<i32>,
    pub error: Option<String>,
}

/// Records an attempt and what follows from it, and releases the claim.
pub async fn record_attempt(
    conn: &mut AsyncPgConnection,
    delivery_id: Uuid,
    attempt: &Attempt,
    outcome: &AttemptOutcome,
) -> Result<(), StoreError> {
    let (delivered, next, gave_up) = match outcome {
        AttemptOutcome::Delivered => (true, None, false),
        AttemptOutcome::RetryAt(at) => (false, Some(*at), false),
        AttemptOutcome::GaveUp => (false, None, true),
    };
    diesel::sql_query(
        "WITH counted AS ( \
           UPDATE webhook_deliveries SET attempts = attempts + 1, claimed_until = NULL, \
             delivered_at = CASE WHEN $2 THEN now() END, \
             gave_up_at = CASE WHEN $4 THEN now() END, \
             next_attempt_at = COALESCE($3, next_attempt_at) \
           WHERE id = $1 RETURNING id, attempts) \
         INSERT INTO webhook_attempts \
           (delivery_id, attempt, attempted_at, duration_ms, status_code, error) \
         SELECT id, attempts, $5, $6, $7, $8 FROM counted",
    )
    .bind::<diesel::sql_types::Uuid, _>(delivery_id)
    .bind::<diesel::sql_types::Bool, _>(delivered)
    .bind::<Nullable<Timestamptz>, _>(next)
    .bind::<diesel::sql_types::Bool, _>(gave_up)
    .bind::<Timestamptz, _>(attempt.attempted_at)
    .bind::<BigInt, _>(attempt.duration_ms)
    .bind::<Nullable<Integer>, _>(attempt.status_code)
    .bind::<Nullable<Text>, _>(attempt.error.as_deref())
    .execute(conn)
    .await?;
    Ok(())
}

/// A task's deliveries, oldest first, each with its attempts in order.
pub async fn for_task(
    conn: &mut AsyncPgConnection,
    task_id: Uuid,
) -> Result<Vec<(DeliveryRow, Vec<WebhookAttemptRow>)>, StoreError> {
    let deliveries: Vec<DeliveryRow> = webhook_deliveries::table
        .filter(webhook_deliveries::task_id.eq(task_id))
        .order((webhook_deliveries::created_at, webhook_deliveries::id))
        .select(DeliveryRow::as_select())
        .load(conn)
        .await?;
    if deliveries.is_empty() {
        return Ok(Vec::new());
    }
    let attempts: Vec<WebhookAttemptRow> = webhook_attempts::table
        .filter(webhook_attempts::delivery_id.eq_any(deliveries.iter().map(|d| d.id)))
        .order((webhook_attempts::delivery_id, webhook_attempts::attempt))
        .select(WebhookAttemptRow::as_select())
        .load(conn)
        .await?;
    Ok(deliveries
        .into_iter()
        .map(|delivery| {
            let mine = attempts
                .iter()
                .filter(|a| a.delivery_id == delivery.id)
                .cloned()
                .collect();
            (delivery, mine)
        })
        .collect())
}
