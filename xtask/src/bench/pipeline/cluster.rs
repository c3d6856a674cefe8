//! `cargo xtask bench pipeline --cluster`: parts A, B and D on the single
//! node and on cluster mode's servers in the same run.
//!
//! Each round runs every chosen part once on each target, part by part; the
//! target that goes first alternates round by round (round 1 single node
//! first, round 2 cluster first, …), so a drift of the machine's load over
//! the run falls on both alike. Each call of a part is one round of it, with
//! topics and databases of its own (`…-c<part><round>` on the cluster). The
//! report shows, for every figure, the single node's median, the cluster's
//! median and cluster ÷ single node, then each target's ours ÷ baseline table.
//!
//! The schedule, the merging of rounds and the report are pure and tested
//! here; the measuring is the parts' own code.

use std::fmt::Write as _;

use anyhow::Result;

use super::{
    Ctx, Target,
    report::{Case, Period, Report, Unit, periods_markdown},
};
use crate::{
    bench::{
        report::{Meta, ms, text_table},
        stats::{Distribution, median, ratio},
    },
    ui,
};

/// The block of `BENCHMARKS.md` a `--cluster` run owns.
pub const BLOCK: &str = "bench:pipeline-cluster";
pub const HEADING: &str = "Pipeline throughput, cluster against single node (`cargo xtask bench pipeline --cluster`)";

/// Part letters by index of `Plan::parts`.
const PARTS: [&str; 3] = ["A", "B", "D"];

/// One call of a part: (round, index of the part in `Plan::parts`, target).
pub type Slot = (usize, usize, Target);

/// Every call of a run, in order: round by round, part by part, both targets,
/// the single node first in odd rounds and the cluster first in even ones.
pub fn schedule(rounds: usize, parts: [bool; 3]) -> Vec<Slot> {
    let mut out = Vec::new();
    for round in 1..=rounds {
        let order = if round % 2 == 1 { [Target::Single, Target::Cluster] } else { [Target::Cluster, Target::Single] };
        for (part, on) in parts.iter().enumerate() {
            if *on {
                out.extend(order.iter().map(|target| (round, part, *target)));
            }
        }
    }
    out
}

/// Adds one call's cases to a target's: figures of the same case (by name)
/// are appended as further rounds; a reason for a missing figure is kept.
pub fn merge(into: &mut Vec<Case>, cases: Vec<Case>) {
    for case in cases {
        match into.iter_mut().find(|c| c.name == case.name) {
            Some(known) => {
                known.ours.extend(case.ours);
                known.baseline.extend(case.baseline);
                if known.missing.is_none() {
                    known.missing = case.missing;
                }
            }
            None => into.push(case),
        }
    }
}

/// What a `--cluster` run measured, per target.
#[derive(Debug, Default)]
pub struct Measured {
    pub single: Vec<Case>,
    pub cluster: Vec<Case>,
    pub single_visible_ms: Vec<f64>,
    pub cluster_visible_ms: Vec<f64>,
}

/// Runs the [`schedule`]; a call that fails leaves its figures out (with the
/// reason, in the notes) and the run goes on.
pub async fn measure(ctx: &mut Ctx<'_>) -> Result<Measured> {
    let plan = ctx.plan.clone();
    let mut out = Measured::default();
    for (round, part, target) in schedule(plan.rounds, plan.parts) {
        ui::line(format!("• round {round} of {}: part {} on the {}", plan.rounds, PARTS[part], target.name()));
        ctx.target = target;
        ctx.first_round = round;
        ctx.plan.rounds = 1;
        ctx.plan.parts = [false; 3];
        ctx.plan.parts[part] = true;
        let periods_before = ctx.periods.len();
        let notes_before = ctx.notes.len();
        let (cases, visible) = super::measure(ctx).await?;
        for period in &mut ctx.periods[periods_before..] {
            period.name = format!("[{}] {}", target.name(), period.name);
        }
        for note in &mut ctx.notes[notes_before..] {
            *note = format!("[{}, round {round}] {note}", target.name());
        }
        let cases: Vec<Case> = cases.into_iter().filter(|c| !c.name.starts_with("C ")).collect();
        match target {
            Target::Single => {
                merge(&mut out.single, cases);
                out.single_visible_ms.extend(visible);
            }
            Target::Cluster => {
                merge(&mut out.cluster, cases);
                out.cluster_visible_ms.extend(visible);
            }
        }
    }
    ctx.plan = plan;
    Ok(out)
}

/// The report of a `--cluster` run.
#[derive(Debug, Default)]
pub struct ClusterReport {
    pub meta: Meta,
    pub measured: Measured,
    pub peak_rss: Vec<(String, f64)>,
    pub periods: Vec<Period>,
}

/// One line of the comparison: a figure on both targets.
#[derive(Debug, Clone, PartialEq)]
pub struct Compared {
    pub name: String,
    pub unit: Unit,
    pub single: Vec<f64>,
    pub cluster: Vec<f64>,
}

