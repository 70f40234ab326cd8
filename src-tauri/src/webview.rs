//! The webview's Tauri commands, expanded from the one list (src/command_list.rs) for both
//! windows: the dashboard's process on Linux (src/window.rs), where an [`Answer`] forwards each
//! call to the guard, and the one process on Windows (src/combined.rs), where the guard's
//! `Backend` answers it. The guard's commands are thin: typed arguments (Tauri reads them
//! camelCase, as the page sends them) into a `Command`, answered off the main thread, which
//! paints the window (the history database may wait up to 5 s for its lock).

use std::sync::Arc;

use fooocus_guard::command::{Answer, Command};
use fooocus_guard::updates::{self, Inbox};
use serde_json::Value;
use tauri::State;

/// Who answers the guard's commands in this process, managed by Tauri.
pub type Answers = Arc<dyn Answer>;

/// Runs `f` on Tauri's blocking pool, off the main thread.
async fn off_main_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    tauri::async_runtime::spawn_blocking(f)
        .await
        .map_err(|e| format!("the window's worker failed: {e} (see the guard's log)"))
}

macro_rules! tauri_commands {
    (
        guard { $( $(#[$doc:meta])* $name:ident ( $( $arg:ident : $ty:ty $(as $argts:literal)? ),* )
                   -> $ret:ty $(as $retts:literal)? ; )* }
        window { $( $(#[$wdoc:meta])* $wname:ident () -> $wret:ty $(as $wts:literal)? ; )* }
        ungranted { $( $uname:ident () -> $uret:ty ; )* }
    ) => {
        $(
            $(#[$doc])*
            #[tauri::command]
            async fn $name(guard: State<'_, Answers> $(, $arg: $ty)*) -> Result<Value, String> {
                let guard = Arc::clone(&guard);
                off_main_thread(move || guard.answer(Command::$name { $( $arg ),* })).await?
            }
        )*

        /// Every command of the list, for `Builder::invoke_handler`; the window's own are below.
        /// (The commands are private: Tauri `#[macro_export]`s the helpers of a public one, which
        /// a macro's expansion may not.)
        pub fn handler() -> impl Fn(tauri::ipc::Invoke) -> bool + Send + Sync + 'static {
            tauri::generate_handler![$( $name, )* $( $wname, )* $( $uname ),*]
        }
    };
}

fooocus_guard::for_each_command!(tauri_commands);

/// The folder picker is the window's own (a dialog belongs to it).
#[tauri::command]
async fn pick_folder(app: tauri::AppHandle) -> Option<String> {
    use tauri_plugin_dialog::DialogExt;
    let (tx, rx) = crossbeam_channel::bounded(1);
    app.dialog()
        .file()
        .set_title("Choose the Fooocus folder")
        .pick_folder(move |f| {
            let _ = tx.send(f.map(|p| p.to_string()));
        });
    rx.recv().ok().flatten()
}

/// The guard's updates since the page last asked, once there are any (docs/ipc.md).
#[tauri::command]
async fn take_updates(inbox: State<'_, Arc<Inbox>>) -> Result<updates::Batch, String> {
    let inbox = Arc::clone(&inbox);
    off_main_thread(move || inbox.take(updates::IDLE)).await
}

/// Registered but granted to no window: the IPC test calls it and must be refused.
#[tauri::command]
fn debug_forbidden() -> &'static str {
    "this must never be reachable from the webview"
}
