//! The markdown tables: one per fault, one row per (tool, setting). Percentiles are
//! nearest-rank (the p-th percentile of n sorted values is the ceil(p/100 x n)-th), over the
//! runs that did not fail.

use crate::measure::RunRecord;
use std::fmt::Write as _;
use std::path::Path;

/// Every record in `file` (JSON lines). Lines that do not parse are an error naming the line.
pub fn read(file: &Path) -> Result<Vec<RunRecord>, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| format!("{}:{}: {e}", file.display(), i + 1))
        })
        .collect()
}

/// The nearest-rank `p`-th percentile of `sorted` (ascending, not empty).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// A row's key: the cell and, for standby, its interval and lease.
#[derive(Clone, Debug, PartialEq)]
struct Row {
    tool: String,
    setting_ms: u64,
    interval_ms: u64,
    lease_ms: u64,
    route_wait_ms: u64,
}

impl Row {
    fn of(r: &RunRecord) -> Row {
        let standby = r.tool == "standby";
        Row {
            tool: r.tool.clone(),
            setting_ms: r.setting_ms,
            interval_ms: if standby { r.interval_ms } else { 0 },
            lease_ms: if standby { r.lease_ms } else { 0 },
            route_wait_ms: if standby { r.client_route_wait_ms } else { 0 },
        }
    }

    fn label(&self) -> String {
        if self.tool == "standby" {
            format!(
                "standby (interval {} ms, lease {} ms, client route_wait {} ms)",
                self.interval_ms, self.lease_ms, self.route_wait_ms
            )
        } else {
            self.tool.clone()
        }
    }
}

fn fmt_ms(v: f64) -> String {
    format!("{v:.0}")
}

/// Where the time goes: per row, the median time from the signal to each of the tool's own
/// steps (from its logs), then to the first write on the new primary.
fn steps_table(of_fault: &[&RunRecord]) -> String {
    let mut out = String::new();
    let mut rows: Vec<Row> = Vec::new();
    for r in of_fault {
        let row = Row::of(r);
        if !rows.contains(&row) {
            rows.push(row);
        }
    }
    let _ = writeln!(
        out,
        "\nWhere the time goes (median ms from the signal, over the runs that logged the step):\n"
    );
    let _ = writeln!(out, "| tool | down-after = heartbeat timeout | steps |");
    let _ = writeln!(out, "|---|---|---|");
    for row in rows {
        let ok: Vec<&&RunRecord> = (of_fault.iter())
            .filter(|r| r.ok && Row::of(r) == row)
            .collect();
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            (!v.is_empty()).then(|| percentile(&v, 50.0))
        };
        let mut steps: Vec<String> = Vec::new();
        for name in crate::milestones::step_names(&row.tool) {
            let times = ok.iter().filter_map(|r| r.steps_ms.get(name).copied());
            if let Some(m) = median(times.collect()) {
                steps.push(format!("{name} {}", fmt_ms(m)));
            }
        }
        if let Some(m) = median(ok.iter().filter_map(|r| r.first_new_primary_ms).collect()) {
            steps.push(format!("first write on b/0 {}", fmt_ms(m)));
        }
        let _ = writeln!(
            out,
            "| {} | {} ms | {} |",
            row.label(),
            row.setting_ms,
            steps.join(" → ")
        );
    }
    out
}

