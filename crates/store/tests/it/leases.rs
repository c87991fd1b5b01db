//! The lease protocol of the worker replicas, against a real database.

use std::time::Duration;

use orchestrator_core::Status;
use orchestrator_store::leases::{self, Fence};
use orchestrator_store::lifecycle::{FinishedServiceRequest, StartedTask, finish, record, start};
use orchestrator_store::service_requests;
use orchestrator_store::{StoreError, tasks};
use orchestrator_testkit::database::TestDatabase;

const TOPIC: &str = "orchestrator-events";
const TTL: Duration = Duration::from_secs(10);

fn fence(owner: &str, partition: i32, epoch: i64) -> Fence {
    Fence {
        topic: TOPIC.into(),
        partition,
        epoch,
        owner: owner.into(),
    }
}

#[tokio::test]
async fn a_held_lease_is_exclusive_and_every_takeover_moves_the_epoch() {
    let db = TestDatabase::create().await;
    let mut conn = db.connection().await;
    leases::ensure_partitions(&mut conn, TOPIC, 4)
        .await
        .expect("rows");
    leases::ensure_partitions(&mut conn, TOPIC, 4)
        .await
        .expect("idempotent");
    assert_eq!(leases::list(&mut conn, TOPIC).await.expect("list").len(), 4);

    let a = leases::acquire(&mut conn, TOPIC, 2, "a", TTL)
        .await
        .expect("query")
        .expect("free lease is granted");
    assert_eq!((a.partition, a.epoch, a.committed_offset), (2, 1, 0));
    assert_eq!(
        leases::acquire(&mut conn, TOPIC, 2, "b", TTL)
            .await
            .expect("query"),
        None,
        "a live lease of another replica is not granted"
    );

    // Released: the next owner gets it at once, under a new epoch.
    assert!(
        leases::release(&mut conn, &fence("a", 2, 1))
            .await
            .expect("release")
    );
    let b = leases::acquire(&mut conn, TOPIC, 2, "b", TTL)
        .await
        .expect("query")
        .expect("released lease is granted");
    assert_eq!(b.epoch, 2);
    // The old owner's release is now a no-op.
    assert!(
        !leases::release(&mut conn, &fence("a", 2, 1))
            .await
            .expect("release")
    );
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_and_the_old_owner_is_fenced() {
    let db = TestDatabase::create().await;
    let mut conn = db.connection().await;
    leases::ensure_partitions(&mut conn, TOPIC, 1)
        .await
        .expect("rows");

    // A zero TTL expires at once: the owner "paused" past its lease.
    let old = leases::acquire(&mut conn, TOPIC, 0, "old", Duration::ZERO)
        .await
        .expect("query")
        .expect("granted");
    leases::commit_offset(&mut conn, &fence("old", 0, old.epoch), 7)
        .await
        .expect("the owner commits while nobody took over");

    let new = leases::acquire(&mut conn, TOPIC, 0, "new", TTL)
        .await
        .expect("query")
        .expect("an expired lease is granted");
    assert_eq!(new.epoch, old.epoch + 1);
    assert_eq!(
        new.committed_offset, 7,
        "the new owner resumes where the old committed"
    );

    // The old owner wakes up: its commit and its renewal are refused.
    let refused = leases::commit_offset(&mut conn, &fence("old", 0, old.epoch), 9).await;
    assert!(
        matches!(refused, Err(StoreError::Fenced { partition: 0, .. })),
        "{refused:?}"
    );
    let renewed = leases::renew(&mut conn, TOPIC, "old", &[(0, old.epoch)], TTL)
        .await
        .expect("query");
    assert!(renewed.is_empty());
    assert_eq!(
        leases::renew(&mut conn, TOPIC, "new", &[(0, new.epoch)], TTL)
            .await
            .expect("query"),
        vec![0]
    );

    // Offsets never move back.
    leases::commit_offset(&mut conn, &fence("new", 0, new.epoch), 5)
        .await
        .expect("commit");
    let row = &leases::list(&mut conn, TOPIC).await.expect("list")[0];
    assert_eq!(
        (row.owner.as_deref(), row.committed_offset),
        (Some("new"), 7)
    );
}

#[tokio::test]
async fn a_log_loss_moves_the_offset_back_with_a_debt_that_outlives_its_owner() {
    let db = TestDatabase::create().await;
    let mut conn = db.connection().await;
    leases::ensure_partitions(&mut conn, TOPIC, 1)
        .await
        .expect("rows");
    let first = leases::acquire(&mut conn, TOPIC, 0, "first", Duration::ZERO)
        .await
        .expect("query")
        .expect("granted");
    assert_eq!(first.lost_records(), None);
    let first_fence = fence("first", 0, first.epoch);
    leases::commit_offset(&mut conn, &first_fence, 40)
        .await
        .expect("commit");

    // Records expired: the log now starts at 100 and ends at 130.
    let lost = leases::reset_offset(&mut conn, &first_fence, 100, 130)
        .await
        .expect("reset");
    assert_eq!(lost.recover_at_offset, 130);
    let row = &leases::list(&mut conn, TOPIC).await.expect("list")[0];
    assert_eq!(
        (row.committed_offset, row.lost_before, row.recover_at_offset),
        (100, Some(lost.before), Some(130))
    );
    leases::reset_offset(&mut conn, &first_fence, 3, 5)
        .await
        .expect("a recreated log moves it back");
    let row = &leases::list(&mut conn, TOPIC).await.expect("list")[0];
    assert_eq!((row.committed_offset, row.recover_at_offset), (3, Some(5)));
    let widened = row.lost_before.expect("still owed");
    assert!(widened >= lost.before, "the debt only grows");

    // The owner dies before running the lost tasks: the next one inherits the debt.
    let next = leases::acquire(&mut conn, TOPIC, 0, "next", TTL)
        .await
        .expect("query")
        .expect("an expired lease is granted");
    let owed = next.lost_records().expect("the debt came with the lease");
    assert_eq!((owed.before, owed.recover_at_offset), (widened, 5));
    let refused = leases::clear_lost_records(&mut conn, &first_fence, &owed).await;
    assert!(
        matches!(refused, Err(StoreError::Fenced { .. })),
        "{refused:?}"
    );
    let refused = leases::reset_offset(&mut conn, &first_fence, 0, 0).await;
    assert!(
        matches!(refused, Err(StoreError::Fenced { .. })),
        "{refused:?}"
    );

    // Clearing an older debt than the one recorded leaves the newer one.
    let next_fence = fence("next", 0, next.epoch);
    leases::clear_lost_records(&mut conn, &next_fence, &lost)
        .await
        .expect("clear");
    assert_eq!(
        leases::list(&mut conn, TOPIC).await.expect("list")[0].lost_before,
        Some(widened)
    );
    leases::clear_lost_records(&mut conn, &next_fence, &owed)
        .await
        .expect("clear");
    let row = &leases::list(&mut conn, TOPIC).await.expect("list")[0];
    assert_eq!((row.lost_before, row.recover_at_offset), (None, None));
    assert_eq!(row.committed_offset, 3);
}

#[tokio::test]
async fn result_writes_of_a_fenced_owner_are_refused() {
    let db = TestDatabase::create().await;
    let mut conn = db.connection().await;
    leases::ensure_partitions(&mut conn, TOPIC, 1)
        .await
        .expect("rows");
    let (task_id, _) = crate::insert(&db, None).await;
    let planned = crate::planned(task_id);

    let old = leases::acquire(&mut conn, TOPIC, 0, "old", Duration::ZERO)
        .await
        .expect("query")
        .expect("granted");
    let old_fence = fence("old", 0, old.epoch);
    let StartedTask::Running { rows, .. } =
        start::start_task(&mut conn, task_id, &planned, Some(&old_fence))
            .await
            .expect("start under a valid lease")
    else {
        panic!("task should run");
    };

    let new = leases::acquire(&mut conn, TOPIC, 0, "new", TTL)
        .await
        .expect("query")
        .expect("granted");
    let finished = FinishedServiceRequest {
        status: Status::Completed,
        attempts: 1,
        response_payload: Some(orchestrator_core::RawJson::from_value(
            &serde_json::json!({"ok": true}),
        )),
        error_message: None,
        started_at: chrono::Utc::now(),
        completed_at: chrono::Utc::now(),
        failed_attempts: Vec::new(),
    };
    let refused = record::record_finished(&mut conn, rows[0].id, &finished, Some(&old_fence)).await;
    assert!(
        matches!(refused, Err(StoreError::Fenced { .. })),
        "{refused:?}"
    );
    let refused = finish::settle(&mut conn, task_id, Some(&old_fence)).await;
    assert!(
        matches!(refused, Err(StoreError::Fenced { .. })),
        "{refused:?}"
    );
    let refused = start::start_task(&mut conn, task_id, &planned, Some(&old_fence)).await;
    assert!(
        matches!(refused, Err(StoreError::Fenced { .. })),
        "{refused:?}"
    );

    // Nothing of the old owner landed; the new owner writes fine.
    let stored = service_requests::list_for_task(&mut conn, task_id)
        .await
        .expect("list");
    assert!(stored.iter().all(|sr| sr.status == Status::InProgress));
    assert!(
        record::record_finished(
            &mut conn,
            rows[0].id,
            &finished,
            Some(&fence("new", 0, new.epoch))
        )
        .await
        .expect("new owner writes")
    );
    let task = tasks::find(&mut conn, task_id)
        .await
        .expect("find")
        .expect("exists");
    assert_eq!(task.status, Status::InProgress);
}

#[tokio::test]
async fn members_expire_and_leaving_releases_every_lease() {
    let db = TestDatabase::create().await;
    let mut conn = db.connection().await;
    leases::ensure_partitions(&mut conn, TOPIC, 3)
        .await
        .expect("rows");

    let members = leases::heartbeat_member(&mut conn, TOPIC, "b", TTL)
        .await
        .expect("hb");
    assert_eq!(members, vec!["b".to_owned()]);
    // "dead" registers with a lease that is already over: the next heartbeat drops it.
    leases::heartbeat_member(&mut conn, TOPIC, "dead", Duration::ZERO)
        .await
        .expect("hb");
    let members = leases::heartbeat_member(&mut conn, TOPIC, "a", TTL)
        .await
        .expect("hb");
    assert_eq!(members, vec!["a".to_owned(), "b".to_owned()]);

    for p in 0..3 {
        leases::acquire(&mut conn, TOPIC, p, "a", TTL)
            .await
            .expect("query")
            .expect("granted");
    }
    leases::leave(&mut conn, TOPIC, "a").await.expect("leave");
    let rows = leases::list(&mut conn, TOPIC).await.expect("list");
    assert!(
        rows.iter()
            .all(|row| row.owner.is_none() && row.expires_at.is_none())
    );
    let members = leases::heartbeat_member(&mut conn, TOPIC, "b", TTL)
        .await
        .expect("hb");
    assert_eq!(members, vec!["b".to_owned()]);
}
