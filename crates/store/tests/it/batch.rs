//! The batched writes of the worker's group commit: each request in a batch gets the
//! answer its one-task counterpart would give, and a fenced request changes nothing
//! while the others of its batch go ahead.

use std::time::Duration;

use orchestrator_core::{OrchestrationRequest, Status, plan_items};
use orchestrator_store::leases::{self, Fence};
use orchestrator_store::lifecycle::finish::finish_many;
use orchestrator_store::lifecycle::record::record_many;
use orchestrator_store::lifecycle::start::start_tasks;
use orchestrator_store::lifecycle::{
    FinishRequest, FinishedServiceRequest, RecordRequest, StartRequest, StartedTask, TaskToStart,
};
use orchestrator_store::service_requests;
use orchestrator_store::{StoreError, tasks};
use orchestrator_testkit::database::TestDatabase;
use uuid::Uuid;

const TOPIC: &str = "orchestrator-events";

fn finished(status: Status) -> FinishedServiceRequest {
    FinishedServiceRequest {
        status,
        attempts: 2,
        response_payload: (status == Status::Completed)
            .then(|| orchestrator_core::RawJson::from_value(&serde_json::json!({"ok": true}))),
        error_message: (status == Status::Failed).then(|| "HTTP 500: boom".to_owned()),
        started_at: chrono::Utc::now(),
        completed_at: chrono::Utc::now(),
        failed_attempts: Vec::new(),
    }
}

/// A fence this worker holds (partition 0) and one whose epoch has moved on
/// (partition 1).
async fn held_and_stale_fences(conn: &mut orchestrator_store::AsyncPgConnection) -> (Fence, Fence) {
    leases::ensure_partitions(conn, TOPIC, 2)
        .await
        .expect("rows");
    let held = leases::acquire(conn, TOPIC, 0, "me", Duration::from_secs(30))
        .await
        .expect("query")
        .expect("granted");
    let held = Fence {
        topic: TOPIC.into(),
        partition: 0,
        epoch: held.epoch,
        owner: "me".into(),
    };
    let stale = Fence {
        topic: TOPIC.into(),
        partition: 1,
        epoch: 7,
        owner: "me".into(),
    };
    (held, stale)
}

