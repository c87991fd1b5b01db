//! What a soak is judged on, from its samples alone (no I/O, unit-tested).

use std::collections::BTreeMap;

use serde::Serialize;

/// Most an RSS may grow over the judged window (after the warm-up): the 10%.
pub const MAX_RSS_GROWTH: f64 = 0.10;
/// Most the database may grow over the judged window. With retention its live rows stay
/// level; what autovacuum has not reclaimed yet, and B-tree pages split by the moving
/// key range, come and go, so a little more slack than RSS gets.
pub const MAX_DATABASE_GROWTH: f64 = 0.20;
/// Least share of the tasks accepted over the judged window that must also complete in
/// it: the workers keep up with the rate.
pub const MIN_COMPLETED_SHARE: f64 = 0.95;

/// The state of the stack at the end of one sampling interval.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sample {
    /// End of the interval, seconds since the soak's load started.
    pub at_secs: f64,
    /// Tasks accepted (202) in the interval.
    pub accepted: u64,
    /// Submissions that failed (an answer other than 202, or no answer).
    pub failed_submissions: u64,
    /// Of those, the ones without an answer (timed out, connection lost): the API may
    /// still have stored and run them.
    pub unanswered: u64,
    pub accepted_per_sec: f64,
    /// Tasks that became `COMPLETED` in the interval.
    pub completed: u64,
    pub completed_per_sec: f64,
    /// Accept latency (due time to 202, coordinated omission corrected).
    pub accept_p99_ms: f64,
    /// Submission to `COMPLETED` of the interval's tasks (known one interval later).
    pub e2e_p99_ms: Option<f64>,
    /// Resident set size of each process now (api, worker-N, broker, mock-...), MB.
    pub rss_mb: BTreeMap<String, f64>,
    /// `pg_database_size`, MB.
    pub database_mb: f64,
    /// Each table with its indexes and TOAST (`pg_total_relation_size`), MB.
    pub table_mb: BTreeMap<String, f64>,
    /// Rows of `tasks` now.
    pub task_rows: i64,
    /// Tasks `PENDING` or `IN_PROGRESS` now.
    pub unfinished: i64,
    /// Tasks removed by the retention job so far.
    pub removed: u64,
    /// CPU per task of the interval, ms, per group (api, workers, postgres).
    pub cpu_ms_per_task: BTreeMap<String, f64>,
}

/// The end state, after the load stopped and the workers drained.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EndState {
    /// Accepted over the whole run (the capacity measurement included).
    pub accepted: u64,
    /// Submissions that failed over the whole run (the capacity measurement included).
    pub failed_submissions: u64,
    /// Of those, the ones never answered: each may or may not be stored.
    pub unanswered: u64,
    /// Tasks in the table.
    pub task_rows: i64,
    /// Tasks removed by the retention job.
    pub removed: u64,
    pub completed: i64,
    pub failed: i64,
    pub unfinished: i64,
    /// Tasks without exactly three `COMPLETED` service requests.
    pub tasks_with_wrong_rows: i64,
    /// Lines logged at ERROR by the stack's processes, per process.
    pub error_lines: BTreeMap<String, u64>,
    /// Lines logged at WARN, per process: reported, not judged (a retried write, a
    /// slow broker).
    pub warn_lines: BTreeMap<String, u64>,
    /// Processes that were no longer running at the end.
    pub dead_processes: Vec<String>,
}

/// One check and its outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    /// Whether it decides the verdict (a smoke run reports the figures' checks only).
    pub judged: bool,
    pub detail: String,
}

/// Every check; passed when every judged one passed.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub checks: Vec<Check>,
    pub passed: bool,
}

/// The processes whose RSS must be flat: ours (the broker and the mocks are the test's).
pub fn judged_process(name: &str) -> bool {
    name == "api" || name.starts_with("worker-")
}

/// Growth of `values` over the window: its peak against its first value.
fn growth(values: &[f64]) -> Option<f64> {
    let first = *values.first()?;
    if first <= 0.0 {
        return None;
    }
    let peak = values.iter().copied().fold(first, f64::max);
    Some(peak / first - 1.0)
}

