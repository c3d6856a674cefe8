//! What `cargo xtask bench realtime` measured, and how it is shown: a table
//! on the terminal and a Markdown block in `BENCHMARKS.md` (between markers,
//! so the prose around it stays as people wrote it).

use std::fmt::Write as _;

use super::stats::{Distribution, Spread, ratio};

/// The product's targets (issue 5, point 5).
pub const FEED_P99_TARGET_MS: f64 = 1_000.0;
pub const CHANGE_TARGET_MS: f64 = 2_000.0;

/// Where the run happened and with what.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Meta {
    pub command: String,
    /// UTC, `YYYY-MM-DD HH:MM`.
    pub date: String,
    pub commit: String,
    pub cpu_model: String,
    pub cores: usize,
    pub ram_gib: f64,
    pub rustc: String,
    /// `release` or `debug`, and whose services (`own` or `the local stack's`).
    pub profile: String,
    pub services: String,
    /// Settings worth knowing: rate, durations, probes, service overrides.
    pub config: Vec<(String, String)>,
    /// Notes on the conditions (other load on the machine, shortened runs).
    pub notes: Vec<String>,
}

impl Meta {
    /// The opening of a `BENCHMARKS.md` block: when and at which commit, the
    /// command, the machine, then the settings and notes (each line ends in
    /// a newline).
    pub fn preamble(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "Measured {} UTC at commit {}:\n", self.date, self.commit);
        let _ = writeln!(out, "```\n{}\n```\n", self.command);
        let _ = writeln!(
            out,
            "Machine: {} cores ({}), {:.0} GiB RAM; {}; {} build of the services ({}).",
            self.cores, self.cpu_model, self.ram_gib, self.rustc, self.profile, self.services
        );
        if !self.config.is_empty() {
            let config: Vec<String> = self.config.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = writeln!(out, "Settings: {}.", config.join(", "));
        }
        for note in &self.notes {
            let _ = writeln!(out, "Note: {note}");
        }
        out
    }
}

/// A terminal table: `header`, a rule, then `rows`, columns two spaces
/// apart, names (the first column) left-aligned and figures right-aligned.
pub fn text_table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String; N]| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (cell, width))| {
                let pad = " ".repeat(width - cell.chars().count());
                if i == 0 { format!("{cell}{pad}") } else { format!("{pad}{cell}") }
            })
            .collect();
        padded.join("  ").trim_end().to_string()
    };
    let mut out = String::new();
    let _ = writeln!(out, "{}", line(&header.map(String::from)));
    let _ = writeln!(out, "{}", widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  "));
    for row in rows {
        let _ = writeln!(out, "{}", line(row));
    }
    out
}

/// The background traffic of a loaded phase, from the generator's summary
/// and the gateway's counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Background {
    pub target_rate: f64,
    /// Events/s the gateway accepted during the measured period, probes excluded.
    pub measured_rate: f64,
    /// The generator's whole run (warm-up included).
    pub generator_rate: f64,
    pub rejected: u64,
    /// Given up or never sent.
    pub lost: u64,
    pub retries: u64,
    pub post_p99_ms: Option<f64>,
    pub max_lag_ms: i64,
}

/// Means over the measured period, from the services' `/metrics`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Internals {
    /// Events per processor batch.
    pub batch_events: Option<f64>,
    /// ClickHouse insert + offset commit of one batch.
    pub flush_ms: Option<f64>,
    /// Age of a batch's oldest event when stored (batch wait + flush).
    pub store_age_ms: Option<f64>,
    /// The hub's computation of the figures, per tick.
    pub hub_compute_ms: Option<f64>,
    /// The gateway's wait for Kafka's acknowledgement, per request.
    pub produce_ms: Option<f64>,
    /// Messages the hub dropped for slow clients.
    pub hub_dropped: f64,
    /// Facts and views the hub's window held at the end.
    pub window_facts: Option<f64>,
    pub window_views: Option<f64>,
}

/// One change probe: a burst posted, seen in the pushed `active_streams`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Change {
    /// `true`: views opened (`video_start`); `false`: views ended (`video_complete`).
    pub opened: bool,
    /// From the POST's return to the first `realtime_metrics` showing the whole burst.
    pub ms: f64,
}

