//! Shrinking: a failing run reduced to a minimal failing case. Fewest faults, fewest nodes
//! and users, shortest run, that still breaks the same invariant at the same seed with the
//! same mutant. The result is an ordinary scenario file for `scenarios/regressions/`.
//!
//! The search is greedy, deterministic and bounded: it repeats its steps (drop a fault, drop a
//! party a fault names, fewer nodes per cluster, fewer users, a shorter run) until none helps
//! or the run budget is spent. Every candidate is first written out and read back (the text
//! must load and give the same scenario), so an invalid one costs no run and the file written
//! at the end is known to load. Fault windows are left alone: the seed draws each start in
//! its window, and a changed window would be a different draw.
//!
//! A mutant's failure must stay a mutant's failure: when the run was made with a mutant, a
//! candidate is kept only if the correct controller still passes it, at the seed and at the
//! seeds `tests/regressions.rs` runs it with. Expectations (`[expect]`) that the smaller
//! scenario can no longer meet are cleared then, unless the invariant being shrunk is
//! `expectation` itself.

use crate::campaign::run_seed;
use crate::check::Measures;
use crate::scenario::{Expect, FaultKind, Scenario};
use standby::controller::Mutation;
use std::fmt;
use std::path::Path;

/// The most runs one shrink may spend (each candidate costs one run, or more when a mutant's
/// candidate is checked against the correct controller too).
pub const MAX_RUNS: u64 = 300;

/// The seeds, besides its own, at which a regression scenario must pass with the correct
/// controller (`tests/regressions.rs`).
pub const CORRECT_SEEDS: [u64; 4] = [1, 2, 3, 4];

/// How big a scenario is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size {
    /// Faults in the schedule.
    pub faults: usize,
    /// Nodes per cluster.
    pub nodes: u16,
    /// Users.
    pub users: u32,
    /// Run length, in seconds.
    pub duration_s: u64,
}

impl Size {
    /// The size of `scenario`.
    pub fn of(scenario: &Scenario) -> Size {
        Size {
            faults: scenario.faults.len(),
            nodes: scenario.topology.nodes_per_cluster,
            users: scenario.topology.users,
            duration_s: scenario.duration_s,
        }
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural =
            |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        write!(
            f,
            "{}, {} per cluster, {}, {} s",
            plural(self.faults as u64, "fault", "faults"),
            plural(self.nodes.into(), "node", "nodes"),
            plural(self.users.into(), "user", "users"),
            self.duration_s
        )
    }
}

/// A shrunk failure.
#[derive(Clone, Debug)]
pub struct Shrunk {
    /// The smallest scenario found that still breaks the invariant (the original when nothing
    /// smaller does, or when the original does not break it).
    pub scenario: Scenario,
    /// Runs spent, the original's included.
    pub runs: u64,
    /// Each step kept, in order, in words; the last line says why the search stopped.
    pub steps: Vec<String>,
    /// Whether the original run broke the invariant at all.
    pub reproduced: bool,
    /// The violation's message in the smallest scenario's run.
    pub message: Option<String>,
}

/// Shrinks `scenario`'s failure of `invariant` at `seed` with `mutation`, spending at most
/// [`MAX_RUNS`] runs.
pub fn shrink(scenario: &Scenario, seed: u64, mutation: Mutation, invariant: &str) -> Shrunk {
    shrink_within(scenario, seed, mutation, invariant, MAX_RUNS)
}

/// [`shrink`] with a run budget of `max_runs`.
pub fn shrink_within(
    scenario: &Scenario,
    seed: u64,
    mutation: Mutation,
    invariant: &str,
    max_runs: u64,
) -> Shrunk {
    let mut shrinker = Shrinker {
        seed,
        mutation,
        invariant,
        max_runs: max_runs.max(1),
        runs: 0,
        current: scenario.clone(),
        message: None,
        steps: Vec::new(),
    };
    let first = shrinker.run(scenario, seed, mutation);
    shrinker.message = target(&first, invariant);
    if shrinker.message.is_none() {
        let with = match mutation {
            Mutation::None => String::new(),
            m => format!(" with mutant {}", m.name()),
        };
        shrinker.steps.push(format!(
            "seed {seed}{with} does not break {invariant}: nothing to shrink"
        ));
        return shrinker.finish(false);
    }
    loop {
        // Every step runs each round (no short circuit): a kept step may unlock another.
        let mut progress = false;
        for step in [
            Shrinker::drop_faults,
            Shrinker::drop_parties,
            Shrinker::fewer_nodes,
            Shrinker::fewer_users,
            Shrinker::shorter_run,
        ] {
            progress |= step(&mut shrinker);
        }
        if shrinker.spent() {
            shrinker.steps.push(format!(
                "stopped: the budget of {} runs is spent",
                shrinker.max_runs
            ));
            break;
        }
        if !progress {
            shrinker.steps.push("no step helps any more".to_owned());
            break;
        }
    }
    shrinker.finish(true)
}

