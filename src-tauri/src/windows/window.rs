//! The dashboard's window in the one process on Windows: created when the user opens the
//! dashboard (from the tray, a second launch or at start), destroyed when it is closed.

use tauri::{Manager, WebviewUrl, WebviewWindowBuilder};

use crate::shell::webview;

/// Open the dashboard, creating its window if it was closed.
pub fn show_dashboard(app: &tauri::AppHandle) {
    if let Some(w) = app.get_webview_window(webview::MAIN) {
        let _ = w.unminimize();
        let _ = w.show();
        let _ = w.set_focus();
        return;
    }
    let built = WebviewWindowBuilder::new(app, webview::MAIN, WebviewUrl::App("index.html".into()))
        .title("Fooocus Guard")
        .inner_size(1180.0, 800.0)
        .min_inner_size(760.0, 520.0)
        .build();
    if let Err(e) = built {
        eprintln!("fooocus-guard: cannot open the dashboard: {e}");
    }
}
