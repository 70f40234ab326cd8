//! What one sample costs: the guard's sampler (cgroup counters kept open; /proc without a
//! cgroup) against a sysinfo full process refresh, for a 6- and a 200-process tree, and the
//! sampler's CPU share at 1 Hz and 10 Hz. Prints figures; asserts nothing.
//!
//! cargo bench -p guard-sample --bench sample_cost

#[cfg(target_os = "linux")]
fn main() {
    linux::main()
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("sample_cost compares the cgroup and /proc paths with sysinfo: run it on Linux");
}

#[cfg(target_os = "linux")]
mod linux {

    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use guard_contain::{create, Preference, TreeProbe};
    use guard_sample::{Sampler, SamplerConfig};

    fn tree(c: &dyn guard_contain::Containment, n: usize) -> std::process::Child {
        let script = format!(
        "import os, sys, time\nfor _ in range({}):\n    if os.fork() == 0:\n        time.sleep(1000)\n        os._exit(0)\nprint('up', flush=True)\ntime.sleep(1000)\n",
        n - 1
    );
        let mut cmd = Command::new("python3");
        cmd.args(["-c", &script]).stdout(Stdio::piped());
        c.prepare(&mut cmd).unwrap();
        let mut child = cmd.spawn().unwrap();
        c.adopt(&child).unwrap();
        use std::io::BufRead;
        let mut l = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut l)
            .unwrap();
        child
    }

    fn median_us(runs: usize, mut f: impl FnMut()) -> f64 {
        let mut v: Vec<f64> = (0..runs)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    }

    fn thread_cpu() -> Duration {
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
        let tv = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
        };
        tv(ru.ru_utime) + tv(ru.ru_stime)
    }

    pub fn main() {
        println!(
            "{:<34} {:>12} {:>12}",
            "one sample of the tree", "6 processes", "200 processes"
        );
        let mut rows: Vec<(String, f64, f64)> = Vec::new();
        let mut cgroup = [0.0; 2];
        let mut rss = [0.0; 2];
        let mut full = [0.0; 2];
        for (i, n) in [6usize, 200].into_iter().enumerate() {
            let c = create(Preference::CgroupV1, "bench").unwrap();
            let mut child = tree(&*c, n);
            let mut s = Sampler::new(SamplerConfig::default());
            s.set_tree(Some(&c.probe()));
            s.sample();
            cgroup[i] = median_us(2000, || {
                std::hint::black_box(s.sample());
            });
            s.set_tree(Some(&TreeProbe::Processes {
                root_pid: child.id(),
            }));
            rss[i] = median_us(200, || {
                std::hint::black_box(s.sample());
            });
            let mut sys = sysinfo::System::new().expect("sysinfo");
            full[i] = median_us(50, || {
                sys.refresh_processes(sysinfo::ProcessesToUpdate::All, true);
                sys.refresh_memory();
                sys.refresh_cpu_usage();
            });
            c.kill_tree().unwrap();
            let _ = child.wait();
        }
        rows.push((
            "guard sampler, cgroup counters (µs)".into(),
            cgroup[0],
            cgroup[1],
        ));
        rows.push((
            "guard sampler, /proc of the tree (µs)".into(),
            rss[0],
            rss[1],
        ));
        rows.push(("sysinfo full refresh (µs)".into(), full[0], full[1]));
        rows.push((
            "ratio full refresh / cgroup".into(),
            full[0] / cgroup[0],
            full[1] / cgroup[1],
        ));
        for (name, a, b) in rows {
            println!("{name:<34} {a:>12.1} {b:>12.1}");
        }

        // CPU share: sample at 10 Hz for 5 s on this thread; 1 Hz does a tenth of the same work.
        let c = create(Preference::CgroupV1, "bench-rate").unwrap();
        let mut child = tree(&*c, 6);
        let mut s = Sampler::new(SamplerConfig {
            gpu: false,
            ..Default::default()
        });
        s.set_tree(Some(&c.probe()));
        let (t0, c0) = (Instant::now(), thread_cpu());
        let mut next = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            std::hint::black_box(s.sample());
            next += Duration::from_millis(100);
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        let share = (thread_cpu() - c0).as_secs_f64() / t0.elapsed().as_secs_f64() * 100.0;
        println!(
        "sampler CPU at 10 Hz: {share:.4} % of one core; at 1 Hz: {:.4} % (a tenth of the ticks)",
        share / 10.0
    );
        c.kill_tree().unwrap();
        let _ = child.wait();
    }
}
