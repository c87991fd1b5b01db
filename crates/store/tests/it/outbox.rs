//! The Kafka-mode outbox, against a real database.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use orchestrator_core::Status;
use orchestrator_store::lifecycle::accept::{self, InsertedTask, NewTask};
use orchestrator_store::schema::{task_outbox, tasks as task_rows};
use orchestrator_store::tasks;
use orchestrator_store::{StoreError, outbox};
use orchestrator_testkit::database::TestDatabase;
use uuid::Uuid;

/// Stores tasks as the API does in Kafka mode, one per idempotency key given.
async fn insert(conn: &mut AsyncPgConnection, keys: &[Option<&str>]) -> Vec<InsertedTask> {
    let payload = crate::request(1).payload_json();
    let new_tasks: Vec<NewTask<'_>> = keys
        .iter()
        .map(|key| NewTask {
            task_id: Uuid::new_v4(),
            task_name: "t",
            task_description: None,
            payload: &payload,
            idempotency_key: *key,
            tenant: "default",
            deadline_seconds: None,
            deadline_at: None,
            callback_url: None,
            traceparent: None,
        })
        .collect();
    accept::insert_many_queued(conn, &new_tasks)
        .await
        .expect("insert")
}

async fn insert_one(conn: &mut AsyncPgConnection) -> Uuid {
    match insert(conn, &[None]).await.as_slice() {
        [InsertedTask::Created(row)] => row.task_id,
        other => panic!("expected one created task, got {other:?}"),
    }
}

/// The outbox rows, by task id, with their created_at.
async fn outbox_rows(conn: &mut AsyncPgConnection) -> Vec<(Uuid, DateTime<Utc>)> {
    task_outbox::table
        .select((task_outbox::task_id, task_outbox::created_at))
        .order(task_outbox::task_id)
        .load(conn)
        .await
        .expect("outbox rows")
}

async fn set_status(conn: &mut AsyncPgConnection, task_id: Uuid, status: Status) {
    let updated = diesel::update(task_rows::table)
        .filter(task_rows::task_id.eq(task_id))
        .set(task_rows::status.eq(status.as_str()))
        .execute(conn)
        .await
        .expect("status set");
    assert_eq!(updated, 1);
}

fn later() -> DateTime<Utc> {
    Utc::now() + chrono::Duration::seconds(1)
}

fn earlier() -> DateTime<Utc> {
    Utc::now() - chrono::Duration::seconds(60)
}

#[tokio::test]
async fn the_outbox_finds_unpublished_tasks_and_forgets_published_ones() {
    let db = TestDatabase::create().await;
    let mut conn = db.connection().await;
    let published = insert_one(&mut conn).await;
    let stranded = insert_one(&mut conn).await;
    let refused = insert_one(&mut conn).await;

    // Each task's row carries the task's created_at: the sweeper's grace counts from it.
    let rows = outbox_rows(&mut conn).await;
    assert_eq!(rows.len(), 3);
    for (task_id, created_at) in rows {
        let task = tasks::find(&mut conn, task_id)
            .await
            .expect("find")
            .expect("task stored with its outbox row");
        assert_eq!(created_at, task.created_at);
    }

    assert_eq!(
        outbox::mark_published(&mut conn, &[published])
            .await
            .expect("mark"),
        1
    );
    assert_eq!(
        outbox::mark_published(&mut conn, &[published])
            .await
            .expect("mark"),
        0,
        "a task leaves the outbox once"
    );
    assert_eq!(
        outbox::mark_published(&mut conn, &[]).await.expect("mark"),
        0
    );

    assert!(
        outbox::forget_unpublished(&mut conn, refused)
            .await
            .expect("forget")
    );
    assert!(
        tasks::find(&mut conn, refused)
            .await
            .expect("find")
            .is_none()
    );
    assert!(
        !outbox::forget_unpublished(&mut conn, published)
            .await
            .expect("forget"),
        "a published task is kept"
    );
    assert!(
        tasks::find(&mut conn, published)
            .await
            .expect("find")
            .is_some()
    );
    let left: Vec<Uuid> = outbox_rows(&mut conn)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(left, vec![stranded]);

    assert_eq!(
        ids(outbox::lock_stranded(&mut conn, later(), 10)
            .await
            .expect("lock")),
        vec![stranded]
    );
    assert!(
        outbox::lock_stranded(&mut conn, earlier(), 10)
            .await
            .expect("lock")
            .is_empty(),
        "rows younger than the cutoff are left alone"
    );
}

