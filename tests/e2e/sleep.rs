//! Issue 25 under the CLI with the simulator: idle for `--sleep-after`, Fooocus's whole tree is
//! stopped (no process, the cgroup empty) while the gateway keeps answering on the user's port;
//! a visit with the token wakes it, a visit without it wakes nothing.
#![cfg(unix)]

use std::io::{Read, Write};
use std::time::{Duration, Instant};

#[path = "harness.rs"]
mod harness;
use harness::*;

const TOKEN: &str = "sleep-test-token-1";

/// One HTTP/1.1 GET on loopback through the gateway; the whole answer (the connection closes).
fn get(port: u16, path: &str, token: Option<&str>) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("the gateway listens");
    s.set_read_timeout(Some(LONG)).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or("")
}

/// The cgroup v2 folder a process is in (None: cgroup v1 or no cgroup file).
fn cgroup_dir(pid: u32) -> Option<std::path::PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(std::path::Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/')))
}

fn after<'a>(events: &'a [Value], name: &str, from: usize) -> Vec<&'a Value> {
    events[from..]
        .iter()
        .filter(|e| e["event"] == name)
        .collect()
}

#[test]
fn idle_fooocus_sleeps_with_its_tree_gone_and_a_visit_with_the_token_wakes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let pids_file = tmp.path().join("pids");
    let inst = make_install(
        "2.5",
        &json!({"startup_seconds": 0.01, "spawn_children": true, "pids_file": pids_file,
                "allocate_mib": 200}),
    );
    let port = free_port();
    let config = format!("[gateway]\ntoken = \"{TOKEN}\"\n");
    let mut run = Running::start_with_config(
        &config,
        &[
            "--install",
            inst.path.to_str().unwrap(),
            "--port",
            &port.to_string(),
            "--sleep-after",
            "2s",
            "--interval",
            "250ms",
        ],
    );
    let started = run.wait_event("started", LONG);
    let main_pid = started["pid"].as_u64().unwrap() as u32;
    let cgroup = cgroup_dir(main_pid);
    let first_ready = Instant::now();
    run.wait_event("ready", LONG);
    let mut pids = wait_pids(&pids_file, 3, LONG);
    pids.push(main_pid);

    // Idle for the setting: asleep, the whole tree gone.
    let asleep = run.wait_event("asleep", LONG);
    let idle_s = asleep["idle_s"].as_f64().unwrap();
    assert!(idle_s >= 2.0, "{asleep}");
    assert!(
        first_ready.elapsed() >= Duration::from_secs(2),
        "asleep before the idle time"
    );
    wait_gone(&pids, Duration::from_secs(10))
        .unwrap_or_else(|alive| panic!("still alive while asleep: {alive:?}"));
    if let Some(dir) = &cgroup {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        assert!(procs.trim().is_empty(), "the cgroup still holds {procs}");
    }
    let held = asleep["held_ram_bytes"].as_u64().unwrap_or(0);
    assert!(held >= 200 << 20, "the tree held its 200 MiB: {asleep}");
    eprintln!(
        "asleep: held {} MiB; machine RAM {} -> {} MiB",
        held >> 20,
        asleep["ram_before_bytes"].as_u64().unwrap_or(0) >> 20,
        asleep["ram_after_bytes"].as_u64().unwrap_or(0) >> 20
    );
    let exited = run.wait_event("exited", LONG);
    assert_eq!(exited["expected"], true, "a sleep is no crash: {exited}");
    let events = run.events();
    assert!(
        !events
            .iter()
            .any(|e| e["event"] == "restarting" || e["event"] == "gave_up"),
        "{}",
        run.dump()
    );
    let mark = events.len();

    // A visit without the token is refused by the gateway, which still answers, and wakes
    // nothing: no start within the time a wake's launch takes the guard (well under 1 s).
    let refused = get(port, "/", Some("wrong-token-0000"));
    let line = status_line(&refused);
    assert!(
        line.contains(" 401") || line.contains(" 403"),
        "the gateway answers a wrong token while asleep: {refused}"
    );
    let refused = get(port, "/", None);
    assert!(
        status_line(&refused).contains(" 401") || status_line(&refused).contains(" 403"),
        "{refused}"
    );
    let observe = Instant::now() + Duration::from_secs(1);
    while Instant::now() < observe {
        let events = run.events();
        assert!(
            after(&events, "started", mark).is_empty(),
            "a refused visit woke Fooocus: {}",
            run.dump()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // A visit with the token wakes it: the start, ready, and `woke` by a visit.
    let visit = Instant::now();
    let _ = get(port, "/", Some(TOKEN));
    let woke = run.wait_event("woke", LONG);
    let woke_after = visit.elapsed();
    assert_eq!(woke["by"], "visit", "{woke}");
    assert!(woke["asleep_s"].as_f64().unwrap() >= 1.0, "{woke}");
    let events = run.events();
    assert_eq!(after(&events, "started", mark).len(), 1, "{}", run.dump());
    eprintln!(
        "woke: ready {:.2} s after the wake ({:.2} s after the visit)",
        woke["ready_s"].as_f64().unwrap(),
        woke_after.as_secs_f64()
    );
    // Awake: Fooocus answers through the same port again.
    let page = get(port, "/", Some(TOKEN));
    assert!(status_line(&page).contains(" 200"), "{page}");
    run.stop();
}

#[test]
fn sleep_without_the_gateway_is_refused_naming_the_fix() {
    let inst = make_install("2.5", &json!({"startup_seconds": 0.01}));
    let mut run = Running::fooocus(&inst, &["--sleep-after", "20m", "--no-gateway"]);
    let st = run.wait_exit(LONG);
    assert_eq!(st.code(), Some(2), "refused before anything starts");
    assert!(run.events().is_empty(), "{}", run.dump());
}

/// Seconds since midnight UTC of an event's `ts` (RFC 3339 with milliseconds, as the guard
/// writes it).
fn day_seconds(e: &Value) -> f64 {
    let ts = e["ts"].as_str().expect("ts");
    let time = ts.split('T').nth(1).unwrap().trim_end_matches('Z');
    let mut parts = time.split(':').map(|p| p.parse::<f64>().unwrap());
    let (h, m, s) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    h * 3600.0 + m * 60.0 + s
}

/// Seconds since midnight UTC now.
fn now_day_seconds() -> f64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    (d.as_secs() % 86_400) as f64 + f64::from(d.subsec_millis()) / 1000.0
}

