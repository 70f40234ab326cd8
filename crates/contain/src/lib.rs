//! Containment of the Fooocus process tree.
//!
//! One [`Container`] holds one Fooocus run and everything it spawns. The supervisor
//! (`guard-core`) only talks to the [`Containment`] trait; each OS backend lives in its own
//! `cfg(target_os)` module:
//!
//! * Linux: cgroup v2 (systemd user scope or a delegated group), cgroup v1 (memory, cpu, cpuacct,
//!   freezer, pids), and a fallback without cgroups (own process group, PR_SET_PDEATHSIG,
//!   child subreaper; the RAM cap is then enforced by the supervisor's watchdog from samples).
//! * Windows: a Job Object with KILL_ON_JOB_CLOSE.
//!
//! Contract every backend keeps:
//! * the child joins the container before it executes anything of its own
//!   ([`Containment::prepare`] runs before `exec` / the process is created suspended);
//! * [`Containment::kill_tree`] returns only when no process of the tree is left (reaped);
//! * no process of the tree outlives the guard, however the guard dies.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[cfg(target_os = "linux")]
pub mod linux;
pub mod process;
#[cfg(windows)]
pub mod windows;

/// Resource caps applied to the whole tree. `None` means "no cap".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Hard RAM cap in bytes (the kernel / job enforces it).
    pub memory_bytes: Option<u64>,
    /// Swap the tree may use on top of its RAM, in bytes.
    pub swap_bytes: Option<u64>,
    /// CPU cap in percent of one core (100 = one core, 250 = two and a half cores).
    pub cpu_percent: Option<u32>,
}

/// Which mechanism holds the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    CgroupV2,
    CgroupV1,
    /// No cgroups: process group + PDEATHSIG + subreaper + watchdog.
    Fallback,
    JobObject,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::CgroupV2 => "cgroup-v2",
            BackendKind::CgroupV1 => "cgroup-v1",
            BackendKind::Fallback => "fallback",
            BackendKind::JobObject => "job-object",
        }
    }
}

/// What the user (or a test) asks for. `Auto` picks the strongest backend available.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preference {
    #[default]
    Auto,
    CgroupV2,
    CgroupV1,
    Fallback,
}

impl std::str::FromStr for Preference {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Preference::Auto),
            "cgroup-v2" | "v2" => Ok(Preference::CgroupV2),
            "cgroup-v1" | "v1" => Ok(Preference::CgroupV1),
            "fallback" | "none" => Ok(Preference::Fallback),
            other => Err(format!(
                "unknown containment backend '{other}': use auto, cgroup-v2, cgroup-v1 or fallback"
            )),
        }
    }
}

/// Which backend was chosen and why (shown by `doctor`, in the `started` event and in the UI).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct BackendChoice {
    pub kind: BackendKind,
    /// One sentence a user can act on, e.g. "cgroup v1 memory+cpu+cpuacct+freezer+pids
    /// controllers are writable at /sys/fs/cgroup; v2 has no memory controller here".
    pub reason: String,
    /// Caps this backend cannot enforce itself (the supervisor's watchdog covers RAM).
    pub unenforced: Vec<String>,
}

/// Outcome of a tree kill.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillReport {
    /// Processes that received SIGKILL / were in the job.
    pub signalled: u32,
    /// Kill rounds (v1 loops until `cgroup.procs` is empty).
    pub rounds: u32,
    /// From the decision to the last process reaped.
    pub elapsed: Duration,
}

/// Where the sampler reads the tree's figures. Files are opened once by the sampler and read
/// with pread on every tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TreeProbe {
    /// cgroup v2 group directory (memory.current, memory.swap.current, cpu.stat, cgroup.procs).
    CgroupV2 { dir: PathBuf },
    /// cgroup v1 group directories per controller.
    CgroupV1 {
        memory: PathBuf,
        cpuacct: PathBuf,
        pids: Option<PathBuf>,
    },
    /// No cgroup: walk the descendants of `root_pid` in /proc.
    Processes { root_pid: u32 },
    /// A Windows job: its own accounting, read through the probe.
    #[cfg(windows)]
    Job(windows::JobProbe),
}

/// Figures a backend can give without the sampler (Windows job accounting).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NativeUsage {
    pub memory_bytes: u64,
    pub peak_memory_bytes: u64,
    pub cpu_time: Duration,
    pub processes: u32,
}

/// Something the container itself observed (Windows job messages, Linux OOM notifications).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ContainerEvent {
    NewProcess {
        pid: u32,
    },
    ProcessExited {
        pid: u32,
        code: Option<i64>,
        abnormal: bool,
    },
    /// The tree hit the memory cap (job memory limit message / cgroup OOM).
    MemoryLimitHit,
    /// The last process of the tree is gone.
    Empty,
}

