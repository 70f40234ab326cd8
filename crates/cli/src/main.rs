//! fooocus-guard-cli: the headless Fooocus supervisor, for GPU servers and scripts.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use guard_app::{App, AppOptions};
use guard_core::config::{Config, ConfigFile, RestartMode};
use guard_core::events::JsonLines;
use guard_core::supervisor::{FooocusState, Target, Update};
use guard_core::units;
use guard_fooocus::install;

mod install_cmd;
mod monitor;
mod stop_signal;

#[derive(Parser)]
#[command(
    name = "fooocus-guard-cli",
    version,
    about = "Launch, contain and supervise Fooocus without a desktop"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run Fooocus (or any command) contained, with limits, restarting it when it dies.
    Run(Box<RunArgs>),
    /// List the Fooocus installs found in the given folders (or the usual places).
    Detect {
        dirs: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Show the containment backend and why, the cgroup version, the GPU status, the config.
    Doctor {
        #[arg(long)]
        json: bool,
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Print one JSON object per event recognised in a saved Fooocus console log.
    ParseLog {
        /// A file, or - for standard input.
        #[arg(default_value = "-")]
        file: String,
    },
    /// Sample a running tree (a PID and its descendants): one JSON object per line.
    Monitor(monitor::MonitorArgs),
    /// Print the exact command that would start an install (as with the gateway off), or why
    /// the install's Fooocus would refuse the options.
    Argv(Box<ArgvArgs>),
    /// Install Fooocus into a new folder: download (resumable, checked), unpack, and on Linux
    /// a venv with torch and Fooocus's requirements. A retry resumes where it stopped.
    Install(Box<install_cmd::InstallArgs>),
}

#[derive(Args)]
struct ArgvArgs {
    /// The Fooocus install: a Fooocus folder or the portable package's folder.
    #[arg(long, value_name = "DIR")]
    install: PathBuf,
    #[arg(long, value_name = "PATH")]
    python: Option<PathBuf>,
    /// Settings file (default: none; only the options below).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    launch: LaunchArgs,
    /// One JSON object: program, args, cwd, env, notes.
    #[arg(long)]
    json: bool,
    /// Extra flags for Fooocus, as the extra_args setting.
    #[arg(last = true, value_name = "EXTRA")]
    extra: Vec<String>,
}

/// How Fooocus is started: `run` and `argv` take the same options.
#[derive(Args)]
struct LaunchArgs {
    #[arg(long, value_name = "N")]
    port: Option<u16>,
    #[arg(long, value_name = "NAME")]
    preset: Option<String>,
    /// One of Fooocus's VRAM modes, e.g. always-low-vram.
    #[arg(long, value_name = "MODE")]
    vram_mode: Option<String>,
    /// Listen on the LAN (bare --listen = 0.0.0.0).
    #[arg(long, value_name = "IP", num_args = 0..=1, default_missing_value = "0.0.0.0")]
    listen: Option<String>,
    /// Start through entry_with_update.py, which updates Fooocus (and discards changes to its
    /// folder) at every start; by default launch.py starts the version you have.
    #[arg(long)]
    auto_update: bool,
}

impl LaunchArgs {
    /// These options over the settings' own.
    fn apply(&self, cfg: &mut Config) {
        if let Some(p) = self.port {
            cfg.launch.port = p;
        }
        if let Some(p) = &self.preset {
            cfg.launch.preset = Some(p.clone());
        }
        if let Some(m) = &self.vram_mode {
            cfg.launch.vram_mode = Some(m.trim_start_matches('-').to_string());
        }
        if let Some(l) = &self.listen {
            cfg.launch.listen = Some(l.clone());
        }
        if self.auto_update {
            cfg.launch.auto_update = true;
        }
    }
}

#[derive(Args)]
struct RunArgs {
    /// The Fooocus install: a Fooocus folder or the portable package's folder.
    #[arg(long, value_name = "DIR", conflicts_with = "command")]
    install: Option<PathBuf>,
    /// An interpreter to use instead of the install's own.
    #[arg(long, value_name = "PATH")]
    python: Option<PathBuf>,
    /// Wall-clock limit of one generation (e.g. 90s, 10m; 0 = off).
    #[arg(long, value_name = "D")]
    timeout: Option<String>,
    /// No new step or image for this long while a generation runs (0 = off).
    #[arg(long, value_name = "D")]
    stall_timeout: Option<String>,
    /// No ready line within this long after the start (0 = off).
    #[arg(long, value_name = "D")]
    startup_timeout: Option<String>,
    /// How long a graceful stop may take before the tree is killed.
    #[arg(long, value_name = "D")]
    grace: Option<String>,
    /// RAM cap of the whole tree (e.g. 800M, 12G).
    #[arg(long, value_name = "SIZE")]
    memory: Option<String>,
    /// Swap cap of the tree.
    #[arg(long, value_name = "SIZE")]
    swap: Option<String>,
    /// VRAM cap of the tree, enforced from GPU samples.
    #[arg(long, value_name = "SIZE")]
    vram: Option<String>,
    /// CPU cap in percent of one core (100 = one core).
    #[arg(long, value_name = "PERCENT")]
    cpu: Option<String>,
    /// When Fooocus is started again: never (not after a crash, not after a limit's kill: the
    /// guard then ends with it), on-failure, always.
    #[arg(long, value_name = "never|on-failure|always")]
    restart: Option<String>,
    #[arg(long, value_name = "N")]
    max_restarts: Option<u32>,
    /// Settings file (default: the platform's config dir).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Write events as JSON lines to FILE (- for stdout).
    #[arg(long, value_name = "FILE|-")]
    events: Option<String>,
    /// Containment backend: auto, cgroup-v2, cgroup-v1 or fallback.
    #[arg(long, value_name = "BACKEND")]
    containment: Option<String>,
    /// Sampling interval (e.g. 1s, 250ms).
    #[arg(long, value_name = "D")]
    interval: Option<String>,
    /// libnvidia-ml to load (default: the loader's search path).
    #[arg(long, value_name = "PATH")]
    nvml: Option<PathBuf>,
    #[command(flatten)]
    launch: LaunchArgs,
    /// Start Fooocus directly on the port, without the gateway (no graceful stop on 2.2+).
    #[arg(long)]
    no_gateway: bool,
    /// Sleep after idle: with no generation and no visit for this long (e.g. 20m), stop Fooocus
    /// to give its RAM and VRAM back; the gateway keeps the port and the next visit wakes it
    /// (0 or off = never; needs the gateway).
    #[arg(long, value_name = "D")]
    sleep_after: Option<String>,
    /// Open Fooocus in the browser once it is ready (once per start: not after restarts or a
    /// wake), from the guard, outside Fooocus's contained tree.
    #[arg(long)]
    open_browser: bool,
    /// The command to supervise instead of an install.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run(a) => run(*a),
        Cmd::Detect { dirs, json } => detect(dirs, json),
        Cmd::Doctor { json, config } => doctor(json, config),
        Cmd::ParseLog { file } => parse_log(&file),
        Cmd::Monitor(a) => monitor::run(a),
        Cmd::Argv(a) => argv(*a),
        Cmd::Install(a) => install_cmd::run(*a),
    }
}

