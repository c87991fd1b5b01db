use serde_json::{Value, json};

use crate::helpers::{SCENARIO_ID, TestApp, assert_problem, example_request, example_with};

fn pointers(problem: &Value) -> Vec<&str> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["pointer"].as_str())
                .collect()
        })
        .unwrap_or_default()
}

/// Every kind of bad input gets its problem, and none of them leaves a row behind.
#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_clear_problem_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let call = json!({"scenario_id": SCENARIO_ID, "business_type_id": SCENARIO_ID});
    let with = example_with;
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        (
            "missing name",
            with(&|b| {
                b.as_object_mut().map(|o| o.remove("task_name"));
            }),
            vec!["/task_name"],
        ),
        (
            "empty name",
            with(&|b| b["task_name"] = json!("")),
            vec!["/task_name"],
        ),
        (
            "long name",
            with(&|b| b["task_name"] = json!("n".repeat(256))),
            vec!["/task_name"],
        ),
        (
            "name of wrong type",
            with(&|b| b["task_name"] = json!(5)),
            vec!["/task_name"],
        ),
        (
            "missing payload",
            with(&|b| {
                b.as_object_mut().map(|o| o.remove("payload"));
            }),
            vec!["/payload"],
        ),
        (
            "empty payload",
            with(&|b| b["payload"] = json!([])),
            vec!["/payload"],
        ),
        (
            "item naming no service",
            with(&|b| b["payload"] = json!([{}])),
            vec!["/payload/0"],
        ),
        (
            "unknown service",
            with(&|b| b["payload"] = json!([{"billing": call}])),
            vec!["/payload/0/billing"],
        ),
        (
            "bad uuid",
            with(&|b| b["payload"][0]["revenue"]["scenario_id"] = json!("not-a-uuid")),
            vec!["/payload/0/revenue/scenario_id"],
        ),
        (
            "too many items",
            with(&|b| b["payload"] = json!(vec![json!({"revenue": call}); 6])),
            vec!["/payload"],
        ),
        (
            "several problems at once",
            json!({"task_name": "", "payload": [{"revenue": {"scenario_id": 1}}]}),
            vec![
                "/task_name",
                "/payload/0/revenue/scenario_id",
                "/payload/0/revenue/business_type_id",
            ],
        ),
        ("not an object", json!(["x"]), vec![""]),
    ];
    for (case, body, expected) in cases {
        for path in ["/api/orchestrate", "/api/orchestrate/direct"] {
            let response = app.post_json(path, &body).await;
            assert_eq!(response.status(), 422, "{case} on {path}");
            let problem = assert_problem(response, 422).await;
            assert_eq!(problem["type"], "/problems/validation", "{case}");
            assert_eq!(pointers(&problem), expected, "{case}: {problem}");
        }
    }
    assert_eq!(app.db.count_rows("tasks").await, 0);
    assert_eq!(app.db.count_rows("service_requests").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_json_wrong_content_type_and_oversized_bodies_are_refused() {
    let app = TestApp::spawn().await;
    let post = |content_type: Option<&'static str>, body: Vec<u8>| {
        let mut request = app.client.post(app.url("/api/orchestrate")).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        async move { request.send().await.expect("sent") }
    };
    let valid = serde_json::to_vec(&example_request()).expect("serializes");

    let problem = assert_problem(
        post(Some("application/json"), b"{\"task_name\": ".to_vec()).await,
        400,
    )
    .await;
    assert_eq!(problem["type"], "/problems/invalid-json");
    assert_problem(post(Some("text/plain"), valid.clone()).await, 415).await;
    assert_problem(post(None, valid.clone()).await, 415).await;
    // A media type with parameters is still JSON.
    assert_eq!(
        post(Some("application/json; charset=utf-8"), valid)
            .await
            .status(),
        202
    );

    // The test app allows 16 KiB.
    let mut huge = example_request();
    huge["task_description"] = json!("x".repeat(20 * 1024));
    let problem = assert_problem(
        post(
            Some("application/json"),
            serde_json::to_vec(&huge).expect("serializes"),
        )
        .await,
        413,
    )
    .await;
    assert_eq!(problem["type"], "/problems/payload-too-large");

    assert_eq!(
        app.db.count_rows("tasks").await,
        1,
        "only the valid request was stored"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_bodies_are_held_to_the_limit_too() {
    let app = TestApp::spawn().await;
    let mut huge = example_request();
    huge["task_description"] = json!("x".repeat(40 * 1024));
    let bytes = serde_json::to_vec(&huge).expect("serializes");
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(4096).map(|c| Ok(c.to_vec())).collect();
    let response = app
        .client
        .post(app.url("/api/orchestrate"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .expect("sent");
    assert_problem(response, 413).await;
    assert_eq!(app.db.count_rows("tasks").await, 0);
}