pub fn judge(samples: &[Sample], warmup_secs: f64, end: &EndState, judge_figures: bool) -> Verdict {
    let window: Vec<&Sample> = samples.iter().filter(|s| s.at_secs > warmup_secs).collect();
    let mut checks = Vec::new();
    let pct = |g: f64| format!("{:+.1}%", g * 100.0);

    // RSS of each of our processes, over the window.
    let names: Vec<&String> = window
        .first()
        .map(|s| s.rss_mb.keys().filter(|n| judged_process(n)).collect())
        .unwrap_or_default();
    if names.is_empty() {
        checks.push(Check {
            name: "RSS flat after the warm-up".into(),
            passed: false,
            judged: judge_figures,
            detail: "no sample after the warm-up holds the API's and workers' RSS".into(),
        });
    }
    for name in names {
        let values: Vec<f64> = window
            .iter()
            .map(|s| s.rss_mb.get(name).copied().unwrap_or(f64::INFINITY))
            .collect();
        let g = growth(&values);
        checks.push(Check {
            name: format!("RSS of {name} flat after the warm-up"),
            passed: g.is_some_and(|g| g < MAX_RSS_GROWTH),
            judged: judge_figures,
            detail: match g {
                Some(g) => format!(
                    "peak {} vs {:.1} MB at the window's start (limit {})",
                    pct(g),
                    values[0],
                    pct(MAX_RSS_GROWTH)
                ),
                None => "no reading".into(),
            },
        });
    }

    let sizes: Vec<f64> = window.iter().map(|s| s.database_mb).collect();
    let g = growth(&sizes);
    checks.push(Check {
        name: "database size bounded".into(),
        passed: g.is_some_and(|g| g < MAX_DATABASE_GROWTH),
        judged: judge_figures,
        detail: match g {
            Some(g) => format!(
                "peak {} vs {:.0} MB at the window's start (limit {})",
                pct(g),
                sizes[0],
                pct(MAX_DATABASE_GROWTH)
            ),
            None => "no reading after the warm-up".into(),
        },
    });

    let accepted: u64 = window.iter().map(|s| s.accepted).sum();
    let completed: u64 = window.iter().map(|s| s.completed).sum();
    let share = if accepted == 0 {
        0.0
    } else {
        completed as f64 / accepted as f64
    };
    checks.push(Check {
        name: "the workers keep up".into(),
        passed: accepted > 0 && share >= MIN_COMPLETED_SHARE,
        judged: judge_figures,
        detail: format!(
            "{completed} tasks completed for {accepted} accepted after the warm-up ({:.1}%; at least {:.0}%)",
            share * 100.0,
            MIN_COMPLETED_SHARE * 100.0
        ),
    });

    // What is judged in every run, a smoke run too.
    let failed_submissions = end.failed_submissions;
    let error_lines: u64 = end.error_lines.values().sum();
    checks.push(Check {
        name: "no error".into(),
        passed: failed_submissions == 0
            && end.failed == 0
            && error_lines == 0
            && end.dead_processes.is_empty(),
        judged: true,
        detail: format!(
            "{failed_submissions} failed submissions, {} FAILED tasks, {error_lines} ERROR log lines{}, {} processes gone",
            end.failed,
            if error_lines == 0 {
                String::new()
            } else {
                format!(" ({:?})", end.error_lines)
            },
            end.dead_processes.len()
        ),
    });
    let accounted = u64::try_from(end.task_rows).unwrap_or(0) + end.removed;
    // A submission without an answer may have been stored: it counts as either.
    let all_there = (end.accepted..=end.accepted + end.unanswered).contains(&accounted);
    checks.push(Check {
        name: "nothing lost".into(),
        passed: all_there
            && end.unfinished == 0
            && end.tasks_with_wrong_rows == 0
            && end.completed == end.task_rows,
        judged: true,
        detail: format!(
            "{} accepted{} = {} in the table + {} removed by retention: {}; {} unfinished, {} with other than three COMPLETED service requests",
            end.accepted,
            if end.unanswered > 0 {
                format!(" (+ up to {} never answered)", end.unanswered)
            } else {
                String::new()
            },
            end.task_rows,
            end.removed,
            if all_there { "yes" } else { "NO" },
            end.unfinished,
            end.tasks_with_wrong_rows
        ),
    });
    checks.push(Check {
        name: "retention removed tasks".into(),
        passed: end.removed > 0,
        judged: true,
        detail: format!("{} tasks removed", end.removed),
    });

    let passed = checks.iter().all(|c| c.passed || !c.judged);
    Verdict { checks, passed }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_secs: f64, api_mb: f64, db_mb: f64) -> Sample {
        Sample {
            at_secs,
            accepted: 600,
            accepted_per_sec: 10.0,
            completed: 600,
            completed_per_sec: 10.0,
            rss_mb: BTreeMap::from([
                ("api".to_owned(), api_mb),
                ("worker-1".to_owned(), 50.0),
                // Not ours: its growth is reported, not judged.
                ("broker".to_owned(), 100.0 * at_secs),
            ]),
            database_mb: db_mb,
            ..Sample::default()
        }
    }

    fn clean_end() -> EndState {
        EndState {
            accepted: 1000,
            task_rows: 400,
            removed: 600,
            completed: 400,
            ..EndState::default()
        }
    }

    fn check<'a>(verdict: &'a Verdict, name: &str) -> &'a Check {
        verdict
            .checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no check {name}: {verdict:?}"))
    }

    #[test]
    fn a_flat_run_passes_and_warmup_growth_is_not_held_against_it() {
        // Grows 4x during the warm-up, then stays within 5%.
        let samples = vec![
            sample(60.0, 20.0, 10.0),
            sample(120.0, 80.0, 40.0),
            sample(180.0, 80.0, 41.0),
            sample(240.0, 84.0, 40.0),
            sample(300.0, 82.0, 42.0),
        ];
        let verdict = judge(&samples, 120.0, &clean_end(), true);
        assert!(verdict.passed, "{verdict:#?}");
        assert!(
            !verdict.checks.iter().any(|c| c.name.contains("broker")),
            "{verdict:#?}"
        );
    }

    #[test]
    fn rss_growing_after_the_warmup_fails() {
        let samples = vec![
            sample(60.0, 80.0, 40.0),
            sample(120.0, 80.0, 40.0),
            sample(180.0, 85.0, 40.0),
            sample(240.0, 90.0, 40.0),
        ];
        let verdict = judge(&samples, 60.0, &clean_end(), true);
        assert!(!verdict.passed);
        assert!(!check(&verdict, "RSS of api flat after the warm-up").passed);
        assert!(check(&verdict, "RSS of worker-1 flat after the warm-up").passed);
    }

    #[test]
    fn a_growing_database_fails() {
        let samples = vec![sample(120.0, 80.0, 40.0), sample(180.0, 80.0, 60.0)];
        let verdict = judge(&samples, 60.0, &clean_end(), true);
        assert!(!check(&verdict, "database size bounded").passed);
        assert!(!verdict.passed);
    }

    #[test]
    fn workers_falling_behind_fail() {
        let mut samples = vec![sample(120.0, 80.0, 40.0), sample(180.0, 80.0, 40.0)];
        samples[1].completed = 300;
        let verdict = judge(&samples, 60.0, &clean_end(), true);
        assert!(
            !check(&verdict, "the workers keep up").passed,
            "{verdict:#?}"
        );
    }

    #[test]
    fn a_lost_task_or_an_error_fails_even_a_smoke_run() {
        let samples = vec![sample(120.0, 80.0, 40.0), sample(180.0, 200.0, 400.0)];
        // The figures are not judged in a smoke run...
        assert!(judge(&samples, 60.0, &clean_end(), false).passed);
        // ...but a task missing is,
        let lost = EndState {
            task_rows: 399,
            completed: 399,
            ..clean_end()
        };
        let verdict = judge(&samples, 60.0, &lost, false);
        assert!(!verdict.passed);
        assert!(!check(&verdict, "nothing lost").passed);
        // and one stored that was never answered is not lost but counts as a failure.
        let unanswered = EndState {
            task_rows: 401,
            completed: 401,
            unanswered: 1,
            ..clean_end()
        };
        assert!(check(&judge(&samples, 60.0, &unanswered, false), "nothing lost").passed);
        // A task more than could have been stored is wrong too.
        let extra = EndState {
            task_rows: 402,
            completed: 402,
            unanswered: 1,
            ..clean_end()
        };
        assert!(!check(&judge(&samples, 60.0, &extra, false), "nothing lost").passed);
        // And so is an ERROR line.
        let logged = EndState {
            error_lines: BTreeMap::from([("worker-1".to_owned(), 2)]),
            ..clean_end()
        };
        let verdict = judge(&samples, 60.0, &logged, false);
        assert!(!check(&verdict, "no error").passed);
        assert!(!verdict.passed);
    }

    #[test]
    fn a_run_where_retention_never_removed_anything_fails() {
        let samples = vec![sample(120.0, 80.0, 40.0)];
        let kept = EndState {
            task_rows: 1000,
            completed: 1000,
            removed: 0,
            ..clean_end()
        };
        assert!(!judge(&samples, 60.0, &kept, false).passed);
    }
}
