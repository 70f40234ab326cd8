//! One install at a time for the app: started on its own thread, polled by the window
//! (`JobStatus`), cancelled or retried. The Tauri commands are one line over this.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

use super::{
    finished_phases, free_space, plan, Phase, Plan, Progress, Request, RunOptions, TorchIndex,
};
use guard_fooocus::install::Install;

/// What the window shows before the user confirms.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[cfg_attr(feature = "ts", ts(rename = "InstallPlanView"))]
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
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[cfg_attr(feature = "ts", ts(rename = "InstallJobStatus"))]
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
    /// The steps this run has finished, in order: a fast step (a local archive unpacks in a
    /// blink) still shows as done, not only as a progress line the window may never poll.
    pub done: Vec<StepDone>,
    pub error: Option<String>,
    pub cancelled: bool,
    pub installed: Option<Install>,
}

/// A finished step of the install under way.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[cfg_attr(feature = "ts", ts(rename = "InstallStepDone"))]
pub struct StepDone {
    pub phase: Phase,
    pub label: String,
    /// Finished by an earlier attempt: this run skipped it.
    pub earlier: bool,
    /// How long it took in this run (0 when `earlier`).
    pub seconds: f64,
}

const LOG_LINES: usize = 200;

#[derive(Default)]
pub struct Jobs {
    status: Arc<Mutex<JobStatus>>,
    cancel: Mutex<Option<Arc<AtomicBool>>>,
    nvml: Option<PathBuf>,
    /// The guard's data folder, where an install goes when the user names no folder.
    data_dir: Option<PathBuf>,
}

impl Jobs {
    pub fn new(nvml: Option<PathBuf>, data_dir: Option<PathBuf>) -> Jobs {
        Jobs {
            nvml,
            data_dir,
            ..Jobs::default()
        }
    }

