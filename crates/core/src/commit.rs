//! Windows: the RAM cap is a limit on *committed* memory (what programs have reserved, in RAM or
//! the page file), not on what they touch. Loading torch with CUDA commits several GB more than
//! it uses, so a cap that looks generous can stop Fooocus from starting. The sampler measures the
//! commit Fooocus reaches while it starts and when it is ready (the job's accounting); settings
//! then warn before a cap below it is saved.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{Config, FieldError};
use crate::supervisor::FooocusState;
use crate::units::format_size;

/// The commit of the last start that reached ready (`startup-commit.json` in the data folder).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct StartupCommit {
    /// The highest commit seen from start until ready.
    pub startup_peak_bytes: u64,
    /// The commit when Fooocus said it was ready.
    pub ready_bytes: u64,
    pub measured_ms: i64,
}

fn file_in(dir: &Path) -> PathBuf {
    dir.join("startup-commit.json")
}

/// The last measurement, if Fooocus ever reached ready under this guard (Windows only).
pub fn load(data_dir: &Path) -> Option<StartupCommit> {
    // A few dozen bytes; read like the settings (a regular file, capped) so a FIFO or a link to
    // /dev/zero in its place cannot hang or swell the guard.
    let bytes =
        crate::config::read_small_file(&file_in(data_dir), 64 << 10, "the start-up figure").ok()?;
    serde_json::from_slice(&bytes).ok()
}

pub fn save(data_dir: &Path, c: &StartupCommit) -> std::io::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    let tmp = file_in(data_dir).with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(c).map_err(std::io::Error::other)?)?;
    std::fs::rename(tmp, file_in(data_dir))
}

/// Follows one run of Fooocus: the peak commit while it starts, and the commit at ready.
#[derive(Debug, Default)]
pub struct CommitWatch {
    peak: u64,
    done: bool,
}

impl CommitWatch {
    /// A new tree: measure again.
    pub fn reset(&mut self) {
        *self = CommitWatch::default();
    }

    /// One sample. Returns the measurement once, when Fooocus becomes ready.
    pub fn observe(
        &mut self,
        state: FooocusState,
        commit: Option<u64>,
        now_ms: i64,
    ) -> Option<StartupCommit> {
        let commit = commit?;
        if self.done {
            return None;
        }
        match state {
            FooocusState::Starting => {
                self.peak = self.peak.max(commit);
                None
            }
            FooocusState::Ready | FooocusState::Generating if self.peak > 0 => {
                self.done = true;
                Some(StartupCommit {
                    startup_peak_bytes: self.peak.max(commit),
                    ready_bytes: commit,
                    measured_ms: now_ms,
                })
            }
            _ => None,
        }
    }
}

/// The job's commit limit the settings set: the RAM cap plus the swap cap (Windows folds both
/// into one limit).
pub fn commit_limit(cfg: &Config) -> Option<u64> {
    let ram = cfg.limits.memory_bytes?;
    Some(ram.saturating_add(cfg.limits.swap_bytes.unwrap_or(0)))
}

/// A warning (never an error: the user may know better) when the settings' commit limit is below
/// what Fooocus committed at its last start.
pub fn cap_warning(cfg: &Config, measured: Option<&StartupCommit>) -> Option<FieldError> {
    let m = measured?;
    let limit = commit_limit(cfg)?;
    if limit >= m.startup_peak_bytes {
        return None;
    }
    let why = if limit < m.ready_bytes {
        "Windows would refuse it memory and Fooocus would fail to start"
    } else {
        "Windows would refuse it memory while it loads, and it could fail to start"
    };
    Some(FieldError {
        field: "limits.memory_bytes".into(),
        value: format_size(limit),
        message: format!(
            "RAM cap + swap cap = {} is below the {} Fooocus committed (reserved) when it last started ({} once ready): {why}. \
On Windows the cap limits committed memory, not what Task Manager shows as in use. Raise the RAM or swap cap to at least {}.",
            format_size(limit),
            format_size(m.startup_peak_bytes),
            format_size(m.ready_bytes),
            format_size(m.startup_peak_bytes),
        ),
    })
}

/// Something settings show beside a field without blocking the save (docs/ipc.md `SettingsNote`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SettingsNote {
    pub field: String,
    /// "warning" (shown before saving; the save still goes through) or "note".
    pub kind: String,
    pub message: String,
}

/// The notes for these settings given a measurement: the commit Fooocus reached beside the RAM
/// cap, and a warning when the cap is below it.
pub fn notes_with(cfg: &Config, measured: Option<&StartupCommit>) -> Vec<SettingsNote> {
    let Some(m) = measured else {
        return Vec::new();
    };
    if let Some(w) = cap_warning(cfg, Some(m)) {
        return vec![SettingsNote {
            field: w.field,
            kind: "warning".into(),
            message: w.message,
        }];
    }
    vec![SettingsNote {
        field: "limits.memory_bytes".into(),
        kind: "note".into(),
        message: format!(
            "Fooocus committed {} when it last started ({} once ready); on Windows the RAM cap + swap cap must stay above it.",
            format_size(m.startup_peak_bytes),
            format_size(m.ready_bytes)
        ),
    }]
}

