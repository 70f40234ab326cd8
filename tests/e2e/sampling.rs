//! The sampler in the running guard: the VRAM cap stops a scripted runaway (through the real
//! nvml-wrapper and the fake libnvidia-ml), and `monitor` prints samples of a running tree.
#![cfg(unix)]

use std::process::Command;
use std::time::Duration;

#[path = "harness.rs"]
mod harness;
use harness::*;

/// The fake NVML's script path is an environment variable the CLI inherits when it starts: one
/// VRAM test at a time.
static NVML_SCRIPT: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Fooocus under a 3 GiB VRAM cap, read through the real nvml-wrapper from the fake NVML, whose
/// script the test rewrites as the run goes (`gpu`). `head`: the script's first lines (a driver
/// model, or nothing).
// Fields drop in this order: the run ends before its install and the script are deleted and
// before the next VRAM test may start.
struct VramCapped {
    script: std::path::PathBuf,
    head: &'static str,
    pid: u64,
    run: Running,
    _inst: FakeInstall,
    _dir: tempfile::TempDir,
    _one: std::sync::MutexGuard<'static, ()>,
}

impl VramCapped {
    fn start(head: &'static str) -> VramCapped {
        let _one = NVML_SCRIPT.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("nvml.txt");
        write_gpu(&script, head, "gpu0.used=1073741824\n");
        std::env::set_var("FAKE_NVML_SCRIPT", &script);
        let lib = fake_nvml();
        let task = json!({"delay": 0.5, "images": 1, "steps": 2000, "step_seconds": 0.05, "session_hash": "t"});
        let inst = make_install("2.5", &json!({"startup_seconds": 0.01, "tasks": [task]}));
        let run = Running::fooocus(
            &inst,
            &[
                "--no-gateway",
                "--vram",
                "3G",
                "--nvml",
                lib.to_str().unwrap(),
                "--interval",
                "200ms",
            ],
        );
        let pid = run.wait_event("started", LONG)["pid"].as_u64().unwrap();
        VramCapped {
            _one,
            _dir: dir,
            script,
            head,
            run,
            _inst: inst,
            pid,
        }
    }

    /// The GPU's figures from now on: `gpu0.*` lines after the script's head.
    fn gpu(&self, lines: &str) {
        write_gpu(&self.script, self.head, lines);
    }
}

fn write_gpu(script: &std::path::Path, head: &str, lines: &str) {
    std::fs::write(
        script,
        format!("{head}count=1\ngpu0.name=Fake RTX\ngpu0.total=8589934592\n{lines}"),
    )
    .unwrap();
}

#[test]
fn the_vram_cap_stops_a_runaway_generation() {
    let v = VramCapped::start("");
    let (run, pid) = (&v.run, v.pid);
    run.wait_event("generation_started", LONG);
    // Fooocus's VRAM climbs 1 GiB a second from 1 GiB: over the 3 GiB cap in about 2 s.
    v.gpu(&format!(
        "gpu0.used=1073741824+1073741824\ngpu0.compute={pid}:1073741824+1073741824\n"
    ));
    let b = run.wait_event("limit_breached", LONG);
    assert_eq!(b["limit"], "vram", "{}", run.dump());
    assert_eq!(b["source"], "tree");
    assert_eq!(b["configured"], (3u64 << 30) as f64);
    assert!(b["observed"].as_f64().unwrap() > (3u64 << 30) as f64);
    let stopped = run.wait_event("generation_stopped", LONG);
    assert_eq!(stopped["limit"], "vram");
    let fin = run.wait_for("record", LONG, |e| e["event"] == "generation_finished");
    assert_eq!(fin["outcome"], "out_of_memory");
    assert!(
        fin["peak_vram_bytes"].as_u64().unwrap() > 3u64 << 30,
        "{fin}"
    );
}