#[tokio::test]
async fn a_batch_starts_records_and_settles_many_tasks_and_fences_only_the_stale() {
    let db = TestDatabase::create().await;
    let mut conn = db.connection().await;
    let (held, stale) = held_and_stale_fences(&mut conn).await;

    let (good, _) = crate::insert(&db, None).await;
    let (other, _) = crate::insert(&db, None).await;
    let (fenced, _) = crate::insert(&db, None).await;
    let missing = Uuid::new_v4();
    let start = |task_id, fence: &Fence| StartRequest {
        task_id,
        fence: Some(fence.clone()),
    };
    let plan = |task: &TaskToStart| Ok(crate::planned(task.state.task_id));
    let started = start_tasks(
        &mut conn,
        &[
            start(good, &held),
            start(other, &held),
            start(fenced, &stale),
            start(missing, &held),
            // A duplicate record of the same task: same rows, created once.
            start(good, &held),
        ],
        &plan,
    )
    .await
    .expect("batch");
    let rows_of = |answer: &Result<StartedTask, StoreError>| match answer {
        Ok(StartedTask::Running { rows, .. }) => rows.clone(),
        other => panic!("expected running, got {other:?}"),
    };
    let good_rows = rows_of(&started[0]);
    let other_rows = rows_of(&started[1]);
    assert_eq!(good_rows.len(), 2);
    assert_eq!(other_rows.len(), 2);
    assert!(matches!(
        started[2],
        Err(StoreError::Fenced { partition: 1, .. })
    ));
    assert!(matches!(started[3], Ok(StartedTask::NotFound)));
    assert_eq!(rows_of(&started[4]), good_rows);
    assert_eq!(db.count_rows("service_requests").await, 4);
    // Rows created by the start are answered without being read back: they must be
    // exactly what was stored.
    assert_eq!(
        good_rows,
        service_requests::list_for_task(&mut conn, good)
            .await
            .expect("list")
    );
    assert!(good_rows.iter().all(|sr| sr.status == Status::InProgress));
    let fenced_task = tasks::find(&mut conn, fenced)
        .await
        .expect("q")
        .expect("row");
    assert_eq!(
        fenced_task.status,
        Status::Pending,
        "a fenced start changes nothing"
    );

    let record = |id, status, fence: &Fence| RecordRequest {
        id,
        finished: finished(status),
        fence: Some(fence.clone()),
    };
    let recorded = record_many(
        &mut conn,
        &[
            record(good_rows[0].id, Status::Completed, &held),
            record(good_rows[1].id, Status::Completed, &held),
            record(other_rows[0].id, Status::Completed, &held),
            record(other_rows[1].id, Status::Failed, &held),
            record(other_rows[1].id, Status::Completed, &stale),
            // Twice in one batch: the first writes, the second finds it done.
            record(good_rows[0].id, Status::Completed, &held),
        ],
    )
    .await
    .expect("batch");
    assert!(matches!(
        recorded[..4],
        [Ok(true), Ok(true), Ok(true), Ok(true)]
    ));
    assert!(matches!(recorded[4], Err(StoreError::Fenced { .. })));
    assert!(matches!(recorded[5], Ok(false)));

    let settle = |task_id, fence: &Fence| FinishRequest {
        task_id,
        outcomes: Vec::new(),
        fence: Some(fence.clone()),
    };
    let settled = finish_many(
        &mut conn,
        &[
            settle(good, &held),
            settle(other, &held),
            settle(other, &stale),
        ],
    )
    .await
    .expect("batch");
    assert!(matches!(settled[0], Ok(Some(Status::Completed))));
    assert!(matches!(settled[1], Ok(Some(Status::Failed))));
    assert!(matches!(settled[2], Err(StoreError::Fenced { .. })));

    let other_task = tasks::find(&mut conn, other)
        .await
        .expect("q")
        .expect("row");
    assert_eq!(other_task.status, Status::Failed);
    assert!(
        other_task
            .error_message
            .as_deref()
            .is_some_and(|m| m.contains("HTTP 500: boom")),
        "{other_task:?}"
    );
    let stored = service_requests::list_for_task(&mut conn, other)
        .await
        .expect("list");
    assert!(
        stored
            .iter()
            .all(|sr| sr.attempts == 2 && sr.completed_at.is_some())
    );
    assert!(stored.iter().any(|sr| sr.response_payload.is_some()));
}

