//! Where things live: the repository, `.stack/` state, logs, pid files, caches.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

#[derive(Debug, Clone)]
pub struct Layout {
    /// Repository root (the workspace directory).
    pub root: PathBuf,
    /// `.stack/` under the root: all local state.
    pub stack: PathBuf,
}

impl Layout {
    pub fn discover() -> Self {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = manifest.parent().unwrap_or(manifest).to_path_buf();
        let stack = root.join(".stack");
        Self { root, stack }
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.stack.join("logs")
    }

    pub fn pids_dir(&self) -> PathBuf {
        self.stack.join("pids")
    }

    /// `.stack/logs/<component>.log`
    pub fn log(&self, component: &str) -> PathBuf {
        self.logs_dir().join(format!("{component}.log"))
    }

    /// `.stack/pids/<component>.pid`
    pub fn pid_file(&self, component: &str) -> PathBuf {
        self.pids_dir().join(format!("{component}.pid"))
    }

    /// `.stack/<component>/`: a server's data and generated configuration.
    pub fn state_dir(&self, component: &str) -> PathBuf {
        self.stack.join(component)
    }

    /// `.stack/mode`: `docker` when `up` used Docker Compose.
    pub fn mode_file(&self) -> PathBuf {
        self.stack.join("mode")
    }

    /// `.stack/credentials.env`: development credentials handed to the services.
    pub fn credentials_file(&self) -> PathBuf {
        self.stack.join("credentials.env")
    }

    pub fn target_dir(&self) -> PathBuf {
        match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) => {
                let dir = PathBuf::from(dir);
                if dir.is_absolute() { dir } else { self.root.join(dir) }
            }
            None => self.root.join("target"),
        }
    }

    /// `target/debug/<name>`
    pub fn binary(&self, name: &str) -> PathBuf {
        self.target_dir().join("debug").join(name)
    }

    /// `~/.cache/analytics-stack/`: downloads shared by every clone.
    pub fn cache_dir(&self) -> Result<PathBuf> {
        local_stack::cache_dir()
    }

    pub fn ensure_dirs(&self) -> Result<()> {
        for dir in [self.stack.clone(), self.logs_dir(), self.pids_dir()] {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(())
    }

    /// A path as shown to people: relative to the root when inside it.
    pub fn show(&self, path: &Path) -> String {
        path.strip_prefix(&self.root).map(|p| p.display().to_string()).unwrap_or_else(|_| path.display().to_string())
    }
}
