//! One install at a time for the app: started on its own thread, polled by the window
//! (`JobStatus`), cancelled or retried. The Tauri commands are one line over this.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::{
    finished_phases, free_space, plan, Phase, Plan, Progress, Request, RunOptions, TorchIndex,
};
use crate::install::Install;

/// What the window shows before the user confirms.
#[derive(Clone, Debug, Serialize)]
pub struct PlanView {
    pub plan: Plan,
    pub free_bytes: Option<u64>,
    pub enough_space: bool,
    pub torch: TorchIndex,
    pub torch_label: String,
    /// What the GPU probe saw ("found NVIDIA GeForce ...", "no GPU found: ...").
    pub gpu: String,
    /// Phases an earlier attempt finished (a retry skips them).
    pub finished: Vec<Phase>,
}

/// The install under way (or the last one), as the window polls it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct JobStatus {
    pub running: bool,
    pub target: Option<PathBuf>,
    pub phase: Option<Phase>,
    pub label: Option<String>,
    pub index: usize,
    pub count: usize,
    pub done_bytes: u64,
    pub total_bytes: Option<u64>,
    /// The last lines of output (pip's among them); the whole log is in the staging folder.
    pub log: Vec<String>,
    pub error: Option<String>,
    pub cancelled: bool,
    pub installed: Option<Install>,
}

const LOG_LINES: usize = 200;

#[derive(Default)]
pub struct Jobs {
    status: Arc<Mutex<JobStatus>>,
    cancel: Mutex<Option<Arc<AtomicBool>>>,
    nvml: Option<PathBuf>,
}

impl Jobs {
    pub fn new(nvml: Option<PathBuf>) -> Jobs {
        Jobs {
            nvml,
            ..Jobs::default()
        }
    }

    /// The plan for `target` (the default folder when None), with the disk and GPU checks.
    pub fn plan(&self, target: Option<&Path>) -> Result<PlanView, String> {
        let target = match target {
            Some(t) => t.to_path_buf(),
            None => super::default_target()
                .ok_or("this system has no data folder: choose a folder to install into")?,
        };
        let p = plan(&Request {
            target,
            ..Request::default()
        })
        .map_err(|e| e.to_string())?;
        let free = free_space(&p.target).ok();
        let (torch, gpu) = super::torch_for_this_machine(self.nvml.as_deref());
        Ok(PlanView {
            enough_space: free.is_none_or(|f| f >= p.disk_needed_bytes),
            free_bytes: free,
            torch,
            torch_label: torch.label().into(),
            gpu,
            finished: finished_phases(&p),
            plan: p,
        })
    }

    /// Start (or resume) installing into `target`. Refused while another install runs.
    pub fn start(&self, target: &Path, opts: RunOptions) -> Result<(), String> {
        let mut cancel = self.cancel.lock().unwrap();
        if self.status.lock().unwrap().running {
            return Err("an install is already running: wait for it or cancel it".into());
        }
        let p = plan(&Request {
            target: target.to_path_buf(),
            ..Request::default()
        })
        .map_err(|e| e.to_string())?;
        let flag = Arc::new(AtomicBool::new(false));
        *cancel = Some(flag.clone());
        *self.status.lock().unwrap() = JobStatus {
            running: true,
            target: Some(p.target.clone()),
            count: p.phases.len(),
            ..JobStatus::default()
        };
        let status = self.status.clone();
        let spawned = std::thread::Builder::new()
            .name("installer".into())
            .spawn(move || run_job(p, opts, flag, status));
        if let Err(e) = spawned {
            self.status.lock().unwrap().running = false;
            return Err(format!("could not start the install: {e}"));
        }
        Ok(())
    }

    /// Start with the torch build of this machine's GPU.
    pub fn start_here(&self, target: &Path) -> Result<(), String> {
        let (torch_index, _) = super::torch_for_this_machine(self.nvml.as_deref());
        self.start(
            target,
            RunOptions {
                torch_index,
                ..RunOptions::default()
            },
        )
    }

    pub fn cancel(&self) {
        if let Some(f) = self.cancel.lock().unwrap().as_ref() {
            f.store(true, Ordering::SeqCst);
        }
    }

    pub fn status(&self) -> JobStatus {
        self.status.lock().unwrap().clone()
    }

    /// Forget an unfinished install of `target` (its staging folder).
    pub fn discard(&self, target: &Path) -> Result<(), String> {
        if self.status.lock().unwrap().running {
            return Err("cancel the running install first".into());
        }
        let p = plan(&Request {
            target: target.to_path_buf(),
            ..Request::default()
        })
        .map_err(|e| e.to_string())?;
        super::discard(&p).map_err(|e| e.to_string())?;
        *self.status.lock().unwrap() = JobStatus::default();
        Ok(())
    }
}

fn run_job(p: Plan, opts: RunOptions, cancel: Arc<AtomicBool>, status: Arc<Mutex<JobStatus>>) {
    let (tx, rx) = crossbeam_channel::bounded::<Progress>(256);
    let st = status.clone();
    let reader = std::thread::spawn(move || {
        let mut log: VecDeque<String> = VecDeque::new();
        for ev in rx.iter() {
            let mut s = st.lock().unwrap();
            match ev {
                Progress::Phase {
                    phase,
                    label,
                    index,
                    count,
                } => {
                    s.phase = Some(phase);
                    s.label = Some(label);
                    s.index = index;
                    s.count = count;
                    s.done_bytes = 0;
                    s.total_bytes = None;
                }
                Progress::Skipped { .. } => {}
                Progress::Bytes { done, total, .. } => {
                    s.done_bytes = done;
                    s.total_bytes = total;
                }
                Progress::Log { line } => {
                    if log.len() == LOG_LINES {
                        log.pop_front();
                    }
                    log.push_back(line);
                    s.log = log.iter().cloned().collect();
                }
            }
        }
    });
    let r = super::run(&p, &opts, &tx, &cancel);
    drop(tx);
    let _ = reader.join();
    let mut s = status.lock().unwrap();
    s.running = false;
    match r {
        Ok(i) => s.installed = Some(i),
        Err(super::InstallerError::Cancelled) => s.cancelled = true,
        Err(e) => s.error = Some(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_install_reports_its_error_and_allows_a_retry() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = Jobs::new(None);
        let target = dir.path().join("Fooocus");
        let view = jobs.plan(Some(&target)).unwrap();
        assert!(view.plan.disk_needed_bytes > 0 && view.free_bytes.is_some());
        // A loopback port nobody listens on: the download fails with its fix.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let opts = RunOptions {
            download: super::super::DownloadOptions {
                attempts: 1,
                ..Default::default()
            },
            ..RunOptions::default()
        };
        let mut p = plan(&Request {
            target: target.clone(),
            source: Some(super::super::Source::Url(format!(
                "http://127.0.0.1:{port}/f.tar.gz"
            ))),
            ..Request::default()
        })
        .unwrap();
        p.disk_needed_bytes = 0;
        let flag = Arc::new(AtomicBool::new(false));
        let status = Arc::new(Mutex::new(JobStatus {
            running: true,
            ..JobStatus::default()
        }));
        run_job(p, opts, flag, status.clone());
        let s = status.lock().unwrap().clone();
        assert!(!s.running);
        let e = s.error.expect("an error");
        assert!(
            e.contains("internet connection") || e.contains("Python"),
            "{e}"
        );
        assert!(!target.exists());
    }
}
