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
use fooocus_guard::command::{self, Answer, Backend, Control};
use fooocus_guard::{ipc, LastStop};
use guard_app::{App, AppOptions};
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
    let data_dir = guard_app::paths::data_dir();
    // A second launch opens the first one's dashboard.
    if let Some(d) = &data_dir {
        if ipc::socket_path(d).exists() {
            if let Ok(c) = ipc::Client::connect(d, |_, _| {}, || {}) {
                if c.call(Control::OpenDashboard.name(), Value::Null).is_ok() {
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
            backend: Backend {
                core: core.clone(),
                last_stop: last_stop.clone(),
                installs: Arc::new(guard_installer::Jobs::new(
                    None,
                    guard_app::paths::data_dir(),
                )),
            },
            actions: actions.clone(),
            running: running.clone(),
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

/// The dashboard's calls: its commands (docs/ipc.md, src/command_list.rs), answered by the
/// `Backend`, and the two the dashboard's and a second guard's processes make themselves.
struct Commands {
    backend: Backend,
    actions: Sender<Action>,
    running: Running,
}

impl ipc::Handler for Commands {
    fn call(&self, cmd: &str, args: Value) -> Result<Value, String> {
        let Some(control) = Control::from_name(cmd) else {
            return self.backend.answer(command::Command::from_call(cmd, args)?);
        };
        match control {
            Control::DashboardClosing => {
                if let Some(r) = self.running.lock().unwrap().take() {
                    r.store(false, Ordering::Relaxed);
                }
            }
            Control::OpenDashboard => {
                let _ = self.actions.send(Action::OpenDashboard { why: false });
            }
        }
        Ok(Value::Null)
    }
}
