//! GPUs: NVIDIA through NVML (nvml-wrapper, loaded at run time from a configurable path) and AMD
//! through amdgpu's sysfs on Linux. Each missing piece becomes a status, never an error.

use std::path::PathBuf;

use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::Nvml;

use crate::{GpuSample, SamplerConfig, VramSource};

/// Why GPU figures are (partly) missing, in the user's words.
pub type GpuStatus = String;

pub struct Gpus {
    nvml: Option<Nvml>,
    names: Vec<String>,
    /// "ok" or why the GPUs cannot be read at all.
    base_status: String,
    /// `base_status` plus where the tree's VRAM comes from.
    status: String,
    /// Why NVML's per-process figures cannot be used (unsupported, or "not available" as under
    /// WDDM); None while they can. Once set it stays: the driver will not change its mind.
    nvml_per_process_unusable: Option<&'static str>,
    #[cfg(windows)]
    counters: Counters,
    source: Option<VramSource>,
    amd: Vec<PathBuf>,
}

/// Windows' GPU performance counters, opened when a tree first needs them.
#[cfg(windows)]
enum Counters {
    Untried,
    Open(crate::gpu_counters::GpuCounters),
    Failed(String),
}

/// The user-facing reason for an NVML failure at start.
const NO_NVML: &str = if cfg!(windows) {
    "no NVIDIA GPU (nvml.dll not found)"
} else {
    "no NVIDIA GPU (libnvidia-ml not found)"
};

pub fn init_status(e: &NvmlError) -> String {
    match e {
        NvmlError::LibloadingError(_) => NO_NVML.into(),
        NvmlError::DriverNotLoaded => "NVIDIA driver not loaded".into(),
        NvmlError::NoPermission => "no permission to use the NVIDIA driver".into(),
        NvmlError::LibraryNotFound => NO_NVML.into(),
        other => format!("NVIDIA GPU unusable: {other}"),
    }
}

/// The loader's search path first (libnvidia-ml.so.1; nvml.dll in System32 with current drivers),
/// then, on Windows, where older drivers installed it.
fn default_nvml() -> Result<Nvml, NvmlError> {
    let first = Nvml::init();
    #[cfg(windows)]
    if first.is_err() {
        let program_files =
            std::env::var_os("ProgramW6432").unwrap_or_else(|| r"C:\Program Files".into());
        let old = PathBuf::from(program_files).join(r"NVIDIA Corporation\NVSMI\nvml.dll");
        if old.exists() {
            return Nvml::builder().lib_path(old.as_os_str()).init();
        }
    }
    first
}

