//! The API's contract with its clients: nothing a client sends is a server error, and
//! the OpenAPI document states what the handlers enforce. `make contract` fuzzes the
//! same contract with schemathesis; these tests pin the cases it found.

use serde_json::{Value, json};

use crate::helpers::{SCENARIO_ID, TestApp, assert_problem, example_with};

/// NUL (U+0000), which PostgreSQL refuses in text, in every field of a body: a 422
/// naming the field, before any database work (nothing is stored), never a 500.
#[tokio::test(flavor = "multi_thread")]
async fn nul_in_any_body_field_is_a_422_naming_it() {
    let app = TestApp::spawn().await;
    let call = json!({"scenario_id": SCENARIO_ID, "business_type_id": SCENARIO_ID});
    let with = example_with;
    let cases = [
        (with(&|b| b["task_name"] = json!("a\u{0}b")), "/task_name"),
        (with(&|b| b["task_name"] = json!("\u{0}")), "/task_name"),
        (
            with(&|b| b["task_description"] = json!("x\u{0}")),
            "/task_description",
        ),
        (
            with(&|b| b["payload"] = json!([{"reve\u{0}nue": call}])),
            "/payload/0/reve\u{0}nue",
        ),
        (
            with(&|b| b["payload"][0]["revenue"]["scenario_id"] = json!("\u{0}")),
            "/payload/0/revenue/scenario_id",
        ),
        (
            with(&|b| b["payload"][0]["revenue"]["x\u{0}"] = json!(1)),
            "/payload/0/revenue/x\u{0}",
        ),
        (with(&|b| b["\u{0}"] = json!("")), "/\u{0}"),
    ];
    for path in ["/api/orchestrate", "/api/orchestrate/direct"] {
        for (body, pointer) in &cases {
            let problem = assert_problem(app.post_json(path, body).await, 422).await;
            let pointers: Vec<&str> = problem["errors"]
                .as_array()
                .expect("errors")
                .iter()
                .filter_map(|error| error["pointer"].as_str())
                .collect();
            assert!(
                pointers.contains(pointer),
                "POST {path} {body}: {pointer:?} not among {pointers:?}"
            );
        }
    }
    let counts = app.get_json("/api/tasks/counts").await;
    assert_eq!(counts["total"], 0, "a refused request stores nothing");
}

/// NUL in every query parameter and in the path: a 400 naming the parameter.
#[tokio::test(flavor = "multi_thread")]
async fn nul_in_any_parameter_is_a_400_naming_it() {
    let app = TestApp::spawn().await;
    let cases = [
        ("/api/tasks/search?q=%21%00%C2%BA", "\"q\""),
        ("/api/tasks/search?q=abc%00", "\"q\""),
        ("/api/tasks/search?q=abc&status=%00", "\"status\""),
        ("/api/tasks/search?q=abc&limit=1%00", "\"limit\""),
        ("/api/tasks/search?q=abc&cursor=%00", "\"cursor\""),
        ("/api/tasks?status=FAILED%00", "\"status\""),
        ("/api/tasks?limit=%00", "\"limit\""),
        ("/api/tasks?cursor=1.2%00", "\"cursor\""),
        ("/api/tasks/throughput?minutes=%00", "\"minutes\""),
        ("/api/tasks/%00", "task id"),
    ];
    for (path, named) in cases {
        let problem = assert_problem(app.get(path).await, 400).await;
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(named),
            "GET {path}: {detail:?} names {named}"
        );
    }
    let retry = app
        .client
        .post(app.url("/api/tasks/%00/retry"))
        .send()
        .await
        .expect("request sent");
    assert_problem(retry, 400).await;
}

/// An empty value is a value, refused like any other the parameter does not take, and
/// the document says so (no parameter accepts "").
#[tokio::test(flavor = "multi_thread")]
async fn an_empty_parameter_value_is_a_400() {
    let app = TestApp::spawn().await;
    for path in [
        "/api/tasks?limit=",
        "/api/tasks?status=",
        "/api/tasks?cursor=",
        "/api/tasks/search?q=",
        "/api/tasks/search?q=abc&limit=",
        "/api/tasks/throughput?minutes=",
    ] {
        assert_problem(app.get(path).await, 400).await;
    }
}

