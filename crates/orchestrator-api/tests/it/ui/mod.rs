//! The dashboard at `/ui`, end to end: the real API (inline mode) and mock services, and
//! headless Chromium clicking through the pages as an operator would. Each test saves
//! screenshots of what it saw under `target/ui-screenshots/` (CI keeps them as
//! artifacts). Pages are read with WebDriver's element queries; waits poll with a
//! deadline, and nothing sleeps for a fixed time.

mod browser;

use chrono::{DateTime, FixedOffset};
use orchestrator_mock_services::{Behaviour, Latency};
use serde_json::{Value, json};
use thirtyfour::prelude::*;

use self::browser::{Browser, ElementText};
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

/// The list's row for a task.
fn row(task_id: &str) -> String {
    format!("#task-rows tr[data-task-id=\"{task_id}\"]")
}

/// A cell of the list's row for a task, by its label.
fn cell(task_id: &str, label: &str) -> String {
    format!("tr[data-task-id=\"{task_id}\"] td[data-label=\"{label}\"]")
}

/// The `textContent` of the first element `css` selects.
async fn text_of(browser: &Browser, css: &str) -> WebDriverResult<String> {
    browser.find(By::Css(css)).await?.text_content().await
}

/// An attribute of the first element `css` selects.
async fn attr_of(browser: &Browser, css: &str, name: &str) -> WebDriverResult<Option<String>> {
    browser.find(By::Css(css)).await?.attr(name).await
}

/// Whether the first element `css` selects is displayed.
async fn displayed(browser: &Browser, css: &str) -> WebDriverResult<bool> {
    browser.find(By::Css(css)).await?.is_displayed().await
}

/// How many elements `css` selects.
async fn count(browser: &Browser, css: &str) -> WebDriverResult<usize> {
    Ok(browser.find_all(By::Css(css)).await?.len())
}

