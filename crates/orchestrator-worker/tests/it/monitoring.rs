//! The monitoring that ships with the project (deploy/monitoring) against what the
//! binaries export: no alert or dashboard panel may watch a metric that does not exist.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::{Stack, example_request};

const FINISH: Duration = Duration::from_secs(30);

/// The files whose queries name metrics: the rules and the Grafana dashboards.
fn monitoring_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/monitoring");
    let mut files = vec![root.join("alerts.yaml")];
    if let Ok(dashboards) = std::fs::read_dir(root.join("grafana")) {
        files.extend(
            dashboards
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| path.extension().is_some_and(|ext| ext == "json")),
        );
    }
    files
}

/// Every metric name `text` mentions: words of PromQL's name characters that start
/// with our prefix or the standard `process_` (recording rules, `orchestrator:...`,
/// are made by the rules themselves).
fn metric_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| {
            (word.starts_with("orchestrator_") || word.starts_with("process_"))
                && !word.contains(':')
        })
        .map(str::to_owned)
        .collect()
}

/// The metric families of an OpenMetrics scrape, from its `# TYPE` lines.
fn families(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Whether a series name a query uses belongs to one of `families` (a counter's
/// `_total`, a histogram's `_bucket`, `_count` and `_sum`, an info metric's `_info`).
fn exported(name: &str, families: &BTreeSet<String>) -> bool {
    families.contains(name)
        || ["_total", "_bucket", "_count", "_sum", "_info"]
            .iter()
            .filter_map(|suffix| name.strip_suffix(suffix))
            .any(|family| families.contains(family))
}

#[test]
fn metric_names_are_read_from_queries() {
    let names = metric_names(
        r#"sum by (le) (rate(orchestrator_http_request_duration_seconds_bucket{route="/x"}[5m]))
           / orchestrator:submit_slow:ratio_rate5m + changes(process_start_time_seconds[30m])"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        [
            "orchestrator_http_request_duration_seconds_bucket",
            "process_start_time_seconds"
        ]
    );
    let families =
        families("# TYPE orchestrator_records counter\n# TYPE orchestrator_build info\n");
    assert!(exported("orchestrator_records_total", &families));
    assert!(exported("orchestrator_build_info", &families));
    assert!(!exported("orchestrator_recordz_total", &families));
}

/// The stack in Kafka mode with two workers, one task through it; then every metric the
/// rules and dashboards name must be among what the API and the workers export.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_metric_the_alerts_and_dashboards_read_is_exported() {
    let stack = Stack::start(0).await;
    let api = stack.start_api().await;
    let workers = [
        stack.start_worker("watched-1").await,
        stack.start_worker("watched-2").await,
    ];
    let task_id = api.submit_accepted(&example_request("monitored")).await;
    let finished = api.wait_until_finished(&task_id, FINISH).await;
    assert_eq!(finished["status"], "COMPLETED");

    let mut scrapes = vec![
        api.client
            .get(api.url("/metrics"))
            .send()
            .await
            .expect("the API answers")
            .text()
            .await
            .expect("text"),
    ];
    for worker in &workers {
        let port = worker.http_port.expect("started with start_worker");
        scrapes.push(
            reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
                .await
                .expect("the worker answers")
                .text()
                .await
                .expect("text"),
        );
    }
    let exported_families: BTreeSet<String> = scrapes.iter().flat_map(|s| families(s)).collect();
    assert!(
        exported_families.contains("process_cpu_seconds"),
        "{exported_families:?}"
    );

    let mut checked = 0;
    for file in monitoring_files() {
        let text = std::fs::read_to_string(&file).expect("readable");
        let names = metric_names(&text);
        assert!(!names.is_empty(), "{} names no metric", file.display());
        let missing: Vec<_> = names
            .iter()
            .filter(|name| !exported(name, &exported_families))
            .collect();
        assert!(
            missing.is_empty(),
            "{} reads metrics nobody exports: {missing:?}\nexported: {exported_families:?}",
            file.display()
        );
        checked += names.len();
    }
    assert!(checked >= 10, "{checked} metric names checked");
    for worker in workers {
        worker.stop().await;
    }
}
