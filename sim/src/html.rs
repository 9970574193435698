//! The run as a picture: a self-contained HTML page (inline SVG and CSS; no script, no font or
//! anything else fetched from the network) that shows the failover story on one shared time
//! axis, in simulated seconds, as stacked lanes:
//!
//! 1. each cluster's true availability ratio (the injector's ground truth), the controller's
//!    threshold, and the controller's declared state per cluster;
//! 2. the faults, as shaded intervals;
//! 3. the controller's phase (normal, failover, double failure);
//! 4. the epoch and its primary cluster;
//! 5. the alarms, from raised to cleared;
//! 6. the replication lag, summed over shards;
//! 7. the share of users on the newest epoch;
//! 8. the writes accepted per cluster;
//!
//! and every violation as a red vertical line, with the messages listed below the chart.
//!
//! Whatever grows with the run (writes, users, nodes) is bucketed or downsampled to pixel
//! columns before it is drawn, so a 64-node, 1,000-user run draws about as many SVG elements
//! as a 5-node, 10-user one.

use crate::check::Verdict;
use crate::scenario::Scenario;
use crate::trace::Event;
use standby::controller::{AlarmEvent, AlarmKind, Availability, Note};
use standby::node::NodeEvent;
use standby::time::Time;
use standby::types::{Cluster, Epoch, NodeId, Shard};
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;

/// The SVG's width in px.
const WIDTH: f64 = 1500.0;
/// The left gutter, for lane titles and tick labels.
const GUTTER: f64 = 178.0;
/// The right margin.
const RIGHT: f64 = 22.0;
/// The plot's width: the time axis.
const PLOT_W: f64 = WIDTH - GUTTER - RIGHT;
/// The height of one row of bands (faults, phase, alarms).
const ROW: f64 = 20.0;
/// Vertical space between lanes.
const GAP: f64 = 10.0;
/// Font size of labels in the plot.
const FONT: f64 = 11.0;
/// Most rows of fault or alarm bands; more overlapping intervals share the last rows.
const MAX_ROWS: usize = 6;
/// Most violations listed below the chart (the rest are counted).
const MAX_LISTED: usize = 300;
/// Longest violation message shown, in characters.
const MAX_MESSAGE: usize = 2000;
/// Fewest microseconds in a bucket.
const MIN_BUCKET_US: u64 = 100_000;
/// Buckets across the time axis (at most, unless the minimum bucket forbids it).
const BUCKETS: u64 = 300;

/// Colours, shared by the chart and the legend.
const COLOR_A: &str = "#1f6fb4";
const COLOR_B: &str = "#f08a24";
const COLOR_UP: &str = "#9fd49a";
const COLOR_DOWN: &str = "#d7301f";
const COLOR_FAULT: &str = "#b9b3dc";
const COLOR_FAULT_EDGE: &str = "#7d72b8";
const COLOR_NORMAL: &str = "#e3f2df";
const COLOR_FAILOVER: &str = "#f6b042";
const COLOR_DOUBLE: &str = "#c2185b";
const COLOR_ALARM1: &str = "#d6604d";
const COLOR_ALARM2: &str = "#6a3d9a";
const COLOR_LAG: &str = "#4a6b8a";
const COLOR_USERS: &str = "#00897b";
const COLOR_VIOLATION: &str = "#e00000";

/// Renders the page for one run of `scenario` under `seed`: its trace `events`, the
/// checkers' `verdict`, and the trace hash that identifies the run.
pub fn render(
    scenario: &Scenario,
    seed: u64,
    events: &[(Time, Event)],
    verdict: &Verdict,
    trace_hash: u64,
) -> String {
    let model = Model::build(scenario, events, verdict);
    let mut page = String::with_capacity(64 * 1024);
    let name = escape(&scenario.name);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{name}, seed {seed}: standby replay timeline</title>\n<style>{CSS}</style>\n\
         </head>\n<body>\n"
    );
    header(&mut page, scenario, seed, verdict, trace_hash, &model);
    legend(&mut page, scenario);
    page += &svg(scenario, &model, verdict);
    violation_list(&mut page, verdict);
    let _ = write!(
        page,
        "<footer>Ground truth (availability, faults, lag, writes) comes from the simulator; \
         the declared state, phase, epoch and alarms are what the controller said. Hover a \
         band for its exact times.</footer>\n</body>\n</html>\n"
    );
    page
}

