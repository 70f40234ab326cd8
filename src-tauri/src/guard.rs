//! The guard's program on Linux: the supervisor, the tray (a D-Bus StatusNotifierItem, no GTK),
//! notifications, and the socket the dashboard talks through. No WebKit is ever loaded here: the
//! dashboard is another process (`fooocus-guard-dashboard`), started when the user opens it and
//! ended when the window closes, so its memory goes with it and its crash cannot touch the
//! supervisor.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{unbounded, Sender};
use fooocus_guard::{ipc, LastStop};
use guard_app::{App, AppOptions};
use guard_core::config::Config;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::notify;
use crate::sni;

/// What the tray and a second launch ask of the main thread.
pub enum Action {
    /// `why`: at the "why it stopped" card (a limit's notification was clicked).
    OpenDashboard {
        why: bool,
    },
    Quit,
}

pub fn run(demo: bool, hidden: bool) -> ! {
    one_malloc_arena();
    let data_dir = guard_core::paths::data_dir();
    // A second launch opens the first one's dashboard.
    if let Some(d) = &data_dir {
        if ipc::socket_path(d).exists() {
            if let Ok(c) = ipc::Client::connect(d, |_, _| {}, || {}) {
                if c.call("open_dashboard", Value::Null).is_ok() {
                    std::process::exit(0);
                }
            }
        }
    }
    let Some(data_dir) = data_dir else {
        eprintln!("fooocus-guard: no data folder (HOME is not set): set FOOOCUS_GUARD_DATA_DIR");
        std::process::exit(2);
    };
    let core = match App::start(AppOptions {
        demo,
        ..AppOptions::default()
    }) {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("fooocus-guard: {e}");
            std::process::exit(2);
        }
    };
    let (actions, todo) = unbounded();
    let last_stop: Arc<Mutex<LastStop>> = Arc::default();
    let running: Running = Arc::default();
    let server = match ipc::Server::start(
        &data_dir,
        Arc::new(Commands {
            core: core.clone(),
            actions: actions.clone(),
            last_stop: last_stop.clone(),
            running: running.clone(),
            // Installs run in the guard: closing the dashboard does not end one.
            installs: Arc::new(guard_installer::Jobs::new(
                None,
                guard_core::paths::data_dir(),
            )),
        }),
    ) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("fooocus-guard: {e}");
            core.shutdown();
            std::process::exit(2);
        }
    };
    let tray = sni::spawn(core.clone(), actions.clone());
    let notifier = notify::Notifier::new(core.settings().notifications.clone()).on_click_why({
        let actions = actions.clone();
        move || {
            let _ = actions.send(Action::OpenDashboard { why: true });
        }
    });
    forward_updates(
        core.clone(),
        server.clone(),
        tray.clone(),
        notifier,
        last_stop,
    );
    let dashboard = Dashboard::new(&data_dir, running);
    if !hidden {
        dashboard.open(&server, false);
    }
    for a in todo {
        match a {
            Action::OpenDashboard { why } => dashboard.open(&server, why),
            Action::Quit => break,
        }
    }
    // Stop Fooocus cleanly first, then the dashboard learns the guard is gone as the socket closes.
    core.shutdown();
    server.broadcast("quit", &Value::Null);
    if let Some(t) = tray {
        t.shutdown().wait();
    }
    std::process::exit(0);
}

/// Guard updates -> tray, notifications, the dashboards' events.
fn forward_updates(
    core: Arc<App>,
    server: Arc<ipc::Server>,
    tray: Option<sni::Handle>,
    mut notifier: notify::Notifier,
    last_stop: Arc<Mutex<LastStop>>,
) {
    let rx = core.subscribe();
    std::thread::Builder::new()
        .name("fooocus-guard-bridge".into())
        .spawn(move || {
            for u in rx {
                match u {
                    guard_core::Update::Status(s) => {
                        if let Some(t) = &tray {
                            sni::update(t, &s);
                        }
                        server.broadcast("status", &*s);
                    }
                    guard_core::Update::Event(e) => {
                        last_stop.lock().unwrap().observe(&e);
                        notifier.set_config(core.settings().notifications.clone());
                        notifier.on_event(&e);
                        server.broadcast("guard-event", &e);
                    }
                    guard_core::Update::Console(lines) => server.broadcast("console", &lines),
                    guard_core::Update::Sample(s) => server.broadcast("sample", &*s),
                }
            }
        })
        .expect("bridge thread");
}