pub(crate) fn fail(msg: impl AsRef<str>) -> ExitCode {
    eprintln!("fooocus-guard: {}", msg.as_ref());
    ExitCode::from(2)
}

/// Settings from the file (or its last good copy), then the command line on top.
fn settings(a: &RunArgs) -> Result<Config, String> {
    let file = match &a.config {
        Some(p) => ConfigFile::new(p),
        None => match guard_app::paths::config_file() {
            Some(f) => f,
            None => return Ok(Config::default()),
        },
    };
    let mut cfg = if a.config.is_some() && !file.path.exists() {
        return Err(format!(
            "{} does not exist: check the path given to --config",
            file.path.display()
        ));
    } else {
        let loaded = file.load().map_err(|e| {
            format!("{e}\nFix the file, or move it away to start from the defaults.")
        })?;
        if let Some(w) = loaded.warning {
            eprintln!("fooocus-guard: {w}");
        }
        loaded.config
    };
    let dur = |flag: &str, v: &Option<String>| -> Result<Option<Option<f64>>, String> {
        v.as_deref()
            .map(|t| {
                units::parse_duration(t)
                    .map(|d| d.map(|d| d.as_secs_f64()))
                    .map_err(|e| format!("--{flag}: {e}"))
            })
            .transpose()
    };
    let size = |flag: &str, v: &Option<String>| -> Result<Option<Option<u64>>, String> {
        v.as_deref()
            .map(|t| units::parse_size(t).map_err(|e| format!("--{flag}: {e}")))
            .transpose()
    };
    if let Some(v) = dur("timeout", &a.timeout)? {
        cfg.limits.timeout_s = v;
    }
    if let Some(v) = dur("stall-timeout", &a.stall_timeout)? {
        cfg.limits.stall_timeout_s = v;
    }
    if let Some(v) = dur("startup-timeout", &a.startup_timeout)? {
        cfg.limits.startup_timeout_s = v;
    }
    if let Some(v) = dur("grace", &a.grace)? {
        cfg.limits.grace_s = v;
    }
    if let Some(v) = dur("sleep-after", &a.sleep_after)? {
        cfg.sleep_after_s = v;
    }
    if let Some(v) = size("memory", &a.memory)? {
        cfg.limits.memory_bytes = v;
    }
    if let Some(v) = size("swap", &a.swap)? {
        cfg.limits.swap_bytes = v;
    }
    if let Some(v) = size("vram", &a.vram)? {
        cfg.limits.vram_bytes = v;
    }
    if let Some(c) = &a.cpu {
        cfg.limits.cpu_percent = units::parse_percent(c).map_err(|e| format!("--cpu: {e}"))?;
    }
    if let Some(r) = &a.restart {
        cfg.restart.policy = match r.as_str() {
            "never" => RestartMode::Never,
            "on-failure" => RestartMode::OnFailure,
            "always" => RestartMode::Always,
            other => {
                return Err(format!(
                    "--restart: '{other}' is not a restart policy: use never, on-failure or always"
                ))
            }
        };
    }
    if let Some(n) = a.max_restarts {
        cfg.restart.max_restarts = n;
    }
    if let Some(c) = &a.containment {
        cfg.containment = c.clone();
    }
    if let Some(i) = &a.interval {
        let d = units::parse_duration(i).map_err(|e| format!("--interval: {e}"))?;
        cfg.sampling_interval_ms = d.map(|d| d.as_millis() as u64).unwrap_or(0);
    }
    if let Some(p) = &a.nvml {
        cfg.nvml_library = Some(p.display().to_string());
    }
    a.launch.apply(&mut cfg);
    if a.open_browser {
        cfg.open_browser = true;
    }
    if a.no_gateway {
        cfg.gateway.enabled = false;
    }
    if let Some(p) = &a.python {
        cfg.python = Some(p.display().to_string());
    }
    let errors = cfg.validate();
    if !errors.is_empty() {
        let lines: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
        return Err(format!("invalid settings:\n{}", lines.join("\n")));
    }
    Ok(cfg)
}

