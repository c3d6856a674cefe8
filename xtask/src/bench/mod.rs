//! `cargo xtask bench …`: the benchmarks whose figures go into `BENCHMARKS.md`.
//!
//! - `realtime`: feed and realtime-metrics latency end to end, under
//!   background traffic and without it ([`realtime`]);
//! - `window`: the realtime-hub's window merge and per-tick computation,
//!   criterion micro-benchmarks ([`window`]);
//! - `queries`: the query API's latency at volume against the same SQL run
//!   directly ([`queries`]).

mod client;
mod pipeline;
mod queries;
mod realtime;
mod report;
mod stats;
pub(crate) mod target;
mod window;

use std::process::ExitCode;

use anyhow::Result;

use crate::layout::Layout;

#[derive(Debug, clap::Subcommand)]
pub enum BenchCmd {
    /// POST /api/events → WebSocket feed latency (p50/p90/p99) and how soon realtime_metrics show a change,
    /// at --rate background events/s and without background traffic, against release builds of the services.
    Realtime(realtime::RealtimeArgs),
    /// The realtime-hub's window: facts merged per second and the per-tick figures at 60 k, 300 k and 1.2 M
    /// facts (criterion: `cargo bench -p realtime-hub --bench window`).
    Window(window::WindowArgs),
    /// Write-path throughput against its raw limits (gateway ÷ raw producer, processor ÷ raw insert) and
    /// POST → queryable latency at 5,000 events/s, against release builds of the services.
    Pipeline(pipeline::PipelineArgs),
    /// Query API latency (p50/p99, sequential and at concurrency 4) over a 10 M-event, 7-day fixture under live
    /// ingest, against the same statements run directly; rows read, peak memory, and a doubled-background scale check.
    Queries(queries::QueriesArgs),
}

pub async fn run(layout: &Layout, command: BenchCmd) -> Result<ExitCode> {
    match command {
        BenchCmd::Realtime(args) => realtime::run(layout, args).await,
        BenchCmd::Window(args) => window::run(layout, args).await,
        BenchCmd::Queries(args) => queries::run(layout, args).await,
        BenchCmd::Pipeline(args) => pipeline::run(layout, args).await,
    }
}

/// The machine a benchmark runs on, for its report.
pub mod machine {
    use std::process::Command;

    pub fn cores() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    /// `model name` of `/proc/cpuinfo`.
    pub fn cpu_model() -> String {
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| cpu_model_of(&text))
            .unwrap_or_else(|| "unknown CPU".to_string())
    }

    pub fn cpu_model_of(cpuinfo: &str) -> Option<String> {
        cpuinfo
            .lines()
            .find(|line| line.starts_with("model name"))
            .and_then(|line| line.split_once(':'))
            .map(|(_, model)| model.split_whitespace().collect::<Vec<_>>().join(" "))
    }

    /// `MemTotal` of `/proc/meminfo`, in GiB.
    pub fn ram_gib() -> f64 {
        std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| ram_gib_of(&text)).unwrap_or(0.0)
    }

    pub fn ram_gib_of(meminfo: &str) -> Option<f64> {
        let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / (1024.0 * 1024.0))
    }

    fn output(program: &str, args: &[&str]) -> Option<String> {
        let out = Command::new(program).args(args).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    pub fn rustc() -> String {
        output("rustc", &["--version"]).unwrap_or_else(|| "rustc (unknown version)".to_string())
    }

    /// The short commit, `+ uncommitted changes` when the tree is dirty.
    pub fn commit() -> String {
        let Some(commit) = output("git", &["rev-parse", "--short", "HEAD"]) else {
            return "unknown".to_string();
        };
        match output("git", &["status", "--porcelain", "--untracked-files=no"]) {
            Some(status) if !status.is_empty() => format!("{commit} + uncommitted changes"),
            _ => commit,
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn proc_files_are_read() {
            let cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC  7B13 64-Core Processor\n";
            assert_eq!(cpu_model_of(cpuinfo).as_deref(), Some("AMD EPYC 7B13 64-Core Processor"));
            assert_eq!(cpu_model_of("nothing"), None);
            let meminfo = "MemTotal:       24576000 kB\nMemFree:         1000 kB\n";
            let gib = ram_gib_of(meminfo).unwrap();
            assert!((gib - 23.4375).abs() < 1e-9, "{gib}");
        }
    }
}