impl Compared {
    /// Median on the cluster ÷ median on the single node.
    pub fn ratio(&self) -> Option<f64> {
        ratio(median(&self.cluster)?, median(&self.single)?)
    }

    fn cells(&self) -> [String; 4] {
        [
            self.name.clone(),
            self.unit.show(median(&self.single)),
            self.unit.show(median(&self.cluster)),
            self.ratio().map_or("-".to_string(), |r| format!("{r:.2}×")),
        ]
    }
}

/// Every case's own figure, then each distinct baseline's, on both targets.
pub fn compare(single: &[Case], cluster: &[Case]) -> Vec<Compared> {
    let mut out: Vec<Compared> = Vec::new();
    let find = |cases: &[Case], name: &str| cases.iter().find(|c| c.name == name).cloned();
    let names: Vec<&str> = single.iter().chain(cluster).map(|c| c.name.as_str()).fold(Vec::new(), |mut names, name| {
        if !names.contains(&name) {
            names.push(name);
        }
        names
    });
    for name in &names {
        let (s, c) = (find(single, name), find(cluster, name));
        let unit = s.as_ref().or(c.as_ref()).map_or(Unit::PerSecond, |case| case.unit);
        out.push(Compared {
            name: name.to_string(),
            unit,
            single: s.map(|c| c.ours).unwrap_or_default(),
            cluster: c.map(|c| c.ours).unwrap_or_default(),
        });
    }
    for name in &names {
        let (s, c) = (find(single, name), find(cluster, name));
        let Some(baseline_name) = s.as_ref().or(c.as_ref()).map(|c| c.baseline_name.clone()) else { continue };
        if baseline_name.is_empty() || out.iter().any(|line| line.name == format!("baseline: {baseline_name}")) {
            continue;
        }
        let unit = s.as_ref().or(c.as_ref()).map_or(Unit::PerSecond, |case| case.unit);
        out.push(Compared {
            name: format!("baseline: {baseline_name}"),
            unit,
            single: s.map(|c| c.baseline).unwrap_or_default(),
            cluster: c.map(|c| c.baseline).unwrap_or_default(),
        });
    }
    out
}

const HEADER: [&str; 4] = ["figure", "single node", "cluster", "cluster ÷ single node"];

impl ClusterReport {
    fn target_report(&self, target: Target) -> Report {
        let cases = match target {
            Target::Single => self.measured.single.clone(),
            Target::Cluster => self.measured.cluster.clone(),
        };
        Report { meta: self.meta.clone(), cases, ..Report::default() }
    }

    /// The terminal tables: the comparison, then each target's ours ÷ baseline.
    pub fn table(&self) -> String {
        let rows: Vec<[String; 4]> =
            compare(&self.measured.single, &self.measured.cluster).iter().map(Compared::cells).collect();
        let mut out = String::new();
        let _ = writeln!(out, "\nCluster against single node (medians of the rounds)");
        out.push_str(&text_table(HEADER, &rows));
        for target in [Target::Single, Target::Cluster] {
            let table = self.target_report(target).table();
            let _ = write!(
                out,
                "{}",
                table.replace("Pipeline throughput (", &format!("{}: pipeline throughput (", target.name()))
            );
        }
        out
    }

    /// The generated block of `BENCHMARKS.md` (without its markers).
    pub fn markdown(&self) -> String {
        let m = &self.meta;
        let mut out = m.preamble();
        let _ = writeln!(out, "\nCluster against single node (medians of the rounds):\n");
        let _ = writeln!(out, "| {} |", HEADER.join(" | "));
        let _ = writeln!(out, "|---|---|---|---|");
        let compared = compare(&self.measured.single, &self.measured.cluster);
        for line in &compared {
            let _ = writeln!(out, "| {} |", line.cells().join(" | "));
        }
        for target in [Target::Single, Target::Cluster] {
            let report = self.target_report(target);
            let _ = writeln!(
                out,
                "\nOn the {}, ours against its baseline (as `bench pipeline` shows it):\n",
                target.name()
            );
            let _ = writeln!(out, "| case | ours | baseline | ratio | goal | verdict |");
            let _ = writeln!(out, "|---|---|---|---|---|---|");
            for case in &report.cases {
                let cells = case_cells(case);
                let _ = writeln!(out, "| {} |", cells.join(" | "));
            }
        }
        let _ = writeln!(out, "\nPer round (round 1 single node first, round 2 cluster first, …):\n");
        let _ = writeln!(out, "| figure | single node, per round | cluster, per round |");
        let _ = writeln!(out, "|---|---|---|");
        for line in &compared {
            let show = |values: &[f64]| -> String {
                let shown: Vec<String> = values.iter().map(|v| line.unit.show(Some(*v))).collect();
                if shown.is_empty() { "-".to_string() } else { shown.join(", ") }
            };
            let _ = writeln!(out, "| {} | {} | {} |", line.name, show(&line.single), show(&line.cluster));
        }
        for (target, samples) in
            [(Target::Single, &self.measured.single_visible_ms), (Target::Cluster, &self.measured.cluster_visible_ms)]
        {
            if let Some(d) = Distribution::of(samples) {
                let _ = writeln!(
                    out,
                    "\nPOST → queryable on the {}, all rounds ({} probes): p50 {}, p90 {}, p99 {}, max {}, min {}.",
                    target.name(),
                    d.count,
                    ms(Some(d.p50)),
                    ms(Some(d.p90)),
                    ms(Some(d.p99)),
                    ms(Some(d.max)),
                    ms(Some(d.min))
                );
            }
        }
        if !self.peak_rss.is_empty() {
            let _ = writeln!(out, "\nPeak RSS: {}.", {
                let shown: Vec<String> = self
                    .peak_rss
                    .iter()
                    .map(|(name, bytes)| format!("{name} {}", Unit::Bytes.show(Some(*bytes))))
                    .collect();
                shown.join(", ")
            });
        }
        out.push_str(&periods_markdown(&self.periods, m.cores));
        out
    }
}

