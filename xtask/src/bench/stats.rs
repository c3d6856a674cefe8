//! The pure arithmetic of the benchmarks: percentiles of latency samples,
//! Prometheus text, CPU counters from `/proc`, and their parsing.

use std::collections::HashMap;

/// Nearest-rank percentile of `sorted` (ascending): the smallest sample with
/// at least a share `q` (0..=1) of the samples at or below it. Exact, no
/// interpolation: the p99 of 1,200 samples is the 12th largest.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

/// The middle value (the mean of the two middle ones for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// A latency distribution in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Distribution {
    pub count: usize,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Distribution {
    pub fn of(samples: &[f64]) -> Option<Self> {
        let mut sorted: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        Some(Self {
            count: sorted.len(),
            min: *sorted.first()?,
            p50: percentile(&sorted, 0.50)?,
            p90: percentile(&sorted, 0.90)?,
            p99: percentile(&sorted, 0.99)?,
            max: *sorted.last()?,
        })
    }
}

/// The spread of per-run figures: their median, smallest and largest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Option<Self> {
        let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        Some(Self {
            median: median(&finite)?,
            min: finite.iter().copied().fold(f64::INFINITY, f64::min),
            max: finite.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }
}

/// `a / b`, `None` when `b` is not a positive number.
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite() && b.is_finite()).then(|| a / b)
}

// ------------------------------------------------------------ Prometheus ---

/// Label pairs of one series.
type Labels = Vec<(String, String)>;

/// The samples of a Prometheus text page: `(name, labels, value)`, labels
/// parsed into pairs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    samples: Vec<(String, Labels, f64)>,
}

impl Scrape {
    pub fn parse(text: &str) -> Self {
        let mut samples = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((series, value)) = split_value(line) else { continue };
            let Ok(value) = value.parse::<f64>() else { continue };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                None => (series, Vec::new()),
            };
            samples.push((name.to_string(), labels, value));
        }
        Self { samples }
    }

    /// The sum over every series of `name` whose labels include all of `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, have, _)| {
                n == name && labels.iter().all(|(k, v)| have.iter().any(|(hk, hv)| hk == k && hv == v))
            })
            .map(|(_, _, value)| value)
            .sum()
    }

    /// `self − before` for one sum (counters only grow; a restart shows as negative).
    pub fn delta(&self, before: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.sum(name, labels) - before.sum(name, labels)
    }

    /// The mean of a histogram or summary over the samples recorded between
    /// `before` and `self` (`_sum` / `_count` deltas); `None` without samples.
    pub fn mean_since(&self, before: &Scrape, name: &str) -> Option<f64> {
        let count = self.delta(before, &format!("{name}_count"), &[]);
        let sum = self.delta(before, &format!("{name}_sum"), &[]);
        (count > 0.0).then(|| sum / count)
    }
}

/// `series value [timestamp]` → (series, value); the series may hold spaces
/// inside quoted label values.
fn split_value(line: &str) -> Option<(&str, &str)> {
    let end_of_series = match line.rfind('}') {
        Some(close) => close + 1,
        None => line.find(char::is_whitespace)?,
    };
    let (series, rest) = line.split_at(end_of_series);
    let value = rest.split_whitespace().next()?;
    Some((series.trim(), value))
}

fn parse_labels(text: &str) -> Labels {
    let mut labels = Vec::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once('=') {
        let after = after.trim_start();
        let Some(quoted) = after.strip_prefix('"') else { break };
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        let mut consumed = quoted.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(if escaped == 'n' { '\n' } else { escaped });
                    }
                }
                '"' => {
                    consumed = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.push((key.trim().trim_start_matches(',').trim().to_string(), value));
        rest = quoted[consumed..].trim_start_matches([',', ' ']);
    }
    labels
}

// ------------------------------------------------------------------ CPU ---

/// User + system CPU time of a process, in clock ticks, from the text of
/// `/proc/<pid>/stat` (fields 14 and 15, counted after the command name,
/// which may hold spaces and parentheses).
pub fn process_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// `(busy, total)` clock ticks of all CPUs, from the first line of `/proc/stat`.
pub fn machine_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<u64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    if values.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let total: u64 = values.iter().take(8).sum();
    let idle = values[3] + values.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Clock ticks per second for `/proc` times (`sysconf(_SC_CLK_TCK)`).
pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// CPU time of processes, read at two moments: cores used in between.
#[derive(Debug, Clone, Default)]
pub struct CpuSnapshot {
    pub processes: HashMap<String, u64>,
    pub machine: Option<(u64, u64)>,
}

