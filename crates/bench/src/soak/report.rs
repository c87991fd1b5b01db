//! The soak's report: JSON (the struct itself), Markdown and an SVG chart of the samples.

use std::fmt::Write as _;

use serde::Serialize;

use super::verdict::{self, EndState, Sample, Verdict};
use crate::machine::Machine;
use crate::report::{COLOURS, Svg, nice_ceiling, number};

/// One panel of the chart: its title, its named lines of (minute, value), and a level
/// drawn dashed.
type Panel<'a> = (&'a str, Vec<(String, Vec<(f64, f64)>)>, Option<f64>);

/// The end-to-end capacity measured before the soak.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Capacity {
    pub tasks: u64,
    pub seconds: f64,
    pub tasks_per_sec: f64,
    pub failed_submissions: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    pub machine: Machine,
    pub smoke: bool,
    pub minutes: f64,
    pub warmup_minutes: f64,
    pub sample_secs: f64,
    pub retention: String,
    pub retention_interval_secs: u64,
    pub workers: usize,
    /// The server's `autovacuum` setting (the soak refuses to run with it off).
    pub autovacuum: String,
    pub capacity: Capacity,
    /// The rate as a share of the capacity.
    pub capacity_share: f64,
    /// Submissions per second during the soak.
    pub rate: u32,
    pub samples: Vec<Sample>,
    pub end: EndState,
    pub verdict: Verdict,
}

impl Sample {
    /// One line of progress.
    pub fn line(&self) -> String {
        let rss: Vec<String> = self
            .rss_mb
            .iter()
            .filter(|(name, _)| verdict::judged_process(name))
            .map(|(name, mb)| format!("{name} {mb:.0}"))
            .collect();
        format!(
            "{:>6.1} min: accepted {:.0}/s, completed {:.0}/s, accept p99 {:.1} ms, RSS MB {}, database {:.0} MB, {} task rows, {} unfinished, {} removed",
            self.at_secs / 60.0,
            self.accepted_per_sec,
            self.completed_per_sec,
            self.accept_p99_ms,
            rss.join(", "),
            self.database_mb,
            self.task_rows,
            self.unfinished,
            self.removed
        )
    }
}

