//! Every migration, applied to a database of a million tasks while the statements of a
//! running release go on: none may hold a submission up for more than a second.
//!
//! The database starts at the first migration (the one that creates `tasks`), is seeded
//! there, and then takes each later migration in turn, as a long-lived installation did
//! release after release. The load is what every release does to `tasks`: insert a task
//! with the first release's columns (every later column has a default or is nullable)
//! and start it; each statement is timed from the client. (Reads wait only behind the
//! same exclusive locks as these writes.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::sql_types::BigInt;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::MigrationHarness;
use orchestrator_store::migrations::MIGRATIONS;

const TASKS: i64 = 1_000_000;
const SEED_BATCH: i64 = 100_000;
/// The longest any statement of the load may wait.
const MOST_WAIT: Duration = Duration::from_secs(1);
/// Connections of the load, each submitting a task (insert, then start) every tick.
const LOAD_CONNECTIONS: usize = 2;
const LOAD_TICK: Duration = Duration::from_millis(20);

/// Finished tasks and their service requests, numbered `first..=last` of [`TASKS`], a
/// tenth of a second apart, in the first migration's columns.
const SEED_SQL: &str = r#"
WITH seeded AS (
    INSERT INTO tasks (task_id, task_name, status, created_at, updated_at, payload)
    SELECT gen_random_uuid(),
           'Seeded task #' || n,
           CASE WHEN n % 20 = 0 THEN 'FAILED' ELSE 'COMPLETED' END,
           now() - make_interval(secs => ($3 - n) / 10.0),
           now() - make_interval(secs => ($3 - n) / 10.0 - 2),
           '[{"revenue": {"scenario_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
                          "business_type_id": "9b2f4e2a-6c4d-4d3e-8f1a-2b3c4d5e6f70"}}]'
    FROM generate_series($1, $2) AS n
    RETURNING task_id, status, created_at, updated_at
)
INSERT INTO service_requests (id, task_id, item_index, service_name, scenario_id,
                              business_type_id, status, attempts, created_at, updated_at,
                              request_payload)
SELECT gen_random_uuid(), task_id, 0, 'revenue', '3fa85f64-5717-4562-b3fc-2c963f66afa6',
       '9b2f4e2a-6c4d-4d3e-8f1a-2b3c4d5e6f70', status, 1, created_at, updated_at, '{}'
FROM seeded
"#;

/// One statement of the load: when it started and how long it took.
type Sample = (Instant, Duration);

#[tokio::test(flavor = "multi_thread")]
async fn every_migration_runs_on_a_million_tasks_without_holding_up_submissions() {
    let db = crate::unmigrated_database().await;
    let mut conn = db.connection().await;
    let first = next_migration(db.url()).await.expect("the first migration");
    for first_of_batch in (1..=TASKS).step_by(usize::try_from(SEED_BATCH).expect("small")) {
        diesel::sql_query(SEED_SQL)
            .bind::<BigInt, _>(first_of_batch)
            .bind::<BigInt, _>((first_of_batch + SEED_BATCH - 1).min(TASKS))
            .bind::<BigInt, _>(TASKS)
            .execute(&mut conn)
            .await
            .expect("seeded");
    }
    diesel::sql_query("VACUUM ANALYZE")
        .execute(&mut conn)
        .await
        .expect("vacuumed");

    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let mut load = Vec::new();
    for _ in 0..LOAD_CONNECTIONS {
        load.push(tokio::spawn(submissions(
            db.url().to_owned(),
            Arc::clone(&stop),
            Arc::clone(&samples),
        )));
    }

    // Each later migration in turn, timed.
    let mut applied = vec![(first, Instant::now(), Instant::now())];
    loop {
        let started = Instant::now();
        let Some(version) = next_migration(db.url()).await else {
            break;
        };
        applied.push((version, started, Instant::now()));
    }
    stop.store(true, Ordering::Relaxed);
    let mut submitted = 0;
    for connection in load {
        submitted += connection
            .await
            .expect("the load ran")
            .expect("no statement of the load failed");
    }

    let samples = samples.lock().expect("samples").clone();
    assert!(
        samples.len() > applied.len(),
        "the load ran throughout ({} statements)",
        samples.len()
    );
    // The worst wait of each migration: statements that started while it ran.
    let mut report = String::new();
    let mut worst_of_all = Duration::ZERO;
    for (version, started, ended) in &applied {
        let worst = samples
            .iter()
            .filter(|(at, _)| at >= started && at < ended)
            .map(|(_, took)| *took)
            .max()
            .unwrap_or_default();
        worst_of_all = worst_of_all.max(worst);
        report.push_str(&format!(
            "\n{version}: {:.0} ms, slowest statement {:.0} ms",
            ended.duration_since(*started).as_secs_f64() * 1000.0,
            worst.as_secs_f64() * 1000.0
        ));
    }
    let slowest = samples
        .iter()
        .map(|(_, took)| *took)
        .max()
        .unwrap_or_default();
    eprintln!(
        "{} migrations, {submitted} submissions:{report}",
        applied.len()
    );
    assert!(
        slowest < MOST_WAIT,
        "a statement waited {slowest:?}:{report}"
    );
    assert_eq!(
        db.count_rows("tasks").await,
        TASKS + submitted,
        "every task kept"
    );
}

/// Applies the next pending migration, if any, and returns its version.
async fn next_migration(url: &str) -> Option<String> {
    let conn = AsyncPgConnection::establish(url).await.expect("connected");
    tokio::task::spawn_blocking(move || {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::from(conn);
        let pending = conn.has_pending_migration(MIGRATIONS).expect("pending");
        pending.then(|| {
            conn.run_next_migration(MIGRATIONS)
                .expect("the migration applies")
                .to_string()
        })
    })
    .await
    .expect("the migration thread")
}

/// Submits a task and starts it every [`LOAD_TICK`] until `stop`, timing each
/// statement; returns how many tasks it submitted.
async fn submissions(
    url: String,
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
) -> Result<i64, diesel::result::Error> {
    #[derive(diesel::QueryableByName)]
    struct Submitted {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        task_id: uuid::Uuid,
    }
    let mut conn = AsyncPgConnection::establish(&url).await.expect("connected");
    let mut tick = tokio::time::interval(LOAD_TICK);
    let mut submitted = 0;
    let record = |started: Instant| {
        samples
            .lock()
            .expect("samples")
            .push((started, started.elapsed()));
    };
    while !AtomicBool::load(&stop, Ordering::Relaxed) {
        tick.tick().await;
        let started = Instant::now();
        let task: Submitted = diesel::sql_query(
            "INSERT INTO tasks (task_id, task_name, payload) \
             VALUES (gen_random_uuid(), 'Submitted under load', '[]') RETURNING task_id",
        )
        .get_result(&mut conn)
        .await?;
        record(started);
        submitted += 1;
        let started = Instant::now();
        diesel::sql_query(
            "UPDATE tasks SET status = 'IN_PROGRESS', updated_at = now() WHERE task_id = $1",
        )
        .bind::<diesel::sql_types::Uuid, _>(task.task_id)
        .execute(&mut conn)
        .await?;
        record(started);
    }
    Ok(submitted)
}