fn run(a: RunArgs) -> ExitCode {
    let cfg = match settings(&a) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let target = if let Some(dir) = &a.install {
        match install::inspect(dir, cfg.python.as_deref().map(std::path::Path::new)) {
            Ok(i) => Target::Install(i),
            Err(e) => return fail(e.to_string()),
        }
    } else if let Some((prog, args)) = a.command.split_first() {
        Target::Command(install::LaunchCommand::plain(
            PathBuf::from(prog),
            args.to_vec(),
        ))
    } else if let Some(p) = &cfg.install_path {
        match install::inspect(
            std::path::Path::new(p),
            cfg.python.as_deref().map(std::path::Path::new),
        ) {
            Ok(i) => Target::Install(i),
            Err(e) => return fail(format!("install_path in the settings: {e}")),
        }
    } else {
        return fail(
            "nothing to run: give --install DIR (a Fooocus folder) or -- COMMAND [ARGS...]",
        );
    };

    if let Target::Install(i) = &target {
        if let Err(e) = install::check_options(i, &cfg.launch) {
            return fail(e.to_string());
        }
    }
    let events = match a.events.as_deref().map(JsonLines::open).transpose() {
        Ok(e) => e,
        Err(e) => return fail(format!("--events: cannot open the file: {e}")),
    };
    // The same wiring as the tray app: instance lock, logs, history, sampler, metrics.
    let app = match App::start(AppOptions {
        settings: Some(cfg),
        target: Some(target),
        passthrough: true,
        exit_when_done: true,
        start_later: true,
        ..AppOptions::default()
    }) {
        Ok(a) => a,
        Err(e) => return fail(e),
    };
    let guard = app.guard().clone();
    let updates = guard.subscribe();
    let writer = events.map(|ev| {
        std::thread::spawn(move || {
            for u in updates {
                if let Update::Event(e) = u {
                    ev.write(&e);
                }
            }
        })
    });
    if let Some(addr) = app.metrics_addr() {
        eprintln!("fooocus-guard: metrics at http://{addr}/metrics");
    }
    // Subscribed: now Fooocus may start.
    guard.start_fooocus();

    // Ctrl-C / SIGTERM / the console closing: stop Fooocus cleanly and leave nothing behind.
    let stop_signals = match stop_signal::watch(&guard) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };

    app.wait();
    drop(stop_signals);
    // Every event written before leaving: end the subscriptions, let the writer drain.
    guard.close_subscribers();
    if let Some(w) = writer {
        let _ = w.join();
    }
    let st = guard.status();
    match (st.state, guard.last_exit()) {
        (FooocusState::GaveUp, _) => ExitCode::from(3),
        (_, Some((Some(c), _))) => ExitCode::from(c.clamp(0, 255) as u8),
        (_, Some((None, Some(s)))) => ExitCode::from((128 + s).clamp(0, 255) as u8),
        _ => ExitCode::SUCCESS,
    }
}

