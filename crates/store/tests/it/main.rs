//! Store tests against a real PostgreSQL database per test.

use chrono::Utc;
use orchestrator_core::{
    OrchestrationRequest, RequestLimits, ServiceName, Status, TenantName, plan_service_requests,
};
use orchestrator_store::lifecycle::{
    FinishedServiceRequest, InsertedTask, NewTask, StartedTask, accept, finish, record, start,
};
use orchestrator_store::{TaskCursor, migrations};
use orchestrator_store::{dashboard, tasks};
use orchestrator_testkit::database::TestDatabase;
use serde_json::json;
use uuid::Uuid;

mod batch;
mod events;
mod group_commit;
mod history;
mod leases;
mod migrations_under_load;
mod outbox;
mod prepared;
mod stop;
mod tls;

fn planned(task_id: Uuid) -> Vec<orchestrator_core::PlannedServiceRequest> {
    plan_service_requests(task_id, &request(1))
}

fn request(items: usize) -> OrchestrationRequest {
    let call = json!({
        "scenario_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
        "business_type_id": "9b2f4e2a-6c4d-4d3e-8f1a-2b3c4d5e6f70",
    });
    let payload: Vec<_> = (0..items)
        .map(|_| json!({"revenue": call, "rebates": call}))
        .collect();
    OrchestrationRequest::parse(&json!({"task_name": "t", "payload": payload}), &limits())
        .expect("valid request")
}

/// The services [`request`] names.
fn limits() -> RequestLimits {
    RequestLimits {
        known_services: ["revenue", "rebates"]
            .into_iter()
            .map(|n| ServiceName::parse(n).expect("valid"))
            .collect(),
        max_items: 100,
        max_deadline_secs: RequestLimits::DEFAULT_MAX_DEADLINE_SECS,
    }
}

async fn insert(db: &TestDatabase, key: Option<&str>) -> (Uuid, InsertedTask) {
    insert_in(db, TenantName::DEFAULT, key).await
}

