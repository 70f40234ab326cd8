//! Demo mode: supervise the Fooocus simulator, so a newcomer sees the graphs move, a limit fire
//! and a notification within a minute. The simulator ships inside the binary.

use std::path::{Path, PathBuf};
use std::time::Duration;

use guard_core::config::Config;
use guard_core::supervisor::{FooocusState, Guard};
use guard_fooocus::install::{self, Install};

const SIMULATOR: &str = include_str!("../../../tests/sim/fooocus_sim.py");
/// Each version's argument parser, which the simulator reads from beside itself.
const SIMULATOR_FLAGS: &str = include_str!("../../../tests/sim/upstream_flags.json");

pub struct Demo {
    pub install: Install,
    pub dir: PathBuf,
}

impl Demo {
    /// Write the simulator and make a fake install of it under `dir`.
    pub fn prepare(dir: &Path) -> Result<Demo, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("demo: cannot create {}: {e}", dir.display()))?;
        let sim = dir.join("fooocus_sim.py");
        std::fs::write(&sim, SIMULATOR)
            .map_err(|e| format!("demo: cannot write {}: {e}", sim.display()))?;
        let flags = dir.join("upstream_flags.json");
        std::fs::write(&flags, SIMULATOR_FLAGS)
            .map_err(|e| format!("demo: cannot write {}: {e}", flags.display()))?;
        let fooocus = dir.join("Fooocus");
        let _ = std::fs::remove_dir_all(&fooocus);
        let python = python3().ok_or("demo mode needs python3 on the PATH")?;
        let out = std::process::Command::new(&python)
            .arg(&sim)
            .arg("make-install")
            .arg(&fooocus)
            .args(["--sim-version", "2.1", "--layout", "venv"])
            .output()
            .map_err(|e| format!("demo: cannot run {}: {e}", python.display()))?;
        if !out.status.success() {
            return Err(format!(
                "demo: the simulator could not make an install: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let install = install::inspect(&fooocus, None).map_err(|e| format!("demo: {e}"))?;
        Ok(Demo {
            install,
            dir: dir.to_path_buf(),
        })
    }

    /// The user's settings with limits that make the demo show something soon.
    pub fn config(&self, user: &Config) -> Config {
        let mut c = user.clone();
        c.install_path = Some(self.install.root.display().to_string());
        c.launch.port = free_port().unwrap_or(c.launch.port);
        c.limits.timeout_s = Some(20.0);
        c.limits.grace_s = Some(3.0);
        c.limits.memory_bytes = c.limits.memory_bytes.or(Some(2 << 30));
        c
    }

    /// Queue generations on the simulator: a normal one, then a runaway that the timeout stops.
    pub fn drive(&self, guard: &Guard) {
        let guard = guard.clone();
        let _ = std::thread::Builder::new().name("fooocus-guard-demo".into()).spawn(move || {
            let mut n = 0u32;
            loop {
                std::thread::sleep(Duration::from_secs(3));
                let st = guard.status();
                if st.state == FooocusState::Stopped && n > 0 {
                    continue;
                }
                let Some(url) = st.url.filter(|_| st.state == FooocusState::Ready) else { continue };
                let runaway = n % 3 == 1;
                let body = if runaway {
                    r#"{"session_hash": "demo", "images": 1, "steps": 2000, "step_seconds": 0.25}"#
                } else {
                    r#"{"session_hash": "demo", "images": 2, "steps": 12, "step_seconds": 0.25}"#
                };
                if guard_fooocus::stop::http(&url, "POST", "/sim/generate", Some(body.as_bytes()), &[]).is_ok() {
                    n += 1;
                }
                std::thread::sleep(Duration::from_secs(5));
            }
        });
    }
}

fn python3() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| {
            [
                d.join("python3"),
                d.join("python3.exe"),
                d.join("python.exe"),
            ]
        })
        .find(|p| p.is_file())
}

fn free_port() -> Option<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()
        .map(|a| a.port())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::io::BufRead;

    /// The demo's simulator runs from the folder the app writes it to (it once needed a file
    /// that was not written beside it, and every demo start exited with code 1).
    #[test]
    fn the_demo_install_starts_and_gets_ready() {
        let t = tempfile::tempdir().unwrap();
        let d = Demo::prepare(t.path()).unwrap();
        let cfg = d.config(&Config::default());
        let cmd = install::launch_command(&d.install, &cfg.launch, cfg.launch.port);
        let mut child = cmd
            .to_command()
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        let ready = out
            .lines()
            .map_while(Result::ok)
            .any(|l| l.starts_with("App started successful"));
        let _ = child.kill();
        let _ = child.wait();
        assert!(ready, "the demo's Fooocus never said it was ready");
    }
}
