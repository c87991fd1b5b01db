//! The batched writes of the worker's group commit: each request in a batch gets the
//! answer its one-task counterpart would give, and a fenced request changes nothing
//! while the others of its batch go ahead.

use std::time::Duration;

use orchestrator_core::Status;
use orchestrator_store::batch::{
    RecordRequest, SettleRequest, StartRequest, record_many, settle_many, start_tasks,
};
use orchestrator_store::leases::{self, Fence};
use orchestrator_store::service_requests::{self, FinishedServiceRequest, StartedTask};
use orchestrator_store::{StoreError, tasks};
use orchestrator_testkit::database::TestDatabase;
use uuid::Uuid;

const TOPIC: &str = "orchestrator-events";

fn finished(status: Status) -> FinishedServiceRequest {
    FinishedServiceRequest {
        status,
        attempts: 2,
        response_payload: (status == Status::Completed).then(|| serde_json::json!({"ok": true})),
        error_message: (status == Status::Failed).then(|| "HTTP 500: boom".to_owned()),
        started_at: chrono::Utc::now(),
        completed_at: chrono::Utc::now(),
    }
}

#[tokio::test]
async fn a_batch_starts_records_and_settles_many_tasks_and_fences_only_the_stale() {
    let db = TestDatabase::create().await;
    let mut conn = db.connection().await;
    leases::ensure_partitions(&mut conn, TOPIC, 2)
        .await
        .expect("rows");
    let held = leases::acquire(&mut conn, TOPIC, 0, "me", Duration::from_secs(30))
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

    let (good, _) = crate::insert(&db, None).await;
    let (other, _) = crate::insert(&db, None).await;
    let (fenced, _) = crate::insert(&db, None).await;
    let missing = Uuid::new_v4();
    let start = |task_id, fence: &Fence| StartRequest {
        task_id,
        planned: crate::planned(task_id),
        fence: Some(fence.clone()),
    };
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
    )
    .await
    .expect("batch");
    let rows_of = |answer: &Result<StartedTask, StoreError>| match answer {
        Ok(StartedTask::Running(rows)) => rows.clone(),
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

    let settle = |task_id, fence: &Fence| SettleRequest {
        task_id,
        fence: Some(fence.clone()),
    };
    let settled = settle_many(
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
