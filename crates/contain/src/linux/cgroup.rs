//! cgroup v1 and v2 containers. One group per run in each hierarchy used, under the guard's own
//! group (what it is delegated), at `<own>/fooocus-guard/<guard pid>-<n>-<label>`.

use std::ffi::CString;
use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::detect::{join_cgroup, keyed, Mounts};
use super::ledger;
use super::warden::{Plan, Warden};
use super::{child_setup, choice, unavailable, GROUP_DIR};
use crate::{
    BackendChoice, BackendKind, ContainError, Containment, KillReport, Limits, Result, TreeProbe,
};

/// cgroup v2 memory.high as a share of memory.max: the tree is slowed (reclaimed) before the
/// kernel kills it.
const HIGH_SHARE: f64 = 0.95;
const CFS_PERIOD_US: u64 = 100_000;

pub struct CgroupContainer {
    choice: BackendChoice,
    /// v2 group (the primary one in v2 mode; in v1 mode the hybrid v2 group, for cgroup.kill).
    v2: Option<PathBuf>,
    v2_primary: bool,
    /// v1 groups: (controllers, dir).
    v1: Vec<(Vec<String>, PathBuf)>,
    root: Mutex<Option<u32>>,
    warden: Mutex<Option<Warden>>,
    /// Its line in this guard's ledger (see ledger.rs).
    ledger: u64,
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("paths have no NUL")
}

fn write(dir: &Path, file: &str, value: &str) -> Result<()> {
    let p = dir.join(file);
    fs::write(&p, value)
        .map_err(|e| ContainError::io(format!("writing {value:?} to {}", p.display()), e))
}

fn read(dir: &Path, file: &str) -> String {
    fs::read_to_string(dir.join(file)).unwrap_or_default()
}

