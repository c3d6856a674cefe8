//! Background processes: spawning with a log file, pid files, liveness, stopping.

use std::{
    fs::{File, OpenOptions},
    io::{Read, Seek, SeekFrom, Write},
    os::unix::process::CommandExt,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, bail};

/// Opens `log` for appending, creating it (and its directory) when missing.
pub fn open_log(log: &Path) -> Result<File> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    OpenOptions::new().create(true).append(true).open(log).with_context(|| format!("opening {}", log.display()))
}

/// Appends a marker line, naming the program that writes it (`xtask`, a test
/// binary), to a log so that each run is easy to find.
pub fn log_marker(log: &Path, text: &str) {
    if let Ok(mut file) = open_log(log) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let _ = writeln!(file, "==== {} [unix time {now}]: {text} ====", program_name());
    }
}

fn program_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_name().map(|name| name.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "local-stack".to_string())
}

/// How a background process relates to the one that starts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detach {
    /// In its own process group: Ctrl-C on the starter leaves it running and
    /// it outlives the starter (the stack of `cargo xtask up`).
    Yes,
    /// In the starter's process group: Ctrl-C reaches it too (scratch servers of tests).
    No,
}

/// Starts `cmd` in the background: stdin from /dev/null, stdout and stderr
/// appended to `log`, in its own process group (so Ctrl-C on xtask leaves it
/// running). Returns its pid; the process outlives xtask.
pub fn spawn_background(cmd: &mut Command, log: &Path) -> Result<u32> {
    spawn_logged(cmd, log, Detach::Yes)
}

/// Starts `cmd` with stdin from /dev/null and stdout and stderr appended to
/// `log`; returns its pid (exited children are reaped by [`is_running`]).
pub fn spawn_logged(cmd: &mut Command, log: &Path, detach: Detach) -> Result<u32> {
    log_marker(log, &format!("starting {}", describe(cmd)));
    let out = open_log(log)?;
    let err = out.try_clone().with_context(|| format!("duplicating {}", log.display()))?;
    cmd.stdin(Stdio::null()).stdout(Stdio::from(out)).stderr(Stdio::from(err));
    if detach == Detach::Yes {
        cmd.process_group(0);
    }
    let child = cmd.spawn().with_context(|| format!("could not start {}", describe(cmd)))?;
    Ok(child.id())
}

/// Runs `cmd` to completion with its output appended to `log`; a failure
/// names the command and the log, and shows the log's tail.
pub fn run_logged(cmd: &mut Command, log: &Path, what: &str) -> Result<()> {
    log_marker(log, &format!("running {}", describe(cmd)));
    let out = open_log(log)?;
    let err = out.try_clone()?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .status()
        .with_context(|| format!("{what}: could not run {}", describe(cmd)))?;
    if !status.success() {
        bail!("{what} failed ({status}); read {}\n{}", log.display(), indent_tail(log, 25));
    }
    Ok(())
}

/// `program arg1 arg2` for messages.
pub fn describe(cmd: &Command) -> String {
    let mut text = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

pub fn write_pid(path: &Path, pid: u32) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, format!("{pid}\n")).with_context(|| format!("writing {}", path.display()))
}

pub fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether `pid` is a live process (zombies count as dead; our own exited
/// children are reaped on the way).
pub fn is_running(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if raw <= 0 {
        return false;
    }
    // Reap it if it is an exited child of ours; harmless (ECHILD) otherwise.
    let mut status = 0;
    // SAFETY: waitpid with WNOHANG on a specific pid only inspects/reaps that child.
    let reaped = unsafe { libc::waitpid(raw, &mut status, libc::WNOHANG) };
    if reaped == raw {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state letter follows the parenthesised command name.
            let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
            !matches!(state, Some('Z') | Some('X') | None)
        }
        Err(_) if Path::new("/proc/self").exists() => false,
        // SAFETY: signal 0 only checks that the process exists.
        Err(_) => unsafe { libc::kill(raw, 0) == 0 },
    }
}

/// The process's command line, arguments joined by spaces.
pub fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(raw.split(|b| *b == 0).map(|part| String::from_utf8_lossy(part)).collect::<Vec<_>>().join(" "))
}

/// The pid recorded in `pid_file` if that process still runs and its command
/// line contains `marker` (protects against pid reuse after a reboot).
pub fn live_pid(pid_file: &Path, marker: &str) -> Option<u32> {
    let pid = read_pid(pid_file)?;
    if !is_running(pid) {
        return None;
    }
    match cmdline(pid) {
        Some(cmd) if cmd.contains(marker) => Some(pid),
        Some(_) => None,
        None => Some(pid),
    }
}

/// Sends `signal`, waits up to `grace` for the process to exit, then SIGKILL.
/// Returns true when SIGKILL was needed.
pub fn terminate(pid: u32, signal: i32, grace: Duration) -> Result<bool> {
    let raw = i32::try_from(pid).context("pid out of range")?;
    if !is_running(pid) {
        return Ok(false);
    }
    // SAFETY: plain kill(2) on a pid we recorded and verified.
    if unsafe { libc::kill(raw, signal) } != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ESRCH) {
            return Ok(false);
        }
        bail!("could not signal pid {pid}: {err}");
    }
    if wait_exit(pid, grace) {
        return Ok(false);
    }
    // SAFETY: as above.
    unsafe { libc::kill(raw, libc::SIGKILL) };
    if !wait_exit(pid, Duration::from_secs(5)) {
        bail!("pid {pid} survived SIGKILL");
    }
    Ok(true)
}

/// Polls until `pid` is gone or `timeout` passes; true when gone.
pub fn wait_exit(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !is_running(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    !is_running(pid)
}

/// The last `lines` lines of a file (reads at most its last 256 KiB).
pub fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = File::open(path) else {
        return format!("({} does not exist yet)", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(256 * 1024);
    let _ = file.seek(SeekFrom::Start(start));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// [`tail`] indented for inclusion under an error message.
pub fn indent_tail(path: &Path, lines: usize) -> String {
    let text = tail(path, lines);
    let body: Vec<String> = text.lines().map(|l| format!("    | {l}")).collect();
    format!("  last lines of {}:\n{}", path.display(), body.join("\n"))
}

/// A system account (for running PostgreSQL as `postgres`).
#[derive(Debug, Clone, Copy)]
pub struct Account {
    pub uid: u32,
    pub gid: u32,
}

pub fn lookup_account(name: &str) -> Option<Account> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 4 && fields[0] == name)
            .then(|| Some(Account { uid: fields[2].parse().ok()?, gid: fields[3].parse().ok()? }))
            .flatten()
    })
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Finds an executable on PATH or in the sbin directories non-root PATHs lack.
pub fn find_executable(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin"].map(std::path::PathBuf::from);
    std::env::split_paths(&path).chain(extra).map(|dir| dir.join(name)).find(|candidate| {
        use std::os::unix::fs::PermissionsExt;
        candidate.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_runs_and_exited_child_does_not() {
        assert!(is_running(std::process::id()));
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        assert!(wait_exit(pid, Duration::from_secs(5)), "an exited child (zombie) counts as gone");
        let _ = child.wait();
    }

    #[test]
    fn tail_returns_the_last_lines() {
        let path = std::env::temp_dir().join(format!("local-stack-tail-{}.log", std::process::id()));
        std::fs::write(&path, "a\nb\nc\nd\n").unwrap();
        assert_eq!(tail(&path, 2), "c\nd");
        assert_eq!(tail(&path, 10), "a\nb\nc\nd");
        std::fs::remove_file(&path).unwrap();
        assert!(tail(&path, 2).contains("does not exist"));
    }
}
