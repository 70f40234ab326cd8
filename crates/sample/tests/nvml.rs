//! The real nvml-wrapper path against the fake libnvidia-ml: figures, per-process VRAM of the
//! tree, VRAM rising over time, and every degraded state. One test at a time: the script path
//! is an environment variable the library reads.

mod common;

use std::sync::Mutex;

use guard_contain::TreeProbe;
use guard_sample::{Sampler, SamplerConfig, VramSource};

static ENV: Mutex<()> = Mutex::new(());

fn sampler_with(script: &str, omit: bool) -> (Sampler, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("script");
    std::fs::write(&path, script).unwrap();
    std::env::set_var("FAKE_NVML_SCRIPT", &path);
    let s = Sampler::new(SamplerConfig {
        nvml_lib: Some(common::fake_nvml(omit)),
        gpu: true,
        sysfs_root: None,
    });
    (s, dir)
}

/// The tree whose VRAM counts: on Linux this test process (its /proc descendants); on Windows a
/// child in a Job Object (a process cannot watch its own job), this binary re-run as a sleeper.
struct Tree {
    probe: TreeProbe,
    pid: u32,
    #[cfg(windows)]
    _job: (Box<dyn guard_contain::Containment>, KillOnDrop),
}

#[cfg(windows)]
struct KillOnDrop(std::process::Child);
#[cfg(windows)]
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(unix)]
fn tree() -> Tree {
    let pid = std::process::id();
    Tree {
        probe: TreeProbe::Processes { root_pid: pid },
        pid,
    }
}

#[cfg(windows)]
fn tree() -> Tree {
    let c = guard_contain::create(guard_contain::Preference::Auto, "nvml-test").unwrap();
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(["sleeper", "--exact", "-q"])
        .env("FG_SLEEPER", "1");
    c.prepare(&mut cmd).unwrap();
    let child = cmd.spawn().unwrap();
    c.adopt(&child).unwrap();
    Tree {
        probe: c.probe(),
        pid: child.id(),
        _job: (c, KillOnDrop(child)),
    }
}

/// Not a test: the sleeper of `tree()` on Windows. Without `FG_SLEEPER` it does nothing.
#[test]
fn sleeper() {
    if std::env::var_os("FG_SLEEPER").is_some() {
        std::thread::sleep(std::time::Duration::from_secs(120));
    }
}

#[test]
fn gpu_figures_and_the_trees_vram() {
    let _g = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let t = tree();
    let pid = t.pid;
    let script = format!(
        "count=2\ngpu0.name=NVIDIA GeForce RTX 3060\ngpu0.total=12884901888\ngpu0.used=4294967296\ngpu0.util=87\ngpu0.temp=66\n\
gpu0.compute={pid}:3221225472,999999:1000\ngpu0.graphics={pid}:1048576\ngpu1.name=Second\ngpu1.total=1000\ngpu1.used=10\n"
    );
    let (mut s, _d) = sampler_with(&script, false);
    assert_eq!(s.gpu_status(), "ok");
    s.set_tree(Some(&t.probe));
    let sample = s.sample().clone();
    assert_eq!(sample.gpus.len(), 2);
    let g = &sample.gpus[0];
    assert_eq!(g.name, "NVIDIA GeForce RTX 3060");
    assert_eq!(g.vram_used_bytes, Some(4294967296));
    assert_eq!(g.vram_total_bytes, Some(12884901888));
    assert_eq!(g.util_percent, Some(87.0));
    assert_eq!(g.temperature_c, Some(66.0));
    // Only the tree's processes count (not pid 999999), and a pid listed for both compute
    // and graphics counts once.
    assert_eq!(sample.tree.as_ref().unwrap().vram_bytes, Some(3221225472));
    assert_eq!(sample.device_vram_bytes(), Some(4294967296 + 10));
}

#[test]
fn vram_rising_over_time() {
    let _g = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let t = tree();
    let pid = t.pid;
    let (mut s, _d) = sampler_with(&format!("count=1\ngpu0.total=8589934592\ngpu0.used=1000000+100000000\ngpu0.compute={pid}:0+100000000\n"), false);
    s.set_tree(Some(&t.probe));
    let a = s.sample().tree.as_ref().unwrap().vram_bytes.unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let b = s.sample().tree.as_ref().unwrap().vram_bytes.unwrap();
    assert!(b >= a + 20_000_000, "rising: {a} then {b}");
}

