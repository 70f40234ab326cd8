//! Shared pieces of the end-to-end suites: the CLI binary, fake Fooocus installs made by the
//! simulator, and reading the guard's JSON-lines events. Each suite includes this file as a
//! module (`#[path]`): they are guard-cli's integration tests (crates/cli/Cargo.toml), so
//! `CARGO_BIN_EXE_fooocus-guard-cli` names the binary cargo built for them.
// The CLI under signals, the Python simulator and cgroups: a Linux suite. Windows has its own
// (crates/contain/tests/windows_job.rs, crates/core/tests/windows_supervise.rs) run under Wine.
#![cfg(unix)]
// Each suite uses its own part of the harness.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use serde_json::{json, Value};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub fn simulator() -> PathBuf {
    root().join("tests/sim/fooocus_sim.py")
}

/// The CLI binary: these suites are guard-cli's integration tests, so cargo builds it first and
/// says where it is.
pub fn cli() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fooocus-guard-cli"))
}

/// A fake Fooocus install made by the simulator, with a scenario.
pub struct FakeInstall {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

pub fn make_install(version: &str, scenario: &Value) -> FakeInstall {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Fooocus");
    let scen = dir.path().join("scenario.json");
    std::fs::write(&scen, serde_json::to_vec_pretty(scenario).unwrap()).unwrap();
    let out = Command::new("python3")
        .arg(simulator())
        .args(["make-install"])
        .arg(&path)
        .args(["--sim-version", version, "--layout", "venv", "--scenario"])
        .arg(&scen)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "make-install failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    FakeInstall { dir, path }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `fooocus-guard-cli run` with its events file.
pub struct Running {
    pub child: Child,
    pub events: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Running {
    /// Supervise `inst` on a free port, with these further arguments.
    pub fn fooocus(inst: &FakeInstall, args: &[&str]) -> Running {
        let port = free_port().to_string();
        let path = inst.path.to_str().unwrap();
        let mut all = vec!["--install", path, "--port", &port];
        all.extend_from_slice(args);
        Self::start(&all)
    }

    pub fn start(args: &[&str]) -> Running {
        Self::start_with_config("", args)
    }

    /// Start with these settings in the config file (TOML).
    pub fn start_with_config(config: &str, args: &[&str]) -> Running {
        Self::start_in(tempfile::tempdir().unwrap(), config, args)
    }

    /// Start with `tmp` as the home of its events, config and data folder (`tmp/data`).
    pub fn start_in(tmp: tempfile::TempDir, config: &str, args: &[&str]) -> Running {
        let events = tmp.path().join("events.jsonl");
        std::fs::write(&events, "").unwrap();
        let child = Command::new(cli())
            .arg("run")
            .arg("--events")
            .arg(&events)
            .arg("--config")
            .arg(config_file(tmp.path(), config))
            .args(args)
            .env("FOOOCUS_GUARD_DATA_DIR", tmp.path().join("data"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the CLI");
        Running {
            child,
            events,
            _tmp: tmp,
        }
    }

    pub fn events(&self) -> Vec<Value> {
        read_events(&self.events)
    }

    /// Wait until an event matching `pred` has been written; panics with every event seen.
    pub fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.events().into_iter().find(|e| pred(e)) {
                return e;
            }
            if Instant::now() > deadline {
                panic!("no {what} within {timeout:?}; events:\n{}", self.dump());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_event(&self, name: &str, timeout: Duration) -> Value {
        self.wait_for(name, timeout, |e| e["event"] == name)
    }

    pub fn dump(&self) -> String {
        self.events()
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Wait for the CLI to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "the CLI did not exit within {timeout:?}; events:\n{}",
                    self.dump()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The guard's data dir (history, logs).
    pub fn data_dir(&self) -> PathBuf {
        self._tmp.path().join("data")
    }

    /// SIGTERM, and wait until the CLI has stopped Fooocus and exited.
    pub fn stop(&mut self) {
        self.signal(libc::SIGTERM);
        self.wait_exit(LONG);
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.signal(libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(20);
            while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn config_file(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("config.toml");
    std::fs::write(&p, text).unwrap();
    p
}

pub fn read_events(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("event line is not JSON ({e}): {l}"))
        })
        .collect()
}

pub fn pid_alive(pid: u32) -> bool {
    // A zombie has exited: it counts as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit(')')
            .next()
            .map(|r| !r.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Pids listed in a file the simulator wrote (one per line), once it has at least `n`.
pub fn wait_pids(file: &Path, n: usize, timeout: Duration) -> Vec<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        let pids: Vec<u32> = std::fs::read_to_string(file)
            .unwrap_or_default()
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|t| t.parse().ok())
            .collect();
        if pids.len() >= n {
            return pids;
        }
        assert!(
            Instant::now() < deadline,
            "the simulator wrote only {pids:?} to {}",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn wait_gone(pids: &[u32], timeout: Duration) -> Result<(), Vec<u32>> {
    let deadline = Instant::now() + timeout;
    loop {
        let alive: Vec<u32> = pids.iter().copied().filter(|p| pid_alive(*p)).collect();
        if alive.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(alive);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub const LONG: Duration = Duration::from_secs(60);

/// The fake libnvidia-ml (tests/fake-nvml), built once per test process.
pub fn fake_nvml() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fooocus-guard-e2e-nvml-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let lib = dir.join("libnvidia-ml.so.1");
    if !lib.exists() {
        let st = Command::new("gcc")
            .args(["-shared", "-fPIC", "-O2", "-o"])
            .arg(&lib)
            .arg(root().join("tests/fake-nvml/fake_nvml.c"))
            .status()
            .expect("gcc runs");
        assert!(st.success());
    }
    lib
}
