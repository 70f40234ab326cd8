//! The dashboard's process, seen from the guard: at most one, started when the user opens the
//! dashboard (`fooocus-guard-dashboard`, src/dashboard/), reaped when it ends.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use fooocus_guard::ipc;

/// Whether the dashboard's process runs and keeps its window (false once it is closing).
pub type Running = Arc<Mutex<Option<Arc<AtomicBool>>>>;

/// The dashboard's process: at most one with a window, started on demand.
pub struct Dashboard {
    exe: PathBuf,
    data_dir: PathBuf,
    running: Running,
    /// Linux: the folder of flite's stand-ins for its library path (src/guard/speechless.rs),
    /// found at the first open.
    #[cfg(target_os = "linux")]
    speechless: std::sync::OnceLock<Option<PathBuf>>,
}

impl Dashboard {
    pub fn new(data_dir: &Path, running: Running) -> Dashboard {
        let exe = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("fooocus-guard-dashboard")))
            .unwrap_or_else(|| PathBuf::from("fooocus-guard-dashboard"));
        Dashboard {
            exe,
            data_dir: data_dir.to_path_buf(),
            running,
            #[cfg(target_os = "linux")]
            speechless: std::sync::OnceLock::new(),
        }
    }

    pub fn open(&self, server: &ipc::Server, why: bool) {
        let mut running = self.running.lock().unwrap();
        if running.as_ref().is_some_and(|r| r.load(Ordering::Relaxed)) {
            // Already there (or on its way): bring it forward.
            server.broadcast("show", &why);
            return;
        }
        let mut cmd = Command::new(&self.exe);
        cmd.env("FOOOCUS_GUARD_DATA_DIR", &self.data_dir);
        #[cfg(target_os = "linux")]
        if let Some(dir) = self
            .speechless
            .get_or_init(|| super::speechless::folder_for(&self.exe, &self.data_dir))
        {
            let inherited = std::env::var_os("LD_LIBRARY_PATH");
            cmd.env(
                "LD_LIBRARY_PATH",
                super::speechless::library_path(dir, inherited),
            );
        }
        if why {
            cmd.arg("--why");
        }
        let child = cmd.spawn();
        match child {
            Ok(mut child) => {
                let alive = Arc::new(AtomicBool::new(true));
                let flag = alive.clone();
                // Reaped as soon as it ends, so nothing of it lingers.
                let _ = std::thread::Builder::new()
                    .name("fooocus-guard-dashboard-wait".into())
                    .spawn(move || {
                        let _ = child.wait();
                        flag.store(false, Ordering::Relaxed);
                    });
                *running = Some(alive);
            }
            Err(e) => eprintln!(
                "fooocus-guard: cannot open the dashboard ({}): {e}; reinstall Fooocus Guard",
                self.exe.display()
            ),
        }
    }
}
