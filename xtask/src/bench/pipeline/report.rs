//! What `cargo xtask bench pipeline` measured, and how it is shown: one table
//! of ours / baseline / ratio / goal / verdict on the terminal, and the same
//! with the per-round figures as a Markdown block of `BENCHMARKS.md`.
//!
//! Pure: no I/O, so the verdicts and the formatting are unit-tested.

use std::fmt::Write as _;

use crate::bench::{
    report::{Meta, ms, text_table},
    stats::{Distribution, median, ratio},
};

/// What a figure counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Events (or rows) per second.
    PerSecond,
    Milliseconds,
    /// Resident memory, in bytes (shown in MiB).
    Bytes,
}

impl Unit {
    pub fn show(self, value: Option<f64>) -> String {
        match (self, value) {
            (_, None) => "-".to_string(),
            (Unit::PerSecond, Some(v)) => format!("{}/s", thousands(v)),
            (Unit::Milliseconds, Some(v)) => ms(Some(v)),
            (Unit::Bytes, Some(v)) => format!("{:.0} MiB", v / (1024.0 * 1024.0)),
        }
    }
}

/// The target a case is held to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    /// ours ÷ baseline at least this.
    RatioAtLeast(f64),
    /// ours at most this many milliseconds.
    AtMostMs(f64),
    /// Shown for information.
    None,
}

impl Goal {
    pub fn show(self) -> String {
        match self {
            Goal::RatioAtLeast(r) => format!("≥ {r}×"),
            Goal::AtMostMs(limit) => format!("≤ {}", ms(Some(limit))),
            Goal::None => "-".to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Met,
    NotMet,
    /// The case has a goal but no figure (it failed or was skipped).
    NotMeasured,
    /// No goal.
    Info,
}

impl Verdict {
    pub fn show(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::NotMet => "NOT MET",
            Verdict::NotMeasured => "not measured",
            Verdict::Info => "-",
        }
    }
}

/// One row of the table: the per-round figures of ours and of its baseline
/// (measured alternately, round by round); the row shows their medians.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub name: String,
    pub unit: Unit,
    pub goal: Goal,
    pub ours: Vec<f64>,
    pub baseline: Vec<f64>,
    /// What the baseline is, for the details (empty: none).
    pub baseline_name: String,
    /// Why the case has no figure (an error, skipped, not built yet).
    pub missing: Option<String>,
}

impl Case {
    pub fn new(name: impl Into<String>, unit: Unit, goal: Goal) -> Self {
        Self {
            name: name.into(),
            unit,
            goal,
            ours: Vec::new(),
            baseline: Vec::new(),
            baseline_name: String::new(),
            missing: None,
        }
    }

    pub fn ours(&self) -> Option<f64> {
        median(&self.ours)
    }

    pub fn baseline(&self) -> Option<f64> {
        median(&self.baseline)
    }

    /// Median of ours ÷ median of the baseline.
    pub fn ratio(&self) -> Option<f64> {
        ratio(self.ours()?, self.baseline()?)
    }

    pub fn verdict(&self) -> Verdict {
        match self.goal {
            Goal::None => Verdict::Info,
            Goal::RatioAtLeast(goal) => match self.ratio() {
                Some(r) if r >= goal => Verdict::Met,
                Some(_) => Verdict::NotMet,
                None => Verdict::NotMeasured,
            },
            Goal::AtMostMs(limit) => match self.ours() {
                Some(v) if v <= limit => Verdict::Met,
                Some(_) => Verdict::NotMet,
                None => Verdict::NotMeasured,
            },
        }
    }

    fn cells(&self) -> [String; 6] {
        let ours = match (&self.missing, self.ours()) {
            (Some(why), None) => why.clone(),
            (_, value) => self.unit.show(value),
        };
        [
            self.name.clone(),
            ours,
            self.unit.show(self.baseline()),
            self.ratio().map_or("-".to_string(), |r| format!("{r:.2}×")),
            self.goal.show(),
            self.verdict().show().to_string(),
        ]
    }
}

/// One measured period's conditions: how busy the machine was.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Period {
    /// `A round 2: gateway batch`, …
    pub name: String,
    pub seconds: f64,
    /// The measured figure in its unit, as shown.
    pub figure: String,
    /// Cores used by each process of interest.
    pub cpu: Vec<(String, f64)>,
    pub machine_cores: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub meta: Meta,
    pub cases: Vec<Case>,
    /// POST → queryable latency samples of D (ms).
    pub visible_ms: Vec<f64>,
    /// (process, peak resident bytes), largest first.
    pub peak_rss: Vec<(String, f64)>,
    pub periods: Vec<Period>,
}

