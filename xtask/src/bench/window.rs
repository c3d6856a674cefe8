//! `cargo xtask bench window`: the realtime-hub's window micro-benchmarks
//! (`crates/realtime-hub/benches/window.rs`, criterion), run with
//! `cargo bench`, then read back from criterion's estimates under
//! `target/criterion/` into a table (and `BENCHMARKS.md` with `--record`).

use std::{fmt::Write as _, path::Path, process::ExitCode};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::{machine, report::replace_block, stats::CpuSnapshot};
use crate::{layout::Layout, ui};

pub const BLOCK: &str = "bench:window";
const HEADING: &str = "Realtime window (`cargo xtask bench window`)";
/// criterion's groups in `benches/window.rs`.
const GROUPS: [&str; 2] = ["merge", "figures"];

#[derive(Debug, Clone, clap::Args)]
pub struct WindowArgs {
    /// Write the figures into BENCHMARKS.md (the block between its bench:window markers).
    #[arg(long)]
    pub record: bool,
    /// Extra arguments for the benchmark binary (after `--`), e.g. a filter: `-- figures`.
    #[arg(last = true)]
    pub bench_args: Vec<String>,
}

/// One benchmark's result: criterion's median time and its 95 % interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    pub id: String,
    pub group: String,
    /// Elements (facts) per iteration.
    pub elements: Option<u64>,
    pub median_ns: f64,
    pub lower_ns: f64,
    pub upper_ns: f64,
}

impl Estimate {
    /// From criterion's `benchmark.json` and `estimates.json`.
    pub fn parse(benchmark: &Value, estimates: &Value) -> Option<Self> {
        let median = &estimates["median"];
        Some(Self {
            id: benchmark["full_id"].as_str()?.to_string(),
            group: benchmark["group_id"].as_str()?.to_string(),
            elements: benchmark["throughput"]["Elements"].as_u64(),
            median_ns: median["point_estimate"].as_f64()?,
            lower_ns: median["confidence_interval"]["lower_bound"].as_f64()?,
            upper_ns: median["confidence_interval"]["upper_bound"].as_f64()?,
        })
    }

    pub fn per_element_ns(&self) -> Option<f64> {
        self.elements.filter(|n| *n > 0).map(|n| self.median_ns / n as f64)
    }

    /// What the benchmark measures, in words.
    fn label(&self) -> String {
        let last = self.id.rsplit('/').next().unwrap_or_default();
        if self.id.starts_with("merge/one_second_into_full_window/") {
            format!("merge one second ({} events/s) into a full window, evicting the oldest", thousands(last))
        } else if self.id.starts_with("merge/decode_one_second/") {
            format!("decode that second's partials (JSON), {} events", thousands(last))
        } else if self.id.starts_with("figures/full_window_facts/") {
            format!("compute the figures of a full window of {} facts", thousands(last))
        } else {
            self.id.clone()
        }
    }
}