struct Shrinker<'a> {
    seed: u64,
    mutation: Mutation,
    invariant: &'a str,
    max_runs: u64,
    runs: u64,
    current: Scenario,
    message: Option<String>,
    steps: Vec<String>,
}

/// The message of `invariant`'s first violation in `run`, if it broke.
fn target(run: &crate::campaign::SeedRun, invariant: &str) -> Option<String> {
    (run.verdict.violations.iter())
        .find(|v| v.invariant == invariant)
        .map(|v| v.message.clone())
}

impl Shrinker<'_> {
    fn finish(self, reproduced: bool) -> Shrunk {
        Shrunk {
            scenario: self.current,
            runs: self.runs,
            steps: self.steps,
            reproduced,
            message: self.message,
        }
    }

    fn spent(&self) -> bool {
        self.runs >= self.max_runs
    }

    fn run(
        &mut self,
        scenario: &Scenario,
        seed: u64,
        mutation: Mutation,
    ) -> crate::campaign::SeedRun {
        self.runs += 1;
        run_seed(scenario, seed, mutation)
    }

    /// Tries `candidate`; keeps it (and says `what` in the steps) if it still fails as it must.
    fn attempt(&mut self, candidate: Scenario, what: String) -> bool {
        if self.spent() {
            return false;
        }
        let Ok(mut candidate) = round_trip(&candidate) else {
            return false; // Invalid: it costs no run.
        };
        let run = self.run(&candidate, self.seed, self.mutation);
        let Some(message) = target(&run, self.invariant) else {
            return false;
        };
        let mut cleared = Vec::new();
        if self.mutation != Mutation::None {
            // The correct controller must pass it, or it no longer tells the mutant apart.
            let mut seeds = vec![self.seed];
            seeds.extend(CORRECT_SEEDS.iter().filter(|&&s| s != self.seed));
            for seed in seeds {
                let mut retried = false;
                loop {
                    if self.spent() {
                        return false;
                    }
                    let run = self.run(&candidate, seed, Mutation::None);
                    if run.verdict.violations.is_empty() {
                        break;
                    }
                    let fixable = self.invariant != "expectation"
                        && !retried
                        && (run.verdict.violations.iter()).all(|v| v.invariant == "expectation");
                    let relaxed = relax(&mut candidate.expect, &run.verdict.measures);
                    if !fixable || relaxed.is_empty() {
                        return false;
                    }
                    cleared.extend(relaxed);
                    retried = true; // Once more, to see that clearing them was enough.
                }
            }
        } else if self.invariant != "expectation" {
            cleared = relax(&mut candidate.expect, &run.verdict.measures);
        }
        if !cleared.is_empty() {
            cleared.sort();
            cleared.dedup();
            let cleared: Vec<String> = cleared.iter().map(|f| format!("expect.{f}")).collect();
            self.steps
                .push(format!("{what} (cleared {})", cleared.join(", ")));
        } else {
            self.steps.push(what);
        }
        self.current = candidate;
        self.message = Some(message);
        true
    }

    /// Drops each fault in turn.
    fn drop_faults(&mut self) -> bool {
        let mut progress = false;
        let mut i = 0;
        while i < self.current.faults.len() {
            let mut candidate = self.current.clone();
            let fault = candidate.faults.remove(i);
            let what = format!("dropped fault {} ({})", i + 1, fault.kind.describe());
            if self.attempt(candidate, what) {
                progress = true;
            } else {
                i += 1;
            }
        }
        progress
    }

    /// Drops each node or party a fault names, while the fault keeps at least one.
    fn drop_parties(&mut self) -> bool {
        let mut progress = false;
        for f in 0..self.current.faults.len() {
            for list in 0..2 {
                let mut j = 0;
                loop {
                    let mut candidate = self.current.clone();
                    let (field, names) = match (&mut candidate.faults[f].kind, list) {
                        (FaultKind::Crash { nodes } | FaultKind::Wipe { nodes }, 0) => {
                            ("nodes", nodes)
                        }
                        (FaultKind::Partition { from, .. }, 0) => ("from", from),
                        (FaultKind::Partition { to, .. }, 1) => ("to", to),
                        _ => break,
                    };
                    if j >= names.len() || names.len() < 2 {
                        break;
                    }
                    let name = names.remove(j);
                    let what = format!("dropped `{name}` from fault {}'s {field}", f + 1);
                    if self.attempt(candidate, what) {
                        progress = true;
                    } else {
                        j += 1;
                    }
                }
            }
        }
        progress
    }

    fn fewer_nodes(&mut self) -> bool {
        self.fewer(
            "nodes_per_cluster",
            1,
            |s| s.topology.nodes_per_cluster.into(),
            |s, n| s.topology.nodes_per_cluster = n as u16,
        )
    }

    fn fewer_users(&mut self) -> bool {
        self.fewer(
            "users",
            1,
            |s| s.topology.users.into(),
            |s, n| s.topology.users = n as u32,
        )
    }

    /// Halves a count while that helps, then takes one off while that helps. A value the
    /// scenario rules forbid (a fault naming `a/4` needs five nodes) costs no run.
    fn fewer(
        &mut self,
        field: &str,
        least: u64,
        get: fn(&Scenario) -> u64,
        set: fn(&mut Scenario, u64),
    ) -> bool {
        let mut progress = false;
        for halve in [true, false] {
            loop {
                let now = get(&self.current);
                if now <= least {
                    break;
                }
                let next = if halve { (now / 2).max(least) } else { now - 1 };
                let mut candidate = self.current.clone();
                set(&mut candidate, next);
                if !self.attempt(candidate, format!("{field} {now} -> {next}")) {
                    break;
                }
                progress = true;
            }
        }
        progress
    }

    /// Binary search for a shorter run, down to the shortest in which every fault still
    /// starts and heals, whatever start the seed draws in its window. (The format would allow
    /// a heal after the end, as a fault that never heals, but that is another story.)
    fn shorter_run(&mut self) -> bool {
        let latest = (self.current.faults.iter())
            .map(|f| {
                let latest_trigger = f.after.as_ref().map(|t| t.before_ms);
                let window_end = f.window_ms.map(|[_, hi]| hi);
                let start = f.at_ms.or(window_end).or(latest_trigger).unwrap_or(0);
                start + f.duration_ms.unwrap_or(0)
            })
            .max()
            .unwrap_or(0);
        // A heal at `h` happens only if `h` is before the end: `duration_s * 1000 > h`.
        let mut low = latest / 1000 + 1;
        let mut progress = false;
        while low < self.current.duration_s {
            let now = self.current.duration_s;
            let mid = low + (now - low) / 2;
            let mut candidate = self.current.clone();
            candidate.duration_s = mid;
            if self.attempt(candidate, format!("duration_s {now} -> {mid}")) {
                progress = true;
            } else if self.spent() {
                break;
            } else {
                low = mid + 1;
            }
        }
        progress
    }
}

