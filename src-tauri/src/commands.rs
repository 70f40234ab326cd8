//! The webview's commands (docs/ipc.md). Each is a line or two over `guard_app::App`.
//!
//! Tauri runs a non-async command on the main thread, which also paints the window: the ones
//! that scan the disk or query the history database (which waits up to 5 s for a lock) are
//! async and do their work on a blocking thread, so the window never freezes.

use std::sync::Arc;

use guard_app::{App, SaveResult};
use guard_core::config::{Config, FieldError};
use tauri::State;

type Core<'a> = State<'a, Arc<App>>;

/// Runs `f` on Tauri's blocking pool, off the main thread.
async fn off_main_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    tauri::async_runtime::spawn_blocking(f)
        .await
        .map_err(|e| format!("the guard's worker failed: {e} (see the guard's log)"))
}

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

/// "Sleep now": stop Fooocus to give its memory back; the gateway wakes it on a visit.
#[tauri::command]
pub fn sleep_fooocus(core: Core) {
    core.guard().sleep_fooocus();
}

#[tauri::command]
pub fn wake_fooocus(core: Core) {
    core.guard().wake_fooocus();
}

#[tauri::command]
pub fn open_in_browser(core: Core) -> Result<(), String> {
    core.open_in_browser()
}

#[tauri::command]
pub async fn get_history(
    core: Core<'_>,
    range_s: u64,
) -> Result<Vec<guard_app::HistoryPoint>, String> {
    let core = Arc::clone(&core);
    off_main_thread(move || core.history(range_s)).await
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

/// Shown beside the fields without blocking the save: on Windows, the commit Fooocus reached at
/// its last start beside the RAM cap, and a warning when the cap is below it.
#[tauri::command]
pub fn settings_notes(settings: Config) -> Vec<guard_core::commit::SettingsNote> {
    guard_core::commit::notes(&settings)
}

#[tauri::command]
pub fn save_settings(core: Core, settings: Config) -> SaveResult {
    core.save_settings(settings)
}

#[tauri::command]
pub async fn detect_installs(
    core: Core<'_>,
) -> Result<Vec<guard_fooocus::install::Install>, String> {
    let core = Arc::clone(&core);
    off_main_thread(move || core.detect_installs()).await
}

#[tauri::command]
pub async fn check_install(path: String) -> Result<guard_fooocus::install::Install, String> {
    off_main_thread(move || {
        guard_fooocus::install::inspect(std::path::Path::new(&path), None)
            .map_err(|e| e.to_string())
    })
    .await?
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
pub async fn get_generations(
    core: Core<'_>,
    outcome: Option<String>,
    limit: u32,
) -> Result<Vec<guard_app::GenerationRecord>, String> {
    let core = Arc::clone(&core);
    off_main_thread(move || core.generations(outcome.as_deref(), limit)).await
}

#[tauri::command]
pub async fn get_breaches(
    core: Core<'_>,
    limit: u32,
) -> Result<Vec<guard_app::BreachRecord>, String> {
    let core = Arc::clone(&core);
    off_main_thread(move || core.breaches(limit)).await
}

#[tauri::command]
pub async fn limit_stats(
    core: Core<'_>,
    limit: String,
    value: Option<f64>,
) -> Result<guard_app::LimitStats, String> {
    let core = Arc::clone(&core);
    off_main_thread(move || core.limit_stats(&limit, value)).await?
}

#[tauri::command]
pub async fn export_history_csv(core: Core<'_>) -> Result<String, String> {
    let core = Arc::clone(&core);
    off_main_thread(move || core.export_csv()).await
}

#[tauri::command]
pub fn mark_breaches_seen(core: Core) {
    core.guard().mark_breaches_seen();
}

#[tauri::command]
pub fn get_last_stop(
    last: State<'_, std::sync::Mutex<fooocus_guard::LastStop>>,
) -> fooocus_guard::LastStop {
    last.lock().unwrap().clone()
}

/// Registered but granted to no window: the IPC test calls it and must be refused.
#[tauri::command]
pub fn debug_forbidden() -> &'static str {
    "this must never be reachable from the webview"
}

// ---- Installing Fooocus (issue 15): thin wrappers over guard_installer::Jobs ----------

type Installs<'a> = State<'a, Arc<guard_installer::Jobs>>;

/// What an install into `path` (the default folder when None) downloads and needs; `source`:
/// an archive the user already has (a file or URL) instead of the release's.
#[tauri::command]
pub async fn install_plan(
    jobs: Installs<'_>,
    path: Option<String>,
    source: Option<String>,
) -> Result<guard_installer::PlanView, String> {
    let jobs = Arc::clone(&jobs);
    off_main_thread(move || jobs.plan(path.as_deref().map(std::path::Path::new), source.as_deref()))
        .await?
}

#[tauri::command]
pub async fn install_start(
    jobs: Installs<'_>,
    path: String,
    source: Option<String>,
) -> Result<(), String> {
    let jobs = Arc::clone(&jobs);
    off_main_thread(move || jobs.start_here(std::path::Path::new(&path), source.as_deref())).await?
}

#[tauri::command]
pub fn install_cancel(jobs: Installs) {
    jobs.cancel();
}

#[tauri::command]
pub fn install_status(jobs: Installs) -> guard_installer::JobStatus {
    jobs.status()
}

#[tauri::command]
pub async fn install_discard(jobs: Installs<'_>, path: String) -> Result<(), String> {
    let jobs = Arc::clone(&jobs);
    off_main_thread(move || jobs.discard(std::path::Path::new(&path))).await?
}

/// The guard's updates since the page last asked, once there are any (docs/ipc.md,
/// src/updates.rs).
#[tauri::command]
pub async fn take_updates(
    inbox: State<'_, Arc<fooocus_guard::updates::Inbox>>,
) -> Result<fooocus_guard::updates::Batch, String> {
    let inbox = Arc::clone(&inbox);
    off_main_thread(move || inbox.take(fooocus_guard::updates::IDLE)).await
}