/// The pids in a group, or why they cannot be read (out of file descriptors, say): an unread
/// list must never pass for an empty group.
fn try_pids_in(dir: &Path) -> std::io::Result<Vec<u32>> {
    Ok(fs::read_to_string(dir.join("cgroup.procs"))?
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

fn pids_in(dir: &Path) -> Vec<u32> {
    read(dir, "cgroup.procs")
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn open_procs(dir: &Path) -> Result<OwnedFd> {
    let f = fs::OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.procs"))
        .map_err(|e| ContainError::io(format!("opening {}/cgroup.procs", dir.display()), e))?;
    Ok(f.into())
}

/// Make `base/GROUP_DIR/name`, the parents included.
fn make_group(own: &Path, name: &str) -> std::io::Result<PathBuf> {
    let dir = own.join(GROUP_DIR).join(name);
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

impl CgroupContainer {
    pub fn create_v2(m: &Mounts, name: &str) -> Result<Self> {
        let (mount, own) =
            m.v2.clone()
                .ok_or_else(|| unavailable("cgroup-v2", "no cgroup2 file system is mounted"))?;
        let own_dir = join_cgroup(&mount, &own);
        let root_group = own == "/" || own.is_empty();
        if !root_group {
            // A non-root group with processes cannot give controllers to children; a delegated
            // group (systemd Delegate=yes) would first move the guard into a leaf of its own.
            let writable = fs::metadata(own_dir.join("cgroup.subtree_control"))
                .map(|m| !m.permissions().readonly())
                .unwrap_or(false)
                && unsafe {
                    libc::access(cstr(&own_dir.join("cgroup.procs")).as_ptr(), libc::W_OK)
                } == 0;
            if !writable {
                return Err(unavailable(
                    "cgroup-v2",
                    format!(
                        "the guard's group {} is not delegated to it: start the guard with `systemd-run --user --scope -p Delegate=yes ...`",
                        own_dir.display()
                    ),
                ));
            }
            let leaf = own_dir.join("guard");
            fs::create_dir_all(&leaf)
                .map_err(|e| ContainError::io(format!("creating {}", leaf.display()), e))?;
            write(&leaf, "cgroup.procs", "0")?;
        }
        let available = read(&own_dir, "cgroup.controllers");
        let wanted: Vec<&str> = ["memory", "cpu", "pids"]
            .into_iter()
            .filter(|c| available.split_whitespace().any(|a| a == *c))
            .collect();
        let enable: String = wanted.iter().map(|c| format!("+{c} ")).collect();
        if !enable.is_empty() {
            let _ = fs::write(own_dir.join("cgroup.subtree_control"), enable.trim());
        }
        let dir = make_group(&own_dir, name).map_err(|e| {
            unavailable(
                "cgroup-v2",
                format!("cannot create a group under {}: {e}", own_dir.display()),
            )
        })?;
        if !enable.is_empty() {
            let _ = fs::write(
                own_dir.join(GROUP_DIR).join("cgroup.subtree_control"),
                enable.trim(),
            );
        }
        let has = |f: &str| dir.join(f).exists();
        let mut unenforced = Vec::new();
        if !has("memory.max") {
            unenforced.push("memory".to_string());
            unenforced.push("swap".to_string());
        } else if !has("memory.swap.max") {
            unenforced.push("swap".to_string());
        }
        if !has("cpu.max") {
            unenforced.push("cpu".to_string());
        }
        let reason = if unenforced.is_empty() {
            format!(
                "cgroup v2 at {} with the memory, cpu and pids controllers",
                dir.display()
            )
        } else {
            format!(
                "cgroup v2 at {}; not available there: {} (the guard's watchdog covers RAM)",
                dir.display(),
                unenforced.join(", ")
            )
        };
        let mut c = CgroupContainer {
            choice: choice(BackendKind::CgroupV2, reason, unenforced),
            v2: Some(dir.clone()),
            v2_primary: true,
            v1: Vec::new(),
            root: Mutex::new(None),
            warden: Mutex::new(None),
            ledger: 0,
        };
        c.ledger = ledger::record(c.dirs().into_iter().map(ledger::Entry::Group).collect());
        c.arm_warden()?;
        Ok(c)
    }

    pub fn create_v1(m: &Mounts, name: &str) -> Result<Self> {
        let mem = m
            .v1_for("memory")
            .ok_or_else(|| unavailable("cgroup-v1", "no v1 memory controller is mounted"))?;
        let mut v1: Vec<(Vec<String>, PathBuf)> = Vec::new();
        let mut mounts_seen: Vec<&Path> = Vec::new();
        let mut missing = Vec::new();
        for ctrl in ["memory", "cpu", "cpuacct", "pids", "freezer"] {
            let Some(h) = m.v1_for(ctrl) else {
                missing.push(ctrl);
                continue;
            };
            if mounts_seen.contains(&h.mount.as_path()) {
                continue;
            }
            match make_group(&h.own_dir(), name) {
                Ok(dir) => {
                    mounts_seen.push(&h.mount);
                    v1.push((h.controllers.clone(), dir));
                }
                Err(e) if ctrl == "memory" => {
                    for (_, d) in &v1 {
                        let _ = fs::remove_dir(d);
                    }
                    return Err(unavailable(
                        "cgroup-v1",
                        format!("cannot create a memory group under {}: {e} (run as root or get a delegated group)", mem.own_dir().display()),
                    ));
                }
                Err(_) => missing.push(ctrl),
            }
        }
        // On a hybrid machine the v2 hierarchy still offers cgroup.kill: join it too.
        let v2 = m.v2.as_ref().and_then(|(mount, own)| {
            let own_dir = join_cgroup(mount, own);
            let d = make_group(&own_dir, name).ok()?;
            if d.join("cgroup.kill").exists() {
                Some(d)
            } else {
                let _ = fs::remove_dir(&d);
                None
            }
        });
        let memdir = v1
            .iter()
            .find(|(c, _)| c.iter().any(|x| x == "memory"))
            .map(|(_, d)| d.clone())
            .expect("memory group");
        let mut unenforced = Vec::new();
        if !memdir.join("memory.memsw.limit_in_bytes").exists() {
            unenforced.push("swap".to_string());
        }
        if !v1.iter().any(|(c, _)| c.iter().any(|x| x == "cpu")) {
            unenforced.push("cpu".to_string());
        }
        let mut reason = format!(
            "cgroup v1 groups under {} ({})",
            mem.mount.parent().unwrap_or(Path::new("/")).display(),
            v1.iter()
                .flat_map(|(c, _)| c.iter().cloned())
                .collect::<Vec<_>>()
                .join("+")
        );
        if m.v2.is_some() {
            reason.push_str(if v2.is_some() {
                "; the v2 hierarchy has no memory controller here, its group is used for cgroup.kill"
            } else {
                "; the v2 hierarchy has no memory controller here"
            });
        }
        if !missing.is_empty() {
            reason.push_str(&format!("; missing: {}", missing.join(", ")));
        }
        let mut c = CgroupContainer {
            choice: choice(BackendKind::CgroupV1, reason, unenforced),
            v2,
            v2_primary: false,
            v1,
            root: Mutex::new(None),
            warden: Mutex::new(None),
            ledger: 0,
        };
        c.ledger = ledger::record(c.dirs().into_iter().map(ledger::Entry::Group).collect());
        c.arm_warden()?;
        Ok(c)
    }

    fn dirs(&self) -> Vec<PathBuf> {
        self.v1
            .iter()
            .map(|(_, d)| d.clone())
            .chain(self.v2.clone())
            .collect()
    }

    fn v1_dir(&self, ctrl: &str) -> Option<&Path> {
        self.v1
            .iter()
            .find(|(c, _)| c.iter().any(|x| x == ctrl))
            .map(|(_, d)| d.as_path())
    }

    /// The group whose cgroup.procs lists the tree.
    fn primary(&self) -> &Path {
        if self.v2_primary {
            self.v2.as_deref().expect("v2 group")
        } else {
            self.v1_dir("memory").expect("memory group")
        }
    }

    fn arm_warden(&mut self) -> Result<()> {
        let mut plan = Plan::default();
        if let Some(d) = &self.v2 {
            plan.kill_files.push(cstr(&d.join("cgroup.kill")));
        }
        if let Some(f) = self.v1_dir("freezer") {
            plan.freezer_state = Some(cstr(&f.join("freezer.state")));
        }
        plan.procs_files = self
            .dirs()
            .iter()
            .map(|d| cstr(&d.join("cgroup.procs")))
            .collect();
        plan.rmdirs = self.dirs().iter().map(|d| cstr(d)).collect();
        let w =
            Warden::spawn(plan).map_err(|e| ContainError::io("starting the warden process", e))?;
        *self.warden.lock().unwrap() = Some(w);
        Ok(())
    }

    fn set_v1(&self, l: &Limits) -> Result<()> {
        if let Some(mem) = self.v1_dir("memory") {
            let limit = l
                .memory_bytes
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-1".into());
            let memsw = mem.join("memory.memsw.limit_in_bytes");
            let total = match (l.memory_bytes, l.swap_bytes) {
                (Some(m), Some(s)) => Some((m + s).to_string()),
                (Some(m), None) => Some((m + (1u64 << 50)).min(i64::MAX as u64).to_string()),
                _ => None,
            };
            // memsw must stay >= the memory limit: raise it first, lower it last.
            if memsw.exists() {
                let _ = fs::write(&memsw, "-1");
            }
            write(mem, "memory.limit_in_bytes", &limit)?;
            let soft = l
                .memory_bytes
                .map(|v| ((v as f64 * HIGH_SHARE) as u64).to_string())
                .unwrap_or_else(|| "-1".into());
            let _ = fs::write(mem.join("memory.soft_limit_in_bytes"), soft);
            if memsw.exists() {
                if let (Some(t), Some(_)) = (total, l.swap_bytes) {
                    write(mem, "memory.memsw.limit_in_bytes", &t)?;
                }
            }
        }
        if let Some(cpu) = self.v1_dir("cpu") {
            write(cpu, "cpu.cfs_period_us", &CFS_PERIOD_US.to_string())?;
            let quota = l
                .cpu_percent
                .map(|p| (p as u64 * CFS_PERIOD_US / 100).to_string())
                .unwrap_or_else(|| "-1".into());
            write(cpu, "cpu.cfs_quota_us", &quota)?;
        }
        Ok(())
    }

    fn set_v2(&self, dir: &Path, l: &Limits) -> Result<()> {
        if dir.join("memory.max").exists() {
            let max = l
                .memory_bytes
                .map(|v| v.to_string())
                .unwrap_or_else(|| "max".into());
            let high = l
                .memory_bytes
                .map(|v| ((v as f64 * HIGH_SHARE) as u64).to_string())
                .unwrap_or_else(|| "max".into());
            write(dir, "memory.max", &max)?;
            write(dir, "memory.high", &high)?;
        }
        if dir.join("memory.swap.max").exists() {
            write(
                dir,
                "memory.swap.max",
                &l.swap_bytes
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "max".into()),
            )?;
        }
        if dir.join("cpu.max").exists() {
            let q = l
                .cpu_percent
                .map(|p| (p as u64 * CFS_PERIOD_US / 100).to_string())
                .unwrap_or_else(|| "max".into());
            write(dir, "cpu.max", &format!("{q} {CFS_PERIOD_US}"))?;
        }
        Ok(())
    }

    fn populated(&self) -> bool {
        self.dirs().iter().any(|d| !pids_in(d).is_empty())
    }
}

impl Containment for CgroupContainer {
    fn choice(&self) -> &BackendChoice {
        &self.choice
    }

    fn prepare(&self, cmd: &mut std::process::Command) -> Result<()> {
        let fds = self
            .dirs()
            .iter()
            .map(|d| open_procs(d))
            .collect::<Result<Vec<_>>>()?;
        child_setup(cmd, fds);
        Ok(())
    }

    fn adopt(&self, child: &std::process::Child) -> Result<()> {
        *self.root.lock().unwrap() = Some(child.id());
        if let Some(w) = self.warden.lock().unwrap().as_ref() {
            w.tell_root(child.id());
        }
        Ok(())
    }

    fn set_limits(&self, limits: &Limits) -> Result<()> {
        if self.v2_primary {
            self.set_v2(self.v2.as_deref().expect("v2"), limits)
        } else {
            self.set_v1(limits)
        }
    }

    fn kill_tree(&self) -> Result<KillReport> {
        let start = Instant::now();
        let mut report = KillReport::default();
        if let Some(d) = &self.v2 {
            if d.join("cgroup.kill").exists() {
                report.signalled = pids_in(d).len() as u32;
                let _ = fs::write(d.join("cgroup.kill"), "1");
            }
        }
        let freezer = self.v1_dir("freezer").map(|d| d.join("freezer.state"));
        if let Some(f) = &freezer {
            // Frozen, the tree cannot fork while its pids are listed and killed.
            if fs::write(f, "FROZEN").is_ok() {
                let until = Instant::now() + Duration::from_millis(200);
                while Instant::now() < until
                    && fs::read_to_string(f)
                        .map(|s| s.trim() != "FROZEN")
                        .unwrap_or(false)
                {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        // Unreadable groups are retried briefly, then reported: the tree may still be alive.
        let unreadable_until = Instant::now() + Duration::from_secs(2);
        loop {
            report.rounds += 1;
            let mut listed: Vec<u32> = Vec::new();
            let mut unread: Option<(PathBuf, std::io::Error)> = None;
            for d in self.dirs() {
                let pids = match try_pids_in(&d) {
                    Ok(p) => p,
                    Err(e) => {
                        unread = Some((d.clone(), e));
                        continue;
                    }
                };
                for pid in pids {
                    if !listed.contains(&pid) {
                        // SAFETY: kill(2); a pid that just exited gives ESRCH, which is fine.
                        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                        listed.push(pid);
                    }
                }
            }
            report.signalled = report.signalled.max(listed.len() as u32);
            if let Some(f) = &freezer {
                let _ = fs::write(f, "THAWED");
            }
            if let Some((d, e)) = unread {
                if Instant::now() > unreadable_until {
                    return Err(ContainError::io(
                        format!(
                            "reading {}/cgroup.procs to kill the tree (it may still be running)",
                            d.display()
                        ),
                        e,
                    ));
                }
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            if !self.populated() {
                break;
            }
            if Instant::now() > deadline {
                return Err(ContainError::Unsupported(format!(
                    "processes are still in {} after 30 s of kills (stuck in the kernel, e.g. on a dead NFS mount)",
                    self.primary().display()
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        report.elapsed = start.elapsed();
        Ok(report)
    }

    fn pids(&self) -> Result<Vec<u32>> {
        Ok(pids_in(self.primary()))
    }

    fn oom_kills(&self) -> u64 {
        if self.v2_primary {
            self.v2
                .as_deref()
                .and_then(|d| keyed(&read(d, "memory.events"), "oom_kill"))
                .unwrap_or(0)
        } else {
            self.v1_dir("memory")
                .and_then(|d| keyed(&read(d, "memory.oom_control"), "oom_kill"))
                .unwrap_or(0)
        }
    }

    fn probe(&self) -> TreeProbe {
        if self.v2_primary {
            TreeProbe::CgroupV2 {
                dir: self.v2.clone().expect("v2"),
            }
        } else {
            TreeProbe::CgroupV1 {
                memory: self.v1_dir("memory").expect("memory").to_path_buf(),
                cpuacct: self
                    .v1_dir("cpuacct")
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| self.primary().to_path_buf()),
                pids: self.v1_dir("pids").map(Path::to_path_buf),
            }
        }
    }
}

impl Drop for CgroupContainer {
    fn drop(&mut self) {
        let _ = self.kill_tree();
        // The warden sees the pipe close, finds nothing left, removes the groups and exits.
        drop(self.warden.lock().unwrap().take());
        for d in self.dirs() {
            for _ in 0..100 {
                if fs::remove_dir(&d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        ledger::forget(self.ledger);
    }
}

/// Kill and remove groups whose guard is dead, found by name under this guard's own group.
pub fn clean_stale(m: &Mounts) -> Vec<String> {
    let mut bases: Vec<PathBuf> = m.v1.iter().map(|h| h.own_dir().join(GROUP_DIR)).collect();
    if let Some((mount, own)) = &m.v2 {
        bases.push(join_cgroup(mount, own).join(GROUP_DIR));
    }
    let mut cleaned = Vec::new();
    for base in bases {
        let Ok(rd) = fs::read_dir(&base) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            if pid == std::process::id() || super::procfs::is_alive(pid) {
                continue;
            }
            let dir = e.path();
            if kill_and_remove(&dir) {
                cleaned.push(format!("{} (left by guard pid {pid})", dir.display()));
            }
        }
    }
    cleaned
}

/// Kill every process in a stale group and remove it; whether it is gone.
pub fn kill_and_remove(dir: &Path) -> bool {
    if !dir.is_dir() {
        return false;
    }
    let kill = dir.join("cgroup.kill");
    if kill.exists() {
        let _ = fs::write(&kill, "1");
    }
    // A warden killed halfway may have left the tree frozen (v1): frozen tasks die only thawed.
    let freezer = dir.join("freezer.state");
    if freezer.exists() {
        let _ = fs::write(&freezer, "THAWED");
    }
    for _ in 0..1000 {
        let pids = pids_in(dir);
        if pids.is_empty() {
            break;
        }
        for p in pids {
            // SAFETY: kill(2) on a pid listed in the stale group.
            unsafe { libc::kill(p as libc::pid_t, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    fs::remove_dir(dir).is_ok()
}
