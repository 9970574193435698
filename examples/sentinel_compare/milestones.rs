//! Where the time goes: the steps of a failover as each tool logs them, in ms from t0.
//!
//! Both tools log a wall-clock time of day (standby's controller: UTC, microseconds;
//! redis-sentinel: local time, milliseconds, so the sentinels run with `TZ=UTC`). A step is
//! the first log line of its kind at or after t0 (the earliest over the three sentinels).
//! Times of day are compared with t0's modulo one day, so a run may cross midnight.

use std::collections::BTreeMap;

const DAY_MS: f64 = 86_400_000.0;

/// The steps of standby's failover of a, as the controller logs them (`note=` and `alarm=`
/// lines at info level), in order.
const STANDBY_STEPS: [(&str, &[&str]); 4] = [
    (
        "a declared failed",
        &["note=ClusterDeclared { cluster: A, availability: Failed"],
    ),
    (
        "first alarm",
        &["alarm=Raised(Alarm {", "kind: PrimaryFailed"],
    ),
    ("b promoted", &["note=Promoted { epoch: Epoch(2)"]),
    ("config stored", &["note=PublishAcked { epoch: Epoch(2)"]),
];

/// The steps of Sentinel's failover of shard 0, as the sentinels log them, in order.
const SENTINEL_STEPS: [(&str, &[&str]); 6] = [
    ("+sdown", &["+sdown master shard0 "]),
    ("+odown", &["+odown master shard0 "]),
    ("+try-failover", &["+try-failover master shard0 "]),
    ("+selected-slave", &["+selected-slave ", "@ shard0 "]),
    ("+promoted-slave", &["+promoted-slave ", "@ shard0 "]),
    ("+switch-master", &["+switch-master shard0 "]),
];

/// The names of a tool's steps, in order.
pub fn step_names(tool: &str) -> Vec<&'static str> {
    let steps: &[(&str, &[&str])] = match tool {
        "standby" => &STANDBY_STEPS,
        _ => &SENTINEL_STEPS,
    };
    steps.iter().map(|(name, _)| *name).collect()
}

/// standby's steps in the controller's log `text`.
pub fn standby(text: &str, t0_unix_ms: u64) -> BTreeMap<String, f64> {
    // `2026-11-25T15:27:21.164335Z  INFO ...`: the time of day is between `T` and `Z`.
    let time = |line: &str| line.get(11..line.find('Z')?).and_then(day_ms);
    steps(&STANDBY_STEPS, [text].into_iter(), time, t0_unix_ms)
}

/// Sentinel's steps in the sentinels' logs.
pub fn sentinel<'a>(
    logs: impl Iterator<Item = &'a str> + Clone,
    t0_unix_ms: u64,
) -> BTreeMap<String, f64> {
    // `4242:X 25 Nov 2026 15:24:57.025 # +sdown master shard0 ...`: the fifth word.
    let time = |line: &str| line.split_whitespace().nth(4).and_then(day_ms);
    steps(&SENTINEL_STEPS, logs, time, t0_unix_ms)
}

fn steps<'a>(
    steps: &[(&str, &[&str])],
    texts: impl Iterator<Item = &'a str> + Clone,
    time: impl Fn(&str) -> Option<f64>,
    t0_unix_ms: u64,
) -> BTreeMap<String, f64> {
    let mut found = BTreeMap::new();
    for (name, needles) in steps {
        let first = texts
            .clone()
            .flat_map(str::lines)
            .filter(|line| needles.iter().all(|n| line.contains(n)))
            .filter_map(|line| time(line).map(|t| since(t, t0_unix_ms)))
            .filter(|&t| t >= 0.0)
            .reduce(f64::min);
        if let Some(t) = first {
            found.insert(name.to_string(), (t * 10.0).round() / 10.0);
        }
    }
    found
}

/// ms since midnight of `HH:MM:SS.fraction`.
fn day_ms(text: &str) -> Option<f64> {
    let mut parts = text.splitn(3, ':');
    let hours: f64 = parts.next()?.parse().ok()?;
    let minutes: f64 = parts.next()?.parse().ok()?;
    let seconds: f64 = parts.next()?.parse().ok()?;
    Some(((hours * 60.0 + minutes) * 60.0 + seconds) * 1000.0)
}

/// A time of day (ms since midnight UTC) as ms from t0, taken within half a day of t0.
fn since(day: f64, t0_unix_ms: u64) -> f64 {
    let t0 = (t0_unix_ms % DAY_MS as u64) as f64;
    let d = (day - t0).rem_euclid(DAY_MS);
    if d > DAY_MS / 2.0 {
        d - DAY_MS
    } else {
        d
    }
}
