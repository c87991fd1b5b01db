//! The dashboard at `/ui`, end to end: the real API (inline mode) and mock services, and
//! headless Chromium clicking through the pages as an operator would. Each test saves
//! screenshots of what it saw under `target/ui-screenshots/` (CI keeps them as
//! artifacts). Waits poll with a deadline; nothing sleeps for a fixed time.

mod browser;

use chrono::{DateTime, FixedOffset};
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

fn time(value: &Value) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(value.as_str().expect("a time")).expect("RFC 3339")
}

/// Milliseconds from `from` to `to`, two of the API's times, at the millisecond
/// precision a browser reads them with.
fn millis_between(from: &Value, to: &Value) -> i64 {
    time(to).timestamp_millis() - time(from).timestamp_millis()
}

/// How the pages write a duration in a `<time datetime>`: `PT1.250S`.
fn iso_duration(ms: i64) -> String {
    format!("PT{}.{:03}S", ms / 1000, ms % 1000)
}

/// The API's time as the pages show it in UTC: `2026-12-03 09:11:13 UTC`.
fn shown_in_utc(at: &Value) -> String {
    format!("{} UTC", time(at).naive_utc().format("%Y-%m-%d %H:%M:%S"))
}

/// The service request of `task` that calls `service`.
fn service_request<'a>(task: &'a Value, service: &str) -> &'a Value {
    task["service_requests"]
        .as_array()
        .and_then(|all| all.iter().find(|sr| sr["service_name"] == service))
        .unwrap_or_else(|| panic!("no {service} service request in {task}"))
}

/// What the task page lists for the attempts of a service request: one entry per
/// line, `{attempt, outcome, result, at, took, error}` for attempts and `{redriven}`
/// for a re-drive between them.
fn shown_attempts(service: &str) -> String {
    format!(
        "return [...document.querySelectorAll('#service-requests tr.attempts-row[data-attempts-of=\"{service}\"] li')] \
           .map((li) => li.classList.contains('attempt-redrive') \
             ? {{ redriven: li.querySelector('time').getAttribute('datetime') }} \
             : {{ attempt: li.dataset.attempt, outcome: li.dataset.outcome, \
                  result: li.querySelector('.attempt-result').textContent, \
                  at: li.querySelector('.attempt-at time').getAttribute('datetime'), \
                  took: li.querySelector('.attempt-took time')?.getAttribute('datetime') ?? null, \
                  error: li.querySelector('.attempt-error')?.textContent ?? null }})"
    )
}

/// The entries `shown_attempts` should find for each recorded failed attempt.
fn expected_failed_attempts(sr: &Value) -> Vec<Value> {
    sr["failed_attempts"]
        .as_array()
        .expect("failed_attempts")
        .iter()
        .map(|a| {
            json!({
                "attempt": a["attempt"].to_string(),
                "outcome": "failed",
                "result": format!("HTTP {}", a["status_code"]),
                "at": a["started_at"],
                "took": iso_duration(a["duration_ms"].as_i64().expect("duration_ms")),
                "error": a["error"],
            })
        })
        .collect()
}