/// Clears every `[expect]` bound the run's measures do not meet; returns the fields cleared.
/// (False failovers are no field: they cannot be cleared.)
fn relax(expect: &mut Expect, m: &Measures) -> Vec<&'static str> {
    let mut cleared = Vec::new();
    let mut clear = |on: bool, field: &'static str| {
        if on {
            cleared.push(field);
        }
        on
    };
    if clear(
        expect.failovers.is_some_and(|n| n != m.failovers),
        "failovers",
    ) {
        expect.failovers = None;
    }
    if clear(
        expect.failovers_max.is_some_and(|n| m.failovers > n),
        "failovers_max",
    ) {
        expect.failovers_max = None;
    }
    if clear(
        expect.second_alarm.is_some_and(|w| w != m.second_alarm),
        "second_alarm",
    ) {
        expect.second_alarm = None;
    }
    if clear(
        expect.double_failure.is_some_and(|w| w != m.double_failure),
        "double_failure",
    ) {
        expect.double_failure = None;
    }
    if clear(
        expect.etcd_alarm.is_some_and(|w| w != m.etcd_alarm),
        "etcd_alarm",
    ) {
        expect.etcd_alarm = None;
    }
    if clear(
        (expect.detection_ms_max).is_some_and(|max| m.detection_ms.iter().any(|&d| d > max)),
        "detection_ms_max",
    ) {
        expect.detection_ms_max = None;
    }
    if clear(
        (expect.rto_ms_max).is_some_and(|max| m.rto_ms.iter().any(|&r| r > max)),
        "rto_ms_max",
    ) {
        expect.rto_ms_max = None;
    }
    if clear(
        (expect.lost_writes_max).is_some_and(|max| m.lost_writes > max),
        "lost_writes_max",
    ) {
        expect.lost_writes_max = None;
    }
    if clear(
        (expect.quarantined_min).is_some_and(|min| m.quarantined < min),
        "quarantined_min",
    ) {
        expect.quarantined_min = None;
    }
    cleared
}