async fn insert_in(db: &TestDatabase, tenant: &str, key: Option<&str>) -> (Uuid, InsertedTask) {
    let mut conn = db.connection().await;
    let task_id = Uuid::new_v4();
    let payload = request(1).payload_json();
    let inserted = accept::insert(
        &mut conn,
        &NewTask {
            task_id,
            task_name: "t",
            task_description: None,
            payload: &payload,
            idempotency_key: key,
            tenant,
            deadline_seconds: None,
            deadline_at: None,
            callback_url: None,
            traceparent: None,
        },
    )
    .await
    .expect("insert");
    (task_id, inserted)
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_migration_runs_apply_each_migration_once() {
    let db = TestDatabase::create().await;
    // The template is already migrated: every concurrent run must find nothing to do
    // and leave the schema intact.
    let runs = futures::future::join_all((0..4).map(|_| migrations::run_pending(db.url()))).await;
    for run in runs {
        assert_eq!(run.expect("migrations run"), Vec::<String>::new());
    }
    assert_eq!(
        db.count_rows("__diesel_schema_migrations").await,
        embedded_migrations()
    );
}

fn embedded_migrations() -> i64 {
    use diesel::migration::MigrationSource;
    let all = MigrationSource::<diesel::pg::Pg>::migrations(&migrations::MIGRATIONS)
        .expect("embedded migrations");
    i64::try_from(all.len()).expect("few migrations")
}

/// A database of its own with nothing in it: not even the migrations' table.
async fn unmigrated_database() -> TestDatabase {
    use diesel_async::RunQueryDsl;
    let db = TestDatabase::create().await;
    let mut conn = db.connection().await;
    for statement in ["DROP SCHEMA public CASCADE", "CREATE SCHEMA public"] {
        diesel::sql_query(statement)
            .execute(&mut conn)
            .await
            .expect("reset schema");
    }
    db
}

#[tokio::test(flavor = "multi_thread")]
async fn fresh_database_is_migrated_once_under_concurrency() {
    let db = unmigrated_database().await;
    let runs = futures::future::join_all((0..3).map(|_| migrations::run_pending(db.url()))).await;
    let applied: usize = runs
        .into_iter()
        .map(|r| r.expect("migrations run").len())
        .sum();
    assert_eq!(
        applied as i64,
        embedded_migrations(),
        "each migration applied exactly once"
    );
    assert_eq!(db.count_rows("tasks").await, 0);
}

/// Every index of `tasks` costs each insert and each status update of every task (the
/// updates are never HOT: status is indexed), so the set is deliberate: an index no read
/// uses is dropped (the trigram index, once search stopped using it).
#[tokio::test(flavor = "multi_thread")]
async fn tasks_carry_only_the_indexes_their_reads_use() {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Index {
        #[diesel(sql_type = diesel::sql_types::Text)]
        indexname: String,
    }
    let db = TestDatabase::create().await;
    let mut conn = db.connection().await;
    let indexes: Vec<Index> = diesel::sql_query(
        "SELECT indexname::text FROM pg_indexes WHERE tablename = 'tasks' ORDER BY indexname",
    )
    .load(&mut conn)
    .await
    .expect("indexes");
    let names: Vec<String> = indexes.into_iter().map(|i| i.indexname).collect();
    assert_eq!(names, EXPECTED_TASK_INDEXES, "{names:?}");
}

const EXPECTED_TASK_INDEXES: [&str; 7] = [
    "tasks_pkey",                       // row ids: bulk operations and archives page on it
    "tasks_task_id_key",                // GET /api/tasks/{id}, transitions, foreign keys
    "tasks_tenant_ended_at_idx",        // throughput of finished tasks, retention
    "tasks_tenant_idempotency_key_idx", // Idempotency-Key
    "tasks_tenant_newest_first_idx",    // the list, search's slices
    "tasks_tenant_status_newest_first_idx", // the list by status
    "tasks_unfinished_idx",             // resuming, lost records, the oldest waiting
];

#[tokio::test(flavor = "multi_thread")]
async fn idempotency_key_returns_the_existing_task() {
    let db = TestDatabase::create().await;
    let (first_id, first) = insert(&db, Some("key-1")).await;
    assert!(
        matches!(first, InsertedTask::Created(ref row) if row.task_id == first_id && row.status == Status::Pending)
    );
    let (_, second) = insert(&db, Some("key-1")).await;
    assert!(matches!(second, InsertedTask::Existing(ref row) if row.task_id == first_id));
    insert(&db, None).await;
    insert(&db, None).await;
    assert_eq!(db.count_rows("tasks").await, 3);
}

/// The insert returns only what the database decided (id, status, times) and builds
/// the rest of a created row from what it sent: that row is the one stored, in both
/// modes' statements, every column set.
#[tokio::test(flavor = "multi_thread")]
async fn a_created_row_is_the_row_stored() {
    let db = TestDatabase::create().await;
    let mut conn = db.connection().await;
    let payload = request(2).payload_json();
    let deadline_at = Some(Utc::now() + chrono::TimeDelta::seconds(60));
    let new_task = |key| NewTask {
        task_id: Uuid::new_v4(),
        task_name: "quarterly forecast",
        task_description: Some("EMEA, #77"),
        payload: &payload,
        idempotency_key: Some(key),
        tenant: "acme",
        deadline_seconds: Some(60),
        deadline_at,
        callback_url: Some("https://hooks.example/done"),
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    };
    let inline = accept::insert_many(&mut conn, &[new_task("inline")])
        .await
        .expect("insert");
    let queued = accept::insert_many_queued(&mut conn, &[new_task("queued")])
        .await
        .expect("insert");
    for answer in inline.into_iter().chain(queued) {
        let InsertedTask::Created(created) = answer else {
            panic!("a new key creates a task: {answer:?}");
        };
        assert_eq!(created.status, Status::Pending);
        let stored = tasks::find(&mut conn, created.task_id)
            .await
            .expect("read")
            .expect("stored");
        assert_eq!(created, stored);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_tenant_has_its_own_tasks_counts_and_idempotency_keys() {
    let db = TestDatabase::create().await;
    let acme = TenantName::parse("acme").expect("tenant");
    let globex = TenantName::parse("globex").expect("tenant");
    // The same key in two tenants makes two tasks; within a tenant it finds the first.
    let (acme_task, first) = insert_in(&db, acme.as_str(), Some("key-1")).await;
    let (globex_task, second) = insert_in(&db, globex.as_str(), Some("key-1")).await;
    assert!(matches!(first, InsertedTask::Created(ref row) if row.tenant == "acme"));
    assert!(matches!(second, InsertedTask::Created(ref row) if row.tenant == "globex"));
    let (_, again) = insert_in(&db, globex.as_str(), Some("key-1")).await;
    assert!(matches!(again, InsertedTask::Existing(ref row) if row.task_id == globex_task));
    // The same in one batch, as the API's group commit and outbox write it.
    let payload = request(1).payload_json();
    let batch: Vec<NewTask<'_>> = [acme.as_str(), globex.as_str(), acme.as_str()]
        .into_iter()
        .map(|tenant| NewTask {
            task_id: Uuid::new_v4(),
            task_name: "t",
            task_description: None,
            payload: &payload,
            idempotency_key: Some("key-2"),
            tenant,
            deadline_seconds: None,
            deadline_at: None,
            callback_url: None,
            traceparent: None,
        })
        .collect();
    let mut conn = db.connection().await;
    let answers = accept::insert_many_queued(&mut conn, &batch)
        .await
        .expect("insert");
    assert!(matches!(answers[0], InsertedTask::Created(ref row) if row.tenant == "acme"));
    assert!(matches!(answers[1], InsertedTask::Created(ref row) if row.tenant == "globex"));
    assert!(
        matches!(answers[2], InsertedTask::Existing(ref row) if row.task_id == batch[0].task_id)
    );

    // Each sees its own: list, find, counts.
    let listed = |rows: Vec<orchestrator_store::TaskRow>| {
        rows.into_iter().map(|row| row.task_id).collect::<Vec<_>>()
    };
    let acme_list = listed(
        tasks::list_page(&mut conn, &acme, None, None, 50)
            .await
            .expect("page"),
    );
    assert_eq!(acme_list, vec![batch[0].task_id, acme_task]);
    let globex_list = listed(
        tasks::list_page(&mut conn, &globex, Some(Status::Pending), None, 50)
            .await
            .expect("page"),
    );
    assert_eq!(globex_list, vec![batch[1].task_id, globex_task]);
    assert!(
        tasks::find_in(&mut conn, &globex, acme_task)
            .await
            .expect("find")
            .is_none()
    );
    assert!(
        tasks::find_in(&mut conn, &acme, acme_task)
            .await
            .expect("find")
            .is_some()
    );
    let counts = dashboard::status_counts(&mut conn, &acme)
        .await
        .expect("counts");
    assert_eq!((counts.pending, counts.total()), (2, 2));
    let counts = dashboard::status_counts(&mut conn, &TenantName::default())
        .await
        .expect("counts");
    assert_eq!(counts.total(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_database_rejects_unknown_statuses() {
    let db = TestDatabase::create().await;
    let (task_id, _) = insert(&db, None).await;
    let mut conn = db.connection().await;
    use diesel_async::RunQueryDsl;
    let result = diesel::sql_query(format!(
        "UPDATE tasks SET status = 'DONE' WHERE task_id = '{task_id}'"
    ))
    .execute(&mut conn)
    .await;
    assert!(result.is_err(), "CHECK constraint must reject DONE");
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_newest_first_without_gaps_or_repeats() {
    let db = TestDatabase::create().await;
    let mut inserted = Vec::new();
    for _ in 0..7 {
        inserted.push(insert(&db, None).await.0);
    }
    let mut conn = db.connection().await;
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let mut page = tasks::list_page(&mut conn, &TenantName::default(), None, cursor, 3)
            .await
            .expect("page");
        let more = page.len() > 3;
        page.truncate(3);
        seen.extend(page.iter().map(|t| t.task_id));
        // A task inserted while paging lands before the cursor and must not show up.
        insert(&db, None).await;
        if !more {
            break;
        }
        let last = page.last().expect("non-empty page");
        cursor = Some(TaskCursor {
            created_at: last.created_at,
            id: last.id,
        });
    }
    inserted.reverse();
    assert_eq!(seen, inserted);

    let pending = tasks::list_page(
        &mut conn,
        &TenantName::default(),
        Some(Status::Completed),
        None,
        50,
    )
    .await
    .expect("page");
    assert!(pending.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn starting_twice_creates_rows_once_and_settles_by_the_rules() {
    let db = TestDatabase::create().await;
    let (task_id, _) = insert(&db, None).await;
    let planned = plan_service_requests(task_id, &request(1));
    let mut conn = db.connection().await;

    let StartedTask::Running { rows: first, .. } =
        start::start_task(&mut conn, task_id, &planned, None)
            .await
            .expect("start")
    else {
        panic!("task should run");
    };
    let StartedTask::Running { rows: again, .. } =
        start::start_task(&mut conn, task_id, &planned, None)
            .await
            .expect("start")
    else {
        panic!("task should run");
    };
    assert_eq!(first.len(), 2);
    assert_eq!(
        again.iter().map(|r| r.id).collect::<Vec<_>>(),
        first.iter().map(|r| r.id).collect::<Vec<_>>()
    );
    assert_eq!(db.count_rows("service_requests").await, 2);
    assert_eq!(
        tasks::find(&mut conn, task_id)
            .await
            .expect("find")
            .expect("exists")
            .status,
        Status::InProgress
    );

    let now = Utc::now();
    let ok = FinishedServiceRequest {
        status: Status::Completed,
        attempts: 1,
        response_payload: Some(orchestrator_core::RawJson::from_value(&json!({"ok": true}))),
        error_message: None,
        started_at: now,
        completed_at: now,
        failed_attempts: Vec::new(),
    };
    assert!(
        record::record_finished(&mut conn, first[0].id, &ok, None)
            .await
            .expect("record")
    );
    assert!(
        !record::record_finished(&mut conn, first[0].id, &ok, None)
            .await
            .expect("record"),
        "recorded once"
    );
    assert_eq!(
        finish::settle(&mut conn, task_id, None)
            .await
            .expect("settle"),
        Some(Status::InProgress)
    );

    let failed = FinishedServiceRequest {
        status: Status::Failed,
        attempts: 3,
        response_payload: None,
        error_message: Some("HTTP 500: boom".into()),
        ..ok
    };
    assert!(
        record::record_finished(&mut conn, first[1].id, &failed, None)
            .await
            .expect("record")
    );
    assert_eq!(
        finish::settle(&mut conn, task_id, None)
            .await
            .expect("settle"),
        Some(Status::Failed)
    );
    let task = tasks::find(&mut conn, task_id)
        .await
        .expect("find")
        .expect("exists");
    assert_eq!(task.status, Status::Failed);
    assert_eq!(
        task.error_message.as_deref(),
        Some("1 of 2 service requests failed: revenue (item 0): HTTP 500: boom")
    );

    // A finished task is never reopened by another start.
    assert_eq!(
        start::start_task(&mut conn, task_id, &planned, None)
            .await
            .expect("start"),
        StartedTask::AlreadyFinished(Status::Failed)
    );
}

/// A service's answer is stored as it sent it: its numbers keep every digit (an `f64`
/// on the way would have rounded this amount) and its text is what PostgreSQL parses.
#[tokio::test(flavor = "multi_thread")]
async fn a_service_answer_is_stored_with_every_digit_it_sent() {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Stored {
        #[diesel(sql_type = diesel::sql_types::Text)]
        amount: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        note: String,
    }
    let db = TestDatabase::create().await;
    let (task_id, _) = insert(&db, None).await;
    let planned = plan_service_requests(task_id, &request(1));
    let mut conn = db.connection().await;
    let StartedTask::Running { rows, .. } = start::start_task(&mut conn, task_id, &planned, None)
        .await
        .expect("start")
    else {
        panic!("task should run");
    };
    let answer = orchestrator_core::RawJson::parse(
        " {\"amount\": 12345678901234567890.12345678901234567890, \"note\": \"caf\\u00e9 \u{1F600}\"}\n"
            .as_bytes(),
    )
    .expect("JSON");
    let now = Utc::now();
    let finished = FinishedServiceRequest {
        status: Status::Completed,
        attempts: 1,
        response_payload: Some(answer),
        error_message: None,
        started_at: now,
        completed_at: now,
        failed_attempts: Vec::new(),
    };
    assert!(
        record::record_finished(&mut conn, rows[0].id, &finished, None)
            .await
            .expect("record")
    );
    let stored: Stored = diesel::sql_query(
        "SELECT response_payload->>'amount' AS amount, response_payload->>'note' AS note \
         FROM service_requests WHERE id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(rows[0].id)
    .get_result(&mut conn)
    .await
    .expect("stored");
    assert_eq!(stored.amount, "12345678901234567890.12345678901234567890");
    assert_eq!(stored.note, "caf\u{e9} \u{1F600}");
}