/// Windows' WDDM: NVML lists Fooocus but reports its memory as "not available". The cap must
/// still fire, on the whole GPU's VRAM, and the guard must say which figure it used.
#[test]
fn the_vram_cap_fires_on_the_whole_gpu_when_per_process_vram_is_not_available() {
    let v = VramCapped::start("driver_model=wddm\n");
    let (run, pid) = (&v.run, v.pid);
    // Listed, with its memory "not available": before the fix this read as 0 and never fired.
    v.gpu(&format!("gpu0.used=1073741824\ngpu0.compute={pid}:0\n"));
    let w = run.wait_for("warning", LONG, |e| {
        e["event"] == "warning" && e["message"].as_str().unwrap_or("").contains("VRAM")
    });
    let said = w["message"].as_str().unwrap();
    assert!(
        said.contains("VRAM: whole GPU (per-process figures unavailable: NVML reports per-process memory as not available"),
        "{said}"
    );
    run.wait_event("generation_started", LONG);
    // The whole GPU climbs 1 GiB a second from 1 GiB: over the 3 GiB cap in about 2 s.
    v.gpu(&format!(
        "gpu0.used=1073741824+1073741824\ngpu0.compute={pid}:0\n"
    ));
    let b = run.wait_event("limit_breached", LONG);
    assert_eq!(b["limit"], "vram", "{}", run.dump());
    assert_eq!(b["source"], "device");
    assert!(b["observed"].as_f64().unwrap() > (3u64 << 30) as f64);
    let fin = run.wait_for("record", LONG, |e| e["event"] == "generation_finished");
    assert_eq!(fin["outcome"], "out_of_memory");
}

#[test]
fn monitor_prints_samples_of_a_running_tree() {
    let inst = make_install("2.5", &json!({"startup_seconds": 0.01, "allocate_mib": 64}));
    let run = Running::fooocus(&inst, &["--no-gateway"]);
    run.wait_event("ready", LONG);
    let pid = run.wait_event("started", LONG)["pid"]
        .as_u64()
        .unwrap()
        .to_string();
    let out = Command::new(cli())
        .args([
            "monitor",
            "--pid",
            &pid,
            "--count",
            "2",
            "--interval",
            "200ms",
            "--json",
            "--nvml",
            "/nonexistent/libnvidia-ml.so.1",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    let s = &lines[1];
    assert!(s["ts"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        s["tree"]["ram_source"], "cgroup",
        "the guard's own group is read: {s}"
    );
    assert!(s["tree"]["ram_bytes"].as_u64().unwrap() > 64 << 20, "{s}");
    assert!(s["tree"]["processes"].as_u64().unwrap() >= 1);
    assert!(s["system"]["ram_total_bytes"].as_u64().unwrap() > 0);
    assert!(s["gpus"].as_array().unwrap().is_empty());
    assert!(s["gpu_status"]
        .as_str()
        .unwrap()
        .starts_with("no NVIDIA GPU"));
    let _ = Duration::ZERO;
}

#[test]
fn prometheus_figures_on_loopback() {
    let inst = make_install(
        "2.5",
        &json!({"startup_seconds": 0.01, "tasks": [{"delay": 0.1, "images": 1, "steps": 2, "step_seconds": 0.01}]}),
    );
    let mport = free_port();
    let port = free_port().to_string();
    let mut run = Running::start_with_config(
        &format!("[metrics]\nenabled = true\nport = {mport}\n"),
        &[
            "--install",
            inst.path.to_str().unwrap(),
            "--port",
            &port,
            "--no-gateway",
            "--interval",
            "200ms",
        ],
    );
    run.wait_event("generation_finished", LONG);
    std::thread::sleep(Duration::from_millis(500));
    let body = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", mport)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut b = String::new();
        s.read_to_string(&mut b).unwrap();
        b
    };
    run.stop();
    assert!(
        body.contains("fooocus_guard_generations_total{outcome=\"completed\"} 1"),
        "{body}"
    );
    assert!(body.contains("fooocus_guard_tree_ram_bytes "), "{body}");
    assert!(body.contains("# TYPE fooocus_guard_breaches_total counter"));
}
