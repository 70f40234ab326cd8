//! The platform's folders for config, data (history, logs) and state.

use std::path::PathBuf;

fn dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "fooocus-guard")
}

/// Overridable with FOOOCUS_GUARD_CONFIG_DIR (tests, portable setups).
pub fn config_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FOOOCUS_GUARD_CONFIG_DIR") {
        return Some(PathBuf::from(p));
    }
    dirs().map(|d| d.config_dir().to_path_buf())
}

/// History database and logs. Overridable with FOOOCUS_GUARD_DATA_DIR. The machine-local data
/// folder: on Windows %LOCALAPPDATA% (a history and logs have no business in a roaming
/// profile); on Linux the same ~/.local/share as the plain data folder.
pub fn data_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FOOOCUS_GUARD_DATA_DIR") {
        return Some(PathBuf::from(p));
    }
    dirs().map(|d| d.data_local_dir().to_path_buf())
}

/// The settings file in use by default: ~/.config/fooocus-guard/config.toml on Linux,
/// %APPDATA%\fooocus-guard\config\config.toml on Windows.
pub fn config_file() -> Option<guard_core::config::ConfigFile> {
    config_dir().map(|d| guard_core::config::ConfigFile::new(d.join("config.toml")))
}

pub fn log_dir() -> Option<PathBuf> {
    data_dir().map(|d| d.join("logs"))
}

/// Under Wine in CI, and on real Windows: the Windows folders, not Unix ones.
#[cfg(all(test, windows))]
mod windows_tests {
    #[test]
    fn config_roams_and_data_stays_on_the_machine() {
        let appdata = std::path::PathBuf::from(std::env::var_os("APPDATA").unwrap());
        let local = std::path::PathBuf::from(std::env::var_os("LOCALAPPDATA").unwrap());
        let config = super::config_dir().unwrap();
        let logs = super::log_dir().unwrap();
        assert!(config.starts_with(&appdata), "{}", config.display());
        assert!(logs.starts_with(&local), "{}", logs.display());
        assert!(
            logs.ends_with(r"fooocus-guard\data\logs"),
            "{}",
            logs.display()
        );
    }
}
