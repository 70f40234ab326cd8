//! The tray app on Windows: guard, tray and window in one process, a thin shell over
//! `guard_app::App`. The window is created when the user opens the dashboard and destroyed
//! when it is closed; WebView2 renders in processes of its own.

mod tray;
mod window;

use std::sync::{Arc, Mutex};

use fooocus_guard::command::Backend;
use fooocus_guard::updates::Inbox;
use fooocus_guard::LastStop;
use guard_app::{App, AppOptions};
use tauri::Manager;

use crate::shell::{notify, webview};
use window::show_dashboard;

/// The process's AppUserModelID, the Start-menu shortcut's: Windows then treats the window, its
/// taskbar button and a pin of it as the installed app's.
fn set_app_user_model_id() {
    let id: Vec<u16> = fooocus_guard::APP_USER_MODEL_ID
        .encode_utf16()
        .chain([0])
        .collect();
    // SAFETY: a NUL-terminated UTF-16 string that outlives the call.
    let hr = unsafe {
        windows_sys::Win32::UI::Shell::SetCurrentProcessExplicitAppUserModelID(id.as_ptr())
    };
    if hr < 0 {
        eprintln!("fooocus-guard: cannot set the AppUserModelID (HRESULT {hr:#x})");
    }
}

pub fn run(demo: bool, hidden: bool) {
    set_app_user_model_id();
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

    let last_stop: Arc<Mutex<LastStop>> = Arc::default();
    let guard: webview::Answers = Arc::new(Backend {
        core: core.clone(),
        last_stop: last_stop.clone(),
        installs: Arc::new(guard_installer::Jobs::new(
            None,
            guard_app::paths::data_dir(),
        )),
    });
    let app = tauri::Builder::default()
        .plugin(tauri_plugin_single_instance::init(|app, _argv, _cwd| {
            // A second launch opens the first one's window.
            show_dashboard(app);
        }))
        .plugin(tauri_plugin_dialog::init())
        .manage(core.clone())
        .manage(guard)
        .manage(Arc::new(Inbox::new()))
        .invoke_handler(webview::handler())
        .setup(move |app| {
            let handle = app.handle().clone();
            tray::create(&handle)?;
            forward_updates(handle.clone(), core.clone(), last_stop.clone());
            if !hidden {
                show_dashboard(&handle);
            }
            Ok(())
        })
        .build(webview::context())
        .expect("the tray app starts");

    app.run(|handle, event| match event {
        // Closing the last window leaves the app in the tray.
        tauri::RunEvent::ExitRequested {
            api, code: None, ..
        } => api.prevent_exit(),
        tauri::RunEvent::Exit => {
            if let Some(core) = handle.try_state::<Arc<App>>() {
                core.shutdown();
            }
        }
        _ => {}
    });
}

/// Guard updates -> the page's inbox (src/updates.rs), tray, notifications.
fn forward_updates(handle: tauri::AppHandle, core: Arc<App>, last_stop: Arc<Mutex<LastStop>>) {
    let rx = core.subscribe();
    let inbox = handle.state::<Arc<Inbox>>().inner().clone();
    let page = move |name: &str, v: serde_json::Result<serde_json::Value>| {
        if let Ok(v) = v {
            inbox.push(name, v);
        }
    };
    let mut notifier = notify::Notifier::new(core.settings().notifications.clone());
    std::thread::Builder::new()
        .name("fooocus-guard-ui-bridge".into())
        .spawn(move || {
            for u in rx {
                match u {
                    guard_core::Update::Status(s) => {
                        tray::update(&handle, &s);
                        page("status", serde_json::to_value(&*s));
                    }
                    guard_core::Update::Event(e) => {
                        last_stop.lock().unwrap().observe(&e);
                        notifier.set_config(core.settings().notifications.clone());
                        notifier.on_event(&e);
                        page("guard-event", serde_json::to_value(&e));
                    }
                    guard_core::Update::Console(lines) => {
                        page("console", serde_json::to_value(&lines));
                    }
                    guard_core::Update::Sample(s) => {
                        page("sample", serde_json::to_value(&*s));
                    }
                }
            }
        })
        .expect("bridge thread");
}
