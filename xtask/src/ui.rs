//! Progress output: spinners on a terminal, plain lines elsewhere (CI, pipes).

use std::{
    io::IsTerminal,
    sync::OnceLock,
    time::{Duration, Instant},
};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

fn multi() -> &'static MultiProgress {
    static MULTI: OnceLock<MultiProgress> = OnceLock::new();
    MULTI.get_or_init(MultiProgress::new)
}

/// Spinners only when a person is watching: stderr is a terminal and not CI.
pub fn interactive() -> bool {
    static INTERACTIVE: OnceLock<bool> = OnceLock::new();
    *INTERACTIVE.get_or_init(|| std::io::stderr().is_terminal() && std::env::var_os("CI").is_none())
}

/// Writes a line to stdout; a closed pipe (`| head`) only stops the output.
pub fn out(text: impl AsRef<str>) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{}", text.as_ref());
}

/// Prints a line without tearing any running spinner.
pub fn line(message: impl AsRef<str>) {
    if interactive() {
        let _ = multi().println(message.as_ref());
    } else {
        out(message.as_ref());
    }
}

/// One long-running step with a spinner and its elapsed time.
pub struct Step {
    label: String,
    bar: Option<ProgressBar>,
    started: Instant,
}

impl Step {
    pub fn start(label: impl Into<String>) -> Self {
        let label = label.into();
        let bar = if interactive() {
            let bar = multi().add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner:.cyan} {prefix} {msg:.dim} [{elapsed}]")
                    .expect("valid template")
                    .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ "),
            );
            bar.set_prefix(label.clone());
            bar.enable_steady_tick(Duration::from_millis(100));
            Some(bar)
        } else {
            out(format!("… {label}"));
            None
        };
        Self { label, bar, started: Instant::now() }
    }

    /// Updates the detail shown next to the spinner (silent without a terminal).
    pub fn set_message(&self, message: impl Into<String>) {
        if let Some(bar) = &self.bar {
            bar.set_message(message.into());
        }
    }

    pub fn ok(self, detail: impl AsRef<str>) {
        let elapsed = self.started.elapsed();
        let detail = detail.as_ref();
        let separator = if detail.is_empty() { "" } else { " " };
        let text = format!("✓ {}{separator}{detail} ({:.1}s)", self.label, elapsed.as_secs_f64());
        self.finish(text);
    }

    pub fn skip(self, detail: impl AsRef<str>) {
        let text = format!("• {}: {}", self.label, detail.as_ref());
        self.finish(text);
    }

    pub fn fail(self, detail: impl AsRef<str>) {
        let text = format!("✗ {}: {}", self.label, detail.as_ref());
        self.finish(text);
    }

    fn finish(self, text: String) {
        match &self.bar {
            Some(bar) => {
                bar.finish_and_clear();
                multi().remove(bar);
                let _ = multi().println(text);
            }
            None => out(text),
        }
    }
}

/// Waits for every task and fails with all their errors together, so one
/// component failing does not hide another's.
pub async fn join_all(mut tasks: tokio::task::JoinSet<anyhow::Result<()>>) -> anyhow::Result<()> {
    let mut errors = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(err)) => errors.push(format!("{err:#}")),
            Err(err) => errors.push(format!("waiting task failed: {err}")),
        }
    }
    if !errors.is_empty() {
        anyhow::bail!("{}", errors.join("\n\n"));
    }
    Ok(())
}
