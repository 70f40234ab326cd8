//! What this guard has running, written down so the next guard can clean it up if this one dies
//! together with its warden (`pkill -9`, an OOM kill of both, a power-off of the session).
//!
//! One file per guard, `<data dir>/containers/guard-<pid>-<start time>`, rewritten whenever a
//! container is made, given its root process, or dropped, and removed when the guard holds none:
//!
//! ```text
//! group /sys/fs/cgroup/unified/<scope>/fooocus-guard/1234-1-fooocus
//! boot 3f2c7a9e-1d4b-4c8e-9a61-0b5d2e7f4c10
//! tree FOOOCUS_GUARD_TREE=1234-2-17c0ffee 5678 991234
//! ```
//!
//! `boot` is /proc/sys/kernel/random/boot_id: a ledger of another boot (a power-off) kills
//! nothing and is removed, since a pid and start time from then may name a process of this boot.
//!
//! A `group` is a cgroup directory (v2 or v1); a `tree` is a fallback tree: its environment token
//! and, once spawned, its root pid and that process's start time (clock ticks since boot, field
//! 22 of /proc/PID/stat), so a recycled pid is never taken for it. At start (`clean_stale`) a
//! guard reads the files of guards that are gone -- the pid is dead, or now another process
//! with another start time -- kills what they list and removes them. The cgroup backends also
//! find groups by name under the guard's own group; the ledger is what finds a delegated v2
//! group of another systemd scope, and the only record the fallback has.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::detect::Mounts;
use super::procfs::{descendants, env_has, is_alive, start_time};
use super::GROUP_DIR;

/// A ledger is a few lines per container; anything bigger is not one of ours.
const MAX_LEDGER_BYTES: u64 = 64 << 10;
/// How long one stale tree may take to die before the clean-up moves on.
const KILL_DEADLINE: Duration = Duration::from_secs(10);

/// Where the ledgers live: the guard's data folder (as guard-app's `paths::data_dir` on Linux;
/// guard-core depends on this crate, not the other way round), overridable the same way.
pub fn default_dir() -> Option<PathBuf> {
    let data = if let Some(d) = std::env::var_os("FOOOCUS_GUARD_DATA_DIR") {
        PathBuf::from(d)
    } else if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        PathBuf::from(d).join("fooocus-guard")
    } else {
        PathBuf::from(std::env::var_os("HOME")?).join(".local/share/fooocus-guard")
    };
    Some(data.join("containers"))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Group(PathBuf),
    Tree {
        token: String,
        root: Option<(u32, u64)>,
    },
}

struct Ledger {
    file: PathBuf,
    entries: Vec<(u64, Entry)>,
}

static LEDGER: Mutex<Option<Ledger>> = Mutex::new(None);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Record what a new container holds; the id given back updates or removes it.
pub fn record(entries: Vec<Entry>) -> u64 {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    change(|l| l.entries.extend(entries.into_iter().map(|e| (id, e))));
    id
}

/// The fallback tree `token` now has its root process.
pub fn set_root(id: u64, pid: u32) {
    let start = start_time(pid);
    change(|l| {
        for (i, e) in &mut l.entries {
            if let (true, Entry::Tree { root, .. }) = (*i == id, e) {
                *root = start.map(|s| (pid, s));
            }
        }
    });
}

/// The container is gone (its tree killed, its groups removed).
pub fn forget(id: u64) {
    change(|l| l.entries.retain(|(i, _)| *i != id));
}

fn change(f: impl FnOnce(&mut Ledger)) {
    let mut g = LEDGER.lock().unwrap_or_else(|p| p.into_inner());
    if g.is_none() {
        let Some(dir) = default_dir() else { return };
        let me = std::process::id();
        let Some(start) = start_time(me) else { return };
        *g = Some(Ledger {
            file: dir.join(format!("guard-{me}-{start}")),
            entries: Vec::new(),
        });
    }
    let l = g.as_mut().expect("set above");
    f(l);
    if let Err(e) = write(l) {
        // Only the clean-up after a guard killed with its warden depends on it.
        tracing::warn!(file = %l.file.display(), error = %e, "cannot record the running containers");
    }
}

