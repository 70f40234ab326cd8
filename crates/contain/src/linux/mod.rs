//! Linux backends: cgroup v2, cgroup v1 and a fallback without cgroups. See crates/contain/README.md.

mod cgroup;
pub mod detect;
mod fallback;
mod ledger;
mod procfs;
mod warden;

use std::os::unix::process::CommandExt;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::{BackendChoice, BackendKind, ContainError, Containment, Preference, Result};

pub use procfs::{descendants, is_alive};

/// Where the guard's groups live, under its own group in each hierarchy.
pub const GROUP_DIR: &str = "fooocus-guard";

static NEXT: AtomicU32 = AtomicU32::new(1);

/// A unique group name: `<guard pid>-<n>-<label>`; the pid lets a later guard find groups whose
/// guard is dead.
fn group_name(label: &str) -> String {
    let clean: String = label
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(24)
        .collect();
    format!(
        "{}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        clean
    )
}

pub fn create(pref: Preference, name: &str) -> Result<Box<dyn Containment>> {
    create_in(&detect::Mounts::read(), pref, name)
}

/// `create` with the hierarchies given (tests point them at a fake cgroupfs tree).
pub fn create_in(
    mounts: &detect::Mounts,
    pref: Preference,
    name: &str,
) -> Result<Box<dyn Containment>> {
    let mounts = mounts.clone();
    let name = group_name(name);
    match pref {
        Preference::CgroupV2 => Ok(Box::new(cgroup::CgroupContainer::create_v2(
            &mounts, &name,
        )?)),
        Preference::CgroupV1 => Ok(Box::new(cgroup::CgroupContainer::create_v1(
            &mounts, &name,
        )?)),
        Preference::Fallback => Ok(Box::new(fallback::Fallback::create(
            "forced: no cgroups (process group, PDEATHSIG, subreaper, watchdog)".into(),
        )?)),
        Preference::Auto => {
            let mut why = Vec::new();
            match cgroup::CgroupContainer::create_v2(&mounts, &name) {
                Ok(c) if c.choice().unenforced.iter().all(|u| u != "memory") => {
                    return Ok(Box::new(c))
                }
                Ok(c) => {
                    why.push("cgroup v2 has no memory controller here".to_string());
                    drop(c);
                }
                Err(e) => why.push(e.to_string()),
            }
            match cgroup::CgroupContainer::create_v1(&mounts, &name) {
                Ok(c) => return Ok(Box::new(c)),
                Err(e) => why.push(e.to_string()),
            }
            Ok(Box::new(fallback::Fallback::create(format!(
                "no usable cgroup ({}); using a process group, PDEATHSIG, a subreaper and a RAM watchdog",
                why.join("; ")
            ))?))
        }
    }
}

pub fn probe_backend(pref: Preference) -> Result<BackendChoice> {
    // Creating and dropping a container is the only honest probe: it writes what it would.
    let c = create(pref, "probe")?;
    Ok(c.choice().clone())
}

/// What guards that are gone left behind: the trees and groups their ledgers list (a guard
/// killed together with its warden), and groups found by name under this guard's own group.
pub fn clean_stale() -> Vec<String> {
    clean_stale_in(&detect::Mounts::read(), ledger::default_dir().as_deref())
}

/// `clean_stale` with the hierarchies and the ledgers' folder given (tests).
pub fn clean_stale_in(mounts: &detect::Mounts, ledgers: Option<&std::path::Path>) -> Vec<String> {
    let mut cleaned = ledgers
        .map(|d| ledger::clean(d, mounts))
        .unwrap_or_default();
    cleaned.extend(cgroup::clean_stale(mounts));
    cleaned
}

/// Orphaned descendants come back to the guard instead of init, so the fallback can still find
/// (and reap) them.
pub fn become_subreaper() -> bool {
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0 }
}

/// What every backend does in the child before exec: own process group, die with the guard's
/// spawning thread, no core dumps of a multi-GiB Python.
fn child_setup(cmd: &mut std::process::Command, join: Vec<std::os::fd::OwnedFd>) {
    use std::os::fd::AsRawFd;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the hook runs between fork and exec and only makes async-signal-safe calls.
    unsafe {
        cmd.pre_exec(move || {
            for fd in &join {
                // Join the group before running anything of the child's own.
                if libc::write(fd.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            libc::setpgid(0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            if libc::getppid() != parent {
                // The guard died between fork and prctl.
                libc::_exit(137);
            }
            let rl = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &rl);
            Ok(())
        });
    }
}

fn unavailable(backend: &'static str, why: impl Into<String>) -> ContainError {
    ContainError::Unavailable {
        backend,
        why: why.into(),
    }
}

fn choice(kind: BackendKind, reason: String, unenforced: Vec<String>) -> BackendChoice {
    BackendChoice {
        kind,
        reason,
        unenforced,
    }
}