/// One phase: the baseline (no background traffic) or a loaded run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Phase {
    pub name: String,
    pub measured_secs: f64,
    /// Feed latency samples (ms): `POST /api/events` returned → `analytics_event` received.
    pub feed_ms: Vec<f64>,
    pub probes_sent: usize,
    /// Probes whose POST failed (not 202).
    pub probes_failed: usize,
    /// Probes accepted but never received within the grace period.
    pub probes_lost: usize,
    /// Round trips of the probes' POSTs (ms).
    pub post_ms: Vec<f64>,
    pub changes: Vec<Change>,
    /// Bursts never reflected within the deadline (or whose POST failed).
    pub changes_missed: usize,
    pub background: Option<Background>,
    /// (process, cores used).
    pub cpu: Vec<(String, f64)>,
    /// Cores busy on the whole machine.
    pub machine_cores: Option<f64>,
    pub internals: Internals,
    /// `analytics_event` messages/s an unfiltered (sampled) dashboard client got.
    pub dashboard_events_per_sec: f64,
}

impl Phase {
    pub fn feed(&self) -> Option<Distribution> {
        Distribution::of(&self.feed_ms)
    }

    pub fn change(&self) -> Option<Distribution> {
        Distribution::of(&self.changes.iter().map(|c| c.ms).collect::<Vec<_>>())
    }

    pub fn post(&self) -> Option<Distribution> {
        Distribution::of(&self.post_ms)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub meta: Meta,
    pub baseline: Phase,
    pub runs: Vec<Phase>,
}

/// The figures across runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Totals {
    pub feed_p50: Option<Spread>,
    pub feed_p99: Option<Spread>,
    pub feed_max: Option<f64>,
    pub change_p50: Option<Spread>,
    pub change_max: Option<f64>,
    pub feed_p50_ratio: Option<f64>,
    pub feed_p99_ratio: Option<f64>,
    pub change_p50_ratio: Option<f64>,
    pub background_rate: Option<Spread>,
    pub lost: usize,
    pub missed: usize,
    pub rejected: u64,
}

impl Report {
    pub fn totals(&self) -> Totals {
        let per_run = |f: &dyn Fn(&Phase) -> Option<f64>| -> Vec<f64> { self.runs.iter().filter_map(f).collect() };
        let feed_p50 = Spread::of(&per_run(&|r| r.feed().map(|d| d.p50)));
        let feed_p99 = Spread::of(&per_run(&|r| r.feed().map(|d| d.p99)));
        let change_p50 = Spread::of(&per_run(&|r| r.change().map(|d| d.p50)));
        let base_feed = self.baseline.feed();
        let base_change = self.baseline.change();
        Totals {
            feed_p50,
            feed_p99,
            feed_max: per_run(&|r| r.feed().map(|d| d.max)).into_iter().reduce(f64::max),
            change_p50,
            change_max: per_run(&|r| r.change().map(|d| d.max)).into_iter().reduce(f64::max),
            feed_p50_ratio: feed_p50.zip(base_feed).and_then(|(l, b)| ratio(l.median, b.p50)),
            feed_p99_ratio: feed_p99.zip(base_feed).and_then(|(l, b)| ratio(l.median, b.p99)),
            change_p50_ratio: change_p50.zip(base_change).and_then(|(l, b)| ratio(l.median, b.p50)),
            background_rate: Spread::of(&per_run(&|r| r.background.as_ref().map(|b| b.measured_rate))),
            lost: self.runs.iter().chain([&self.baseline]).map(|r| r.probes_lost + r.probes_failed).sum(),
            missed: self.runs.iter().chain([&self.baseline]).map(|r| r.changes_missed).sum(),
            rejected: self.runs.iter().filter_map(|r| r.background.as_ref()).map(|b| b.rejected).sum(),
        }
    }

    /// Whether the loaded runs meet the targets: the median of the per-run
    /// feed p99s under 1 s, every change shown within 2 s, nothing lost.
    pub fn verdict(&self) -> (bool, bool) {
        let t = self.totals();
        let feed = t.feed_p99.is_some_and(|s| s.median < FEED_P99_TARGET_MS) && t.lost == 0;
        let change = t.change_max.is_some_and(|m| m < CHANGE_TARGET_MS) && t.missed == 0;
        (feed, change)
    }