/// Writes `scenario` out and reads it back: the text must load and give the same scenario.
pub fn round_trip(scenario: &Scenario) -> Result<Scenario, String> {
    let text = to_toml(scenario)?;
    let path = format!("{}.toml", scenario.name);
    let back = Scenario::parse(Path::new(&path), &text).map_err(|e| e.to_string())?;
    if back != *scenario {
        return Err(format!(
            "{path}: the written scenario reads back differently"
        ));
    }
    Ok(back)
}

/// The scenario file for `shrunk`: `comment` as a leading `#` block, then the TOML.
pub fn to_file_text(shrunk: &Scenario, comment: &str) -> String {
    let mut text = String::new();
    for line in comment.lines() {
        let line = line.trim_end();
        text += if line.is_empty() { "#" } else { "# " };
        text += line;
        text += "\n";
    }
    if !text.is_empty() {
        text += "\n";
    }
    text + &to_toml(shrunk).expect("a scenario serialises to TOML")
}

/// The scenario as TOML, in the usual order (name, duration, topology, controller,
/// replication, workload, network, faults, expect, regression), leaving out every field that
/// has its default value.
fn to_toml(scenario: &Scenario) -> Result<String, String> {
    use toml::{Table, Value};
    let table = |s: &Scenario| Table::try_from(s).map_err(|e| e.to_string());
    let mut root = table(scenario)?;
    let defaults = table(&Scenario {
        controller: Default::default(),
        replication: Default::default(),
        workload: Default::default(),
        network: Default::default(),
        expect: Default::default(),
        ..scenario.clone()
    })?;
    for section in ["controller", "replication", "workload", "network", "expect"] {
        let default = defaults.get(section).and_then(Value::as_table);
        if let Some(Value::Table(fields)) = root.get_mut(section) {
            fields.retain(|k, v| default.and_then(|d| d.get(k)) != Some(v));
            if fields.is_empty() {
                root.remove(section);
            }
        }
    }
    if let Some(Value::Table(topology)) = root.get_mut("topology") {
        if topology.get("clock_drift_ppm") == Some(&Value::Integer(0)) {
            topology.remove("clock_drift_ppm");
        }
    }
    if root.get("faults") == Some(&Value::Array(Vec::new())) {
        root.remove("faults");
    }
    let render = |t: &Table| toml::to_string(t).map_err(|e| e.to_string());
    let take = |root: &mut Table, key: &str| {
        root.remove(key).map(|v| {
            let mut t = Table::new();
            t.insert(key.to_owned(), v);
            t
        })
    };
    let mut out = String::new();
    // Plain values first: after a table header they would belong to that table.
    for key in ["name", "duration_s"] {
        if let Some(t) = take(&mut root, key) {
            out += &render(&t)?;
        }
    }
    let plain: Vec<String> = (root.iter())
        .filter(|(_, v)| !is_table(v))
        .map(|(k, _)| k.clone())
        .collect();
    for key in plain {
        if let Some(t) = take(&mut root, &key) {
            out += &render(&t)?;
        }
    }
    let sections = [
        "topology",
        "controller",
        "replication",
        "workload",
        "network",
    ];
    for key in sections {
        if let Some(t) = take(&mut root, key) {
            out += "\n";
            out += &render(&t)?;
        }
    }
    if let Some(Value::Array(faults)) = root.remove("faults") {
        for fault in faults {
            out += "\n";
            match fault {
                // `kind` first, then the rest (all plain values).
                Value::Table(mut fields) if !fields.values().any(is_table) => {
                    // Defaults: a two-way partition, a link cut of every shard.
                    if fields.get("one_way") == Some(&Value::Boolean(false)) {
                        fields.remove("one_way");
                    }
                    if fields.get("shards") == Some(&Value::Array(Vec::new())) {
                        fields.remove("shards");
                    }
                    out += "[[faults]]\n";
                    if let Some(t) = take(&mut fields, "kind") {
                        out += &render(&t)?;
                    }
                    out += &render(&fields)?;
                }
                other => {
                    let mut t = Table::new();
                    t.insert("faults".into(), Value::Array(vec![other]));
                    out += &render(&t)?;
                }
            }
        }
    }
    let rest: Vec<String> = root.keys().cloned().collect();
    let order = ["expect", "regression"];
    let rest = (order.iter().map(|k| k.to_string()))
        .filter(|k| rest.contains(k))
        .chain(
            rest.iter()
                .filter(|k| !order.contains(&k.as_str()))
                .cloned(),
        )
        .collect::<Vec<_>>();
    for key in rest {
        if let Some(t) = take(&mut root, &key) {
            out += "\n";
            out += &render(&t)?;
        }
    }
    Ok(out)
}

