//! Retention: finished tasks past their tenant's period are removed with every row about
//! them, and nothing else is; counts per status still match the table; one process at a
//! time runs the job; `orchestrator-api retention run` does a pass by hand.

use std::collections::BTreeSet;
use std::process::Command;

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;
use orchestrator_api::retention::{PassOutcome, RetentionConfig, RetentionJob};
use orchestrator_core::{RetentionPeriod, TenantRetention};
use orchestrator_store::retention::{self, RETENTION_JOB};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::helpers::{TestApp, request_named};

fn config(period: &str, by_tenant: &str, batch: i64) -> RetentionConfig {
    RetentionConfig {
        period: RetentionPeriod::parse(period).expect("period"),
        by_tenant: TenantRetention::parse(by_tenant).expect("tenant periods"),
        interval_secs: 60,
        batch,
    }
}

/// An app whose own retention job never runs: the tests run passes themselves.
async fn app_without_retention() -> TestApp {
    TestApp::spawn_with(|config| config.retention.period = RetentionPeriod::FOREVER).await
}

/// Submits `n` tasks and waits until each is final; their ids.
async fn finished_tasks(app: &TestApp, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let response = app
            .post_json(
                "/api/orchestrate",
                &request_named(&format!("kept-or-not-{i}")),
            )
            .await;
        assert_eq!(response.status(), 202);
        let body: Value = response.json().await.expect("json");
        let id = body["task_id"].as_str().expect("task_id").to_owned();
        app.wait_until_finished(&id).await;
        ids.push(id);
    }
    ids
}

async fn execute(app: &TestApp, sql: &str) {
    let mut conn = app.db.connection().await;
    diesel::sql_query(sql)
        .execute(&mut conn)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = Text)]
    id: String,
}

async fn ids(app: &TestApp, sql: &str) -> BTreeSet<String> {
    let mut conn = app.db.connection().await;
    let rows: Vec<IdRow> = diesel::sql_query(sql)
        .load(&mut conn)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
    rows.into_iter().map(|row| row.id).collect()
}

#[derive(QueryableByName, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct CountRow {
    #[diesel(sql_type = Text)]
    tenant: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// The counts the dashboard reads (task_status_counts) and count(*) of the table.
async fn counts_and_table(app: &TestApp) -> (Vec<CountRow>, Vec<CountRow>) {
    let mut conn = app.db.connection().await;
    let kept: Vec<CountRow> = diesel::sql_query(
        "SELECT tenant, status, sum(delta)::bigint AS n FROM task_status_counts
          GROUP BY tenant, status HAVING sum(delta) <> 0 ORDER BY tenant, status",
    )
    .load(&mut conn)
    .await
    .expect("counts");
    let table: Vec<CountRow> = diesel::sql_query(
        "SELECT tenant, status, count(*) AS n FROM tasks GROUP BY tenant, status
          ORDER BY tenant, status",
    )
    .load(&mut conn)
    .await
    .expect("table counts");
    (kept, table)
}

fn list(ids: &[&String]) -> String {
    ids.iter()
        .map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(",")
}

