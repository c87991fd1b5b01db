//! The lifecycle's hand-written batch statements are prepared once per connection and
//! reused, not parsed and planned at every batch.

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;
use orchestrator_store::leases::{self, Fence};
use orchestrator_store::lifecycle::start::start_tasks;
use orchestrator_store::lifecycle::{StartRequest, TaskToStart};
use orchestrator_store::{notify, webhooks};
use orchestrator_testkit::database::TestDatabase;
use uuid::Uuid;

#[derive(QueryableByName)]
struct Prepared {
    #[diesel(sql_type = Text)]
    statement: String,
    #[diesel(sql_type = BigInt)]
    calls: i64,
}

#[tokio::test]
async fn batch_statements_are_prepared_once_and_reused() {
    let db = TestDatabase::create().await;
    let mut conn = db.connection().await;
    leases::ensure_partitions(&mut conn, "prepared_test", 1)
        .await
        .expect("lease row");
    let lease = leases::acquire(
        &mut conn,
        "prepared_test",
        0,
        "me",
        std::time::Duration::from_secs(30),
    )
    .await
    .expect("acquire")
    .expect("granted");
    let fence = Fence {
        topic: "prepared_test".into(),
        partition: 0,
        epoch: lease.epoch,
        owner: "me".into(),
    };
    let plan = |task: &TaskToStart| Ok(crate::planned(task.state.task_id));
    for round in 0..3 {
        notify::send(&mut conn, "prepared_test", &[Uuid::new_v4()])
            .await
            .expect("notify");
        webhooks::claim_due(&mut conn, 10, std::time::Duration::from_secs(30))
            .await
            .expect("claim");
        leases::commit_offset(&mut conn, &fence, round)
            .await
            .expect("commit");
        // Batches of different sizes: the same statement whatever a batch holds.
        let mut batch = Vec::new();
        for _ in 0..=round {
            let (task_id, _) = crate::insert(&db, None).await;
            batch.push(StartRequest {
                task_id,
                fence: None,
            });
        }
        start_tasks(&mut conn, &batch, &plan).await.expect("start");
    }
    // `generic_plans + custom_plans`: how often each prepared statement ran (PG 14+).
    let prepared: Vec<Prepared> = diesel::sql_query(
        "SELECT statement, generic_plans + custom_plans AS calls FROM pg_prepared_statements \
         WHERE (statement LIKE '%pg_notify%' OR statement LIKE 'UPDATE webhook_deliveries%' \
                OR statement LIKE 'UPDATE partition_leases%' \
                OR statement LIKE 'INSERT INTO service_requests%') \
           AND statement NOT LIKE '%pg_prepared_statements%'",
    )
    .load(&mut conn)
    .await
    .expect("prepared statements");
    assert_eq!(prepared.len(), 4, "one each: {:?}", names(&prepared));
    for statement in &prepared {
        assert_eq!(statement.calls, 3, "{}", statement.statement);
    }
}

fn names(prepared: &[Prepared]) -> Vec<&str> {
    prepared.iter().map(|p| p.statement.as_str()).collect()
}