    /// The terminal report.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "\nRealtime latency ({}; {} services)", self.meta.profile, self.meta.services);
        let _ = writeln!(
            out,
            "{:<9} {:>8} {:>6} {:>7} {:>7} {:>7} {:>7} | {:>5} {:>7} {:>7} {:>7} | {:>9}",
            "phase", "bg ev/s", "probes", "p50", "p90", "p99", "max", "chg", "p50", "p90", "max", "cpu cores"
        );
        for phase in [&self.baseline].into_iter().chain(&self.runs) {
            let feed = phase.feed();
            let change = phase.change();
            let rate = phase.background.as_ref().map_or("0".to_string(), |b| format!("{:.0}", b.measured_rate));
            let _ = writeln!(
                out,
                "{:<9} {:>8} {:>6} {:>7} {:>7} {:>7} {:>7} | {:>5} {:>7} {:>7} {:>7} | {:>9}",
                phase.name,
                rate,
                feed.map_or(0, |d| d.count),
                ms(feed.map(|d| d.p50)),
                ms(feed.map(|d| d.p90)),
                ms(feed.map(|d| d.p99)),
                ms(feed.map(|d| d.max)),
                change.map_or(0, |d| d.count),
                ms(change.map(|d| d.p50)),
                ms(change.map(|d| d.p90)),
                ms(change.map(|d| d.max)),
                phase.machine_cores.map_or("-".to_string(), |c| format!("{c:.2}")),
            );
        }
        let _ = writeln!(
            out,
            "(feed: POST /api/events returned → analytics_event on the WebSocket; chg: a burst of views \
             opened or ended → realtime_metrics showing it; ms)"
        );
        let t = self.totals();
        let _ = writeln!(
            out,
            "\nfeed p99, median of {} runs: {} (runs {}–{}), {} the baseline's; p50 {} ({})",
            self.runs.len(),
            ms(t.feed_p99.map(|s| s.median)),
            ms(t.feed_p99.map(|s| s.min)),
            ms(t.feed_p99.map(|s| s.max)),
            times(t.feed_p99_ratio),
            ms(t.feed_p50.map(|s| s.median)),
            times(t.feed_p50_ratio),
        );
        let _ = writeln!(
            out,
            "change shown, median of per-run medians: {} ({} the baseline's); slowest of all: {}",
            ms(t.change_p50.map(|s| s.median)),
            times(t.change_p50_ratio),
            ms(t.change_max),
        );
        let _ = writeln!(
            out,
            "probes lost or failed: {}; bursts never shown: {}; background events rejected: {}",
            t.lost, t.missed, t.rejected
        );
        let (feed_ok, change_ok) = self.verdict();
        let _ = writeln!(
            out,
            "targets: feed p99 < 1 s: {}; change shown within 2 s: {}",
            if feed_ok { "met" } else { "NOT MET" },
            if change_ok { "met" } else { "NOT MET" }
        );
        for note in &self.meta.notes {
            let _ = writeln!(out, "note: {note}");
        }
        for phase in [&self.baseline].into_iter().chain(&self.runs) {
            let _ = writeln!(out, "\n{}: {}", phase.name, where_time_goes(phase));
            if !phase.cpu.is_empty() {
                let cpu: Vec<String> = phase.cpu.iter().map(|(name, c)| format!("{name} {c:.2}")).collect();
                let _ = writeln!(out, "  cpu (cores): {}", cpu.join(", "));
            }
            if let Some(b) = &phase.background {
                let _ = writeln!(out, "  background: {}", background_line(b));
            }
        }
        out
    }

    /// The generated block of `BENCHMARKS.md` (without its markers).
    pub fn markdown(&self) -> String {
        let m = &self.meta;
        let t = self.totals();
        let mut out = m.preamble();
        let (feed_ok, change_ok) = self.verdict();
        let runs = self.runs.len();
        let _ = writeln!(out, "\n| figure | loaded (median of {runs} runs) | runs (min–max) | baseline | ratio |");
        let _ = writeln!(out, "|---|---|---|---|---|");
        let base_feed = self.baseline.feed();
        let base_change = self.baseline.change();
        let row = |out: &mut String, name: &str, spread: Option<Spread>, base: Option<f64>, ratio: Option<f64>| {
            let _ = writeln!(
                out,
                "| {name} | {} | {}–{} | {} | {} |",
                ms(spread.map(|s| s.median)),
                ms(spread.map(|s| s.min)),
                ms(spread.map(|s| s.max)),
                ms(base),
                times(ratio)
            );
        };
        row(&mut out, "feed latency p50", t.feed_p50, base_feed.map(|d| d.p50), t.feed_p50_ratio);
        row(&mut out, "**feed latency p99**", t.feed_p99, base_feed.map(|d| d.p99), t.feed_p99_ratio);
        row(&mut out, "change shown, median", t.change_p50, base_change.map(|d| d.p50), t.change_p50_ratio);
        let _ = writeln!(
            out,
            "| change shown, slowest | {} (all runs) | | {} | |",
            ms(t.change_max),
            ms(base_change.map(|d| d.max))
        );
        let _ = writeln!(
            out,
            "| background events/s accepted | {} | {}–{} | 0 | |",
            t.background_rate.map_or("-".to_string(), |s| format!("{:.0}", s.median)),
            t.background_rate.map_or("-".to_string(), |s| format!("{:.0}", s.min)),
            t.background_rate.map_or("-".to_string(), |s| format!("{:.0}", s.max)),
        );
        let _ = writeln!(
            out,
            "\nTargets: feed p99 under 1 s: **{}**; every change shown within 2 s: **{}**. Probes lost or \
             failed: {}; bursts never shown: {}; background events rejected: {}.",
            if feed_ok { "met" } else { "not met" },
            if change_ok { "met" } else { "not met" },
            t.lost,
            t.missed,
            t.rejected
        );

        let _ = writeln!(out, "\nPer phase (ms; feed = POST returned → `analytics_event` received):\n");
        let _ = writeln!(
            out,
            "| phase | bg events/s | feed n | feed p50 | p90 | p99 | max | probe POST p50 / p99 | changes n | \
             change p50 | p90 | max | machine cores busy |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for phase in [&self.baseline].into_iter().chain(&self.runs) {
            let feed = phase.feed();
            let change = phase.change();
            let post = phase.post();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} / {} | {} | {} | {} | {} | {} |",
                phase.name,
                phase.background.as_ref().map_or("0".to_string(), |b| format!("{:.0}", b.measured_rate)),
                feed.map_or(0, |d| d.count),
                ms(feed.map(|d| d.p50)),
                ms(feed.map(|d| d.p90)),
                ms(feed.map(|d| d.p99)),
                ms(feed.map(|d| d.max)),
                ms(post.map(|d| d.p50)),
                ms(post.map(|d| d.p99)),
                change.map_or(0, |d| d.count),
                ms(change.map(|d| d.p50)),
                ms(change.map(|d| d.p90)),
                ms(change.map(|d| d.max)),
                phase.machine_cores.map_or("-".to_string(), |c| format!("{c:.2}")),
            );
        }
        let _ = writeln!(
            out,
            "\nWhere the time goes (means over each measured period from the services' `/metrics`; the hub's \
             window at its end; CPU from `/proc`, in cores):\n"
        );
        let _ = writeln!(
            out,
            "| phase | gateway produce | processor batch | oldest event stored after | of which insert + commit | \
             hub compute per tick | hub window facts / views | dashboard feed | cores used |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
        for phase in [&self.baseline].into_iter().chain(&self.runs) {
            let i = &phase.internals;
            let cpu: Vec<String> = phase.cpu.iter().map(|(name, c)| format!("{name} {c:.2}")).collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} events | {} | {} | {} | {} / {} | {:.1} events/s | {} |",
                phase.name,
                ms(i.produce_ms),
                count(i.batch_events),
                ms(i.store_age_ms),
                ms(i.flush_ms),
                ms(i.hub_compute_ms),
                count(i.window_facts),
                count(i.window_views),
                phase.dashboard_events_per_sec,
                cpu.join(", ")
            );
        }
        if self.runs.iter().any(|r| r.background.is_some()) {
            let _ = writeln!(out, "\nBackground traffic (the generator's summary; accepted = the gateway's count):\n");
            let _ = writeln!(
                out,
                "| run | target | accepted while measured | over the generator's run | rejected | lost | retries | \
                 generator POST p99 | max lag |"
            );
            let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
            for phase in &self.runs {
                let Some(b) = &phase.background else { continue };
                let _ = writeln!(
                    out,
                    "| {} | {:.0}/s | {:.0}/s | {:.0}/s | {} | {} | {} | {} | {:.1} s |",
                    phase.name,
                    b.target_rate,
                    b.measured_rate,
                    b.generator_rate,
                    b.rejected,
                    b.lost,
                    b.retries,
                    ms(b.post_p99_ms),
                    b.max_lag_ms as f64 / 1000.0
                );
            }
        }
        out
    }
}