const CSS: &str = "
body { font: 14px/1.45 system-ui, 'DejaVu Sans', 'Liberation Sans', Arial, sans-serif;
       color: #222; background: #fff; margin: 14px 22px; }
h1 { font-size: 20px; margin: 0 0 2px; }
h2 { font-size: 16px; margin: 18px 0 6px; }
.meta { margin: 0; color: #444; }
.meta b { color: #222; }
.ok { color: #1b7a2b; font-weight: 600; }
.bad { color: #c00000; font-weight: 600; }
code { font-family: 'DejaVu Sans Mono', 'Liberation Mono', monospace; font-size: 13px; }
ul.legend { list-style: none; padding: 0; margin: 8px 0 6px; display: flex; flex-wrap: wrap;
            gap: 4px 18px; font-size: 12.5px; color: #333; }
ul.legend li { display: flex; align-items: center; gap: 6px; }
.sw { display: inline-block; width: 18px; height: 11px; border-radius: 2px; }
.ln { display: inline-block; width: 20px; height: 0; border-top: 3px solid; }
.dash { display: inline-block; width: 20px; height: 0; border-top: 2px dashed #555; }
svg { display: block; max-width: 100%; height: auto; }
svg text { font-family: system-ui, 'DejaVu Sans', 'Liberation Sans', Arial, sans-serif;
           font-size: 11px; fill: #333; }
svg .title { font-size: 12.5px; font-weight: 600; fill: #222; }
svg .note { font-size: 10.5px; fill: #777; }
svg .tick { font-size: 10.5px; fill: #555; }
svg .in { fill: #fff; font-weight: 600; }
svg .vnum { font-size: 10.5px; font-weight: 700; fill: #e00000; }
ol.violations { padding-left: 0; list-style: none; margin: 4px 0; }
ol.violations li { margin: 3px 0; padding-left: 8px; border-left: 3px solid #e00000; }
ol.violations .when { color: #c00000; font-weight: 600; }
ol.violations .untimed { color: #777; font-style: italic; }
footer { margin-top: 14px; font-size: 12px; color: #777; }
";

/// The time axis: from 0 to `end`, mapped onto the plot's width.
struct Axis {
    end: u64,
}

impl Axis {
    fn x(&self, t: Time) -> f64 {
        GUTTER + PLOT_W * (t.0.min(self.end) as f64 / self.end as f64)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Normal,
    Failover,
    DoubleFailure,
}

/// A labelled interval; `end: None` lasts to the end of the run.
struct Span {
    start: Time,
    end: Option<Time>,
    label: String,
    fill: &'static str,
    tooltip: String,
}

/// One shard's primary over time: (from, its epoch, its cluster) at each change, in order.
type ShardChanges = Vec<(Time, Epoch, Cluster)>;

/// What the page draws, distilled from the trace in one pass.
struct Model {
    axis: Axis,
    bucket_us: u64,
    /// Per cluster: (time, available/total) at each change of the ground truth.
    truth: [Vec<(Time, f64)>; 2],
    /// Per cluster: the intervals the controller had it declared failed.
    declared_failed: [Vec<(Time, Option<Time>)>; 2],
    faults: Vec<Span>,
    /// Failover and double-failure intervals (the rest is normal).
    phases: Vec<(Time, Option<Time>, Phase)>,
    /// (from, epoch, primary cluster), in order; the cluster holding most shards' primaries.
    epochs: Vec<(Time, Epoch, Cluster)>,
    /// Per shard: (from, its epoch, its primary cluster) at each change, in order.
    shard_primaries: Vec<ShardChanges>,
    alarms: Vec<Span>,
    /// Per bucket: the largest summed lag seen in it.
    lag: Vec<u64>,
    /// (time, percent of users on the newest epoch) at each change.
    share: Vec<(Time, f64)>,
    /// Per cluster, per bucket: writes accepted.
    writes: [Vec<u64>; 2],
    /// Failovers (promotions of the other cluster).
    failovers: usize,
}

fn idx(cluster: Cluster) -> usize {
    match cluster {
        Cluster::A => 0,
        Cluster::B => 1,
    }
}

/// The replication lag, summed over shards, kept up to date event by event.
///
/// This is an approximation from the trace alone: a node's position is the LSN of the last
/// entry it accepted (as primary) or applied (as backup); a quarantine puts it back to just
/// before the first quarantined LSN, a wipe to 0. A shard's lag is its primary node's position
/// minus its backup node's, or 0 if the backup is ahead, where the primary is the cluster of
/// the newest persisted epoch (the controller's view; during a split brain the old primary's
/// writes count as the backup being ahead). Entries applied but not yet in the trace, and the
/// node's own truncation on `Follow`, are not seen.
struct Lag {
    position: [Vec<u64>; 2],
    per_shard: Vec<u64>,
    total: u64,
    /// Each shard's primary cluster.
    primary: Vec<Cluster>,
}

impl Lag {
    fn new(shards: usize) -> Lag {
        Lag {
            position: [vec![0; shards], vec![0; shards]],
            per_shard: vec![0; shards],
            total: 0,
            primary: vec![Cluster::A; shards],
        }
    }

    fn set(&mut self, node: NodeId, lsn: u64) {
        let shard = node.index as usize;
        for side in &mut self.position {
            if side.len() <= shard {
                side.resize(shard + 1, 0);
            }
        }
        if self.per_shard.len() <= shard {
            self.per_shard.resize(shard + 1, 0);
            self.primary.resize(shard + 1, Cluster::A);
        }
        self.position[idx(node.cluster)][shard] = lsn;
        self.update(shard);
    }

    fn update(&mut self, shard: usize) {
        let p = idx(self.primary[shard]);
        let lag = self.position[p][shard].saturating_sub(self.position[1 - p][shard]);
        self.total = self.total - self.per_shard[shard] + lag;
        self.per_shard[shard] = lag;
    }

    fn set_primaries(&mut self, shards: &BTreeMap<Shard, (Cluster, Epoch)>) {
        for (shard, (primary, _)) in shards {
            let i = shard.0 as usize;
            if self.primary.get(i).is_some_and(|p| p != primary) {
                self.primary[i] = *primary;
                self.update(i);
            }
        }
    }
}

/// Per-bucket maxima of a value that holds between changes.
struct BucketMax {
    values: Vec<u64>,
    /// Buckets before this one are final.
    next: usize,
    current: u64,
}

impl BucketMax {
    fn new(buckets: usize) -> BucketMax {
        BucketMax {
            values: vec![0; buckets],
            next: 0,
            current: 0,
        }
    }

    /// The value became `value` in bucket `b`.
    fn set(&mut self, b: usize, value: u64) {
        while self.next < b {
            self.values[self.next] = self.values[self.next].max(self.current);
            self.next += 1;
        }
        self.values[b] = self.values[b].max(self.current).max(value);
        self.current = value;
    }

    fn finish(mut self) -> Vec<u64> {
        let last = self.values.len();
        while self.next < last {
            self.values[self.next] = self.values[self.next].max(self.current);
            self.next += 1;
        }
        self.values
    }
}

impl Model {
    fn build(scenario: &Scenario, events: &[(Time, Event)], verdict: &Verdict) -> Model {
        // The axis spans the whole trace (the run and its drain), in whole seconds.
        let last = events.last().map_or(0, |(t, _)| t.0);
        let last_violation = (verdict.violations.iter())
            .filter_map(|v| v.at)
            .map(|t| t.0)
            .max()
            .unwrap_or(0);
        let end = last
            .max(last_violation)
            .max(scenario.duration_s.saturating_mul(1_000_000))
            .max(1);
        let end = end.div_ceil(1_000_000) * 1_000_000;
        // Bucket = max(100 ms, span / 300), the span being the run plus its drain, rounded up
        // to a round number of milliseconds (1, 2, 2.5 or 5 times a power of ten).
        let bucket_us = nice_bucket((end / BUCKETS).max(MIN_BUCKET_US));
        let buckets = end.div_ceil(bucket_us) as usize;
        let bucket = |t: Time| ((t.0 / bucket_us) as usize).min(buckets - 1);

        let shards = scenario.topology.nodes_per_cluster as usize;
        let users = scenario.topology.users as usize;
        // The world records the truth only when it changes: both clusters start whole. The
        // controller, likewise, presumes both available until it declares otherwise.
        let mut truth: [Vec<(Time, f64)>; 2] = [vec![(Time::ZERO, 1.0)], vec![(Time::ZERO, 1.0)]];
        let mut declared_failed: [Vec<(Time, Option<Time>)>; 2] = [Vec::new(), Vec::new()];
        let mut faults = Vec::new();
        let mut open_faults: BTreeMap<&str, VecDeque<usize>> = BTreeMap::new();
        let mut phases = Vec::new();
        let mut phase = (Phase::Normal, Time::ZERO);
        let mut epochs = Vec::new();
        let mut shard_primaries: Vec<ShardChanges> = vec![Vec::new(); shards];
        let mut alarms: Vec<Span> = Vec::new();
        let mut open_alarms: BTreeMap<u64, usize> = BTreeMap::new();
        let mut lag = Lag::new(shards);
        let mut lag_buckets = BucketMax::new(buckets);
        let mut user_epoch = vec![Epoch(0); users];
        // Each shard's epoch: a user is on the newest configuration once it applied its own
        // shard's (users of a shard that did not move keep theirs).
        let mut shard_epoch = vec![Epoch(0); shards.max(1)];
        let of = |user: usize| scenario.topology.shard_of(user as u32).0 as usize;
        let target = |shard_epoch: &[Epoch], user: usize| shard_epoch[of(user)];
        let mut newest = Epoch(0);
        let mut on_newest = 0usize;
        // The newest epoch is the newest the controller persisted; a user is on it once it
        // applied that epoch (or a newer one). No user is on any epoch before the first.
        let mut share = vec![(Time::ZERO, 0.0)];
        let mut writes = [vec![0u64; buckets], vec![0u64; buckets]];
        let mut failovers = 0;
        let percent = |n: usize| {
            if users == 0 {
                0.0
            } else {
                100.0 * n as f64 / users as f64
            }
        };

        for (t, event) in events {
            let t = *t;
            match event {
                Event::Truth {
                    cluster,
                    available,
                    total,
                    ..
                } => {
                    let ratio = if *total == 0 {
                        0.0
                    } else {
                        *available as f64 / *total as f64
                    };
                    truth[idx(*cluster)].push((t, ratio));
                }
                Event::Controller(note) => {
                    let next = match note {
                        Note::ClusterDeclared {
                            cluster,
                            availability,
                            ..
                        } => {
                            let spans = &mut declared_failed[idx(*cluster)];
                            let open = spans.last().is_some_and(|(_, end)| end.is_none());
                            match availability {
                                Availability::Failed if !open => spans.push((t, None)),
                                Availability::Available if open => {
                                    if let Some(last) = spans.last_mut() {
                                        last.1 = Some(t);
                                    }
                                }
                                _ => {}
                            }
                            None
                        }
                        Note::FailoverStarted { .. } => Some(Phase::Failover),
                        Note::DoubleFailure { .. } => Some(Phase::DoubleFailure),
                        Note::Promoted { epoch, resumed, .. } => {
                            if !resumed && *epoch > Epoch(1) {
                                failovers += 1;
                            }
                            Some(Phase::Normal)
                        }
                        _ => None,
                    };
                    if let Some(next) = next {
                        if next != phase.0 {
                            if phase.0 != Phase::Normal {
                                phases.push((phase.1, Some(t), phase.0));
                            }
                            phase = (next, t);
                        }
                    }
                }
                Event::Fault {
                    what,
                    healed: false,
                    ..
                } => {
                    open_faults
                        .entry(what.as_str())
                        .or_default()
                        .push_back(faults.len());
                    faults.push(Span {
                        start: t,
                        end: None,
                        label: what.clone(),
                        fill: COLOR_FAULT,
                        tooltip: String::new(),
                    });
                }
                Event::Fault {
                    what, healed: true, ..
                } => {
                    // A heal closes the oldest open fault of the same description.
                    if let Some(i) = open_faults
                        .get_mut(what.as_str())
                        .and_then(|q| q.pop_front())
                    {
                        faults[i].end = Some(t);
                    }
                }
                Event::EpochPersisted {
                    epoch,
                    shards: states,
                } => {
                    epochs.push((t, *epoch, most_primaries(states)));
                    for (shard, &(cluster, e)) in states {
                        let Some(changes) = shard_primaries.get_mut(shard.0 as usize) else {
                            continue;
                        };
                        if changes
                            .last()
                            .is_none_or(|&(_, e0, c0)| (e0, c0) != (e, cluster))
                        {
                            changes.push((t, e, cluster));
                        }
                    }
                    lag.set_primaries(states);
                    lag_buckets.set(bucket(t), lag.total);
                    if *epoch > newest {
                        newest = *epoch;
                        for (shard, (_, e)) in states {
                            if let Some(slot) = shard_epoch.get_mut(shard.0 as usize) {
                                *slot = *e;
                            }
                        }
                        let current = |(u, e): (usize, &Epoch)| *e >= target(&shard_epoch, u);
                        on_newest = user_epoch
                            .iter()
                            .enumerate()
                            .filter(|x| current(*x))
                            .count();
                        share.push((t, percent(on_newest)));
                    }
                }
                Event::Alarm(AlarmEvent::Raised(alarm)) => {
                    let (what, fill) = match alarm.kind {
                        AlarmKind::PrimaryFailed => ("first alarm", COLOR_ALARM1),
                        AlarmKind::BackupFailed => ("second alarm", COLOR_ALARM2),
                        AlarmKind::Lag => ("lag alarm", COLOR_LAG),
                        AlarmKind::PromotionHeld => ("promotion held", COLOR_LAG),
                    };
                    let about = match (alarm.lag, alarm.shard) {
                        (Some(lag), _) => format!("{} behind", lag.shard.node(alarm.cluster)),
                        _ if alarm.kind == AlarmKind::PromotionHeld => {
                            format!("{} waits for `standby promote`", alarm.cluster.other())
                        }
                        (None, Some(shard)) => format!("{} failed", shard.node(alarm.cluster)),
                        (None, None) => format!("{} failed", alarm.cluster),
                    };
                    open_alarms.insert(alarm.id, alarms.len());
                    alarms.push(Span {
                        start: t,
                        end: None,
                        label: format!("#{} {what}: {about}", alarm.id),
                        fill,
                        tooltip: String::new(),
                    });
                }
                Event::Alarm(AlarmEvent::Cleared { id, .. }) => {
                    if let Some(i) = open_alarms.remove(id) {
                        alarms[i].end = Some(t);
                    }
                }
                Event::Node { node, event } => {
                    let position = match event {
                        NodeEvent::Accepted(entry) => {
                            writes[idx(node.cluster)][bucket(t)] += 1;
                            Some(entry.lsn.0)
                        }
                        NodeEvent::Applied { to, .. } => Some(to.0),
                        NodeEvent::Quarantined(q) => {
                            q.lsns.map(|(first, _)| first.0.saturating_sub(1))
                        }
                        NodeEvent::Installed { base } => Some(base.0),
                        NodeEvent::Role { .. } | NodeEvent::Trimmed { .. } => None,
                    };
                    if let Some(lsn) = position {
                        lag.set(*node, lsn);
                        lag_buckets.set(bucket(t), lag.total);
                    }
                }
                Event::Wiped { node } => {
                    lag.set(*node, 0);
                    lag_buckets.set(bucket(t), lag.total);
                }
                Event::UserConfig { user, epoch, .. } => {
                    let goal = target(&shard_epoch, user.0 as usize);
                    if let Some(slot) = user_epoch.get_mut(user.0 as usize) {
                        let was = *slot >= goal && newest > Epoch(0);
                        *slot = *epoch;
                        let is = *slot >= goal && newest > Epoch(0);
                        if was != is {
                            on_newest = if is { on_newest + 1 } else { on_newest - 1 };
                            share.push((t, percent(on_newest)));
                        }
                    }
                }
                _ => {}
            }
        }
        if phase.0 != Phase::Normal {
            phases.push((phase.1, None, phase.0));
        }
        let axis = Axis { end };
        let tip = |start: Time, end: Option<Time>, label: &str| match end {
            Some(end) => format!("{label}: {start} to {end}"),
            None => format!("{label}: from {start}, never ended"),
        };
        for span in faults.iter_mut().chain(alarms.iter_mut()) {
            span.tooltip = tip(span.start, span.end, &span.label);
        }
        Model {
            axis,
            bucket_us,
            truth,
            declared_failed,
            faults,
            phases,
            epochs,
            shard_primaries,
            alarms,
            lag: lag_buckets.finish(),
            share,
            writes,
            failovers,
        }
    }
}

/// The smallest duration of the form {1, 2, 2.5, 5} × 10^k µs that is at least `us`.
fn nice_bucket(us: u64) -> u64 {
    let mut power = 1u64;
    loop {
        for m in [10, 20, 25, 50] {
            let candidate = power * m / 10;
            if candidate >= us {
                return candidate;
            }
        }
        power *= 10;
    }
}

/// HTML-escapes text (for element content and attribute values alike).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out += "&amp;",
            '<' => out += "&lt;",
            '>' => out += "&gt;",
            '"' => out += "&quot;",
            '\'' => out += "&#39;",
            c => out.push(c),
        }
    }
    out
}

/// A rough width of `text` at `size` px in a sans-serif font: generous, so that labels
/// placed by it do not overlap.
fn text_width(text: &str, size: f64) -> f64 {
    text.chars().count() as f64 * size * 0.62
}

/// `text` cut (with an ellipsis) to fit `room` px, or `None` if too little of it would fit.
fn fit(text: &str, room: f64, size: f64) -> Option<String> {
    if text_width(text, size) <= room {
        return Some(text.to_owned());
    }
    let chars = (room / (size * 0.62)).floor() as usize;
    if chars < 4 {
        return None;
    }
    let cut: String = text.chars().take(chars - 1).collect();
    Some(format!("{}…", cut.trim_end()))
}

fn header(
    page: &mut String,
    scenario: &Scenario,
    seed: u64,
    verdict: &Verdict,
    trace_hash: u64,
    model: &Model,
) {
    let verdict_html = if verdict.violations.is_empty() {
        "<span class=\"ok\">all invariants hold</span>".to_owned()
    } else {
        let n = verdict.violations.len();
        format!(
            "<span class=\"bad\">{n} violation{}</span>",
            if n == 1 { "" } else { "s" }
        )
    };
    let topology = &scenario.topology;
    let mode = format!("{:?}", scenario.replication.mode).to_lowercase();
    let a = verdict.measures.availability;
    let _ = write!(
        page,
        "<header>\n<h1>{}</h1>\n<p class=\"meta\">seed <b>{seed}</b> · verdict {verdict_html} · \
         trace-hash <code>{trace_hash:016x}</code></p>\n<p class=\"meta\">{} nodes per cluster · \
         {} users · {mode} replication · {} s of writes, then a drain · ratio threshold {} · \
         {} failover{} · bucket {} ms</p>\n<p class=\"meta\">users' writes: {} sent, {} \
         acknowledged ({:.1}%), {} refused, {} unanswered · longest any user went without an \
         acknowledged write: {} ms</p>\n</header>\n",
        escape(&scenario.name),
        topology.nodes_per_cluster,
        topology.users,
        scenario.duration_s,
        scenario.controller.ratio_threshold,
        model.failovers,
        if model.failovers == 1 { "" } else { "s" },
        model.bucket_us / 1000,
        a.attempted,
        a.acknowledged,
        100.0 * a.acknowledged_share(),
        a.refused,
        a.unanswered,
        a.longest_unacknowledged_ms,
    );
}

fn legend(page: &mut String, scenario: &Scenario) {
    let sw = |color: &str, extra: &str| {
        format!("<span class=\"sw\" style=\"background:{color};{extra}\"></span>")
    };
    let ln = |color: &str| format!("<span class=\"ln\" style=\"border-color:{color}\"></span>");
    let items = [
        (ln(COLOR_A), "cluster a".to_owned()),
        (ln(COLOR_B), "cluster b".to_owned()),
        (
            "<span class=\"dash\"></span>".to_owned(),
            format!(
                "ratio threshold {} (available iff above)",
                scenario.controller.ratio_threshold
            ),
        ),
        (
            sw(COLOR_UP, ""),
            "declared available (controller)".to_owned(),
        ),
        (sw(COLOR_DOWN, ""), "declared failed".to_owned()),
        (
            sw(COLOR_FAULT, &format!("border:1px solid {COLOR_FAULT_EDGE}")),
            "fault, start to heal".to_owned(),
        ),
        (
            sw(COLOR_NORMAL, "border:1px solid #b5d6ad"),
            "normal".to_owned(),
        ),
        (
            sw(COLOR_FAILOVER, ""),
            "failover (until the promotion)".to_owned(),
        ),
        (sw(COLOR_DOUBLE, ""), "double failure".to_owned()),
        (
            sw(COLOR_ALARM1, ""),
            "first alarm (primary failed)".to_owned(),
        ),
        (
            sw(COLOR_ALARM2, ""),
            "second alarm (backup failed)".to_owned(),
        ),
        (
            sw(COLOR_LAG, "opacity:.6"),
            "replication lag, Σ over shards (entries)".to_owned(),
        ),
        (ln(COLOR_USERS), "users on the newest epoch".to_owned()),
        (
            sw(COLOR_VIOLATION, "width:3px"),
            "violation (number: see the list below)".to_owned(),
        ),
    ];
    *page += "<ul class=\"legend\">\n";
    for (swatch, text) in items {
        let _ = writeln!(page, "<li>{swatch}{}</li>", escape(&text));
    }
    *page += "</ul>\n";
}

/// Tick spacing in seconds: the smallest "nice" step giving at most 26 ticks.
fn tick_step(end_s: u64) -> u64 {
    [1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600]
        .into_iter()
        .find(|step| end_s / step <= 26)
        .unwrap_or(end_s.max(1))
}

/// A step line through `changes` (time, value), downsampled to pixel columns: per column,
/// its lowest, highest and last value, so no dip is lost and the path stays short.
fn step_path(axis: &Axis, changes: &[(Time, f64)], y: impl Fn(f64) -> f64) -> String {
    let mut d = String::new();
    let Some(&(t0, v0)) = changes.first() else {
        return d;
    };
    let _ = write!(d, "M{:.1} {:.1}", axis.x(t0), y(v0));
    let mut current = v0;
    let mut i = 1;
    while i < changes.len() {
        let column = axis.x(changes[i].0).round();
        let (mut lo, mut hi, mut last) = (current, current, current);
        while i < changes.len() && axis.x(changes[i].0).round() == column {
            let v = changes[i].1;
            lo = lo.min(v);
            hi = hi.max(v);
            last = v;
            i += 1;
        }
        if lo == hi && last == current {
            continue;
        }
        let _ = write!(d, "H{column:.1}");
        let mut pen = current;
        for v in [lo, hi, last] {
            if v != pen {
                let _ = write!(d, "V{:.1}", y(v));
                pen = v;
            }
        }
        current = last;
    }
    let _ = write!(d, "H{:.1}", GUTTER + PLOT_W);
    d
}

/// Assigns each interval (x0, x1 including its label) the first row where it fits; when all
/// `MAX_ROWS` are taken, the row that frees up first.
fn pack(extents: &[(f64, f64)]) -> Vec<usize> {
    let mut ends: Vec<f64> = Vec::new();
    let mut rows = Vec::with_capacity(extents.len());
    for &(x0, x1) in extents {
        let row = match ends.iter().position(|&end| end + 4.0 <= x0) {
            Some(row) => row,
            None if ends.len() < MAX_ROWS => {
                ends.push(f64::MIN);
                ends.len() - 1
            }
            None => (0..ends.len())
                .min_by(|&a, &b| ends[a].total_cmp(&ends[b]))
                .unwrap_or(0),
        };
        ends[row] = ends[row].max(x1);
        rows.push(row);
    }
    rows
}

/// Whether white text reads on `fill`.
fn dark(fill: &str) -> bool {
    [COLOR_DOUBLE, COLOR_ALARM1, COLOR_ALARM2].contains(&fill)
}

/// Draws labelled bands from `top`, packed in rows so that no two bands or labels overlap
/// (or all in one row, for intervals that never overlap); returns the height used.
fn bands(
    svg: &mut String,
    axis: &Axis,
    spans: &[Span],
    top: f64,
    class: &str,
    packed: bool,
) -> f64 {
    let end_x = GUTTER + PLOT_W;
    let geometry: Vec<(f64, f64, f64)> = (spans.iter())
        .map(|s| {
            let x0 = axis.x(s.start);
            let x1 = s.end.map_or(end_x, |e| axis.x(e)).max(x0 + 2.0);
            let label_end = x0 + 4.0 + text_width(&s.label, FONT);
            (x0, x1, label_end)
        })
        .collect();
    let extents: Vec<(f64, f64)> = (geometry.iter())
        .map(|&(x0, x1, label_end)| {
            // A label that does not fit inside goes after the band.
            let after = x1 + 4.0 + (label_end - x0 - 4.0);
            if label_end <= x1 - 2.0 {
                (x0, x1)
            } else {
                (x0, after.min(end_x).max(x1))
            }
        })
        .collect();
    let rows = if packed {
        pack(&extents)
    } else {
        vec![0; spans.len()]
    };
    let used = rows.iter().max().map_or(1, |r| r + 1);
    for (i, span) in spans.iter().enumerate() {
        let (x0, x1, label_end) = geometry[i];
        let y = top + rows[i] as f64 * ROW;
        let stroke = if class == "fault" {
            format!(" stroke=\"{COLOR_FAULT_EDGE}\"")
        } else {
            String::new()
        };
        let _ = write!(
            svg,
            "<g class=\"{class}\"><title>{}</title><rect x=\"{x0:.1}\" y=\"{:.1}\" \
             width=\"{:.1}\" height=\"{:.1}\" rx=\"2\" fill=\"{}\"{stroke}/>",
            escape(&span.tooltip),
            y + 1.5,
            x1 - x0,
            ROW - 3.0,
            span.fill
        );
        // Inside the band if it fits; else after it, up to the next band in the row.
        let next_x0 = (i + 1..spans.len())
            .find(|&j| rows[j] == rows[i])
            .map_or(end_x, |j| geometry[j].0);
        let (x, room, inside) = if label_end <= x1 - 2.0 {
            (x0 + 4.0, x1 - x0 - 6.0, true)
        } else {
            (x1 + 4.0, next_x0 - x1 - 8.0, false)
        };
        if let Some(label) = fit(&span.label, room, FONT) {
            // White on a dark band; outside it, the band's colour if dark enough to read.
            let (cls, color) = match (inside, dark(span.fill)) {
                (true, true) => (" class=\"in\"", String::new()),
                (false, true) => ("", format!(" style=\"fill:{}\"", span.fill)),
                (_, false) => ("", String::new()),
            };
            let _ = write!(
                svg,
                "<text x=\"{x:.1}\" y=\"{:.1}\"{cls}{color}>{}</text>",
                y + ROW / 2.0 + 4.0,
                escape(&label)
            );
        }
        *svg += "</g>\n";
    }
    used as f64 * ROW
}

/// The gutter's title (and note) for a lane whose plot starts at `y`.
fn lane_title(svg: &mut String, y: f64, title: &str, note: &str) {
    let _ = write!(
        svg,
        "<text class=\"title\" x=\"8\" y=\"{:.1}\">{}</text>",
        y + 12.0,
        escape(title)
    );
    if !note.is_empty() {
        let _ = write!(
            svg,
            "<text class=\"note\" x=\"8\" y=\"{:.1}\">{}</text>",
            y + 25.0,
            escape(note)
        );
    }
    *svg += "\n";
}

/// A tick label in the gutter, right-aligned against the plot, centred on `y`.
fn y_tick(svg: &mut String, y: f64, text: &str) {
    let _ = writeln!(
        svg,
        "<text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
        GUTTER - 5.0,
        y + 3.5,
        escape(text)
    );
}

/// The lane's frame.
fn frame(svg: &mut String, top: f64, height: f64) {
    let _ = writeln!(
        svg,
        "<rect x=\"{GUTTER}\" y=\"{top:.1}\" width=\"{PLOT_W}\" height=\"{height:.1}\" \
         fill=\"#fbfbfb\" stroke=\"#ddd\"/>"
    );
}

fn svg(scenario: &Scenario, model: &Model, verdict: &Verdict) -> String {
    let axis = &model.axis;
    let end_x = GUTTER + PLOT_W;
    let end_time = Time(axis.end);
    let mut body = String::new();
    let lanes_top = 40.0;
    let mut y = lanes_top;

    // 1. Availability: the true ratio per cluster, the threshold, the declared state.
    let h = 130.0;
    let ratio_y = |top: f64| move |r: f64| top + 6.0 + (1.0 - r) * (h - 12.0);
    frame(&mut body, y, h);
    lane_title(&mut body, y, "availability", "true ratio up/total");
    let ry = ratio_y(y);
    let threshold = scenario.controller.ratio_threshold;
    y_tick(&mut body, ry(1.0), "1.0");
    y_tick(&mut body, ry(threshold), &format!("{threshold} ┄"));
    y_tick(&mut body, ry(0.0), "0");
    let _ = writeln!(
        body,
        "<line x1=\"{GUTTER}\" x2=\"{end_x}\" y1=\"{t:.1}\" y2=\"{t:.1}\" stroke=\"#555\" \
         stroke-width=\"1.2\" stroke-dasharray=\"6 4\"><title>ratio threshold {threshold}: a \
         cluster is available only above it</title></line>",
        t = ry(threshold)
    );
    // a is drawn wide underneath, b narrow on top, so both show where they coincide.
    for (cluster, color, width) in [(Cluster::A, COLOR_A, 4.0), (Cluster::B, COLOR_B, 2.0)] {
        let d = step_path(axis, &model.truth[idx(cluster)], ry);
        let _ = writeln!(
            body,
            "<path id=\"truth-{cluster}\" d=\"{d}\" fill=\"none\" stroke=\"{color}\" \
             stroke-width=\"{width}\" stroke-linejoin=\"round\"><title>cluster {cluster}: true \
             availability ratio</title></path>"
        );
    }
    y += h + 4.0;
    for cluster in Cluster::BOTH {
        let band = 9.0;
        let color = if cluster == Cluster::A {
            COLOR_A
        } else {
            COLOR_B
        };
        let _ = write!(
            body,
            "<text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{cluster} \
             declared</text><rect x=\"{:.1}\" y=\"{:.1}\" width=\"6\" height=\"{band}\" \
             fill=\"{color}\"/>",
            GUTTER - 12.0,
            y + band - 1.0,
            GUTTER - 9.0,
            y
        );
        let _ = write!(
            body,
            "<g id=\"declared-{cluster}\"><rect x=\"{GUTTER}\" y=\"{y:.1}\" width=\"{PLOT_W}\" \
             height=\"{band}\" fill=\"{COLOR_UP}\"><title>{cluster} declared available</title>\
             </rect>"
        );
        for &(from, to) in &model.declared_failed[idx(cluster)] {
            let x0 = axis.x(from);
            let x1 = axis.x(to.unwrap_or(end_time)).max(x0 + 1.5);
            let _ = write!(
                body,
                "<rect x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{band}\" \
                 fill=\"{COLOR_DOWN}\"><title>{cluster} declared failed: {from} to {}</title>\
                 </rect>",
                x1 - x0,
                to.map_or("the end".to_owned(), |t| t.to_string())
            );
        }
        body += "</g>\n";
        y += band + 3.0;
    }
    y += GAP;

    // 2. Faults.
    let top = y;
    let mut faults_svg = String::new();
    let used = bands(
        &mut faults_svg,
        axis,
        &model.faults,
        top + 2.0,
        "fault",
        true,
    );
    let h = used + 4.0;
    frame(&mut body, top, h);
    lane_title(&mut body, top + h / 2.0 - 8.0, "faults", "");
    body += &faults_svg;
    if model.faults.is_empty() {
        let _ = writeln!(
            body,
            "<text class=\"note\" x=\"{:.1}\" y=\"{:.1}\">no faults</text>",
            GUTTER + 6.0,
            top + 14.0
        );
    }
    y += h + GAP;

    // 3. The controller's phase.
    let h = ROW;
    frame(&mut body, y, h);
    lane_title(&mut body, y + h / 2.0 - 8.0, "controller phase", "");
    let _ = writeln!(
        body,
        "<rect x=\"{GUTTER}\" y=\"{y:.1}\" width=\"{PLOT_W}\" height=\"{h}\" \
         fill=\"{COLOR_NORMAL}\"><title>normal</title></rect>"
    );
    let phase_spans: Vec<Span> = (model.phases.iter())
        .map(|&(start, end, phase)| {
            let (name, fill) = match phase {
                Phase::Failover => ("failover", COLOR_FAILOVER),
                Phase::DoubleFailure => ("double failure", COLOR_DOUBLE),
                Phase::Normal => ("normal", COLOR_NORMAL),
            };
            let length = end.unwrap_or(end_time).saturating_since(start);
            let label = format!("{name} {:.2} s", length.as_secs_f64());
            Span {
                start,
                end,
                tooltip: format!("{name}: {start} to {}", end.unwrap_or(end_time)),
                label,
                fill,
            }
        })
        .collect();
    // Phases never overlap: one row.
    bands(&mut body, axis, &phase_spans, y, "phase", false);
    y += h + GAP;

    // 4. The epoch, with its primary cluster.
    let h = ROW + 4.0;
    frame(&mut body, y, h);
    lane_title(&mut body, y + h / 2.0 - 8.0, "epoch · primary", "");
    for (i, &(from, epoch, primary)) in model.epochs.iter().enumerate() {
        let to = model.epochs.get(i + 1).map_or(end_time, |e| e.0);
        let (x0, x1) = (axis.x(from), axis.x(to));
        let color = if primary == Cluster::A {
            COLOR_A
        } else {
            COLOR_B
        };
        let _ = write!(
            body,
            "<g class=\"epoch\"><title>{epoch}, primary {primary}: {from} to {to}</title>\
             <rect x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{color}\" \
             fill-opacity=\"0.18\"/><line x1=\"{x0:.1}\" x2=\"{x0:.1}\" y1=\"{y:.1}\" \
             y2=\"{:.1}\" stroke=\"{color}\" stroke-width=\"3\"/>",
            y + 2.0,
            (x1 - x0).max(1.0),
            h - 4.0,
            y + h
        );
        let label = format!("{epoch} · primary {primary}");
        let short = format!("{epoch}");
        let room = x1 - x0 - 8.0;
        let text = fit(&label, room, FONT).or_else(|| fit(&short, room, FONT));
        if let Some(text) = text {
            let _ = write!(
                body,
                "<text x=\"{:.1}\" y=\"{:.1}\" style=\"fill:{color};font-weight:600\">{}</text>",
                x0 + 6.0,
                y + h / 2.0 + 4.0,
                escape(&text)
            );
        }
        body += "</g>\n";
    }
    y += h + GAP;

    // 4b. Each shard's primary: every shard up to 16, beyond that the ones that moved.
    y = shard_lane(&mut body, model, axis, y, end_time);

    // 5. Alarms.
    let top = y;
    let mut alarms_svg = String::new();
    let used = bands(
        &mut alarms_svg,
        axis,
        &model.alarms,
        top + 2.0,
        "alarm",
        true,
    );
    let h = used + 4.0;
    frame(&mut body, top, h);
    lane_title(&mut body, top + h / 2.0 - 8.0, "alarms", "");
    body += &alarms_svg;
    if model.alarms.is_empty() {
        let _ = writeln!(
            body,
            "<text class=\"note\" x=\"{:.1}\" y=\"{:.1}\">no alarm</text>",
            GUTTER + 6.0,
            top + 14.0
        );
    }
    y += h + GAP;

    // 6. Replication lag.
    let h = 76.0;
    frame(&mut body, y, h);
    let bucket_ms = model.bucket_us / 1000;
    lane_title(
        &mut body,
        y,
        "replication lag",
        &format!("entries, Σ shards, per {bucket_ms} ms"),
    );
    let max_lag = model.lag.iter().copied().max().unwrap_or(0);
    let scale = |v: u64| y + h - 2.0 - (h - 8.0) * v as f64 / max_lag.max(1) as f64;
    y_tick(&mut body, y + 6.0, &format!("{max_lag}"));
    y_tick(&mut body, y + h - 2.0, "0");
    let width = PLOT_W / model.lag.len() as f64;
    let mut d = format!("M{GUTTER} {:.1}", y + h - 2.0);
    for (b, &v) in model.lag.iter().enumerate() {
        let _ = write!(d, "V{:.1}H{:.1}", scale(v), GUTTER + width * (b + 1) as f64);
    }
    let _ = write!(d, "V{:.1}Z", y + h - 2.0);
    let _ = writeln!(
        body,
        "<path id=\"lag\" d=\"{d}\" fill=\"{COLOR_LAG}\" fill-opacity=\"0.45\" \
         stroke=\"{COLOR_LAG}\" stroke-width=\"1\"><title>replication lag: primary position \
         minus backup position, summed over shards, entries (max {max_lag})</title></path>"
    );
    y += h + GAP;

    // 7. Users on the newest epoch.
    let h = 60.0;
    frame(&mut body, y, h);
    lane_title(&mut body, y, "users on newest", "epoch, % of users");
    let top = y;
    let py = |p: f64| top + 4.0 + (100.0 - p) / 100.0 * (h - 8.0);
    y_tick(&mut body, py(100.0), "100%");
    y_tick(&mut body, py(0.0), "0%");
    let _ = writeln!(
        body,
        "<path d=\"M{GUTTER} {m:.1}H{end_x}\" stroke=\"#e4e4e4\" stroke-dasharray=\"2 3\"/>",
        m = py(50.0)
    );
    let d = step_path(axis, &model.share, py);
    let _ = writeln!(
        body,
        "<path id=\"users\" d=\"{d}\" fill=\"none\" stroke=\"{COLOR_USERS}\" \
         stroke-width=\"2\"><title>share of users whose config is on the newest epoch \
         </title></path>"
    );
    y += h + GAP;

    // 8. Writes accepted per cluster per bucket.
    let h = 86.0;
    frame(&mut body, y, h);
    lane_title(
        &mut body,
        y,
        "writes accepted",
        &format!("per {bucket_ms} ms, a | b"),
    );
    let max_writes = (model.writes.iter())
        .flat_map(|w| w.iter().copied())
        .max()
        .unwrap_or(0);
    y_tick(&mut body, y + 6.0, &format!("{max_writes}"));
    y_tick(&mut body, y + h - 2.0, "0");
    let base = y + h - 1.0;
    let bar = |v: u64| (h - 7.0) * v as f64 / max_writes.max(1) as f64;
    for (cluster, color) in [(Cluster::A, COLOR_A), (Cluster::B, COLOR_B)] {
        let mut d = String::new();
        let offset = if cluster == Cluster::A { 0.0 } else { 0.5 };
        let w = width / 2.0;
        for (b, &v) in model.writes[idx(cluster)].iter().enumerate() {
            if v == 0 {
                continue;
            }
            let x = GUTTER + width * (b as f64 + offset);
            let _ = write!(
                d,
                "M{x:.1} {base:.1}v{:.1}h{:.2}v{:.1}z",
                -bar(v),
                (w - 0.3).max(0.4),
                bar(v)
            );
        }
        let _ = writeln!(
            body,
            "<path id=\"writes-{cluster}\" d=\"{d}\" fill=\"{color}\"><title>writes accepted \
             by cluster {cluster}, per {bucket_ms} ms</title></path>"
        );
    }
    y += h;
    let lanes_bottom = y;

    // The time axis: grid, ticks and labels at the top and the bottom.
    let end_s = axis.end / 1_000_000;
    let step = tick_step(end_s);
    let mut grid = String::new();
    let mut labels = String::new();
    for s in (0..=end_s).step_by(step as usize) {
        let x = axis.x(Time(s * 1_000_000));
        let _ = write!(grid, "M{x:.1} {lanes_top}V{lanes_bottom:.1}");
        for (ty, anchor) in [(lanes_top - 6.0, "middle"), (lanes_bottom + 15.0, "middle")] {
            let _ = write!(
                labels,
                "<text class=\"tick\" x=\"{x:.1}\" y=\"{ty:.1}\" text-anchor=\"{anchor}\">{s}\
                 </text>"
            );
        }
    }
    let mut out = String::new();
    let height = lanes_bottom + 36.0;
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height:.0}\" \
         viewBox=\"0 0 {WIDTH} {height:.0}\" role=\"img\" aria-label=\"timeline of the run\">"
    );
    out += &body;
    let _ = writeln!(
        out,
        "<path d=\"{grid}\" stroke=\"#000\" stroke-opacity=\"0.08\" fill=\"none\"/>\n{labels}"
    );
    let _ = writeln!(
        out,
        "<text class=\"note\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">simulated time \
         (s)</text><text class=\"note\" x=\"8\" y=\"{:.1}\">time (s)</text>",
        GUTTER + PLOT_W / 2.0,
        lanes_bottom + 30.0,
        lanes_top - 6.0
    );

    // Violations: red lines across every lane, numbered as in the list below (one line per
    // pixel column, whatever the count).
    let mut columns: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (i, v) in verdict.violations.iter().enumerate() {
        if let Some(at) = v.at {
            columns
                .entry(axis.x(at).round() as i64)
                .or_default()
                .push(i);
        }
    }
    for (&x, list) in &columns {
        let x = x as f64;
        let tip: Vec<String> = (list.iter().take(5))
            .map(|&i| {
                let v = &verdict.violations[i];
                format!("V{} [{}] {}", i + 1, v.invariant, truncate(&v.message, 200))
            })
            .collect();
        let _ = writeln!(
            out,
            "<line class=\"violation\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" \
             y2=\"{lanes_bottom:.1}\" stroke=\"{COLOR_VIOLATION}\" stroke-width=\"1.6\">\
             <title>{}</title></line>",
            lanes_top - 2.0,
            escape(&tip.join("\n"))
        );
    }
    // Numbers above the lines: columns closer than a label's width share one label.
    let mut groups: Vec<(f64, f64, Vec<usize>)> = Vec::new();
    for (&x, list) in &columns {
        let x = x as f64;
        match groups.last_mut() {
            Some((x0, x1, all)) if x - *x0 < 28.0 => {
                *x1 = x;
                all.extend(list);
            }
            _ => groups.push((x, x, list.clone())),
        }
    }
    let mut last_label = f64::MIN;
    for (x0, x1, mut list) in groups {
        list.sort_unstable();
        let (first, last) = (list[0] + 1, list[list.len() - 1] + 1);
        let label = match list.len() {
            1 => format!("V{first}"),
            n if last - first + 1 == n => format!("V{first}–{last}"),
            n => format!("V{first} +{}", n - 1),
        };
        let x = (x0 + x1) / 2.0;
        let w = text_width(&label, 10.5);
        let x = x
            .max(last_label + 4.0 + w / 2.0)
            .min(end_x + RIGHT - w / 2.0);
        if x - w / 2.0 >= last_label + 3.0 {
            let _ = writeln!(
                out,
                "<text class=\"vnum\" x=\"{x:.1}\" y=\"12\" text-anchor=\"middle\">{label}</text>"
            );
            last_label = x + w / 2.0;
        }
    }
    out += "</svg>\n";
    out
}

fn truncate(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        return text.to_owned();
    }
    let cut: String = text.chars().take(chars).collect();
    format!("{cut}…")
}

fn violation_list(page: &mut String, verdict: &Verdict) {
    if verdict.violations.is_empty() {
        *page += "<h2>Violations</h2>\n<p class=\"ok\">None: every invariant held.</p>\n";
        return;
    }
    let _ = writeln!(
        page,
        "<h2>Violations ({})</h2>\n<ol class=\"violations\">",
        verdict.violations.len()
    );
    for (i, v) in verdict.violations.iter().enumerate().take(MAX_LISTED) {
        let when = match v.at {
            Some(at) => format!("<span class=\"when\">at {at}</span>"),
            None => {
                "<span class=\"untimed\">no single instant (not on the chart)</span>".to_owned()
            }
        };
        let _ = writeln!(
            page,
            "<li id=\"v{n}\"><b>V{n}</b> {when} \
             <code>[{}]</code> {}</li>",
            escape(v.invariant),
            escape(&truncate(&v.message, MAX_MESSAGE)),
            n = i + 1
        );
    }
    *page += "</ol>\n";
    if verdict.violations.len() > MAX_LISTED {
        let _ = writeln!(
            page,
            "<p>… and {} more (see <code>cargo sim replay</code>).</p>",
            verdict.violations.len() - MAX_LISTED
        );
    }
}

/// The cluster holding the most shards' primaries (`a` on a tie).
fn most_primaries(shards: &BTreeMap<Shard, (Cluster, Epoch)>) -> Cluster {
    let on_b = shards.values().filter(|(c, _)| *c == Cluster::B).count();
    match on_b * 2 > shards.len() {
        true => Cluster::B,
        false => Cluster::A,
    }
}

/// The lane of each shard's primary (issue 15: a shard fails over alone): one thin row per
/// shard, coloured by its primary's cluster, each stretch titled with its node and epoch.
/// Returns the next lane's top.
fn shard_lane(body: &mut String, model: &Model, axis: &Axis, top: f64, end: Time) -> f64 {
    const SHOWN_ALL: usize = 16;
    const THIN: f64 = 9.0;
    let all = &model.shard_primaries;
    let moved = |c: &ShardChanges| c.iter().any(|&(_, _, cl)| cl != Cluster::A);
    let rows: Vec<(usize, &ShardChanges)> = (all.iter().enumerate())
        .filter(|(_, c)| all.len() <= SHOWN_ALL || moved(c))
        .collect();
    if rows.is_empty() {
        return top;
    }
    let h = rows.len() as f64 * (THIN + 1.0) + 3.0;
    frame(body, top, h);
    let note = match all.len() <= SHOWN_ALL {
        true => "one row per shard",
        false => "the shards that moved",
    };
    lane_title(body, top + h / 2.0 - 12.0, "shard primaries", note);
    for (row, (shard, changes)) in rows.into_iter().enumerate() {
        let y = top + 2.0 + row as f64 * (THIN + 1.0);
        for (i, &(from, epoch, cluster)) in changes.iter().enumerate() {
            let to = changes.get(i + 1).map_or(end, |c| c.0);
            let (x0, x1) = (axis.x(from), axis.x(to));
            let color = match cluster {
                Cluster::A => COLOR_A,
                Cluster::B => COLOR_B,
            };
            let _ = writeln!(
                body,
                "<rect class=\"shard\" x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{THIN}\" \
                 fill=\"{color}\" fill-opacity=\"0.35\"><title>shard {shard}: primary {cluster}/{shard} in \
                 {epoch}, {from} to {to}</title></rect>",
                (x1 - x0).max(1.0)
            );
        }
    }
    top + h + GAP
}
