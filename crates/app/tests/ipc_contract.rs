//! The IPC contract has one source: `ui/src/types.ts`. This test reads it and checks the JSON
//! the Rust side really sends (serde, the same values the app hands to the webview) against it:
//! a field Rust sends that types.ts lacks, a field types.ts requires that Rust does not send, a
//! null where types.ts says never null, a value outside a literal union, all fail here. It also
//! writes the state -> actions table the mock backend uses (`ui/src/actions.generated.ts`) and
//! fails when the committed file is stale (run with `UPDATE_IPC=1` to rewrite it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use guard_core::config::{Config, FieldError};
use guard_core::console::{ConsoleLine, Stream};
use guard_core::events::{EventKind, GuardEvent, LimitKind};
use guard_core::supervisor::{Actions, FooocusState, GenerationProgress, GracefulStop, Status};
use guard_fooocus::install::{Fork, Install, InstallKind};
use serde::Serialize;
use serde_json::Value;

// --- a small reader for the subset of TypeScript types.ts uses ----------------------------

#[derive(Clone, Debug)]
enum Ty {
    Str,
    Num,
    Bool,
    Null,
    Unknown,
    Lit(String),
    Ref(String),
    Obj(Vec<Field>, bool),
    Array(Box<Ty>),
    Tuple(Vec<Ty>),
    Union(Vec<Ty>),
}

#[derive(Clone, Debug)]
struct Field {
    name: String,
    optional: bool,
    ty: Ty,
}

fn tokens(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b: Vec<char> = src.chars().collect();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && b.get(i + 1) == Some(&'/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && b.get(i + 1) == Some(&'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == '*' && b[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == '"' {
            let start = i;
            i += 1;
            while b[i] != '"' {
                i += 1;
            }
            i += 1;
            out.push(b[start..i].iter().collect());
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            let start = i;
            while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_' || b[i] == '$') {
                i += 1;
            }
            out.push(b[start..i].iter().collect());
        } else {
            out.push(c.to_string());
            i += 1;
        }
    }
    out
}

struct Parser {
    t: Vec<String>,
    i: usize,
}

impl Parser {
    fn peek(&self) -> &str {
        self.t.get(self.i).map_or("", |s| s.as_str())
    }
    fn next(&mut self) -> String {
        self.i += 1;
        self.t[self.i - 1].clone()
    }
    fn eat(&mut self, s: &str) -> bool {
        if self.peek() == s {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, s: &str) {
        let got = self.next();
        assert_eq!(got, s, "types.ts: expected {s:?} at token {}", self.i);
    }

    fn file(&mut self) -> BTreeMap<String, Ty> {
        let mut defs = BTreeMap::new();
        while self.i < self.t.len() {
            self.eat("export");
            match self.next().as_str() {
                "interface" => {
                    let name = self.next();
                    self.expect("{");
                    defs.insert(name, self.members());
                }
                "type" => {
                    let name = self.next();
                    self.expect("=");
                    defs.insert(name, self.ty());
                    self.eat(";");
                }
                other => panic!("types.ts: unexpected {other:?} at the top level"),
            }
        }
        defs
    }

    /// After `{`: members up to the matching `}`.
    fn members(&mut self) -> Ty {
        let mut fields = Vec::new();
        let mut open = false;
        while !self.eat("}") {
            if self.eat("[") {
                // An index signature: `[k: string]: unknown`.
                while !self.eat("]") {
                    self.next();
                }
                self.expect(":");
                self.ty();
                open = true;
            } else {
                let name = self.next();
                let optional = self.eat("?");
                self.expect(":");
                fields.push(Field {
                    name,
                    optional,
                    ty: self.ty(),
                });
            }
            if !self.eat(";") {
                self.eat(",");
            }
        }
        Ty::Obj(fields, open)
    }

    fn ty(&mut self) -> Ty {
        self.eat("|");
        let mut alts = vec![self.postfix()];
        while self.eat("|") {
            alts.push(self.postfix());
        }
        if alts.len() == 1 {
            alts.pop().unwrap()
        } else {
            Ty::Union(alts)
        }
    }

    fn postfix(&mut self) -> Ty {
        let mut t = self.primary();
        while self.peek() == "[" && self.t.get(self.i + 1).map(String::as_str) == Some("]") {
            self.i += 2;
            t = Ty::Array(Box::new(t));
        }
        t
    }

    fn primary(&mut self) -> Ty {
        let tok = self.next();
        match tok.as_str() {
            "string" => Ty::Str,
            "number" => Ty::Num,
            "boolean" => Ty::Bool,
            "null" => Ty::Null,
            "unknown" => Ty::Unknown,
            "{" => self.members(),
            "(" => {
                let t = self.ty();
                self.expect(")");
                t
            }
            "[" => {
                let mut items = vec![self.ty()];
                while self.eat(",") {
                    items.push(self.ty());
                }
                self.expect("]");
                Ty::Tuple(items)
            }
            s if s.starts_with('"') => Ty::Lit(s.trim_matches('"').to_string()),
            _ => Ty::Ref(tok),
        }
    }
}

fn types_ts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ui/src/types.ts")
}

