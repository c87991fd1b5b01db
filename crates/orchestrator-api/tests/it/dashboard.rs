//! The endpoints behind the dashboard: counts per status, throughput, search; and the
//! page itself as served (headers, assets). The browser tests are in `ui`.

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

/// With more tasks than the search reads in order, matches among the older tasks are
/// found through the indexes, and pages continue across the two steps.
#[tokio::test(flavor = "multi_thread")]
async fn search_reaches_tasks_older_than_its_recent_window() {
    let app = TestApp::spawn().await;
    let mut conn = app.db.connection().await;
    let plan = SeedPlan {
        total: 10_100,
        batch: 10_100,
        spacing_ms: 1_000,
        service_requests: false,
    };
    seed::seed_batch(&mut conn, &plan, 1, plan.total)
        .await
        .expect("seeded");
    // Task #3 is among the oldest hundred, beyond the 10,000 newest; #10050 is recent.
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

    let page = app.get_json("/api/tasks/search?q=needle").await;
    assert_eq!(names(&page), ["Needle 10050", "Needle 3"]);
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

    // A common name fills its page from the recent tasks, newest first.
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
