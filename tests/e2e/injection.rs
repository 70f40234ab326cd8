//! What Fooocus prints is data, not commands (issue 23): prompts typed into the simulator,
//! which echoes them as Fooocus does (`[Prompt Expansion]` with the prompt's first line, 2.5's
//! Enhance detection prompt verbatim with its new lines), carrying every marker the guard acts
//! on. The guard neither restarts Fooocus, nor reports out of memory, nor takes a second ready,
//! nor sends its Stop anywhere but to the port it gave Fooocus.
#![cfg(unix)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "harness.rs"]
mod harness;
use harness::*;

fn count(run: &Running, name: &str) -> usize {
    run.events().iter().filter(|e| e["event"] == name).count()
}

/// A loopback port the prompt names, where nothing of the guard's may arrive. Non-blocking: a
/// connection the kernel accepted on its behalf shows up in `accept()` later.
fn decoy() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

fn assert_untouched(l: &TcpListener) {
    match l.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the guard connected to the prompt's URL: {other:?}"),
    }
}

/// One line of a prompt: each start-up marker and torch's OOM message inside it.
fn single_line(port: u16) -> String {
    format!(
        "a cat, CUDA out of memory. Tried to allocate 2.00 GiB, INFO:     Uvicorn running on http://127.0.0.1:{port} (Press CTRL+C to quit), \
         Running on local URL:  http://127.0.0.1:{port}, App started successful. Use the app with http://127.0.0.1:{port}/ or 127.0.0.1:{port}"
    )
}

/// A multi-line prompt: a dead worker's traceback in Python's own shape, start-up lines with
/// another URL, torch's OOM line, a task start and an image start, each at the start of a line.
fn multi_line(port: u16) -> String {
    format!(
        "a cat\nException in thread Thread-2 (worker):\nTraceback (most recent call last):\n  \
File \"/usr/lib/python3.10/threading.py\", line 1016, in _bootstrap_inner\n    self.run()\n  \
File \"/content/Fooocus/modules/async_worker.py\", line 1437, in worker\n    handler(task)\n\
torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n\
Running on local URL:  http://127.0.0.1:{port}\n\
App started successful. Use the app with http://127.0.0.1:{port}/ or 127.0.0.1:{port}\n\
INFO:     Uvicorn running on http://127.0.0.1:{port} (Press CTRL+C to quit)\n\
Fooocus version: 2.1.865\nStarted worker with PID 1\n\
CUDA out of memory. Tried to allocate 2.00 GiB\n[Parameters] Adaptive CFG = 7\n[Fooocus] Preparing task 1/9 ...\n\
 50%|█████     | 5/10 [00:01<00:01,  5.0it/s]\na dog"
    )
}

/// 2.5 without the gateway: the prompt and the Enhance detection prompt carry every injection;
/// the generation completes as one, Fooocus is ready once, is never restarted, and nothing is
/// out of memory.
#[test]
fn a_prompt_neither_restarts_fooocus_nor_reports_oom_nor_repeats_ready() {
    let (decoy, port) = decoy();
    let task = json!({"delay": 0.1, "images": 1, "steps": 3, "step_seconds": 0.01,
        "prompt": format!("{}\n{}", single_line(port), multi_line(port)),
        "detection_prompt": multi_line(port)});
    let inst = make_install("2.5", &json!({"startup_seconds": 0.01, "tasks": [task]}));
    let run = Running::fooocus(&inst, &["--no-gateway"]);
    let fin = run.wait_event("generation_finished", LONG);
    assert_eq!(fin["outcome"], "completed", "{}", run.dump());
    assert_eq!(fin["images_done"], 1, "{}", run.dump());
    // The sim's end of the task is its last line: anything the prompt caused is in by now.
    for (name, n) in [
        ("ready", 1),
        ("generation_started", 1),
        ("out_of_memory", 0),
        ("unhealthy", 0),
        ("exited", 0),
        ("restarting", 0),
        ("fooocus_error", 0),
    ] {
        assert_eq!(count(&run, name), n, "{name}: {}", run.dump());
    }
    let ready = run.wait_event("ready", LONG);
    assert!(
        !ready["url"].as_str().unwrap().contains(&port.to_string()),
        "{ready}"
    );
    assert_untouched(&decoy);
}

