//! The supervision issue's "done when", on this machine's real cgroups: the CLI runs the
//! Fooocus simulator contained, with caps, and leaves nothing behind.
#![cfg(unix)]

use std::time::Duration;

#[path = "harness.rs"]
mod harness;
use harness::*;

fn scenario_with_children(pids: &std::path::Path) -> Value {
    json!({"startup_seconds": 0.01, "spawn_children": true, "pids_file": pids})
}

#[test]
fn a_tree_over_its_ram_cap_is_killed_by_the_kernel_and_reported_as_oom() {
    let inst = make_install(
        "2.5",
        &json!({"startup_seconds": 0.01, "allocate_mib": 400}),
    );
    let mut run = Running::fooocus(
        &inst,
        &["--memory", "150M", "--restart", "never", "--no-gateway"],
    );
    let exited = run.wait_event("exited", LONG);
    assert_eq!(exited["oom"], true, "events:\n{}", run.dump());
    assert_eq!(exited["signal"], 9);
    let breach = run.wait_event("limit_breached", LONG);
    assert_eq!(breach["limit"], "memory");
    assert_eq!(breach["action"], "killed_by_kernel");
    assert_eq!(breach["configured"], (150u64 << 20) as f64);
    run.wait_exit(LONG);
}

#[test]
fn stopping_the_guard_leaves_no_process_setsid_grandchild_included() {
    for backend in ["auto", "fallback"] {
        let tmp = tempfile::tempdir().unwrap();
        let pids_file = tmp.path().join("pids");
        let inst = make_install("2.5", &scenario_with_children(&pids_file));
        let mut run = Running::fooocus(&inst, &["--containment", backend, "--no-gateway"]);
        run.wait_event("ready", LONG);
        let pids = wait_pids(&pids_file, 3, LONG);
        let started = run.wait_event("started", LONG);
        let main_pid = started["pid"].as_u64().unwrap() as u32;
        run.signal(libc::SIGTERM);
        let st = run.wait_exit(LONG);
        assert!(st.success() || st.code().is_some(), "{st:?}");
        let mut all = pids.clone();
        all.push(main_pid);
        wait_gone(&all, Duration::from_secs(10)).unwrap_or_else(|alive| {
            panic!("{backend}: still alive after the guard stopped: {alive:?}")
        });
        assert!(
            run.events().iter().any(|e| e["event"] == "stopped"),
            "{}",
            run.dump()
        );
    }
}

#[test]
fn kill_dash_nine_of_the_guard_leaves_no_process_twenty_times_in_a_row() {
    for round in 0..20 {
        let tmp = tempfile::tempdir().unwrap();
        let pids_file = tmp.path().join("pids");
        let inst = make_install("2.5", &scenario_with_children(&pids_file));
        let mut run = Running::fooocus(&inst, &["--no-gateway"]);
        let pids = wait_pids(&pids_file, 3, LONG);
        let started = run.wait_event("started", LONG);
        let mut all = pids.clone();
        all.push(started["pid"].as_u64().unwrap() as u32);
        run.signal(libc::SIGKILL);
        let _ = run.wait_exit(LONG);
        wait_gone(&all, Duration::from_secs(10)).unwrap_or_else(|alive| {
            panic!("round {round}: processes outlived the SIGKILLed guard: {alive:?}")
        });
    }
}

#[test]
fn a_crashing_fooocus_is_restarted_with_backoff_then_given_up() {
    let inst = make_install(
        "2.5",
        &json!({"crash_at_startup": {"after_seconds": 0.05, "exit_code": 3}}),
    );
    let mut run = Running::fooocus(&inst, &["--max-restarts", "2", "--no-gateway"]);
    let st = run.wait_exit(Duration::from_secs(90));
    assert_eq!(
        st.code(),
        Some(3),
        "gave up exits with 3; events:\n{}",
        run.dump()
    );
    let ev = run.events();
    let delays: Vec<f64> = ev
        .iter()
        .filter(|e| e["event"] == "restarting")
        .map(|e| e["delay_s"].as_f64().unwrap())
        .collect();
    assert_eq!(
        delays,
        [1.0, 2.0],
        "exponential backoff; events:\n{}",
        run.dump()
    );
    let exits: Vec<&Value> = ev.iter().filter(|e| e["event"] == "exited").collect();
    assert_eq!(exits.len(), 3);
    assert!(exits
        .iter()
        .all(|e| e["code"] == 3 && e["expected"] == false));
    let gave_up = ev
        .iter()
        .find(|e| e["event"] == "gave_up")
        .expect("gave_up");
    assert_eq!(gave_up["failures"], 3);
}

