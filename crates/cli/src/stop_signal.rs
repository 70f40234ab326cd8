//! Stopping the CLI from outside: Ctrl-C, SIGTERM and SIGHUP on Unix; Ctrl-C, Ctrl-Break and
//! the console closing (or the user logging off) on Windows. Each asks the guard to stop Fooocus
//! cleanly; if the guard itself is killed instead, the container takes the tree with it.

use guard_core::supervisor::Guard;

/// Watches for the stop signals until dropped.
pub struct StopSignals {
    #[cfg(unix)]
    handle: signal_hook::iterator::Handle,
}

impl Drop for StopSignals {
    fn drop(&mut self) {
        #[cfg(unix)]
        self.handle.close();
    }
}

#[cfg(unix)]
pub fn watch(guard: &Guard) -> Result<StopSignals, String> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| format!("cannot handle signals: {e}"))?;
    let handle = signals.handle();
    let g = guard.clone();
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            eprintln!("fooocus-guard: stopping Fooocus");
            g.shutdown();
        }
    });
    Ok(StopSignals { handle })
}

#[cfg(windows)]
pub fn watch(guard: &Guard) -> Result<StopSignals, String> {
    use std::sync::OnceLock;
    use windows_sys::Win32::Foundation::BOOL;
    use windows_sys::Win32::System::Console::{
        SetConsoleCtrlHandler, CTRL_BREAK_EVENT, CTRL_CLOSE_EVENT, CTRL_C_EVENT, CTRL_LOGOFF_EVENT,
        CTRL_SHUTDOWN_EVENT,
    };
    static GUARD: OnceLock<Guard> = OnceLock::new();

    // Runs on a thread Windows creates for the event.
    unsafe extern "system" fn on_ctrl(kind: u32) -> BOOL {
        let Some(g) = GUARD.get() else { return 0 };
        match kind {
            CTRL_C_EVENT | CTRL_BREAK_EVENT => {
                eprintln!("fooocus-guard: stopping Fooocus");
                g.shutdown();
                1
            }
            // Windows ends the process soon after this returns: stop within that time. The
            // job's kill-on-close covers the rest.
            CTRL_CLOSE_EVENT | CTRL_LOGOFF_EVENT | CTRL_SHUTDOWN_EVENT => {
                g.shutdown();
                g.wait();
                1
            }
            _ => 0,
        }
    }
    let _ = GUARD.set(guard.clone());
    // SAFETY: registers a handler with the signature the API expects; it lives forever.
    if unsafe { SetConsoleCtrlHandler(Some(on_ctrl), 1) } == 0 {
        return Err(format!(
            "cannot handle Ctrl-C: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(StopSignals {})
}