fn is_table(v: &toml::Value) -> bool {
    match v {
        toml::Value::Table(_) => true,
        toml::Value::Array(items) => !items.is_empty() && items.iter().all(|i| i.is_table()),
        _ => false,
    }
}

/// The regression file for a shrunk failure: its path under `out` (named
/// `<original>-<mutant or invariant>-seed<S>.toml`, which is also the scenario's name) and its
/// text, whose leading comment tells where it came from and how to replay it.
pub fn regression_file(
    source: &Path,
    original: &Scenario,
    shrunk: &Shrunk,
    seed: u64,
    mutation: Mutation,
    invariant: &str,
    out: &Path,
) -> (std::path::PathBuf, String) {
    let tag = match mutation {
        Mutation::None => invariant.to_owned(),
        m => m.name().to_owned(),
    };
    let stem = format!("{}-{tag}-seed{seed}", original.name);
    let path = out.join(format!("{stem}.toml"));
    let mut scenario = shrunk.scenario.clone();
    scenario.name = stem;
    scenario.regression = Some(crate::scenario::Regression {
        invariant: invariant.to_owned(),
        seed,
        mutant: (mutation != Mutation::None).then(|| mutation.name().to_owned()),
        mutant_seed: None,
        source: source.display().to_string(),
    });
    let who = match mutation {
        Mutation::None => "the correct controller".to_owned(),
        m => format!("the `{}` mutant", m.name()),
    };
    let mut story = wrap(
        &format!(
            "Regression, shrunk by `cargo sim shrink`: with {who}, seed {seed} breaks the \
             `{invariant}` invariant:"
        ),
        94,
        "",
    );
    story += &wrap(
        shrunk.message.as_deref().unwrap_or("(no message)"),
        94,
        "  ",
    );
    story += &wrap(
        &format!("Shrunk from {} in {} runs:", source.display(), shrunk.runs),
        94,
        "",
    );
    story += &format!("  before: {}\n", Size::of(original));
    story += &format!("  after:  {}\n", Size::of(&shrunk.scenario));
    story += "  steps:\n";
    for step in &shrunk.steps {
        story += &wrap(step, 94, "    - ");
    }
    let check = match mutation {
        Mutation::None => format!(
            "tests/regressions.rs runs it with the correct controller at seed {seed} and seeds \
             1-4, where it must break nothing: it fails until the bug is fixed."
        ),
        _ => format!(
            "tests/regressions.rs runs it with the correct controller at seed {seed} and seeds \
             1-4, where it must break nothing, and with the mutant at seed {seed}, where it \
             must still break `{invariant}`."
        ),
    };
    story += &wrap(&check, 94, "");
    story += &format!(
        "Replay: {}",
        crate::campaign::replay_command(&path, seed, mutation)
    );
    let text = to_file_text(&scenario, &story);
    (path, text)
}

/// `text` wrapped at `width` columns, the first line after `lead`, the others indented as far.
fn wrap(text: &str, width: usize, lead: &str) -> String {
    let indent = " ".repeat(lead.chars().count());
    let mut out = String::new();
    let mut line = lead.to_owned();
    let mut empty = true;
    for word in text.split_whitespace() {
        if !empty && line.chars().count() + 1 + word.chars().count() > width {
            out += &line;
            out += "\n";
            line = indent.clone();
            empty = true;
        }
        if !empty {
            line += " ";
        }
        line += word;
        empty = false;
    }
    out += &line;
    out += "\n";
    out
}
