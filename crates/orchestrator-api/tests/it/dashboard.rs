//! The endpoints behind the dashboard: counts per status, throughput, search; and the
//! page itself as served (headers, assets). The browser tests are in `ui`.

use chrono::{DateTime, Utc};
use diesel_async::RunQueryDsl;
use orchestrator_mock_services::Behaviour;
use orchestrator_store::seed::{self, SeedPlan};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, request_named};

async fn run_direct(app: &TestApp, name: &str) -> Value {
    let response = app
        .post_json("/api/orchestrate/direct", &request_named(name))
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.expect("JSON")
}

fn names(page: &Value) -> Vec<&str> {
    page["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|task| task["task_name"].as_str().expect("name"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn counts_follow_every_change_of_status() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.get_json("/api/tasks/counts").await,
        json!({"counts": {"PENDING": 0, "IN_PROGRESS": 0, "COMPLETED": 0, "FAILED": 0, "CANCELLED": 0}, "total": 0})
    );
    run_direct(&app, "one").await;
    run_direct(&app, "two").await;
    app.mock.set_behaviour(
        "revenue",
        Behaviour {
            failure_rate: 1.0,
            ..Behaviour::default()
        },
    );
    let failed = run_direct(&app, "three").await;
    assert_eq!(failed["status"], "FAILED");
    assert_eq!(
        app.get_json("/api/tasks/counts").await,
        json!({"counts": {"PENDING": 0, "IN_PROGRESS": 0, "COMPLETED": 2, "FAILED": 1, "CANCELLED": 0}, "total": 3})
    );

    // A re-drive moves the task back and forth; the counts follow.
    app.mock.reset_behaviours();
    let task_id = failed["task_id"].as_str().expect("id");
    let response = app
        .client
        .post(app.url(&format!("/api/tasks/{task_id}/retry")))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 202);
    app.wait_until_finished(task_id).await;
    assert_eq!(
        app.get_json("/api/tasks/counts").await,
        json!({"counts": {"PENDING": 0, "IN_PROGRESS": 0, "COMPLETED": 3, "FAILED": 0, "CANCELLED": 0}, "total": 3})
    );

    // The delta log stays consistent however it is folded.
    let mut conn = app.db.connection().await;
    for _ in 0..3 {
        diesel::sql_query("SELECT task_status_counts_fold()")
            .execute(&mut conn)
            .await
            .expect("fold");
    }
    assert_eq!(app.get_json("/api/tasks/counts").await["total"], 3);
    assert_eq!(
        app.db.count_rows("task_status_counts").await,
        1,
        "folded into one row per status with a count"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn throughput_counts_tasks_per_minute() {
    let app = TestApp::spawn().await;
    run_direct(&app, "one").await;
    run_direct(&app, "two").await;
    let throughput = app.get_json("/api/tasks/throughput").await;
    assert_eq!(throughput["bucket_seconds"], 60);
    let buckets = throughput["buckets"].as_array().expect("buckets");
    assert_eq!(buckets.len(), 15, "the default window");
    // Oldest first, one minute apart.
    let starts: Vec<chrono::DateTime<chrono::Utc>> = buckets
        .iter()
        .map(|b| {
            b["start"]
                .as_str()
                .expect("start")
                .parse()
                .expect("RFC 3339")
        })
        .collect();
    assert!(starts.windows(2).all(|w| (w[1] - w[0]).num_seconds() == 60));
    let total = |key: &str| {
        buckets
            .iter()
            .map(|b| b[key].as_i64().expect("count"))
            .sum::<i64>()
    };
    assert_eq!(
        (total("submitted"), total("completed"), total("failed")),
        (2, 2, 0)
    );

    let hour = app.get_json("/api/tasks/throughput?minutes=60").await;
    assert_eq!(hour["buckets"].as_array().map(Vec::len), Some(60));
    for bad in ["0", "61", "x", "1.5"] {
        let problem = assert_problem(
            app.get(&format!("/api/tasks/throughput?minutes={bad}"))
                .await,
            400,
        )
        .await;
        assert_eq!(problem["type"], "/problems/invalid-query");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn search_finds_tasks_by_id_prefix_or_name_a_page_at_a_time() {
    let app = TestApp::spawn().await;
    let alpha = run_direct(&app, "Alpha report").await;
    run_direct(&app, "Beta review, 50% done").await;
    run_direct(&app, "Another beta").await;
    let alpha_id = alpha["task_id"].as_str().expect("id");

    let search = async |query: &str| app.get_json(&format!("/api/tasks/search?{query}")).await;
    assert_eq!(
        names(&search(&format!("q={alpha_id}")).await),
        ["Alpha report"]
    );
    let upper = alpha_id.to_uppercase();
    assert_eq!(
        names(&search(&format!("q=%20{upper}%20")).await),
        ["Alpha report"]
    );
    assert_eq!(
        names(&search(&format!("q={}", &alpha_id[..6])).await),
        ["Alpha report"]
    );
    assert_eq!(
        names(&search("q=BETA").await),
        ["Another beta", "Beta review, 50% done"]
    );
    // Wildcards match themselves.
    assert_eq!(names(&search("q=50%25").await), ["Beta review, 50% done"]);
    assert_eq!(names(&search("q=5_%25").await), Vec::<&str>::new());
    assert_eq!(
        names(&search("q=beta&status=FAILED").await),
        Vec::<&str>::new()
    );

    // Paged like the list.
    let first = search("q=beta&limit=1").await;
    assert_eq!(names(&first), ["Another beta"]);
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let second = search(&format!("q=beta&limit=1&cursor={cursor}")).await;
    assert_eq!(names(&second), ["Beta review, 50% done"]);
    assert_eq!(second["next_cursor"], Value::Null);

    for (query, parameter) in [
        ("", "q"),
        ("q=ab", "q"),
        ("q=abc&status=DONE", "status"),
        ("q=abc&limit=0", "limit"),
        ("q=abc&cursor=nope", "cursor"),
        ("q=abc&q=abd", "q"),
    ] {
        let problem =
            assert_problem(app.get(&format!("/api/tasks/search?{query}")).await, 400).await;
        assert_eq!(problem["type"], "/problems/invalid-query", "{query}");
        assert!(
            problem["detail"]
                .as_str()
                .expect("detail")
                .contains(parameter),
            "{query}: {problem}"
        );
    }
}

/// Seeds `total` finished tasks a second apart (the newest now), renaming tasks #3 and
/// #10050 to "Needle 3" and "Needle 10050".
pub(crate) async fn seed_with_needles(app: &TestApp, total: i64) {
    let mut conn = app.db.connection().await;
    let plan = SeedPlan {
        total,
        batch: total,
        spacing_ms: 1_000,
        service_requests: false,
    };
    seed::seed_batch(&mut conn, &plan, 1, plan.total)
        .await
        .expect("seeded");
    diesel::sql_query(
        "UPDATE tasks SET task_name = 'Needle ' || split_part(task_name, '#', 2) \
         WHERE task_name LIKE '%#3' OR task_name LIKE '%#10050'",
    )
    .execute(&mut conn)
    .await
    .expect("renamed");
    diesel::sql_query("ANALYZE tasks")
        .execute(&mut conn)
        .await
        .expect("analysed");
}

/// With time to spare, one request walks every slice: rare matches among the oldest
/// tasks are found, and pages continue across slices.
#[tokio::test(flavor = "multi_thread")]
async fn search_walks_back_through_every_slice_when_time_allows() {
    let app = TestApp::spawn_with(|config| config.search_budget_ms = 60_000).await;
    seed_with_needles(&app, 10_100).await;

    let page = app.get_json("/api/tasks/search?q=needle").await;
    assert_eq!(names(&page), ["Needle 10050", "Needle 3"]);
    assert_eq!(page["next_cursor"], Value::Null);
    assert_eq!(page["searched_back_to"], Value::Null, "complete");
    let first = app.get_json("/api/tasks/search?q=needle&limit=1").await;
    assert_eq!(names(&first), ["Needle 10050"]);
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let second = app
        .get_json(&format!(
            "/api/tasks/search?q=needle&limit=1&cursor={cursor}"
        ))
        .await;
    assert_eq!(names(&second), ["Needle 3"]);
    assert_eq!(second["next_cursor"], Value::Null);

    // A common name fills its page from the newest tasks.
    let common = app.get_json("/api/tasks/search?q=forecast&limit=3").await;
    assert_eq!(
        names(&common),
        [
            "Quarterly forecast AMER #10100",
            "Quarterly forecast APAC #10090",
            "Quarterly forecast EMEA #10080"
        ]
    );
    assert_eq!(
        app.get_json("/api/tasks/counts").await["counts"]["COMPLETED"],
        10_100 - 10_100 / 20
    );
}

/// When seeded task `#number` (or "Needle number") was created.
async fn created_at(app: &TestApp, number: i64) -> DateTime<Utc> {
    #[derive(diesel::QueryableByName)]
    struct Created {
        #[diesel(sql_type = diesel::sql_types::Timestamptz)]
        created_at: DateTime<Utc>,
    }
    let mut conn = app.db.connection().await;
    let row: Created =
        diesel::sql_query("SELECT created_at FROM tasks WHERE task_name LIKE $1 OR task_name = $2")
            .bind::<diesel::sql_types::Text, _>(format!("%#{number}"))
            .bind::<diesel::sql_types::Text, _>(format!("Needle {number}"))
            .get_result(&mut conn)
            .await
            .expect("a seeded task");
    row.created_at
}

fn time_of(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().expect("a time"))
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

/// With no time budget, each request searches one slice (1,000 tasks) and says how far
/// back it got; following `next_cursor` walks the rest, newest first, to the end.
#[tokio::test(flavor = "multi_thread")]
async fn search_stops_at_its_budget_and_says_how_far_back_it_looked() {
    let app = TestApp::spawn_with(|config| config.search_budget_ms = 0).await;
    seed_with_needles(&app, 10_100).await;

    // Tasks #10100 down to #9101 are the first slice; #10050 is among them.
    let first = app.get_json("/api/tasks/search?q=needle").await;
    assert_eq!(names(&first), ["Needle 10050"]);
    assert_eq!(
        time_of(&first["searched_back_to"]),
        created_at(&app, 9_101).await
    );
    let mut cursor = first["next_cursor"]
        .as_str()
        .expect("a cursor to search further")
        .to_owned();
    let mut back_to = time_of(&first["searched_back_to"]);
    let mut found = Vec::new();
    let mut requests = 1;
    loop {
        let page = app
            .get_json(&format!("/api/tasks/search?q=needle&cursor={cursor}"))
            .await;
        requests += 1;
        found.extend(names(&page).into_iter().map(str::to_owned));
        let Some(next) = page["next_cursor"].as_str() else {
            assert_eq!(page["searched_back_to"], Value::Null, "complete");
            break;
        };
        let further = time_of(&page["searched_back_to"]);
        assert!(further < back_to, "{further} is older than {back_to}");
        back_to = further;
        cursor = next.to_owned();
        assert!(requests < 20, "the walk ends");
    }
    assert_eq!(found, ["Needle 3"]);
    // 10,100 tasks, 1,000 per request; the last request reads the last 100.
    assert_eq!(requests, 11);
}

/// `since` and `until` bound the tasks a search looks at by submission time.
#[tokio::test(flavor = "multi_thread")]
async fn search_looks_only_within_since_and_until() {
    let app = TestApp::spawn_with(|config| config.search_budget_ms = 60_000).await;
    seed_with_needles(&app, 10_100).await;
    let at = async |number| {
        created_at(&app, number)
            .await
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    };

    let recent = format!("since={}&until={}", at(10_000).await, at(10_060).await);
    let page = app
        .get_json(&format!("/api/tasks/search?q=needle&{recent}"))
        .await;
    assert_eq!(names(&page), ["Needle 10050"]);
    assert_eq!(page["next_cursor"], Value::Null);
    // `until` is exclusive, `since` inclusive.
    let old = format!("until={}", at(10_050).await);
    assert_eq!(
        names(
            &app.get_json(&format!("/api/tasks/search?q=needle&{old}"))
                .await
        ),
        ["Needle 3"]
    );
    let from_3 = format!("since={}&until={}", at(3).await, at(4).await);
    assert_eq!(
        names(
            &app.get_json(&format!("/api/tasks/search?q=needle&{from_3}"))
                .await
        ),
        ["Needle 3"]
    );
    // A whole id honours the window too.
    let id = page["tasks"][0]["task_id"].as_str().expect("an id");
    assert_eq!(
        names(
            &app.get_json(&format!("/api/tasks/search?q={id}&{old}"))
                .await
        ),
        Vec::<&str>::new()
    );
    for query in [
        "since=yesterday",
        "until=2026-12-01",
        "since=2026-12-01%2010:00:00Z",
    ] {
        let problem = assert_problem(
            app.get(&format!("/api/tasks/search?q=needle&{query}"))
                .await,
            400,
        )
        .await;
        let parameter = query.split('=').next().unwrap_or_default();
        let detail = problem["detail"].as_str().expect("detail");
        assert!(
            detail.contains("RFC 3339") && detail.contains(parameter),
            "{query}: {problem}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_is_served_from_the_binary() {
    let app = TestApp::spawn().await;
    for path in [
        "/ui",
        "/ui/new",
        "/ui/tasks/7dcf4835-c1a8-4869-bcc5-7912bbf9bebe",
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers();
        assert_eq!(headers["content-type"], "text/html; charset=utf-8");
        let csp = headers["content-security-policy"].to_str().expect("ASCII");
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
        let html = response.text().await.expect("body");
        assert!(html.contains("<main id=\"main\""), "{path}");
    }
    let html = app.get("/ui").await.text().await.expect("body");
    let script = html
        .split("src=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a script tag");
    assert!(script.starts_with("/ui/assets/app.js?v="), "{script}");
    let asset = app.get(script).await;
    assert_eq!(asset.status(), 200);
    assert_eq!(
        asset.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(
        asset.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    let stale = app.get("/ui/assets/app.css?v=old").await;
    assert_eq!(stale.headers()["cache-control"], "no-cache");

    let gzipped = app
        .client
        .get(app.url(script))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("sent");
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");

    assert_problem(app.get("/ui/assets/missing.js").await, 404).await;
    assert_problem(app.get("/ui/elsewhere").await, 404).await;
    let post = app.client.post(app.url("/ui")).send().await.expect("sent");
    assert_problem(post, 405).await;
    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(app.url("/ui/"))
        .send()
        .await
        .expect("sent");
    assert_eq!(redirect.status(), 308);
    assert_eq!(redirect.headers()["location"], "/ui");
}
