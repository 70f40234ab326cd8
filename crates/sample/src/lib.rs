//! Samples of the Fooocus tree and the machine: CPU, RAM, swap, processes, GPU and VRAM.
//!
//! The tree is read from its cgroup's counters with the files kept open (pread on every tick,
//! no allocation), or, with no cgroup, from /proc for the root pid's descendants only -- never a
//! scan of every process on the machine. GPUs come through NVML (nvml-wrapper) and, on Linux,
//! amdgpu's sysfs; every missing piece degrades to a status string and never stops sampling.

mod gpu;
mod gpu_counters;
#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as os;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as os;

use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use guard_contain::TreeProbe;
use serde::{Deserialize, Serialize};

pub use gpu::{GpuStatus, Gpus};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum RamSource {
    /// The cgroup's own charge (exact, shared pages counted once).
    #[default]
    Cgroup,
    /// Sum of the processes' RSS (shared pages counted in each process).
    Rss,
    /// The Windows job's accounting.
    Job,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct TreeSample {
    /// Percent of one core (200 = two busy cores).
    pub cpu_percent: f64,
    /// Percent of the whole machine.
    pub cpu_percent_machine: f64,
    pub ram_bytes: u64,
    pub ram_source: RamSource,
    pub swap_bytes: u64,
    /// Windows: the memory the job's processes have committed (reserved, in RAM or the page
    /// file): what the job's memory limit, the RAM cap, counts. None elsewhere.
    #[serde(default)]
    pub commit_bytes: Option<u64>,
    pub processes: u32,
    /// VRAM used by the tree's processes, where per-process figures exist (see `vram_source`).
    pub vram_bytes: Option<u64>,
    /// Where the VRAM the cap compares comes from; None without a GPU that reports VRAM.
    #[serde(default)]
    pub vram_source: Option<VramSource>,
}

/// Where the tree's VRAM comes from (docs/ipc.md `TreeSample.vram_source`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum VramSource {
    /// NVML's per-process figures (Linux; Windows only with a GPU in TCC mode).
    Nvml,
    /// Windows' GPU performance counters: each process's dedicated GPU memory, as Task Manager
    /// shows it (the only per-process figure under WDDM, every consumer GeForce).
    GpuCounters,
    /// No per-process figure: the VRAM in use on the whole GPU stands in (`vram_bytes` is None
    /// and the cap counts other programs' VRAM too).
    Device,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SystemSample {
    pub cpu_percent: f64,
    pub ram_used_bytes: u64,
    pub ram_total_bytes: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct GpuSample {
    pub index: u32,
    pub name: String,
    pub util_percent: Option<f64>,
    pub vram_used_bytes: Option<u64>,
    pub vram_total_bytes: Option<u64>,
    pub temperature_c: Option<f64>,
}

/// One tick (docs/ipc.md `Sample`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Sample {
    pub ts_ms: i64,
    /// None while no tree runs.
    pub tree: Option<TreeSample>,
    pub system: SystemSample,
    pub gpus: Vec<GpuSample>,
    pub gpu_status: String,
}

impl Sample {
    /// VRAM in use on all devices (what the VRAM cap falls back to without per-process figures).
    pub fn device_vram_bytes(&self) -> Option<u64> {
        let v: Vec<u64> = self.gpus.iter().filter_map(|g| g.vram_used_bytes).collect();
        (!v.is_empty()).then(|| v.iter().sum())
    }
}

#[derive(Clone, Debug, Default)]
pub struct SamplerConfig {
    /// libnvidia-ml (nvml.dll) to load; None = the loader's search path.
    pub nvml_lib: Option<PathBuf>,
    /// Sample GPUs at all.
    pub gpu: bool,
    /// Root of sysfs for amdgpu (tests point it at a fake tree).
    pub sysfs_root: Option<PathBuf>,
}

/// The sampler. Call [`Sampler::set_tree`] when Fooocus (re)starts, then [`Sampler::sample`]
/// every tick.
pub struct Sampler {
    #[cfg(any(target_os = "linux", windows))]
    sys: os::System,
    #[cfg(any(target_os = "linux", windows))]
    tree: Option<os::Tree>,
    gpus: Gpus,
    sample: Sample,
    last: Option<(Instant, u64)>,
    cores: f64,
    tree_pids: Vec<u32>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Sampler {
    pub fn new(cfg: SamplerConfig) -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1) as f64;
        Sampler {
            #[cfg(any(target_os = "linux", windows))]
            sys: os::System::open(),
            #[cfg(any(target_os = "linux", windows))]
            tree: None,
            gpus: Gpus::new(&cfg),
            sample: Sample::default(),
            last: None,
            cores,
            tree_pids: Vec::with_capacity(256),
        }
    }

    /// Watch a new tree (or none). Opens its counter files once.
    pub fn set_tree(&mut self, probe: Option<&TreeProbe>) {
        self.last = None;
        #[cfg(any(target_os = "linux", windows))]
        {
            self.tree = probe.and_then(os::Tree::open);
        }
        #[cfg(not(any(target_os = "linux", windows)))]
        let _ = probe;
    }

    pub fn gpu_status(&self) -> &str {
        self.gpus.status()
    }

    /// Take one sample. The returned reference is valid until the next call.
    pub fn sample(&mut self) -> &Sample {
        let now = Instant::now();
        self.sample.ts_ms = now_ms();
        #[cfg(any(target_os = "linux", windows))]
        {
            self.sys.read(&mut self.sample.system);
            let mut has_tree = false;
            if let Some(tree) = self.tree.as_mut() {
                let t = self.sample.tree.get_or_insert_with(TreeSample::default);
                let cpu_ns = tree.read(t, &mut self.tree_pids);
                if let Some((at, ns)) = self.last {
                    let dt = now.duration_since(at).as_secs_f64();
                    if dt > 0.0 {
                        t.cpu_percent = (cpu_ns.saturating_sub(ns)) as f64 / 1e9 / dt * 100.0;
                        t.cpu_percent_machine = t.cpu_percent / self.cores;
                    }
                }
                self.last = Some((now, cpu_ns));
                has_tree = true;
            }
            if !has_tree {
                self.sample.tree = None;
            }
        }
        let tree = self.sample.tree.as_mut();
        let pids: &[u32] = if tree.is_some() { &self.tree_pids } else { &[] };
        let (vram, source) = self.gpus.read(&mut self.sample.gpus, pids);
        if let Some(t) = self.sample.tree.as_mut() {
            t.vram_bytes = vram;
            t.vram_source = source;
        }
        if self.sample.gpu_status != self.gpus.status() {
            self.sample.gpu_status = self.gpus.status().to_string();
        }
        &self.sample
    }
}
