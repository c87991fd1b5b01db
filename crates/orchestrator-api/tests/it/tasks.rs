use std::collections::HashSet;

use serde_json::Value;

use crate::helpers::{TestApp, assert_problem, request_named};

#[tokio::test(flavor = "multi_thread")]
async fn lists_newest_first_in_pages_with_a_cursor() {
    let app = TestApp::spawn().await;
    let mut created = Vec::new();
    for n in 0..7 {
        let task: Value = app
            .post_json(
                "/api/orchestrate/direct",
                &request_named(&format!("task {n}")),
            )
            .await
            .json()
            .await
            .expect("JSON");
        created.push(task["task_id"].as_str().expect("id").to_owned());
    }
    created.reverse();

    let mut seen = Vec::new();
    let mut path = "/api/tasks?limit=3".to_owned();
    let mut pages = 0;
    loop {
        let page = app.get_json(&path).await;
        pages += 1;
        let tasks = page["tasks"].as_array().expect("tasks");
        assert!(tasks.len() <= 3);
        assert!(
            tasks.iter().all(|t| t.get("service_requests").is_none()),
            "list items are tasks only"
        );
        seen.extend(
            tasks
                .iter()
                .map(|t| t["task_id"].as_str().expect("id").to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/tasks?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, created);

    let default_page = app.get_json("/api/tasks").await;
    assert_eq!(default_page["tasks"].as_array().map(Vec::len), Some(7));
    assert_eq!(default_page["next_cursor"], Value::Null);
}

#[tokio::test(flavor = "multi_thread")]
async fn filters_by_status() {
    let app = TestApp::spawn().await;
    let completed: Value = app
        .post_json("/api/orchestrate/direct", &request_named("done"))
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(completed["status"], "COMPLETED");
    let page = app.get_json("/api/tasks?status=COMPLETED").await;
    let ids: HashSet<&str> = page["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter_map(|t| t["task_id"].as_str())
        .collect();
    assert_eq!(
        ids,
        HashSet::from([completed["task_id"].as_str().expect("id")])
    );
    let page = app.get_json("/api/tasks?status=FAILED").await;
    assert_eq!(page["tasks"], Value::Array(vec![]));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_list_parameters_are_problems() {
    let app = TestApp::spawn().await;
    for query in [
        "status=DONE",
        "limit=0",
        "limit=501",
        "limit=ten",
        "cursor=bogus",
        "limit=1&limit=2",
    ] {
        let problem = assert_problem(app.get(&format!("/api/tasks?{query}")).await, 400).await;
        assert_eq!(problem["type"], "/problems/invalid-query", "{query}");
    }
    assert_eq!(app.get("/api/tasks?limit=500").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_and_malformed_task_ids() {
    let app = TestApp::spawn().await;
    let problem = assert_problem(
        app.get("/api/tasks/2d5f8a9e-0000-4000-8000-000000000000")
            .await,
        404,
    )
    .await;
    assert_eq!(problem["type"], "/problems/task-not-found");
    let problem = assert_problem(app.get("/api/tasks/not-a-uuid").await, 400).await;
    assert_eq!(problem["type"], "/problems/invalid-task-id");
    assert!(
        !problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("search"),
        "{problem}"
    );
    // The dashboard shows ids cut to 8 digits: pasting one points at the search.
    let problem = assert_problem(app.get("/api/tasks/5c35a509").await, 400).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .ends_with("use /api/tasks/search?q=5c35a509"),
        "{problem}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_routes_and_methods_are_problems() {
    let app = TestApp::spawn().await;
    assert_problem(app.get("/api/nothing-here").await, 404).await;
    let wrong_method = app.get("/api/orchestrate").await;
    assert_eq!(wrong_method.headers()["allow"], "POST");
    assert_problem(wrong_method, 405).await;
    let wrong_method = app
        .client
        .delete(app.url("/api/tasks"))
        .send()
        .await
        .expect("sent");
    assert_eq!(wrong_method.headers()["allow"], "GET");
    assert_problem(wrong_method, 405).await;
    let health = app.get_json("/health").await;
    assert_eq!(
        health,
        serde_json::json!({"status": "ok", "mode": "inline", "auth": "enabled"})
    );
}