const HEADER: [&str; 6] = ["case", "ours", "baseline", "ratio", "goal", "verdict"];

impl Report {
    /// Every case with a goal met (cases without a figure count as not met).
    pub fn all_met(&self) -> bool {
        self.cases.iter().all(|c| matches!(c.verdict(), Verdict::Met | Verdict::Info))
    }

    fn rows(&self) -> Vec<[String; 6]> {
        let mut rows: Vec<[String; 6]> = self.cases.iter().map(Case::cells).collect();
        for (process, bytes) in &self.peak_rss {
            rows.push([
                format!("peak RSS {process}"),
                Unit::Bytes.show(Some(*bytes)),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
        }
        rows
    }

    /// The terminal table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "\nPipeline throughput ({})", self.meta.services);
        out.push_str(&text_table(HEADER, &self.rows()));
        let _ = writeln!(out, "(medians of the rounds; ratio = ours ÷ baseline)");
        for note in &self.meta.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }

    /// The generated block of `BENCHMARKS.md` (without its markers).
    pub fn markdown(&self) -> String {
        let m = &self.meta;
        let mut out = m.preamble();
        let _ = writeln!(out, "\n| {} |", HEADER.join(" | "));
        let _ = writeln!(out, "|---|---|---|---|---|---|");
        for row in self.rows() {
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }

        let _ = writeln!(out, "\nPer round (ours and its baseline alternate which goes first, round by round):\n");
        let _ = writeln!(out, "| case | ours, per round | baseline | baseline, per round |");
        let _ = writeln!(out, "|---|---|---|---|");
        for case in self.cases.iter().filter(|c| !c.ours.is_empty() || !c.baseline.is_empty()) {
            let show = |values: &[f64]| -> String {
                let shown: Vec<String> = values.iter().map(|v| case.unit.show(Some(*v))).collect();
                if shown.is_empty() { "-".to_string() } else { shown.join(", ") }
            };
            let baseline_name = if case.baseline_name.is_empty() { "-" } else { &case.baseline_name };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                case.name,
                show(&case.ours),
                baseline_name,
                show(&case.baseline)
            );
        }
        if let Some(d) = Distribution::of(&self.visible_ms) {
            let _ = writeln!(
                out,
                "\nPOST → queryable ({} probes): p50 {}, p90 {}, p99 {}, max {}, min {}.",
                d.count,
                ms(Some(d.p50)),
                ms(Some(d.p90)),
                ms(Some(d.p99)),
                ms(Some(d.max)),
                ms(Some(d.min))
            );
        }
        out.push_str(&periods_markdown(&self.periods, m.cores));
        out
    }
}

