//! The sampler thread: samples the tree and the machine every interval (twice as often while a
//! generation runs), reports usage to the limit policy, keeps the graphs' history, and
//! publishes each sample to the UI.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam_channel::{RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use guard_contain::TreeProbe;
use guard_history::{HistoryPoint, Point, SampleHistory};
use guard_sample::{Sample, Sampler, SamplerConfig, VramSource};

use crate::config::diff::{ConfigDiff, Setting};
use crate::config::Config;
use crate::policy::Usage;
use crate::supervisor::{Guard, MachineMemory, Sampled};

pub struct Sampling {
    interval_ms: Arc<AtomicU64>,
    /// Dropped or sent to, the thread ends at once: it waits on this between samples instead
    /// of sleeping, so a stop never waits out an interval.
    stop: Sender<()>,
    history: Arc<Mutex<SampleHistory>>,
    /// The settings the thread reads besides the interval: the limits (for the RAM cap's
    /// warning) and the GPU library.
    cfg: Arc<Mutex<Config>>,
    /// The GPU library changed: the thread opens it at its next tick.
    reload_gpu: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampling {
    pub fn set_interval_ms(&self, ms: u64) {
        self.interval_ms.store(ms.max(100), Ordering::Relaxed);
    }

    /// Take the sampler's part of saved settings: the interval, the limits, the NVML library.
    pub fn apply(&self, new: &Config, diff: &ConfigDiff) {
        if diff.changed(Setting::SamplingInterval) {
            self.set_interval_ms(new.sampling_interval_ms);
        }
        if diff.changed(Setting::Limits) || diff.changed(Setting::NvmlLibrary) {
            *self.cfg.lock().unwrap() = new.clone();
        }
        if diff.changed(Setting::NvmlLibrary) {
            self.reload_gpu.store(true, Ordering::Relaxed);
        }
    }

    pub fn history(&self, range_s: u64) -> Vec<HistoryPoint> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        self.history.lock().unwrap().query(range_s, now)
    }

    pub fn stop(&self) {
        let _ = self.stop.try_send(());
    }

