//! What the guard's program and the dashboard's program share: the local channel between them
//! (Unix), and the status line the tray shows. Nothing here may use Tauri or GTK: the guard links
//! this library and must stay free of WebKit.

// The one list of the dashboard's commands (a macro, also read by build.rs), and the guard's side
// of them.
pub mod command;
mod command_list;
#[cfg(unix)]
pub mod ipc;
pub mod updates;

use guard_core::events::{EventKind, GuardEvent};
use guard_core::supervisor::FooocusState;
use guard_core::Status;
use serde::Serialize;

/// Windows: the AppUserModelID under which the app's toasts appear as "Fooocus Guard". The
/// installer (packaging/windows/installer.nsi, given this value by scripts/package.sh) puts it on
/// the Start-menu shortcut and registers its name and icon; the same id as Tauri's identifier.
pub const APP_USER_MODEL_ID: &str = "dev.fooocus-guard.app";

/// Windows: whether this copy was installed by the installer, which registered
/// [`APP_USER_MODEL_ID`] and left its uninstaller beside the app. A copy run from a build folder
/// has no registered id: Windows would drop its toasts, so they go under PowerShell's instead.
#[cfg(windows)]
pub fn installed() -> bool {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("uninstall.exe")))
        .is_some_and(|u| u.is_file())
}

/// The last generation a limit stopped and the breach before it: a dashboard opened afterwards
/// (from the notification, say) asks for them (`get_last_stop`) to say why.
#[derive(Clone, Debug, Default, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct LastStop {
    #[cfg_attr(test, ts(type = "GuardEvent | null"))]
    pub stopped: Option<GuardEvent>,
    #[cfg_attr(test, ts(type = "GuardEvent | null"))]
    pub breach: Option<GuardEvent>,
}

impl LastStop {
    pub fn observe(&mut self, e: &GuardEvent) {
        match e.kind {
            EventKind::LimitBreached { .. } => self.breach = Some(e.clone()),
            EventKind::GenerationStopped { limit: Some(_), .. } => self.stopped = Some(e.clone()),
            _ => {}
        }
    }
}

/// The tray's status line (its tooltip; on Linux, where indicators show no tooltip, the menu's
/// first item).
pub fn status_line(s: &Status) -> String {
    let state = match s.state {
        FooocusState::NotConfigured => "no Fooocus install configured".to_string(),
        FooocusState::Stopped => "Fooocus is stopped".to_string(),
        FooocusState::Starting => "Fooocus is starting".to_string(),
        FooocusState::Ready => "Fooocus is ready".to_string(),
        FooocusState::Generating => match &s.generation {
            Some(g) => {
                let image = match (g.image_index, g.image_total) {
                    (Some(i), Some(n)) => format!("image {i} of {n}"),
                    _ => "generating".to_string(),
                };
                match (g.step, g.step_total) {
                    (Some(k), Some(t)) => format!("{image}, step {k} of {t}"),
                    _ => image,
                }
            }
            None => "generating".to_string(),
        },
        FooocusState::Stopping => "Fooocus is stopping".to_string(),
        FooocusState::Restarting => "Fooocus is restarting".to_string(),
        FooocusState::GaveUp => "Fooocus kept failing: restarts stopped".to_string(),
        FooocusState::Asleep => match &s.sleep {
            Some(info) => info.summary(),
            None => "Asleep: wakes when you open Fooocus".to_string(),
        },
    };
    let breach = if s.unseen_breach {
        " -- a limit stopped something"
    } else {
        ""
    };
    format!("Fooocus Guard: {state}{breach}")
}
