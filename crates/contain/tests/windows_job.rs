//! The Job Object backend on Windows (CI runs it under Wine 8; see scripts/windows/test.sh).
//!
//! The processes are this test binary itself, re-run in a role (`FG_JOB_ROLE`): a tree of three
//! (child, grandchild, great-grandchild), a guard that holds a job and is then killed, an
//! allocator and a CPU spinner. Wine does not enforce the job memory limit, post its message or
//! account CPU time and peak memory: the tests of those run only with `FG_REAL_WINDOWS=1`.
#![cfg(windows)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use guard_contain::windows::is_alive;
use guard_contain::{create, ContainerEvent, Containment, Limits, Preference};

const ROLE: &str = "FG_JOB_ROLE";

/// Not a test: the entry point of the roles. Without `FG_JOB_ROLE` it does nothing.
#[test]
fn role() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let out = |line: String| {
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, "{line}");
        let _ = o.flush();
    };
    match role.as_str() {
        "tree" => {
            let depth: u32 = std::env::var("FG_DEPTH")
                .ok()
                .and_then(|d| d.parse().ok())
                .unwrap_or(2);
            out(format!(
                "pid {} depth {depth} in_job {}",
                std::process::id(),
                in_job() as u8
            ));
            if depth > 0 {
                // Inherits stdout: every level prints into the pipe the test reads.
                let mut next = me("tree")
                    .env("FG_DEPTH", (depth - 1).to_string())
                    .spawn()
                    .unwrap();
                let _ = next.wait(); // never returns: the leaf sleeps until killed
            }
            sleep_forever()
        }
        "guard" => {
            let c = create(Preference::Auto, "guard-role").unwrap();
            let mut child = spawn_in(&*c, me("tree").stdout(Stdio::inherit()));
            out(format!(
                "guard {} holds root {}",
                std::process::id(),
                child.id()
            ));
            let _ = child.wait(); // until the test kills this guard
            sleep_forever()
        }
        "alloc" => {
            let mib: usize = std::env::var("FG_MIB").unwrap().parse().unwrap();
            let mut v: Vec<u8> = Vec::new();
            match v.try_reserve_exact(mib << 20) {
                Ok(()) => {
                    v.resize(mib << 20, 1);
                    out(format!("allocated {mib} MiB"));
                    sleep_forever()
                }
                Err(_) => {
                    out("allocation refused".into());
                    std::process::exit(3)
                }
            }
        }
        "crash" => {
            // An access violation, as a crashing native extension would cause.
            // SAFETY: deliberately invalid; the process dies of the exception.
            unsafe { std::ptr::null_mut::<u8>().write_volatile(1) };
            unreachable!()
        }
        "spin" => {
            let until = Instant::now() + Duration::from_millis(1500);
            let mut x = 0u64;
            while Instant::now() < until {
                x = x.wrapping_mul(31).wrapping_add(7);
            }
            out(format!("spun {x}"));
        }
        "console" => {
            let depth: u32 = std::env::var("FG_DEPTH").unwrap().parse().unwrap();
            let (window, stdout_console, shared) = console_state();
            out(format!(
                "console pid {} window {} stdout_console {} shares_test_console {}",
                std::process::id(),
                window as u8,
                stdout_console as u8,
                shared as u8
            ));
            if depth > 0 {
                // As Fooocus starts its helpers: stdio inherited, no flags of its own.
                let _ = me("console")
                    .env("FG_DEPTH", (depth - 1).to_string())
                    .status();
            }
        }
        other => panic!("unknown role {other}"),
    }
}

fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

fn in_job() -> bool {
    use windows_sys::Win32::System::JobObjects::IsProcessInJob;
    use windows_sys::Win32::System::Threading::GetCurrentProcess;
    let mut r = 0;
    // SAFETY: the pseudo handle of this process; a null job means "any job".
    unsafe { IsProcessInJob(GetCurrentProcess(), std::ptr::null_mut(), &mut r) };
    r != 0
}

