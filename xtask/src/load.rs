//! `cargo xtask load`: live playback traffic into the ingest-gateway (the
//! `loadgen` crate does the work), with a progress bar on a terminal and
//! plain periodic lines elsewhere; and the background demo traffic of
//! `cargo xtask up --demo`, managed like the services (pid file and log
//! under `.stack/`).

use std::{
    collections::VecDeque,
    io::IsTerminal,
    process::{Command, ExitCode},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use loadgen::{Options, SimConfig, Snapshot, Summary};
use local_stack::process;

use crate::{keys, layout::Layout, ui};

/// The component name of the demo traffic (`.stack/pids/demo-load.pid`).
pub const DEMO: &str = "demo-load";
/// Found in the demo process's command line (guards against pid reuse).
const DEMO_MARKER: &str = "xtask load";
/// Written once to the output when the gateway accepted the first batch.
const FIRST_ACCEPTED: &str = "first batch accepted";

/// `--duration`: a length, or `forever`.
#[derive(Debug, Clone, Copy)]
pub struct RunLength(Option<Duration>);

fn parse_run_length(text: &str) -> Result<RunLength, String> {
    loadgen::parse_duration(text).map(RunLength)
}

#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Target events per second.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// How long: 60s, 5m, 1h, … or forever (until Ctrl-C).
    #[arg(long, default_value = "60s", value_parser = parse_run_length)]
    duration: RunLength,
    /// Base URL of the ingest-gateway.
    #[arg(long, default_value = loadgen::DEFAULT_GATEWAY)]
    gateway: String,
    /// Videos in the catalog (Zipf-like popularity: video_0001 is the most watched).
    #[arg(long, default_value_t = 200)]
    videos: usize,
    /// Known users (about 20 % of sessions are anonymous on top).
    #[arg(long, default_value_t = 2000)]
    users: usize,
    /// Seed of the catalog and the viewers' behaviour (random when absent; the summary shows it).
    #[arg(long)]
    seed: Option<u64>,
    /// Most events per request.
    #[arg(long, default_value_t = 500)]
    batch_max: usize,
    /// Longest an event waits for its batch to fill, milliseconds.
    #[arg(long, default_value_t = 100)]
    batch_interval_ms: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// First store the generated videos (title, duration, category) in the query-api's catalog.
    #[arg(long)]
    catalog: bool,
    /// Base URL of the query-api, for --catalog.
    #[arg(long, default_value = loadgen::DEFAULT_QUERY_API)]
    query_api: String,
    /// No progress output, only the summary.
    #[arg(short, long)]
    quiet: bool,
    /// Print the summary as JSON on stdout (the readable one goes to stderr unless --quiet).
    #[arg(long)]
    json_summary: bool,
    /// API key with the ingest scope, sent as X-API-Key [default: INGEST_API_KEY of the environment,
    /// else of .stack/credentials.env]
    #[arg(long, env = keys::INGEST_VAR, hide_env_values = true)]
    api_key: Option<String>,
    /// Token with the admin scope, for --catalog [default: ADMIN_TOKEN of the environment, else of
    /// .stack/credentials.env]
    #[arg(long, env = keys::ADMIN_VAR, hide_env_values = true)]
    admin_token: Option<String>,
}

impl LoadArgs {
    /// The keys not given fall back to `layout`'s credentials file; a
    /// missing one is an error naming it.
    fn with_credentials(mut self, layout: &Layout) -> Result<Self> {
        let file = keys::CredentialsFile::read(&layout.credentials_file())?;
        let known = keys::Credentials::of_file(&file);
        let given = |flag: Option<String>| flag.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let credentials = keys::Credentials {
            ingest: given(self.api_key.take()).or(known.ingest),
            admin: given(self.admin_token.take()).or(known.admin),
            read: None,
        };
        self.api_key = Some(credentials.ingest()?.to_owned());
        if self.catalog {
            self.admin_token = Some(credentials.admin()?.to_owned());
        }
        Ok(self)
    }

    fn options(&self) -> Options {
        let now = loadgen::epoch_ms() as u64;
        Options {
            sim: SimConfig {
                // Random when absent, short enough to type again.
                seed: self.seed.unwrap_or_else(|| (now ^ (u64::from(std::process::id()) << 40)) % 1_000_000),
                salt: now,
                rate: self.rate,
                videos: self.videos,
                users: self.users,
                ..SimConfig::default()
            },
            duration: self.duration.0,
            gateway: self.gateway.trim_end_matches('/').to_string(),
            batch_max: self.batch_max,
            batch_interval: Duration::from_millis(self.batch_interval_ms.max(1)),
            concurrency: self.concurrency,
            catalog: self.catalog.then(|| self.query_api.trim_end_matches('/').to_string()),
            api_key: self.api_key.clone(),
            admin_token: self.admin_token.clone(),
            ..Options::default()
        }
    }
}