/// 2.1 (a global Stop the guard sends itself) without the gateway: the prompt names another
/// URL in uvicorn's and Gradio's words, as it did when that moved the guard's Stop there. The
/// generation runs into its timeout and is stopped gracefully, on Fooocus's own port.
#[test]
fn the_stop_goes_to_the_port_the_guard_chose_whatever_the_prompt_says() {
    let (decoy, port) = decoy();
    let task = json!({"delay": 0.1, "images": 2, "steps": 1000, "step_seconds": 0.05,
        "prompt": single_line(port)});
    let inst = make_install("2.1", &json!({"startup_seconds": 0.01, "tasks": [task]}));
    let run = Running::fooocus(&inst, &["--no-gateway", "--timeout", "2s", "--grace", "5s"]);
    let stopped = run.wait_event("generation_stopped", LONG);
    assert_eq!(stopped["how"], "graceful", "{}", run.dump());
    let fin = run.wait_for("the stopped generation's record", LONG, |e| {
        e["event"] == "generation_finished" && e["generation_id"] == stopped["generation_id"]
    });
    assert_eq!(fin["outcome"], "timed_out");
    assert_eq!(count(&run, "ready"), 1, "{}", run.dump());
    assert_eq!(count(&run, "exited"), 0, "{}", run.dump());
    assert_untouched(&decoy);
}

/// A browser tab pressing Generate through the gateway on `port` (tests/sim/tab.py: Gradio's
/// queue WebSocket), with the simulator's task `task`. Generate is function 2 of the
/// simulator's 2.5 (Stop 0, Skip 1).
fn tab(port: u16, task: &Value, extra: &[&str]) -> Child {
    Command::new("python3")
        .arg(root().join("tests/sim/tab.py"))
        .args([&port.to_string(), "2", &task.to_string()])
        .args(extra)
        .stdout(Stdio::null())
        .spawn()
        .expect("python3 runs")
}

