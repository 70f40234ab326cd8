//! The guard's program on Linux: the supervisor, the tray (a D-Bus StatusNotifierItem, no GTK),
//! notifications, and the socket the dashboard talks through. No WebKit is ever loaded here: the
//! dashboard is another process (`fooocus-guard-dashboard`), started when the user opens it and
//! ended when the window closes, so its memory goes with it and its crash cannot touch the
//! supervisor.

mod action;
mod calls;
mod dashboard_process;
#[cfg(target_os = "linux")]
mod speechless;
mod tray_sni;

use std::sync::{Arc, Mutex};

use crossbeam_channel::unbounded;
use fooocus_guard::command::{Backend, Control};
use fooocus_guard::{ipc, LastStop};
use guard_app::{App, AppOptions};
use serde_json::Value;

use crate::shell::notify;
use action::Action;
use calls::Commands;
use dashboard_process::{Dashboard, Running};

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
    let tray = tray_sni::spawn(core.clone(), actions.clone());
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
    tray: Option<tray_sni::Handle>,
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
                            tray_sni::update(t, &s);
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
