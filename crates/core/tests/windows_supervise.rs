//! The supervisor on Windows (CI: under Wine 8): Fooocus's console, a generation that hangs, the
//! timeout, the Job Object's tree kill and the restart, end to end through `Guard`.
//!
//! "Fooocus" is this test binary in a role: it prints a console captured from the Fooocus
//! simulator (2.5.5, a generation that hangs at step 3) with Windows line endings, as Python
//! does on Windows, starts a child that sleeps, and then hangs.
#![cfg(windows)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use guard_contain::windows::is_alive;
use guard_core::config::Config;
use guard_core::events::{EventKind, LimitKind, StopHow};
use guard_core::supervisor::{Guard, GuardOptions, Target, Update};
use guard_fooocus::install::LaunchCommand;

const ROLE: &str = "FG_ROLE";

/// Not a test: the entry point of the roles. Without `FG_ROLE` it does nothing.
#[test]
fn role() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let pids_file = PathBuf::from(std::env::var("FG_PIDS").unwrap());
    let note_pid = || {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&pids_file)
            .unwrap();
        writeln!(f, "{}", std::process::id()).unwrap();
    };
    note_pid();
    if role == "fooocus" {
        let mut child = me("child", &pids_file).spawn().unwrap();
        let console = std::fs::read_to_string(std::env::var("FG_CONSOLE").unwrap()).unwrap();
        let mut out = std::io::stdout().lock();
        for line in console.lines() {
            write!(out, "{line}\r\n").unwrap();
            out.flush().unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.wait(); // hangs: the child sleeps until the tree is killed
    }
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

fn me(role: &str, pids: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(std::env::current_exe().unwrap());
    c.args(["role", "--exact", "--nocapture", "-q", "--test-threads=1"])
        .env(ROLE, role)
        .env("FG_PIDS", pids);
    c
}

fn pids(file: &Path) -> Vec<u32> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[test]
fn a_hung_generation_ends_in_a_tree_kill_and_fooocus_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let pids_file = dir.path().join("pids");
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fooocus-2.5.5-hang.txt");
    let exe = std::env::current_exe().unwrap();
    let mut cmd = LaunchCommand::plain(
        exe,
        guard_core::supervisor::os(&["role", "--exact", "--nocapture", "-q", "--test-threads=1"]),
    );
    cmd.env.push((ROLE.into(), "fooocus".into()));
    cmd.env
        .push(("FG_CONSOLE".into(), fixture.display().to_string()));
    cmd.env
        .push(("FG_PIDS".into(), pids_file.display().to_string()));
    let mut cfg = Config::default();
    cfg.limits.timeout_s = Some(1.0);
    let guard = Guard::start(GuardOptions::new(cfg, Some(Target::Command(cmd)))).unwrap();
    let updates = guard.subscribe();

    let mut seen = Vec::new();
    let mut first_run_pids = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "events so far: {seen:#?}");
        let Ok(Update::Event(e)) = updates.recv_timeout(Duration::from_millis(500)) else {
            continue;
        };
        match &e.kind {
            // Fooocus came back after the kill.
            EventKind::Started { attempt, .. } if *attempt > 0 => break,
            EventKind::GenerationStopped { .. } => first_run_pids = pids(&pids_file),
            _ => {}
        }
        seen.push(e);
    }
    let kinds: Vec<&EventKind> = seen.iter().map(|e| &e.kind).collect();
    assert!(
        kinds
            .iter()
            .any(|k| matches!(k, EventKind::Started { backend, .. } if backend == "job-object")),
        "{kinds:#?}"
    );
    assert!(
        kinds.iter().any(|k| matches!(k, EventKind::Ready { .. })),
        "{kinds:#?}"
    );
    assert!(
        kinds
            .iter()
            .any(|k| matches!(k, EventKind::GenerationStarted { .. })),
        "{kinds:#?}"
    );
    assert!(
        kinds.iter().any(|k| matches!(k, EventKind::LimitBreached { limit: LimitKind::Timeout, action, .. } if action == "kill_and_restart")),
        "{kinds:#?}"
    );
    assert!(
        kinds.iter().any(|k| matches!(
            k,
            EventKind::GenerationStopped {
                how: StopHow::Killed,
                limit: Some(LimitKind::Timeout),
                ..
            }
        )),
        "{kinds:#?}"
    );
    // Fooocus and its child from the first run: both in the job, both gone with it.
    assert!(
        first_run_pids.len() >= 2,
        "pids of the first run: {first_run_pids:?}"
    );
    for p in &first_run_pids {
        assert!(!is_alive(*p), "pid {p} of the killed run is still alive");
    }

    guard.shutdown();
    guard.wait();
    let all = pids(&pids_file);
    let end = Instant::now() + Duration::from_secs(10);
    while all.iter().any(|&p| is_alive(p)) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    for p in &all {
        assert!(!is_alive(*p), "pid {p} outlived the guard");
    }
}