#[derive(Debug, thiserror::Error)]
pub enum ContainError {
    #[error("{backend} containment is not available: {why}")]
    Unavailable { backend: &'static str, why: String },
    #[error("{what} failed: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Unsupported(String),
}

impl ContainError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        ContainError::Io {
            what: what.into(),
            source,
        }
    }
}

pub type Result<T, E = ContainError> = std::result::Result<T, E>;

/// One container for one Fooocus run. Dropping it kills whatever is left and removes the
/// OS object (cgroup directories, job handle).
pub trait Containment: Send + Sync {
    fn choice(&self) -> &BackendChoice;

    /// Arrange for the child spawned from `cmd` to be inside the container before it runs
    /// anything of its own (Linux: a `pre_exec` hook that joins the groups, sets its own process
    /// group and PDEATHSIG; Windows: CREATE_SUSPENDED | CREATE_NO_WINDOW).
    ///
    /// PR_SET_PDEATHSIG fires when the *thread* that spawned the child exits: callers spawn from
    /// a thread that lives as long as the guard.
    fn prepare(&self, cmd: &mut std::process::Command) -> Result<()>;

    /// Called right after a successful spawn (Windows: assign to the job, then resume;
    /// Linux fallback: remember the root pid).
    fn adopt(&self, child: &std::process::Child) -> Result<()>;

    /// Apply (or change, live) the caps.
    fn set_limits(&self, limits: &Limits) -> Result<()>;

    /// Kill every process of the tree and wait until all are gone.
    fn kill_tree(&self) -> Result<KillReport>;

    /// Pids currently in the tree.
    fn pids(&self) -> Result<Vec<u32>>;

    /// Number of OOM kills the kernel made in this container so far (0 where unknown).
    fn oom_kills(&self) -> u64;

    /// Where the sampler reads this tree's figures.
    fn probe(&self) -> TreeProbe;

    /// Accounting the container keeps itself (Windows job).
    fn native_usage(&self) -> Option<NativeUsage> {
        None
    }

    /// Events observed by the container itself; taken once by the supervisor.
    fn take_events(&self) -> Option<crossbeam_channel::Receiver<ContainerEvent>> {
        None
    }
}

/// Create a container for one run with the best backend allowed by `pref`.
/// `name` is a short label used in cgroup / job names (e.g. "fooocus").
pub fn create(pref: Preference, name: &str) -> Result<Box<dyn Containment>> {
    #[cfg(target_os = "linux")]
    {
        linux::create(pref, name)
    }
    #[cfg(windows)]
    {
        let _ = pref;
        windows::create(name)
    }
    #[cfg(not(any(target_os = "linux", windows)))]
    {
        let _ = (pref, name);
        Err(ContainError::Unsupported(
            "containment is implemented for Linux and Windows".into(),
        ))
    }
}

/// What `create` would pick, without creating anything (for `doctor`).
pub fn probe_backend(pref: Preference) -> Result<BackendChoice> {
    #[cfg(target_os = "linux")]
    {
        linux::probe_backend(pref)
    }
    #[cfg(windows)]
    {
        let _ = pref;
        windows::probe_backend()
    }
    #[cfg(not(any(target_os = "linux", windows)))]
    {
        let _ = pref;
        Err(ContainError::Unsupported(
            "containment is implemented for Linux and Windows".into(),
        ))
    }
}

/// Once at guard start: find containers left by a guard that died (crash, SIGKILL, power cut
/// of the guard alone) and kill and remove them. Returns one line per group cleaned.
pub fn clean_stale() -> Vec<String> {
    #[cfg(target_os = "linux")]
    {
        linux::clean_stale()
    }
    #[cfg(not(target_os = "linux"))]
    {
        // Job objects die with their last handle: nothing can be left behind on Windows.
        Vec::new()
    }
}

/// One line on the cgroup setup, for `doctor`.
pub fn cgroup_summary() -> String {
    #[cfg(target_os = "linux")]
    {
        let m = linux::detect::Mounts::read();
        let v1: Vec<String> = m.v1.iter().flat_map(|h| h.controllers.clone()).collect();
        match (&m.v2, v1.is_empty()) {
            (Some((mount, _)), true) => format!("cgroup v2 only, at {}", mount.display()),
            (Some((mount, _)), false) => format!(
                "hybrid: v1 controllers {} and v2 at {}",
                v1.join(", "),
                mount.display()
            ),
            (None, false) => format!("cgroup v1 only: {}", v1.join(", ")),
            (None, true) => "no cgroups mounted".into(),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        "not Linux: a Job Object holds the tree".into()
    }
}
