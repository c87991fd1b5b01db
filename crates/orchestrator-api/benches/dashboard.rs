//! How fast the dashboard answers with a large database: every endpoint a screen reads,
//! then each screen's load in headless Chromium (when installed). A benchmark, not a
//! test: it prints figures and asserts nothing about them.
//!
//! Needs a database filled by `seed-tasks` (`make bench-dashboard` does both):
//! `DASHBOARD_DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/orchestrator_dashboard_bench`.
//! `DASHBOARD_RUNS` timed requests per endpoint (default 100, so that p99 means
//! something). The API runs in this process, in inline mode, as the tests start it.

#[path = "../tests/it/ui/browser.rs"]
#[allow(dead_code)]
mod browser;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use diesel::sql_types::{BigInt, Timestamptz};
use diesel::{QueryableByName, sql_query};
use diesel_async::RunQueryDsl;
use orchestrator_api::{ApiConfig, Application};
use orchestrator_core::TenantName;
use orchestrator_store::{TaskCursor, dashboard, pool};
use serde_json::Value;
use thirtyfour::prelude::*;

use self::browser::ElementText;

const DEFAULT_DATABASE_URL: &str =
    "postgres://postgres@127.0.0.1:5432/orchestrator_dashboard_bench";

#[derive(QueryableByName)]
struct Position {
    #[diesel(sql_type = Timestamptz)]
    created_at: chrono::DateTime<chrono::Utc>,
    #[diesel(sql_type = BigInt)]
    id: i64,
}

struct Figures {
    name: String,
    median: Duration,
    p95: Duration,
    p99: Duration,
    max: Duration,
    detail: String,
}

fn figures(name: &str, mut samples: Vec<Duration>, detail: String) -> Figures {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Figures {
        name: name.to_owned(),
        median: at(0.5),
        p95: at(0.95),
        p99: at(0.99),
        max: at(1.0),
        detail,
    }
}

