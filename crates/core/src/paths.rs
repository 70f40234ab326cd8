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

/// History database and logs. Overridable with FOOOCUS_GUARD_DATA_DIR.
pub fn data_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FOOOCUS_GUARD_DATA_DIR") {
        return Some(PathBuf::from(p));
    }
    dirs().map(|d| d.data_dir().to_path_buf())
}

pub fn log_dir() -> Option<PathBuf> {
    data_dir().map(|d| d.join("logs"))
}