impl CpuSnapshot {
    pub fn take(pids: &[(String, u32)]) -> Self {
        let processes = pids
            .iter()
            .filter_map(|(name, pid)| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                Some((name.clone(), process_ticks(&stat)?))
            })
            .collect();
        let machine = std::fs::read_to_string("/proc/stat").ok().and_then(|s| machine_ticks(&s));
        Self { processes, machine }
    }

    /// Cores each process used between `before` and `self`, over `seconds`,
    /// in the order of `names`.
    pub fn cores_since(&self, before: &CpuSnapshot, seconds: f64, names: &[String]) -> Vec<(String, f64)> {
        let per_second = ticks_per_second() * seconds.max(1e-3);
        names
            .iter()
            .filter_map(|name| {
                let now = self.processes.get(name)?;
                let then = before.processes.get(name)?;
                Some((name.clone(), now.saturating_sub(*then) as f64 / per_second))
            })
            .collect()
    }

    /// Cores busy on the whole machine (every process, ours or not).
    pub fn machine_cores_since(&self, before: &CpuSnapshot, cores: usize) -> Option<f64> {
        let (busy_now, total_now) = self.machine?;
        let (busy_then, total_then) = before.machine?;
        let total = total_now.checked_sub(total_then)?;
        (total > 0).then(|| busy_now.saturating_sub(busy_then) as f64 / total as f64 * cores as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<f64> = (1..=1200).map(f64::from).collect();
        assert_eq!(percentile(&samples, 0.5), Some(600.0));
        assert_eq!(percentile(&samples, 0.99), Some(1188.0));
        assert_eq!(percentile(&samples, 1.0), Some(1200.0));
        assert_eq!(percentile(&samples, 0.0), Some(1.0));
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[7.0], 0.99), Some(7.0));
        // Two samples: the p50 is the first, the p99 the second.
        assert_eq!(percentile(&[1.0, 2.0], 0.5), Some(1.0));
        assert_eq!(percentile(&[1.0, 2.0], 0.99), Some(2.0));
    }

    #[test]
    fn distributions_sort_and_skip_non_finite_samples() {
        let d = Distribution::of(&[30.0, -2.0, 10.0, f64::NAN, 20.0]).unwrap();
        assert_eq!((d.count, d.min, d.p50, d.max), (4, -2.0, 10.0, 30.0));
        assert_eq!(d.p99, 30.0);
        assert_eq!(Distribution::of(&[]), None);
    }

    #[test]
    fn medians_and_spreads() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        let spread = Spread::of(&[120.0, 80.0, 100.0]).unwrap();
        assert_eq!(spread, Spread { median: 100.0, min: 80.0, max: 120.0 });
        assert_eq!(ratio(50.0, 25.0), Some(2.0));
        assert_eq!(ratio(50.0, 0.0), None);
    }

    #[test]
    fn prometheus_text_is_summed_by_labels() {
        let text = r#"
# HELP analytics_service_ingest_events_accepted_total Events accepted.
# TYPE analytics_service_ingest_events_accepted_total counter
analytics_service_ingest_events_accepted_total 1500
analytics_service_ingest_requests_total{endpoint="batch",status="202"} 10
analytics_service_ingest_requests_total{endpoint="single",status="202"} 5
analytics_service_ingest_requests_total{endpoint="single",status="503"} 2
odd_total{reason="a \"quoted\", value",kind="x"} 3 1700000000000
analytics_service_hub_window_compute_duration_seconds_sum 0.5
analytics_service_hub_window_compute_duration_seconds_count 10
"#;
        let scrape = Scrape::parse(text);
        assert_eq!(scrape.sum("analytics_service_ingest_events_accepted_total", &[]), 1500.0);
        assert_eq!(scrape.sum("analytics_service_ingest_requests_total", &[]), 17.0);
        assert_eq!(scrape.sum("analytics_service_ingest_requests_total", &[("endpoint", "single")]), 7.0);
        assert_eq!(scrape.sum("analytics_service_ingest_requests_total", &[("status", "503")]), 2.0);
        assert_eq!(scrape.sum("odd_total", &[("reason", "a \"quoted\", value"), ("kind", "x")]), 3.0);
        assert_eq!(scrape.sum("missing", &[]), 0.0);

        let before = Scrape::parse(
            "analytics_service_hub_window_compute_duration_seconds_sum 0.1\n\
             analytics_service_hub_window_compute_duration_seconds_count 2\n",
        );
        let mean = scrape.mean_since(&before, "analytics_service_hub_window_compute_duration_seconds").unwrap();
        assert!((mean - 0.05).abs() < 1e-12, "{mean}");
        assert_eq!(scrape.mean_since(&scrape, "analytics_service_hub_window_compute_duration_seconds"), None);
    }

    #[test]
    fn proc_stat_lines_give_cpu_ticks() {
        let stat = "4242 (tokio (worker) x) S 1 4242 4242 0 -1 4194560 5000 0 0 0 700 300 0 0 20 0 9 0 100 \
                    2000000 5000 18446744073709551615";
        assert_eq!(process_ticks(stat), Some(1000));
        assert_eq!(process_ticks("garbage"), None);
        let machine = "cpu  100 5 50 800 20 1 2 3 0 0\ncpu0 50 2 25 400 10 0 1 1 0 0\n";
        assert_eq!(machine_ticks(machine), Some((161, 981)));
    }
}