/// A case's row as `bench pipeline`'s table shows it.
fn case_cells(case: &Case) -> [String; 6] {
    let ours = match (&case.missing, case.ours()) {
        (Some(why), None) => why.clone(),
        (_, value) => case.unit.show(value),
    };
    [
        case.name.clone(),
        ours,
        case.unit.show(case.baseline()),
        case.ratio().map_or("-".to_string(), |r| format!("{r:.2}×")),
        case.goal.show(),
        case.verdict().show().to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::pipeline::report::Goal;

    #[test]
    fn rounds_alternate_the_target_that_goes_first() {
        let slots = schedule(2, [true, false, true]);
        assert_eq!(
            slots,
            vec![
                (1, 0, Target::Single),
                (1, 0, Target::Cluster),
                (1, 2, Target::Single),
                (1, 2, Target::Cluster),
                (2, 0, Target::Cluster),
                (2, 0, Target::Single),
                (2, 2, Target::Cluster),
                (2, 2, Target::Single),
            ]
        );
        assert!(schedule(3, [false; 3]).is_empty());
        assert_eq!(schedule(3, [false, true, false]).len(), 6);
    }

    fn case(name: &str, ours: &[f64], baseline: &[f64]) -> Case {
        Case {
            ours: ours.to_vec(),
            baseline: baseline.to_vec(),
            baseline_name: "raw".into(),
            ..Case::new(name, Unit::PerSecond, Goal::RatioAtLeast(0.5))
        }
    }

    #[test]
    fn rounds_merge_by_case_name() {
        let mut cases = Vec::new();
        merge(&mut cases, vec![case("A", &[1.0], &[10.0])]);
        let mut failed = case("A", &[], &[]);
        failed.missing = Some("failed".into());
        merge(&mut cases, vec![case("A", &[2.0], &[20.0]), failed, case("B", &[5.0], &[])]);
        assert_eq!(cases.len(), 2);
        assert_eq!((cases[0].ours.clone(), cases[0].baseline.clone()), (vec![1.0, 2.0], vec![10.0, 20.0]));
        assert_eq!(cases[0].missing.as_deref(), Some("failed"));
        assert_eq!(cases[1].ours, vec![5.0]);
    }

    #[test]
    fn the_comparison_is_cluster_over_single_node_for_ours_and_baselines() {
        let single = vec![case("A gateway", &[100.0, 120.0, 110.0], &[300.0])];
        let cluster = vec![case("A gateway", &[50.0, 55.0, 60.0], &[100.0])];
        let lines = compare(&single, &cluster);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].ratio(), Some(0.5));
        assert_eq!(lines[1].name, "baseline: raw");
        assert!((lines[1].ratio().unwrap() - 1.0 / 3.0).abs() < 1e-9);
        let report = ClusterReport {
            meta: Meta { command: "cargo xtask bench pipeline --cluster".into(), ..Meta::default() },
            measured: Measured { single, cluster, ..Measured::default() },
            ..ClusterReport::default()
        };
        let md = report.markdown();
        assert!(md.contains("| A gateway | 110/s | 55/s | 0.50× |"), "{md}");
        assert!(md.contains("| baseline: raw | 300/s | 100/s | 0.33× |"), "{md}");
        assert!(md.contains("| A gateway | 110/s | 300/s | 0.37× | ≥ 0.5× | NOT MET |"), "{md}");
        assert!(md.contains("| A gateway | 100/s, 120/s, 110/s | 50/s, 55/s, 60/s |"), "{md}");
        assert!(report.table().contains("cluster ÷ single node"));
    }
}