fn defs() -> BTreeMap<String, Ty> {
    let src = std::fs::read_to_string(types_ts()).expect("ui/src/types.ts");
    Parser {
        t: tokens(&src),
        i: 0,
    }
    .file()
}

/// What is wrong with `v` as a `ty` (empty: nothing).
fn check(v: &Value, ty: &Ty, defs: &BTreeMap<String, Ty>, path: &str) -> Vec<String> {
    let bad = |what: &str| vec![format!("{path}: Rust sends {v}, types.ts says {what}")];
    match ty {
        Ty::Unknown => vec![],
        Ty::Str if v.is_string() => vec![],
        Ty::Num if v.is_number() => vec![],
        Ty::Bool if v.is_boolean() => vec![],
        Ty::Null if v.is_null() => vec![],
        Ty::Str => bad("string"),
        Ty::Num => bad("number"),
        Ty::Bool => bad("boolean"),
        Ty::Null => bad("null"),
        Ty::Lit(l) if v.as_str() == Some(l) => vec![],
        Ty::Lit(l) => bad(&format!("\"{l}\"")),
        Ty::Ref(name) => {
            let t = defs
                .get(name)
                .unwrap_or_else(|| panic!("types.ts: {name} is not defined"));
            check(v, t, defs, path)
        }
        Ty::Array(item) => match v.as_array() {
            Some(items) => items
                .iter()
                .enumerate()
                .flat_map(|(i, x)| check(x, item, defs, &format!("{path}[{i}]")))
                .collect(),
            None => bad("an array"),
        },
        Ty::Tuple(items) => match v.as_array() {
            Some(xs) if xs.len() == items.len() => xs
                .iter()
                .zip(items)
                .enumerate()
                .flat_map(|(i, (x, t))| check(x, t, defs, &format!("{path}[{i}]")))
                .collect(),
            _ => bad(&format!("a tuple of {}", items.len())),
        },
        Ty::Union(alts) => {
            let results: Vec<_> = alts.iter().map(|t| check(v, t, defs, path)).collect();
            if results.iter().any(Vec::is_empty) {
                return vec![];
            }
            // Say why the closest alternative does not fit (the object among `X | null`).
            results.into_iter().min_by_key(Vec::len).unwrap()
        }
        Ty::Obj(fields, open) => {
            let Some(obj) = v.as_object() else {
                return bad("an object");
            };
            let mut errs = Vec::new();
            for (k, x) in obj {
                match fields.iter().find(|f| &f.name == k) {
                    Some(f) => errs.extend(check(x, &f.ty, defs, &format!("{path}.{k}"))),
                    None if *open => {}
                    None => errs.push(format!(
                        "{path}.{k}: Rust sends it, types.ts does not declare it"
                    )),
                }
            }
            for f in fields {
                if !f.optional && !obj.contains_key(&f.name) {
                    errs.push(format!(
                        "{path}.{}: types.ts requires it, Rust does not send it",
                        f.name
                    ));
                }
            }
            errs
        }
    }
}