fn argv(a: ArgvArgs) -> ExitCode {
    let mut cfg = match &a.config {
        Some(p) => match ConfigFile::new(p).load() {
            Ok(l) => l.config,
            Err(e) => return fail(format!("{e}\nFix the file, or leave --config out.")),
        },
        None => Config::default(),
    };
    a.launch.apply(&mut cfg);
    cfg.launch.extra_args.extend(a.extra.iter().cloned());
    if let Some(p) = &a.python {
        cfg.python = Some(p.display().to_string());
    }
    let errors = cfg.validate();
    if !errors.is_empty() {
        let lines: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
        return fail(format!("invalid settings:\n{}", lines.join("\n")));
    }
    let inst = match install::inspect(&a.install, cfg.python.as_deref().map(std::path::Path::new)) {
        Ok(i) => i,
        Err(e) => return fail(e.to_string()),
    };
    if let Err(e) = install::check_options(&inst, &cfg.launch) {
        return fail(e.to_string());
    }
    let launch = install::launch(&inst, &cfg.launch, cfg.launch.port);
    let c = &launch.command;
    if a.json {
        let env: serde_json::Map<String, serde_json::Value> = c
            .env
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        let out = serde_json::json!({
            "program": c.program.display().to_string(),
            "args": c.args.iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>(),
            "cwd": c.cwd.display().to_string(),
            "env": env,
            "install": inst.label(),
            "flags": inst.flags(),
            "notes": launch.notes,
        });
        println!("{out}");
    } else {
        for n in &launch.notes {
            eprintln!("fooocus-guard: {n}");
        }
        println!("cd {}", c.cwd.display());
        println!("{}", c.argv_display().join(" "));
    }
    ExitCode::SUCCESS
}

