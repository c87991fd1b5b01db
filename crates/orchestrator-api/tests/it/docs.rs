use std::collections::BTreeSet;

use serde_json::Value;

use crate::helpers::{TestApp, example_request};

/// The property names a schema declares, following `allOf` and `$ref`s.
fn properties(doc: &Value, schema: &Value) -> BTreeSet<String> {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.trim_start_matches("#/components/schemas/");
        return properties(doc, &doc["components"]["schemas"][name]);
    }
    let mut names: BTreeSet<String> = schema["properties"]
        .as_object()
        .map(|props| props.keys().cloned().collect())
        .unwrap_or_default();
    for part in schema["allOf"].as_array().into_iter().flatten() {
        names.extend(properties(doc, part));
    }
    names
}

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    &doc["components"]["schemas"][name]
}

#[tokio::test(flavor = "multi_thread")]
async fn swagger_ui_and_openapi_document_are_served() {
    let app = TestApp::spawn().await;
    let docs = app.get("/docs/").await;
    assert_eq!(docs.status(), 200);
    assert!(
        docs.text().await.expect("body").contains("swagger"),
        "Swagger UI page"
    );
    let doc = app.get_json("/openapi.json").await;
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    assert!(
        doc["info"]["description"]
            .as_str()
            .is_some_and(|text| text.contains("(/ui)")),
        "the document links to the dashboard: {}",
        doc["info"]
    );
    // Swagger UI shows summaries as plain text: Markdown there shows up as backticks.
    for (path, operations) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in operations.as_object().expect("operations") {
            let summary = operation["summary"].as_str().unwrap_or_default();
            assert!(
                !summary.contains('`'),
                "{method} {path}: summary {summary:?}"
            );
        }
    }
    for path in [
        "/api/orchestrate",
        "/api/orchestrate/direct",
        "/api/tasks",
        "/api/tasks/{task_id}",
        "/api/tasks/{task_id}/retry",
        "/health",
        "/ready",
        "/metrics",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} documented");
    }
}

/// The documented schemas name exactly the fields the API really sends.
#[tokio::test(flavor = "multi_thread")]
async fn openapi_schemas_match_real_responses() {
    let app = TestApp::spawn().await;
    let doc = app.get_json("/openapi.json").await;

    let accepted: Value = app
        .post_json("/api/orchestrate", &example_request())
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        keys(&accepted),
        properties(&doc, schema(&doc, "TaskResponse"))
    );

    let detail: Value = app
        .post_json("/api/orchestrate/direct", &example_request())
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        keys(&detail),
        properties(&doc, schema(&doc, "TaskDetailResponse"))
    );
    assert_eq!(
        keys(&detail["service_requests"][0]),
        properties(&doc, schema(&doc, "ServiceRequestResponse"))
    );

    let list = app.get_json("/api/tasks").await;
    assert_eq!(
        keys(&list),
        properties(&doc, schema(&doc, "TaskListResponse"))
    );

    let problem: Value = app.get("/api/tasks/nope").await.json().await.expect("JSON");
    let mut documented = properties(&doc, schema(&doc, "Problem"));
    documented.remove("errors");
    assert_eq!(keys(&problem), documented);

    let health = app.get_json("/health").await;
    assert_eq!(
        keys(&health),
        properties(&doc, schema(&doc, "HealthResponse"))
    );
    let ready = app.get_json("/ready").await;
    assert_eq!(
        keys(&ready),
        properties(&doc, schema(&doc, "ReadyResponse"))
    );
}
