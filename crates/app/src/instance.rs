//! One guard per data folder and per install. Two guards on one data folder interleave their
//! history and logs; two on one install fight over Fooocus's port and kill each other's tree.
//! The second is refused with the process that holds it. Locks are advisory file locks, so
//! they vanish with their process, however it ends.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Held for as long as this guard runs.
#[derive(Debug)]
pub struct InstanceLock {
    _files: Vec<File>,
}

impl InstanceLock {
    /// Lock `data_dir` (history, logs) and `install` (a Fooocus folder), whichever are given.
    pub fn acquire(
        data_dir: Option<&Path>,
        install: Option<&Path>,
    ) -> Result<InstanceLock, String> {
        let mut files = Vec::new();
        if let Some(d) = data_dir {
            files.push(lock(
                &d.join("guard.lock"),
                &format!("the data folder {}", d.display()),
                "or give this one another data folder (FOOOCUS_GUARD_DATA_DIR)",
            )?);
        }
        if let Some(i) = install {
            files.push(lock(
                &install_lock_path(i),
                &format!("the Fooocus install {}", i.display()),
                "",
            )?);
        }
        Ok(InstanceLock { _files: files })
    }
}

/// Outside the install (the guard writes nothing into it): a name made from its path.
fn install_lock_path(install: &Path) -> PathBuf {
    let canon = guard_fooocus::install::canonical(install);
    // FNV-1a: stable across runs and builds (std's hasher is not).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in canon.to_string_lossy().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    std::env::temp_dir().join(format!("fooocus-guard-install-{h:016x}.lock"))
}

fn lock(path: &Path, what: &str, hint: &str) -> Result<File, String> {
    if let Some(d) = path.parent() {
        fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    match f.try_lock() {
        Ok(()) => {
            // Who holds it, for the message a second guard gives.
            let _ = f.set_len(0);
            let _ = f.seek(SeekFrom::Start(0));
            let _ = write!(f, "{}", std::process::id());
            let _ = f.flush();
            Ok(f)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = f.read_to_string(&mut pid);
            let pid = pid.trim();
            let who = if pid.is_empty() {
                "another Fooocus Guard".to_string()
            } else {
                format!("another Fooocus Guard (pid {pid})")
            };
            let hint = if hint.is_empty() {
                String::new()
            } else {
                format!(", {hint}")
            };
            Err(format!(
                "{what} is already supervised by {who}: stop that one first{hint}"
            ))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_guard_on_the_same_folder_or_install_is_refused_by_pid() {
        let t = tempfile::tempdir().unwrap();
        let data = t.path().join("data");
        let inst = t.path().join("Fooocus");
        fs::create_dir_all(&inst).unwrap();
        let first = InstanceLock::acquire(Some(&data), Some(&inst)).unwrap();
        let e = InstanceLock::acquire(Some(&data), None).unwrap_err();
        let pid = std::process::id().to_string();
        assert!(e.contains("data folder") && e.contains(&pid), "{e}");
        let e = InstanceLock::acquire(Some(&t.path().join("other")), Some(&inst)).unwrap_err();
        assert!(e.contains("Fooocus install") && e.contains(&pid), "{e}");
        drop(first);
        InstanceLock::acquire(Some(&data), Some(&inst)).unwrap();
    }
}