    /// Whether the sampler's thread has ended (after [`Sampling::stop`]).
    pub fn ended(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl Drop for Sampling {
    /// The thread has ended when this returns: nothing samples or publishes after its owner.
    fn drop(&mut self) {
        self.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The policy's view of a sample.
pub fn usage_of(s: &Sample) -> Option<Usage> {
    let t = s.tree.as_ref()?;
    Some(Usage {
        ram_bytes: t.ram_bytes,
        swap_bytes: t.swap_bytes,
        tree_vram_bytes: t.vram_bytes,
        device_vram_bytes: s.device_vram_bytes(),
        cpu_percent: t.cpu_percent,
    })
}

fn point_of(s: &Sample) -> Point {
    let gpu = s
        .gpus
        .iter()
        .filter_map(|g| g.util_percent)
        .fold(None, |a: Option<f64>, v| Some(a.map_or(v, |a| a.max(v))));
    Point {
        ts_ms: s.ts_ms,
        cpu_percent: s.tree.as_ref().map(|t| t.cpu_percent).unwrap_or(0.0) as f32,
        ram_bytes: s.tree.as_ref().map(|t| t.ram_bytes).unwrap_or(0) as f64,
        gpu_util: gpu.map(|g| g as f32),
        vram_bytes: s
            .tree
            .as_ref()
            .and_then(|t| t.vram_bytes)
            .or_else(|| s.device_vram_bytes())
            .map(|v| v as f64),
    }
}

pub fn sampler_config(cfg: &Config) -> SamplerConfig {
    SamplerConfig {
        nvml_lib: cfg.nvml_library.as_ref().map(Into::into),
        gpu: true,
        sysfs_root: None,
    }
}

/// `data_dir`: where the commit Fooocus reaches at its start is kept (Windows; None: not kept).
pub fn spawn(guard: &Guard, cfg: &Config, data_dir: Option<std::path::PathBuf>) -> Sampling {
    let interval_ms = Arc::new(AtomicU64::new(cfg.sampling_interval_ms.max(100)));
    let (stop, stopped) = crossbeam_channel::bounded::<()>(1);
    let history = Arc::new(Mutex::new(SampleHistory::new()));
    let shared_cfg = Arc::new(Mutex::new(cfg.clone()));
    let reload_gpu = Arc::new(AtomicBool::new(false));
    let (g, iv, h, scfg, reload) = (
        guard.clone(),
        interval_ms.clone(),
        history.clone(),
        shared_cfg.clone(),
        reload_gpu.clone(),
    );
    let thread = std::thread::Builder::new()
        .name("fooocus-guard-sampler".into())
        .spawn(move || {
            let gpu = sampler_config(&scfg.lock().unwrap());
            let mut sampler = Sampler::new(gpu);
            // What the status says of the GPU; sent with the next sample when it changes.
            let mut gpu_said = String::new();
            let mut current: Option<(TreeProbe, u32)> = None;
            let mut said_whole_gpu = false;
            let mut commit = crate::commit::CommitWatch::default();
            let mut next = Instant::now();
            // Until the next sample is due, or the owner stops (or drops) the sampler.
            let wait = |until: Instant| match stopped.recv_deadline(until) {
                Err(RecvTimeoutError::Timeout) => true,
                Ok(()) | Err(RecvTimeoutError::Disconnected) => false,
            };
            loop {
                if reload.swap(false, Ordering::Relaxed) {
                    // A new NVML library: a new sampler opens it (the old one closes its own).
                    // Its CPU figures need two readings, so this tick only primes it: a
                    // skipped point rather than a false 0 % in the graphs and the policy.
                    let gpu = sampler_config(&scfg.lock().unwrap());
                    sampler = Sampler::new(gpu);
                    sampler.set_tree(current.as_ref().map(|(p, _)| p));
                    let _ = sampler.sample();
                    said_whole_gpu = false;
                    next = Instant::now() + Duration::from_millis(iv.load(Ordering::Relaxed));
                    if !wait(next) {
                        break;
                    }
                    continue;
                }
                // Before the tree is read: a sample begun after Fooocus fell asleep measures
                // the memory it gave back.
                let taken = Instant::now();
                let (tree, generating) = g.tree();
                if tree != current {
                    sampler.set_tree(tree.as_ref().map(|(p, _)| p));
                    current = tree;
                    commit.reset();
                }
                let s = sampler.sample();
                // Windows: the commit Fooocus reaches while it starts, kept for the settings'
                // warning about a RAM cap below it.
                if let Some(c) = s.tree.as_ref().and_then(|t| t.commit_bytes) {
                    if let Some(m) = commit.observe(g.status().state, Some(c), s.ts_ms) {
                        if let Some(dir) = &data_dir {
                            let _ = crate::commit::save(dir, &m);
                        }
                        let warning = crate::commit::cap_warning(&scfg.lock().unwrap(), Some(&m));
                        if let Some(w) = warning {
                            g.warn(&w.message);
                        }
                    }
                }
                h.lock().unwrap().push(point_of(s));
                // Once, in the console and the events too: a VRAM cap on the whole GPU counts
                // the desktop's and other programs' VRAM (Windows' WDDM without GPU counters).
                let source = s.tree.as_ref().and_then(|t| t.vram_source);
                if source == Some(VramSource::Device) && !said_whole_gpu && !s.gpus.is_empty() {
                    said_whole_gpu = true;
                    g.warn(&format!("GPU: {}", s.gpu_status));
                }
                let gpu_status = (gpu_said != s.gpu_status).then(|| {
                    gpu_said.clone_from(&s.gpu_status);
                    gpu_said.clone()
                });
                g.sampled(Sampled {
                    usage: usage_of(s),
                    memory: MachineMemory {
                        taken,
                        ram_used_bytes: s.system.ram_used_bytes,
                        vram_used_bytes: s.device_vram_bytes(),
                        tree_ram_bytes: s.tree.as_ref().map(|t| t.ram_bytes),
                    },
                    gpu_status,
                    sample: Arc::new(s.clone()),
                });
                let mut every = Duration::from_millis(iv.load(Ordering::Relaxed));
                if generating {
                    every = (every / 2).max(Duration::from_millis(100));
                }
                next += every;
                let now = Instant::now();
                if next < now {
                    next = now + every;
                }
                if !wait(next) {
                    break;
                }
            }
        });
    Sampling {
        interval_ms,
        stop,
        history,
        cfg: shared_cfg,
        reload_gpu,
        thread: thread.ok(),
    }
}

/// One line on the cgroup setup, for `doctor` (the OS code lives in guard-contain).
pub use guard_contain::cgroup_summary;

/// The GPU status the sampler would report.
pub fn gpu_summary(lib: Option<&std::path::Path>) -> String {
    let s = Sampler::new(SamplerConfig {
        nvml_lib: lib.map(Into::into),
        gpu: true,
        sysfs_root: None,
    });
    s.gpu_status().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::GuardOptions;

    /// A stop ends the thread at once, not after the interval it was waiting out: the owner
    /// (the app closing, a test) is not held up to a minute by a long interval.
    #[test]
    fn a_stop_does_not_wait_out_the_interval() {
        let cfg = Config {
            sampling_interval_ms: 600_000,
            ..Config::default()
        };
        let guard = Guard::start(GuardOptions::new(cfg.clone(), None)).unwrap();
        let sampling = spawn(&guard, &cfg, None);
        // The first sample is taken at once; after it the thread waits ten minutes.
        std::thread::sleep(Duration::from_millis(300));
        assert!(!sampling.ended());
        sampling.stop();
        let asked = Instant::now();
        while !sampling.ended() && asked.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            sampling.ended(),
            "the sampler still runs 30 s after its stop"
        );
        guard.shutdown();
    }
}
