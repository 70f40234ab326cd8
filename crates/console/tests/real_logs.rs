//! The parser against real users' console logs quoted in public issues (`tests/real-logs/`,
//! README there): each `NAME.log` has a `NAME.expected` with the events a correct reading
//! gives, one `LINE KIND [JSON fields]` per line.
//!
//! Scored kinds are the state events; `activity`, `worker_started` and `phase` are left out
//! (they refresh timers, hint at the stop route, or say which part of its work Fooocus is in:
//! the phases are checked against upstream's own lines in `tests/phases.rs`, and these
//! fixtures' expectations were written before the parser told phases). Fixtures listed in `known-failing.txt`
//! must still fail, so a change that fixes one is noticed and the list shrinks.
//! `REAL_LOGS_SCORE_ONLY=1` prints the score without asserting (to score another revision).

use std::path::Path;

use fooocus_console::parse_log;
use serde_json::Value;

const UNSCORED: &[&str] = &["activity", "worker_started", "phase"];

fn parsed(log: &str) -> Vec<(u64, Value)> {
    let mut out = Vec::new();
    parse_log(log.as_bytes(), |e| {
        let v = serde_json::to_value(e).unwrap();
        if !UNSCORED.contains(&v["kind"].as_str().unwrap_or("")) {
            out.push((e.line, v));
        }
    })
    .unwrap();
    out
}

fn expected(text: &str) -> Vec<(u64, String, Value)> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut parts = l.splitn(3, ' ');
            let line = parts.next().unwrap().parse().unwrap();
            let kind = parts.next().unwrap().to_string();
            let fields = parts
                .next()
                .map(|f| serde_json::from_str(f).unwrap())
                .unwrap_or(Value::Object(Default::default()));
            (line, kind, fields)
        })
        .collect()
}

fn matches(got: &[(u64, Value)], want: &[(u64, String, Value)]) -> bool {
    got.len() == want.len()
        && got.iter().zip(want).all(|((gl, gv), (wl, wk, wf))| {
            gl == wl
                && gv["kind"] == *wk.as_str()
                && wf
                    .as_object()
                    .unwrap()
                    .iter()
                    .all(|(k, v)| gv.get(k) == Some(v))
        })
}

#[test]
fn real_logs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/real-logs");
    let known: Vec<String> = std::fs::read_to_string(dir.join("known-failing.txt"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().into_string().unwrap();
            n.strip_suffix(".log").map(str::to_string)
        })
        .collect();
    names.sort();
    assert!(names.len() >= 10, "fixtures missing in {}", dir.display());
    let mut right = (0, 0, 0, 0); // dev right, dev total, held-out right, held-out total
    let mut surprises = Vec::new();
    for name in &names {
        let log = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap();
        let want =
            expected(&std::fs::read_to_string(dir.join(format!("{name}.expected"))).unwrap());
        let got = parsed(&log);
        let ok = matches(&got, &want);
        let held_out = name.starts_with("heldout-");
        if held_out {
            right.3 += 1;
            right.2 += ok as u32;
        } else {
            right.1 += 1;
            right.0 += ok as u32;
        }
        println!("{} {name}", if ok { "right" } else { "WRONG" });
        if ok == known.contains(name) {
            surprises.push(format!(
                "{name}: {} (known-failing.txt says otherwise)\n  got:  {:?}\n  want: {:?}",
                if ok { "now right" } else { "wrong" },
                got.iter()
                    .map(|(l, v)| format!("{l} {}", v["kind"]))
                    .collect::<Vec<_>>(),
                want.iter()
                    .map(|(l, k, _)| format!("{l} {k}"))
                    .collect::<Vec<_>>()
            ));
        }
    }
    println!(
        "real logs: dev {}/{}, held-out {}/{}",
        right.0, right.1, right.2, right.3
    );
    if std::env::var_os("REAL_LOGS_SCORE_ONLY").is_none() {
        assert!(surprises.is_empty(), "{}", surprises.join("\n"));
    }
}