/// Every value must fit the type `name` of types.ts.
fn fits<T: Serialize>(name: &str, values: &[T]) -> Vec<String> {
    let defs = defs();
    let ty = Ty::Ref(name.to_string());
    values
        .iter()
        .flat_map(|v| check(&serde_json::to_value(v).unwrap(), &ty, &defs, name))
        .collect()
}

// --- the values the Rust side sends -------------------------------------------------------

fn all_states() -> Vec<FooocusState> {
    use FooocusState::*;
    let all = vec![
        NotConfigured,
        Stopped,
        Starting,
        Ready,
        Generating,
        Stopping,
        Restarting,
        GaveUp,
        Asleep,
    ];
    // A new state fails to compile here until it is listed above.
    for s in &all {
        match s {
            NotConfigured | Stopped | Starting | Ready | Generating | Stopping | Restarting
            | GaveUp | Asleep => {}
        }
    }
    all
}

fn install(kind: InstallKind, fork: Fork, version: Option<&str>) -> Install {
    Install {
        root: "/home/you/Fooocus".into(),
        kind,
        python: "/home/you/Fooocus/venv/bin/python".into(),
        fooocus_dir: "/home/you/Fooocus".into(),
        entry: "/home/you/Fooocus/launch.py".into(),
        version: version.map(String::from),
        fork,
    }
}

fn installs() -> Vec<Install> {
    use Fork::*;
    use InstallKind::*;
    vec![
        install(Portable, Fooocus, Some("2.5.5")),
        install(Venv, Mashb1t, None),
        install(Conda, Mre, Some("2.0.78")),
        install(Interpreter, FooocusApi, None),
    ]
}

fn statuses() -> Vec<Status> {
    let backends = [
        guard_contain::BackendKind::CgroupV2,
        guard_contain::BackendKind::CgroupV1,
        guard_contain::BackendKind::Fallback,
        guard_contain::BackendKind::JobObject,
    ];
    let mut out = Vec::new();
    for (i, state) in all_states().into_iter().enumerate() {
        let full = i % 2 == 0;
        out.push(Status {
            state,
            url: full.then(|| "http://127.0.0.1:7865".into()),
            install: full.then(|| installs()[i % 4].clone()),
            backend: full.then(|| guard_contain::BackendChoice {
                kind: backends[i % 4],
                reason: "cgroup v2 with memory and cpu".into(),
                unenforced: vec!["memory".into()],
            }),
            gpu_status: "ok".into(),
            generation: full.then_some(GenerationProgress {
                id: 3,
                started_ms: 1_700_000_000_000,
                image_index: Some(1),
                image_total: Some(2),
                step: Some(4),
                step_total: Some(30),
                elapsed_s: 5.5,
                timeout_s: Some(600.0),
                phase: Some(fooocus_console::Phase::Sampling),
                timeout_from_ms: 1_700_000_020_000,
                loads_left_out: true,
            }),
            unseen_breach: full,
            graceful_stop: GracefulStop {
                available: full,
                why: "why".into(),
            },
            demo: false,
            restarts: 2,
            pid: full.then_some(1234),
            actions: Actions::for_state(state, full),
            download: full.then_some(guard_core::generation::ModelDownload {
                file: Some("juggernautXL_v8Rundiffusion.safetensors".into()),
                percent: Some(42),
                size: Some("2.91G/6.62G".into()),
            }),
            sleep: full.then(|| guard_core::supervisor::SleepInfo {
                since_ms: 1_700_000_000_000,
                idle_s: 1200.0,
                held_ram_bytes: Some(9 << 30),
                ram_before_bytes: Some(20 << 30),
                ram_after_bytes: Some(11 << 30),
                vram_before_bytes: Some(7 << 30),
                vram_after_bytes: Some(1 << 30),
                wake_estimate_s: 25.0,
                waking: i % 4 == 0,
                wake_failed: (i % 4 == 2).then(|| "Fooocus exited with code 1".into()),
            }),
            sleep_spans: Vec::new(),
        });
    }
    // A sleep with nothing measured (no sampler figures in time, no GPU).
    let mut s = out[0].clone();
    s.sleep = Some(guard_core::supervisor::SleepInfo::default());
    out.push(s);
    // Past sleeps for the graphs: one over, one going on.
    let mut s = out[0].clone();
    s.sleep_spans = vec![
        guard_core::supervisor::SleepSpan {
            asleep_ms: 1_700_000_000_000,
            woke_ms: Some(1_700_000_600_000),
        },
        guard_core::supervisor::SleepSpan {
            asleep_ms: 1_700_000_900_000,
            woke_ms: None,
        },
    ];
    out.push(s);
    // A download that has printed nothing measurable yet.
    let mut s = out[0].clone();
    s.download = Some(guard_core::generation::ModelDownload {
        file: None,
        percent: None,
        size: None,
    });
    out.push(s);
    // A generation with nothing known yet.
    let mut s = out[0].clone();
    s.generation = Some(GenerationProgress {
        id: 1,
        started_ms: 0,
        image_index: None,
        image_total: None,
        step: None,
        step_total: None,
        elapsed_s: 0.0,
        timeout_s: None,
        phase: None,
        timeout_from_ms: 0,
        loads_left_out: false,
    });
    out.push(s);
    out
}

