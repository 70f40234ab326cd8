//! Start with the session: an XDG autostart entry on Linux, the Run key on Windows.

/// Turn starting with the session on or off.
pub fn set(on: bool) -> Result<(), String> {
    imp::set(on)
}

pub fn is_on() -> bool {
    imp::is_on()
}

#[cfg(target_os = "linux")]
mod imp {
    use std::path::PathBuf;

    fn entry() -> Option<PathBuf> {
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| directories::BaseDirs::new().map(|b| b.home_dir().join(".config")))?;
        Some(base.join("autostart").join("fooocus-guard.desktop"))
    }

    pub fn set(on: bool) -> Result<(), String> {
        let path = entry().ok_or("no home folder: cannot set up starting with the session")?;
        if !on {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(format!("cannot remove {}: {e}", path.display()))
                }
                _ => Ok(()),
            };
        }
        let exe =
            std::env::current_exe().map_err(|e| format!("cannot find the app's own path: {e}"))?;
        let text = format!(
            "[Desktop Entry]\nType=Application\nName=Fooocus Guard\nComment=Starts, contains and watches Fooocus\nExec=\"{}\" --hidden\nTerminal=false\nX-GNOME-Autostart-enabled=true\n",
            exe.display()
        );
        guard_core::config::write_atomic(&path, &text)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    pub fn is_on() -> bool {
        entry().is_some_and(|p| p.exists())
    }
}

#[cfg(windows)]
mod imp {
    use std::os::windows::process::CommandExt;

    const KEY: &str = r"HKCU\Software\Microsoft\Windows\CurrentVersion\Run";
    /// reg.exe is a console program: without this a window flashes from the tray app.
    const CREATE_NO_WINDOW: u32 = 0x0800_0000;

    fn reg() -> std::process::Command {
        let mut c = std::process::Command::new("reg");
        c.creation_flags(CREATE_NO_WINDOW)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        c
    }

    pub fn set(on: bool) -> Result<(), String> {
        let exe =
            std::env::current_exe().map_err(|e| format!("cannot find the app's own path: {e}"))?;
        let mut cmd = reg();
        if on {
            cmd.args(["add", KEY, "/v", "FooocusGuard", "/t", "REG_SZ", "/f", "/d"])
                .arg(format!("\"{}\" --hidden", exe.display()));
        } else {
            cmd.args(["delete", KEY, "/v", "FooocusGuard", "/f"]);
        }
        let st = cmd
            .status()
            .map_err(|e| format!("cannot run reg.exe: {e}"))?;
        if st.success() || !on {
            Ok(())
        } else {
            Err("reg.exe could not write the Run key".into())
        }
    }

    pub fn is_on() -> bool {
        reg()
            .args(["query", KEY, "/v", "FooocusGuard"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }
}

#[cfg(not(any(target_os = "linux", windows)))]
mod imp {
    pub fn set(_on: bool) -> Result<(), String> {
        Err("starting with the session is supported on Linux and Windows".into())
    }
    pub fn is_on() -> bool {
        false
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn writes_and_removes_the_autostart_entry() {
        let dir = tempfile::tempdir().unwrap();
        std::env::set_var("XDG_CONFIG_HOME", dir.path());
        super::set(true).unwrap();
        let text =
            std::fs::read_to_string(dir.path().join("autostart/fooocus-guard.desktop")).unwrap();
        assert!(text.contains("Exec=") && text.contains("--hidden"));
        assert!(super::is_on());
        super::set(false).unwrap();
        assert!(!super::is_on());
    }
}

/// Under Wine in CI (its reg.exe and registry), and on real Windows.
#[cfg(all(test, windows))]
mod windows_tests {
    #[test]
    fn the_run_key_is_written_and_removed() {
        let was = super::is_on();
        super::set(true).unwrap();
        assert!(super::is_on());
        super::set(false).unwrap();
        assert!(!super::is_on());
        super::set(was).unwrap();
    }
}
