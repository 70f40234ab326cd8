//! `fooocus-guard-dashboard`: the dashboard window, a process of its own. The guard starts it
//! when the user opens the dashboard; it ends when the window closes (so WebKit's memory goes with
//! it) or when the guard goes away. Every command the webview calls is answered by the guard over
//! the local socket (src/ipc.rs); the webview itself may call only the commands granted in
//! capabilities/default.json, as before. Linux only: on Windows the window lives in
//! `fooocus-guard`'s process (src/windows/).

#![cfg_attr(all(not(debug_assertions), windows), windows_subsystem = "windows")]

#[cfg(unix)]
mod window;

/// What this program shares with the other processes' code (src/shell/).
#[cfg(unix)]
#[path = "../shell"]
mod shell {
    /// The webview's commands, answered by the guard over the socket here.
    pub mod webview;
}

fn main() {
    // The guard's check that this program's libraries load (src/guard/speechless.rs): nothing else.
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