/// The notes for these settings on this machine: none outside Windows, where the RAM cap limits
/// resident memory, not commit.
/// `data_dir`: the guard's data folder, where the commit measured at a start is kept.
pub fn notes(cfg: &Config, data_dir: Option<&Path>) -> Vec<SettingsNote> {
    if !cfg!(windows) {
        return Vec::new();
    }
    let measured = data_dir.and_then(load);
    notes_with(cfg, measured.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[cfg(unix)]
    #[test]
    fn a_fifo_in_place_of_the_figure_is_no_figure_and_no_hang() {
        let dir = tempfile::tempdir().unwrap();
        let c = std::ffi::CString::new(file_in(dir.path()).to_str().unwrap()).unwrap();
        // SAFETY: a valid path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let (tx, rx) = crossbeam_channel::bounded(1);
        let d = dir.path().to_path_buf();
        std::thread::spawn(move || tx.send(load(&d)).unwrap());
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("load returns without a writer on the FIFO");
        assert_eq!(got, None);
        save(
            dir.path(),
            &StartupCommit {
                startup_peak_bytes: 1,
                ready_bytes: 1,
                measured_ms: 1,
            },
        )
        .unwrap();
        assert!(load(dir.path()).is_some(), "a regular file still loads");
    }

    fn cfg(ram: Option<u64>, swap: Option<u64>) -> Config {
        let mut c = Config::default();
        c.limits.memory_bytes = ram;
        c.limits.swap_bytes = swap;
        c
    }

    #[test]
    fn the_watch_keeps_the_start_ups_peak_and_the_commit_at_ready() {
        let mut w = CommitWatch::default();
        assert_eq!(w.observe(FooocusState::Starting, None, 1), None);
        assert_eq!(w.observe(FooocusState::Starting, Some(3 * GIB), 1), None);
        assert_eq!(w.observe(FooocusState::Starting, Some(9 * GIB), 2), None);
        assert_eq!(w.observe(FooocusState::Starting, Some(7 * GIB), 3), None);
        let m = w.observe(FooocusState::Ready, Some(8 * GIB), 4).unwrap();
        assert_eq!(
            m,
            StartupCommit {
                startup_peak_bytes: 9 * GIB,
                ready_bytes: 8 * GIB,
                measured_ms: 4
            }
        );
        // Once per run.
        assert_eq!(w.observe(FooocusState::Ready, Some(8 * GIB), 5), None);
        w.reset();
        // A tree first seen already ready (the guard's sampler started late) is no start-up.
        assert_eq!(w.observe(FooocusState::Ready, Some(8 * GIB), 6), None);
    }

    #[test]
    fn a_cap_below_the_start_up_commit_warns_with_figures() {
        let m = StartupCommit {
            startup_peak_bytes: 14 * GIB,
            ready_bytes: 11 * GIB,
            measured_ms: 0,
        };
        // Nothing measured, no cap, or a cap above: no warning.
        assert_eq!(cap_warning(&cfg(Some(8 * GIB), None), None), None);
        assert_eq!(cap_warning(&cfg(None, Some(GIB)), Some(&m)), None);
        assert_eq!(
            cap_warning(&cfg(Some(12 * GIB), Some(2 * GIB)), Some(&m)),
            None
        );
        // RAM + swap is the limit: 12 G + 1 G is below the 14 GiB peak but above ready.
        let w = cap_warning(&cfg(Some(12 * GIB), Some(GIB)), Some(&m)).unwrap();
        assert_eq!(w.field, "limits.memory_bytes");
        assert!(
            w.message
                .starts_with("RAM cap + swap cap = 13 GiB is below the 14 GiB Fooocus committed"),
            "{}",
            w.message
        );
        assert!(w.message.contains("while it loads"), "{}", w.message);
        assert!(w.message.contains("at least 14 GiB"), "{}", w.message);
        // Below the commit at ready: it would not start at all.
        let w = cap_warning(&cfg(Some(8 * GIB), None), Some(&m)).unwrap();
        assert!(w.message.contains("would fail to start"), "{}", w.message);
    }

    #[test]
    fn settings_show_the_measurement_and_warn_below_it() {
        let m = StartupCommit {
            startup_peak_bytes: 14 * GIB,
            ready_bytes: 11 * GIB,
            measured_ms: 0,
        };
        assert_eq!(notes_with(&cfg(Some(8 * GIB), None), None), vec![]);
        let n = notes_with(&cfg(Some(16 * GIB), None), Some(&m));
        assert_eq!((n.len(), n[0].kind.as_str()), (1, "note"));
        assert!(
            n[0].message.starts_with("Fooocus committed 14 GiB"),
            "{}",
            n[0].message
        );
        let n = notes_with(&cfg(Some(8 * GIB), None), Some(&m));
        assert_eq!(
            (n[0].kind.as_str(), n[0].field.as_str()),
            ("warning", "limits.memory_bytes")
        );
        // Not a validation error: the settings still save.
        assert!(cfg(Some(8 * GIB), None).validate().is_empty());
    }

    #[test]
    fn the_measurement_survives_a_restart_of_the_guard() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(load(d.path()), None);
        let m = StartupCommit {
            startup_peak_bytes: 5,
            ready_bytes: 4,
            measured_ms: 3,
        };
        save(d.path(), &m).unwrap();
        assert_eq!(load(d.path()), Some(m));
    }
}