/// glibc gives a thread that finds the arenas busy one of its own, up to eight per core, and
/// keeps each one's freed memory. The guard answers each of the dashboard's calls on a thread of
/// its own, so each opening of the dashboard left the guard about 0.25 MiB bigger
/// (tests/app/footprint.sh: 12.6 MiB in the tray, 15.9 after 10 open/close cycles; with one
/// arena 12.6). Its threads allocate little, and rarely at once. Before any thread starts.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a malloc parameter; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Whether the dashboard's process runs and keeps its window (false once it is closing).
type Running = Arc<Mutex<Option<Arc<AtomicBool>>>>;

/// The dashboard's process: at most one with a window, started on demand.
struct Dashboard {
    exe: PathBuf,
    data_dir: PathBuf,
    running: Running,
    /// Linux: the folder of flite's stand-ins for its library path (src/speechless.rs), found
    /// at the first open.
    #[cfg(target_os = "linux")]
    speechless: std::sync::OnceLock<Option<PathBuf>>,
}

impl Dashboard {
    fn new(data_dir: &Path, running: Running) -> Dashboard {
        let exe = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("fooocus-guard-dashboard")))
            .unwrap_or_else(|| PathBuf::from("fooocus-guard-dashboard"));
        Dashboard {
            exe,
            data_dir: data_dir.to_path_buf(),
            running,
            #[cfg(target_os = "linux")]
            speechless: std::sync::OnceLock::new(),
        }
    }

    fn open(&self, server: &ipc::Server, why: bool) {
        let mut running = self.running.lock().unwrap();
        if running.as_ref().is_some_and(|r| r.load(Ordering::Relaxed)) {
            // Already there (or on its way): bring it forward.
            server.broadcast("show", &why);
            return;
        }
        let mut cmd = Command::new(&self.exe);
        cmd.env("FOOOCUS_GUARD_DATA_DIR", &self.data_dir);
        #[cfg(target_os = "linux")]
        if let Some(dir) = self
            .speechless
            .get_or_init(|| crate::speechless::folder_for(&self.exe, &self.data_dir))
        {
            let inherited = std::env::var_os("LD_LIBRARY_PATH");
            cmd.env(
                "LD_LIBRARY_PATH",
                crate::speechless::library_path(dir, inherited),
            );
        }
        if why {
            cmd.arg("--why");
        }
        let child = cmd.spawn();
        match child {
            Ok(mut child) => {
                let alive = Arc::new(AtomicBool::new(true));
                let flag = alive.clone();
                // Reaped as soon as it ends, so nothing of it lingers.
                let _ = std::thread::Builder::new()
                    .name("fooocus-guard-dashboard-wait".into())
                    .spawn(move || {
                        let _ = child.wait();
                        flag.store(false, Ordering::Relaxed);
                    });
                *running = Some(alive);
            }
            Err(e) => eprintln!(
                "fooocus-guard: cannot open the dashboard ({}): {e}; reinstall Fooocus Guard",
                self.exe.display()
            ),
        }
    }
}

/// The dashboard's commands (docs/ipc.md), answered in the guard.
struct Commands {
    core: Arc<App>,
    actions: Sender<Action>,
    last_stop: Arc<Mutex<LastStop>>,
    running: Running,
    installs: Arc<guard_installer::Jobs>,
}

fn arg<T: DeserializeOwned>(args: &Value, name: &str) -> Result<T, String> {
    serde_json::from_value(args.get(name).cloned().unwrap_or(Value::Null))
        .map_err(|e| format!("the dashboard sent a bad '{name}': {e}"))
}

