//! The replay timeline page (`cargo sim replay ... --timeline out.html`): a single
//! self-contained document that tells the run's story, marks violations only where there are
//! some, escapes what it quotes, and stays small however many nodes and users the run has.

use standby::controller::Mutation;
use standby::time::Time;
use standby_sim::check::{check, Verdict, Violation};
use standby_sim::html::render;
use standby_sim::scenario::Scenario;
use standby_sim::trace::{self, Event};
use std::path::{Path, PathBuf};

/// The largest page allowed for a shipped 5-node scenario.
const MAX_PAGE: usize = 400 * 1024;

fn scenario(name: &str) -> Scenario {
    let file: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(format!("{name}.toml"));
    Scenario::load(&file).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs one seed and renders its page.
fn page(
    scenario: &Scenario,
    seed: u64,
    mutation: Mutation,
) -> (String, Verdict, Vec<(Time, Event)>) {
    let out = standby_sim::world::run(scenario, seed, mutation);
    let verdict = check(scenario, &out);
    let html = render(
        scenario,
        seed,
        &out.events,
        &verdict,
        trace::hash(&out.events),
    );
    (html, verdict, out.events)
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

/// The properties every page has: one document, one chart, nothing fetched, no script, the
/// header, both clusters' lanes, and a bounded size.
fn assert_well_formed(html: &str, scenario: &Scenario, seed: u64, hash: u64, max: usize) {
    assert!(html.starts_with("<!DOCTYPE html>"), "not an HTML document");
    assert_eq!(count(html, "<html"), 1, "one document");
    assert_eq!(count(html, "</html>"), 1, "one document");
    assert!(
        html.trim_end().ends_with("</html>"),
        "nothing after the document"
    );
    assert_eq!(count(html, "<svg"), 1, "one chart");
    assert_eq!(count(html, "</svg>"), 1, "one chart");
    // Self-contained: the only URL is the SVG namespace, which is never fetched.
    let without_ns = html.replace("http://www.w3.org/2000/svg", "");
    assert!(!without_ns.contains("http://"), "a network URL in the page");
    assert!(
        !without_ns.contains("https://"),
        "a network URL in the page"
    );
    let lower = html.to_lowercase();
    for banned in [
        "<script",
        "<link",
        "@import",
        "@font-face",
        "url(",
        "<img",
        "<iframe",
    ] {
        assert!(!lower.contains(banned), "the page contains {banned}");
    }
    // The header.
    assert!(html.contains(&format!("<h1>{}</h1>", scenario.name)));
    assert!(html.contains(&format!("seed <b>{seed}</b>")));
    assert!(html.contains(&format!("{hash:016x}")), "the trace hash");
    // Lanes for both clusters: truth, declared state, writes.
    for cluster in ["a", "b"] {
        for lane in ["truth", "declared", "writes"] {
            assert_eq!(
                count(html, &format!("id=\"{lane}-{cluster}\"")),
                1,
                "lane {lane}-{cluster}"
            );
        }
    }
    for lane in ["id=\"lag\"", "id=\"users\""] {
        assert_eq!(count(html, lane), 1, "lane {lane}");
    }
    assert!(
        html.len() < max,
        "the page is {} bytes (limit {max})",
        html.len()
    );
}

#[test]
fn a_passing_run_has_no_violation_marker() {
    let scenario = scenario("primary-outage-and-failback");
    let (html, verdict, events) = page(&scenario, 1, Mutation::None);
    assert!(verdict.violations.is_empty(), "{:?}", verdict.violations);
    assert_well_formed(&html, &scenario, 1, trace::hash(&events), MAX_PAGE);
    assert!(html.contains("all invariants hold"));
    assert_eq!(count(&html, "class=\"violation\""), 0);
    assert_eq!(count(&html, "class=\"vnum\""), 0);
    // The story: the crash of a, one failover to b in epoch 2, the first alarm.
    assert_eq!(count(&html, "<g class=\"fault\">"), 1);
    assert!(html.contains(">crash a</text>"));
    assert!(html.contains("e2 · primary b"));
    assert!(html.contains("#1 first alarm: a failed"));
    assert!(html.contains("failover 0."), "the failover phase band");
    assert!(html.contains("1 failover ·"));
}

#[test]
fn a_broken_run_marks_each_timed_violation() {
    let scenario = scenario("controller-isolated-from-primary");
    let (html, verdict, events) = page(&scenario, 2, Mutation::NoFencing);
    assert!(
        verdict
            .violations
            .iter()
            .any(|v| v.invariant == "single-writer"),
        "the fencing-off mutant must break single-writer: {:?}",
        verdict.violations
    );
    assert_well_formed(&html, &scenario, 2, trace::hash(&events), MAX_PAGE);
    let timed = verdict.violations.iter().filter(|v| v.at.is_some()).count();
    assert!(timed > 0, "no violation carries a time");
    let markers = count(&html, "class=\"violation\"");
    assert!(
        (1..=timed).contains(&markers),
        "{markers} markers for {timed} timed violations"
    );
    assert!(html.contains(&format!("{} violations</span>", verdict.violations.len())));
    // Every violation is listed, its message escaped.
    assert_eq!(count(&html, "<li id=\"v"), verdict.violations.len());
    for v in &verdict.violations {
        assert!(html.contains(&standby_sim::html::escape(&v.message)));
    }
    // The partition's description has a '<->': it must appear escaped, never raw.
    assert!(html.contains("&lt;-&gt;"), "the partition label, escaped");
    assert!(!html.contains("<->"), "a raw '<' from the trace");
}

#[test]
fn messages_and_names_are_escaped() {
    let mut scenario = scenario("primary-outage-and-failback");
    scenario.name = "<b>bold</b> & \"quoted\"".into();
    let events = vec![
        (
            Time(1_000_000),
            Event::Fault {
                what: "partition <a> <-> 'b'".into(),
                healed: false,
                after: None,
            },
        ),
        (
            Time(2_000_000),
            Event::Fault {
                what: "partition <a> <-> 'b'".into(),
                healed: true,
                after: None,
            },
        ),
    ];
    let verdict = Verdict {
        violations: vec![
            Violation {
                invariant: "single-writer",
                message: "<script>alert(1)</script> & <img src=x>".into(),
                at: Some(Time(1_500_000)),
            },
            Violation {
                invariant: "convergence",
                message: "no time <here>".into(),
                at: None,
            },
        ],
        ..Verdict::default()
    };
    let html = render(&scenario, 7, &events, &verdict, 0xfeed);
    assert!(!html.contains("<script"));
    assert!(!html.contains("<img"));
    assert!(!html.contains("<b>bold"));
    assert!(!html.contains("<a>"));
    assert!(!html.contains("<here>"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;img src=x&gt;"));
    assert!(html.contains("&lt;b&gt;bold&lt;/b&gt; &amp; &quot;quoted&quot;"));
    assert!(html.contains("partition &lt;a&gt; &lt;-&gt; &#39;b&#39;"));
    assert!(html.contains("no time &lt;here&gt;"));
    // One timed violation: one marker; the untimed one is only listed.
    assert_eq!(count(&html, "class=\"violation\""), 1);
    assert_eq!(count(&html, "<li id=\"v"), 2);
    assert!(html.contains("not on the chart"));
    assert!(html.contains("000000000000feed"));
}

#[test]
fn a_wide_run_stays_small() {
    // 64 nodes per cluster, 1,000 users, 10 s; 33 of a's 64 nodes crash (31/64 <= 0.5).
    let nodes: Vec<String> = (0..33).map(|i| format!("\"a/{i}\"")).collect();
    let text = format!(
        "name = \"wide-64x1000\"\nduration_s = 10\n\n[topology]\nnodes_per_cluster = 64\n\
         users = 1000\n\n[[faults]]\nkind = \"crash\"\nnodes = [{}]\nat_ms = 3000\n\
         duration_ms = 4000\n\n[expect]\nconverge = false\n",
        nodes.join(", ")
    );
    let scenario =
        Scenario::parse(Path::new("wide-64x1000.toml"), &text).unwrap_or_else(|e| panic!("{e}"));
    let (html, verdict, events) = page(&scenario, 1, Mutation::None);
    let accepted = (events.iter())
        .filter(|(_, e)| {
            matches!(
                e,
                Event::Node {
                    event: standby::node::NodeEvent::Accepted(_),
                    ..
                }
            )
        })
        .count();
    assert!(accepted > 10_000, "only {accepted} writes: not a wide run");
    // However many writes and users, the page stays about the size of a small run's.
    assert_well_formed(&html, &scenario, 1, trace::hash(&events), 200 * 1024);
    assert!(html.contains(">crash a/0 a/1"), "the crash, labelled");
    let timed = verdict.violations.iter().filter(|v| v.at.is_some()).count();
    assert!(count(&html, "class=\"violation\"") <= timed);
    // Bounded element count: no element per write, user or node.
    let elements = count(&html, "<") - count(&html, "</");
    assert!(elements < 1500, "{elements} elements");
}
