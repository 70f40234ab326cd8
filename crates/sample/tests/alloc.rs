//! Sampling a tree from its cgroup allocates nothing per tick once warmed up.
#![cfg(target_os = "linux")]

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
fn no_allocation_per_tick_in_the_steady_state() {
    let c = create(Preference::CgroupV1, "sample-alloc").unwrap();
    let mut cmd = std::process::Command::new("sleep");
    cmd.arg("30");
    c.prepare(&mut cmd).unwrap();
    let mut child = cmd.spawn().unwrap();
    c.adopt(&child).unwrap();
    let mut s = Sampler::new(SamplerConfig::default());
    s.set_tree(Some(&c.probe()));
    for _ in 0..5 {
        s.sample();
    }
    let before = ALLOCS.load(Ordering::Relaxed);
    for _ in 0..1000 {
        std::hint::black_box(s.sample());
    }
    let after = ALLOCS.load(Ordering::Relaxed);
    c.kill_tree().unwrap();
    let _ = child.wait();
    assert_eq!(after - before, 0, "allocations in 1000 ticks");
}
