//! The sampler's figures against the kernel's own, on a tree the test builds in a real cgroup
//! (v1 here) and without one (/proc): within 2 %.
#![cfg(target_os = "linux")]

use std::process::{Command, Stdio};
use std::time::Duration;

use guard_contain::{create, Preference, TreeProbe};
use guard_sample::{RamSource, Sampler, SamplerConfig};

const TREE: &str = "import os, time\nb = bytearray(120 * 1024 * 1024)\nfor i in range(0, len(b), 4096): b[i] = 1\nif os.fork() == 0:\n    c = bytearray(60 * 1024 * 1024)\n    for i in range(0, len(c), 4096): c[i] = 1\n    time.sleep(1000)\nprint('ready', flush=True)\ntime.sleep(1000)\n";

fn start(c: &dyn guard_contain::Containment) -> std::process::Child {
    let mut cmd = Command::new("python3");
    cmd.args(["-c", TREE]).stdout(Stdio::piped());
    c.prepare(&mut cmd).unwrap();
    let mut child = cmd.spawn().unwrap();
    c.adopt(&child).unwrap();
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // The forked child allocates on its own clock.
    std::thread::sleep(Duration::from_millis(800));
    child
}

fn within(a: f64, b: f64, pct: f64) -> bool {
    (a - b).abs() <= b.abs() * pct / 100.0
}

#[test]
fn cgroup_figures_match_the_kernel() {
    let c = create(Preference::CgroupV1, "sample-accuracy").unwrap();
    let mut child = start(&*c);
    let TreeProbe::CgroupV1 { memory, .. } = c.probe() else {
        panic!()
    };
    let mut s = Sampler::new(SamplerConfig::default());
    s.set_tree(Some(&c.probe()));
    let t = s.sample().tree.clone().unwrap();
    let usage: f64 = std::fs::read_to_string(memory.join("memory.usage_in_bytes"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let stat = std::fs::read_to_string(memory.join("memory.stat")).unwrap();
    let inactive: f64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("total_inactive_file "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(t.ram_source, RamSource::Cgroup);
    assert!(
        within(t.ram_bytes as f64, usage - inactive, 2.0),
        "sampler {} kernel {}",
        t.ram_bytes,
        usage - inactive
    );
    assert!(
        t.ram_bytes > 170 << 20,
        "the tree holds ~180 MiB: {}",
        t.ram_bytes
    );
    assert_eq!(t.processes, 2);
    c.kill_tree().unwrap();
    let _ = child.wait();
}

#[test]
fn rss_figures_match_proc() {
    let c = create(Preference::Fallback, "sample-rss").unwrap();
    let mut child = start(&*c);
    let mut s = Sampler::new(SamplerConfig::default());
    s.set_tree(Some(&TreeProbe::Processes {
        root_pid: child.id(),
    }));
    let t = s.sample().tree.clone().unwrap();
    let pids = guard_contain::linux::descendants(child.id());
    let kernel: u64 = pids
        .iter()
        .map(|p| {
            let st = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap();
            st.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .unwrap()
                .trim()
                .trim_end_matches(" kB")
                .trim()
                .parse::<u64>()
                .unwrap()
                * 1024
        })
        .sum();
    assert_eq!(t.ram_source, RamSource::Rss);
    assert_eq!(t.processes, 2);
    assert!(
        within(t.ram_bytes as f64, kernel as f64, 2.0),
        "sampler {} kernel {}",
        t.ram_bytes,
        kernel
    );
    c.kill_tree().unwrap();
    let _ = child.wait();
}

#[test]
fn cpu_percent_of_a_busy_tree() {
    let c = create(Preference::CgroupV1, "sample-cpu").unwrap();
    let mut cmd = Command::new("python3");
    cmd.args(["-c", "while True: pass"]);
    c.prepare(&mut cmd).unwrap();
    let mut child = cmd.spawn().unwrap();
    c.adopt(&child).unwrap();
    let mut s = Sampler::new(SamplerConfig::default());
    s.set_tree(Some(&c.probe()));
    // The kernel's own figure for the process, over the same two seconds: what it got of a
    // core depends on how busy the machine is, the sampler must agree with it either way.
    let ticks = || -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap();
        let f: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        // utime and stime: fields 14 and 15, the 12th and 13th after the name.
        (f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()) as f64
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let (k0, t0) = (ticks(), std::time::Instant::now());
    s.sample();
    std::thread::sleep(Duration::from_secs(2));
    let t = s.sample().tree.clone().unwrap();
    let kernel = (ticks() - k0) / hz / t0.elapsed().as_secs_f64() * 100.0;
    assert!(
        t.cpu_percent > 0.0 && t.cpu_percent < 105.0 && (t.cpu_percent - kernel).abs() < 15.0,
        "sampler {:.1} %, the kernel's figure {kernel:.1} %",
        t.cpu_percent
    );
    let sys = s.sample().system.clone();
    assert!(
        sys.ram_total_bytes > 0
            && sys.ram_used_bytes > 0
            && sys.ram_used_bytes < sys.ram_total_bytes
    );
    c.kill_tree().unwrap();
    let _ = child.wait();
}
