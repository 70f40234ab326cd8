//! The sampler on Windows (CI: under Wine 8): the machine's figures, and the tree's from its Job
//! Object -- the processes in the job and their working sets. The tree is this test binary
//! re-run as a child that holds 96 MiB. (CPU time from the job's accounting is 0 under Wine:
//! `crates/contain/tests/windows_job.rs` checks it on real Windows.)
#![cfg(windows)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use guard_sample::{RamSource, Sampler, SamplerConfig};

/// Not a test: the child's entry point. Without `FG_HOLD_MIB` it does nothing.
#[test]
fn holder() {
    let Some(mib) = std::env::var("FG_HOLD_MIB")
        .ok()
        .and_then(|m| m.parse::<usize>().ok())
    else {
        return;
    };
    let held = vec![1u8; mib << 20];
    println!(
        "holding {}",
        held.iter().map(|&b| b as usize).sum::<usize>() >> 20
    );
    std::io::stdout().flush().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(120));
}

#[test]
fn the_job_tree_and_the_machine_are_sampled() {
    let c = guard_contain::create(guard_contain::Preference::Auto, "sample-test").unwrap();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["holder", "--exact", "--nocapture", "-q"])
        .env("FG_HOLD_MIB", "96")
        .stdout(Stdio::piped());
    c.prepare(&mut cmd).unwrap();
    let mut child = cmd.spawn().unwrap();
    c.adopt(&child).unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("holding") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the child ended");
    }

    let mut s = Sampler::new(SamplerConfig::default());
    s.set_tree(Some(&c.probe()));
    s.sample();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let smp = s.sample().clone();
    assert!(smp.system.ram_total_bytes > 1 << 30, "{:?}", smp.system);
    assert!(
        smp.system.ram_used_bytes > 0 && smp.system.ram_used_bytes < smp.system.ram_total_bytes
    );
    assert!(
        (0.0..=100.0).contains(&smp.system.cpu_percent),
        "{:?}",
        smp.system
    );
    let tree = smp.tree.expect("the job's figures");
    assert_eq!(tree.ram_source, RamSource::Job);
    assert!(tree.processes >= 1, "{tree:?}");
    assert!(
        tree.ram_bytes >= 96 << 20,
        "the child's 96 MiB are resident: {tree:?}"
    );
    // The commit the RAM cap (the job's memory limit) counts: at least what the child touched.
    let commit = tree.commit_bytes.expect("the job's commit");
    assert!(
        commit >= 96 << 20,
        "the child's 96 MiB are committed: {tree:?}"
    );
    println!(
        "job commit {commit} bytes, working set {} bytes",
        tree.ram_bytes
    );

    // No tree: no tree figures.
    s.set_tree(None);
    assert!(s.sample().tree.is_none());
    drop(c);
    let _ = child.wait();
}