/// The entry `shown_attempts` should find for the attempt that succeeded.
fn expected_success(sr: &Value) -> Value {
    json!({
        "attempt": sr["attempts"].to_string(),
        "outcome": "succeeded",
        "result": "Succeeded",
        "at": sr["completed_at"],
        "took": null,
        "error": null,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_list_shows_a_submitted_task_and_its_completion_without_a_reload() {
    // Slow services, so that the list is seen showing the task while it runs (for
    // more than one of its 2 s polls).
    let app = TestApp::spawn_with(|config| config.dispatch.http_timeout_ms = 15_000).await;
    for service in SERVICES {
        app.mock.set_behaviour(service, slow(6_000));
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
    // While it runs, its duration counts up, said to be so far.
    let duration = format!(
        "const cell = document.querySelector('tr[data-task-id=\"{task_id}\"] td[data-label=\"Duration\"]'); \
         return cell && cell.textContent.endsWith(' so far') \
             && parseFloat(cell.querySelector('time').getAttribute('datetime').slice(2))"
    );
    let running_for = browser.wait_for("the running time so far", &duration).await;
    browser
        .wait_for(
            "the running time counting up",
            &format!("return ({})() > {running_for}", wrap(&duration)),
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
    // Finished: from submission to completion.
    let task = app.get_json(&format!("/api/tasks/{task_id}")).await;
    let took = millis_between(&task["created_at"], &task["updated_at"]);
    let shown = browser
        .eval(&format!(
            "const cell = document.querySelector('tr[data-task-id=\"{task_id}\"] td[data-label=\"Duration\"]'); \
             return [cell.querySelector('time').getAttribute('datetime'), cell.textContent]"
        ))
        .await;
    assert_eq!(shown[0], iso_duration(took).as_str());
    assert!(
        shown[1].as_str().is_some_and(|text| text.ends_with(" s")),
        "about 6 s, no longer so far: {shown}"
    );
    browser.screenshot("task-list").await;

    // A phone: the table becomes one card per task.
    browser.set_window_size(390, 844).await;
    browser
        .wait_for(
            "the cards layout",
            "return getComputedStyle(document.querySelector('#task-table thead')).position === 'absolute'",
        )
        .await;
    // The shot shows the list, where the cards are.
    browser
        .eval("document.getElementById('list-heading').parentElement.scrollIntoView(); return true")
        .await;
    browser.screenshot_window("task-list-phone").await;

    // The header leads to the API's own documentation.
    browser.set_window_size(1280, 900).await;
    browser.click("header nav a[href=\"/docs/\"]").await;
    browser
        .wait_for(
            "Swagger UI",
            "return location.pathname === '/docs/' && document.querySelector('#swagger-ui .info .title') !== null",
        )
        .await;
    browser.close().await;
}

/// `script` as the body of a function expression, to call inside another script.
fn wrap(script: &str) -> String {
    format!("function () {{ {script} }}")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_list_shows_durations_error_starts_and_times_in_the_browsers_zone() {
    let app = TestApp::spawn().await;
    for i in 0..18 {
        run_direct(&app, &request_named(&format!("Routine run {i}"))).await;
    }
    app.mock.set_behaviour("specialty", slow(300));
    let finished = run_direct(&app, &request_named("Slow forecast")).await;
    app.mock.set_behaviour("specialty", Behaviour::default());
    app.mock.set_behaviour(
        "rebates",
        Behaviour {
            failure_rate: 1.0,
            ..Behaviour::default()
        },
    );
    let failed = run_direct(&app, &request_named("Broken forecast")).await;
    assert_eq!(failed["status"], "FAILED");
    let finished = app
        .get_json(&format!(
            "/api/tasks/{}",
            finished["task_id"].as_str().expect("id")
        ))
        .await;
    let finished_id = finished["task_id"].as_str().expect("id");
    let failed_id = failed["task_id"].as_str().expect("id");
    let error = failed["error_message"].as_str().expect("error message");
    assert!(
        error.chars().count() > 100,
        "long enough to be cut: {error}"
    );

    // India: half an hour off UTC, so a time shown in UTC (or in whole hours) is wrong.
    let browser = Browser::start_in_time_zone("Asia/Kolkata").await;
    let india = FixedOffset::east_opt(5 * 3600 + 30 * 60).expect("offset");
    browser.set_window_size(1400, 900).await;
    browser.goto(&app.url("/ui")).await;
    browser
        .wait_for(
            "twenty tasks",
            "return document.querySelectorAll('#task-rows tr[data-task-id]').length === 20",
        )
        .await;
    let cell = |task_id: &str, label: &str| {
        format!(
            "document.querySelector('tr[data-task-id=\"{task_id}\"] td[data-label=\"{label}\"]')"
        )
    };

    // The duration, from submission to the end, at least the 300 ms of the slow service.
    let took = millis_between(&finished["created_at"], &finished["updated_at"]);
    assert!(took >= 300, "{took} ms");
    let shown = browser
        .eval(&format!(
            "const time = {}?.querySelector('time'); return time && [time.getAttribute('datetime'), time.textContent]",
            cell(finished_id, "Duration")
        ))
        .await;
    assert_eq!(shown[0], iso_duration(took).as_str());
    let text = shown[1].as_str().expect("text");
    if took < 1000 {
        assert_eq!(text, format!("{took} ms"));
    } else {
        assert!(text.ends_with(" s"), "{text}");
    }

    // A failed task shows the start of its error, the whole of it as its title.
    let start = browser
        .eval(&format!(
            "const e = {}?.querySelector('.row-error'); return e && e.checkVisibility() && [e.textContent, e.title]",
            cell(failed_id, "Task")
        ))
        .await;
    let text = start[0].as_str().expect("the start of the error");
    let cut = text.strip_suffix('…').expect("cut with an ellipsis");
    assert!(
        cut.len() >= 40 && cut.len() < error.len() && error.starts_with(cut),
        "{text:?} starts {error:?}"
    );
    assert_eq!(start[1], error);
    assert_eq!(
        browser
            .eval(&format!(
                "return {}?.querySelector('.row-error') ?? null",
                cell(finished_id, "Task")
            ))
            .await,
        Value::Null,
        "no error under a completed task"
    );

    // Times are the browser's, and say so.
    let submitted = browser
        .eval(&format!(
            "return {}?.querySelector('time')?.textContent ?? null",
            cell(finished_id, "Submitted")
        ))
        .await;
    let in_india = time(&finished["created_at"]).with_timezone(&india);
    assert_eq!(
        submitted,
        format!("{} GMT+5:30", in_india.format("%Y-%m-%d %H:%M:%S")).as_str()
    );

    // The chart's time axis: a labelled tick for each of the 15 minutes, in that zone.
    let ticks = browser
        .wait_for(
            "the chart's minute ticks",
            "const ticks = [...document.querySelectorAll('#throughput-axis .tick')]; \
             return ticks.length > 0 && ticks.map((t) => [t.dataset.start, t.textContent, \
                 t.querySelector('.tick-label').checkVisibility()])",
        )
        .await;
    let ticks = ticks.as_array().expect("ticks");
    assert_eq!(ticks.len(), 15, "{ticks:?}");
    for (i, tick) in ticks.iter().enumerate() {
        let start = time(&tick[0]);
        assert_eq!(
            tick[1],
            start
                .with_timezone(&india)
                .format("%H:%M")
                .to_string()
                .as_str()
        );
        assert_eq!(tick[2], true, "every minute is labelled at this width");
        if i > 0 {
            assert_eq!((start - time(&ticks[i - 1][0])).num_seconds(), 60);
        }
    }
    assert_eq!(
        browser
            .eval("return document.getElementById('throughput-zone').textContent")
            .await,
        "Times in GMT+5:30"
    );

    // On a 1400×900 screen the counts and the chart leave room for the tasks (the
    // window is 900 high; the page gets what the browser's frame leaves).
    let above_the_fold = browser
        .eval(
            "return [...document.querySelectorAll('#task-rows tr[data-task-id]')] \
               .filter((row) => row.getBoundingClientRect().bottom <= window.innerHeight).length",
        )
        .await;
    assert!(
        above_the_fold.as_u64().is_some_and(|rows| rows >= 6),
        "{above_the_fold} tasks fit above the fold"
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_task_page_shows_its_three_service_requests_the_slowest_and_each_attempt() {
    let app = TestApp::spawn().await;
    app.mock.set_behaviour("specialty", slow(400));
    // Rebates fails twice, then the third attempt (a retry within the same run) works.
    app.mock.set_behaviour(
        "rebates",
        Behaviour {
            fail_first: Some(2),
            ..Behaviour::default()
        },
    );
    let task = run_direct(&app, &example_request()).await;
    assert_eq!(task["status"], "COMPLETED");
    let task_id = task["task_id"].as_str().expect("id");
    let task = app.get_json(&format!("/api/tasks/{task_id}")).await;

    let browser = Browser::start().await;
    browser
        .goto(&app.url(&format!("/ui/tasks/{task_id}")))
        .await;
    let rows = browser
        .wait_for(
            "three completed service requests",
            "const rows = [...document.querySelectorAll('#service-requests tr[data-service]')]; \
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

    // Each attempt of rebates: the two that failed, as recorded, then the one that
    // worked, at the time the request completed.
    let rebates = service_request(&task, "rebates");
    assert_eq!(rebates["attempts"], 3);
    let mut expected = expected_failed_attempts(rebates);
    assert_eq!(expected.len(), 2, "{rebates}");
    expected.push(expected_success(rebates));
    assert_eq!(
        browser.eval(&shown_attempts("rebates")).await,
        json!(expected)
    );
    assert_eq!(
        browser
            .eval("return [...document.querySelectorAll('#service-requests tr.attempts-row')].map((r) => r.dataset.attemptsOf)")
            .await,
        json!(["rebates"]),
        "a request that worked at once lists no attempts"
    );
    assert_eq!(
        browser
            .eval("return document.querySelectorAll('#timeline li[data-service=\"rebates\"] .attempt-failed').length")
            .await,
        2,
        "the timeline marks the failed attempts"
    );

    // Never re-driven: it took the whole time from submission, and has no history.
    let took = millis_between(&task["created_at"], &task["updated_at"]);
    assert_eq!(
        browser
            .eval("return document.getElementById('task-took').getAttribute('datetime')")
            .await,
        iso_duration(took).as_str()
    );
    assert_eq!(
        browser
            .eval("return document.getElementById('redrive-history').checkVisibility()")
            .await,
        false
    );
    // Times say their zone (the browser runs in UTC).
    assert_eq!(
        browser
            .eval("return document.querySelector('#task-fields time').textContent")
            .await,
        shown_in_utc(&task["created_at"]).as_str()
    );
    let started = &service_request(&task, "specialty")["started_at"];
    assert_eq!(
        browser
            .eval("return document.querySelector('#service-requests tr[data-service=\"specialty\"] td[data-label=\"Started\"] time').textContent")
            .await,
        format!("{} UTC", time(started).naive_utc().format("%H:%M:%S%.3f")).as_str()
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
    // Each of the three attempts that failed, and no history yet.
    let stored = app.get_json(&format!("/api/tasks/{task_id}")).await;
    let revenue = service_request(&stored, "revenue");
    let failed_attempts = expected_failed_attempts(revenue);
    assert_eq!(failed_attempts.len(), 3, "{revenue}");
    assert!(
        failed_attempts.iter().all(|a| a["result"] == "HTTP 500"),
        "{failed_attempts:?}"
    );
    assert_eq!(
        browser.eval(&shown_attempts("revenue")).await,
        json!(failed_attempts)
    );
    assert_eq!(
        browser
            .eval("return document.getElementById('redrive-history').checkVisibility()")
            .await,
        false
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

    // The earlier failure stays on the page: its error, when, and when it was re-driven.
    let redrive = &stored["redrives"][0];
    assert_eq!(stored["redrives"].as_array().map(Vec::len), Some(1));
    assert!(
        redrive["error_message"]
            .as_str()
            .is_some_and(|e| e.contains("revenue")),
        "{redrive}"
    );
    let history = browser
        .wait_for(
            "the earlier failure",
            "const rows = [...document.querySelectorAll('#redrive-rows tr')]; \
             return document.getElementById('redrive-history').checkVisibility() && rows.map((row) => ({ \
               failed: row.querySelector('time.failed-at').getAttribute('datetime'), \
               failedText: row.querySelector('time.failed-at').textContent, \
               error: row.querySelector('td[data-label=\"Error\"]').textContent, \
               redriven: row.querySelector('time.redriven-at').getAttribute('datetime') }))",
        )
        .await;
    assert_eq!(
        history,
        json!([{
            "failed": redrive["failed_at"],
            "failedText": shown_in_utc(&redrive["failed_at"]),
            "error": redrive["error_message"],
            "redriven": redrive["redriven_at"],
        }])
    );
    // It took the time from submission to completion, less the time it sat FAILED.
    let waited = millis_between(&redrive["failed_at"], &redrive["redriven_at"]);
    let took = millis_between(&stored["created_at"], &stored["updated_at"]) - waited;
    assert!(waited > 0, "{redrive}");
    assert_eq!(
        browser
            .eval("return document.getElementById('task-took').getAttribute('datetime')")
            .await,
        iso_duration(took).as_str()
    );
    // Revenue's attempts over both runs: three failed, the re-drive, the fourth worked.
    let revenue = service_request(&stored, "revenue");
    let mut expected = expected_failed_attempts(revenue);
    assert_eq!(
        expected, failed_attempts,
        "the first run's attempts are kept"
    );
    expected.push(json!({"redriven": redrive["redriven_at"]}));
    expected.push(expected_success(revenue));
    assert_eq!(
        browser.eval(&shown_attempts("revenue")).await,
        json!(expected)
    );
    assert_eq!(
        browser
            .eval("return document.querySelectorAll('#timeline li[data-service=\"revenue\"] .gap').length")
            .await,
        1,
        "the timeline shows the time the task sat failed"
    );
    browser.screenshot("task-redriven").await;
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