/// `12345.6` → `12,346`.
pub fn thousands(value: f64) -> String {
    let rounded = value.round();
    let negative = rounded < 0.0;
    let digits = format!("{:.0}", rounded.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if negative { format!("-{out}") } else { out }
}

/// The markdown table of measured periods and their CPU (empty when there
/// are none), for the pipeline report and the cluster comparison alike.
pub fn periods_markdown(periods: &[Period], cores: usize) -> String {
    let mut out = String::new();
    if periods.is_empty() {
        return out;
    }
    let _ = writeln!(out, "\nMeasured periods (CPU from `/proc`, in cores of the machine's {cores}):\n");
    let _ = writeln!(out, "| period | seconds | figure | machine cores busy | by process |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for p in periods {
        let cpu: Vec<String> =
            p.cpu.iter().filter(|(_, c)| *c >= 0.005).map(|(name, c)| format!("{name} {c:.2}")).collect();
        let _ = writeln!(
            out,
            "| {} | {:.1} | {} | {} | {} |",
            p.name,
            p.seconds,
            p.figure,
            p.machine_cores.map_or("-".to_string(), |c| format!("{c:.2}")),
            cpu.join(", ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(goal: Goal, ours: &[f64], baseline: &[f64]) -> Case {
        Case { ours: ours.to_vec(), baseline: baseline.to_vec(), ..Case::new("c", Unit::PerSecond, goal) }
    }

    #[test]
    fn ratios_are_medians_of_rounds_and_verdicts_follow_the_goal() {
        let c = case(Goal::RatioAtLeast(0.5), &[40.0, 60.0, 50.0], &[100.0, 90.0, 200.0]);
        assert_eq!((c.ours(), c.baseline()), (Some(50.0), Some(100.0)));
        assert_eq!(c.ratio(), Some(0.5));
        assert_eq!(c.verdict(), Verdict::Met, "the goal is inclusive");
        let below = case(Goal::RatioAtLeast(0.6), &[50.0], &[100.0]);
        assert_eq!(below.verdict(), Verdict::NotMet);
        let no_baseline = case(Goal::RatioAtLeast(0.6), &[50.0], &[]);
        assert_eq!((no_baseline.ratio(), no_baseline.verdict()), (None, Verdict::NotMeasured));
        let zero_baseline = case(Goal::RatioAtLeast(0.6), &[50.0], &[0.0]);
        assert_eq!(zero_baseline.verdict(), Verdict::NotMeasured);

        let latency = Case { ours: vec![800.0], ..Case::new("d", Unit::Milliseconds, Goal::AtMostMs(1000.0)) };
        assert_eq!(latency.verdict(), Verdict::Met);
        let slow = Case { ours: vec![1000.5], ..latency.clone() };
        assert_eq!(slow.verdict(), Verdict::NotMet);
        let none = Case { ours: vec![], ..latency };
        assert_eq!(none.verdict(), Verdict::NotMeasured);
        assert_eq!(case(Goal::None, &[1.0], &[]).verdict(), Verdict::Info);
    }

    fn report() -> Report {
        let mut a = case(Goal::RatioAtLeast(0.5), &[30_000.0, 31_000.0, 29_000.0], &[100_000.0, 90_000.0, 95_000.0]);
        a.name = "A gateway batch".into();
        a.baseline_name = "raw producer".into();
        let mut c = Case::new("C query latency", Unit::Milliseconds, Goal::AtMostMs(100.0));
        c.missing = Some("not measured yet".into());
        let mut d = Case::new("D POST → queryable p99", Unit::Milliseconds, Goal::AtMostMs(1000.0));
        d.ours = vec![712.0];
        Report {
            meta: Meta { command: "cargo xtask bench pipeline".into(), services: "own".into(), ..Meta::default() },
            cases: vec![a, c, d],
            visible_ms: vec![500.0, 600.0, 712.0],
            peak_rss: vec![("clickhouse".into(), 512.0 * 1024.0 * 1024.0)],
            periods: vec![Period {
                name: "A round 1: gateway batch".into(),
                seconds: 10.0,
                figure: "30,000/s".into(),
                cpu: vec![("ingest-gateway".into(), 0.8), ("idle".into(), 0.001)],
                machine_cores: Some(1.9),
            }],
        }
    }

    #[test]
    fn the_table_has_one_aligned_row_per_case() {
        let report = report();
        assert!(!report.all_met(), "C has no figure");
        let table = report.table();
        let lines: Vec<&str> = table.lines().filter(|l| !l.is_empty()).collect();
        assert!(lines[1].starts_with("case "), "{table}");
        let row = lines.iter().find(|l| l.starts_with("A gateway batch")).unwrap();
        for cell in ["30,000/s", "95,000/s", "0.32×", "≥ 0.5×", "NOT MET"] {
            assert!(row.contains(cell), "{row}");
        }
        let c = lines.iter().find(|l| l.starts_with("C query latency")).unwrap();
        assert!(c.contains("not measured yet") && c.ends_with("not measured"), "{c}");
        assert!(lines.iter().any(|l| l.starts_with("peak RSS clickhouse") && l.contains("512 MiB")), "{table}");
        // Every row as wide as the header's columns: the verdict column lines up.
        let header_end = lines[1].len();
        assert!(lines[2].chars().count() >= header_end - 2, "{table}");
    }

    #[test]
    fn markdown_lists_rounds_and_periods() {
        let md = report().markdown();
        assert!(md.contains("| case | ours | baseline | ratio | goal | verdict |"), "{md}");
        assert!(md.contains("| A gateway batch | 30,000/s | 95,000/s | 0.32× | ≥ 0.5× | NOT MET |"), "{md}");
        assert!(md.contains("| D POST → queryable p99 | 712 ms | - | - | ≤ 1.00 s | met |"), "{md}");
        assert!(md.contains("| A gateway batch | 30,000/s, 31,000/s, 29,000/s | raw producer |"), "{md}");
        assert!(md.contains("POST → queryable (3 probes): p50 600 ms"), "{md}");
        assert!(md.contains("| A round 1: gateway batch | 10.0 | 30,000/s | 1.90 | ingest-gateway 0.80 |"), "{md}");
    }

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1234567.8), "1,234,568");
        assert_eq!(thousands(-12345.0), "-12,345");
        assert_eq!(Unit::Bytes.show(Some(3.0 * 1024.0 * 1024.0)), "3 MiB");
        assert_eq!(Unit::PerSecond.show(None), "-");
        assert_eq!(Goal::RatioAtLeast(0.6).show(), "≥ 0.6×");
    }
}