fn post(port: u16, path: &str, body: &[u8]) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(LONG)).unwrap();
    write!(s, "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).unwrap();
    s.write_all(body).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn visits_and_a_running_generation_hold_the_sleep_off_and_a_finished_one_restarts_the_clock() {
    let inst = make_install("2.5", &json!({"startup_seconds": 0.01}));
    let port = free_port();
    let mut run = Running::start(&[
        "--install",
        inst.path.to_str().unwrap(),
        "--port",
        &port.to_string(),
        "--sleep-after",
        "2s",
    ]);
    run.wait_event("ready", LONG);
    // A user clicking around: a visit every 0.5 s for 4 s, twice the idle time.
    let mut last_visit = 0.0;
    for _ in 0..8 {
        last_visit = now_day_seconds();
        let page = get(port, "/", None);
        assert!(status_line(&page).contains(" 200"), "{page}");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        run.events()
            .iter()
            .filter(|e| e["event"] == "asleep")
            .count(),
        0,
        "asleep while visited: {}",
        run.dump()
    );
    // The exit, not the `asleep` event: that waits for the sample after the tree is gone.
    run.wait_event("asleep", LONG);
    let exit = run.wait_event("exited", LONG);
    assert_eq!(exit["expected"], true, "{exit}");
    let after_visit = day_seconds(&exit) - last_visit;
    assert!(
        after_visit >= 2.0 - 0.001,
        "asleep {after_visit:.3} s after the last visit"
    );

    // Awake again, a generation longer than the idle time: no sleep while it runs; the clock
    // starts again at its end.
    let _ = get(port, "/", None);
    run.wait_event("woke", LONG);
    let body = br#"{"images": 1, "steps": 10, "step_seconds": 0.35, "session_hash": "api"}"#;
    let reply = post(port, "/sim/generate", body);
    assert!(status_line(&reply).contains(" 200"), "{reply}");
    let finished = run.wait_event("generation_finished", LONG);
    assert_eq!(finished["outcome"], "completed", "{finished}");
    assert!(finished["seconds"].as_f64().unwrap() >= 3.0, "{finished}");
    let events = run.events();
    assert_eq!(
        events.iter().filter(|e| e["event"] == "asleep").count(),
        1,
        "asleep during the generation: {}",
        run.dump()
    );
    let exit = run.wait_for("the second sleep's exit", LONG, |e| {
        e["event"] == "exited" && day_seconds(e) > day_seconds(&finished)
    });
    run.wait_for("the second sleep", LONG, |e| {
        e["event"] == "asleep" && day_seconds(e) >= day_seconds(&exit)
    });
    let after_end = day_seconds(&exit) - day_seconds(&finished);
    assert!(
        after_end >= 2.0 - 0.001,
        "asleep {after_end:.3} s after the generation's end"
    );
    // Stopping the guard while Fooocus sleeps lets the user's port go.
    run.stop();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the gateway still listens after the guard stopped"
    );
    assert!(
        run.events().iter().any(|e| e["event"] == "stopped"),
        "{}",
        run.dump()
    );
}