fn thousands(digits: &str) -> String {
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Three significant digits: `42.1 ns`, `4.21 µs`, `11.6 ms`, `1.20 s`.
fn time(ns: f64) -> String {
    let (value, unit) = match ns {
        n if n < 1e3 => (n, "ns"),
        n if n < 1e6 => (n / 1e3, "µs"),
        n if n < 1e9 => (n / 1e6, "ms"),
        n => (n / 1e9, "s"),
    };
    match value {
        v if v < 10.0 => format!("{v:.2} {unit}"),
        v if v < 100.0 => format!("{v:.1} {unit}"),
        v => format!("{v:.0} {unit}"),
    }
}

/// `1.19 M/s`, `51.1 M/s`, `850 k/s`.
fn rate(per_second: f64) -> String {
    if per_second >= 1e6 { format!("{:.2} M/s", per_second / 1e6) } else { format!("{:.0} k/s", per_second / 1e3) }
}

/// The figures as a Markdown table; the smallest `figures` window is the
/// baseline of the per-fact cost of the larger ones.
pub fn table(estimates: &[Estimate]) -> String {
    let base = estimates
        .iter()
        .filter(|e| e.group == "figures")
        .min_by_key(|e| e.elements.unwrap_or(u64::MAX))
        .and_then(Estimate::per_element_ns);
    let mut out = String::new();
    let _ =
        writeln!(out, "| benchmark | median [95 % interval] | facts/s | per fact | per fact vs the smallest window |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for e in estimates {
        let per = e.per_element_ns();
        let versus = match (e.group.as_str(), per, base) {
            ("figures", Some(per), Some(base)) if base > 0.0 => format!("×{:.2}", per / base),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "| {} | {} [{}–{}] | {} | {} | {versus} |",
            e.label(),
            time(e.median_ns),
            time(e.lower_ns),
            time(e.upper_ns),
            per.map_or("-".to_string(), |p| rate(1e9 / p)),
            per.map_or("-".to_string(), time),
        );
    }
    out
}

/// Every benchmark of `groups` under `criterion_dir`, in group order, then by size.
fn read_estimates(criterion_dir: &Path) -> Result<Vec<Estimate>> {
    let mut all = Vec::new();
    for group in GROUPS {
        let mut found = Vec::new();
        let dir = criterion_dir.join(group);
        let Ok(functions) = std::fs::read_dir(&dir) else { continue };
        for function in functions.flatten() {
            for value in std::fs::read_dir(function.path()).into_iter().flatten().flatten() {
                let new = value.path().join("new");
                let read = |name: &str| -> Option<Value> {
                    serde_json::from_str(&std::fs::read_to_string(new.join(name)).ok()?).ok()
                };
                if let (Some(benchmark), Some(estimates)) = (read("benchmark.json"), read("estimates.json")) {
                    found.extend(Estimate::parse(&benchmark, &estimates));
                }
            }
        }
        // The merge before the decoding, windows by size.
        found.sort_by_key(|e| (e.id.contains("/decode"), e.elements));
        all.extend(found);
    }
    if all.is_empty() {
        bail!("no criterion results under {}", criterion_dir.display());
    }
    Ok(all)
}

pub async fn run(layout: &Layout, args: WindowArgs) -> Result<ExitCode> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cargo_args = vec!["bench", "-p", "realtime-hub", "--bench", "window"];
    if !args.bench_args.is_empty() {
        cargo_args.push("--");
        cargo_args.extend(args.bench_args.iter().map(String::as_str));
    }
    ui::line(format!("Running: {cargo} {}", cargo_args.join(" ")));
    let criterion_dir = layout.target_dir().join("criterion");
    // Only this run's results are read back.
    for group in GROUPS {
        let _ = std::fs::remove_dir_all(criterion_dir.join(group));
    }
    let started = std::time::Instant::now();
    let before = CpuSnapshot::take(&[]);
    let status = tokio::process::Command::new(&cargo)
        .args(&cargo_args)
        .current_dir(&layout.root)
        .status()
        .await
        .with_context(|| format!("running {cargo} bench"))?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", cargo_args.join(" "));
    }
    let busy = CpuSnapshot::take(&[]).machine_cores_since(&before, machine::cores());
    let estimates = read_estimates(&criterion_dir)?;
    let table = table(&estimates);
    ui::out(format!("\n{table}"));
    if args.record {
        let command = format!("cargo xtask {}", std::env::args().skip(1).collect::<Vec<_>>().join(" "));
        let mut block = format!(
            "Measured {} UTC at commit {}:\n\n```\n{command}\n```\n\nMachine: {} cores ({}), {:.0} GiB RAM; {}; \
             bench profile (release); criterion 0.7, the median of its samples with criterion's 95 % interval. \
             The whole run took {:.0} s",
            chrono::Utc::now().format("%Y-%m-%d %H:%M"),
            machine::commit(),
            machine::cores(),
            machine::cpu_model(),
            machine::ram_gib(),
            machine::rustc(),
            started.elapsed().as_secs_f64(),
        );
        match busy {
            Some(busy) => {
                let _ = write!(block, "; the machine was {busy:.2} cores busy meanwhile (the benchmark uses one).");
            }
            None => block.push('.'),
        }
        let _ = write!(block, "\n\n{table}");
        let path = layout.root.join("BENCHMARKS.md");
        let doc = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".to_string());
        std::fs::write(&path, replace_block(&doc, BLOCK, HEADING, &block))
            .with_context(|| format!("writing {}", path.display()))?;
        ui::out(format!("Recorded in {}.", layout.show(&path)));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn estimate(id: &str, elements: u64, median_ns: f64) -> Estimate {
        let group = id.split('/').next().unwrap();
        let benchmark = json!({"group_id": group, "full_id": id, "throughput": {"Elements": elements}});
        let estimates = json!({"median": {
            "point_estimate": median_ns,
            "confidence_interval": {"lower_bound": median_ns * 0.9, "upper_bound": median_ns * 1.1}}});
        Estimate::parse(&benchmark, &estimates).unwrap()
    }

    #[test]
    fn criterion_estimates_are_read() {
        let e = estimate("figures/full_window_facts/300000", 300_000, 11_500_000.0);
        assert_eq!(e.group, "figures");
        assert_eq!(e.elements, Some(300_000));
        assert!((e.per_element_ns().unwrap() - 38.333).abs() < 1e-3);
        assert_eq!(Estimate::parse(&json!({}), &json!({})), None);
    }

    #[test]
    fn the_table_compares_per_fact_costs_with_the_smallest_window() {
        let estimates = vec![
            estimate("merge/one_second_into_full_window/5000", 5_000, 4_200_000.0),
            estimate("figures/full_window_facts/60000", 60_000, 1_200_000.0),
            estimate("figures/full_window_facts/300000", 300_000, 12_000_000.0),
        ];
        let table = table(&estimates);
        assert!(
            table.contains(
                "| merge one second (5,000 events/s) into a full window, evicting the oldest | 4.20 ms \
                 [3.78 ms–4.62 ms] | 1.19 M/s | 840 ns |  |"
            ),
            "{table}"
        );
        assert!(table.contains("| compute the figures of a full window of 60,000 facts | 1.20 ms"), "{table}");
        assert!(table.contains("| 25.00 M/s | 40.0 ns | ×2.00 |"), "{table}");
        assert_eq!(time(950.0), "950 ns");
        assert_eq!(time(11_552_000.0), "11.6 ms");
        assert_eq!(time(4_210.0), "4.21 µs");
        assert_eq!(rate(850_000.0), "850 k/s");
    }
}