fn parameter<'a>(doc: &'a Value, path: &str, name: &str) -> &'a Value {
    doc["paths"][path]["get"]["parameters"]
        .as_array()
        .and_then(|parameters| parameters.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("{path} documents {name}"))
}

/// The document states the limits the handlers enforce, for this deployment.
#[tokio::test(flavor = "multi_thread")]
async fn the_document_states_what_the_handlers_enforce() {
    let app = TestApp::spawn_with(|config| config.max_items = 7).await;
    let doc = app.get_json("/openapi.json").await;
    let request = &doc["components"]["schemas"]["OrchestrateRequest"];
    assert_eq!(request["additionalProperties"], false);
    assert_eq!(request["required"], json!(["task_name", "payload"]));
    let name = &request["properties"]["task_name"];
    assert_eq!(
        (&name["minLength"], &name["maxLength"]),
        (&json!(1), &json!(255))
    );
    assert!(
        name["pattern"]
            .as_str()
            .is_some_and(|p| p.contains("\\u0000"))
    );
    let description = &request["properties"]["task_description"];
    assert_eq!(description["maxLength"], 10_000);
    let payload = &request["properties"]["payload"];
    assert_eq!(
        (&payload["minItems"], &payload["maxItems"]),
        (&json!(1), &json!(7))
    );
    let item = &payload["items"];
    assert_eq!(
        (&item["minProperties"], &item["additionalProperties"]),
        (&json!(1), &json!(false))
    );
    let services: Vec<&String> = item["properties"]
        .as_object()
        .expect("services")
        .keys()
        .collect();
    assert_eq!(services, ["rebates", "revenue", "specialty"]);
    let call = &doc["components"]["schemas"]["ServiceCallBody"];
    assert_eq!(call["additionalProperties"], false);
    assert_eq!(call["properties"]["scenario_id"]["format"], "uuid");

    for path in ["/api/tasks", "/api/tasks/search"] {
        let limit = &parameter(&doc, path, "limit")["schema"];
        assert_eq!(
            (&limit["type"], &limit["minimum"], &limit["maximum"]),
            (&json!("integer"), &json!(1), &json!(500))
        );
        assert_eq!(
            parameter(&doc, path, "status")["schema"]["$ref"],
            "#/components/schemas/Status"
        );
        assert!(parameter(&doc, path, "cursor")["schema"]["pattern"].is_string());
    }
    let minutes = &parameter(&doc, "/api/tasks/throughput", "minutes")["schema"];
    assert_eq!(
        (&minutes["minimum"], &minutes["maximum"]),
        (&json!(1), &json!(60))
    );
    assert!(parameter(&doc, "/api/tasks/search", "q")["schema"]["pattern"].is_string());

    // Every operation lists every status it can answer with, each with its problem.
    for (path, operations) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in operations.as_object().expect("operations") {
            for status in ["405", "500"] {
                let response = &operation["responses"][status];
                assert_eq!(
                    response["content"]["application/problem+json"]["schema"]["$ref"],
                    "#/components/schemas/Problem",
                    "{method} {path} documents {status}"
                );
            }
        }
    }
    for (path, method, statuses) in [
        (
            "/api/orchestrate",
            "post",
            &["202", "400", "413", "415", "422", "503"][..],
        ),
        (
            "/api/orchestrate/direct",
            "post",
            &["200", "400", "413", "415", "422", "503"],
        ),
        ("/api/tasks", "get", &["200", "400", "503"]),
        ("/api/tasks/{task_id}", "get", &["200", "400", "404", "503"]),
        (
            "/api/tasks/{task_id}/retry",
            "post",
            &["202", "400", "404", "409", "503"],
        ),
        ("/api/tasks/search", "get", &["200", "400", "503"]),
        ("/api/tasks/throughput", "get", &["200", "400", "503"]),
        ("/api/tasks/counts", "get", &["200", "503"]),
    ] {
        for status in statuses {
            assert!(
                doc["paths"][path][method]["responses"][status].is_object(),
                "{method} {path} documents {status}"
            );
        }
    }

    // A submitted task links to where it can be followed.
    for path in ["/api/orchestrate", "/api/orchestrate/direct"] {
        let responses = &doc["paths"][path]["post"]["responses"];
        let links = responses["202"]["links"]
            .as_object()
            .or(responses["200"]["links"].as_object())
            .unwrap_or_else(|| panic!("{path} has links"));
        assert_eq!(links["GetTask"]["operationId"], "get_task");
        assert_eq!(
            links["GetTask"]["parameters"]["task_id"],
            "$response.body#/task_id"
        );
        assert_eq!(links["RetryTask"]["operationId"], "retry_task");
    }
}