#[tokio::test]
async fn a_finish_records_outcomes_and_settles_in_one_go_and_a_fenced_one_changes_nothing() {
    let db = TestDatabase::create().await;
    let mut conn = db.connection().await;
    let (held, stale) = held_and_stale_fences(&mut conn).await;
    let (done, _) = crate::insert(&db, None).await;
    let (half, _) = crate::insert(&db, None).await;
    let (fenced, _) = crate::insert(&db, None).await;
    let plan = |task: &TaskToStart| Ok(crate::planned(task.state.task_id));
    let started = start_tasks(
        &mut conn,
        &[done, half, fenced].map(|task_id| StartRequest {
            task_id,
            fence: Some(held.clone()),
        }),
        &plan,
    )
    .await
    .expect("batch");
    let rows: Vec<Vec<_>> = started
        .into_iter()
        .map(|answer| match answer {
            Ok(StartedTask::Running { rows, .. }) => rows,
            other => panic!("expected running, got {other:?}"),
        })
        .collect();

    let outcomes = |rows: &[orchestrator_store::ServiceRequestRow]| {
        rows.iter()
            .map(|sr| (sr.id, finished(Status::Completed)))
            .collect::<Vec<_>>()
    };
    let finished_answers = finish_many(
        &mut conn,
        &[
            FinishRequest {
                task_id: done,
                outcomes: outcomes(&rows[0]),
                fence: Some(held.clone()),
            },
            // One of two outcomes: the task keeps running.
            FinishRequest {
                task_id: half,
                outcomes: outcomes(&rows[1][..1]),
                fence: Some(held.clone()),
            },
            FinishRequest {
                task_id: fenced,
                outcomes: outcomes(&rows[2]),
                fence: Some(stale.clone()),
            },
        ],
    )
    .await
    .expect("batch");
    assert!(matches!(finished_answers[0], Ok(Some(Status::Completed))));
    assert!(matches!(finished_answers[1], Ok(Some(Status::InProgress))));
    assert!(matches!(
        finished_answers[2],
        Err(StoreError::Fenced { partition: 1, .. })
    ));

    let stored = |task_id| {
        let db = &db;
        async move {
            let mut conn = db.connection().await;
            service_requests::list_for_task(&mut conn, task_id)
                .await
                .expect("list")
        }
    };
    assert!(
        stored(done)
            .await
            .iter()
            .all(|sr| sr.status == Status::Completed && sr.response_payload.is_some())
    );
    let half_rows = stored(half).await;
    assert_eq!(
        half_rows
            .iter()
            .filter(|sr| sr.status == Status::Completed)
            .count(),
        1
    );
    assert!(
        stored(fenced)
            .await
            .iter()
            .all(|sr| sr.status == Status::InProgress),
        "a fenced finish records nothing"
    );
    let status_of = |task_id| {
        let db = &db;
        async move {
            let mut conn = db.connection().await;
            tasks::find(&mut conn, task_id)
                .await
                .expect("q")
                .expect("row")
                .status
        }
    };
    assert_eq!(status_of(done).await, Status::Completed);
    assert_eq!(status_of(half).await, Status::InProgress);
    assert_eq!(status_of(fenced).await, Status::InProgress);
}

#[tokio::test]
async fn a_start_the_planner_refuses_fails_the_task_with_the_reason() {
    let db = TestDatabase::create().await;
    let mut conn = db.connection().await;
    let (refused, _) = crate::insert(&db, None).await;
    let (fine, _) = crate::insert(&db, None).await;
    // The other is planned from what it stored, as a worker plans it.
    let plan = |task: &TaskToStart| {
        if task.state.task_id == refused {
            Err("the stored request names an unknown service".to_owned())
        } else {
            let items =
                OrchestrationRequest::parse_stored_payload(task.payload.get(), &crate::limits())
                    .map_err(|errors| errors.to_string())?;
            assert_eq!(items, crate::request(1).items);
            Ok(plan_items(task.state.task_id, &items))
        }
    };
    let started = start_tasks(
        &mut conn,
        &[refused, fine].map(|task_id| StartRequest {
            task_id,
            fence: None,
        }),
        &plan,
    )
    .await
    .expect("batch");
    assert_eq!(
        started[0].as_ref().expect("answer"),
        &StartedTask::Rejected("the stored request names an unknown service".to_owned())
    );
    assert!(matches!(started[1], Ok(StartedTask::Running { ref rows, .. }) if rows.len() == 2));
    let task = tasks::find(&mut conn, refused)
        .await
        .expect("q")
        .expect("row");
    assert_eq!(task.status, Status::Failed);
    assert_eq!(
        task.error_message.as_deref(),
        Some("the stored request names an unknown service")
    );
    assert!(
        service_requests::list_for_task(&mut conn, refused)
            .await
            .expect("list")
            .is_empty()
    );
    // Failed is final: starting it again finds it finished.
    let again = start_tasks(
        &mut conn,
        &[StartRequest {
            task_id: refused,
            fence: None,
        }],
        &plan,
    )
    .await
    .expect("batch");
    assert!(matches!(
        again[0],
        Ok(StartedTask::AlreadyFinished(Status::Failed))
    ));
}