impl SoakReport {
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(
            md,
            "# Soak{}\n\n{} — {} cores, {}, {} GiB, Linux {}, revision {}\n",
            if self.smoke { " (smoke run)" } else { "" },
            self.machine.date,
            self.machine.cores,
            self.machine.cpu_model,
            self.machine.memory_gib,
            self.machine.kernel,
            self.machine.revision
        );
        let _ = writeln!(
            md,
            "{:.0} minutes at **{} tasks/s** ({:.0}% of the {:.0} tasks/s measured end to end over {} tasks first), {} workers, RETENTION {} (a pass every {} s), PostgreSQL autovacuum {}; a sample every {:.0} s, the first {:.0} minutes a warm-up.\n",
            self.minutes,
            self.rate,
            self.capacity_share * 100.0,
            self.capacity.tasks_per_sec,
            self.capacity.tasks,
            self.workers,
            self.retention,
            self.retention_interval_secs,
            self.autovacuum,
            self.sample_secs,
            self.warmup_minutes
        );
        let _ = writeln!(
            md,
            "**Verdict: {}**\n",
            if self.verdict.passed {
                "passed"
            } else {
                "FAILED"
            }
        );
        md.push_str("| Check | Result | |\n|---|---|---|\n");
        for check in &self.verdict.checks {
            let _ = writeln!(
                md,
                "| {} | {}{} | {} |",
                check.name,
                if check.passed { "pass" } else { "FAIL" },
                if check.judged { "" } else { " (not judged)" },
                check.detail
            );
        }
        let names: Vec<&String> = self
            .samples
            .first()
            .map(|s| s.rss_mb.keys().collect())
            .unwrap_or_default();
        md.push_str("\n| min | accepted/s | completed/s | accept p99 ms | e2e p99 ms |");
        for name in &names {
            let _ = write!(md, " {name} MB |");
        }
        md.push_str(
            " database MB | task rows | unfinished | removed | API+workers CPU ms/task | PostgreSQL CPU ms/task |\n|",
        );
        for _ in 0..(11 + names.len()) {
            md.push_str("---:|");
        }
        md.push('\n');
        for s in &self.samples {
            let _ = write!(
                md,
                "| {:.1} | {} | {} | {} | {} |",
                s.at_secs / 60.0,
                number(s.accepted_per_sec),
                number(s.completed_per_sec),
                number(s.accept_p99_ms),
                s.e2e_p99_ms.map_or("—".into(), number)
            );
            for name in &names {
                let _ = write!(
                    md,
                    " {} |",
                    s.rss_mb.get(*name).map_or("—".into(), |v| number(*v))
                );
            }
            let ours = ["api", "workers"]
                .iter()
                .filter_map(|g| s.cpu_ms_per_task.get(*g))
                .sum::<f64>();
            let _ = writeln!(
                md,
                " {} | {} | {} | {} | {:.3} | {:.3} |",
                number(s.database_mb),
                s.task_rows,
                s.unfinished,
                s.removed,
                ours,
                s.cpu_ms_per_task.get("postgres").copied().unwrap_or(0.0)
            );
        }
        // The largest tables, at the warm-up's end and at the end: where a growing
        // database grows.
        let window: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| s.at_secs > self.warmup_minutes * 60.0)
            .collect();
        if let (Some(first), Some(last)) = (window.first(), window.last()) {
            let mut growth: Vec<(&String, f64, f64)> = last
                .table_mb
                .iter()
                .map(|(name, mb)| (name, first.table_mb.get(name).copied().unwrap_or(0.0), *mb))
                .collect();
            growth.sort_by(|a, b| b.2.total_cmp(&a.2));
            md.push_str("\n| table (with indexes) | MB after the warm-up | MB at the end |\n|---|---:|---:|\n");
            for (name, from, to) in growth.iter().take(8) {
                let _ = writeln!(md, "| {name} | {} | {} |", number(*from), number(*to));
            }
        }
        let _ = writeln!(
            md,
            "\nAt the end: {} accepted, {} in the table, {} removed by retention, {} FAILED, {} unfinished; lines logged at WARN: {}.",
            self.end.accepted,
            self.end.task_rows,
            self.end.removed,
            self.end.failed,
            self.end.unfinished,
            if self.end.warn_lines.is_empty() {
                "none".to_owned()
            } else {
                self.end
                    .warn_lines
                    .iter()
                    .map(|(name, n)| format!("{name} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
        md
    }

    /// Four panels over time: throughput against the rate, p99 latencies, the RSS of
    /// the API and the workers, the database's size; the warm-up shaded.
    pub fn svg(&self) -> String {
        let (width, panel) = (960.0, 230.0);
        let mut svg = Svg::new(960, 40 + 4 * 230);
        svg.text(
            20.0,
            26.0,
            16,
            "start",
            &format!(
                "orchestrator soak — {} — {} tasks/s ({:.0}% of capacity), RETENTION {}, autovacuum {} — {}{}",
                self.machine.date,
                self.rate,
                self.capacity_share * 100.0,
                self.retention,
                self.autovacuum,
                if self.verdict.passed { "passed" } else { "FAILED" },
                if self.smoke { " (smoke run)" } else { "" }
            ),
        );
        let minutes: Vec<f64> = self.samples.iter().map(|s| s.at_secs / 60.0).collect();
        let x_max = minutes.last().copied().unwrap_or(1.0).max(self.minutes);
        let rss_names: Vec<String> = self
            .samples
            .first()
            .map(|s| {
                s.rss_mb
                    .keys()
                    .filter(|n| verdict::judged_process(n))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let series = |f: &dyn Fn(&Sample) -> Option<f64>| -> Vec<(f64, f64)> {
            self.samples
                .iter()
                .zip(&minutes)
                .filter_map(|(s, m)| Some((*m, f(s)?)))
                .collect()
        };
        let panels: Vec<Panel> = vec![
            (
                "Throughput, tasks/s (dashed: the rate submitted)",
                vec![
                    ("accepted".into(), series(&|s| Some(s.accepted_per_sec))),
                    ("completed".into(), series(&|s| Some(s.completed_per_sec))),
                ],
                Some(f64::from(self.rate)),
            ),
            (
                "p99 latency, ms",
                vec![
                    ("accept".into(), series(&|s| Some(s.accept_p99_ms))),
                    ("submission to COMPLETED".into(), series(&|s| s.e2e_p99_ms)),
                ],
                None,
            ),
            (
                "RSS, MB",
                rss_names
                    .iter()
                    .map(|name| (name.clone(), series(&|s| s.rss_mb.get(name).copied())))
                    .collect(),
                None,
            ),
            (
                "PostgreSQL database size, MB",
                vec![("database".into(), series(&|s| Some(s.database_mb)))],
                None,
            ),
        ];
        let (left, right) = (80.0, width - 180.0);
        for (i, (title, lines, reference)) in panels.iter().enumerate() {
            let top = 40.0 + panel * i as f64;
            let (plot_top, plot_bottom) = (top + 24.0, top + panel - 36.0);
            svg.text(20.0, top + 14.0, 14, "start", title);
            let y_max = nice_ceiling(
                lines
                    .iter()
                    .flat_map(|(_, points)| points.iter().map(|p| p.1))
                    .chain(*reference)
                    .fold(1.0, f64::max)
                    * 1.1,
            );
            let x = |m: f64| left + m / x_max * (right - left);
            let y = |v: f64| plot_bottom - v / y_max * (plot_bottom - plot_top);
            // The warm-up, not judged.
            svg.rect(
                left,
                plot_top,
                x(self.warmup_minutes.min(x_max)) - left,
                plot_bottom - plot_top,
                "#f0f0f0",
            );
            svg.axis(left, right, plot_top, plot_bottom, y_max, y);
            let ticks = if x_max > 20.0 { 5.0 } else { 1.0 };
            let mut m = 0.0;
            while m <= x_max + 1e-9 {
                svg.line(x(m), plot_bottom, x(m), plot_bottom + 4.0, "#333", false);
                svg.text(x(m), plot_bottom + 16.0, 10, "middle", &format!("{m:.0}"));
                m += ticks;
            }
            svg.text(right, plot_bottom + 30.0, 10, "end", "minutes");
            if let Some(rate) = reference {
                svg.line(left, y(*rate), right, y(*rate), "#999", true);
            }
            for (j, (name, points)) in lines.iter().enumerate() {
                let colour = COLOURS[j % COLOURS.len()];
                let scaled: Vec<(f64, f64)> = points.iter().map(|(m, v)| (x(*m), y(*v))).collect();
                svg.polyline(&scaled, colour, false);
                let ly = plot_top + 14.0 * j as f64 + 6.0;
                svg.line(right + 10.0, ly, right + 30.0, ly, colour, false);
                svg.text(right + 34.0, ly + 4.0, 11, "start", name);
            }
        }
        svg.finish()
    }
}