#[test]
fn degraded_states_never_stop_sampling() {
    let _g = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let t = tree();
    let missing = Sampler::new(SamplerConfig {
        nvml_lib: Some("/nonexistent/libnvidia-ml.so.1".into()),
        gpu: true,
        sysfs_root: None,
    });
    assert!(
        missing.gpu_status().starts_with("no NVIDIA GPU"),
        "{}",
        missing.gpu_status()
    );

    let (s, _d) = sampler_with("init=driver_not_loaded\n", false);
    assert_eq!(s.gpu_status(), "NVIDIA driver not loaded");
    let (s, _d) = sampler_with("init=no_permission\n", false);
    assert_eq!(s.gpu_status(), "no permission to use the NVIDIA driver");

    // One unsupported call drops just that figure.
    let (mut s, _d) = sampler_with("count=1\ngpu0.util=50\nerror.memory=not_supported\n", false);
    let smp = s.sample();
    assert_eq!(smp.gpus[0].vram_used_bytes, None);
    assert_eq!(smp.gpus[0].util_percent, Some(50.0));

    // No per-process symbols: the device's VRAM stands in, and the status says so.
    let (mut s, _d) = sampler_with("count=1\ngpu0.total=100\ngpu0.used=60\n", true);
    s.set_tree(Some(&t.probe));
    let smp = s.sample().clone();
    assert_eq!(smp.tree.as_ref().unwrap().vram_bytes, None);
    assert_eq!(
        smp.tree.as_ref().unwrap().vram_source,
        Some(VramSource::Device)
    );
    assert_eq!(smp.device_vram_bytes(), Some(60));
    assert!(
        smp.gpu_status.starts_with(
            "ok; VRAM: whole GPU (per-process figures unavailable: NVML does not support"
        ),
        "{}",
        smp.gpu_status
    );

    // Per-process call unsupported at run time: the same.
    let (mut s, _d) = sampler_with("count=1\ngpu0.total=100\ngpu0.used=60\nerror.compute=not_supported\nerror.graphics=not_supported\n", false);
    s.set_tree(Some(&t.probe));
    assert!(s
        .sample()
        .gpu_status
        .contains("VRAM: whole GPU (per-process figures unavailable"));
}

/// Under WDDM (every consumer GeForce on Windows) NVML lists the tree's processes with their
/// memory "not available". That must never read as a tree using 0 bytes: the tree's VRAM is
/// unknown, the whole GPU's stands in, and the status names the source and why. On Windows the
/// GPU performance counters come first; where they are missing (Wine has none) the status says
/// that too.
#[test]
fn wddm_not_available_is_never_a_silent_zero() {
    let _g = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let t = tree();
    let pid = t.pid;
    let (mut s, _d) = sampler_with(
        &format!("driver_model=wddm\ncount=1\ngpu0.total=8589934592\ngpu0.used=6442450944\ngpu0.compute={pid}:5368709120\ngpu0.graphics=4:1000\n"),
        false,
    );
    assert_eq!(s.gpu_status(), "ok");
    s.set_tree(Some(&t.probe));
    let smp = s.sample().clone();
    let tree = smp.tree.as_ref().unwrap();
    assert_eq!(smp.device_vram_bytes(), Some(6442450944));
    let status = &smp.gpu_status;
    if cfg!(windows) && tree.vram_source == Some(VramSource::GpuCounters) {
        // Real Windows: the counters answered (the test process holds little or no VRAM).
        assert!(tree.vram_bytes.is_some());
        assert!(status.contains("GPU counters"), "{status}");
        return;
    }
    assert_eq!(tree.vram_source, Some(VramSource::Device));
    assert_eq!(tree.vram_bytes, None, "never a silent 0");
    assert!(
        status.starts_with("ok; VRAM: whole GPU (per-process figures unavailable: NVML reports per-process memory as not available"),
        "{status}"
    );
    if cfg!(windows) {
        assert!(status.contains("Windows' GPU counters: "), "{status}");
    }
    println!("status under WDDM without per-process figures: {status}");

    // The same pids with figures: NVML's per-process source, and the status is plain "ok".
    let (mut s, _d) = sampler_with(
        &format!(
            "count=1\ngpu0.total=8589934592\ngpu0.used=6442450944\ngpu0.compute={pid}:5368709120\n"
        ),
        false,
    );
    s.set_tree(Some(&t.probe));
    let smp = s.sample().clone();
    let tree = smp.tree.as_ref().unwrap();
    assert_eq!(tree.vram_bytes, Some(5368709120));
    assert_eq!(tree.vram_source, Some(VramSource::Nvml));
    assert_eq!(smp.gpu_status, "ok");
}

#[cfg(target_os = "linux")]
#[test]
fn amd_gpus_through_sysfs() {
    let _g = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let sys = tempfile::tempdir().unwrap();
    let dev = sys.path().join("class/drm/card0/device");
    std::fs::create_dir_all(&dev).unwrap();
    std::fs::create_dir_all(sys.path().join("class/drm/card0-DP-1")).unwrap();
    std::fs::write(dev.join("gpu_busy_percent"), "42\n").unwrap();
    std::fs::write(dev.join("mem_info_vram_used"), "2147483648\n").unwrap();
    std::fs::write(dev.join("mem_info_vram_total"), "17179869184\n").unwrap();
    let mut s = Sampler::new(SamplerConfig {
        nvml_lib: Some("/nonexistent/libnvidia-ml.so.1".into()),
        gpu: true,
        sysfs_root: Some(sys.path().to_path_buf()),
    });
    assert!(s.gpu_status().contains("AMD"), "{}", s.gpu_status());
    let smp = s.sample();
    assert_eq!(smp.gpus.len(), 1);
    assert_eq!(smp.gpus[0].util_percent, Some(42.0));
    assert_eq!(smp.gpus[0].vram_used_bytes, Some(2147483648));
    assert_eq!(smp.gpus[0].vram_total_bytes, Some(17179869184));
}
