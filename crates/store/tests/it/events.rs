//! The task event log: every change logged by the triggers, in order, read up to the
//! settled horizon so that a reader never passes an event that commits later.

use std::time::Duration;

use chrono::Utc;
use diesel_async::AsyncConnection;
use orchestrator_core::{Status, TenantName};
use orchestrator_store::events::{self, EventFilter, EventPosition, TaskEvent};
use orchestrator_store::lifecycle::{FinishRequest, FinishedServiceRequest, finish, record, start};
use orchestrator_testkit::database::TestDatabase;
use serde_json::json;
use uuid::Uuid;

use crate::{insert, planned};

fn outcome(status: Status) -> FinishedServiceRequest {
    FinishedServiceRequest {
        status,
        attempts: 1,
        response_payload: (status == Status::Completed)
            .then(|| orchestrator_core::RawJson::from_value(&json!({"ok": true}))),
        error_message: (status == Status::Failed).then(|| "HTTP 500: boom".to_owned()),
        started_at: Utc::now(),
        completed_at: Utc::now(),
        failed_attempts: Vec::new(),
    }
}

/// What an event says, in a form a test can compare.
fn said(event: &TaskEvent) -> (Option<String>, String, Option<String>) {
    (
        event.service_name.clone(),
        event.status.clone(),
        event.previous_status.clone(),
    )
}

fn owned(
    service: Option<&str>,
    status: &str,
    previous: Option<&str>,
) -> (Option<String>, String, Option<String>) {
    (
        service.map(str::to_owned),
        status.to_owned(),
        previous.map(str::to_owned),
    )
}

/// Every settled event of `filter` after `after`, polled until `done` holds (other
/// tests' transactions on the same server may hold the horizon back for a moment).
async fn settled(
    db: &TestDatabase,
    after: EventPosition,
    filter: EventFilter<'_>,
    done: impl Fn(&[TaskEvent]) -> bool,
) -> Vec<TaskEvent> {
    let mut conn = db.connection().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let read = events::after(&mut conn, after, filter, 1_000)
            .await
            .expect("events");
        if done(&read) || tokio::time::Instant::now() > deadline {
            return read;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_change_of_a_task_is_logged_once_in_order() {
    let db = TestDatabase::create().await;
    let (task_id, _) = insert(&db, None).await;
    let mut conn = db.connection().await;
    let started = start::start_task(&mut conn, task_id, &planned(task_id), None)
        .await
        .expect("start");
    let start::StartedTask::Running { rows, .. } = started else {
        panic!("runs: {started:?}");
    };
    // One outcome early, the other with the settle; writing one twice logs it once.
    record::record_finished(&mut conn, rows[0].id, &outcome(Status::Completed), None)
        .await
        .expect("record");
    record::record_finished(&mut conn, rows[0].id, &outcome(Status::Completed), None)
        .await
        .expect("record");
    finish::finish_many(
        &mut conn,
        &[FinishRequest {
            task_id,
            outcomes: vec![(rows[1].id, outcome(Status::Failed))],
            fence: None,
        }],
    )
    .await
    .expect("finish");

    let expected = vec![
        owned(None, "PENDING", None),
        owned(None, "IN_PROGRESS", Some("PENDING")),
        owned(
            Some(&rows[0].service_name),
            "COMPLETED",
            Some("IN_PROGRESS"),
        ),
        owned(Some(&rows[1].service_name), "FAILED", Some("IN_PROGRESS")),
        owned(None, "FAILED", Some("IN_PROGRESS")),
    ];
    let all = settled(
        &db,
        EventPosition::default(),
        EventFilter::Task(task_id),
        |read| read.len() >= expected.len(),
    )
    .await;
    assert_eq!(all.iter().map(said).collect::<Vec<_>>(), expected);
    assert!(all.windows(2).all(|w| w[0].position() < w[1].position()));
    assert_eq!(all[1].service_request_id, None);
    assert_eq!(all[2].service_request_id, Some(rows[0].id));
    assert!(
        all[4]
            .error_message
            .as_deref()
            .is_some_and(|m| m.contains("boom"))
    );
    assert!(
        all.iter()
            .all(|e| e.task_id == task_id && e.tenant == TenantName::DEFAULT)
    );

    // From any event on: exactly the ones after it.
    for (i, event) in all.iter().enumerate() {
        let rest = events::after(
            &mut conn,
            event.position(),
            EventFilter::Task(task_id),
            1_000,
        )
        .await
        .expect("events");
        assert_eq!(rest, all[i + 1..].to_vec());
    }
    // Another tenant's reader sees none of them; the limit holds.
    let acme = TenantName::parse("acme").expect("tenant");
    assert!(
        events::after(
            &mut conn,
            EventPosition::default(),
            EventFilter::Tenant(&acme),
            1_000
        )
        .await
        .expect("events")
        .is_empty()
    );
    let first_two = events::after(&mut conn, EventPosition::default(), EventFilter::All, 2)
        .await
        .expect("events");
    assert_eq!(first_two, all[..2].to_vec());
    assert_eq!(
        events::latest_of_task(&mut conn, task_id)
            .await
            .expect("latest"),
        Some(all[4].position())
    );
    assert_eq!(
        events::latest_of_task(&mut conn, Uuid::new_v4())
            .await
            .expect("latest"),
        None
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reader_never_passes_an_event_that_commits_later() {
    let db = TestDatabase::create().await;
    let mut conn = db.connection().await;
    let from = events::now(&mut conn).await.expect("now");

    // Transaction A logs an event first and commits last.
    let (inserted_tx, inserted) = tokio::sync::oneshot::channel();
    let (release_tx, release) = tokio::sync::oneshot::channel::<()>();
    let mut conn_a = db.connection().await;
    let slow = tokio::spawn(async move {
        conn_a
            .transaction::<_, orchestrator_store::StoreError, _>(async |conn| {
                let payload = crate::request(1).payload_json();
                let task_id = Uuid::new_v4();
                orchestrator_store::lifecycle::accept::insert(
                    conn,
                    &orchestrator_store::lifecycle::NewTask {
                        task_id,
                        task_name: "slow",
                        task_description: None,
                        payload: &payload,
                        idempotency_key: None,
                        tenant: TenantName::DEFAULT,
                        deadline_seconds: None,
                        deadline_at: None,
                        callback_url: None,
                        traceparent: None,
                    },
                )
                .await?;
                let _ = inserted_tx.send(task_id);
                let _ = release.await;
                Ok(task_id)
            })
            .await
            .expect("commit")
    });
    let slow_task = inserted.await.expect("A inserted");
    // Transaction B logs later and commits first.
    let (fast_task, _) = insert(&db, None).await;
    let (_, held) = events::horizon(&mut conn).await.expect("horizon");
    assert!(held, "B's committed event waits behind A");
    let early = events::after(&mut conn, from, EventFilter::All, 1_000)
        .await
        .expect("events");
    assert!(
        early.is_empty(),
        "nothing past A's position may be read while A runs: {early:?}"
    );

    release_tx.send(()).expect("A waits");
    assert_eq!(slow.await.expect("A ends"), slow_task);
    let both = settled(&db, from, EventFilter::All, |read| read.len() >= 2).await;
    assert_eq!(
        both.iter().map(|e| e.task_id).collect::<Vec<_>>(),
        vec![slow_task, fast_task],
        "in the order of the log, A's first"
    );
}
