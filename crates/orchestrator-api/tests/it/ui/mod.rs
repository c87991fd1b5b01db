//! The dashboard at `/ui`, end to end: the real API (inline mode) and mock services, and
//! headless Chromium clicking through the pages as an operator would. Each test saves
//! screenshots of what it saw under `target/ui-screenshots/` (CI keeps them as
//! artifacts). Waits poll with a deadline; nothing sleeps for a fixed time.

mod browser;

use orchestrator_mock_services::{Behaviour, Latency};
use serde_json::{Value, json};

use self::browser::Browser;
use crate::helpers::{TestApp, example_request, request_named};

const SERVICES: [&str; 3] = ["revenue", "rebates", "specialty"];

async fn submit(app: &TestApp, body: &Value) -> String {
    let response = app.post_json("/api/orchestrate", body).await;
    assert_eq!(response.status(), 202);
    let task: Value = response.json().await.expect("JSON");
    task["task_id"].as_str().expect("task id").to_owned()
}

async fn run_direct(app: &TestApp, body: &Value) -> Value {
    let response = app.post_json("/api/orchestrate/direct", body).await;
    assert_eq!(response.status(), 200);
    response.json().await.expect("JSON")
}

fn slow(ms: u64) -> Behaviour {
    Behaviour {
        latency: Latency::Fixed { ms },
        ..Behaviour::default()
    }
}