/// The seconds in a duration as the pages write it in a `<time datetime>` (`PT1.250S`).
fn seconds(iso: &str) -> Option<f64> {
    iso.strip_prefix("PT")?.strip_suffix('S')?.parse().ok()
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
async fn shown_attempts(browser: &Browser, service: &str) -> WebDriverResult<Value> {
    let css = format!("#service-requests tr.attempts-row[data-attempts-of=\"{service}\"] li");
    let mut shown = Vec::new();
    for li in browser.find_all(By::Css(css)).await? {
        let class = li.attr("class").await?.unwrap_or_default();
        if class.split_whitespace().any(|c| c == "attempt-redrive") {
            let at = li.find(By::Css("time")).await?.attr("datetime").await?;
            shown.push(json!({ "redriven": at }));
            continue;
        }
        let took = match li.find_all(By::Css(".attempt-took time")).await?.first() {
            Some(time) => time.attr("datetime").await?,
            None => None,
        };
        let error = match li.find_all(By::Css(".attempt-error")).await?.first() {
            Some(error) => Some(error.text_content().await?),
            None => None,
        };
        shown.push(json!({
            "attempt": li.attr("data-attempt").await?,
            "outcome": li.attr("data-outcome").await?,
            "result": li.find(By::Css(".attempt-result")).await?.text_content().await?,
            "at": li.find(By::Css(".attempt-at time")).await?.attr("datetime").await?,
            "took": took,
            "error": error,
        }));
    }
    Ok(Value::Array(shown))
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
async fn the_list_shows_a_submitted_task_and_its_completion_without_a_reload() -> anyhow::Result<()>
{
    // Slow services, so that the list is seen showing the task while it runs, and
    // updating itself (told by the event stream) when it completes.
    let app = TestApp::spawn_with(|config| config.dispatch.http_timeout_ms = 15_000).await;
    for service in SERVICES {
        app.mock.set_behaviour(service, slow(6_000));
    }
    let browser = Browser::start().await?;
    browser.sign_in(&app.address, &app.token).await?;
    browser.goto(&app.url("/ui")).await?;
    browser
        .query(By::Css("#task-rows .empty"))
        .desc("the empty list")
        .first()
        .await?;
    // A page load would replace the document, and WebDriver would then call this
    // element stale.
    let document = browser.find(By::Css("html")).await?;

    let task_id = submit(&app, &request_named("Live in the list")).await;
    let row = row(&task_id);
    let first_seen = browser
        .wait_for("the new task in the list", async || {
            match browser.find_now(&row).await? {
                Some(row) => row.attr("data-status").await,
                None => Ok(None),
            }
        })
        .await?;
    assert!(
        matches!(first_seen.as_str(), "PENDING" | "IN_PROGRESS"),
        "seen running first, not {first_seen}"
    );
    browser
        .query(By::Css("[data-count=\"IN_PROGRESS\"] .value"))
        .with_property("textContent", "1")
        .desc("the count of tasks in progress")
        .first()
        .await?;
    // While it runs, its duration counts up, said to be so far.
    let duration = cell(&task_id, "Duration");
    let running_for = browser
        .wait_for("the running time so far", async || {
            running_time(&browser, &duration).await
        })
        .await?;
    browser
        .wait_for("the running time counting up", async || {
            Ok(running_time(&browser, &duration)
                .await?
                .filter(|&now| now > running_for))
        })
        .await?;
    browser
        .query(By::Css(&row))
        .with_attribute("data-status", "COMPLETED")
        .desc("the task COMPLETED in the list")
        .first()
        .await?;
    assert!(
        document.is_present().await?,
        "the list updated itself, without reloading the page"
    );
    browser
        .wait_for("the counts", async || {
            let completed = text_of(&browser, "[data-count=\"COMPLETED\"] .value").await?;
            let all = text_of(&browser, "[data-count=\"ALL\"] .value").await?;
            Ok((completed == "1" && all == "1").then_some(()))
        })
        .await?;
    browser
        .wait_for("the throughput summary", async || {
            let summary = text_of(&browser, "#throughput-summary").await?;
            Ok(summary.starts_with("1 submitted").then_some(()))
        })
        .await?;
    let name = text_of(&browser, &format!("{row} a.task-name")).await?;
    assert_eq!(name, "Live in the list");
    // Finished: from submission to completion.
    let task = app.get_json(&format!("/api/tasks/{task_id}")).await;
    let took = millis_between(&task["created_at"], &task["updated_at"]);
    let shown = browser.find(By::Css(&duration)).await?;
    assert_eq!(
        attr_of(&browser, &format!("{duration} time"), "datetime").await?,
        Some(iso_duration(took))
    );
    let text = shown.text_content().await?;
    assert!(text.ends_with(" s"), "about 6 s, no longer so far: {text}");
    browser.screenshot("task-list").await?;

    // A phone: the table becomes one card per task.
    browser.set_window_size(390, 844).await?;
    browser
        .query(By::Css("#task-table thead"))
        .with_css_property("position", "absolute")
        .desc("the cards layout")
        .first()
        .await?;
    // The shot shows the list, where the cards are. Script, because WebDriver scrolls
    // only as a side effect of other commands, and thirtyfour's `scroll_into_view`
    // centres the element, where the shot should start at the list's top.
    let list = browser.find(By::Id("list-heading")).await?.parent().await?;
    browser
        .execute("arguments[0].scrollIntoView()", vec![list.to_json()?])
        .await?;
    browser.screenshot_window("task-list-phone").await?;

    // The header leads to the API's own documentation.
    browser.set_window_size(1280, 900).await?;
    browser
        .find(By::Css("header nav a[href=\"/docs/\"]"))
        .await?
        .click()
        .await?;
    browser
        .wait_for("Swagger UI", async || {
            let on_docs = browser.current_url().await?.path() == "/docs/";
            let title = browser.find_now("#swagger-ui .info .title").await?;
            Ok((on_docs && title.is_some()).then_some(()))
        })
        .await?;
    browser.close().await;
    Ok(())
}

/// The running time the list shows in a Duration cell, in seconds, while it says
/// "so far"; none once the task finished, or while it is zero.
async fn running_time(browser: &Browser, cell: &str) -> WebDriverResult<Option<f64>> {
    let Some(cell) = browser.find_now(cell).await? else {
        return Ok(None);
    };
    if !cell.text_content().await?.ends_with(" so far") {
        return Ok(None);
    }
    let datetime = cell.find(By::Css("time")).await?.attr("datetime").await?;
    Ok(datetime
        .as_deref()
        .and_then(seconds)
        .filter(|&seconds| seconds > 0.0))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_list_shows_durations_error_starts_and_times_in_the_browsers_zone() -> anyhow::Result<()>
{
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
    let browser = Browser::start_in_time_zone("Asia/Kolkata").await?;
    browser.sign_in(&app.address, &app.token).await?;
    let india = FixedOffset::east_opt(5 * 3600 + 30 * 60).expect("offset");
    browser.set_window_size(1400, 900).await?;
    browser.goto(&app.url("/ui")).await?;
    let rows = "#task-rows tr[data-task-id]";
    browser
        .wait_for("twenty tasks", async || {
            Ok((count(&browser, rows).await? == 20).then_some(()))
        })
        .await?;

    // The duration, from submission to the end, at least the 300 ms of the slow service.
    let took = millis_between(&finished["created_at"], &finished["updated_at"]);
    assert!(took >= 300, "{took} ms");
    let shown = browser
        .find(By::Css(format!("{} time", cell(finished_id, "Duration"))))
        .await?;
    assert_eq!(shown.attr("datetime").await?, Some(iso_duration(took)));
    let text = shown.text_content().await?;
    if took < 1000 {
        assert_eq!(text, format!("{took} ms"));
    } else {
        assert!(text.ends_with(" s"), "{text}");
    }

    // A failed task shows the start of its error, the whole of it as its title.
    let start = browser
        .find(By::Css(format!("{} .row-error", cell(failed_id, "Task"))))
        .await?;
    assert!(
        start.is_displayed().await?,
        "the start of the error is shown"
    );
    let text = start.text_content().await?;
    let cut = text.strip_suffix('…').expect("cut with an ellipsis");
    assert!(
        cut.len() >= 40 && cut.len() < error.len() && error.starts_with(cut),
        "{text:?} starts {error:?}"
    );
    assert_eq!(start.attr("title").await?.as_deref(), Some(error));
    assert_eq!(
        count(
            &browser,
            &format!("{} .row-error", cell(finished_id, "Task"))
        )
        .await?,
        0,
        "no error under a completed task"
    );

    // Times are the browser's, and say so.
    let submitted = text_of(
        &browser,
        &format!("{} time", cell(finished_id, "Submitted")),
    )
    .await?;
    let in_india = time(&finished["created_at"]).with_timezone(&india);
    assert_eq!(
        submitted,
        format!("{} GMT+5:30", in_india.format("%Y-%m-%d %H:%M:%S"))
    );

    // The chart's time axis: a labelled tick for each of the 15 minutes, in that zone.
    // The chart is redrawn at each poll of the list, so the ticks are read in one go,
    // again if they were replaced while being read.
    let ticks = browser
        .wait_for("the chart's minute ticks", async || {
            let mut ticks = Vec::new();
            for tick in browser.find_all(By::Css("#throughput-axis .tick")).await? {
                let start = tick.attr("data-start").await?.unwrap_or_default();
                let label = tick.text_content().await?;
                let labelled = tick
                    .find(By::Css(".tick-label"))
                    .await?
                    .is_displayed()
                    .await?;
                ticks.push((start, label, labelled));
            }
            Ok((!ticks.is_empty()).then_some(ticks))
        })
        .await?;
    assert_eq!(ticks.len(), 15, "{ticks:?}");
    for (i, (start, label, labelled)) in ticks.iter().enumerate() {
        let start = DateTime::parse_from_rfc3339(start)?;
        assert_eq!(
            *label,
            start.with_timezone(&india).format("%H:%M").to_string()
        );
        assert!(labelled, "every minute is labelled at this width");
        if i > 0 {
            let before = DateTime::parse_from_rfc3339(&ticks[i - 1].0)?;
            assert_eq!((start - before).num_seconds(), 60);
        }
    }
    assert_eq!(
        text_of(&browser, "#throughput-zone").await?,
        "Times in GMT+5:30"
    );

    // On a 1400×900 screen the counts and the chart leave room for the tasks (the
    // window is 900 high; the page gets what the browser's frame leaves). The page has
    // not scrolled, so a row's rectangle is where the viewport shows it.
    let viewport = f64::from(browser.viewport_height().await?);
    let mut above_the_fold = 0;
    for row in browser.find_all(By::Css(rows)).await? {
        let rect = row.rect().await?;
        if rect.y + rect.height <= viewport {
            above_the_fold += 1;
        }
    }
    assert!(
        above_the_fold >= 6,
        "{above_the_fold} tasks fit above the fold"
    );
    browser.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_task_page_shows_its_three_service_requests_the_slowest_and_each_attempt()
-> anyhow::Result<()> {
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

    let browser = Browser::start().await?;
    browser.sign_in(&app.address, &app.token).await?;
    browser
        .goto(&app.url(&format!("/ui/tasks/{task_id}")))
        .await?;
    let services = browser
        .wait_for("three completed service requests", async || {
            let rows = browser
                .find_all(By::Css("#service-requests tr[data-service]"))
                .await?;
            let mut services = Vec::new();
            for row in &rows {
                if row.attr("data-status").await?.as_deref() != Some("COMPLETED") {
                    return Ok(None);
                }
                services.push(row.attr("data-service").await?.unwrap_or_default());
            }
            services.sort();
            Ok((services.len() == 3).then_some(services))
        })
        .await?;
    assert_eq!(services, ["rebates", "revenue", "specialty"]);
    assert_eq!(
        text_of(&browser, "#task-title").await?,
        "Quarterly forecast"
    );
    assert_eq!(
        attr_of(&browser, "#task-status .badge", "data-status").await?,
        Some("COMPLETED".into())
    );
    // Each completed call shows its response; the timeline singles out the slow one.
    assert_eq!(
        count(&browser, "#service-requests details[data-sr]").await?,
        3
    );
    assert_eq!(count(&browser, "#timeline li").await?, 3);
    assert_eq!(
        attr_of(&browser, "#timeline li.slowest", "data-service").await?,
        Some("specialty".into())
    );
    let payload: Value = serde_json::from_str(&text_of(&browser, "#task-payload").await?)?;
    assert_eq!(payload, example_request()["payload"]);
    assert_eq!(
        text_of(&browser, "[data-curl] code").await?,
        format!(
            "curl -s -H \"Authorization: Bearer $ORCHESTRATOR_TOKEN\" '{}/api/tasks/{task_id}'",
            app.address
        )
    );
    assert!(
        !displayed(&browser, "#redrive").await?,
        "only a failed task offers a re-drive"
    );

    // Each attempt of rebates: the two that failed, as recorded, then the one that
    // worked, at the time the request completed.
    let rebates = service_request(&task, "rebates");
    assert_eq!(rebates["attempts"], 3);
    let mut expected = expected_failed_attempts(rebates);
    assert_eq!(expected.len(), 2, "{rebates}");
    expected.push(expected_success(rebates));
    assert_eq!(shown_attempts(&browser, "rebates").await?, json!(expected));
    let mut listed = Vec::new();
    for row in browser
        .find_all(By::Css("#service-requests tr.attempts-row"))
        .await?
    {
        listed.push(row.attr("data-attempts-of").await?);
    }
    assert_eq!(
        listed,
        [Some("rebates".to_owned())],
        "a request that worked at once lists no attempts"
    );
    assert_eq!(
        count(
            &browser,
            "#timeline li[data-service=\"rebates\"] .attempt-failed"
        )
        .await?,
        2,
        "the timeline marks the failed attempts"
    );

    // Never re-driven: it took the whole time from submission, and has no history.
    let took = millis_between(&task["created_at"], &task["updated_at"]);
    assert_eq!(
        attr_of(&browser, "#task-took", "datetime").await?,
        Some(iso_duration(took))
    );
    assert!(!displayed(&browser, "#redrive-history").await?);
    // Times say their zone (the browser runs in UTC).
    assert_eq!(
        text_of(&browser, "#task-fields time").await?,
        shown_in_utc(&task["created_at"])
    );
    let started = &service_request(&task, "specialty")["started_at"];
    assert_eq!(
        text_of(
            &browser,
            "#service-requests tr[data-service=\"specialty\"] td[data-label=\"Started\"] time"
        )
        .await?,
        format!("{} UTC", time(started).naive_utc().format("%H:%M:%S%.3f"))
    );

    browser
        .find(By::Css(
            "#service-requests tr[data-service=\"specialty\"] details summary",
        ))
        .await?
        .click()
        .await?;
    browser.screenshot("task-detail").await?;
    browser.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_form_submits_a_task_and_shows_what_the_api_refused() -> anyhow::Result<()> {
    let app = TestApp::spawn().await;
    let browser = Browser::start().await?;
    browser.sign_in(&app.address, &app.token).await?;
    browser.goto(&app.url("/ui/new")).await?;
    // Prefilled with the README's example.
    let name = browser
        .query(By::Id("task-name"))
        .desc("the prefilled form")
        .first()
        .await?;
    let description = browser.find(By::Id("task-description")).await?;
    let payload = browser.find(By::Id("task-payload")).await?;
    let payload: Value = serde_json::from_str(&payload.value().await?.unwrap_or_default())?;
    let example = example_request();
    assert_eq!(
        name.value().await?.as_deref(),
        example["task_name"].as_str()
    );
    assert_eq!(
        description.value().await?.as_deref(),
        example["task_description"].as_str()
    );
    assert_eq!(payload, example["payload"]);
    browser.screenshot("new-task").await?;

    // JSON that does not parse is caught before anything is sent.
    let submit_task = async || browser.find(By::Id("submit-task")).await?.click().await;
    browser.type_into("#task-payload", "[{").await?;
    submit_task().await?;
    browser
        .wait_for("the JSON error", async || {
            let shown = displayed(&browser, "#form-errors").await?;
            let invalid = attr_of(&browser, "#task-payload", "aria-invalid").await?;
            Ok((shown && invalid.as_deref() == Some("true")).then_some(()))
        })
        .await?;

    // What the API refuses is listed with its pointer.
    let unknown_service = json!([{"billing": {
        "scenario_id": crate::helpers::SCENARIO_ID,
        "business_type_id": crate::helpers::BUSINESS_TYPE_ID,
    }}]);
    browser
        .type_into("#task-payload", &unknown_service.to_string())
        .await?;
    submit_task().await?;
    let errors = browser
        .wait_for("the API's validation errors", async || {
            if !displayed(&browser, "#form-errors").await? {
                return Ok(None);
            }
            let errors = text_of(&browser, "#form-errors").await?;
            Ok(errors.contains("/payload/0/billing").then_some(errors))
        })
        .await?;
    assert!(errors.contains("unknown service"), "{errors}");
    assert_eq!(
        app.get_json("/api/tasks").await["tasks"],
        json!([]),
        "nothing was stored"
    );

    browser.find(By::Id("reset-example")).await?.click().await?;
    browser
        .type_into("#task-name", "Sent from the form")
        .await?;
    submit_task().await?;
    let task_id = browser
        .wait_for("the new task's page", async || {
            let url = browser.current_url().await?;
            Ok(url
                .path()
                .strip_prefix("/ui/tasks/")
                .filter(|id| !id.is_empty())
                .map(str::to_owned))
        })
        .await?;
    browser
        .wait_for("the task completed on its page", async || {
            let title = text_of(&browser, "#task-title").await?;
            let status = match browser.find_now("#task-status .badge").await? {
                Some(badge) => badge.attr("data-status").await?,
                None => None,
            };
            Ok(
                (title == "Sent from the form" && status.as_deref() == Some("COMPLETED"))
                    .then_some(()),
            )
        })
        .await?;
    let stored = app.get_json(&format!("/api/tasks/{task_id}")).await;
    assert_eq!(stored["task_name"], "Sent from the form");
    assert_eq!(stored["payload"], example["payload"]);
    assert_eq!(stored["service_requests"].as_array().map(Vec::len), Some(3));
    browser.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_task_is_redriven_from_its_page() -> anyhow::Result<()> {
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

    let browser = Browser::start().await?;
    browser.sign_in(&app.address, &app.token).await?;
    browser
        .goto(&app.url(&format!("/ui/tasks/{task_id}")))
        .await?;
    let error = browser
        .wait_for("the failure and the re-drive button", async || {
            if !displayed(&browser, "#redrive").await?
                || !displayed(&browser, "#task-error").await?
            {
                return Ok(None);
            }
            let error = text_of(&browser, "#task-error").await?;
            Ok((!error.is_empty()).then_some(error))
        })
        .await?;
    assert!(error.contains("revenue"), "{error}");
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
        shown_attempts(&browser, "revenue").await?,
        json!(failed_attempts)
    );
    assert!(!displayed(&browser, "#redrive-history").await?);
    let mut curls = Vec::new();
    for code in browser.find_all(By::Css("[data-curl] code")).await? {
        curls.push(code.text_content().await?);
    }
    assert_eq!(
        curls.get(1),
        Some(&format!(
            "curl -si -X POST -H \"Authorization: Bearer $ORCHESTRATOR_TOKEN\" '{}/api/tasks/{task_id}/retry'",
            app.address
        ))
    );
    browser.screenshot("task-failed").await?;

    let healed = app
        .client
        .delete(format!("{}/control", app.mock.base_url()))
        .send()
        .await
        .expect("control request");
    assert!(healed.status().is_success());
    browser.find(By::Id("redrive")).await?.click().await?;
    browser
        .wait_for("the re-driven task completed", async || {
            let status = attr_of(&browser, "#task-status .badge", "data-status").await?;
            let done = status.as_deref() == Some("COMPLETED")
                && !displayed(&browser, "#redrive").await?
                && !displayed(&browser, "#task-error").await?;
            Ok(done.then_some(()))
        })
        .await?;
    let revenue_attempts = text_of(
        &browser,
        "#service-requests tr[data-service=\"revenue\"] td[data-label=\"Attempts\"]",
    )
    .await?;
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
        .wait_for("the earlier failure", async || {
            if !displayed(&browser, "#redrive-history").await? {
                return Ok(None);
            }
            let mut rows = Vec::new();
            for row in browser.find_all(By::Css("#redrive-rows tr")).await? {
                let failed = row.find(By::Css("time.failed-at")).await?;
                let error = row.find(By::Css("td[data-label=\"Error\"]")).await?;
                let redriven = row.find(By::Css("time.redriven-at")).await?;
                rows.push(json!({
                    "failed": failed.attr("datetime").await?,
                    "failedText": failed.text_content().await?,
                    "error": error.text_content().await?,
                    "redriven": redriven.attr("datetime").await?,
                }));
            }
            Ok(Some(rows))
        })
        .await?;
    assert_eq!(
        json!(history),
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
        attr_of(&browser, "#task-took", "datetime").await?,
        Some(iso_duration(took))
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
    assert_eq!(shown_attempts(&browser, "revenue").await?, json!(expected));
    assert_eq!(
        count(&browser, "#timeline li[data-service=\"revenue\"] .gap").await?,
        1,
        "the timeline shows the time the task sat failed"
    );
    browser.screenshot("task-redriven").await?;
    browser.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_task_page_follows_its_task_by_events_without_polling() -> anyhow::Result<()> {
    // Calls of 5 s: a page that polled (it used to, every second) would read the task
    // several times while it runs. The browser starts and signs in before the submit,
    // so that the page is open while the task still runs however slow the machine is
    // to start a browser.
    let app = TestApp::spawn_with(|config| config.dispatch.http_timeout_ms = 15_000).await;
    for service in SERVICES {
        app.mock.set_behaviour(service, slow(5_000));
    }
    let browser = Browser::start().await?;
    browser.sign_in(&app.address, &app.token).await?;
    let task_id = submit(&app, &request_named("Followed live")).await;
    browser
        .goto(&app.url(&format!("/ui/tasks/{task_id}")))
        .await?;
    // The page redraws a running task every second (its bars grow): read it with
    // waits that take a redrawn element as "not yet".
    browser
        .wait_for("the task running", async || {
            let status = attr_of(&browser, "#task-status .badge", "data-status").await?;
            Ok((status.as_deref() == Some("IN_PROGRESS")).then_some(()))
        })
        .await?;
    browser
        .wait_for("the task and its calls shown COMPLETED", async || {
            let status = attr_of(&browser, "#task-status .badge", "data-status").await?;
            let done = count(&browser, "#service-requests tr[data-status=\"COMPLETED\"]").await?;
            Ok((status.as_deref() == Some("COMPLETED") && done == 3).then_some(()))
        })
        .await?;
    let loaded = browser
        .execute(
            "return performance.getEntriesByType('resource').map((e) => new URL(e.name).pathname)",
            Vec::new(),
        )
        .await?;
    let paths: Vec<String> = serde_json::from_value(loaded.json().clone())?;
    let task_path = format!("/api/tasks/{task_id}");
    let reads = paths.iter().filter(|path| **path == task_path).count();
    assert!(
        (1..=2).contains(&reads),
        "read once at load and once when final, never polled: {paths:?}"
    );
    assert!(
        paths.contains(&format!("{task_path}/events")),
        "followed by its event stream: {paths:?}"
    );
    browser.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_left_behind_do_not_hold_the_connections_the_next_page_needs() -> anyhow::Result<()> {
    // Every list page follows its tenant's event stream. A page left for another site
    // stays alive in Chromium's back/forward cache; while its stream stayed open with
    // it, five such pages held five of the six connections Chromium opens to a host
    // over HTTP/1.1, and the sixth list's reads waited about half a minute for one.
    // (`about:blank` stands for the other site: nothing leaves the machine.)
    let app = TestApp::spawn().await;
    let done = run_direct(&app, &request_named("Seen on every visit")).await;
    let done_row = row(done["task_id"].as_str().expect("task id"));
    let browser = Browser::start().await?;
    browser.sign_in(&app.address, &app.token).await?;
    for visit in 1..=8 {
        browser.goto("about:blank").await?;
        browser.goto(&app.url("/ui")).await?;
        let listed = format!("the task listed on visit {visit}");
        browser
            .query(By::Css(&done_row))
            .desc(&listed)
            .first()
            .await?;
    }

    // Back to a list restored from the cache: it follows the tenant's tasks again.
    browser
        .execute(
            "window.restoredFromCache = false; \
             addEventListener('pageshow', (e) => { window.restoredFromCache = e.persisted; });",
            Vec::new(),
        )
        .await?;
    browser.goto(&app.url("/ui/new")).await?;
    browser
        .query(By::Id("task-payload"))
        .desc("the form")
        .first()
        .await?;
    browser.back().await?;
    // Else the page was loaded anew, and this test would prove less.
    browser
        .wait_for(
            "the list restored from the back/forward cache",
            async || {
                let restored = browser
                    .execute("return window.restoredFromCache === true", Vec::new())
                    .await?;
                Ok((restored.json().as_bool() == Some(true)).then_some(()))
            },
        )
        .await?;
    let task_id = submit(&app, &request_named("Submitted after Back")).await;
    browser
        .query(By::Css(row(&task_id)))
        .desc("the task submitted after Back, listed without a reload")
        .first()
        .await?;
    browser.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_task_is_cancelled_from_its_page() -> anyhow::Result<()> {
    let app = TestApp::spawn().await;
    app.mock.set_behaviour(
        "revenue",
        Behaviour {
            hang: true,
            ..Behaviour::default()
        },
    );
    let task_id = submit(&app, &request_named("Not wanted any more")).await;
    let browser = Browser::start().await?;
    browser.sign_in(&app.address, &app.token).await?;
    browser
        .goto(&app.url(&format!("/ui/tasks/{task_id}")))
        .await?;
    browser
        .wait_for("the running task's cancel button", async || {
            let running = attr_of(&browser, "#task-status .badge", "data-status").await?;
            let ready = running.as_deref() == Some("IN_PROGRESS")
                && displayed(&browser, "#cancel").await?
                && !displayed(&browser, "#redrive").await?
                && app.mock.stats().in_flight == 1;
            Ok(ready.then_some(()))
        })
        .await?;
    browser.screenshot("task-running-cancel").await?;
    browser.find(By::Id("cancel")).await?.click().await?;
    browser
        .wait_for(
            "the task shown cancelled, offering a re-drive",
            async || {
                let status = attr_of(&browser, "#task-status .badge", "data-status").await?;
                let revenue = attr_of(
                    &browser,
                    "#service-requests tr[data-service=\"revenue\"]",
                    "data-status",
                )
                .await?;
                let done = status.as_deref() == Some("CANCELLED")
                    && revenue.as_deref() == Some("CANCELLED")
                    && !displayed(&browser, "#cancel").await?
                    && displayed(&browser, "#redrive").await?;
                Ok(done.then_some(()))
            },
        )
        .await?;
    assert_eq!(
        text_of(&browser, "#redrive").await?,
        "Re-drive what did not complete"
    );
    browser.screenshot("task-cancelled").await?;
    let stored = app.get_json(&format!("/api/tasks/{task_id}")).await;
    assert_eq!(stored["status"], "CANCELLED");
    assert_eq!(
        app.mock.stats().in_flight,
        0,
        "the hanging call was dropped"
    );
    browser.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_task_page_shows_its_webhook_deliveries_and_their_attempts() -> anyhow::Result<()> {
    let receiver = orchestrator_testkit::webhook::WebhookReceiver::start().await;
    receiver.answer_with(&[500]);
    let app = TestApp::spawn_with(|config| {
        config.webhooks.secret = Some(orchestrator_testkit::webhook::SECRET.to_owned());
        config.webhooks.allow_insecure = true;
        config.webhooks.retry_initial_backoff_ms = 100;
        config.webhooks.poll_interval_ms = 50;
    })
    .await;
    let mut body = request_named("Calls back when done");
    body["callback_url"] = json!(receiver.url);
    let task = run_direct(&app, &body).await;
    let task_id = task["task_id"].as_str().expect("id");
    let browser = Browser::start().await?;
    browser.sign_in(&app.address, &app.token).await?;
    browser
        .goto(&app.url(&format!("/ui/tasks/{task_id}")))
        .await?;
    // The page stops refreshing once the task is final: reload until the retry landed.
    let attempts = browser
        .wait_for(
            "the delivery, delivered at the second attempt",
            async || {
                browser.refresh().await?;
                let Some(state) = browser
                    .query(By::Css("#webhook-rows tr"))
                    .nowait()
                    .first()
                    .await
                    .ok()
                else {
                    return Ok(None);
                };
                if state.attr("data-state").await?.as_deref() != Some("delivered") {
                    return Ok(None);
                }
                Ok(Some(
                    text_of(&browser, "#webhook-rows .webhook-attempts").await?,
                ))
            },
        )
        .await?;
    assert_eq!(attempts, "HTTP 500, HTTP 200");
    assert!(displayed(&browser, "#webhooks").await?);
    browser.screenshot("task-webhooks").await?;
    browser.close().await;
    Ok(())
}

/// A search that spends its time budget before its page is full says how far back it
/// looked, and "Search further" goes on from there until the oldest task.
#[tokio::test(flavor = "multi_thread")]
async fn a_search_says_how_far_back_it_looked_and_searches_further() -> anyhow::Result<()> {
    // No budget: one slice (1,000 tasks) per request; the only match is the oldest.
    let app = TestApp::spawn_with(|config| config.search_budget_ms = 0).await;
    crate::dashboard::seed_with_needles(&app, 2_500).await;

    let browser = Browser::start().await?;
    browser.sign_in(&app.address, &app.token).await?;
    browser.goto(&app.url("/ui?q=needle")).await?;
    let searched_back = async |not: &str| {
        browser
            .wait_for("how far back the search looked", async || {
                let text = if displayed(&browser, "#searched-back").await? {
                    text_of(&browser, "#searched-back").await?
                } else {
                    String::new()
                };
                Ok((text.starts_with("Searched back to") && text != not).then_some(text))
            })
            .await
    };
    let first = searched_back("").await?;
    assert!(first.contains("older tasks not searched yet"), "{first}");
    assert_eq!(text_of(&browser, "#page-older").await?, "Search further →");
    assert_eq!(
        text_of(&browser, "#task-rows td.empty").await?.trim(),
        "No match among the tasks searched so far."
    );
    browser.screenshot("search-further").await?;

    browser.find(By::Id("page-older")).await?.click().await?;
    let second = searched_back(&first).await?;
    assert!(second.contains("older tasks not searched yet"), "{second}");
    browser.find(By::Id("page-older")).await?.click().await?;
    browser
        .wait_for("the oldest task found", async || {
            let names = browser.find_all(By::Css("#task-rows a.task-name")).await?;
            let mut shown = Vec::new();
            for name in names {
                shown.push(name.text_content().await?);
            }
            Ok((shown == ["Needle 3"]).then_some(()))
        })
        .await?;
    assert!(
        !displayed(&browser, "#searched-back").await?,
        "the search is complete"
    );
    assert!(
        !browser
            .find(By::Id("page-older"))
            .await?
            .is_enabled()
            .await?,
        "nothing further to search"
    );
    browser.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_list_filters_by_status_and_searches_by_id_or_name() -> anyhow::Result<()> {
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

    let browser = Browser::start().await?;
    browser.sign_in(&app.address, &app.token).await?;
    browser.goto(&app.url("/ui")).await?;
    // The names the list shows, top to bottom, once they are `expected`.
    let listed = async |what: &str, expected: &str| {
        browser
            .wait_for(what, async || {
                let mut names = Vec::new();
                for name in browser.find_all(By::Css("#task-rows a.task-name")).await? {
                    names.push(name.text_content().await?);
                }
                Ok((names.join(",") == expected).then_some(()))
            })
            .await
    };
    let search = async |text: &str| -> WebDriverResult<()> {
        browser.type_into("#filter-q", text).await?;
        browser
            .find(By::Css("form[role=search] button[type=submit]"))
            .await?
            .click()
            .await
    };
    listed(
        "three tasks, newest first",
        "Gamma forecast,Beta review,Alpha report",
    )
    .await?;

    // By name, ignoring case.
    search("bETa").await?;
    listed("the name search", "Beta review").await?;
    assert_eq!(
        browser.current_url().await?.query(),
        Some("q=bETa"),
        "the address follows the search"
    );

    // By the first digits of an id.
    search(&alpha_id[..8]).await?;
    listed("the id search", "Alpha report").await?;

    // Too short to search: said next to the box.
    search("ab").await?;
    browser
        .wait_for("the search error", async || {
            let shown = displayed(&browser, "#search-error").await?
                && text_of(&browser, "#search-error")
                    .await?
                    .contains("at least 3");
            Ok(shown.then_some(()))
        })
        .await?;

    // By status, from its count.
    browser.find(By::Id("filter-clear")).await?.click().await?;
    browser
        .find(By::Css("[data-count=\"FAILED\"]"))
        .await?
        .click()
        .await?;
    listed("the failed tasks", "Gamma forecast").await?;
    assert_eq!(
        text_of(&browser, "[data-curl] code").await?,
        format!(
            "curl -s -H \"Authorization: Bearer $ORCHESTRATOR_TOKEN\" '{}/api/tasks?status=FAILED&limit=50'",
            app.address
        )
    );
    let status = browser.find(By::Id("filter-status")).await?;
    assert_eq!(status.value().await?.as_deref(), Some("FAILED"));
    browser.close().await;
    Ok(())
}

/// Without a session the dashboard sends the browser to the sign-in page; a token signs
/// in, the header names the tenant, and sign-out ends the session. A read-only token
/// is not offered the actions it may not take.
#[tokio::test(flavor = "multi_thread")]
async fn sign_in_shows_the_tenants_tasks_and_sign_out_ends_the_session() -> anyhow::Result<()> {
    let app = TestApp::spawn().await;
    let task_id = submit(&app, &request_named("Seen after sign-in")).await;
    // Another tenant's task, submitted before: not on the list, not in the counts.
    let other = orchestrator_testkit::api::client_with_token(
        &app.db
            .token("other", &[orchestrator_core::Scope::TasksSubmit])
            .await,
    );
    let response = other
        .post(app.url("/api/orchestrate"))
        .json(&request_named("Another tenant's task"))
        .send()
        .await?;
    assert_eq!(response.status(), 202);
    let other_task: Value = response.json().await?;
    let other_id = other_task["task_id"].as_str().expect("task id");
    let browser = Browser::start().await?;
    browser.goto(&app.url("/ui")).await?;
    browser
        .wait_for("the sign-in page", async || {
            Ok(browser
                .current_url()
                .await?
                .path()
                .eq("/ui/sign-in")
                .then_some(()))
        })
        .await?;
    browser.type_into("#token", "orch_wrong").await?;
    browser.find(By::Css("#sign-in")).await?.click().await?;
    browser
        .query(By::Css("#sign-in-error"))
        .desc("the refusal")
        .first()
        .await?;
    browser.screenshot("sign-in-refused").await?;

    let reader = app
        .db
        .token("default", &[orchestrator_core::Scope::TasksRead])
        .await;
    browser.sign_in(&app.address, &reader).await?;
    // The header is filled from /api/me once the page has loaded: wait for it.
    browser
        .wait_for("the tenant in the header", async || {
            let tenant = text_of(&browser, "#who-tenant").await?;
            Ok((!tenant.is_empty()).then_some(()))
        })
        .await?;
    assert_eq!(text_of(&browser, "#who-tenant").await?, "Tenant default");
    // The header is filled from /api/me, the list from /api/tasks after it: wait for it.
    browser
        .query(By::Css(row(&task_id)))
        .desc("the tenant's task")
        .first()
        .await?;
    assert_eq!(count(&browser, &row(other_id)).await?, 0);
    assert_eq!(count(&browser, "#task-rows tr[data-task-id]").await?, 1);
    assert!(
        !displayed(&browser, "#nav-new").await?,
        "a reader is not offered New task"
    );
    browser.screenshot("signed-in").await?;

    browser.find(By::Css("#sign-out")).await?.click().await?;
    browser
        .query(By::Css("#sign-in-form"))
        .desc("the sign-in form after sign-out")
        .first()
        .await?;
    assert_eq!(app.db.count_rows("dashboard_sessions").await, 0);
    browser.goto(&app.url("/ui")).await?;
    browser
        .query(By::Css("#sign-in-form"))
        .desc("the sign-in form again")
        .first()
        .await?;
    Ok(())
}

/// Behind a load balancer without sticky sessions the browser's next request may reach
/// another replica: the session signed in on one works on the other (both read it from
/// PostgreSQL). Cookies are per host, not per port, so two replicas on one loopback
/// address stand for two behind one name.
#[tokio::test(flavor = "multi_thread")]
async fn a_session_signed_in_on_one_replica_works_on_another() -> anyhow::Result<()> {
    let app = TestApp::spawn().await;
    let task_id = submit(&app, &request_named("Seen from the other replica")).await;
    let other =
        orchestrator_api::Application::build(crate::helpers::test_config(&app.db, &app.mock))
            .await?;
    let other_url = format!("http://127.0.0.1:{}", other.port());
    let _stop = other.shutdown_token().drop_guard();
    tokio::spawn(other.run_until_stopped());

    let browser = Browser::start().await?;
    browser.sign_in(&app.address, &app.token).await?;
    browser.goto(&format!("{other_url}/ui")).await?;
    browser
        .query(By::Css(row(&task_id)))
        .desc("the task, listed by the other replica")
        .first()
        .await?;
    assert_eq!(text_of(&browser, "#who-tenant").await?, "Tenant default");
    assert_eq!(
        browser.current_url().await?.path(),
        "/ui",
        "sent to sign in again"
    );
    Ok(())
}

/// "Sign in with SSO": the browser goes to the identity provider and back, and lands
/// signed in as the provider's user, in its tenant.
#[tokio::test(flavor = "multi_thread")]
async fn signing_in_with_sso_lands_on_the_dashboard_of_the_providers_tenant() -> anyhow::Result<()>
{
    let (app, _idp, _key, _secrets) = crate::oidc::app_and_idp().await;
    let acme = app
        .db
        .token("acme", &[orchestrator_core::Scope::TasksSubmit])
        .await;
    let response = orchestrator_testkit::api::client_with_token(&acme)
        .post(app.url("/api/orchestrate"))
        .json(&request_named("An acme task"))
        .send()
        .await?;
    assert_eq!(response.status(), 202);
    let task: Value = response.json().await?;
    let task_id = task["task_id"].as_str().expect("an id");

    let browser = Browser::start().await?;
    browser.goto(&app.url("/ui/sign-in")).await?;
    browser.find(By::Css("#sign-in-sso")).await?.click().await?;
    browser
        .wait_for("the dashboard to name the signed-in tenant", async || {
            Ok(browser
                .find_now("#who-tenant")
                .await?
                .is_some()
                .then_some(()))
        })
        .await?;
    assert_eq!(text_of(&browser, "#who-tenant").await?, "Tenant acme");
    browser
        .query(By::Css(row(task_id)))
        .desc("the tenant's task")
        .first()
        .await?;
    browser.screenshot("signed-in-with-sso").await?;
    Ok(())
}

/// A page on another site that posts to the API with the signed-in browser gets
/// nowhere: the session cookie is SameSite=Strict, and a request that carried it would
/// still fail the origin check. Nothing is submitted.
#[tokio::test(flavor = "multi_thread")]
async fn a_cross_site_form_post_submits_nothing() -> anyhow::Result<()> {
    let app = TestApp::spawn().await;
    let browser = Browser::start().await?;
    browser.sign_in(&app.address, &app.token).await?;
    // `localhost` is another site than `127.0.0.1`, on another port: another origin.
    let attacker = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let attacker_port = attacker.local_addr()?.port();
    let target = app.url("/api/orchestrate");
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        while let Ok((mut stream, _)) = attacker.accept().await {
            let mut request = [0_u8; 4096];
            let _ = stream.read(&mut request).await;
            let page = format!(
                "<!doctype html><form id=evil method=post action=\"{target}\" enctype=text/plain>\
                 <input name='{{\"task_name\":\"x\",\"payload\":[{{\"revenue\":{{}}}}],\"pad\":\"' value='\"}}'>\
                 <button id=go>go</button></form>"
            );
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                page.len()
            );
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    });
    browser
        .goto(&format!("http://localhost:{attacker_port}/"))
        .await?;
    browser.find(By::Id("go")).await?.click().await?;
    browser
        .wait_for("the API's answer to the cross-site post", async || {
            Ok(browser
                .current_url()
                .await?
                .path()
                .eq("/api/orchestrate")
                .then_some(()))
        })
        .await?;
    let shown = browser.find(By::Css("body")).await?.text().await?;
    assert!(
        shown.contains("/problems/unauthenticated") || shown.contains("/problems/cross-origin"),
        "{shown}"
    );
    assert_eq!(app.db.count_rows("tasks").await, 0);
    Ok(())
}

/// The task page shows the task's trace id, linked to the tracing UI when
/// TRACE_URL_TEMPLATE is set.
#[tokio::test(flavor = "multi_thread")]
async fn the_task_page_links_the_tasks_trace() -> anyhow::Result<()> {
    let app = TestApp::spawn_with(|config| {
        config.trace_url_template = Some(
            orchestrator_api::tracing_http::TraceUrlTemplate::parse(
                "http://127.0.0.1:16686/trace/{trace_id}",
            )
            .expect("valid template"),
        );
    })
    .await;
    let task_id = submit(&app, &request_named("Traced")).await;
    let detail: Value = app
        .client
        .get(app.url(&format!("/api/tasks/{task_id}")))
        .send()
        .await?
        .json()
        .await?;
    let trace_id = detail["trace_id"].as_str().expect("a trace id").to_owned();
    let trace_url = format!("http://127.0.0.1:16686/trace/{trace_id}");
    assert_eq!(detail["trace_url"], trace_url.as_str());

    let browser = Browser::start().await?;
    browser.sign_in(&app.address, &app.token).await?;
    browser
        .goto(&app.url(&format!("/ui/tasks/{task_id}")))
        .await?;
    browser
        .wait_for("the trace id and its link", async || {
            let shown = text_of(&browser, "#task-trace").await.ok();
            let link = attr_of(&browser, "#task-trace-link", "href")
                .await
                .ok()
                .flatten();
            Ok((shown.as_deref() == Some(trace_id.as_str())
                && link.as_deref() == Some(trace_url.as_str()))
            .then_some(()))
        })
        .await?;
    Ok(())
}
