//! `orchestrator-soak --smoke`: the soak creates a PostgreSQL cluster of its own
//! (autovacuum on), starts the stack on it with retention at 30 s, measures the
//! capacity, submits for a minute with a sample every 10 s, drains, checks and removes
//! its cluster. The figures are not judged in a smoke run; what is: no error, every
//! accepted task either in the table and `COMPLETED` or removed by retention, and
//! retention removed some.

use std::fs;
use std::process::Command;
use std::time::Duration;

use orchestrator_testkit::workspace::workspace_root;
use serde_json::Value;

use crate::{Scratch, run_bounded, smoke_command};

/// Creating the cluster and starting a debug stack ~30 s on a busy 2-core machine, the
/// capacity run and the minute of load ~90 s.
const SOAK_SMOKE_TIMEOUT: Duration = Duration::from_secs(360);
/// Its own name, so a `make soak` running meanwhile keeps its cluster.
const CLUSTER: &str = "orchestrator_soak_smoke";

#[test]
fn soak_smoke_run_samples_removes_and_loses_nothing() {
    let root = workspace_root();
    let scratch = Scratch::new(&root);
    let out_dir = scratch.path.join("out");
    let log_path = scratch.path.join("soak.out");
    let log = fs::File::create(&log_path).expect("creating the output file");
    let mut command = smoke_command(
        env!("CARGO_BIN_EXE_orchestrator-soak"),
        &root,
        &scratch,
        &out_dir,
        log,
    );
    command.args(["--cluster-name", CLUSTER]);
    let status = run_bounded(&mut command, SOAK_SMOKE_TIMEOUT);
    let output = fs::read_to_string(&log_path).unwrap_or_default();
    // The cluster is gone whatever happened (a killed soak leaves it: remove it here).
    let clusters = Command::new("pg_lsclusters")
        .arg("--no-header")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if clusters.contains(CLUSTER) {
        let _ = Command::new(root.join("scripts/soak-postgres.sh"))
            .args(["stop", CLUSTER])
            .status();
    }
    assert!(
        status.is_some_and(|s| s.success()),
        "orchestrator-soak --smoke {}:\n{output}",
        status.map_or(format!("killed after {SOAK_SMOKE_TIMEOUT:?}"), |s| s
            .to_string())
    );
    assert!(
        !clusters.contains(CLUSTER),
        "the soak left its cluster behind:\n{clusters}"
    );

    let json = fs::read_to_string(out_dir.join("soak.json")).expect("soak.json");
    let report: Value = serde_json::from_str(&json).expect("soak.json is JSON");
    assert_eq!(report["smoke"], true);
    assert_eq!(report["autovacuum"], "on", "{json}");
    assert_eq!(report["verdict"]["passed"], true, "{json}");
    let samples = report["samples"].as_array().expect("samples");
    assert!(samples.len() >= 5, "a minute in samples of 10 s: {json}");
    for sample in samples {
        assert!(
            sample["accepted"].as_u64().is_some_and(|n| n > 0),
            "{sample}"
        );
        assert!(
            sample["database_mb"].as_f64().is_some_and(|mb| mb > 0.0),
            "{sample}"
        );
        for process in ["api", "worker-1", "worker-2"] {
            assert!(
                sample["rss_mb"][process]
                    .as_f64()
                    .is_some_and(|mb| mb > 0.0),
                "{process}: {sample}"
            );
        }
        assert!(
            sample["e2e_p99_ms"].as_f64().is_some_and(|ms| ms > 0.0),
            "{sample}"
        );
    }
    // Retention at 30 s removed tasks during the minute, and every accepted task is
    // accounted for.
    let end = &report["end"];
    let removed = end["removed"].as_u64().expect("removed");
    assert!(removed > 0, "{json}");
    assert_eq!(
        end["task_rows"].as_u64().expect("rows") + removed,
        end["accepted"].as_u64().expect("accepted"),
        "{json}"
    );
    let judged: Vec<&Value> = report["verdict"]["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["judged"] == true)
        .collect();
    assert!(judged.len() >= 3, "{json}");

    let markdown = fs::read_to_string(out_dir.join("soak.md")).expect("soak.md");
    assert!(markdown.contains("**Verdict: passed**"), "{markdown}");
    let svg = fs::read_to_string(out_dir.join("soak.svg")).expect("soak.svg");
    assert!(
        svg.starts_with("<svg") && svg.contains("<polyline"),
        "{svg}"
    );
    assert!(
        !scratch.run_dir.join("stack.env").exists(),
        "the soak left its stack running:\n{output}"
    );
}
