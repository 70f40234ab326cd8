//! Allocations per tick with a GPU through the real nvml-wrapper and the fake libnvidia-ml.
//! nvml-wrapper returns each per-process list as a fresh Vec, so a tick with per-process VRAM
//! cannot be allocation-free; this pins down how many it costs (its own binary: the counting
//! allocator must not see other tests' threads).
#![cfg(target_os = "linux")]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use guard_contain::{create, Preference};
use guard_sample::{Sampler, SamplerConfig};

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        System.realloc(p, l, n)
    }
}

#[global_allocator]
static A: Counting = Counting;

#[test]
fn gpu_ticks_allocate_only_nvml_wrappers_process_lists() {
    let c = create(Preference::CgroupV1, "sample-alloc-gpu").unwrap();
    let mut cmd = std::process::Command::new("sleep");
    cmd.arg("30");
    c.prepare(&mut cmd).unwrap();
    let mut child = cmd.spawn().unwrap();
    c.adopt(&child).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script");
    std::fs::write(
        &script,
        format!(
            "count=1\ngpu0.name=Fake\ngpu0.total=8000000000\ngpu0.used=3000000000\n\
gpu0.util=50\ngpu0.temp=60\ngpu0.compute={}:2000000000\n",
            child.id()
        ),
    )
    .unwrap();
    std::env::set_var("FAKE_NVML_SCRIPT", &script);
    let mut s = Sampler::new(SamplerConfig {
        nvml_lib: Some(common::fake_nvml(false)),
        gpu: true,
        sysfs_root: None,
    });
    s.set_tree(Some(&c.probe()));
    for _ in 0..5 {
        s.sample();
    }
    let ticks = 200u64;
    let before = ALLOCS.load(Ordering::Relaxed);
    let mut vram = None;
    for _ in 0..ticks {
        vram = std::hint::black_box(s.sample())
            .tree
            .as_ref()
            .and_then(|t| t.vram_bytes);
    }
    let per_tick = (ALLOCS.load(Ordering::Relaxed) - before) as f64 / ticks as f64;
    c.kill_tree().unwrap();
    let _ = child.wait();
    println!("allocations per tick with 1 GPU and per-process VRAM: {per_tick}");
    assert_eq!(vram, Some(2_000_000_000), "the tree's VRAM came through");
    // One Vec per process list (compute, graphics) per GPU, nothing of the sampler's own.
    assert!(per_tick <= 2.0, "{per_tick} allocations per tick");
}
