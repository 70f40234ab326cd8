//! Fooocus Guard, the tray app: `fooocus-guard [--demo] [--hidden]`.
//!
//! On Linux this process is the guard and its tray only, with no WebKit in it; the dashboard is
//! `fooocus-guard-dashboard`, a process of its own (see guard.rs). On Windows the window lives in
//! this process (combined.rs).

#![cfg_attr(all(not(debug_assertions), windows), windows_subsystem = "windows")]

mod notify;

#[cfg(unix)]
mod guard;
#[cfg(unix)]
mod sni;
#[cfg(target_os = "linux")]
mod speechless;

#[cfg(windows)]
mod combined;
#[cfg(windows)]
mod tray;
#[cfg(windows)]
mod webview;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let demo = args.iter().any(|a| a == "--demo");
    let hidden = args.iter().any(|a| a == "--hidden");
    #[cfg(unix)]
    guard::run(demo, hidden);
    #[cfg(windows)]
    combined::run(demo, hidden);
}
