//! The release `jarvis` binary as a subprocess: start, readiness, memory, stop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub const SECRET: &str = "bench-webhook-secret-0123456789abcdef";

/// Builds the release binary (a no-op when it is up to date) and returns its path, next to this one.
pub fn build_jarvis(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "jarvis-service",
            "--bin",
            "jarvis",
        ])
        .current_dir(workspace)
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("building jarvis failed");
    }
    let path = workspace.join("target/release/jarvis");
    if !path.exists() {
        bail!("{} not found after the build", path.display());
    }
    Ok(path)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A running `jarvis serve`.
pub struct Service {
    child: Child,
    pub port: u16,
    /// From spawn to the first `200` of `/readyz`.
    pub start_to_ready: Duration,
}

impl Service {
    /// Starts `jarvis serve` with exactly `env` (plus the listen address and the webhook secret) and
    /// waits for `/readyz`.
    pub async fn start(binary: &Path, env: &[(&str, String)]) -> anyhow::Result<Service> {
        Self::start_with(binary, &[], env).await
    }

    /// [`Service::start`] with extra `serve` arguments (e.g. `--http-only`).
    pub async fn start_with(
        binary: &Path,
        args: &[&str],
        env: &[(&str, String)],
    ) -> anyhow::Result<Service> {
        let port = free_port();
        let started = Instant::now();
        let child = Command::new(binary)
            .arg("serve")
            .args(args)
            .env_clear()
            .env("JARVIS_LISTEN", format!("127.0.0.1:{port}"))
            .env("AMOCRM_WEBHOOK_SECRET", SECRET)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            // Logs stay out of the report (they are still formatted, as in production).
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut service = Service {
            child,
            port,
            start_to_ready: Duration::ZERO,
        };
        let http = reqwest::Client::new();
        let url = format!("{}/readyz", service.base());
        loop {
            if let Some(exit) = service.child.try_wait()? {
                bail!("jarvis exited during start: {exit}");
            }
            if let Ok(resp) = http.get(&url).send().await
                && resp.status().is_success()
            {
                break;
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("jarvis not ready after 30 s");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        service.start_to_ready = started.elapsed();
        Ok(service)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn webhook_url(&self) -> String {
        format!("{}/amocrm/webhook/{SECRET}", self.base())
    }

    /// Resident set size now and its peak so far, in KiB.
    pub fn memory(&self) -> Memory {
        memory_of(self.pid())
    }

    /// SIGTERM, then SIGKILL if it does not stop within 10 s.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

pub fn memory_of(pid: u32) -> Memory {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    Memory {
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
    }
}

/// Samples a process's RSS every 100 ms until dropped; `peak()` gives the largest sample.
pub struct RssSampler {
    peak: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let p = peak.clone();
        let task = tokio::spawn(async move {
            loop {
                let rss = memory_of(pid).rss_kib;
                p.fetch_max(rss, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        RssSampler { peak, task }
    }

    pub fn peak_kib(&self) -> u64 {
        self.peak.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// CPU time (user + system) a process has used so far, from `/proc/<pid>/stat` (clock ticks of
/// 10 ms, the Linux default).
pub fn cpu_time(pid: &str) -> std::time::Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    std::time::Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// CPU time (user + system) of the local PostgreSQL server so far: its live processes, and the
/// backends that have exited (their time is counted to the postmaster as its children's time).
/// Zero when no PostgreSQL runs on this machine.
pub fn postgres_cpu_time() -> std::time::Duration {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return std::time::Duration::ZERO;
    };
    let mut ticks = 0u64;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if !head.ends_with("(postgres") {
            continue;
        }
        let fields: Vec<u64> = rest
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        let field = |i: usize| fields.get(i).copied().unwrap_or(0);
        // utime, stime; for the postmaster (parent 1 or a non-postgres process) also cutime, cstime.
        ticks += field(11) + field(12);
        let parent = field(1).to_string();
        let parent_is_postgres = std::fs::read_to_string(format!("/proc/{parent}/stat"))
            .is_ok_and(|s| s.contains("(postgres)"));
        if !parent_is_postgres {
            ticks += field(13) + field(14);
        }
    }
    std::time::Duration::from_millis(ticks * 10)
}
