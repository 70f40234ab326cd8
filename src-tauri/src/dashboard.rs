//! `fooocus-guard-dashboard`: the dashboard window, a process of its own. The guard starts it
//! when the user opens the dashboard; it ends when the window closes (so WebKit's memory goes with
//! it) or when the guard goes away. Every command the webview calls is answered by the guard over
//! the local socket (src/ipc.rs); the webview itself may call only the commands granted in
//! capabilities/default.json, as before.

#![cfg_attr(all(not(debug_assertions), windows), windows_subsystem = "windows")]

#[cfg(unix)]
mod webview;
#[cfg(unix)]
mod window;

fn main() {
    // The guard's check that this program's libraries load (src/speechless.rs): nothing else.
    if std::env::args().nth(1).as_deref() == Some("--check-libraries") {
        return;
    }
    #[cfg(unix)]
    window::run();
    #[cfg(windows)]
    {
        eprintln!(
            "fooocus-guard-dashboard: on Windows the dashboard opens from fooocus-guard's tray icon"
        );
        std::process::exit(2);
    }
}
