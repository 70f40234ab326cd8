//! The console parser against the simulator's ground truth, for every supported version: each
//! event kind is recognised at the line the simulator printed it on (`parse-log` on the saved
//! console, as a user would run it).
#![cfg(unix)]

use std::process::Command;

#[path = "harness.rs"]
mod harness;
use harness::*;

/// Every simulated version, named by its upstream snapshot (`tests/sim/README.md`).
const VERSIONS: [&str; 12] = [
    "2.0.78",
    "2.1.679",
    "2.1.865",
    "2.2.1",
    "2.3.1",
    "2.4.3",
    "2.5.5",
    "mashb1t-2.6.5",
    "mre-2.0.78.5",
    "api-0.3.33",
    "api-0.4.1.1",
    "api-0.5.0.1",
];

fn run_sim(version: &str, scenario: &Value) -> (String, Vec<Value>) {
    let dir = tempfile::tempdir().unwrap();
    let scen = dir.path().join("s.json");
    let truth = dir.path().join("truth.jsonl");
    std::fs::write(&scen, scenario.to_string()).unwrap();
    let out = Command::new("python3")
        .arg(simulator())
        .args([
            "--sim-version",
            version,
            "--port",
            "0",
            "--merge-stderr",
            "--scenario",
        ])
        .arg(&scen)
        .arg("--truth")
        .arg(&truth)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stdout).into_owned();
    (log, read_events(&truth))
}

/// The parser's events for `log`, without its `phase` events: the simulator's truth states no
/// phases (they are checked against upstream's own format strings instead:
/// tests/sim/test_upstream_lines.py and crates/console/tests/phases.rs).
fn parse(log: &str) -> Vec<Value> {
    let mut child = Command::new(cli())
        .args(["parse-log", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(log.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["kind"] != "phase")
        .collect()
}

/// Keep only the fields the truth states (the parser adds e.g. a traceback).
fn project(parsed: &[Value], truth: &[Value]) -> Vec<Value> {
    parsed
        .iter()
        .zip(truth.iter().chain(std::iter::repeat(&Value::Null)))
        .map(|(p, t)| match t.as_object() {
            Some(keys) => Value::Object(
                keys.keys()
                    .filter_map(|k| p.get(k).map(|v| (k.clone(), v.clone())))
                    .collect(),
            ),
            None => p.clone(),
        })
        .collect()
}

#[test]
fn every_event_kind_at_the_right_line_for_every_version() {
    for version in VERSIONS {
        let scenario = json!({
            "startup_seconds": 0.0,
            "download": true,
            "tasks": [
                {"delay": 0.0, "images": 2, "steps": 3, "step_seconds": 0.0},
                {"delay": 0.0, "images": 1, "steps": 4, "step_seconds": 0.0, "tty_bars": true},
                {"delay": 0.0, "images": 1, "steps": 3, "step_seconds": 0.0, "oom": {"form": "cuda"}},
                {"delay": 0.0, "images": 1, "steps": 3, "step_seconds": 0.0, "task_error": {"exception": "ValueError", "message": "bad size"}},
                {"delay": 0.0, "images": 1, "steps": 3, "step_seconds": 0.0, "oom": {"form": "cpu"}},
                {"delay": 0.0, "images": 2, "steps": 4, "step_seconds": 0.0, "skip_at_step": 2},
                {"delay": 0.0, "images": 2, "steps": 4, "step_seconds": 0.0, "stop_at_step": 3}
            ],
            "exit_after_seconds": 1.0
        });
        let (log, truth) = run_sim(version, &scenario);
        assert!(
            truth.len() > 10,
            "{version}: the simulator printed too little:\n{log}"
        );
        let parsed = parse(&log);
        assert_eq!(
            project(&parsed, &truth),
            truth,
            "{version}: parser and truth differ; log:\n{log}"
        );
    }
}

#[test]
fn a_dead_worker_is_recognised() {
    for version in ["2.5.5", "2.0.78", "api-0.4.1.1"] {
        let (log, truth) = run_sim(
            version,
            &json!({"startup_seconds": 0.0, "worker_dies": true, "exit_after_seconds": 1.0}),
        );
        let parsed = parse(&log);
        assert_eq!(project(&parsed, &truth), truth, "{version}: log:\n{log}");
        assert!(
            truth.iter().any(|e| e["kind"] == "worker_died"),
            "{version}"
        );
    }
}

/// 2.0.x and MRE have no try around the task: its error kills the worker thread, and the
/// tasks after it never run.
#[test]
fn a_task_error_kills_the_worker_before_2_0_90() {
    for version in ["2.0.78", "mre-2.0.78.5"] {
        let (log, truth) = run_sim(
            version,
            &json!({"startup_seconds": 0.0, "exit_after_seconds": 1.5, "tasks": [
                {"delay": 0.0, "images": 1, "steps": 2, "step_seconds": 0.0, "task_error": {"exception": "ValueError", "message": "bad"}},
                {"delay": 0.0, "images": 1, "steps": 2, "step_seconds": 0.0}
            ]}),
        );
        assert_eq!(
            project(&parse(&log), &truth),
            truth,
            "{version}: log:\n{log}"
        );
        let kinds: Vec<_> = truth.iter().map(|e| e["kind"].as_str().unwrap()).collect();
        assert!(kinds.contains(&"worker_died"), "{version}: {kinds:?}");
        assert_eq!(kinds.iter().filter(|k| **k == "task_start").count(), 1);
        assert!(
            !kinds.contains(&"task_end"),
            "{version}: no Total time after a dead worker"
        );
    }
}