    /// The plan for `target` (the default folder when None), with the disk and GPU checks.
    /// `source`: an archive the user already has (a file or a URL) instead of the release's.
    pub fn plan(&self, target: Option<&Path>, source: Option<&str>) -> Result<PlanView, String> {
        let target = match target {
            Some(t) => t.to_path_buf(),
            None => self
                .data_dir
                .as_deref()
                .map(super::default_target)
                .ok_or("this system has no data folder: choose a folder to install into")?,
        };
        let p = plan(&request(target, source)).map_err(|e| e.to_string())?;
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
    pub fn start(
        &self,
        target: &Path,
        source: Option<&str>,
        opts: RunOptions,
    ) -> Result<(), String> {
        let mut cancel = self.cancel.lock().unwrap();
        if self.status.lock().unwrap().running {
            return Err("an install is already running: wait for it or cancel it".into());
        }
        let p = plan(&request(target.to_path_buf(), source)).map_err(|e| e.to_string())?;
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
    pub fn start_here(&self, target: &Path, source: Option<&str>) -> Result<(), String> {
        let (torch_index, _) = super::torch_for_this_machine(self.nvml.as_deref());
        self.start(
            target,
            source,
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

/// An empty `source` (a cleared field) is the release's own.
fn request(target: PathBuf, source: Option<&str>) -> Request {
    Request {
        target,
        source: source
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(super::Source::parse),
        ..Request::default()
    }
}

/// Folds the installer's progress into the status the window polls.
#[derive(Default)]
struct Tracker {
    log: VecDeque<String>,
    /// The step under way, since when.
    current: Option<(Phase, String, Instant)>,
}

impl Tracker {
    fn apply(&mut self, s: &mut JobStatus, ev: Progress) {
        match ev {
            Progress::Phase {
                phase,
                label,
                index,
                count,
            } => {
                self.finish_step(s);
                self.current = Some((phase, label.clone(), Instant::now()));
                s.phase = Some(phase);
                s.label = Some(label);
                s.index = index;
                s.count = count;
                s.done_bytes = 0;
                s.total_bytes = None;
            }
            Progress::Skipped { phase } => {
                self.finish_step(s);
                s.done.push(StepDone {
                    phase,
                    label: phase.label().into(),
                    earlier: true,
                    seconds: 0.0,
                })
            }
            Progress::Bytes { done, total, .. } => {
                s.done_bytes = done;
                s.total_bytes = total;
            }
            Progress::Log { line } => {
                if self.log.len() == LOG_LINES {
                    self.log.pop_front();
                }
                self.log.push_back(line);
                s.log = self.log.iter().cloned().collect();
            }
        }
    }

    /// The step under way is done: it moves to `done` with its time. The run's last step is
    /// done only when the run succeeded.
    fn finish_step(&mut self, s: &mut JobStatus) {
        if let Some((phase, label, started)) = self.current.take() {
            s.done.push(StepDone {
                phase,
                label,
                earlier: false,
                seconds: started.elapsed().as_secs_f64(),
            });
        }
    }
}

fn run_job(p: Plan, opts: RunOptions, cancel: Arc<AtomicBool>, status: Arc<Mutex<JobStatus>>) {
    let (tx, rx) = crossbeam_channel::bounded::<Progress>(256);
    let st = status.clone();
    let reader = std::thread::spawn(move || {
        let mut t = Tracker::default();
        for ev in rx.iter() {
            t.apply(&mut st.lock().unwrap(), ev);
        }
        t
    });
    // `run` catches the archive readers' panics; this is for any other, so that `running`
    // is always reset and a new install can start.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        super::run(&p, &opts, &tx, &cancel)
    }))
    .unwrap_or_else(|_| {
        let _ = super::discard(&p);
        Err(super::InstallerError::Archive {
            what: p.source.describe(),
            detail: "the install stopped on an internal error".into(),
        })
    });
    drop(tx);
    let mut tracker = reader.join().unwrap_or_default();
    let mut s = status.lock().unwrap();
    s.running = false;
    match r {
        Ok(i) => {
            tracker.finish_step(&mut s);
            s.installed = Some(i)
        }
        Err(super::InstallerError::Cancelled) => s.cancelled = true,
        Err(e) => s.error = Some(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_archive_the_user_has_replaces_the_release_and_an_empty_field_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = Jobs::new(None, None);
        let target = dir.path().join("Fooocus");
        let release = jobs.plan(Some(&target), None).unwrap().plan.source;
        assert!(matches!(release, super::super::Source::Url(_)));
        assert_eq!(
            jobs.plan(Some(&target), Some("  ")).unwrap().plan.source,
            release
        );
        let mine = jobs
            .plan(
                Some(&target),
                Some("/home/me/Downloads/Fooocus-2.5.5.tar.gz"),
            )
            .unwrap();
        assert_eq!(
            mine.plan.source,
            super::super::Source::Path("/home/me/Downloads/Fooocus-2.5.5.tar.gz".into())
        );
    }

    #[test]
    fn a_failed_install_reports_its_error_and_allows_a_retry() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = Jobs::new(None, None);
        let target = dir.path().join("Fooocus");
        let view = jobs.plan(Some(&target), None).unwrap();
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

    #[test]
    fn an_unpacker_panic_ends_the_job_with_an_error_and_frees_it() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("Fooocus");
        let archive = dir.path().join("Fooocus-2.5.5.tar.gz");
        std::fs::write(&archive, b"not read").unwrap();
        let mut p = plan(&Request {
            target: target.clone(),
            source: Some(super::super::Source::Path(archive)),
            ..Request::default()
        })
        .unwrap();
        p.disk_needed_bytes = 0;
        let staging = p.staging.clone();
        let status = Arc::new(Mutex::new(JobStatus {
            running: true,
            ..JobStatus::default()
        }));
        *super::super::unpack::PANIC_IN_UNPACK.lock().unwrap() = Some(std::thread::current().id());
        run_job(
            p,
            RunOptions::default(),
            Arc::new(AtomicBool::new(false)),
            status.clone(),
        );
        *super::super::unpack::PANIC_IN_UNPACK.lock().unwrap() = None;
        let s = status.lock().unwrap().clone();
        assert!(!s.running, "a new install can start");
        let e = s.error.expect("an error");
        assert!(e.contains("could not be read (as a test asked)"), "{e}");
        assert!(!staging.exists(), "nothing of the archive is kept");
        assert!(!target.exists());
    }

    #[test]
    fn the_steps_done_are_listed_in_order_with_those_an_earlier_attempt_did() {
        let mut s = JobStatus::default();
        let mut t = Tracker::default();
        let phase = |phase: Phase, index| Progress::Phase {
            phase,
            label: phase.label().into(),
            index,
            count: 4,
        };
        t.apply(
            &mut s,
            Progress::Skipped {
                phase: Phase::Download,
            },
        );
        t.apply(&mut s, phase(Phase::Unpack, 1));
        t.apply(
            &mut s,
            Progress::Bytes {
                phase: Phase::Unpack,
                done: 10,
                total: Some(20),
            },
        );
        assert_eq!(s.done.len(), 1, "the step under way is not done yet");
        t.apply(&mut s, phase(Phase::Environment, 2));
        t.apply(&mut s, phase(Phase::Finish, 3));
        t.finish_step(&mut s);
        let done: Vec<(Phase, bool)> = s.done.iter().map(|d| (d.phase, d.earlier)).collect();
        assert_eq!(
            done,
            [
                (Phase::Download, true),
                (Phase::Unpack, false),
                (Phase::Environment, false),
                (Phase::Finish, false)
            ]
        );
        assert_eq!(s.done[1].label, Phase::Unpack.label());
        assert_eq!((s.done_bytes, s.total_bytes), (0, None));
    }
}