#[tokio::test]
async fn forgetting_a_task_that_left_pending_keeps_it() {
    let db = TestDatabase::create().await;
    let mut conn = db.connection().await;
    // Its record reached a worker although the publish reported a failure (a timeout).
    let task_id = insert_one(&mut conn).await;
    set_status(&mut conn, task_id, Status::InProgress).await;
    assert!(
        !outbox::forget_unpublished(&mut conn, task_id)
            .await
            .expect("forget")
    );
    assert!(
        tasks::find(&mut conn, task_id)
            .await
            .expect("find")
            .is_some()
    );
}

#[tokio::test]
async fn the_sweeper_drops_rows_of_tasks_that_moved_on_and_keeps_pending_ones() {
    let db = TestDatabase::create().await;
    let mut conn = db.connection().await;
    let running = insert_one(&mut conn).await;
    let completed = insert_one(&mut conn).await;
    let gone = insert_one(&mut conn).await;
    let pending = insert_one(&mut conn).await;
    set_status(&mut conn, running, Status::InProgress).await;
    set_status(&mut conn, completed, Status::Completed).await;
    diesel::delete(task_rows::table.filter(task_rows::task_id.eq(gone)))
        .execute(&mut conn)
        .await
        .expect("task deleted");

    assert_eq!(
        outbox::drop_settled(&mut conn, earlier())
            .await
            .expect("drop"),
        0,
        "rows younger than the cutoff are left alone"
    );
    assert_eq!(
        ids(outbox::lock_stranded(&mut conn, later(), 10)
            .await
            .expect("lock")),
        vec![pending],
        "only a pending task is published again"
    );
    assert_eq!(
        outbox::drop_settled(&mut conn, later())
            .await
            .expect("drop"),
        3
    );
    let left: Vec<Uuid> = outbox_rows(&mut conn)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(left, vec![pending]);
}

#[tokio::test]
async fn an_idempotency_key_repeated_puts_one_task_in_the_outbox() {
    let db = TestDatabase::create().await;
    let mut conn = db.connection().await;
    // Within one batch, and in a later one.
    let first = insert(&mut conn, &[Some("key-1"), Some("key-1")]).await;
    let [
        InsertedTask::Created(created),
        InsertedTask::Existing(existing),
    ] = first.as_slice()
    else {
        panic!("expected created then existing, got {first:?}");
    };
    assert_eq!(existing.task_id, created.task_id);
    let again = insert(&mut conn, &[Some("key-1")]).await;
    assert!(
        matches!(again.as_slice(), [InsertedTask::Existing(row)] if row.task_id == created.task_id)
    );
    assert_eq!(
        outbox_rows(&mut conn).await,
        vec![(created.task_id, created.created_at)]
    );
    assert_eq!(db.count_rows("tasks").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_locked_row_is_skipped_by_other_sweepers_and_its_task_stays_writable() {
    let db = TestDatabase::create().await;
    let mut conn = db.connection().await;
    let mut other = db.connection().await;
    let task_id = insert_one(&mut conn).await;

    conn.transaction::<_, StoreError, _>(async |conn| {
        assert_eq!(
            ids(outbox::lock_stranded(conn, later(), 10).await?),
            vec![task_id]
        );
        assert!(
            outbox::lock_stranded(&mut other, later(), 10)
                .await?
                .is_empty(),
            "another sweeper skips the locked row"
        );
        assert_eq!(
            outbox::drop_settled(&mut other, later()).await?,
            0,
            "the task is pending"
        );
        // A worker starting the task meanwhile is not held up by the sweeper.
        tokio::time::timeout(
            Duration::from_secs(10),
            set_status(&mut other, task_id, Status::InProgress),
        )
        .await
        .expect("the task row is not locked");
        assert_eq!(outbox::mark_published(conn, &[task_id]).await?, 1);
        Ok(())
    })
    .await
    .expect("sweep transaction");
    assert!(outbox_rows(&mut conn).await.is_empty());
}

fn ids(stranded: Vec<outbox::StrandedTask>) -> Vec<uuid::Uuid> {
    stranded.into_iter().map(|task| task.task_id).collect()
}