// kernel32's console calls (windows-sys's Console feature is not enabled for this crate).
#[link(name = "kernel32")]
extern "system" {
    fn AllocConsole() -> i32;
    fn GetConsoleWindow() -> *mut std::ffi::c_void;
    fn GetStdHandle(which: u32) -> *mut std::ffi::c_void;
    fn GetConsoleMode(handle: *mut std::ffi::c_void, mode: *mut u32) -> i32;
    fn GetConsoleProcessList(pids: *mut u32, count: u32) -> u32;
}
const STD_OUTPUT_HANDLE: u32 = -11i32 as u32;

/// Whether this process has a console window (one a user could click in), whether its stdout
/// writes to a console (where QuickEdit's selection would block it), and whether its console is
/// the test's (FG_TEST_PID), whose window the user would click in.
fn console_state() -> (bool, bool, bool) {
    let test: u32 = std::env::var("FG_TEST_PID").unwrap().parse().unwrap();
    let mut mode = 0;
    let mut pids = [0u32; 64];
    // SAFETY: queries of this process's own console and standard handle; the list is written
    // within its length.
    unsafe {
        let n = GetConsoleProcessList(pids.as_mut_ptr(), pids.len() as u32) as usize;
        (
            !GetConsoleWindow().is_null(),
            GetConsoleMode(GetStdHandle(STD_OUTPUT_HANDLE), &mut mode) != 0,
            pids[..n.min(pids.len())].contains(&test),
        )
    }
}