#[test]
fn a_clean_stop_by_the_user_is_never_restarted() {
    let inst = make_install("2.5", &json!({"startup_seconds": 0.01}));
    let mut run = Running::fooocus(&inst, &["--restart", "always", "--no-gateway"]);
    run.wait_event("ready", LONG);
    run.signal(libc::SIGINT);
    run.wait_exit(LONG);
    assert!(
        !run.events().iter().any(|e| e["event"] == "restarting"),
        "{}",
        run.dump()
    );
}

#[test]
fn a_plain_command_runs_contained_and_its_exit_code_comes_back() {
    let mut run = Running::start(&["--restart", "never", "--", "sh", "-c", "echo hello; exit 7"]);
    let st = run.wait_exit(LONG);
    assert_eq!(st.code(), Some(7));
    let started = run
        .events()
        .into_iter()
        .find(|e| e["event"] == "started")
        .unwrap();
    assert!(
        ["cgroup-v1", "cgroup-v2"].contains(&started["backend"].as_str().unwrap()),
        "{started}"
    );
}

#[test]
fn bad_limits_and_paths_get_messages_that_name_the_fix() {
    let out = std::process::Command::new(cli())
        .args(["run", "--memory", "lots", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--memory") && err.contains("12G"), "{err}");

    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(cli())
        .args(["run", "--install"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("entry_with_update.py"), "{err}");
}

#[test]
fn a_broken_config_file_keeps_the_last_good_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("config.toml");
    std::fs::write(&cfg, "[limits]\ntimeout_s = \"10m\"\n").unwrap();
    // A good load records the last good copy.
    let ok = std::process::Command::new(cli())
        .arg("doctor")
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(ok.status.success());
    std::fs::write(&cfg, "[limits\ntimeout_s = ").unwrap();
    let out = std::process::Command::new(cli())
        .args(["run", "--restart", "never", "--config"])
        .arg(&cfg)
        .args(["--", "true"])
        .env("FOOOCUS_GUARD_DATA_DIR", tmp.path().join("data"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("is not valid") && err.contains("last good settings"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&cfg).unwrap(),
        "[limits\ntimeout_s = ",
        "the broken file is left for the user"
    );
}

#[test]
fn doctor_names_the_backend_and_why() {
    let out = std::process::Command::new(cli())
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["backend"]["kind"].is_string(), "{v}");
    assert!(!v["backend"]["reason"].as_str().unwrap().is_empty());
    assert!(v["gpu_status"].is_string());
}

#[test]
fn detect_reports_version_and_fork() {
    let inst = make_install("mashb1t", &json!({}));
    let out = std::process::Command::new(cli())
        .args(["detect", "--json"])
        .arg(&inst.path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["fork"], "mashb1t");
    assert!(v[0]["version"].as_str().unwrap().contains("mashb1t"));
}

#[test]
fn prompts_never_reach_the_logs_unless_the_user_opts_in() {
    for opt_in in [false, true] {
        let task = json!({"delay": 0.1, "images": 1, "steps": 2, "step_seconds": 0.01, "prompt": "a secret purple giraffe"});
        let inst = make_install("2.5", &json!({"startup_seconds": 0.01, "tasks": [task]}));
        let port = free_port().to_string();
        let mut run = Running::start_with_config(
            &format!("log_prompts = {opt_in}\n"),
            &[
                "--install",
                inst.path.to_str().unwrap(),
                "--port",
                &port,
                "--no-gateway",
            ],
        );
        run.wait_event("generation_finished", LONG);
        run.stop();
        let mut logs = String::new();
        for e in std::fs::read_dir(run.data_dir().join("logs"))
            .unwrap()
            .flatten()
        {
            logs.push_str(&std::fs::read_to_string(e.path()).unwrap());
        }
        assert!(
            logs.contains("generation_finished"),
            "events are logged: {logs}"
        );
        assert_eq!(logs.contains("purple giraffe"), opt_in, "opt_in={opt_in}");
        assert!(!std::fs::read_to_string(&run.events)
            .unwrap()
            .contains("purple giraffe"));
    }
}

#[test]
fn without_cgroups_the_watchdog_enforces_the_ram_cap() {
    let inst = make_install(
        "2.5",
        &json!({"startup_seconds": 0.01, "allocate_step_mib": 64}),
    );
    let run = Running::fooocus(
        &inst,
        &[
            "--no-gateway",
            "--containment",
            "fallback",
            "--memory",
            "200M",
            "--interval",
            "200ms",
        ],
    );
    let b = run.wait_event("limit_breached", LONG);
    assert_eq!(b["limit"], "memory", "{}", run.dump());
    assert_eq!(b["action"], "kill_and_restart");
    let seen = b["observed"].as_f64().unwrap();
    assert!(
        seen > (200u64 << 20) as f64 && seen < (400u64 << 20) as f64,
        "overshoot stays within a few intervals: {seen}"
    );
    run.wait_for("restart", LONG, |e| {
        e["event"] == "started" && e["attempt"].as_u64() > Some(0)
    });
}

/// Another program holds the history database (a second guard, a database browser, a backup
/// tool): records wait, limits do not. Before the history writer, the loop waited on SQLite's
/// 5 s busy timeout at start and again at the breach record.
#[test]
fn a_locked_history_database_delays_no_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // The guard's own schema, from a run of its own.
    let st = std::process::Command::new(cli())
        .args(["run", "--restart", "never", "--", "true"])
        .env("FOOOCUS_GUARD_DATA_DIR", &data)
        .env("FOOOCUS_GUARD_CONFIG_DIR", tmp.path().join("config"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let db = data.join("history.sqlite3");
    assert!(db.exists());
    // Hold the write lock for the whole test.
    let mut holder = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys,time\n\
             c=sqlite3.connect(sys.argv[1], isolation_level=None)\n\
             c.execute('BEGIN IMMEDIATE')\n\
             print('locked', flush=True)\n\
             time.sleep(120)",
            db.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");

    let inst = make_install(
        "2.5",
        &json!({"startup_seconds": 0.01, "tasks": [{"delay": 0.2, "steps": 1000, "step_seconds": 0.05}]}),
    );
    let port = free_port().to_string();
    let mut run = Running::start_in(
        tmp,
        "",
        &[
            "--install",
            inst.path.to_str().unwrap(),
            "--port",
            &port,
            "--no-gateway",
            "--timeout",
            "2s",
            "--grace",
            "1s",
        ],
    );
    let stopped = run.wait_event("generation_stopped", LONG);
    let took = stopped["took_s"].as_f64().unwrap();
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(
        took < 3.0,
        "the stop waited on the database: {took} s\n{}",
        run.dump()
    );
    run.stop();
}

/// Fooocus printing 100 MB of console as fast as it can: the guard reads it all (Fooocus never
/// blocks on a print) but keeps at most a bounded amount waiting, so its memory stays flat.
/// Prints the guard's peak RSS.
#[test]
fn a_console_flood_does_not_grow_the_guard() {
    let tmp = tempfile::tempdir().unwrap();
    let done = tmp.path().join("flooded");
    let script = format!(
        "import sys,time\n\
         line='x'*1023+'\\n'\n\
         for _ in range(100*1024): sys.stdout.write(line)\n\
         sys.stdout.flush()\n\
         open({done:?},'w').close()\n\
         time.sleep(60)"
    );
    let mut run = Running::start(&["--restart", "never", "--", "python3", "-c", &script]);
    let t0 = std::time::Instant::now();
    while !done.exists() {
        assert!(
            t0.elapsed() < LONG,
            "the flood never finished: {}",
            run.dump()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Let the loop catch up with what it kept, then read the peak.
    std::thread::sleep(Duration::from_millis(500));
    let status = std::fs::read_to_string(format!("/proc/{}/status", run.child.id())).unwrap();
    let hwm_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    println!(
        "guard peak RSS while Fooocus printed 100 MB: {} MiB",
        hwm_kib / 1024
    );
    assert!(
        hwm_kib < 64 * 1024,
        "the guard grew to {} MiB while Fooocus flooded its console",
        hwm_kib / 1024
    );
    run.stop();
}

/// Gradio given `--port P` tries only P (fidelity M4): when another program holds it, the guard
/// says so in plain words, restarts with backoff in case it lets go, and gives up naming it.
#[test]
fn a_taken_port_is_said_in_plain_words() {
    let inst = make_install("2.5", &json!({"startup_seconds": 0.01}));
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = blocker.local_addr().unwrap().port().to_string();
    let mut run = Running::start(&[
        "--install",
        inst.path.to_str().unwrap(),
        "--port",
        &port,
        "--no-gateway",
        "--max-restarts",
        "1",
    ]);
    let said = format!("port {port} is taken by another program");
    run.wait_for("the warning about the port", LONG, |e| {
        e["event"] == "warning" && e["message"].as_str().unwrap_or("").contains(&said)
    });
    run.wait_event("restarting", LONG);
    let st = run.wait_exit(LONG);
    assert_eq!(st.code(), Some(3), "{}", run.dump());
    let gave_up = run.wait_event("gave_up", LONG);
    assert!(
        gave_up["reason"].as_str().unwrap().contains(&said),
        "{gave_up}"
    );
    drop(blocker);
}
