//! The stop transition (cancel, expire), the widened status constraint, deadlines at
//! start, and the notifications that carry stops to other processes.

use std::time::Duration;

use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, RunQueryDsl};
use orchestrator_core::{Status, TenantName};
use orchestrator_store::lifecycle::stop::{self, Stop};
use orchestrator_store::lifecycle::{FinishedServiceRequest, StartedTask, accept, finish, start};
use orchestrator_store::notify::{self, Listener, Notice};
use orchestrator_store::pool::PgConnector;
use orchestrator_store::{dashboard, tasks};
use orchestrator_testkit::database::TestDatabase;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{insert, planned, request};

fn completed_call() -> FinishedServiceRequest {
    FinishedServiceRequest {
        status: Status::Completed,
        attempts: 1,
        response_payload: Some(orchestrator_core::RawJson::from_value(
            &serde_json::json!({"ok": true}),
        )),
        error_message: None,
        started_at: chrono::Utc::now(),
        completed_at: chrono::Utc::now(),
        failed_attempts: Vec::new(),
    }
}

async fn statuses_of_service_requests(db: &TestDatabase, task_id: Uuid) -> Vec<Status> {
    let mut conn = db.connection().await;
    orchestrator_store::service_requests::list_for_task(&mut conn, task_id)
        .await
        .expect("rows")
        .into_iter()
        .map(|sr| sr.status)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_pending_task_is_never_started() {
    let db = TestDatabase::create().await;
    let (task_id, _) = insert(&db, None).await;
    let mut conn = db.connection().await;
    let Stop::Stopped(task) = stop::cancel(&mut conn, &TenantName::default(), task_id)
        .await
        .expect("cancel")
    else {
        panic!("the task is cancelled");
    };
    assert_eq!(task.status, Status::Cancelled);
    let started = start::start_task(&mut conn, task_id, &planned(task_id), None)
        .await
        .expect("start");
    assert_eq!(started, StartedTask::AlreadyFinished(Status::Cancelled));
    assert!(statuses_of_service_requests(&db, task_id).await.is_empty());
    // Another tenant cannot see it, let alone cancel it; a final task is not cancelled.
    let other = TenantName::parse("acme").expect("valid");
    assert_eq!(
        stop::cancel(&mut conn, &other, task_id)
            .await
            .expect("cancel"),
        Stop::NotFound
    );
    assert_eq!(
        stop::cancel(&mut conn, &TenantName::default(), task_id)
            .await
            .expect("cancel"),
        Stop::AlreadyFinal(Status::Cancelled)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_racing_the_finish_ends_in_exactly_one_final_state() {
    let db = TestDatabase::create().await;
    let (mut cancelled, mut completed) = (0, 0);
    for _ in 0..40 {
        let (task_id, _) = insert(&db, None).await;
        let mut conn = db.connection().await;
        let StartedTask::Running { rows, .. } =
            start::start_task(&mut conn, task_id, &planned(task_id), None)
                .await
                .expect("start")
        else {
            panic!("running");
        };
        let outcomes: Vec<_> = rows.iter().map(|row| (row.id, completed_call())).collect();
        let mut other = db.connection().await;
        let tenant = TenantName::default();
        let requests = [finish::FinishRequest {
            task_id,
            outcomes,
            fence: None,
        }];
        // The cancel as the API runs it: in a transaction, the task locked until it ends.
        let (stopped, finished) = tokio::join!(
            conn.transaction::<_, orchestrator_store::StoreError, _>(async |conn| {
                stop::cancel(conn, &tenant, task_id).await
            }),
            finish::finish_many(&mut other, &requests),
        );
        let stopped = stopped.expect("cancel");
        let finished = finished.expect("finish").remove(0).expect("finish");
        let task = tasks::find(&mut conn, task_id)
            .await
            .expect("read")
            .expect("task");
        let service_requests = statuses_of_service_requests(&db, task_id).await;
        match stopped {
            Stop::Stopped(_) => {
                cancelled += 1;
                assert_eq!(task.status, Status::Cancelled);
                assert_eq!(
                    finished,
                    Some(Status::Cancelled),
                    "the finish found it cancelled"
                );
                assert!(service_requests.iter().all(|s| *s == Status::Cancelled));
            }
            Stop::AlreadyFinal(status) => {
                completed += 1;
                assert_eq!(status, Status::Completed);
                assert_eq!(task.status, Status::Completed);
                assert_eq!(finished, Some(Status::Completed));
                assert!(service_requests.iter().all(|s| *s == Status::Completed));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(cancelled + completed, 40);
    // The counts the dashboard reads still match the rows.
    let mut conn = db.connection().await;
    let counts = dashboard::status_counts(&mut conn, &TenantName::default())
        .await
        .expect("counts");
    assert_eq!(counts.cancelled, cancelled);
    assert_eq!(counts.completed, completed);
    assert_eq!(counts.total(), 40);
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[tokio::test(flavor = "multi_thread")]
async fn the_status_constraints_take_cancelled_and_nothing_unknown() {
    let db = TestDatabase::create().await;
    let (task_id, _) = insert(&db, None).await;
    let mut conn = db.connection().await;
    // One constraint per table, validated; the four-status ones are gone.
    let Count { n } = diesel::sql_query(
        "SELECT count(*) AS n FROM pg_constraint \
         WHERE conname IN ('tasks_status_known', 'service_requests_status_known') \
           AND convalidated",
    )
    .get_result(&mut conn)
    .await
    .expect("catalogue");
    assert_eq!(n, 2);
    let Count { n } = diesel::sql_query(
        "SELECT count(*) AS n FROM pg_constraint \
         WHERE conname IN ('tasks_status_check', 'service_requests_status_check')",
    )
    .get_result(&mut conn)
    .await
    .expect("catalogue");
    assert_eq!(n, 0);
    let set = |status: &'static str| {
        diesel::sql_query("UPDATE tasks SET status = $1 WHERE task_id = $2")
            .bind::<Text, _>(status)
            .bind::<diesel::sql_types::Uuid, _>(task_id)
    };
    set("CANCELLED")
        .execute(&mut conn)
        .await
        .expect("CANCELLED is allowed");
    assert!(set("STOPPED").execute(&mut conn).await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_past_its_deadline_fails_at_start_without_calls() {
    let db = TestDatabase::create().await;
    let mut conn = db.connection().await;
    let task_id = Uuid::new_v4();
    let payload = request(1).payload_json();
    accept::insert(
        &mut conn,
        &accept::NewTask {
            task_id,
            task_name: "late",
            task_description: None,
            payload: &payload,
            idempotency_key: None,
            tenant: TenantName::DEFAULT,
            deadline_seconds: Some(5),
            deadline_at: Some(chrono::Utc::now() - chrono::TimeDelta::seconds(1)),
            callback_url: None,
            traceparent: None,
        },
    )
    .await
    .expect("insert");
    let started = start::start_task(&mut conn, task_id, &planned(task_id), None)
        .await
        .expect("start");
    assert_eq!(started, StartedTask::DeadlinePassed);
    let task = tasks::find(&mut conn, task_id)
        .await
        .expect("read")
        .expect("task");
    assert_eq!(task.status, Status::Failed);
    assert_eq!(
        task.error_message.as_deref(),
        Some("the task's deadline passed: it was not finished within 5 s")
    );
    assert!(statuses_of_service_requests(&db, task_id).await.is_empty());
    // Expire of a task without a deadline does nothing.
    let (other, _) = insert(&db, None).await;
    assert_eq!(
        stop::expire(&mut conn, other, None).await.expect("expire"),
        Stop::NotDue
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_listener_hears_stops_and_resyncs_after_losing_its_connection() {
    let db = TestDatabase::create().await;
    let stop_listening = CancellationToken::new();
    let listener = Listener::start(
        PgConnector::from_url(db.url()).expect("URL"),
        &[notify::TASKS_STOPPED],
        stop_listening.clone(),
    );
    let mut notices = listener.subscribe();
    let next = async |notices: &mut tokio::sync::broadcast::Receiver<Notice>| {
        tokio::time::timeout(Duration::from_secs(10), notices.recv())
            .await
            .expect("a notice in time")
            .expect("a notice")
    };
    assert_eq!(next(&mut notices).await, Notice::Resync, "first connection");

    let (task_id, _) = insert(&db, None).await;
    let mut conn = db.connection().await;
    stop::cancel(&mut conn, &TenantName::default(), task_id)
        .await
        .expect("cancel");
    let Notice::Tasks { channel, task_ids } = next(&mut notices).await else {
        panic!("a task notice");
    };
    assert_eq!(&*channel, notify::TASKS_STOPPED);
    assert_eq!(&*task_ids, &[task_id]);

    // Kill the listening connection: the listener reconnects and says to resync.
    let Count { n } = diesel::sql_query(
        "SELECT count(pg_terminate_backend(pid))::bigint AS n FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() \
           AND application_name = 'orchestrator-listener'",
    )
    .get_result(&mut conn)
    .await
    .expect("terminate");
    assert_eq!(n, 1, "one listening connection");
    assert_eq!(
        next(&mut notices).await,
        Notice::Resync,
        "after reconnecting"
    );
    // And hears again.
    let (again, _) = insert(&db, None).await;
    stop::cancel(&mut conn, &TenantName::default(), again)
        .await
        .expect("cancel");
    let Notice::Tasks { task_ids, .. } = next(&mut notices).await else {
        panic!("a task notice");
    };
    assert_eq!(&*task_ids, &[again]);
    stop_listening.cancel();
}