impl Gpus {
    pub fn new(cfg: &SamplerConfig) -> Gpus {
        let mut g = Gpus {
            nvml: None,
            names: Vec::new(),
            base_status: "GPU sampling off".into(),
            status: String::new(),
            nvml_per_process_unusable: None,
            #[cfg(windows)]
            counters: Counters::Untried,
            source: None,
            amd: Vec::new(),
        };
        if !cfg.gpu {
            g.status = g.base_status.clone();
            return g;
        }
        let init = match &cfg.nvml_lib {
            Some(p) => Nvml::builder().lib_path(p.as_os_str()).init(),
            None => default_nvml(),
        };
        match init {
            Ok(n) => {
                let count = n.device_count().unwrap_or(0);
                for i in 0..count {
                    let name = n
                        .device_by_index(i)
                        .and_then(|d| d.name())
                        .unwrap_or_else(|_| format!("GPU {i}"));
                    g.names.push(name);
                }
                g.base_status = if count == 0 {
                    "no NVIDIA GPU (the driver lists none)".into()
                } else {
                    "ok".into()
                };
                g.nvml = Some(n);
            }
            Err(e) => g.base_status = init_status(&e),
        }
        #[cfg(target_os = "linux")]
        if g.nvml.is_none() {
            let root = cfg
                .sysfs_root
                .clone()
                .unwrap_or_else(|| PathBuf::from("/sys"));
            if let Ok(rd) = std::fs::read_dir(root.join("class/drm")) {
                let mut cards: Vec<PathBuf> = rd
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        let n = p
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        n.starts_with("card")
                            && !n.contains('-')
                            && p.join("device/mem_info_vram_total").exists()
                    })
                    .collect();
                cards.sort();
                if !cards.is_empty() {
                    g.base_status = "ok (AMD through sysfs; VRAM per process not supported)".into();
                    g.names = cards
                        .iter()
                        .map(|c| format!("AMD GPU ({})", c.file_name().unwrap().to_string_lossy()))
                        .collect();
                    g.amd = cards;
                }
            }
        }
        g.status = g.base_status.clone();
        g
    }

    pub fn status(&self) -> &str {
        &self.status
    }

    /// Fill `out` (one entry per GPU, reused) and return the VRAM used by `pids` with where it
    /// comes from. Never a silent 0: without a per-process figure the VRAM is None and the
    /// source `Device` (the cap then uses the whole GPU's, and the status says so).
    pub fn read(
        &mut self,
        out: &mut Vec<GpuSample>,
        pids: &[u32],
    ) -> (Option<u64>, Option<VramSource>) {
        out.truncate(self.names.len());
        while out.len() < self.names.len() {
            let i = out.len();
            out.push(GpuSample {
                index: i as u32,
                name: self.names[i].clone(),
                ..Default::default()
            });
        }
        if !self.amd.is_empty() {
            for (g, card) in out.iter_mut().zip(&self.amd) {
                let read = |f: &str| {
                    std::fs::read_to_string(card.join("device").join(f))
                        .ok()
                        .and_then(|s| s.trim().parse::<u64>().ok())
                };
                g.util_percent = read("gpu_busy_percent").map(|v| v as f64);
                g.vram_used_bytes = read("mem_info_vram_used");
                g.vram_total_bytes = read("mem_info_vram_total");
            }
            let source = (!pids.is_empty()).then_some(VramSource::Device);
            return (None, source);
        }
        let Some(nvml) = self.nvml.as_ref() else {
            return (None, None);
        };
        let mut nvml_tree: Option<u64> = None;
        for g in out.iter_mut() {
            let Ok(d) = nvml.device_by_index(g.index) else {
                continue;
            };
            match d.memory_info() {
                Ok(m) => {
                    g.vram_used_bytes = Some(m.used);
                    g.vram_total_bytes = Some(m.total);
                }
                Err(_) => {
                    g.vram_used_bytes = None;
                    g.vram_total_bytes = None;
                }
            }
            g.util_percent = d.utilization_rates().ok().map(|u| u.gpu as f64);
            g.temperature_c = d.temperature(TemperatureSensor::Gpu).ok().map(|t| t as f64);
            if self.nvml_per_process_unusable.is_none() && !pids.is_empty() {
                match tree_vram_of(&d, pids) {
                    Ok(v) => nvml_tree = Some(nvml_tree.unwrap_or(0) + v),
                    Err(why) => self.nvml_per_process_unusable = Some(why),
                }
            }
        }
        if pids.is_empty() {
            return (None, None);
        }
        if self.nvml_per_process_unusable.is_some() {
            nvml_tree = None;
        }
        let counters = self.counters_read(pids);
        // Both can work on Windows with a TCC GPU beside a WDDM one: the larger never undercounts.
        let (tree, source) = match (nvml_tree, counters) {
            (Some(a), Some(b)) if b > a => (Some(b), VramSource::GpuCounters),
            (Some(a), _) => (Some(a), VramSource::Nvml),
            (None, Some(b)) => (Some(b), VramSource::GpuCounters),
            (None, None) => (None, VramSource::Device),
        };
        if self.source != Some(source) {
            self.source = Some(source);
            self.status = self.status_for(source);
        }
        (tree, Some(source))
    }

    fn status_for(&self, source: VramSource) -> String {
        match source {
            VramSource::Nvml => self.base_status.clone(),
            VramSource::GpuCounters => {
                format!(
                    "{}; VRAM per process from Windows' GPU counters",
                    self.base_status
                )
            }
            VramSource::Device => {
                #[cfg_attr(not(windows), allow(unused_mut))]
                let mut why = format!(
                    "NVML {}",
                    self.nvml_per_process_unusable.unwrap_or("has none")
                );
                #[cfg(windows)]
                if let Counters::Failed(e) = &self.counters {
                    why = format!("{why}; Windows' GPU counters: {e}");
                }
                format!(
                    "{}; VRAM: whole GPU (per-process figures unavailable: {why}). The VRAM cap counts other programs' VRAM too",
                    self.base_status
                )
            }
        }
    }

    /// The tree's dedicated GPU memory from Windows' GPU counters; None where they do not work.
    #[cfg(windows)]
    fn counters_read(&mut self, pids: &[u32]) -> Option<u64> {
        if let Counters::Untried = self.counters {
            self.counters = match crate::gpu_counters::GpuCounters::open() {
                Ok(c) => Counters::Open(c),
                Err(e) => Counters::Failed(e),
            };
        }
        let Counters::Open(c) = &mut self.counters else {
            return None;
        };
        match c.read(pids) {
            Ok(v) => Some(v),
            Err(e) => {
                self.counters = Counters::Failed(e);
                None
            }
        }
    }

    #[cfg(not(windows))]
    fn counters_read(&mut self, _pids: &[u32]) -> Option<u64> {
        None
    }
}

/// The VRAM NVML reports for `pids` on one device, or why it reports none.
fn tree_vram_of(d: &nvml_wrapper::Device, pids: &[u32]) -> Result<u64, &'static str> {
    let mut seen: u64 = 0;
    let mut ok = false;
    // A process with both a compute and a graphics context is listed twice with the same
    // figure: count each pid once.
    let mut counted: [(u32, u64); 64] = [(0, 0); 64];
    let mut n = 0usize;
    for list in [
        d.running_compute_processes(),
        d.running_graphics_processes(),
    ] {
        let Ok(procs) = list else { continue };
        ok = true;
        // Under WDDM every process is listed with its memory "not available": counting only the
        // figures would read 0 for a tree that fills the GPU.
        if procs
            .iter()
            .any(|p| matches!(p.used_gpu_memory, UsedGpuMemory::Unavailable))
        {
            return Err("reports per-process memory as not available (as under the Windows display driver model, WDDM)");
        }
        for p in procs.iter().filter(|p| pids.contains(&p.pid)) {
            let UsedGpuMemory::Used(b) = p.used_gpu_memory else {
                continue;
            };
            if let Some((_, prev)) = counted[..n].iter_mut().find(|(pid, _)| *pid == p.pid) {
                if b > *prev {
                    seen += b - *prev;
                    *prev = b;
                }
            } else {
                if n < counted.len() {
                    counted[n] = (p.pid, b);
                    n += 1;
                }
                seen += b;
            }
        }
    }
    if ok {
        Ok(seen)
    } else {
        Err("does not support per-process memory on this driver")
    }
}