fn samples() -> Vec<guard_sample::Sample> {
    use guard_sample::*;
    let full = Sample {
        ts_ms: 1,
        tree: Some(TreeSample {
            cpu_percent: 1.0,
            cpu_percent_machine: 0.5,
            ram_bytes: 2,
            ram_source: RamSource::Rss,
            swap_bytes: 3,
            commit_bytes: Some(6),
            processes: 4,
            vram_bytes: Some(5),
            vram_source: Some(VramSource::Nvml),
        }),
        system: SystemSample {
            cpu_percent: 1.0,
            ram_used_bytes: 2,
            ram_total_bytes: 3,
        },
        gpus: vec![
            GpuSample {
                index: 0,
                name: "RTX".into(),
                util_percent: Some(1.0),
                vram_used_bytes: Some(2),
                vram_total_bytes: Some(3),
                temperature_c: Some(4.0),
            },
            GpuSample::default(),
        ],
        gpu_status: "ok".into(),
    };
    let mut job = full.clone();
    job.tree.as_mut().unwrap().ram_source = RamSource::Job;
    let mut cgroup = full.clone();
    cgroup.tree.as_mut().unwrap().ram_source = RamSource::Cgroup;
    let mut counters = full.clone();
    counters.tree.as_mut().unwrap().vram_source = Some(VramSource::GpuCounters);
    let mut device = full.clone();
    let tree = device.tree.as_mut().unwrap();
    (tree.vram_source, tree.vram_bytes, tree.commit_bytes) = (Some(VramSource::Device), None, None);
    let mut no_gpu = full.clone();
    no_gpu.tree.as_mut().unwrap().vram_source = None;
    vec![
        full,
        job,
        cgroup,
        counters,
        device,
        no_gpu,
        Sample::default(),
    ]
}

#[test]
fn status_matches_types_ts_in_every_state() {
    let errs = fits("Status", &statuses());
    assert!(errs.is_empty(), "{}", errs.join("\n"));
}

#[test]
fn installs_match_types_ts() {
    let errs = fits("InstallInfo", &installs());
    assert!(errs.is_empty(), "{}", errs.join("\n"));
}

#[test]
fn samples_and_history_points_match_types_ts() {
    let mut errs = fits("Sample", &samples());
    let points = [
        guard_history::HistoryPoint {
            ts_ms: 1,
            cpu: [1.0, 2.0, 3.0],
            ram: [1.0, 2.0, 3.0],
            gpu: Some([1.0, 2.0, 3.0]),
            vram: Some([1.0, 2.0, 3.0]),
        },
        guard_history::HistoryPoint {
            ts_ms: 1,
            cpu: [1.0, 2.0, 3.0],
            ram: [1.0, 2.0, 3.0],
            gpu: None,
            vram: None,
        },
    ];
    errs.extend(fits("HistoryPoint", &points));
    assert!(errs.is_empty(), "{}", errs.join("\n"));
}