#[tokio::test]
async fn finished_tasks_past_their_period_go_with_every_row_about_them_and_nothing_else_does() {
    let app = app_without_retention().await;
    let t = finished_tasks(&app, 9).await;
    // t0..t2: finished two hours ago (COMPLETED, FAILED, CANCELLED): removed.
    // t3: unfinished (PENDING) and old; t4: IN_PROGRESS and old: kept however old.
    // t5: finished ten minutes ago: kept.
    // t6: finished long ago but its webhook is still being delivered: kept.
    // t7: finished long ago with a delivered webhook and a re-drive: removed.
    // t8: tenant `acme` (period 3 hours), finished two hours ago: kept.
    execute(
        &app,
        &format!(
            "UPDATE tasks SET status = 'FAILED' WHERE task_id = '{}'",
            t[1]
        ),
    )
    .await;
    execute(
        &app,
        &format!(
            "UPDATE tasks SET status = 'CANCELLED' WHERE task_id = '{}'",
            t[2]
        ),
    )
    .await;
    execute(
        &app,
        &format!(
            "UPDATE tasks SET status = 'PENDING' WHERE task_id = '{}'",
            t[3]
        ),
    )
    .await;
    execute(
        &app,
        &format!(
            "UPDATE tasks SET status = 'IN_PROGRESS' WHERE task_id = '{}'",
            t[4]
        ),
    )
    .await;
    execute(
        &app,
        &format!(
            "UPDATE tasks SET tenant = 'acme' WHERE task_id = '{}'",
            t[8]
        ),
    )
    .await;
    execute(
        &app,
        &format!(
            "UPDATE tasks SET updated_at = now() - interval '2 hours', created_at = now() - interval '3 hours'
              WHERE task_id IN ({})",
            list(&[&t[0], &t[1], &t[2], &t[3], &t[4], &t[6], &t[7], &t[8]])
        ),
    )
    .await;
    execute(
        &app,
        &format!(
            "UPDATE tasks SET updated_at = now() - interval '10 minutes' WHERE task_id = '{}'",
            t[5]
        ),
    )
    .await;
    for (task, delivered) in [(&t[6], "NULL"), (&t[7], "now()")] {
        execute(
            &app,
            &format!(
                "INSERT INTO webhook_deliveries (id, task_id, tenant, url, payload, delivered_at)
                 VALUES (gen_random_uuid(), '{task}', 'default', 'https://example.test/hook', '{{}}', {delivered})"
            ),
        )
        .await;
    }
    execute(&app, &format!(
        "INSERT INTO task_redrives (task_id, redrive, failed_at) VALUES ('{}', 1, now() - interval '3 hours')", t[7]
    )).await;
    // A failed attempt before success, kept for each of t0's and t5's service requests.
    execute(&app, &format!(
        "INSERT INTO service_request_attempts (service_request_id, attempt, started_at, duration_ms, status_code, error)
         SELECT id, 1, now(), 5, 503, 'HTTP 503' FROM service_requests WHERE task_id IN ('{}', '{}')", t[0], t[5]
    )).await;
    let removed_ids = [&t[0], &t[1], &t[2], &t[7]];
    let before_requests = ids(
        &app,
        &format!(
            "SELECT id::text AS id FROM service_requests WHERE task_id IN ({})",
            list(&removed_ids)
        ),
    )
    .await;
    assert!(!before_requests.is_empty());
    assert!(
        !ids(
            &app,
            &format!(
                "SELECT task_id::text AS id FROM task_events WHERE task_id IN ({})",
                list(&removed_ids)
            )
        )
        .await
        .is_empty(),
        "the removed tasks had events"
    );
    assert!(
        !ids(&app, &format!("SELECT service_request_id::text AS id FROM service_request_attempts WHERE service_request_id IN (SELECT id FROM service_requests WHERE task_id IN ({}))", list(&removed_ids))).await.is_empty(),
        "the removed tasks had attempts"
    );

    let job = RetentionJob::new(config("1h", "acme=3h", 2));
    let outcome = job
        .pass(&app.db.pool(), &CancellationToken::new())
        .await
        .expect("pass");
    let total = outcome.total();
    assert_eq!(total.tasks, 4, "{outcome:?}");
    assert_eq!(
        total.service_requests,
        i64::try_from(before_requests.len()).expect("small")
    );

    let left = ids(&app, "SELECT task_id::text AS id FROM tasks").await;
    let expected: BTreeSet<String> = [&t[3], &t[4], &t[5], &t[6], &t[8]]
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(left, expected);
    for table in [
        "service_requests",
        "task_events",
        "webhook_deliveries",
        "task_redrives",
        "task_outbox",
    ] {
        let rows = ids(
            &app,
            &format!(
                "SELECT task_id::text AS id FROM {table} WHERE task_id IN ({})",
                list(&removed_ids)
            ),
        )
        .await;
        assert!(
            rows.is_empty(),
            "{table} still holds rows of removed tasks: {rows:?}"
        );
    }
    let orphans = ids(
        &app,
        "SELECT service_request_id::text AS id FROM service_request_attempts a
          WHERE NOT EXISTS (SELECT 1 FROM service_requests s WHERE s.id = a.service_request_id)",
    )
    .await;
    assert!(
        orphans.is_empty(),
        "attempts outlived their service requests"
    );
    let webhook_kept = ids(&app, "SELECT task_id::text AS id FROM webhook_deliveries").await;
    assert_eq!(webhook_kept, [t[6].clone()].into_iter().collect());

    let (kept, table) = counts_and_table(&app).await;
    assert_eq!(
        kept, table,
        "task_status_counts no longer matches the table"
    );
    let response = app.get(&format!("/api/tasks/{}", t[0])).await;
    assert_eq!(response.status(), 404);

    // Nothing left past its period: a second pass removes nothing.
    let again = job
        .pass(&app.db.pool(), &CancellationToken::new())
        .await
        .expect("pass");
    assert_eq!(again.total().tasks, 0);
}

