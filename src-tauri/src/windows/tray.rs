//! The tray icon on Windows (Tauri's): its look follows Fooocus's state, its tooltip the current
//! generation, and its menu offers what can be done now.

use std::sync::Arc;
use std::sync::Mutex;

use guard_app::App;
use guard_core::supervisor::FooocusState;
use guard_core::Status;
use tauri::image::Image;
use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{MouseButton, MouseButtonState, TrayIcon, TrayIconBuilder, TrayIconEvent};
use tauri::{AppHandle, Manager, Wry};

use super::window::show_dashboard;

const ICON_STOPPED: &[u8] = include_bytes!("../../../icons/tray-stopped.png");
const ICON_STARTING: &[u8] = include_bytes!("../../../icons/tray-starting.png");
const ICON_READY: &[u8] = include_bytes!("../../../icons/tray-ready.png");
const ICON_GENERATING: &[u8] = include_bytes!("../../../icons/tray-generating.png");
const ICON_BREACH: &[u8] = include_bytes!("../../../icons/tray-breach.png");

pub struct Tray {
    icon: TrayIcon,
    /// Linux indicators show no tooltip: the same text is the menu's first (disabled) item.
    status: MenuItem<Wry>,
    items: Items,
    last: Mutex<Option<(FooocusState, bool, String)>>,
}

struct Items {
    start: MenuItem<Wry>,
    stop: MenuItem<Wry>,
    restart: MenuItem<Wry>,
    browser: MenuItem<Wry>,
    stop_generation: MenuItem<Wry>,
    sleep: MenuItem<Wry>,
    wake: MenuItem<Wry>,
}

pub fn create(app: &AppHandle) -> tauri::Result<()> {
    let status = MenuItem::with_id(
        app,
        "status",
        "Fooocus Guard: Fooocus is stopped",
        false,
        None::<&str>,
    )?;
    let open = MenuItem::with_id(app, "open", "Open dashboard", true, None::<&str>)?;
    let start = MenuItem::with_id(app, "start", "Start Fooocus", true, None::<&str>)?;
    let stop = MenuItem::with_id(app, "stop", "Stop Fooocus", false, None::<&str>)?;
    let restart = MenuItem::with_id(app, "restart", "Restart Fooocus", false, None::<&str>)?;
    let browser = MenuItem::with_id(
        app,
        "browser",
        "Open Fooocus in the browser",
        false,
        None::<&str>,
    )?;
    let stop_generation = MenuItem::with_id(
        app,
        "stop_generation",
        "Stop the current generation",
        false,
        None::<&str>,
    )?;
    let sleep = MenuItem::with_id(app, "sleep", "Sleep now", false, None::<&str>)?;
    let wake = MenuItem::with_id(app, "wake", "Wake Fooocus", false, None::<&str>)?;
    let quit = MenuItem::with_id(app, "quit", "Quit", true, None::<&str>)?;
    let sep = PredefinedMenuItem::separator(app)?;
    let sep2 = PredefinedMenuItem::separator(app)?;
    let menu = Menu::with_items(
        app,
        &[
            &status,
            &open,
            &sep,
            &start,
            &stop,
            &restart,
            &browser,
            &stop_generation,
            &sleep,
            &wake,
            &sep2,
            &quit,
        ],
    )?;
    let icon = TrayIconBuilder::with_id("main")
        .icon(Image::from_bytes(ICON_STOPPED)?)
        .tooltip("Fooocus Guard: Fooocus is stopped")
        .menu(&menu)
        .show_menu_on_left_click(false)
        .on_menu_event(|app, event| on_menu(app, event.id().as_ref()))
        .on_tray_icon_event(|tray, event| {
            if let TrayIconEvent::Click {
                button: MouseButton::Left,
                button_state: MouseButtonState::Up,
                ..
            } = event
            {
                show_dashboard(tray.app_handle());
            }
        })
        .build(app)?;
    app.manage(Tray {
        icon,
        status,
        items: Items {
            start,
            stop,
            restart,
            browser,
            stop_generation,
            sleep,
            wake,
        },
        last: Mutex::new(None),
    });
    if let Some(core) = app.try_state::<Arc<App>>() {
        update(app, &core.status());
    }
    Ok(())
}

pub fn on_menu(app: &AppHandle, id: &str) {
    let Some(core) = app.try_state::<Arc<App>>() else {
        return;
    };
    match id {
        "open" => show_dashboard(app),
        "start" => {
            if let Err(e) = core.start_fooocus() {
                eprintln!("fooocus-guard: {e}");
                show_dashboard(app);
            }
        }
        "stop" => core.guard().stop_fooocus(),
        "restart" => core.guard().restart_fooocus(),
        "browser" => {
            let _ = core.open_in_browser();
        }
        "stop_generation" => core.guard().stop_generation(),
        "sleep" => core.guard().sleep_fooocus(),
        "wake" => core.guard().wake_fooocus(),
        "quit" => {
            // Stop Fooocus cleanly first; the exit handler has nothing left to do then.
            core.shutdown();
            app.exit(0);
        }
        _ => {}
    }
}

/// Follow the state: icon, tooltip, which items are enabled.
pub fn update(app: &AppHandle, s: &Status) {
    let Some(tray) = app.try_state::<Tray>() else {
        return;
    };
    let tip = tooltip(s);
    let key = (s.state, s.unseen_breach, tip.clone());
    let mut last = tray.last.lock().unwrap();
    if last.as_ref() == Some(&key) {
        return;
    }
    let icon_changed = last
        .as_ref()
        .is_none_or(|l| l.0 != s.state || l.1 != s.unseen_breach);
    *last = Some(key);
    drop(last);
    if icon_changed {
        let bytes = match (s.unseen_breach, s.state) {
            (true, _) => ICON_BREACH,
            (_, FooocusState::Generating) => ICON_GENERATING,
            (_, FooocusState::Ready) => ICON_READY,
            (_, FooocusState::Starting | FooocusState::Restarting | FooocusState::Stopping) => {
                ICON_STARTING
            }
            _ => ICON_STOPPED,
        };
        if let Ok(img) = Image::from_bytes(bytes) {
            let _ = tray.icon.set_icon(Some(img));
        }
    }
    let _ = tray.icon.set_tooltip(Some(tip.clone()));
    let _ = tray.status.set_text(tip);
    // The same actions the dashboard's buttons show: derived once, in the supervisor.
    let a = s.actions;
    let _ = tray.items.start.set_enabled(a.start);
    let _ = tray.items.stop.set_enabled(a.stop);
    let _ = tray.items.restart.set_enabled(a.restart);
    let _ = tray.items.browser.set_enabled(a.open_browser);
    let _ = tray.items.stop_generation.set_enabled(a.stop_generation);
    let _ = tray.items.sleep.set_enabled(a.sleep);
    let _ = tray.items.wake.set_enabled(a.wake);
}

pub fn tooltip(s: &Status) -> String {
    fooocus_guard::status_line(s)
}