/// The route table is the one list of routes: each is in the document with its method,
/// each documented operation is in the table, each answers its method (not 404 or
/// 405), every route under /api/ requires a credential, and none is reachable without
/// one.
#[tokio::test(flavor = "multi_thread")]
async fn the_route_table_matches_the_document_and_the_server() {
    use std::collections::BTreeSet;

    use orchestrator_api::routes::{Access, ENDPOINTS};

    let app = TestApp::spawn().await;
    let doc = app.get_json("/openapi.json").await;
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, operations)| {
            operations
                .as_object()
                .expect("operations")
                .keys()
                .map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect();
    let declared: BTreeSet<(String, String)> = ENDPOINTS
        .iter()
        .map(|endpoint| (endpoint.verb.method().to_string(), endpoint.path.to_owned()))
        .collect();
    assert_eq!(declared, documented);
    assert_eq!(declared.len(), ENDPOINTS.len(), "each route declared once");

    for endpoint in ENDPOINTS {
        if endpoint.path.starts_with("/api/") {
            assert!(
                !matches!(endpoint.access, Access::Public | Access::Metrics),
                "{} needs a credential",
                endpoint.path
            );
        }
        let anonymous = reqwest::Client::new()
            .request(
                reqwest::Method::from_bytes(endpoint.verb.method().as_str().as_bytes())
                    .expect("a method"),
                app.url(
                    &endpoint
                        .path
                        .replace("{task_id}", "7dcf4835-c1a8-4869-bcc5-7912bbf9bebe"),
                ),
            )
            .json(&json!({}))
            .send()
            .await
            .expect("request sent");
        // /metrics is public unless METRICS_TOKEN is set (it is not here).
        let expected = if matches!(endpoint.access, Access::Public | Access::Metrics) {
            200
        } else {
            401
        };
        assert_eq!(
            anonymous.status(),
            expected,
            "{} {} without a credential",
            endpoint.verb.method(),
            endpoint.path
        );
        let path = endpoint
            .path
            .replace("{task_id}", "7dcf4835-c1a8-4869-bcc5-7912bbf9bebe");
        let response = app
            .client
            .request(
                reqwest::Method::from_bytes(endpoint.verb.method().as_str().as_bytes())
                    .expect("a method"),
                app.url(&path),
            )
            .json(&json!({}))
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        let streams = response
            .headers()
            .get("content-type")
            .is_some_and(|value| value.as_bytes().starts_with(b"text/event-stream"));
        if streams {
            // A Server-Sent Events stream (GET /api/events) does not end: reached.
            assert_eq!(status, 200, "{} {path}", endpoint.verb.method());
            continue;
        }
        let body = response.text().await.expect("body");
        // A 404 is the handler's only when it is about the (unknown) task, not the route.
        let reached = status != 405 && (status != 404 || body.contains("/problems/task-not-found"));
        assert!(
            reached,
            "{} {path}: {status} {body}",
            endpoint.verb.method()
        );
    }
}
