//! No cgroups: the tree gets its own process group, PDEATHSIG ties its root to the guard, the
//! guard is a child subreaper so orphaned descendants come back to it, and every process of the
//! tree carries an environment token so a setsid() escapee is still recognised. The RAM cap is
//! enforced by the supervisor's watchdog from samples (overshoot: one sampling interval of
//! growth); there is no CPU cap.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::ledger;
use super::procfs::{children, descendants, env_has, is_alive};
use super::warden::{Plan, Warden};
use super::{become_subreaper, child_setup, choice};
use crate::{
    BackendChoice, BackendKind, ContainError, Containment, KillReport, Limits, Result, TreeProbe,
};

pub const TOKEN_VAR: &str = "FOOOCUS_GUARD_TREE";

pub struct Fallback {
    choice: BackendChoice,
    token: String,
    root: Mutex<Option<u32>>,
    warden: Mutex<Option<Warden>>,
    /// Its line in this guard's ledger: what the next guard kills if this one and its warden
    /// die together.
    ledger: u64,
}

impl Fallback {
    pub fn create(reason: String) -> Result<Self> {
        become_subreaper();
        let token = format!(
            "{}-{}-{:x}",
            std::process::id(),
            super::NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            nanos()
        );
        let plan = Plan {
            env_token: Some(format!("{TOKEN_VAR}={token}").into_bytes()),
            ..Plan::default()
        };
        let warden =
            Warden::spawn(plan).map_err(|e| ContainError::io("starting the warden process", e))?;
        let ledger = ledger::record(vec![ledger::Entry::Tree {
            token: format!("{TOKEN_VAR}={token}"),
            root: None,
        }]);
        Ok(Fallback {
            ledger,
            choice: choice(
                BackendKind::Fallback,
                reason,
                vec!["memory".into(), "swap".into(), "cpu".into()],
            ),
            token,
            root: Mutex::new(None),
            warden: Mutex::new(Some(warden)),
        })
    }

    fn token_bytes(&self) -> Vec<u8> {
        format!("{TOKEN_VAR}={}", self.token).into_bytes()
    }

    /// The tree: the root's descendants, plus orphans reparented to the guard that carry the
    /// token (a setsid() grandchild whose parent died), plus their descendants.
    fn tree(&self) -> Vec<u32> {
        let root = *self.root.lock().unwrap();
        let warden = self.warden.lock().unwrap().as_ref().map(|w| w.pid());
        let mut all = root.map(descendants).unwrap_or_default();
        let mut ours = Vec::new();
        children(std::process::id(), &mut ours);
        let token = self.token_bytes();
        for c in ours {
            if Some(c) == root || Some(c) == warden || all.contains(&c) {
                continue;
            }
            if env_has(c, &token) {
                for d in descendants(c) {
                    if !all.contains(&d) {
                        all.push(d);
                    }
                }
            }
        }
        all
    }

    /// Reap orphans that died as the guard's children (never the root: its waiter reaps it).
    fn reap_orphans(&self) {
        let root = *self.root.lock().unwrap();
        let warden = self.warden.lock().unwrap().as_ref().map(|w| w.pid());
        let mut ours = Vec::new();
        children(std::process::id(), &mut ours);
        for c in ours {
            if Some(c) == root || Some(c) == warden {
                continue;
            }
            if !is_alive(c) && env_has_or_gone(c, &self.token_bytes()) {
                let mut st = 0;
                // SAFETY: waitpid on a specific pid that is our zombie child.
                unsafe { libc::waitpid(c as libc::pid_t, &mut st, libc::WNOHANG) };
            }
        }
    }
}

fn env_has_or_gone(pid: u32, token: &[u8]) -> bool {
    // A zombie's environ reads empty: it was ours if it is a zombie child at all.
    env_has(pid, token)
        || std::fs::read(format!("/proc/{pid}/environ"))
            .map(|e| e.is_empty())
            .unwrap_or(true)
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

impl Containment for Fallback {
    fn choice(&self) -> &BackendChoice {
        &self.choice
    }

    fn prepare(&self, cmd: &mut std::process::Command) -> Result<()> {
        cmd.env(TOKEN_VAR, &self.token);
        child_setup(cmd, Vec::new());
        Ok(())
    }

    fn adopt(&self, child: &std::process::Child) -> Result<()> {
        *self.root.lock().unwrap() = Some(child.id());
        if let Some(w) = self.warden.lock().unwrap().as_ref() {
            w.tell_root(child.id());
        }
        ledger::set_root(self.ledger, child.id());
        Ok(())
    }

    fn set_limits(&self, _limits: &Limits) -> Result<()> {
        // Nothing the OS enforces here: the supervisor's watchdog reads `unenforced`.
        Ok(())
    }

    fn kill_tree(&self) -> Result<KillReport> {
        let start = Instant::now();
        let mut report = KillReport::default();
        let root = *self.root.lock().unwrap();
        let deadline = start + Duration::from_secs(30);
        // Every pid seen in the tree, until it is dead: a grandchild whose parent is dying is
        // briefly nobody's child in /proc, and must not be forgotten then.
        let mut known: Vec<u32> = Vec::new();
        loop {
            report.rounds += 1;
            // Look before killing: killing first would orphan what the walk must find.
            let tree = self.tree();
            for p in &tree {
                if !known.contains(p) {
                    known.push(*p);
                }
            }
            for p in &known {
                // SAFETY: kill(2); pids are the tree's and still alive (or ESRCH).
                unsafe { libc::kill(*p as libc::pid_t, libc::SIGKILL) };
            }
            if let Some(r) = root {
                unsafe { libc::kill(-(r as libc::pid_t), libc::SIGKILL) };
            }
            report.signalled = report.signalled.max(known.len() as u32);
            self.reap_orphans();
            known.retain(|p| Some(*p) != root && is_alive(*p));
            if tree.is_empty() && known.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                return Err(ContainError::Unsupported(format!(
                    "processes {tree:?} survived 30 s of kills"
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        report.elapsed = start.elapsed();
        Ok(report)
    }

    fn pids(&self) -> Result<Vec<u32>> {
        Ok(self.tree())
    }

    fn oom_kills(&self) -> u64 {
        0
    }

    fn probe(&self) -> TreeProbe {
        TreeProbe::Processes {
            root_pid: self.root.lock().unwrap().unwrap_or(0),
        }
    }
}

impl Drop for Fallback {
    fn drop(&mut self) {
        let _ = self.kill_tree();
        drop(self.warden.lock().unwrap().take());
        ledger::forget(self.ledger);
    }
}