fn detect(dirs: Vec<PathBuf>, json: bool) -> ExitCode {
    let mut found = Vec::new();
    let mut problems = Vec::new();
    if dirs.is_empty() {
        found = install::detect(&[]);
    } else {
        for d in &dirs {
            match install::inspect(d, None) {
                Ok(i) => found.push(i),
                Err(e) => problems.push(e.to_string()),
            }
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&found).expect("serialise")
        );
    } else if found.is_empty() && problems.is_empty() {
        println!("No Fooocus install found in the usual places. Give its folder: fooocus-guard-cli detect DIR");
    } else {
        for i in &found {
            println!(
                "{}  {:?} {}  python: {}",
                i.root.display(),
                i.fork,
                i.version.as_deref().unwrap_or("(version unknown)"),
                i.python.display()
            );
        }
    }
    for p in &problems {
        eprintln!("fooocus-guard: {p}");
    }
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

fn doctor(json: bool, config: Option<PathBuf>) -> ExitCode {
    let pref = guard_contain::Preference::Auto;
    let backend = guard_contain::probe_backend(pref);
    let cgroup = guard_core::sampling::cgroup_summary();
    let gpu = guard_core::sampling::gpu_summary(None);
    let file = config
        .map(ConfigFile::new)
        .or_else(guard_app::paths::config_file);
    let cfg_state = match &file {
        None => "no config dir on this platform".to_string(),
        Some(f) if !f.path.exists() => {
            format!("{} (not created yet: defaults in use)", f.path.display())
        }
        Some(f) => match f.load() {
            Ok(l) => match l.warning {
                Some(w) => format!("{}: {w}", f.path.display()),
                None => format!("{} (valid)", f.path.display()),
            },
            Err(e) => e.to_string(),
        },
    };
    let logs = guard_app::paths::log_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    if json {
        let v = serde_json::json!({
            "backend": backend.as_ref().ok(),
            "backend_error": backend.as_ref().err().map(|e| e.to_string()),
            "cgroup": cgroup,
            "gpu_status": gpu,
            "config": cfg_state,
            "logs": logs,
        });
        println!("{}", serde_json::to_string_pretty(&v).expect("serialise"));
    } else {
        match &backend {
            Ok(b) => {
                println!("containment: {} -- {}", b.kind.as_str(), b.reason);
                if !b.unenforced.is_empty() {
                    println!(
                        "  not enforced by the OS (the guard's watchdog covers what it can): {}",
                        b.unenforced.join(", ")
                    );
                }
            }
            Err(e) => println!("containment: unavailable -- {e}"),
        }
        println!("cgroups: {cgroup}");
        println!("gpu: {gpu}");
        println!("config: {cfg_state}");
        println!("logs: {logs}");
    }
    ExitCode::SUCCESS
}

/// `parse-log`: a saved console log to events, one JSON object a line. The log has both
/// streams merged and no process boundaries, so it cannot tell a prompt Fooocus echoed from
/// Fooocus's own lines as well as the live guard can (see `fooocus_console::parse_log`);
/// each launch it shows (`[System ARGV] ...`, or `Python 3...` on versions that print no
/// argv) starts its start-up afresh.
fn parse_log(file: &str) -> ExitCode {
    let input: Box<dyn std::io::Read> = if file == "-" {
        Box::new(std::io::stdin())
    } else {
        match std::fs::File::open(file) {
            Ok(f) => Box::new(f),
            Err(e) => return fail(format!("cannot read {file}: {e}")),
        }
    };
    use std::io::Write;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut write_err = None;
    let res = fooocus_console::parse_log(input, |ev| {
        if write_err.is_none() {
            if let Err(e) = serde_json::to_writer(&mut out, ev)
                .map_err(std::io::Error::other)
                .and_then(|_| out.write_all(b"\n"))
            {
                write_err = Some(e);
            }
        }
    });
    let _ = out.flush();
    match (res, write_err) {
        (Err(e), _) => fail(format!("reading {file}: {e}")),
        (_, Some(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        (_, Some(e)) => fail(format!("writing: {e}")),
        _ => ExitCode::SUCCESS,
    }
}
