//! Fooocus Guard, the tray app: `fooocus-guard [--demo] [--hidden]`.
//!
//! On Linux this process is the guard and its tray only, with no WebKit in it (src/guard/); the
//! dashboard is `fooocus-guard-dashboard`, a process of its own (src/dashboard/). On Windows the
//! window lives in this process too (src/windows/).
//!
//! Where each file of src/ runs:
//! - `lib.rs`, `command.rs`, `command_list.rs`, `ipc.rs`, `updates.rs`: the library both programs
//!   link (no Tauri, no GTK);
//! - `guard/`: the guard's process on Linux (this program);
//! - `dashboard/`: the dashboard's process on Linux (`fooocus-guard-dashboard`);
//! - `windows/`: the one process on Windows (this program);
//! - `shell/`: modules more than one of those processes compiles in (each program names the
//!   ones it uses).

#![cfg_attr(all(not(debug_assertions), windows), windows_subsystem = "windows")]

#[cfg(unix)]
mod guard;
#[cfg(windows)]
mod windows;

/// What this program shares with the other processes' code (src/shell/).
mod shell {
    /// Desktop notifications: the guard's process on Linux, the one process on Windows.
    pub mod notify;
    /// The webview's commands: on Windows the window lives in this process.
    #[cfg(windows)]
    pub mod webview;
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let demo = args.iter().any(|a| a == "--demo");
    let hidden = args.iter().any(|a| a == "--hidden");
    #[cfg(unix)]
    guard::run(demo, hidden);
    #[cfg(windows)]
    windows::run(demo, hidden);
}