#[tokio::test]
async fn one_process_at_a_time_runs_the_job() {
    let app = app_without_retention().await;
    let t = finished_tasks(&app, 1).await;
    execute(
        &app,
        &format!(
            "UPDATE tasks SET updated_at = now() - interval '2 hours' WHERE task_id = '{}'",
            t[0]
        ),
    )
    .await;
    let pool = app.db.pool();
    let mut conn = app.db.connection().await;
    let held = retention::acquire_lease(
        &mut conn,
        RETENTION_JOB,
        "another-replica",
        std::time::Duration::from_secs(60),
    )
    .await
    .expect("lease");
    assert_eq!(held, None, "the lease was free");

    let job = RetentionJob::new(config("1h", "", 500));
    let outcome = job
        .pass(&pool, &CancellationToken::new())
        .await
        .expect("pass");
    assert_eq!(
        outcome,
        PassOutcome::Busy {
            holder: "another-replica".to_owned()
        }
    );
    assert_eq!(
        ids(&app, "SELECT task_id::text AS id FROM tasks")
            .await
            .len(),
        1
    );

    retention::release_lease(&mut conn, RETENTION_JOB, "another-replica")
        .await
        .expect("release");
    let outcome = job
        .pass(&pool, &CancellationToken::new())
        .await
        .expect("pass");
    assert_eq!(outcome.total().tasks, 1, "{outcome:?}");
    // The pass let go of the lease: another process may take it at once.
    let held = retention::acquire_lease(
        &mut conn,
        RETENTION_JOB,
        "another-replica",
        std::time::Duration::from_secs(60),
    )
    .await
    .expect("lease");
    assert_eq!(held, None);
}

#[tokio::test]
async fn retention_run_by_hand_prints_what_it_removed() {
    let app = app_without_retention().await;
    let t = finished_tasks(&app, 3).await;
    execute(
        &app,
        &format!(
            "UPDATE tasks SET updated_at = now() - interval '20 minutes' WHERE task_id IN ({})",
            list(&[&t[0], &t[1]])
        ),
    )
    .await;
    let output = Command::new(env!("CARGO_BIN_EXE_orchestrator-api"))
        .env_clear()
        .env("DATABASE_URL", app.db.url())
        .env("RETENTION", "10m")
        .env("NO_COLOR", "1")
        .args(["retention", "run"])
        .output()
        .expect("the API binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        stdout.contains(
            "removed 2 finished tasks and 6 service requests past their retention period"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("tenant default: removed 2 finished tasks"),
        "{stdout}"
    );
    assert!(!stdout.contains("INFO"), "logs went to stdout: {stdout}");
    assert_eq!(
        ids(&app, "SELECT task_id::text AS id FROM tasks").await,
        [t[2].clone()].into_iter().collect()
    );

    let refused = Command::new(env!("CARGO_BIN_EXE_orchestrator-api"))
        .env_clear()
        .env("DATABASE_URL", app.db.url())
        .env("RETENTION", "0s")
        .args(["retention", "run"])
        .output()
        .expect("the API binary runs");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("RETENTION") || stderr.contains("retention"),
        "{stderr}"
    );
}