/// The tables for `records`, faults in the order first seen.
pub fn tables(records: &[RunRecord]) -> String {
    let mut out = String::new();
    let mut faults: Vec<&str> = Vec::new();
    for r in records {
        if !faults.contains(&r.fault.as_str()) {
            faults.push(&r.fault);
        }
    }
    for fault in faults {
        let of_fault: Vec<&RunRecord> = records.iter().filter(|r| r.fault == fault).collect();
        let mut rows: Vec<Row> = Vec::new();
        for r in &of_fault {
            let row = Row::of(r);
            if !rows.contains(&row) {
                rows.push(row);
            }
        }
        let title = match fault {
            "kill" => "kill: SIGKILL a/0 and a/1 (restarted 2 s after the first write on b/0, or 10 s after the kill if b/0 accepted none by then)",
            "kill-one" => "kill-one: SIGKILL a/0 alone, its cluster stays available (restarted as for kill)",
            "pause" => "pause: SIGSTOP a/0 and a/1, SIGCONT 5 s later",
            other => other,
        };
        let _ = writeln!(out, "\n### {title}\n");
        let _ = writeln!(
            out,
            "| tool | down-after = heartbeat timeout | runs | first write on new primary, ms: min / median / p90 / max | acked writes lost, following writer: total (max in a run) | acked writes lost, old-address writer: total (max in a run) | quarantined (standby): total | accepted by two primaries: total | new primary refused writes, ms: median / max | new primary named to first ack on it, ms: median / max | failed runs |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
        let mut medians: Vec<(Row, f64)> = Vec::new();
        for row in rows {
            let all: Vec<&&RunRecord> = of_fault.iter().filter(|r| Row::of(r) == row).collect();
            let ok: Vec<&&RunRecord> = all.iter().copied().filter(|r| r.ok).collect();
            let failed = all.len() - ok.len();
            let mut first: Vec<f64> = ok.iter().filter_map(|r| r.first_new_primary_ms).collect();
            first.sort_by(f64::total_cmp);
            let first_text = if first.is_empty() {
                "-".to_string()
            } else {
                let median = percentile(&first, 50.0);
                medians.push((row.clone(), median));
                format!(
                    "{} / {} / {} / {}",
                    fmt_ms(first[0]),
                    fmt_ms(median),
                    fmt_ms(percentile(&first, 90.0)),
                    fmt_ms(first[first.len() - 1])
                )
            };
            let lost = |f: fn(&RunRecord) -> u64| {
                let total: u64 = ok.iter().map(|r| f(r)).sum();
                let max = ok.iter().map(|r| f(r)).max().unwrap_or(0);
                format!("{total} ({max})")
            };
            let quarantined = if row.tool == "standby" {
                let total: u64 = ok
                    .iter()
                    .map(|r| r.quarantined.following + r.quarantined.old_address)
                    .sum();
                total.to_string()
            } else {
                "-".to_string()
            };
            let two: u64 = ok.iter().map(|r| r.two_primaries).sum();
            let median_max = |mut v: Vec<f64>| {
                v.sort_by(f64::total_cmp);
                match v.last() {
                    Some(max) => format!("{} / {}", fmt_ms(percentile(&v, 50.0)), fmt_ms(*max)),
                    None => "-".to_string(),
                }
            };
            let refused_text =
                median_max(ok.iter().filter_map(|r| r.new_primary_refused_ms).collect());
            let named_text = median_max(
                ok.iter()
                    .filter_map(|r| Some(r.first_new_primary_ms? - r.new_primary_named_ms?))
                    .collect(),
            );
            let _ = writeln!(
                out,
                "| {} | {} ms | {} | {first_text} | {} | {} | {quarantined} | {two} | {refused_text} | {named_text} | {failed} |",
                row.label(),
                row.setting_ms,
                ok.len(),
                lost(|r| r.lost.following),
                lost(|r| r.lost.old_address),
            );
        }
        out.push_str(&steps_table(&of_fault));
        // standby's median over Sentinel's, per setting.
        for (row, median) in medians.iter().filter(|(r, _)| r.tool == "standby") {
            let sentinel = medians
                .iter()
                .find(|(r, _)| r.tool == "sentinel" && r.setting_ms == row.setting_ms);
            if let Some((_, s)) = sentinel {
                if *s > 0.0 {
                    let _ = writeln!(
                        out,
                        "\nAt {} ms, {}'s median first write on the new primary is {:.2}x Sentinel's.",
                        row.setting_ms,
                        row.label(),
                        median / s
                    );
                }
            }
        }
    }
    out.push_str(
        "\nPercentiles are nearest-rank over the runs that did not fail; `runs` counts those. \
         Times are from the signal to the reply of the following writer's first acknowledged \
         write on b/0. Lost: acknowledged but not on b/0 with its value at the end (and, for \
         standby, not in a quarantine file). Two primaries: writes acknowledged by a/0 whose \
         reply came after b/0's first acknowledged write. Refused: from b/0's first refusal \
         to its first ack (0 if none before it). Named to first ack: from the moment the tool \
         first named b/0 to the following writer (standby's client got its route; a sentinel \
         answered b/0's address) to that writer's first ack on b/0.\n",
    );
    out
}