fn write(l: &Ledger) -> std::io::Result<()> {
    if l.entries.is_empty() {
        return match fs::remove_file(&l.file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    let dir = l.file.parent().expect("a folder");
    {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mut text = String::new();
    if let Some(b) = boot_id() {
        text.push_str(&format!("boot {b}\n"));
    }
    for (_, e) in &l.entries {
        match e {
            // A path with a line break cannot be one line: it is left to the name scan.
            Entry::Group(p) => match p.to_str().filter(|s| !s.contains('\n')) {
                Some(s) => text.push_str(&format!("group {s}\n")),
                None => continue,
            },
            Entry::Tree { token, root } => {
                text.push_str(&format!("tree {token}"));
                if let Some((pid, start)) = root {
                    text.push_str(&format!(" {pid} {start}"));
                }
                text.push('\n');
            }
        }
    }
    let tmp = l.file.with_extension("tmp");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            // The data folder is the user's; still, never write through a link planted there.
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
    }
    fs::rename(&tmp, &l.file)
}

pub fn parse(text: &str) -> Vec<Entry> {
    text.lines()
        .filter_map(|line| {
            let (kind, rest) = line.split_once(' ')?;
            match kind {
                "group" => Some(Entry::Group(PathBuf::from(rest))),
                "tree" => {
                    let mut it = rest.split(' ');
                    let token = it.next().filter(|t| is_tree_token(t))?.to_string();
                    let root = match (it.next(), it.next()) {
                        (Some(p), Some(s)) => Some((p.parse().ok()?, s.parse().ok()?)),
                        _ => None,
                    };
                    Some(Entry::Tree { token, root })
                }
                _ => None,
            }
        })
        .collect()
}

/// This boot's id (/proc/sys/kernel/random/boot_id).
fn boot_id() -> Option<String> {
    let b = fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let b = b.trim();
    (!b.is_empty() && !b.contains(char::is_whitespace)).then(|| b.to_string())
}

/// What a ledger lists, if it was written in this boot (`boot`); nothing otherwise. A pid and
/// its start time name one process in one boot only: after a power-off they may name an
/// early-boot process of the next, and a ledger without its boot is not trusted either.
fn this_boots(text: &str, boot: Option<&str>) -> Vec<Entry> {
    let written = text
        .lines()
        .find_map(|l| l.strip_prefix("boot "))
        .map(str::trim);
    match (written, boot) {
        (Some(w), Some(b)) if w == b => parse(text),
        _ => Vec::new(),
    }
}

/// Whether `t` is a token as the fallback writes it, `FOOOCUS_GUARD_TREE=<pid>-<n>-<hex>`:
/// every process of this user whose environment holds it is killed, so an empty token (every
/// environment ends in an empty element) or any other pair (`HOME=...`) would kill the session.
fn is_tree_token(t: &str) -> bool {
    let Some(v) = t
        .strip_prefix(super::fallback::TOKEN_VAR)
        .and_then(|r| r.strip_prefix('='))
    else {
        return false;
    };
    let parts: Vec<&str> = v.split('-').collect();
    let digits = |s: &str, hex: bool| {
        !s.is_empty()
            && s.len() <= 32
            && s.bytes().all(|b| {
                if hex {
                    b.is_ascii_hexdigit()
                } else {
                    b.is_ascii_digit()
                }
            })
    };
    parts.len() == 3 && digits(parts[0], false) && digits(parts[1], false) && digits(parts[2], true)
}

/// The ledgers in `dir` of guards that are gone: (file, guard pid, what it lists).
fn stale_ledgers(dir: &Path) -> Vec<(PathBuf, u32, Vec<Entry>)> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some((pid, start)) = name
            .strip_prefix("guard-")
            .and_then(|r| r.split_once('-'))
            .and_then(|(p, s)| Some((p.parse::<u32>().ok()?, s.parse::<u64>().ok()?)))
        else {
            continue;
        };
        if pid == std::process::id() || (is_alive(pid) && start_time(pid) == Some(start)) {
            continue;
        }
        let path = e.path();
        // A regular file of ours, read with a ceiling: never a FIFO that blocks the start.
        let text = match read_capped(&path) {
            Some(t) => t,
            None => {
                let _ = fs::remove_file(&path);
                continue;
            }
        };
        out.push((path, pid, this_boots(&text, boot_id().as_deref())));
    }
    out
}

fn read_capped(path: &Path) -> Option<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    let m = f.metadata().ok()?;
    // SAFETY: geteuid cannot fail.
    if !m.is_file() || std::os::unix::fs::MetadataExt::uid(&m) != unsafe { libc::geteuid() } {
        return None;
    }
    let mut text = String::new();
    f.take(MAX_LEDGER_BYTES).read_to_string(&mut text).ok()?;
    Some(text)
}

/// Kill and remove what the ledgers of dead guards in `dir` list. One line per group or tree
/// cleaned, for the `stale_cleaned` event.
pub fn clean(dir: &Path, mounts: &Mounts) -> Vec<String> {
    let mut cleaned = Vec::new();
    for (file, guard, entries) in stale_ledgers(dir) {
        for e in entries {
            match e {
                Entry::Group(g) => {
                    if is_our_group(&g, mounts) && super::cgroup::kill_and_remove(&g) {
                        cleaned.push(format!("{} (left by guard pid {guard})", g.display()));
                    }
                }
                Entry::Tree { token, root } => {
                    let n = kill_tree(&token, root);
                    if n > 0 {
                        cleaned.push(format!(
                            "{n} processes of the tree {token} (left by guard pid {guard})"
                        ));
                    }
                }
            }
        }
        let _ = fs::remove_file(&file);
    }
    cleaned
}

