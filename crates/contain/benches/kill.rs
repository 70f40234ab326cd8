//! Tree-kill latency per backend: from the decision to the last process reaped, for 6 small
//! processes and for 6 processes of 200 MiB each (there the time is the kernel freeing memory).
//! cargo bench -p guard-contain --bench kill

use std::process::{Command, Stdio};
use std::time::Instant;

use guard_contain::{create, Preference};

fn tree(c: &dyn guard_contain::Containment, mib: usize) -> std::process::Child {
    let script = format!(
        "import os, time\nfor _ in range(5):\n    if os.fork() == 0:\n        break\nb = bytearray({mib} * 1024 * 1024)\nfor i in range(0, len(b), 4096): b[i] = 1\nprint('up', flush=True)\ntime.sleep(1000)\n"
    );
    let mut cmd = Command::new("python3");
    cmd.args(["-c", &script]).stdout(Stdio::piped());
    c.prepare(&mut cmd).unwrap();
    let mut child = cmd.spawn().unwrap();
    c.adopt(&child).unwrap();
    use std::io::BufRead;
    let mut r = std::io::BufReader::new(child.stdout.take().unwrap());
    for _ in 0..6 {
        let mut l = String::new();
        r.read_line(&mut l).unwrap();
    }
    child
}

fn main() {
    println!(
        "{:<12} {:>22} {:>22}",
        "backend", "6 small (ms, median)", "6 x 200 MiB (ms)"
    );
    for (name, pref) in [
        ("cgroup-v1", Preference::CgroupV1),
        ("cgroup-v2*", Preference::CgroupV2),
        ("fallback", Preference::Fallback),
    ] {
        let mut cols = Vec::new();
        for mib in [0usize, 200] {
            let mut v = Vec::new();
            for _ in 0..5 {
                let c = create(pref, "bench-kill").unwrap();
                let mut child = tree(&*c, mib);
                let t = Instant::now();
                c.kill_tree().unwrap();
                let _ = child.wait();
                v.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            v.sort_by(|a, b| a.total_cmp(b));
            cols.push(v[v.len() / 2]);
        }
        println!("{name:<12} {:>22.1} {:>22.1}", cols[0], cols[1]);
    }
    println!(
        "* cgroup v2 here is the hybrid unified hierarchy (cgroup.kill, no memory controller)"
    );
}