#[test]
fn settings_match_types_ts() {
    let mut full = Config {
        install_path: Some("/home/you/Fooocus".into()),
        python: Some("/usr/bin/python3".into()),
        nvml_library: Some("/usr/lib/libnvidia-ml.so.1".into()),
        ..Config::default()
    };
    full.launch.preset = Some("realistic".into());
    full.launch.vram_mode = Some("always-low-vram".into());
    full.launch.listen = Some("0.0.0.0".into());
    full.launch.extra_args = vec!["--disable-analytics".into()];
    full.limits.timeout_s = Some(600.0);
    full.limits.stall_timeout_s = Some(60.0);
    full.limits.startup_timeout_s = Some(600.0);
    full.limits.memory_bytes = Some(1 << 34);
    full.limits.swap_bytes = Some(1 << 32);
    full.limits.vram_bytes = Some(1 << 33);
    full.limits.cpu_percent = Some(400);
    full.limits.grace_s = Some(10.0);
    full.gateway.token = Some("secret".into());
    full.gateway.rate_per_minute = Some(6);
    full.sleep_after_s = Some(1200.0);
    full.open_browser = true;
    let mut configs = vec![Config::default(), full];
    for (policy, containment) in [
        (guard_core::config::RestartMode::Never, "cgroup-v2"),
        (guard_core::config::RestartMode::Always, "cgroup-v1"),
        (guard_core::config::RestartMode::OnFailure, "fallback"),
    ] {
        let mut c = Config::default();
        c.restart.policy = policy;
        c.containment = containment.into();
        configs.push(c);
    }
    let errs = fits("Settings", &configs);
    assert!(errs.is_empty(), "{}", errs.join("\n"));
}

#[test]
fn settings_errors_and_save_results_match_types_ts() {
    let bad = Config {
        sampling_interval_ms: 1,
        ..Config::default()
    };
    let errors: Vec<FieldError> = bad.validate();
    assert!(!errors.is_empty(), "an out-of-range interval is an error");
    let mut errs = fits("FieldError", &errors);
    errs.extend(fits(
        "SaveResult",
        &[guard_app::SaveResult {
            saved: false,
            errors,
            applied_live: vec!["limits".into()],
            needs_restart: vec!["launch options".into()],
            needs_guard_restart: vec!["metrics".into()],
        }],
    ));
    assert!(errs.is_empty(), "{}", errs.join("\n"));
}

#[test]
fn history_records_match_types_ts() {
    let full = guard_history::GenerationRecord {
        id: 1,
        started_ms: 1,
        ended_ms: Some(2),
        duration_s: Some(1.0),
        outcome: "timed_out".into(),
        closed_by: Some("limit".into()),
        images_done: 1,
        images_total: Some(2),
        last_step: Some(3),
        steps_total: Some(30),
        peak_ram_bytes: Some(1),
        peak_swap_bytes: Some(1),
        peak_vram_bytes: Some(1),
        peak_cpu_percent: Some(1.0),
        limit: Some("timeout".into()),
        stop_how: Some("killed".into()),
        stop_steps: Some("[]".into()),
        fooocus_version: Some("2.5.5".into()),
        model_load_s: Some(20.0),
        preparation_s: Some(16.0),
        sampling_s: Some(60.0),
        decode_s: Some(10.0),
        saving_s: Some(0.5),
        step_s: Some(4.0),
        longest_gap_s: Some(16.0),
    };
    let outcomes = [
        "running",
        "completed",
        "stopped",
        "skipped",
        "failed",
        "out_of_memory",
        "timed_out",
        "stalled",
        "killed",
        "crashed",
    ];
    let mut records: Vec<_> = outcomes
        .iter()
        .map(|o| guard_history::GenerationRecord {
            outcome: o.to_string(),
            ..Default::default()
        })
        .collect();
    records.push(full);
    let mut errs = fits("GenerationRecord", &records);
    errs.extend(fits(
        "BreachRecord",
        &[
            guard_history::BreachRecord::default(),
            guard_history::BreachRecord {
                how: Some("graceful".into()),
                generation_id: Some(1),
                ..Default::default()
            },
        ],
    ));
    let stats: Vec<_> = ["timeout", "memory", "vram", "swap", "cpu"]
        .iter()
        .flat_map(|k| {
            [
                guard_history::LimitStats {
                    limit: k.to_string(),
                    values: vec![],
                    p50: None,
                    p95: None,
                    max: None,
                    would_stop: 0,
                    suggested: None,
                },
                guard_history::LimitStats {
                    limit: k.to_string(),
                    values: vec![10.0, 20.0],
                    p50: Some(10.0),
                    p95: Some(20.0),
                    max: Some(20.0),
                    would_stop: 1,
                    suggested: Some(60.0),
                },
            ]
        })
        .collect();
    errs.extend(fits("LimitStats", &stats));
    assert!(errs.is_empty(), "{}", errs.join("\n"));
}