/// Only a guard's group in a mounted cgroup hierarchy is touched, whatever the file says.
fn is_our_group(g: &Path, m: &Mounts) -> bool {
    let in_mount =
        m.v1.iter()
            .map(|h| h.mount.as_path())
            .any(|mp| g.starts_with(mp))
            || m.v2.as_ref().is_some_and(|(mp, _)| g.starts_with(mp));
    in_mount
        && g.is_absolute()
        && !g.components().any(|c| c == std::path::Component::ParentDir)
        && g.parent()
            .and_then(Path::file_name)
            .is_some_and(|n| n == GROUP_DIR)
}

/// Kill a stale fallback tree: the processes of this user carrying its token, its root if that
/// is still the same process, and all their descendants (looked up before any is killed, so none
/// is orphaned out of sight). Returns how many were killed.
fn kill_tree(token: &str, root: Option<(u32, u64)>) -> usize {
    let token = token.as_bytes();
    let me = std::process::id();
    let deadline = Instant::now() + KILL_DEADLINE;
    let mut killed: Vec<u32> = Vec::new();
    loop {
        let mut found: Vec<u32> = Vec::new();
        if let Some((pid, start)) = root {
            if is_alive(pid) && start_time(pid) == Some(start) {
                found.extend(descendants(pid));
            }
        }
        for pid in own_processes() {
            if pid != me && !found.contains(&pid) && env_has(pid, token) {
                found.extend(descendants(pid));
            }
        }
        found.retain(|p| *p != me);
        if found.is_empty() || Instant::now() > deadline {
            return killed.len();
        }
        for p in found {
            // SAFETY: kill(2) on a pid seen alive in the tree a moment ago.
            unsafe { libc::kill(p as libc::pid_t, libc::SIGKILL) };
            if !killed.contains(&p) {
                killed.push(p);
            }
        }
        // The kernel takes a moment to reap what was killed (the memory is freed first).
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Pids of this user's processes.
fn own_processes() -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<u32>().ok()?;
            (e.metadata().ok()?.uid() == me).then_some(pid)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        let l = Ledger {
            file: PathBuf::from("/nonexistent/guard-1-2"),
            entries: vec![
                (
                    1,
                    Entry::Group(PathBuf::from("/sys/fs/cgroup/a/fooocus-guard/1-1-x")),
                ),
                (
                    2,
                    Entry::Tree {
                        token: "FOOOCUS_GUARD_TREE=1-2-ab".into(),
                        root: Some((77, 12345)),
                    },
                ),
                (
                    3,
                    Entry::Tree {
                        token: "FOOOCUS_GUARD_TREE=1-3-cd".into(),
                        root: None,
                    },
                ),
            ],
        };
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger {
            file: dir.path().join("guard-1-2"),
            ..l
        };
        write(&l).unwrap();
        let text = fs::read_to_string(&l.file).unwrap();
        assert!(text.starts_with(&format!("boot {}\n", boot_id().unwrap())));
        let back = this_boots(&text, boot_id().as_deref());
        assert_eq!(
            back,
            l.entries.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>()
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&l.file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn only_a_tree_token_of_the_fallbacks_shape_is_read() {
        let text = "tree \ntree HOME=/home/u\ntree FOOOCUS_GUARD_TREE= 1 2\n\
                    tree FOOOCUS_GUARD_TREE=1-2\ntree PATH=1-2-ab\n\
                    tree FOOOCUS_GUARD_TREE=1-2-zz\ntree FOOOCUS_GUARD_TREE=12-3-0af 5 6\n";
        assert_eq!(
            parse(text),
            [Entry::Tree {
                token: "FOOOCUS_GUARD_TREE=12-3-0af".into(),
                root: Some((5, 6)),
            }]
        );
    }

    #[test]
    fn a_ledger_of_another_boot_or_of_none_lists_nothing() {
        let body = "group /sys/fs/cgroup/a/fooocus-guard/1-1-x\n\
                    tree FOOOCUS_GUARD_TREE=1-2-ab 1 5\n";
        let here = "6b1c2d3e-0000-4000-8000-000000000001";
        assert_eq!(
            this_boots(&format!("boot {here}\n{body}"), Some(here)).len(),
            2
        );
        let other = "6b1c2d3e-0000-4000-8000-000000000002";
        assert!(this_boots(&format!("boot {other}\n{body}"), Some(here)).is_empty());
        assert!(this_boots(body, Some(here)).is_empty());
        assert!(this_boots(&format!("boot {here}\n{body}"), None).is_empty());
    }

    #[test]
    fn only_a_guards_group_under_a_cgroup_mount_is_touched() {
        let m = Mounts {
            v1: Vec::new(),
            v2: Some((PathBuf::from("/sys/fs/cgroup"), "/".into())),
        };
        let ok = Path::new("/sys/fs/cgroup/x.scope/fooocus-guard/12-1-fooocus");
        assert!(is_our_group(ok, &m));
        for bad in [
            "/home/me/fooocus-guard/12-1-fooocus",
            "/sys/fs/cgroup/x.scope/12-1-fooocus",
            "/sys/fs/cgroup/fooocus-guard/../../etc/fooocus-guard/x",
            "/sys/fs/cgroup/user.slice",
        ] {
            assert!(!is_our_group(Path::new(bad), &m), "{bad}");
        }
    }
}
