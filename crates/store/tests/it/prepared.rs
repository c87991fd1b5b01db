//! The lifecycle's hand-written batch statements are prepared once per connection and
//! reused, not parsed and planned at every batch.

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;
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
    for _ in 0..3 {
        notify::send(&mut conn, "prepared_test", &[Uuid::new_v4()])
            .await
            .expect("notify");
        webhooks::claim_due(&mut conn, 10, std::time::Duration::from_secs(30))
            .await
            .expect("claim");
    }
    // `generic_plans + custom_plans`: how often each prepared statement ran (PG 14+).
    let prepared: Vec<Prepared> = diesel::sql_query(
        "SELECT statement, generic_plans + custom_plans AS calls FROM pg_prepared_statements \
         WHERE (statement LIKE '%pg_notify%' OR statement LIKE 'UPDATE webhook_deliveries%') \
           AND statement NOT LIKE '%pg_prepared_statements%'",
    )
    .load(&mut conn)
    .await
    .expect("prepared statements");
    assert_eq!(prepared.len(), 2, "one each: {:?}", names(&prepared));
    for statement in &prepared {
        assert_eq!(statement.calls, 3, "{}", statement.statement);
    }
}

fn names(prepared: &[Prepared]) -> Vec<&str> {
    prepared.iter().map(|p| p.statement.as_str()).collect()
}