/// The status the list shows for a task, or null while the task is not listed.
fn row_status(task_id: &str) -> String {
    format!(
        "const row = document.querySelector('#task-rows tr[data-task-id=\"{task_id}\"]'); \
         return row ? row.dataset.status : null"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_list_shows_a_submitted_task_and_its_completion_without_a_reload() {
    // Slow services, so that the list is seen showing the task while it runs.
    let app = TestApp::spawn_with(|config| config.dispatch.http_timeout_ms = 15_000).await;
    for service in SERVICES {
        app.mock.set_behaviour(service, slow(4_000));
    }
    let browser = Browser::start().await;
    browser.goto(&app.url("/ui")).await;
    browser
        .wait_for(
            "the empty list",
            "return document.querySelector('#task-rows .empty')",
        )
        .await;
    // A page load would forget this.
    browser
        .eval("window.sameDocument = true; return true")
        .await;

    let task_id = submit(&app, &request_named("Live in the list")).await;
    let first_seen = browser
        .wait_for("the new task in the list", &row_status(&task_id))
        .await;
    assert!(
        matches!(first_seen.as_str(), Some("PENDING" | "IN_PROGRESS")),
        "seen running first, not {first_seen}"
    );
    browser
        .wait_for(
            "the count of tasks in progress",
            "return document.querySelector('[data-count=\"IN_PROGRESS\"] .value').textContent === '1'",
        )
        .await;
    browser
        .wait_for(
            "the task COMPLETED in the list",
            &format!("return ({})() === 'COMPLETED'", wrap(&row_status(&task_id))),
        )
        .await;
    assert_eq!(
        browser.eval("return window.sameDocument === true").await,
        true,
        "the list updated itself, without reloading the page"
    );
    browser
        .wait_for(
            "the counts",
            "return document.querySelector('[data-count=\"COMPLETED\"] .value').textContent === '1' \
             && document.querySelector('[data-count=\"ALL\"] .value').textContent === '1'",
        )
        .await;
    browser
        .wait_for(
            "the throughput summary",
            "return document.getElementById('throughput-summary').textContent.startsWith('1 submitted')",
        )
        .await;
    let name = browser
        .eval(&format!(
            "return document.querySelector('tr[data-task-id=\"{task_id}\"] a.task-name').textContent"
        ))
        .await;
    assert_eq!(name, "Live in the list");
    browser.screenshot("task-list").await;

    // A phone: the table becomes one card per task.
    browser.set_window_size(390, 844).await;
    browser
        .wait_for(
            "the cards layout",
            "return getComputedStyle(document.querySelector('#task-table thead')).position === 'absolute'",
        )
        .await;
    browser.screenshot_window("task-list-phone").await;
    browser.close().await;
}

/// `script` as the body of a function expression, to call inside another script.
fn wrap(script: &str) -> String {
    format!("function () {{ {script} }}")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_task_page_shows_its_three_service_requests_and_the_slowest() {
    let app = TestApp::spawn().await;
    app.mock.set_behaviour("specialty", slow(400));
    let task = run_direct(&app, &example_request()).await;
    assert_eq!(task["status"], "COMPLETED");
    let task_id = task["task_id"].as_str().expect("id");

    let browser = Browser::start().await;
    browser
        .goto(&app.url(&format!("/ui/tasks/{task_id}")))
        .await;
    let rows = browser
        .wait_for(
            "three completed service requests",
            "const rows = [...document.querySelectorAll('#service-requests tr')]; \
             return rows.length === 3 && rows.every((r) => r.dataset.status === 'COMPLETED') \
                 && rows.map((r) => r.dataset.service).sort()",
        )
        .await;
    assert_eq!(rows, json!(["rebates", "revenue", "specialty"]));
    assert_eq!(
        browser
            .eval("return document.getElementById('task-title').textContent")
            .await,
        "Quarterly forecast"
    );
    assert_eq!(
        browser
            .eval("return document.querySelector('#task-status .badge').dataset.status")
            .await,
        "COMPLETED"
    );
    // Each completed call shows its response; the timeline singles out the slow one.
    assert_eq!(
        browser
            .eval("return document.querySelectorAll('#service-requests details[data-sr]').length")
            .await,
        3
    );
    assert_eq!(
        browser
            .eval("return document.querySelectorAll('#timeline li').length")
            .await,
        3
    );
    assert_eq!(
        browser
            .eval("return document.querySelector('#timeline li.slowest').dataset.service")
            .await,
        "specialty"
    );
    let payload = browser
        .eval("return JSON.parse(document.getElementById('task-payload').textContent)")
        .await;
    assert_eq!(payload, example_request()["payload"]);
    let curl = browser
        .eval("return document.querySelector('[data-curl] code').textContent")
        .await;
    assert_eq!(
        curl,
        format!("curl -s '{}/api/tasks/{task_id}'", app.address).as_str()
    );
    assert_eq!(
        browser
            .eval("return document.getElementById('redrive').checkVisibility()")
            .await,
        false,
        "only a failed task offers a re-drive"
    );
    browser
        .click("#service-requests tr[data-service=\"specialty\"] details summary")
        .await;
    browser.screenshot("task-detail").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_form_submits_a_task_and_shows_what_the_api_refused() {
    let app = TestApp::spawn().await;
    let browser = Browser::start().await;
    browser.goto(&app.url("/ui/new")).await;
    // Prefilled with the README's example.
    let prefilled = browser
        .wait_for(
            "the prefilled form",
            "const name = document.getElementById('task-name'); \
             return name && { name: name.value, \
                              description: document.getElementById('task-description').value, \
                              payload: JSON.parse(document.getElementById('task-payload').value) }",
        )
        .await;
    let example = example_request();
    assert_eq!(prefilled["name"], example["task_name"]);
    assert_eq!(prefilled["description"], example["task_description"]);
    assert_eq!(prefilled["payload"], example["payload"]);
    browser.screenshot("new-task").await;

    // JSON that does not parse is caught before anything is sent.
    browser.type_into("#task-payload", "[{").await;
    browser.click("#submit-task").await;
    browser
        .wait_for(
            "the JSON error",
            "return document.getElementById('form-errors').checkVisibility() \
             && document.getElementById('task-payload').getAttribute('aria-invalid') === 'true'",
        )
        .await;

    // What the API refuses is listed with its pointer.
    let unknown_service = json!([{"billing": {
        "scenario_id": crate::helpers::SCENARIO_ID,
        "business_type_id": crate::helpers::BUSINESS_TYPE_ID,
    }}]);
    browser
        .type_into("#task-payload", &unknown_service.to_string())
        .await;
    browser.click("#submit-task").await;
    let errors = browser
        .wait_for(
            "the API's validation errors",
            "const box = document.getElementById('form-errors'); \
             return box.checkVisibility() && box.textContent.includes('/payload/0/billing') && box.textContent",
        )
        .await;
    assert!(
        errors
            .as_str()
            .is_some_and(|e| e.contains("unknown service")),
        "{errors}"
    );
    assert_eq!(
        app.get_json("/api/tasks").await["tasks"],
        json!([]),
        "nothing was stored"
    );

    browser.click("#reset-example").await;
    browser.type_into("#task-name", "Sent from the form").await;
    browser.click("#submit-task").await;
    let task_id = browser
        .wait_for(
            "the new task's page",
            "const m = location.pathname.match(/^\\/ui\\/tasks\\/(.+)$/); return m && m[1]",
        )
        .await;
    let task_id = task_id.as_str().expect("id");
    browser
        .wait_for(
            "the task completed on its page",
            "return document.getElementById('task-title').textContent === 'Sent from the form' \
             && document.querySelector('#task-status .badge')?.dataset.status === 'COMPLETED'",
        )
        .await;
    let stored = app.get_json(&format!("/api/tasks/{task_id}")).await;
    assert_eq!(stored["task_name"], "Sent from the form");
    assert_eq!(stored["payload"], example["payload"]);
    assert_eq!(stored["service_requests"].as_array().map(Vec::len), Some(3));
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_task_is_redriven_from_its_page() {
    let app = TestApp::spawn().await;
    // Fault injection through the mock's HTTP control API, as an operator would.
    let control = app
        .client
        .put(format!("{}/control/revenue", app.mock.base_url()))
        .json(&json!({"failure_rate": 1.0, "failure_status": 500}))
        .send()
        .await
        .expect("control request");
    assert!(control.status().is_success(), "{}", control.status());
    let failed = run_direct(&app, &request_named("Needs a re-drive")).await;
    assert_eq!(failed["status"], "FAILED");
    let task_id = failed["task_id"].as_str().expect("id");

    let browser = Browser::start().await;
    browser
        .goto(&app.url(&format!("/ui/tasks/{task_id}")))
        .await;
    let error = browser
        .wait_for(
            "the failure and the re-drive button",
            "const error = document.getElementById('task-error'); \
             return document.getElementById('redrive').checkVisibility() && error.checkVisibility() && error.textContent",
        )
        .await;
    assert!(
        error.as_str().is_some_and(|e| e.contains("revenue")),
        "{error}"
    );
    let curls = browser
        .eval("return [...document.querySelectorAll('[data-curl] code')].map((c) => c.textContent)")
        .await;
    assert_eq!(
        curls[1],
        format!(
            "curl -si -X POST '{}/api/tasks/{task_id}/retry'",
            app.address
        )
        .as_str()
    );
    browser.screenshot("task-failed").await;

    let healed = app
        .client
        .delete(format!("{}/control", app.mock.base_url()))
        .send()
        .await
        .expect("control request");
    assert!(healed.status().is_success());
    browser.click("#redrive").await;
    browser
        .wait_for(
            "the re-driven task completed",
            "return document.querySelector('#task-status .badge').dataset.status === 'COMPLETED' \
             && !document.getElementById('redrive').checkVisibility() \
             && !document.getElementById('task-error').checkVisibility()",
        )
        .await;
    let revenue_attempts = browser
        .eval(
            "return document.querySelector('#service-requests tr[data-service=\"revenue\"] td[data-label=\"Attempts\"]').textContent",
        )
        .await;
    assert_eq!(
        revenue_attempts, "4",
        "3 failed attempts, then 1 that worked"
    );
    let stored = app.get_json(&format!("/api/tasks/{task_id}")).await;
    assert_eq!(stored["status"], "COMPLETED");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_list_filters_by_status_and_searches_by_id_or_name() {
    let app = TestApp::spawn().await;
    let alpha = run_direct(&app, &request_named("Alpha report")).await;
    run_direct(&app, &request_named("Beta review")).await;
    app.mock.set_behaviour(
        "rebates",
        Behaviour {
            failure_rate: 1.0,
            ..Behaviour::default()
        },
    );
    let gamma = run_direct(&app, &request_named("Gamma forecast")).await;
    assert_eq!(gamma["status"], "FAILED");
    let alpha_id = alpha["task_id"].as_str().expect("id");

    let browser = Browser::start().await;
    browser.goto(&app.url("/ui")).await;
    let names = "return [...document.querySelectorAll('#task-rows a.task-name')].map((a) => a.textContent).join(',')";
    browser
        .wait_for(
            "three tasks, newest first",
            &format!(
                "return ({})() === 'Gamma forecast,Beta review,Alpha report'",
                wrap(names)
            ),
        )
        .await;

    // By name, ignoring case.
    browser.type_into("#filter-q", "bETa").await;
    browser.click("form[role=search] button[type=submit]").await;
    browser
        .wait_for(
            "the name search",
            &format!("return ({})() === 'Beta review'", wrap(names)),
        )
        .await;
    assert_eq!(
        browser.eval("return location.search").await,
        "?q=bETa",
        "the address follows the search"
    );

    // By the first digits of an id.
    browser.type_into("#filter-q", &alpha_id[..8]).await;
    browser.click("form[role=search] button[type=submit]").await;
    browser
        .wait_for(
            "the id search",
            &format!("return ({})() === 'Alpha report'", wrap(names)),
        )
        .await;

    // Too short to search: said next to the box.
    browser.type_into("#filter-q", "ab").await;
    browser.click("form[role=search] button[type=submit]").await;
    browser
        .wait_for(
            "the search error",
            "const error = document.getElementById('search-error'); \
             return error.checkVisibility() && error.textContent.includes('at least 3')",
        )
        .await;

    // By status, from its count.
    browser.click("#filter-clear").await;
    browser.click("[data-count=\"FAILED\"]").await;
    browser
        .wait_for(
            "the failed tasks",
            &format!("return ({})() === 'Gamma forecast'", wrap(names)),
        )
        .await;
    let curl = browser
        .eval("return document.querySelector('[data-curl] code').textContent")
        .await;
    assert_eq!(
        curl,
        format!("curl -s '{}/api/tasks?status=FAILED&limit=50'", app.address).as_str()
    );
    assert_eq!(
        browser
            .eval("return document.getElementById('filter-status').value")
            .await,
        "FAILED"
    );
    browser.close().await;
}
