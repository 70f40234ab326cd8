//! GPUs: NVIDIA through NVML (nvml-wrapper, loaded at run time from a configurable path) and AMD
//! through amdgpu's sysfs on Linux. Each missing piece becomes a status, never an error.

use std::path::PathBuf;

use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::Nvml;

use crate::{GpuSample, SamplerConfig};

/// Why GPU figures are (partly) missing, in the user's words.
pub type GpuStatus = String;

pub struct Gpus {
    nvml: Option<Nvml>,
    names: Vec<String>,
    status: String,
    /// Per-process VRAM is not available (unsupported call or symbol).
    per_process: bool,
    amd: Vec<PathBuf>,
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
            status: "GPU sampling off".into(),
            per_process: true,
            amd: Vec::new(),
        };
        if !cfg.gpu {
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
                g.status = if count == 0 {
                    "no NVIDIA GPU (the driver lists none)".into()
                } else {
                    "ok".into()
                };
                g.nvml = Some(n);
            }
            Err(e) => g.status = init_status(&e),
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
                    g.status = "ok (AMD through sysfs; VRAM per process not supported)".into();
                    g.per_process = false;
                    g.names = cards
                        .iter()
                        .map(|c| format!("AMD GPU ({})", c.file_name().unwrap().to_string_lossy()))
                        .collect();
                    g.amd = cards;
                }
            }
        }
        g
    }

    pub fn status(&self) -> &str {
        &self.status
    }

    /// Fill `out` (one entry per GPU, reused) and return the VRAM used by `pids`.
    pub fn read(&mut self, out: &mut Vec<GpuSample>, pids: &[u32]) -> Option<u64> {
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
            return None;
        }
        let nvml = self.nvml.as_ref()?;
        let mut tree_vram: Option<u64> = if self.per_process && !pids.is_empty() {
            Some(0)
        } else {
            None
        };
        let mut dropped: Option<&'static str> = None;
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
            if self.per_process && !pids.is_empty() {
                let mut seen: u64 = 0;
                let mut ok = false;
                // A process with both a compute and a graphics context is listed twice with the
                // same figure: count each pid once.
                let mut counted: [(u32, u64); 64] = [(0, 0); 64];
                let mut n = 0usize;
                for list in [
                    d.running_compute_processes(),
                    d.running_graphics_processes(),
                ] {
                    let Ok(procs) = list else { continue };
                    ok = true;
                    for p in procs.iter().filter(|p| pids.contains(&p.pid)) {
                        let UsedGpuMemory::Used(b) = p.used_gpu_memory else {
                            continue;
                        };
                        if let Some((_, prev)) =
                            counted[..n].iter_mut().find(|(pid, _)| *pid == p.pid)
                        {
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
                    tree_vram = tree_vram.map(|v| v + seen);
                } else {
                    self.per_process = false;
                    tree_vram = None;
                    dropped = Some("ok (VRAM per process not supported: the device's VRAM is used for the cap)");
                }
            }
        }
        if let Some(s) = dropped {
            self.status = s.into();
        }
        tree_vram
    }
}