fn ms(duration: Duration) -> String {
    format!("{:.1}", duration.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let database_url =
        std::env::var("DASHBOARD_DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
    let runs: usize = std::env::var("DASHBOARD_RUNS")
        .ok()
        .and_then(|runs| runs.parse().ok())
        .unwrap_or(100)
        .max(1);

    let mut conn = pool::establish(&database_url)
        .await
        .context("connecting to DASHBOARD_DATABASE_URL (run `make bench-dashboard`)")?;
    let total = dashboard::status_counts(&mut conn, &TenantName::default())
        .await?
        .total();
    anyhow::ensure!(
        total >= 1_000,
        "{total} tasks in the database: fill it first with `make bench-dashboard` (or the seed-tasks binary)"
    );
    // A position half-way down the list: a deep page.
    let middle: Position = sql_query(
        "SELECT created_at, id FROM tasks WHERE tenant = 'default' \
         ORDER BY created_at DESC, id DESC OFFSET $1 LIMIT 1",
    )
    .bind::<BigInt, _>(total / 2)
    .get_result(&mut conn)
    .await?;
    let deep_cursor = TaskCursor {
        created_at: middle.created_at,
        id: middle.id,
    }
    .encode();

    let mut config = ApiConfig::try_parse_from(["orchestrator-api"])?;
    config.host = "127.0.0.1".into();
    config.port = 0;
    config.database_url = database_url.clone();
    config.use_kafka = false;
    config.http_workers = 2;
    // The seeded tasks age between runs: the retention job must not remove them.
    config.retention.period = orchestrator_core::RetentionPeriod::FOREVER;
    let app = Application::build(config).await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.run_until_stopped());
    let token = {
        let mut conn =
            <diesel_async::AsyncPgConnection as diesel_async::AsyncConnection>::establish(
                &database_url,
            )
            .await?;
        let tenant = TenantName::default();
        let (_, issued) = orchestrator_store::tokens::issue(
            &mut conn,
            &orchestrator_store::tokens::TokenSpec {
                tenant: &tenant,
                scopes: &[orchestrator_core::Scope::TasksRead],
                name: Some("dashboard benchmark"),
                expires_at: None,
            },
        )
        .await?;
        orchestrator_auth::token::reveal(&issued).to_owned()
    };
    let client = orchestrator_testkit::api::client_with_token(&token);

    // Sample ids: the newest task and one from the middle.
    let newest: Value = client
        .get(format!("{base}/api/tasks?limit=1"))
        .send()
        .await?
        .json()
        .await?;
    let newest_id = newest["tasks"][0]["task_id"]
        .as_str()
        .context("the newest task")?
        .to_owned();
    let deep: Value = client
        .get(format!("{base}/api/tasks?limit=1&cursor={deep_cursor}"))
        .send()
        .await?
        .json()
        .await?;
    let deep_id = deep["tasks"][0]["task_id"]
        .as_str()
        .context("a task half-way down")?
        .to_owned();
    // Seeded names end with "#<number>"; the number is unique.
    let deep_number = deep["tasks"][0]["task_name"]
        .as_str()
        .and_then(|name| name.rsplit_once('#'))
        .map(|(_, number)| number.to_owned())
        .context("a seeded task name")?;

    let endpoints: Vec<(&str, String)> = vec![
        ("page shell `/ui`", "/ui".into()),
        ("script `/ui/assets/app.js`", "/ui/assets/app.js".into()),
        ("list, newest 50", "/api/tasks?limit=50".into()),
        (
            "list, page half-way down (cursor)",
            format!("/api/tasks?limit=50&cursor={deep_cursor}"),
        ),
        ("list, FAILED", "/api/tasks?status=FAILED&limit=50".into()),
        (
            "list, PENDING (none)",
            "/api/tasks?status=PENDING&limit=50".into(),
        ),
        ("counts per status", "/api/tasks/counts".into()),
        (
            "throughput, 15 min",
            "/api/tasks/throughput?minutes=15".into(),
        ),
        (
            "throughput, 60 min",
            "/api/tasks/throughput?minutes=60".into(),
        ),
        (
            "task with its service requests",
            format!("/api/tasks/{newest_id}"),
        ),
        (
            "old task with its service requests",
            format!("/api/tasks/{deep_id}"),
        ),
        ("search: whole id", format!("/api/tasks/search?q={deep_id}")),
        (
            "search: id prefix (8 digits)",
            format!("/api/tasks/search?q={}", &deep_id[..8]),
        ),
        (
            "search: common name (`forecast`, 1 in 10)",
            "/api/tasks/search?q=forecast&limit=50".into(),
        ),
        (
            "search: rare name (one task, half-way down)",
            format!("/api/tasks/search?q=%23{deep_number}&limit=50"),
        ),
        (
            "search: only old tasks match (`#12`: 11,111 tasks, the oldest 13%)",
            "/api/tasks/search?q=%2312&limit=50".into(),
        ),
        (
            "search: `12345`",
            "/api/tasks/search?q=12345&limit=50".into(),
        ),
        (
            "search: `#12345`",
            "/api/tasks/search?q=%2312345&limit=50".into(),
        ),
        (
            "search: `forecast EMEA #77777`",
            "/api/tasks/search?q=forecast%20EMEA%20%2377777&limit=50".into(),
        ),
        (
            "search: `EMEA #1`",
            "/api/tasks/search?q=EMEA%20%231&limit=50".into(),
        ),
        (
            "search: no match",
            "/api/tasks/search?q=no%20such%20task&limit=50".into(),
        ),
        (
            "search: name and status",
            "/api/tasks/search?q=forecast&status=FAILED&limit=50".into(),
        ),
    ];

    let mut results = Vec::new();
    for (name, path) in &endpoints {
        let url = format!("{base}{path}");
        let mut samples = Vec::with_capacity(runs);
        let mut detail = String::new();
        for run in 0..runs + 3 {
            let started = Instant::now();
            let response = client.get(&url).send().await?;
            let status = response.status();
            let body = response.bytes().await?;
            let took = started.elapsed();
            anyhow::ensure!(status.is_success(), "{name}: {url} answered {status}");
            if run >= 3 {
                samples.push(took);
            }
            if run == 0 {
                detail = match serde_json::from_slice::<Value>(&body) {
                    Ok(json) if json["tasks"].is_array() => {
                        let tasks = json["tasks"].as_array().map_or(0, Vec::len);
                        match json["searched_back_to"].as_str() {
                            Some(at) => format!("{tasks} tasks, searched back to {at}"),
                            None => format!("{tasks} tasks"),
                        }
                    }
                    _ => format!("{} bytes", body.len()),
                };
            }
        }
        results.push(figures(name, samples, detail));
    }

    let mut report = format!(
        "Dashboard at {total} tasks ({runs} requests each, after 3 warm-ups; milliseconds, \
         client-side, over loopback):\n\n\
         | endpoint | median | p95 | p99 | max | answer |\n|---|---:|---:|---:|---:|---|\n"
    );
    for f in &results {
        writeln!(
            report,
            "| {} | {} | {} | {} | {} | {} |",
            f.name,
            ms(f.median),
            ms(f.p95),
            ms(f.p99),
            ms(f.max),
            f.detail
        )?;
    }

    match screens(&base, &token, &newest_id, runs.min(10)).await {
        Ok(screens) => {
            writeln!(
                report,
                "\nScreens in headless Chromium, from navigation until the data is on \
                 screen (cache warm; milliseconds):\n\n\
                 | screen | median | p95 | max |\n|---|---:|---:|---:|"
            )?;
            for f in &screens {
                writeln!(
                    report,
                    "| {} | {} | {} | {} |",
                    f.name,
                    ms(f.median),
                    ms(f.p95),
                    ms(f.max)
                )?;
            }
        }
        Err(error) => writeln!(report, "\nScreens not measured: {error:#}")?,
    }

    println!("{report}");
    let out = browser::screenshot_dir().with_file_name("bench-dashboard.md");
    std::fs::write(&out, &report).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("Report written to {}", out.display());
    shutdown.cancel();
    let _ = server.await;
    Ok(())
}

/// What shows that a screen has its data.
#[derive(Clone, Copy)]
enum Shown {
    /// 50 rows, the counts and the chart.
    ListWithSummary,
    /// 50 rows.
    List,
    /// The task's three service requests.
    ServiceRequests,
    /// The form's payload.
    Form,
}

/// Loads each screen `runs` times and times it until its data is shown.
async fn screens(
    base: &str,
    token: &str,
    task_id: &str,
    runs: usize,
) -> anyhow::Result<Vec<Figures>> {
    if !std::path::Path::new("/usr/bin/chromium").exists()
        && std::env::var_os("CHROMIUM_BIN").is_none()
    {
        anyhow::bail!("Chromium is not installed (apt-get install -y chromium chromium-driver)");
    }
    let browser = browser::Browser::start().await?;
    browser.sign_in(base, token).await?;
    let screens = [
        (
            "task list (50 tasks, counts, throughput)",
            format!("{base}/ui"),
            Shown::ListWithSummary,
            Some("bench-task-list"),
        ),
        (
            "task list, searched (`forecast`)",
            format!("{base}/ui?q=forecast"),
            Shown::List,
            None,
        ),
        (
            "task page",
            format!("{base}/ui/tasks/{task_id}"),
            Shown::ServiceRequests,
            Some("bench-task-detail"),
        ),
        ("new task form", format!("{base}/ui/new"), Shown::Form, None),
    ];
    let mut results = Vec::new();
    for (name, url, shown, screenshot) in screens {
        let mut samples = Vec::with_capacity(runs);
        for run in 0..runs + 1 {
            browser.goto("about:blank").await?;
            let started = Instant::now();
            browser.goto(&url).await?;
            // Polled tightly: a probe is one to three WebDriver round trips over
            // loopback, about a millisecond each. An error (an element replaced while
            // it was read) counts as not shown yet.
            while !is_shown(&browser, shown).await.unwrap_or(false) {
                if started.elapsed() >= Duration::from_secs(30) {
                    // What the screen showed instead, to say why.
                    let shot = browser.screenshot_window("bench-not-ready").await;
                    let text = match browser.find_now("main").await {
                        Ok(Some(main)) => main.text_content().await.unwrap_or_default(),
                        _ => String::new(),
                    };
                    anyhow::bail!(
                        "{name}: not ready within 30 s; it showed {:?} (screenshot {})",
                        text.split_whitespace().collect::<Vec<_>>().join(" "),
                        shot.map_or_else(|e| e.to_string(), |p| p.display().to_string()),
                    );
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if run > 0 {
                samples.push(started.elapsed());
            }
        }
        if let Some(screenshot) = screenshot {
            browser.screenshot_window(screenshot).await?;
        }
        results.push(figures(name, samples, String::new()));
    }
    browser.close().await;
    Ok(results)
}

async fn is_shown(browser: &browser::Browser, shown: Shown) -> WebDriverResult<bool> {
    let count = async |css: &str| -> WebDriverResult<usize> {
        Ok(browser.find_all(By::Css(css)).await?.len())
    };
    Ok(match shown {
        Shown::ListWithSummary => {
            count("#task-rows tr[data-task-id]").await? == 50
                && match browser.find_now("[data-count=\"ALL\"] .value").await? {
                    Some(all) => all.text_content().await? != "—",
                    None => false,
                }
                && count(".chart").await? > 0
        }
        Shown::List => count("#task-rows tr[data-task-id]").await? == 50,
        Shown::ServiceRequests => count("#service-requests tr").await? == 3,
        Shown::Form => count("#task-payload").await? > 0,
    })
}
