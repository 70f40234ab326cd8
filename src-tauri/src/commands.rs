//! The webview's commands (docs/ipc.md). Each is a line or two over `guard_core::app::App`.

use std::sync::Arc;

use guard_core::app::{App, SaveResult};
use guard_core::config::{Config, FieldError};
use tauri::State;

type Core<'a> = State<'a, Arc<App>>;

#[tauri::command]
pub fn get_status(core: Core) -> guard_core::Status {
    core.status()
}

#[tauri::command]
pub fn start_fooocus(core: Core) -> Result<(), String> {
    core.start_fooocus()
}

#[tauri::command]
pub fn stop_fooocus(core: Core) {
    core.guard().stop_fooocus();
}

#[tauri::command]
pub fn restart_fooocus(core: Core) {
    core.guard().restart_fooocus();
}

#[tauri::command]
pub fn stop_generation(core: Core) {
    core.guard().stop_generation();
}

#[tauri::command]
pub fn open_in_browser(core: Core) -> Result<(), String> {
    core.open_in_browser()
}

#[tauri::command]
pub fn get_history(core: Core, range_s: u64) -> Vec<guard_core::app::HistoryPoint> {
    core.history(range_s)
}

#[tauri::command]
pub fn get_console(
    core: Core,
    after: Option<u64>,
    query: Option<String>,
) -> Vec<guard_core::console::ConsoleLine> {
    core.guard().console(after, query.as_deref(), 2000)
}

#[tauri::command]
pub fn get_settings(core: Core) -> Config {
    core.settings()
}

#[tauri::command]
pub fn validate_settings(settings: Config) -> Vec<FieldError> {
    settings.validate()
}

#[tauri::command]
pub fn save_settings(core: Core, settings: Config) -> SaveResult {
    core.save_settings(settings)
}

#[tauri::command]
pub fn detect_installs(core: Core) -> Vec<guard_core::install::Install> {
    core.detect_installs()
}

#[tauri::command]
pub fn check_install(path: String) -> Result<guard_core::install::Install, String> {
    guard_core::install::inspect(std::path::Path::new(&path), None).map_err(|e| e.to_string())
}

#[tauri::command]
pub async fn pick_folder(app: tauri::AppHandle) -> Option<String> {
    use tauri_plugin_dialog::DialogExt;
    let (tx, rx) = tokio_oneshot();
    app.dialog()
        .file()
        .set_title("Choose the Fooocus folder")
        .pick_folder(move |f| {
            let _ = tx.send(f.map(|p| p.to_string()));
        });
    rx.recv().ok().flatten()
}

fn tokio_oneshot() -> (
    crossbeam_channel::Sender<Option<String>>,
    crossbeam_channel::Receiver<Option<String>>,
) {
    crossbeam_channel::bounded(1)
}

#[tauri::command]
pub fn get_generations(
    core: Core,
    outcome: Option<String>,
    limit: u32,
) -> Vec<guard_core::app::GenerationRecord> {
    core.generations(outcome.as_deref(), limit)
}

#[tauri::command]
pub fn get_breaches(core: Core, limit: u32) -> Vec<guard_core::app::BreachRecord> {
    core.breaches(limit)
}

#[tauri::command]
pub fn limit_stats(
    core: Core,
    limit: String,
    value: Option<f64>,
) -> Result<guard_core::app::LimitStats, String> {
    core.limit_stats(&limit, value)
}

#[tauri::command]
pub fn export_history_csv(core: Core) -> String {
    core.export_csv()
}

#[tauri::command]
pub fn mark_breaches_seen(core: Core) {
    core.guard().mark_breaches_seen();
}

/// Registered but granted to no window: the IPC test calls it and must be refused.
#[tauri::command]
pub fn debug_forbidden() -> &'static str {
    "this must never be reachable from the webview"
}