fn json<T: serde::Serialize>(v: T) -> Result<Value, String> {
    serde_json::to_value(v).map_err(|e| format!("cannot encode the answer: {e}"))
}

impl ipc::Handler for Commands {
    fn call(&self, cmd: &str, args: Value) -> Result<Value, String> {
        let core = &self.core;
        match cmd {
            "get_status" => json(core.status()),
            "start_fooocus" => core.start_fooocus().map(|()| Value::Null),
            "stop_fooocus" => {
                core.guard().stop_fooocus();
                Ok(Value::Null)
            },
            "restart_fooocus" => {
                core.guard().restart_fooocus();
                Ok(Value::Null)
            },
            "stop_generation" => {
                core.guard().stop_generation();
                Ok(Value::Null)
            },
            "sleep_fooocus" => {
                core.guard().sleep_fooocus();
                Ok(Value::Null)
            },
            "wake_fooocus" => {
                core.guard().wake_fooocus();
                Ok(Value::Null)
            },
            "open_in_browser" => core.open_in_browser().map(|()| Value::Null),
            "get_history" => json(core.history(arg(&args, "range_s")?)),
            "get_console" => {
                let after: Option<u64> = arg(&args, "after")?;
                let query: Option<String> = arg(&args, "query")?;
                json(core.guard().console(after, query.as_deref(), 2000))
            }
            "get_settings" => json(core.settings()),
            "validate_settings" => json(arg::<Config>(&args, "settings")?.validate()),
            "settings_notes" => json(guard_core::commit::notes(&arg::<Config>(
                &args, "settings",
            )?)),
            "save_settings" => json(core.save_settings(arg(&args, "settings")?)),
            "detect_installs" => json(core.detect_installs()),
            "check_install" => {
                let path: String = arg(&args, "path")?;
                json(
                    guard_fooocus::install::inspect(Path::new(&path), None)
                        .map_err(|e| e.to_string())?,
                )
            }
            "get_generations" => {
                let outcome: Option<String> = arg(&args, "outcome")?;
                json(core.generations(outcome.as_deref(), arg(&args, "limit")?))
            }
            "get_breaches" => json(core.breaches(arg(&args, "limit")?)),
            "limit_stats" => {
                let limit: String = arg(&args, "limit")?;
                json(core.limit_stats(&limit, arg(&args, "value")?)?)
            }
            "export_history_csv" => json(core.export_csv()),
            "mark_breaches_seen" => {
                core.guard().mark_breaches_seen();
                Ok(Value::Null)
            },
            "get_last_stop" => json(self.last_stop.lock().unwrap().clone()),
            // Installing Fooocus (issue 15).
            "install_plan" => {
                let path: Option<String> = arg(&args, "path")?;
                let source: Option<String> = arg(&args, "source")?;
                json(
                    self.installs
                        .plan(path.as_deref().map(Path::new), source.as_deref())?,
                )
            }
            "install_start" => {
                let path: String = arg(&args, "path")?;
                let source: Option<String> = arg(&args, "source")?;
                self.installs
                    .start_here(Path::new(&path), source.as_deref())
                    .map(|()| Value::Null)
            }
            "install_cancel" => {
                self.installs.cancel();
                Ok(Value::Null)
            }
            "install_status" => json(self.installs.status()),
            "install_discard" => {
                let path: String = arg(&args, "path")?;
                self.installs.discard(Path::new(&path)).map(|()| Value::Null)
            }
            "dashboard_closing" => {
                if let Some(r) = self.running.lock().unwrap().take() {
                    r.store(false, Ordering::Relaxed);
                }
                Ok(Value::Null)
            }
            // A second launch of the guard asks for the window.
            "open_dashboard" => {
                let _ = self.actions.send(Action::OpenDashboard { why: false });
                Ok(Value::Null)
            }
            _ => Err(format!(
                "the guard has no command '{cmd}': the dashboard comes from another version; quit Fooocus Guard from its tray icon and start it again"
            )),
        }
    }
}
