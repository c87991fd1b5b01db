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
        archive_dir: None,
        batch,
    }
}

/// The documents of an archive file, one per line.
fn read_archive(path: &std::path::Path) -> Vec<Value> {
    let file = std::fs::File::open(path).expect("archive opens");
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut zstd::stream::read::Decoder::new(file).expect("zstd"),
        &mut text,
    )
    .expect("archive decompresses");
    text.lines()
        .map(|line| serde_json::from_str(line).expect("a JSON document per line"))
        .collect()
}

/// The task ids of archive documents.
fn task_ids_of(documents: &[Value]) -> BTreeSet<String> {
    documents
        .iter()
        .map(|document| {
            document["task"]["task_id"]
                .as_str()
                .expect("task_id")
                .to_owned()
        })
        .collect()
}

fn api_command(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_orchestrator-api"))
        .env_clear()
        .env("DATABASE_URL", app.db.url())
        .env("NO_COLOR", "1")
        .args(args)
        .output()
        .expect("the API binary runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
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

/// Makes `tasks` look finished `ago` (an SQL interval) ago.
async fn finished_ago(app: &TestApp, tasks: &[&String], ago: &str) {
    execute(
        app,
        &format!(
            "UPDATE tasks SET updated_at = now() - interval '{ago}' WHERE task_id IN ({})",
            list(tasks)
        ),
    )
    .await;
}

/// A failed first attempt for each of `task`'s service requests.
async fn failed_first_attempts(app: &TestApp, task: &str) {
    execute(
        app,
        &format!(
            "INSERT INTO service_request_attempts (service_request_id, attempt, started_at, duration_ms, status_code, error)
             SELECT id, 1, now(), 5, 503, 'HTTP 503' FROM service_requests WHERE task_id = '{task}'"
        ),
    )
    .await;
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
    finished_ago(&app, &[&t[5]], "10 minutes").await;
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
    failed_first_attempts(&app, &t[0]).await;
    failed_first_attempts(&app, &t[5]).await;
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

/// Another replica tries to take the retention lease: `None` when it got it.
async fn another_replica_takes_the_lease(
    conn: &mut orchestrator_store::AsyncPgConnection,
) -> Option<String> {
    retention::acquire_lease(
        conn,
        RETENTION_JOB,
        "another-replica",
        std::time::Duration::from_secs(60),
    )
    .await
    .expect("lease")
}

#[tokio::test]
async fn one_process_at_a_time_runs_the_job() {
    let app = app_without_retention().await;
    let t = finished_tasks(&app, 1).await;
    finished_ago(&app, &[&t[0]], "2 hours").await;
    let pool = app.db.pool();
    let mut conn = app.db.connection().await;
    let held = another_replica_takes_the_lease(&mut conn).await;
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
    let held = another_replica_takes_the_lease(&mut conn).await;
    assert_eq!(held, None);
}

#[tokio::test]
async fn retention_run_by_hand_prints_what_it_removed() {
    let app = app_without_retention().await;
    let t = finished_tasks(&app, 3).await;
    finished_ago(&app, &[&t[0], &t[1]], "20 minutes").await;
    let (ok, stdout, stderr) = api_command(&app, &["--retention", "10m", "retention", "run"]);
    assert!(ok, "stdout: {stdout}\nstderr: {stderr}");
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

    let (ok, _, stderr) = api_command(&app, &["--retention", "0s", "retention", "run"]);
    assert!(!ok);
    assert!(stderr.contains("retention"), "{stderr}");
}

#[tokio::test]
async fn archived_tasks_can_be_removed_and_restored() {
    let app = app_without_retention().await;
    let t = finished_tasks(&app, 3).await;
    finished_ago(&app, &[&t[0], &t[1]], "2 hours").await;
    failed_first_attempts(&app, &t[0]).await;
    execute(&app, &format!(
        "INSERT INTO task_redrives (task_id, redrive, failed_at) VALUES ('{}', 1, now() - interval '3 hours')", t[0]
    )).await;
    let before = app.get_json(&format!("/api/tasks/{}", t[0])).await;

    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("old.jsonl.zst");
    let cutoff = (chrono::Utc::now() - chrono::TimeDelta::hours(1)).to_rfc3339();
    let write = [
        "archive",
        "--before",
        &cutoff,
        "--out",
        file.to_str().expect("utf-8"),
    ];
    let (ok, stdout, stderr) = api_command(&app, &write);
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.starts_with("wrote 2 tasks and 6 service requests that finished before"),
        "{stdout}"
    );
    let documents = read_archive(&file);
    let archived = task_ids_of(&documents);
    assert_eq!(archived, [t[0].clone(), t[1].clone()].into_iter().collect());
    for document in &documents {
        assert_eq!(
            document["service_requests"].as_array().map(Vec::len),
            Some(3),
            "{document}"
        );
    }
    // Writing an archive removes nothing, and never overwrites a file.
    assert_eq!(
        ids(&app, "SELECT task_id::text AS id FROM tasks")
            .await
            .len(),
        3
    );
    let (ok, _, stderr) = api_command(&app, &write);
    assert!(!ok && stderr.contains("old.jsonl.zst"), "{stderr}");

    let job = RetentionJob::new(config("1h", "", 500));
    let outcome = job
        .pass(&app.db.pool(), &CancellationToken::new())
        .await
        .expect("pass");
    assert_eq!(outcome.total().tasks, 2);
    assert_eq!(app.get(&format!("/api/tasks/{}", t[0])).await.status(), 404);

    let (ok, stdout, stderr) =
        api_command(&app, &["archive", "restore", file.to_str().expect("utf-8")]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.starts_with("restored 2 tasks from"), "{stdout}");
    let after = app.get_json(&format!("/api/tasks/{}", t[0])).await;
    for field in [
        "task_id",
        "task_name",
        "status",
        "created_at",
        "payload",
        "service_requests",
    ] {
        assert_eq!(
            after[field], before[field],
            "{field} differs after the restore"
        );
    }
    assert_eq!(
        ids(&app, &format!("SELECT a.service_request_id::text AS id FROM service_request_attempts a JOIN service_requests s ON s.id = a.service_request_id WHERE s.task_id = '{}'", t[0])).await.len(),
        3,
        "the attempts came back"
    );
    assert_eq!(
        ids(
            &app,
            &format!(
                "SELECT redrive::text AS id FROM task_redrives WHERE task_id = '{}'",
                t[0]
            )
        )
        .await
        .len(),
        1
    );
    let (kept, table) = counts_and_table(&app).await;
    assert_eq!(kept, table);
    // A restored task is kept a whole period again from its restore.
    let outcome = job
        .pass(&app.db.pool(), &CancellationToken::new())
        .await
        .expect("pass");
    assert_eq!(outcome.total().tasks, 0);
    // Restoring twice changes nothing.
    let (ok, stdout, _) = api_command(&app, &["archive", "restore", file.to_str().expect("utf-8")]);
    assert!(ok);
    assert!(stdout.starts_with("restored 0 tasks from"), "{stdout}");
    assert!(stdout.contains("(2 already present"), "{stdout}");
}

#[tokio::test]
async fn with_an_archive_dir_tasks_are_on_disk_before_they_are_removed() {
    let app = app_without_retention().await;
    let t = finished_tasks(&app, 3).await;
    finished_ago(&app, &t.iter().collect::<Vec<_>>(), "2 hours").await;

    // A directory that cannot be written: the pass fails and removes nothing.
    let mut broken = config("1h", "", 2);
    broken.archive_dir = Some("/nonexistent/orchestrator-archive".into());
    let failed = RetentionJob::new(broken)
        .pass(&app.db.pool(), &CancellationToken::new())
        .await;
    assert!(failed.is_err());
    assert_eq!(
        ids(&app, "SELECT task_id::text AS id FROM tasks")
            .await
            .len(),
        3
    );

    let dir = tempfile::tempdir().expect("temporary directory");
    let mut archiving = config("1h", "", 2);
    archiving.archive_dir = Some(dir.path().to_owned());
    let outcome = RetentionJob::new(archiving)
        .pass(&app.db.pool(), &CancellationToken::new())
        .await
        .expect("pass");
    let PassOutcome::Ran(tenants) = &outcome else {
        panic!("the lease was free: {outcome:?}");
    };
    assert_eq!(tenants.len(), 1);
    assert_eq!(tenants[0].removed.tasks, 3);
    let path = tenants[0].archive.clone().expect("an archive file");
    assert!(path.starts_with(dir.path()));
    // Two batches (two zstd frames), read back as one stream.
    let archived = task_ids_of(&read_archive(&path));
    assert_eq!(archived, t.iter().cloned().collect());
    assert!(
        ids(&app, "SELECT task_id::text AS id FROM tasks")
            .await
            .is_empty()
    );
}