fn count(value: Option<f64>) -> String {
    value.map_or("-".to_string(), |v| format!("{v:.0}"))
}

fn where_time_goes(phase: &Phase) -> String {
    let i = &phase.internals;
    let mut parts = vec![
        format!("gateway produce {}", ms(i.produce_ms)),
        format!(
            "processor batch {} events, oldest event stored after {} (insert + commit {})",
            i.batch_events.map_or("-".to_string(), |b| format!("{b:.0}")),
            ms(i.store_age_ms),
            ms(i.flush_ms)
        ),
        format!("hub compute {} per tick", ms(i.hub_compute_ms)),
    ];
    if i.hub_dropped > 0.0 {
        parts.push(format!("hub dropped {:.0} messages", i.hub_dropped));
    }
    parts.push(format!("dashboard client got {:.1} events/s (sampled)", phase.dashboard_events_per_sec));
    parts.join(", ")
}

fn background_line(b: &Background) -> String {
    format!(
        "target {:.0}/s, {:.0}/s accepted while measured ({:.0}/s over the generator's run), {} rejected, {} \
         lost, {} retries, generator POST p99 {}, max lag {:.1} s",
        b.target_rate,
        b.measured_rate,
        b.generator_rate,
        b.rejected,
        b.lost,
        b.retries,
        ms(b.post_p99_ms),
        b.max_lag_ms as f64 / 1000.0
    )
}