pub async fn run(layout: &Layout, args: LoadArgs) -> Result<ExitCode> {
    let args = args.with_credentials(layout)?;
    let options = args.options();
    if !(args.rate.is_finite() && args.rate > 0.0) {
        bail!("--rate must be a positive number of events per second");
    }
    check_gateway(&options.gateway).await?;
    let length = match options.duration {
        Some(d) => format!("for {}", format_duration(d)),
        None => "until stopped".to_string(),
    };
    if !args.quiet {
        eprintln!(
            "Sending ~{} events/s of live playback traffic to {} {length} (seed {}; Ctrl-C stops).",
            args.rate, options.gateway, options.sim.seed
        );
        if let Some(query_api) = &options.catalog {
            eprintln!("Storing {} videos in the catalog at {query_api} first.", options.sim.videos);
        }
    }

    let run = loadgen::start(options.clone());
    let mut display = Display::new(&args, &options);
    let mut signals = Signals::new()?;
    let mut stopping = false;
    let mut ticker = tokio::time::interval(Duration::from_millis(200));
    while !run.is_finished() {
        tokio::select! {
            _ = ticker.tick() => display.update(&run.snapshot()),
            () = signals.next() => {
                if stopping {
                    display.note("second signal: giving up on the batches in flight");
                    run.abort();
                } else {
                    stopping = true;
                    display.note("stopping: delivering the batches in flight (Ctrl-C again to give them up)");
                    run.stop();
                }
            }
        }
    }
    display.update(&run.snapshot());
    display.finish();
    let summary = run.wait().await?;

    if args.json_summary {
        ui::out(serde_json::to_string_pretty(&summary)?);
        if !args.quiet {
            eprintln!("{}", describe(&summary));
        }
    } else {
        ui::out(describe(&summary));
    }
    if summary.is_clean() {
        return Ok(ExitCode::SUCCESS);
    }
    if summary.rejected > 0 && refused_key(&summary) {
        eprintln!(
            "\nThe gateway refused the key (401/403, reason above): check INGEST_API_KEY, or run `cargo xtask up` \
             to renew .stack/credentials.env; `cargo xtask keys list` shows the keys."
        );
    } else if summary.rejected > 0 {
        eprintln!("\n{} events were rejected: a generator bug (the reasons are above).", summary.rejected);
    }
    if summary.failed + summary.unsent > 0 {
        eprintln!("\n{} events were not delivered (stopped while the gateway did not accept them).", {
            summary.failed + summary.unsent
        });
    }
    Ok(ExitCode::FAILURE)
}

/// Whether the run stopped because the gateway refused its key.
fn refused_key(summary: &Summary) -> bool {
    summary.rejection_reasons.iter().any(|reason| reason.contains(loadgen::KEY_REFUSED))
}

