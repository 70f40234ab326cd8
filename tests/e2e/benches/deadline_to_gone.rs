//! How late after a generation's deadline the tree is gone: the CLI supervises a simulator
//! whose generation hangs, with a 1 s timeout and no graceful stop (Fooocus 2.5 without the
//! gateway), ten times. Prints the figures from the guard's own `generation_stopped` events:
//! the timer's lateness (deadline to kill decision) and the kill (decision to last process
//! reaped). cargo bench -p guard-cli --bench deadline_to_gone

#[cfg(unix)]
fn main() {
    unix::main()
}

#[cfg(not(unix))]
fn main() {
    eprintln!("deadline_to_gone drives the CLI with signals: run it on Linux");
}

#[cfg(unix)]
#[path = "../harness.rs"]
mod harness;

#[cfg(unix)]
mod unix {

    use std::time::Duration;

    use super::harness::*;

    pub fn main() {
        let mut late = Vec::new();
        let mut kill = Vec::new();
        let mut total = Vec::new();
        for _ in 0..10 {
            let task = json!({"delay": 0.1, "images": 1, "steps": 100000, "step_seconds": 0.05, "hang_in_task": true, "hang_at_step": 3});
            let inst = make_install(
                "2.5",
                &json!({"startup_seconds": 0.0, "allocate_mib": 200, "spawn_children": true, "tasks": [task]}),
            );
            let run = Running::fooocus(&inst, &["--no-gateway", "--timeout", "1s"]);
            let ev = run.wait_event("generation_stopped", Duration::from_secs(60));
            let steps = ev["steps"].as_array().unwrap();
            let k = steps.iter().find(|s| s["step"] == "kill").unwrap();
            late.push(k["at_s"].as_f64().unwrap() * 1000.0);
            kill.push(k["took_s"].as_f64().unwrap() * 1000.0);
            total.push(ev["took_s"].as_f64().unwrap() * 1000.0);
        }
        let show = |name: &str, v: &mut Vec<f64>| {
            v.sort_by(|a, b| a.total_cmp(b));
            println!(
                "{name:<44} median {:>7.2} ms   max {:>7.2} ms",
                v[v.len() / 2],
                v[v.len() - 1]
            );
        };
        println!("deadline to tree gone, 4-process tree with 200 MiB, cgroup v1, 10 runs:");
        show("timer lateness (deadline -> kill decision)", &mut late);
        show("kill (decision -> every process reaped)", &mut kill);
        show("total (deadline -> tree gone)", &mut total);
    }
}