#[test]
fn console_lines_and_events_match_types_ts() {
    let lines: Vec<_> = [Stream::Stdout, Stream::Stderr, Stream::Guard]
        .into_iter()
        .map(|stream| ConsoleLine {
            n: 1,
            stream,
            text: "x".into(),
        })
        .collect();
    let mut errs = fits("ConsoleLine", &lines);
    errs.extend(fits(
        "GuardEvent",
        &[
            GuardEvent::now(EventKind::Stopped),
            GuardEvent::now(EventKind::LimitBreached {
                limit: LimitKind::Vram,
                configured: 1.0,
                observed: 2.0,
                action: guard_core::events::BreachAction::StopGeneration,
                generation_id: Some(1),
                source: Some("tree".into()),
                phase: Some(fooocus_console::Phase::Preparation),
            }),
        ],
    ));
    assert!(errs.is_empty(), "{}", errs.join("\n"));
}

#[test]
fn the_checker_catches_drift() {
    // The checker itself: each kind of drift it is there for is reported.
    let defs = defs();
    let status = serde_json::to_value(&statuses()[0]).unwrap();
    let ty = Ty::Ref("Status".into());
    let mut extra = status.clone();
    extra["surprise"] = Value::Bool(true);
    assert!(check(&extra, &ty, &defs, "Status")[0].contains("does not declare it"));
    let mut missing = status.clone();
    missing.as_object_mut().unwrap().remove("gpu_status");
    assert!(check(&missing, &ty, &defs, "Status")[0].contains("requires it"));
    let mut bad_state = status.clone();
    bad_state["state"] = "paused".into();
    assert!(!check(&bad_state, &ty, &defs, "Status").is_empty());
    let mut bad_null = status;
    bad_null["demo"] = Value::Null;
    assert!(!check(&bad_null, &ty, &defs, "Status").is_empty());
}

// --- the actions table for the mock backend -----------------------------------------------

fn actions_ts() -> String {
    let mut s = String::from(
        "// Generated by crates/app/tests/ipc_contract.rs from Actions::for_state: do not edit.\n\
         // (UPDATE_IPC=1 cargo test -p guard-app --test ipc_contract rewrites it.)\n\
         import type { Actions, FooocusState } from \"./types\";\n\n\
         /** What each state allows, [without, with] an address to open. */\n\
         export const ACTIONS: Record<FooocusState, [Actions, Actions]> = {\n",
    );
    for state in all_states() {
        let name = serde_json::to_value(state).unwrap();
        let a = |url| serde_json::to_string(&Actions::for_state(state, url)).unwrap();
        s.push_str(&format!(
            "  {}: [{}, {}],\n",
            name.as_str().unwrap(),
            a(false),
            a(true)
        ));
    }
    s.push_str("};\n");
    s
}

#[test]
fn the_mocks_actions_table_is_generated_from_rust() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ui/src/actions.generated.ts");
    let want = actions_ts();
    if std::env::var_os("UPDATE_IPC").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "ui/src/actions.generated.ts is stale: run `UPDATE_IPC=1 cargo test -p guard-app --test ipc_contract` and commit it"
    );
    // And the table fits the contract.
    let errs = fits(
        "Actions",
        &all_states()
            .into_iter()
            .map(|s| Actions::for_state(s, true))
            .collect::<Vec<_>>(),
    );
    assert!(errs.is_empty(), "{}", errs.join("\n"));
}
