//! `fooocus-guard-cli monitor`: samples of a running tree (a PID and its descendants, or the
//! Fooocus of an install), one JSON object per line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use clap::Args;
use guard_contain::TreeProbe;
use guard_sample::{Sampler, SamplerConfig};

#[derive(Args)]
pub struct MonitorArgs {
    /// The root of the tree to watch.
    #[arg(long, conflicts_with = "install")]
    pid: Option<u32>,
    /// Watch the running Fooocus of this install.
    #[arg(long, value_name = "DIR")]
    install: Option<PathBuf>,
    /// Time between samples (e.g. 1s, 250ms).
    #[arg(long, default_value = "1s")]
    interval: String,
    /// Stop after N samples.
    #[arg(long)]
    count: Option<u64>,
    /// One JSON object per line (the default prints a short text line).
    #[arg(long)]
    json: bool,
    #[arg(long, value_name = "PATH")]
    nvml: Option<PathBuf>,
}

/// The guard's own group holds the tree when the pid is in one: its counters are exact.
fn probe_for(pid: u32) -> TreeProbe {
    #[cfg(target_os = "linux")]
    {
        let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        let m = guard_contain::linux::detect::Mounts::read();
        for line in cg.lines() {
            let mut it = line.splitn(3, ':');
            let (_, ctrls, path) = (it.next(), it.next().unwrap_or(""), it.next().unwrap_or(""));
            if ctrls.split(',').any(|c| c == "memory") && path.contains("/fooocus-guard/") {
                if let Some(mem) = m.v1_for("memory") {
                    let dir = guard_contain::linux::detect::join_cgroup(&mem.mount, path);
                    let cpuacct = m
                        .v1_for("cpuacct")
                        .map(|h| guard_contain::linux::detect::join_cgroup(&h.mount, path))
                        .filter(|d| d.exists())
                        .unwrap_or_else(|| dir.clone());
                    return TreeProbe::CgroupV1 {
                        memory: dir,
                        cpuacct,
                        pids: None,
                    };
                }
            }
        }
    }
    TreeProbe::Processes { root_pid: pid }
}

/// The pid of a running Fooocus of `dir` (one look through /proc at start, never per tick).
fn find_install_pid(dir: &std::path::Path) -> Option<u32> {
    let inst = guard_fooocus::install::inspect(dir, None).ok()?;
    let entry = inst.entry.to_string_lossy().into_owned();
    let mut best = None;
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd);
        if cmd.split('\0').any(|a| {
            a == entry
                || a.ends_with("fooocus_sim.py") && cmd.contains(&*inst.root.to_string_lossy())
        }) {
            best = Some(best.map_or(pid, |b: u32| b.min(pid)));
        }
    }
    best
}

pub fn run(a: MonitorArgs) -> ExitCode {
    let interval = match guard_core::units::parse_duration(&a.interval) {
        Ok(Some(d)) => d,
        _ => {
            return crate::fail(format!(
                "--interval: '{}' is not a duration like 1s or 250ms",
                a.interval
            ))
        }
    };
    let pid = match (a.pid, &a.install) {
        (Some(p), _) => Some(p),
        (None, Some(dir)) => match find_install_pid(dir) {
            Some(p) => Some(p),
            None => {
                return crate::fail(format!(
                    "no running Fooocus of {} was found: start it, or give --pid",
                    dir.display()
                ))
            }
        },
        (None, None) => None,
    };
    if let Some(p) = pid {
        if !std::path::Path::new(&format!("/proc/{p}")).exists() {
            return crate::fail(format!("--pid {p}: no such process"));
        }
    }
    let mut s = Sampler::new(SamplerConfig {
        nvml_lib: a.nvml.clone(),
        gpu: true,
        sysfs_root: None,
    });
    let probe = pid.map(probe_for);
    s.set_tree(probe.as_ref());
    // The first CPU figure needs a previous reading.
    s.sample();
    let mut n = 0u64;
    let mut next = Instant::now() + interval.min(Duration::from_millis(200));
    loop {
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        next += interval;
        let sample = s.sample();
        let ts = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        if a.json {
            let mut v = serde_json::to_value(sample).expect("serialise");
            v["ts"] = serde_json::Value::String(ts);
            if let Some(o) = v.as_object_mut() {
                o.remove("ts_ms");
            }
            println!("{v}");
        } else {
            let t = sample.tree.as_ref();
            println!(
                "{ts}  tree: cpu {:.0}%  ram {}  procs {}   system: cpu {:.0}%  ram {}/{}   gpu: {}",
                t.map(|t| t.cpu_percent).unwrap_or(0.0),
                guard_core::units::format_size(t.map(|t| t.ram_bytes).unwrap_or(0)),
                t.map(|t| t.processes).unwrap_or(0),
                sample.system.cpu_percent,
                guard_core::units::format_size(sample.system.ram_used_bytes),
                guard_core::units::format_size(sample.system.ram_total_bytes),
                sample.gpu_status
            );
        }
        n += 1;
        if a.count.is_some_and(|c| n >= c) {
            return ExitCode::SUCCESS;
        }
        if let Some(p) = pid {
            if !std::path::Path::new(&format!("/proc/{p}")).exists() {
                eprintln!("fooocus-guard: process {p} is gone");
                return ExitCode::SUCCESS;
            }
        }
    }
}