/// `12.3 ms`, `123 ms`, `1.23 s`, or `-`.
pub fn ms(value: Option<f64>) -> String {
    match value {
        None => "-".to_string(),
        Some(v) if v.abs() >= 1000.0 => format!("{:.2} s", v / 1000.0),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0} ms"),
        Some(v) => format!("{v:.1} ms"),
    }
}

fn times(value: Option<f64>) -> String {
    value.map_or("-".to_string(), |v| format!("×{v:.2}"))
}

/// Replaces the text between `<!-- {name}:start -->` and `<!-- {name}:end -->`
/// in `doc` with `block`; when the markers are missing, appends a section
/// titled `heading` holding them.
pub fn replace_block(doc: &str, name: &str, heading: &str, block: &str) -> String {
    let start = format!("<!-- {name}:start -->");
    let end = format!("<!-- {name}:end -->");
    let block = block.trim_end();
    if let (Some(s), Some(e)) = (doc.find(&start), doc.find(&end)) {
        if s < e {
            return format!("{}{start}\n{block}\n{}", &doc[..s], &doc[e..]);
        }
    }
    let mut out = doc.trim_end().to_string();
    if !out.is_empty() {
        out.push_str("\n\n");
    }
    out.push_str(&format!("## {heading}\n\n{start}\n{block}\n{end}\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(name: &str, feed: &[f64], changes: &[f64], rate: Option<f64>) -> Phase {
        Phase {
            name: name.to_string(),
            measured_secs: 60.0,
            feed_ms: feed.to_vec(),
            probes_sent: feed.len(),
            post_ms: vec![2.0; feed.len()],
            changes: changes.iter().map(|&ms| Change { opened: true, ms }).collect(),
            background: rate.map(|r| Background { target_rate: 5000.0, measured_rate: r, ..Background::default() }),
            machine_cores: Some(1.5),
            ..Phase::default()
        }
    }

    fn report() -> Report {
        Report {
            meta: Meta {
                command: "cargo xtask bench realtime".into(),
                date: "2025-11-28 00:00".into(),
                commit: "abc1234".into(),
                cpu_model: "AMD EPYC".into(),
                cores: 2,
                ram_gib: 23.0,
                rustc: "rustc 1.91.0".into(),
                profile: "release".into(),
                services: "own".into(),
                config: vec![("rate".into(), "5000/s".into())],
                notes: vec![],
            },
            baseline: phase("baseline", &[10.0, 12.0, 14.0, 20.0], &[900.0, 1100.0], None),
            runs: vec![
                phase("run 1", &[20.0, 30.0, 40.0, 100.0], &[1000.0, 1500.0], Some(4990.0)),
                phase("run 2", &[25.0, 35.0, 45.0, 300.0], &[1200.0, 1900.0], Some(5010.0)),
                phase("run 3", &[22.0, 32.0, 42.0, 200.0], &[1100.0, 1300.0], Some(5000.0)),
            ],
        }
    }

    #[test]
    fn totals_take_medians_of_runs_and_ratios_to_the_baseline() {
        let t = report().totals();
        assert_eq!(t.feed_p99.unwrap(), Spread { median: 200.0, min: 100.0, max: 300.0 });
        assert_eq!(t.feed_p50.unwrap().median, 32.0);
        assert_eq!(t.feed_p99_ratio, Some(10.0));
        assert_eq!(t.feed_p50_ratio, Some(32.0 / 12.0));
        assert_eq!(t.change_max, Some(1900.0));
        assert_eq!(t.change_p50.unwrap().median, 1100.0);
        assert_eq!(t.background_rate.unwrap().median, 5000.0);
        assert_eq!(report().verdict(), (true, true));

        let mut slow = report();
        slow.runs[0].changes.push(Change { opened: false, ms: 2500.0 });
        assert_eq!(slow.verdict(), (true, false));
        slow.runs[1].probes_lost = 1;
        assert_eq!(slow.verdict(), (false, false));
    }

    #[test]
    fn table_and_markdown_show_the_figures() {
        let report = report();
        let table = report.table();
        assert!(table.contains("baseline"), "{table}");
        assert!(table.contains("feed p99, median of 3 runs: 200 ms (runs 100 ms–300 ms), ×10.00"), "{table}");
        assert!(table.contains("targets: feed p99 < 1 s: met; change shown within 2 s: met"), "{table}");
        let md = report.markdown();
        assert!(md.contains("| **feed latency p99** | 200 ms | 100 ms–300 ms | 20.0 ms | ×10.00 |"), "{md}");
        assert!(md.contains("| change shown, slowest | 1.90 s (all runs) | | 1.10 s | |"), "{md}");
        assert!(md.contains("Machine: 2 cores (AMD EPYC), 23 GiB RAM"), "{md}");
        assert!(md.contains("| run 2 | 5010 | 4 |"), "{md}");
    }

    #[test]
    fn milliseconds_are_readable() {
        assert_eq!(ms(None), "-");
        assert_eq!(ms(Some(12.345)), "12.3 ms");
        assert_eq!(ms(Some(123.4)), "123 ms");
        assert_eq!(ms(Some(1234.0)), "1.23 s");
        assert_eq!(ms(Some(-3.0)), "-3.0 ms");
        assert_eq!(times(Some(1.5)), "×1.50");
    }

    #[test]
    fn blocks_are_replaced_between_markers_or_appended() {
        let doc = "# Benchmarks\n\nIntro.\n\n## Realtime\n\nMethod.\n\n<!-- bench:realtime:start -->\nold\n\
                   <!-- bench:realtime:end -->\n\nAfter.\n";
        let updated = replace_block(doc, "bench:realtime", "Realtime", "new\nfigures\n");
        assert_eq!(
            updated,
            "# Benchmarks\n\nIntro.\n\n## Realtime\n\nMethod.\n\n<!-- bench:realtime:start -->\nnew\nfigures\n\
             <!-- bench:realtime:end -->\n\nAfter.\n"
        );
        // Idempotent.
        assert_eq!(replace_block(&updated, "bench:realtime", "Realtime", "new\nfigures"), updated);
        let appended = replace_block("# Benchmarks\n", "bench:window", "Window", "x");
        assert_eq!(
            appended,
            "# Benchmarks\n\n## Window\n\n<!-- bench:window:start -->\nx\n<!-- bench:window:end -->\n"
        );
    }
}