/// This test binary in a role.
fn me(role: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["role", "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env(ROLE, role);
    c
}

fn spawn_in(c: &dyn Containment, cmd: &mut Command) -> Child {
    c.prepare(cmd).unwrap();
    let child = cmd.spawn().unwrap();
    c.adopt(&child).unwrap();
    child
}

/// Reads `n` lines starting with `prefix` (libtest's own lines are skipped).
fn lines(out: &mut BufReader<ChildStdout>, prefix: &str, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    let mut line = String::new();
    while got.len() < n {
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 {
            panic!("the process tree closed its output after {got:?}");
        }
        if line.starts_with(prefix) {
            got.push(line.trim().to_string());
        }
    }
    got
}

fn field(line: &str, name: &str) -> u32 {
    let mut it = line.split_whitespace();
    while let Some(w) = it.next() {
        if w == name {
            return it.next().unwrap().parse().unwrap();
        }
    }
    panic!("no {name} in {line}")
}

/// Starts a tree of three in a new job; returns the container, the root and the three pids.
fn tree() -> (Box<dyn Containment>, Child, Vec<u32>) {
    let c = create(Preference::Auto, "test").unwrap();
    let mut root = spawn_in(&*c, me("tree").stdout(Stdio::piped()));
    let mut out = BufReader::new(root.stdout.take().unwrap());
    let found = lines(&mut out, "pid ", 3);
    for l in &found {
        assert_eq!(field(l, "in_job"), 1, "a process ran outside the job: {l}");
    }
    let pids = found.iter().map(|l| field(l, "pid")).collect();
    (c, root, pids)
}

fn wait_gone(pids: &[u32], within: Duration) {
    let deadline = Instant::now() + within;
    while pids.iter().any(|&p| is_alive(p)) {
        assert!(
            Instant::now() < deadline,
            "still alive after {within:?}: {:?}",
            pids.iter().filter(|&&p| is_alive(p)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_whole_tree_joins_the_job_before_it_runs() {
    let (c, mut root, pids) = tree();
    assert_eq!(pids[0], root.id());
    // The job may also hold the console host Windows (and Wine) starts for a console program.
    let in_job = c.pids().unwrap();
    for p in &pids {
        assert!(in_job.contains(p), "pid {p} is not in the job {in_job:?}");
    }
    assert!(c.native_usage().unwrap().processes >= 3);
    let report = c.kill_tree().unwrap();
    assert!(report.signalled >= 3, "{report:?}");
    let _ = root.wait();
}

#[test]
fn terminate_job_object_kills_child_and_grandchildren_and_waits() {
    let (c, mut root, pids) = tree();
    c.kill_tree().unwrap();
    // kill_tree returns only when the job is empty: nothing may be alive right after.
    for &p in &pids {
        assert!(!is_alive(p), "pid {p} survived the tree kill");
    }
    assert!(c.pids().unwrap().is_empty());
    assert_eq!(
        root.wait().unwrap().code(),
        Some(guard_contain::windows::KILLED_EXIT_CODE as i32)
    );
}

/// Collects events until `done` says so (or 10 s pass).
fn collect(
    events: &crossbeam_channel::Receiver<ContainerEvent>,
    mut done: impl FnMut(&[ContainerEvent]) -> bool,
) -> Vec<ContainerEvent> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(&got) && Instant::now() < deadline {
        if let Ok(e) = events.recv_timeout(Duration::from_millis(100)) {
            got.push(e);
        }
    }
    got
}

fn has_exit(got: &[ContainerEvent], pid: u32) -> Option<(Option<i64>, bool)> {
    got.iter().find_map(|e| match e {
        ContainerEvent::ProcessExited {
            pid: p,
            code,
            abnormal,
        } if *p == pid => Some((*code, *abnormal)),
        _ => None,
    })
}

#[test]
fn job_messages_become_container_events() {
    let c = create(Preference::Auto, "events").unwrap();
    let events = c.take_events().expect("the job's events");
    assert!(c.take_events().is_none(), "events are taken once");

    // A process that ends by itself: it joins, exits with its code, and the job is empty.
    let mut spin = spawn_in(&*c, me("spin").stdout(Stdio::null()));
    let pid = spin.id();
    spin.wait().unwrap();
    let got = collect(&events, |g| g.contains(&ContainerEvent::Empty));
    assert!(got.contains(&ContainerEvent::NewProcess { pid }), "{got:?}");
    assert_eq!(has_exit(&got, pid), Some((Some(0), false)), "{got:?}");
    assert!(got.contains(&ContainerEvent::Empty), "{got:?}");

    // A crash (an access violation) is an abnormal exit.
    let mut crash = spawn_in(&*c, me("crash").stdout(Stdio::null()).stderr(Stdio::null()));
    let pid = crash.id();
    let _ = crash.wait();
    let got = collect(&events, |g| has_exit(g, pid).is_some());
    let (code, abnormal) =
        has_exit(&got, pid).unwrap_or_else(|| panic!("no exit for {pid}: {got:?}"));
    assert!(
        abnormal,
        "a crash with code {code:x?} was not called abnormal"
    );

    // A killed tree: every process joined, and the job reports itself empty.
    let _ = collect(&events, |g| g.contains(&ContainerEvent::Empty));
    let mut root = spawn_in(&*c, me("tree").stdout(Stdio::piped()));
    let mut out = BufReader::new(root.stdout.take().unwrap());
    let pids: Vec<u32> = lines(&mut out, "pid ", 3)
        .iter()
        .map(|l| field(l, "pid"))
        .collect();
    c.kill_tree().unwrap();
    let _ = root.wait();
    let got = collect(&events, |g| g.contains(&ContainerEvent::Empty));
    for p in &pids {
        assert!(
            got.contains(&ContainerEvent::NewProcess { pid: *p }),
            "no NewProcess for {p}: {got:?}"
        );
    }
    assert!(
        got.contains(&ContainerEvent::Empty),
        "no Empty after the kill: {got:?}"
    );
    assert!(
        !got.contains(&ContainerEvent::MemoryLimitHit),
        "no memory limit was set"
    );
}

#[test]
fn dropping_the_container_kills_the_tree() {
    let (c, mut root, pids) = tree();
    drop(c);
    wait_gone(&pids, Duration::from_secs(5));
    let _ = root.wait();
}

#[test]
fn kill_on_job_close_takes_the_tree_when_the_guard_is_killed() {
    // The guard role holds the only handle of its job. TerminateProcess gives it no chance to
    // clean up: Windows closes the handle, and the job's kill-on-close ends the tree.
    let mut guard = me("guard").stdout(Stdio::piped()).spawn().unwrap();
    let mut out = BufReader::new(guard.stdout.take().unwrap());
    let pids: Vec<u32> = lines(&mut out, "pid ", 3)
        .iter()
        .map(|l| field(l, "pid"))
        .collect();
    for &p in &pids {
        assert!(is_alive(p));
    }
    guard.kill().unwrap();
    let _ = guard.wait();
    wait_gone(&pids, Duration::from_secs(10));
}

#[test]
fn caps_can_be_set_changed_and_lifted_while_the_tree_runs() {
    let (c, mut root, pids) = tree();
    let ram = Limits {
        memory_bytes: Some(6 << 30),
        swap_bytes: Some(2 << 30),
        cpu_percent: None,
    };
    c.set_limits(&ram).unwrap();
    c.set_limits(&Limits {
        memory_bytes: Some(3 << 30),
        ..ram
    })
    .unwrap();
    c.set_limits(&Limits::default()).unwrap();
    // CPU rate control needs Windows 8 or later. Wine 8 refuses it (ERROR_INVALID_PARAMETER):
    // the refusal must say which cap could not be applied.
    let cpu = Limits {
        cpu_percent: Some(150),
        ..ram
    };
    match c.set_limits(&cpu) {
        Ok(()) => {
            c.set_limits(&Limits {
                cpu_percent: Some(50),
                ..ram
            })
            .unwrap();
            c.set_limits(&Limits::default()).unwrap();
        }
        Err(e) if !real_windows() => assert!(e.to_string().contains("CPU"), "{e}"),
        Err(e) => panic!("{e}"),
    }
    // Kill-on-close survives every change: the tree still dies with the job.
    drop(c);
    wait_gone(&pids, Duration::from_secs(5));
    let _ = root.wait();
}

#[test]
fn choice_names_the_job_object() {
    let c = create(Preference::Auto, "x").unwrap();
    assert_eq!(c.choice().kind, guard_contain::BackendKind::JobObject);
    // Every cap is the OS's own, but the CPU cap where Windows has no CPU rate control (Wine).
    let unenforced = &c.choice().unenforced;
    if real_windows() {
        assert!(unenforced.is_empty(), "{unenforced:?}");
    } else {
        assert!(unenforced.iter().all(|u| u == "cpu"), "{unenforced:?}");
    }
    if unenforced.iter().any(|u| u == "cpu") {
        assert!(
            c.choice().reason.contains("CPU cap is not enforced"),
            "{}",
            c.choice().reason
        );
        let e = c
            .set_limits(&Limits {
                cpu_percent: Some(100),
                ..Limits::default()
            })
            .unwrap_err();
        assert!(e.to_string().contains("CPU"), "{e}");
    }
    assert!(matches!(c.probe(), guard_contain::TreeProbe::Job(_)));
}

fn real_windows() -> bool {
    std::env::var_os("FG_REAL_WINDOWS").is_some_and(|v| v == "1")
}

/// For the tests of what Wine does not emulate: true (after saying so) when they must skip.
fn skip_unless_real_windows(why: &str) -> bool {
    if real_windows() {
        return false;
    }
    eprintln!("skipped: needs real Windows (FG_REAL_WINDOWS=1); {why}");
    true
}

/// Real Windows only (`FG_REAL_WINDOWS=1`): Wine neither enforces the limit nor posts its message.
#[test]
fn the_job_memory_limit_refuses_memory_and_says_so() {
    if skip_unless_real_windows("Wine does not enforce job memory limits") {
        return;
    }
    let c = create(Preference::Auto, "mem").unwrap();
    let events = c.take_events().unwrap();
    c.set_limits(&Limits {
        memory_bytes: Some(256 << 20),
        ..Limits::default()
    })
    .unwrap();
    let mut child = spawn_in(&*c, me("alloc").env("FG_MIB", "512").stdout(Stdio::piped()));
    let mut out = BufReader::new(child.stdout.take().unwrap());
    assert_eq!(lines(&mut out, "alloc", 1)[0], "allocation refused");
    assert_eq!(child.wait().unwrap().code(), Some(3));
    let got = collect(&events, |g| g.contains(&ContainerEvent::MemoryLimitHit));
    assert!(
        got.contains(&ContainerEvent::MemoryLimitHit),
        "no JOB_OBJECT_MSG_JOB_MEMORY_LIMIT: {got:?}"
    );
    assert!(c.oom_kills() >= 1);

    // Under the limit it works, and the job's peak shows it.
    let mut ok = spawn_in(&*c, me("alloc").env("FG_MIB", "128").stdout(Stdio::piped()));
    let mut out = BufReader::new(ok.stdout.take().unwrap());
    assert_eq!(lines(&mut out, "alloc", 1)[0], "allocated 128 MiB");
    let u = c.native_usage().unwrap();
    assert!(
        u.peak_memory_bytes >= 128 << 20,
        "peak {}",
        u.peak_memory_bytes
    );
    assert!(
        u.memory_bytes >= 100 << 20,
        "working set {}",
        u.memory_bytes
    );
    c.kill_tree().unwrap();
    let _ = ok.wait();
}

/// Real Windows only: Wine reports zero CPU time for jobs.
#[test]
fn the_job_accounts_cpu_time() {
    if skip_unless_real_windows("Wine's job accounting is zero") {
        return;
    }
    let c = create(Preference::Auto, "cpu").unwrap();
    let mut child = spawn_in(&*c, me("spin").stdout(Stdio::null()));
    child.wait().unwrap();
    let u = c.native_usage().unwrap();
    assert!(
        u.cpu_time >= Duration::from_millis(1000),
        "cpu time {:?}",
        u.cpu_time
    );
}

/// Real Windows only (`FG_REAL_WINDOWS=1`): Wine has no consoles (AllocConsole fails there and no
/// process has a console window); windows.rs's unit test checks the flags under Wine.
///
/// lllyasviel/Fooocus#1216, "Waiting for task to start": a click in a console window in QuickEdit
/// mode holds every write to that console until the selection ends. Started the guard's way (the
/// job's creation flags, stdio piped as the supervisor does), Fooocus and what it starts have no
/// console window and do not share the guard's console, even when the guard runs in one (the CLI
/// in a terminal), and their output goes to pipes.
#[test]
fn fooocus_started_the_guards_way_has_no_console_window_to_pause_it() {
    if skip_unless_real_windows("Wine has no consoles to click in") {
        return;
    }
    // SAFETY: gives this process a console with a window if it has none (a test run from a
    // terminal has one already; then this fails harmlessly).
    unsafe { AllocConsole() };
    let read = |cmd: &mut Command, contained: bool| {
        cmd.env("FG_DEPTH", "1")
            .env("FG_TEST_PID", std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let c = create(Preference::Auto, "console-test").unwrap();
        let mut child = if contained {
            spawn_in(&*c, cmd)
        } else {
            cmd.spawn().unwrap()
        };
        let found = lines(
            &mut BufReader::new(child.stdout.take().unwrap()),
            "console ",
            2,
        );
        let _ = child.wait();
        found
    };
    // The check can fail: a child started plainly shares this process's console and its window.
    let plain = read(&mut me("console"), false);
    assert!(
        plain
            .iter()
            .all(|l| field(l, "shares_test_console") == 1 && field(l, "window") == 1),
        "{plain:?}"
    );
    for l in read(&mut me("console"), true) {
        assert_eq!(
            field(&l, "shares_test_console"),
            0,
            "the guard's console: {l}"
        );
        assert_eq!(field(&l, "window"), 0, "a console window to click in: {l}");
        assert_eq!(field(&l, "stdout_console"), 0, "output to a console: {l}");
    }
}