/// Fails early, with the way out, when nothing answers at the gateway.
///
/// The gateway serves `/health` on its own ops port, which `--gateway` does
/// not name: any HTTP answer of the API port (`GET /api/events/batch` is a
/// 404 or 405 there) shows the gateway is up; a refused connection does not.
async fn check_gateway(gateway: &str) -> Result<()> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(3)).build()?;
    let url = format!("{gateway}/api/events/batch");
    let mut last = String::new();
    for _ in 0..10 {
        match client.get(&url).send().await {
            Ok(answer) if !answer.status().is_server_error() => return Ok(()),
            Ok(answer) => last = format!("answered {}", answer.status()),
            Err(err) => last = format!("{:#}", anyhow::Error::from(err)),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("the ingest-gateway does not answer GET {url} ({last}); start the stack with `cargo xtask up`")
}

/// Ctrl-C and SIGTERM (how `cargo xtask down` stops the demo traffic).
struct Signals {
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Self> {
        let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("listening for SIGTERM")?;
        Ok(Self { terminate })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

/// The progress bar, or periodic lines when stderr is not a terminal.
struct Display {
    bar: Option<ProgressBar>,
    quiet: bool,
    catalog_videos: Option<usize>,
    /// (when, events sent): the recent past, for the current rate.
    history: VecDeque<(Instant, u64)>,
    line_every: Duration,
    last_line: Instant,
    reasons_shown: usize,
    accepted_shown: bool,
    retry_shown: Option<String>,
}

impl Display {
    fn new(args: &LoadArgs, options: &Options) -> Self {
        let interactive = !args.quiet && std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
        let bar = interactive.then(|| {
            let (bar, template) = match options.duration {
                Some(d) => {
                    (ProgressBar::new(d.as_millis() as u64), "{spinner:.cyan} {prefix} [{bar:24.cyan/blue}] {msg}")
                }
                None => (ProgressBar::new_spinner(), "{spinner:.cyan} {prefix} {wide_msg}"),
            };
            bar.set_style(
                ProgressStyle::with_template(template)
                    .expect("valid template")
                    .progress_chars("=> ")
                    .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ "),
            );
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        Self {
            bar,
            quiet: args.quiet,
            catalog_videos: options.catalog.as_ref().map(|_| options.sim.videos),
            history: VecDeque::new(),
            // A log file of a run without end should not grow too fast.
            line_every: if options.duration.is_some() { Duration::from_secs(5) } else { Duration::from_secs(30) },
            last_line: Instant::now(),
            reasons_shown: 0,
            accepted_shown: false,
            retry_shown: None,
        }
    }

    fn note(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None if !self.quiet => eprintln!("{text}"),
            None => {}
        }
    }

    fn current_rate(&mut self, snapshot: &Snapshot) -> f64 {
        let now = Instant::now();
        self.history.push_back((now, snapshot.sent));
        while self.history.len() > 2 && now.duration_since(self.history[0].0) > Duration::from_secs(3) {
            self.history.pop_front();
        }
        let (then, sent) = self.history[0];
        let span = now.duration_since(then).as_secs_f64();
        if span < 0.5 { 0.0 } else { (snapshot.sent - sent) as f64 / span }
    }

    fn update(&mut self, snapshot: &Snapshot) {
        // Rejections are generator bugs: show the first few as they come.
        for reason in snapshot.rejection_reasons.iter().skip(self.reasons_shown) {
            self.note(&format!("REJECTED: {reason}"));
        }
        self.reasons_shown = snapshot.rejection_reasons.len();
        if snapshot.accepted > 0 && !self.accepted_shown {
            self.accepted_shown = true;
            if self.bar.is_none() && !self.quiet {
                eprintln!("{FIRST_ACCEPTED} by the gateway; traffic is flowing");
            }
        }
        if snapshot.last_retry_reason != self.retry_shown {
            self.retry_shown = snapshot.last_retry_reason.clone();
            if let Some(reason) = &self.retry_shown {
                self.note(&format!("retrying a batch: {reason}"));
            }
        }

        let rate = self.current_rate(snapshot);
        let uploading = snapshot.elapsed.is_zero() && self.catalog_videos.is_some();
        let status = if uploading {
            "storing the video catalog in the query-api".to_string()
        } else {
            status_line(snapshot, rate)
        };
        match &self.bar {
            Some(bar) => {
                bar.set_prefix(format!("load {}", clock(snapshot.elapsed)));
                bar.set_position(snapshot.elapsed.as_millis() as u64);
                bar.set_message(status);
            }
            None if !self.quiet && self.last_line.elapsed() >= self.line_every => {
                self.last_line = Instant::now();
                eprintln!("load {}  {status}", clock(snapshot.elapsed));
            }
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn status_line(s: &Snapshot, rate: f64) -> String {
    let mut line = format!(
        "sent {} · {:.0}/s · accepted {} · rejected {} · retries {} · sessions {}",
        thousands(s.sent),
        rate,
        thousands(s.accepted),
        thousands(s.rejected),
        thousands(s.retries),
        thousands(s.active_sessions),
    );
    if s.lag_ms > 1_000 {
        line.push_str(&format!(" · {:.1}s behind", s.lag_ms as f64 / 1000.0));
    }
    line
}

/// The readable end-of-run report.
fn describe(s: &Summary) -> String {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} ms"));
    let mut out = format!(
        "\nLoad summary (seed {})\n\
         \x20 duration          {:.1} s\n\
         \x20 events            {} generated, {} sent, {} accepted, {} rejected",
        s.seed,
        s.duration_seconds,
        thousands(s.generated),
        thousands(s.sent),
        thousands(s.accepted),
        thousands(s.rejected),
    );
    if s.failed + s.unsent > 0 {
        out.push_str(&format!(", {} given up, {} never sent", thousands(s.failed), thousands(s.unsent)));
    }
    out.push_str(&format!(
        "\n  rate              {:.1} events/s accepted (target {})\n\
         \x20 requests          {} ({} retries)\n\
         \x20 POST latency      p50 {}, p99 {}, max {}\n\
         \x20 sessions          {} started, {} still playing at the end\n\
         \x20 max lag           {:.1} s (age of a batch's oldest event when sent)",
        s.achieved_rate,
        s.target_rate,
        thousands(s.requests),
        thousands(s.retries),
        ms(s.latency_p50_ms),
        ms(s.latency_p99_ms),
        ms(s.latency_max_ms),
        thousands(s.sessions_started),
        thousands(s.sessions_active_at_end),
        s.max_lag_ms as f64 / 1000.0,
    ));
    if s.catalog_videos > 0 {
        out.push_str(&format!("\n  catalog           {} videos stored in the query-api", s.catalog_videos));
    }
    let mix: Vec<String> =
        s.events_by_type.iter().filter(|(_, n)| **n > 0).map(|(t, n)| format!("{t} {}", thousands(*n))).collect();
    out.push_str(&format!("\n  event mix         {}", mix.join(", ")));
    for reason in &s.rejection_reasons {
        out.push_str(&format!("\n  rejected: {reason}"));
    }
    out
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn clock(elapsed: Duration) -> String {
    let s = elapsed.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{:02}:{:02}", s / 60, s % 60)
    }
}

fn format_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 3600.0 && s % 3600.0 == 0.0 {
        format!("{}h", s / 3600.0)
    } else if s >= 60.0 && s % 60.0 == 0.0 {
        format!("{}m", s / 60.0)
    } else {
        format!("{s}s")
    }
}

// ------------------------------------------------------------ demo load ---

/// The pid of the demo traffic if xtask started it and it still runs.
pub fn demo_pid(layout: &Layout) -> Option<u32> {
    process::live_pid(&layout.pid_file(DEMO), DEMO_MARKER)
}

/// The target rate of the running demo traffic, from its command line.
pub fn demo_rate(pid: u32) -> Option<String> {
    let cmdline = process::cmdline(pid)?;
    let mut words = cmdline.split_whitespace();
    words.find(|w| *w == "--rate")?;
    words.next().map(str::to_string)
}

/// Starts `xtask load --duration forever --catalog` in the background
/// (idempotent) and waits until the gateway accepted its first batch.
pub async fn start_demo(layout: &Layout, rate: f64) -> Result<()> {
    let step = ui::Step::start(DEMO);
    let log = layout.log(DEMO);
    if let Some(pid) = demo_pid(layout) {
        let rate = demo_rate(pid).unwrap_or_else(|| "?".to_string());
        step.skip(format!("already running (pid {pid}, ~{rate} events/s; log {})", layout.show(&log)));
        return Ok(());
    }
    if !(rate.is_finite() && rate > 0.0) {
        step.fail("invalid rate");
        bail!("--demo-rate must be a positive number of events per second");
    }
    let _ = std::fs::remove_file(layout.pid_file(DEMO));
    // The binary `up` just built (this process's own file may have been
    // replaced by that build), else this one.
    let built = layout.binary("xtask");
    let exe = if built.exists() { built } else { std::env::current_exe().context("locating the xtask binary")? };
    let offset = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    // The keys `up` just made sure of, over any older ones of the caller's environment.
    let credentials = keys::Credentials::of_file(&keys::CredentialsFile::read(&layout.credentials_file())?);
    let (ingest, admin) = match (credentials.ingest(), credentials.admin()) {
        (Ok(ingest), Ok(admin)) => (ingest.to_owned(), admin.to_owned()),
        (Err(err), _) | (_, Err(err)) => {
            step.fail("no key");
            return Err(err);
        }
    };
    let mut cmd = Command::new(&exe);
    cmd.args(["load", "--rate", &rate.to_string(), "--duration", "forever", "--catalog"])
        .current_dir(&layout.root)
        .env("NO_COLOR", "1")
        .env(keys::INGEST_VAR, ingest)
        .env(keys::ADMIN_VAR, admin);
    let pid = process::spawn_background(&mut cmd, &log)
        .with_context(|| format!("starting the demo traffic; read {}", layout.show(&log)))?;
    process::write_pid(&layout.pid_file(DEMO), pid)?;
    step.set_message(format!("pid {pid}; waiting for the gateway to accept the first batch"));

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if log_since(&log, offset).contains(FIRST_ACCEPTED) {
            step.ok(format!("~{rate} events/s (pid {pid}, log {})", layout.show(&log)));
            return Ok(());
        }
        if !process::is_running(pid) {
            step.fail("exited");
            let _ = std::fs::remove_file(layout.pid_file(DEMO));
            bail!(
                "the demo traffic (pid {pid}) exited; read {}\n{}",
                layout.show(&log),
                process::indent_tail(&log, 20)
            );
        }
        if Instant::now() > deadline {
            step.fail("no batch accepted");
            bail!(
                "the demo traffic (pid {pid}) had no batch accepted within 60 s; it keeps trying; read {}\n{}",
                layout.show(&log),
                process::indent_tail(&log, 20)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn log_since(log: &std::path::Path, offset: u64) -> String {
    let bytes = std::fs::read(log).unwrap_or_default();
    let start = (offset as usize).min(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// SIGTERM to the demo traffic (it delivers its batches in flight, up to
/// 15 s), SIGKILL after 20 s.
pub fn stop_demo(layout: &Layout) -> Result<Option<u32>> {
    let pid_file = layout.pid_file(DEMO);
    let Some(pid) = demo_pid(layout) else {
        let _ = std::fs::remove_file(&pid_file);
        return Ok(None);
    };
    process::log_marker(&layout.log(DEMO), &format!("stopping pid {pid}"));
    let killed = process::terminate(pid, libc::SIGTERM, Duration::from_secs(20))?;
    if killed {
        ui::line(format!("  {DEMO} ignored SIGTERM for 20 s and was killed"));
    }
    let _ = std::fs::remove_file(&pid_file);
    Ok(Some(pid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_readable() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(clock(Duration::from_secs(75)), "01:15");
        assert_eq!(clock(Duration::from_secs(3_725)), "1:02:05");
        assert_eq!(format_duration(Duration::from_secs(300)), "5m");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
    }

    #[test]
    fn the_defaults_are_the_documented_ones() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            load: LoadArgs,
        }
        let args = Cli::parse_from(["load"]).load;
        let options = args.options();
        assert_eq!(options.sim.rate, 200.0);
        assert_eq!(options.duration, Some(Duration::from_secs(60)));
        assert_eq!(options.gateway, "http://127.0.0.1:3001");
        assert_eq!((options.sim.videos, options.sim.users), (200, 2000));
        assert_eq!(
            (options.batch_max, options.batch_interval, options.concurrency),
            (500, Duration::from_millis(100), 4)
        );
        assert_eq!(options.catalog, None);

        let args = Cli::parse_from(["load", "--duration", "forever", "--catalog", "--seed", "7"]).load;
        let options = args.options();
        assert_eq!(options.duration, None);
        assert_eq!(options.sim.seed, 7);
        assert_eq!(options.catalog.as_deref(), Some("http://127.0.0.1:3000"));
        assert!(Cli::try_parse_from(["load", "--duration", "soon"]).is_err());
    }

    #[test]
    fn keys_come_from_the_flags_else_the_credentials_file() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            load: LoadArgs,
        }
        let dir = std::env::temp_dir().join(format!("xtask-load-{}", uuid::Uuid::new_v4().simple()));
        let layout = Layout { root: dir.clone(), stack: dir.join(".stack") };
        // Parsed, then the flags set here: the environment of the test run may hold keys.
        let parse = |args: &[&str], key: Option<&str>, token: Option<&str>| {
            let mut args = Cli::parse_from(args).load;
            args.api_key = key.map(str::to_owned);
            args.admin_token = token.map(str::to_owned);
            args
        };

        let err = parse(&["load"], None, None).with_credentials(&layout).unwrap_err().to_string();
        assert_eq!(err, "no INGEST_API_KEY: run `cargo xtask up` (it writes .stack/credentials.env)");

        std::fs::create_dir_all(&layout.stack).unwrap();
        std::fs::write(layout.credentials_file(), "INGEST_API_KEY=ak_file\nQUERY_API_TOKEN=ak_read\n").unwrap();
        let args = parse(&["load"], None, None).with_credentials(&layout).unwrap();
        assert_eq!(args.options().api_key.as_deref(), Some("ak_file"));
        assert_eq!(args.options().admin_token, None, "no admin token without --catalog");
        let args = parse(&["load"], Some("ak_flag"), None).with_credentials(&layout).unwrap();
        assert_eq!(args.options().api_key.as_deref(), Some("ak_flag"));

        let err = parse(&["load", "--catalog"], None, None).with_credentials(&layout).unwrap_err().to_string();
        assert!(err.starts_with("no ADMIN_TOKEN"), "--catalog needs the admin token: {err}");
        std::fs::write(layout.credentials_file(), "INGEST_API_KEY=ak_file\nADMIN_TOKEN=ak_admin\n").unwrap();
        let args = parse(&["load", "--catalog"], None, None).with_credentials(&layout).unwrap();
        assert_eq!(args.options().admin_token.as_deref(), Some("ak_admin"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