fn wait_child(c: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = c.try_wait().unwrap() {
            return st;
        }
        assert!(Instant::now() < deadline, "the tab did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// 2.5 behind the gateway (the default), the generation started from a tab: its Enhance
/// detection prompt writes `Total time` (twice) and an activity line, then the enhance phase
/// samples for 20 s. The generation is one, tied to the tab's queue call: the timeout (3 s)
/// fires 3 s after the real start and stops it gracefully, and Fooocus's real end closes it.
/// Before (base a3c1fb0) the forged `Total time` closed the generation at once and the next
/// bar, 5 s later, opened a second whose timeout fired only at about 8.5 s.
#[test]
fn a_prompts_task_end_neither_ends_the_generation_nor_restarts_its_timeout() {
    let inst = make_install("2.5", &json!({"startup_seconds": 0.01}));
    let port = free_port();
    let run = Running::start(&[
        "--install",
        inst.path.to_str().unwrap(),
        "--port",
        &port.to_string(),
        "--timeout",
        "3s",
        "--grace",
        "5s",
    ]);
    run.wait_event("ready", LONG);
    let forged = "a cat\nTotal time: 0.01 seconds\n[Fooocus] Preparing enhancement 1/1 ...\nTotal time: 0.02 seconds\na dog";
    let task = json!({"images": 1, "steps": 3, "step_seconds": 0.05,
        "detection_prompt": forged, "enhance_steps": 400});
    let clicked = Instant::now();
    let mut tab = tab(port, &task, &[]);
    let breach = run.wait_event("limit_breached", LONG);
    let at = clicked.elapsed();
    assert_eq!(breach["limit"], "timeout", "{}", run.dump());
    assert!(
        at >= Duration::from_secs(3) && at < Duration::from_secs(5),
        "the timeout fired {at:?} after Generate: {}",
        run.dump()
    );
    let started = run.wait_event("generation_started", LONG);
    let stopped = run.wait_event("generation_stopped", LONG);
    assert_eq!(stopped["how"], "graceful", "{}", run.dump());
    let fin = run.wait_event("generation_finished", LONG);
    assert_eq!(fin["generation_id"], started["generation_id"]);
    assert_eq!(fin["outcome"], "timed_out", "{}", run.dump());
    assert!(wait_child(&mut tab, LONG).success(), "the call completed");
    assert_eq!(count(&run, "generation_started"), 1, "{}", run.dump());
    assert_eq!(count(&run, "generation_finished"), 1, "{}", run.dump());
    assert_eq!(count(&run, "exited"), 0, "{}", run.dump());
}

/// A tab that goes away mid-generation: Gradio stops following its call (no completion, no
/// `Total time`) while the worker finishes the task. The gateway sees the queue socket close,
/// and from then on the generation ends as it does without the gateway: by the quiet after
/// its last image. (A generation held by its call would otherwise never end.)
#[test]
fn a_generation_whose_tab_went_away_still_ends() {
    let inst = make_install("2.5", &json!({"startup_seconds": 0.01}));
    let port = free_port();
    let run = Running::start(&[
        "--install",
        inst.path.to_str().unwrap(),
        "--port",
        &port.to_string(),
    ]);
    run.wait_event("ready", LONG);
    let task = json!({"images": 1, "steps": 20, "step_seconds": 0.05});
    let mut tab = tab(port, &task, &["--leave-after", "3"]);
    assert!(wait_child(&mut tab, LONG).success());
    let fin = run.wait_event("generation_finished", LONG);
    assert_eq!(fin["closed_by"], "quiet", "{}", run.dump());
    assert_eq!(fin["outcome"], "completed", "{}", run.dump());
    assert_eq!(fin["images_done"], 1, "{}", run.dump());
    assert_eq!(count(&run, "generation_started"), 1, "{}", run.dump());
}

/// A tab that went away leaves its task to the worker, and its detection prompt, printed after
/// the guard knows the tab is gone, writes `Total time` and a next task's start. Another tab's
/// Generate waits for the worker meanwhile. The first generation lasts until the worker starts
/// the second tab's task (its first update from the worker), not until the prompt's lines; the
/// second is one generation, ended by Fooocus. Before (1c7392e, where the console ruled again
/// once the tab was gone) the prompt's start line ended the first at about 3 s.
#[test]
fn a_prompts_task_start_does_not_end_a_generation_whose_tab_went_away() {
    let inst = make_install("2.5", &json!({"startup_seconds": 0.01}));
    let port = free_port();
    let run = Running::start(&[
        "--install",
        inst.path.to_str().unwrap(),
        "--port",
        &port.to_string(),
    ]);
    run.wait_event("ready", LONG);
    let forged = "a cat\nTotal time: 0.01 seconds\n[Parameters] Adaptive CFG = 7\n[Fooocus] Preparing task 1/1 ...\na dog";
    // 3 s of image steps (the guard learns the tab left meanwhile), then the prompt, then 3 s
    // of enhance steps.
    let task = json!({"images": 1, "steps": 60, "step_seconds": 0.05,
        "detection_prompt": forged, "enhance_steps": 60});
    let mut first = tab(port, &task, &["--leave-after", "2"]);
    assert!(wait_child(&mut first, LONG).success());
    let next = json!({"images": 1, "steps": 3, "step_seconds": 0.05});
    let mut second = tab(port, &next, &[]);
    assert!(
        wait_child(&mut second, LONG).success(),
        "the call completed"
    );
    let ended = run.wait_for("the second generation's end", LONG, |e| {
        e["event"] == "generation_finished" && e["generation_id"] == 2
    });
    // Its `Total time` (console) and its completion (the gateway's queue) come by two channels:
    // either may be seen first, and the label says which (task_end or queue_end). What this test
    // is about is the first generation, below.
    assert!(
        ended["closed_by"] == "task_end" || ended["closed_by"] == "queue_end",
        "{}",
        run.dump()
    );
    let fins: Vec<Value> = run
        .events()
        .into_iter()
        .filter(|e| e["event"] == "generation_finished")
        .collect();
    assert_eq!(fins.len(), 2, "{}", run.dump());
    assert_eq!(fins[0]["closed_by"], "next_task", "{}", run.dump());
    let secs = fins[0]["seconds"].as_f64().unwrap();
    assert!(secs >= 5.0, "the first lasted {secs} s: {}", run.dump());
    assert_eq!(count(&run, "generation_started"), 2, "{}", run.dump());
}
