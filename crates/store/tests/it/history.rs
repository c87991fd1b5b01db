//! What a retry or a re-drive would otherwise overwrite: each failed attempt of a
//! service request, numbered over all its runs, and each earlier failure of a task.

use chrono::{Duration, Utc};
use orchestrator_core::Status;
use orchestrator_store::lifecycle::{
    FailedAttempt, FinishedServiceRequest, Redrive, StartedTask, finish, record, redrive, start,
};
use orchestrator_store::service_requests;
use orchestrator_store::tasks;
use orchestrator_testkit::database::TestDatabase;

fn failure(number: i32, status_code: Option<i32>) -> FailedAttempt {
    FailedAttempt {
        number,
        started_at: Utc::now(),
        duration_ms: 12,
        status_code,
        error: status_code.map_or_else(
            || "timed out after 10 ms".into(),
            |c| format!("HTTP {c}: no"),
        ),
    }
}

fn outcome(
    status: Status,
    attempts: i32,
    failed_attempts: Vec<FailedAttempt>,
) -> FinishedServiceRequest {
    FinishedServiceRequest {
        status,
        attempts,
        response_payload: (status == Status::Completed)
            .then(|| orchestrator_core::RawJson::from_value(&serde_json::json!({"ok": true}))),
        error_message: (status == Status::Failed).then(|| "HTTP 503: no".to_owned()),
        started_at: Utc::now(),
        completed_at: Utc::now(),
        failed_attempts,
    }
}

#[tokio::test]
async fn failed_attempts_are_numbered_over_runs_and_earlier_failures_are_kept() {
    let db = TestDatabase::create().await;
    let mut conn = db.connection().await;
    let (task_id, _) = crate::insert(&db, None).await;
    let planned = crate::planned(task_id);
    let StartedTask::Running { rows, .. } = start::start_task(&mut conn, task_id, &planned, None)
        .await
        .expect("start")
    else {
        panic!("the task runs");
    };
    let (flaky, fine) = (&rows[0], &rows[1]);

    // The normal path writes no history: a request that succeeds at once.
    assert!(
        record::record_finished(
            &mut conn,
            fine.id,
            &outcome(Status::Completed, 1, vec![]),
            None
        )
        .await
        .expect("record")
    );
    assert_eq!(db.count_rows("service_request_attempts").await, 0);

    // The other fails for good after two attempts.
    let failed = outcome(
        Status::Failed,
        2,
        vec![failure(1, Some(503)), failure(2, None)],
    );
    assert!(
        record::record_finished(&mut conn, flaky.id, &failed, None)
            .await
            .expect("record")
    );
    // Recorded once: a duplicate outcome adds no second history.
    assert!(
        !record::record_finished(&mut conn, flaky.id, &failed, None)
            .await
            .expect("record")
    );
    assert_eq!(
        finish::settle(&mut conn, task_id, None)
            .await
            .expect("settle"),
        Some(Status::Failed)
    );
    let failed_task = tasks::find(&mut conn, task_id)
        .await
        .expect("q")
        .expect("row");

    // Another tenant cannot re-drive it: not found, as if it did not exist.
    let other = orchestrator_core::TenantName::parse("other").expect("tenant");
    assert_eq!(
        redrive::redrive(&mut conn, &other, task_id)
            .await
            .expect("redrive"),
        Redrive::NotFound
    );

    // Re-driven: the failure is kept, with when it happened and its error.
    assert_eq!(
        redrive::redrive(
            &mut conn,
            &orchestrator_core::TenantName::default(),
            task_id
        )
        .await
        .expect("redrive"),
        Redrive::Reopened {
            service_requests: 1,
            traceparent: None,
        }
    );
    let redrives = tasks::redrives(&mut conn, task_id).await.expect("redrives");
    assert_eq!(redrives.len(), 1);
    assert_eq!(redrives[0].redrive, 1);
    assert_eq!(redrives[0].failed_at, failed_task.updated_at);
    assert_eq!(redrives[0].error_message, failed_task.error_message);
    assert!(redrives[0].redriven_at >= redrives[0].failed_at);
    assert!(redrives[0].redriven_at - Utc::now() < Duration::seconds(60));

    // The second run fails once more, then succeeds: its failure is attempt 3.
    let StartedTask::Running { rows: again, .. } =
        start::start_task(&mut conn, task_id, &planned, None)
            .await
            .expect("start")
    else {
        panic!("the task runs again");
    };
    assert_eq!(again.len(), 1);
    assert!(
        record::record_finished(
            &mut conn,
            flaky.id,
            &outcome(Status::Completed, 2, vec![failure(1, Some(500))]),
            None
        )
        .await
        .expect("record")
    );
    let attempts = service_requests::failed_attempts_for_task(&mut conn, task_id)
        .await
        .expect("attempts");
    let summary: Vec<(i32, Option<i32>)> = attempts
        .iter()
        .map(|a| (a.attempt, a.status_code))
        .collect();
    assert_eq!(summary, [(1, Some(503)), (2, None), (3, Some(500))]);
    assert!(attempts.iter().all(|a| a.service_request_id == flaky.id));
    assert_eq!(attempts[1].error, "timed out after 10 ms");
    assert_eq!(attempts[0].duration_ms, 12);
}
