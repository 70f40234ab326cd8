//! `fooocus-guard-cli install DIR`: install Fooocus where there is none, with progress.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use guard_installer::{
    self as installer, human_bytes, Platform, Progress, Request, RunOptions, Source, TorchIndex,
};

#[derive(Clone, Copy, ValueEnum)]
enum PlatformArg {
    Windows,
    Linux,
}

#[derive(Clone, Copy, ValueEnum)]
enum TorchArg {
    Cuda,
    Rocm,
    Cpu,
}

#[derive(Args)]
pub struct InstallArgs {
    /// The folder to install into (new, or empty).
    dir: PathBuf,
    /// A Fooocus release the guard knows (the newest by default).
    #[arg(long)]
    version: Option<String>,
    /// Where the archive comes from: a URL or a local file (.tar.gz of the source, or the
    /// Windows package's .7z). Upstream's release by default.
    #[arg(long, value_name = "URL|PATH")]
    source: Option<String>,
    /// The archive's SHA-256, checked before unpacking.
    #[arg(long, value_name = "HEX")]
    sha256: Option<String>,
    /// What to make: the Windows portable package or a Linux venv (this machine's by default).
    #[arg(long, value_enum)]
    platform: Option<PlatformArg>,
    /// The torch build: from the GPU found by default (NVIDIA: CUDA, AMD: ROCm, none: CPU).
    #[arg(long, value_enum)]
    torch: Option<TorchArg>,
    /// The Python that makes the venv (default: python3.10, else python3.11).
    #[arg(long, value_name = "PATH")]
    python: Option<PathBuf>,
    /// libnvidia-ml to look for the GPU with.
    #[arg(long, value_name = "PATH")]
    nvml: Option<PathBuf>,
    /// Print the plan (what is downloaded, the disk needed) and stop.
    #[arg(long)]
    plan: bool,
    /// Progress as one JSON object per line on stdout.
    #[arg(long)]
    json: bool,
    /// Forget an unfinished install of DIR (its hidden staging folder) and stop.
    #[arg(long)]
    discard: bool,
}

pub fn run(a: InstallArgs) -> ExitCode {
    let req = Request {
        target: a.dir.clone(),
        version: a.version.clone(),
        source: a.source.as_deref().map(Source::parse),
        sha256: a.sha256.clone(),
        platform: a.platform.map(|p| match p {
            PlatformArg::Windows => Platform::WindowsPortable,
            PlatformArg::Linux => Platform::LinuxSource,
        }),
    };
    let plan = match installer::plan(&req) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("fooocus-guard: {e}");
            return ExitCode::from(2);
        }
    };
    if a.discard {
        return match installer::discard(&plan) {
            Ok(()) => {
                eprintln!(
                    "fooocus-guard: the unfinished install of {} is gone",
                    plan.target.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("fooocus-guard: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let (torch, gpu_note) = match a.torch {
        Some(TorchArg::Cuda) => (TorchIndex::Cuda, "chosen".to_string()),
        Some(TorchArg::Rocm) => (TorchIndex::Rocm, "chosen".to_string()),
        Some(TorchArg::Cpu) => (TorchIndex::Cpu, "chosen".to_string()),
        None => installer::torch_for_this_machine(a.nvml.as_deref()),
    };
    if a.plan {
        if a.json {
            let mut v = serde_json::to_value(&plan).expect("plan");
            v["torch_index"] = serde_json::json!(torch);
            v["finished_phases"] = serde_json::json!(installer::finished_phases(&plan));
            println!("{v}");
        } else {
            print_plan(&plan, torch, &gpu_note);
        }
        return ExitCode::SUCCESS;
    }
    if !a.json {
        print_plan(&plan, torch, &gpu_note);
    }
    let cancel = Arc::new(AtomicBool::new(false));
    #[cfg(unix)]
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, cancel.clone());
    }
    let opts = RunOptions {
        torch_index: torch,
        python: a.python.clone(),
        ..RunOptions::default()
    };
    let (tx, rx) = crossbeam_channel::bounded(256);
    let json = a.json;
    let printer = std::thread::spawn(move || show(rx, json));
    let result = installer::run(&plan, &opts, &tx, &cancel);
    drop(tx);
    let _ = printer.join();
    match result {
        Ok(i) => {
            if json {
                println!("{}", serde_json::json!({"kind": "installed", "install": i}));
            }
            eprintln!(
                "fooocus-guard: Fooocus {} is installed in {}. Start it: fooocus-guard-cli run --install {}",
                i.version.as_deref().unwrap_or(""),
                i.root.display(),
                i.root.display()
            );
            eprintln!(
                "fooocus-guard: its first start downloads about {} of models; the start-up limit waits while it does",
                human_bytes(plan.first_start_bytes)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"kind": "failed", "message": e.to_string()})
                );
            }
            eprintln!("fooocus-guard: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print_plan(plan: &installer::Plan, torch: TorchIndex, gpu_note: &str) {
    eprintln!(
        "fooocus-guard: installing Fooocus {} into {}",
        if plan.version.is_empty() {
            "(from the archive)"
        } else {
            &plan.version
        },
        plan.target.display()
    );
    eprintln!("  from:        {}", plan.source.describe());
    eprintln!(
        "  downloads:   about {} now, about {} more at Fooocus's first start (models)",
        human_bytes(plan.download_bytes),
        human_bytes(plan.first_start_bytes)
    );
    eprintln!(
        "  disk needed: {} (checked before the first byte)",
        human_bytes(plan.disk_needed_bytes)
    );
    eprintln!(
        "  refused at:  an archive over {}, unpacking to over {} or a file over {}",
        human_bytes(plan.ceilings.archive_bytes),
        human_bytes(plan.ceilings.unpacked_bytes),
        human_bytes(plan.ceilings.file_bytes)
    );
    if plan.phases.contains(&installer::Phase::Torch) {
        eprintln!(
            "  torch:       {} build from {} ({gpu_note})",
            torch.label(),
            torch.url()
        );
    }
    let done = installer::finished_phases(plan);
    if !done.is_empty() {
        eprintln!(
            "  resuming:    {} already done",
            done.iter()
                .map(|p| p.label())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}

fn show(rx: crossbeam_channel::Receiver<Progress>, json: bool) {
    let mut last = Instant::now() - Duration::from_secs(10);
    for ev in rx.iter() {
        if json {
            // Byte counts at most 5 times a second.
            if matches!(ev, Progress::Bytes { .. }) {
                if last.elapsed() < Duration::from_millis(200) {
                    continue;
                }
                last = Instant::now();
            }
            println!("{}", serde_json::to_string(&ev).expect("event"));
            continue;
        }
        match ev {
            Progress::Phase {
                label,
                index,
                count,
                ..
            } => eprintln!("[{}/{}] {label}", index + 1, count),
            Progress::Skipped { phase } => eprintln!("      {} (done before)", phase.label()),
            Progress::Bytes { done, total, .. } => {
                if last.elapsed() < Duration::from_secs(2) {
                    continue;
                }
                last = Instant::now();
                match total {
                    Some(t) if t > 0 => eprintln!(
                        "      {} of {} ({:.0} %)",
                        human_bytes(done),
                        human_bytes(t),
                        done as f64 * 100.0 / t as f64
                    ),
                    _ => eprintln!("      {}", human_bytes(done)),
                }
            }
            Progress::Log { line } => eprintln!("    | {line}"),
        }
    }
}
