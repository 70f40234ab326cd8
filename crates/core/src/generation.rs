//! Generations: one record per Fooocus task, built from what Fooocus printed (and what the
//! gateway saw), closed even when the task end never comes. Pure: time is passed in.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::events::{LimitKind, StopHow, StopStep};

/// What the guard learned from Fooocus's console (or the gateway), in its own words.
/// `fooocus_console` events map onto these one to one (see `supervisor::signal_of`).
#[derive(Clone, Debug, PartialEq)]
pub enum Signal {
    Listening {
        url: String,
    },
    Ready {
        url: String,
    },
    Version {
        version: String,
    },
    TaskStart,
    ImageStart {
        index: u32,
        total: u32,
    },
    Progress {
        step: u32,
        total: u32,
    },
    ImageDone,
    TaskEnd,
    Stopped,
    Skipped,
    Error {
        exception: String,
        message: String,
    },
    Oom {
        message: String,
    },
    WorkerDied,
    /// Work that is not a step (model load, download, a `[Fooocus] ...` phase, 2.5 enhance):
    /// keeps the stall limit quiet.
    Activity {
        what: String,
    },
    /// A model download's progress, from its `Downloading: "URL" to PATH` line or its bar
    /// (the first start downloads GBs of models before Fooocus is ready).
    Download(ModelDownload),
    /// Gradio could not bind the port it was given.
    PortTaken {
        port: u16,
    },
    /// `Started worker with PID n`: Stop acts per browser session in this build.
    WorkerStarted,
}

/// A model download Fooocus is doing, as its console shows it (docs/ipc.md `Status.download`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelDownload {
    /// The file's name (never a folder of the user's).
    pub file: Option<String>,
    pub percent: Option<u8>,
    /// As the bar shows it: `2.91G/6.46G`.
    pub size: Option<String>,
}

impl ModelDownload {
    /// From one console line: the `Downloading: "URL" to PATH` line or a byte-unit tqdm bar.
    pub fn from_line(text: &str) -> Option<ModelDownload> {
        let t = text.trim();
        if let Some(rest) = t.strip_prefix("Downloading: \"") {
            let url = rest.split('"').next().unwrap_or("");
            let path = rest
                .split_once(" to ")
                .map(|(_, p)| p.trim())
                .unwrap_or(url);
            let file = path.rsplit(['/', '\\']).next().filter(|f| !f.is_empty());
            return Some(ModelDownload {
                file: file.map(str::to_string),
                ..ModelDownload::default()
            });
        }
        let (head, rest) = t.split_once('%')?;
        let percent: u8 = head.rsplit(' ').next()?.trim().parse().ok()?;
        let size = rest
            .split('|')
            .nth(2)
            .and_then(|s| s.split(" [").next())
            .map(str::trim)
            .filter(|s| s.contains('/'))
            .map(str::to_string);
        Some(ModelDownload {
            file: None,
            percent: Some(percent.min(100)),
            size,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Running,
    Completed,
    Stopped,
    Skipped,
    Failed,
    OutOfMemory,
    TimedOut,
    Stalled,
    Killed,
    Crashed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Running => "running",
            Outcome::Completed => "completed",
            Outcome::Stopped => "stopped",
            Outcome::Skipped => "skipped",
            Outcome::Failed => "failed",
            Outcome::OutOfMemory => "out_of_memory",
            Outcome::TimedOut => "timed_out",
            Outcome::Stalled => "stalled",
            Outcome::Killed => "killed",
            Outcome::Crashed => "crashed",
        }
    }

    /// The outcome of a generation a limit ended.
    pub fn for_limit(limit: LimitKind) -> Outcome {
        match limit {
            LimitKind::Timeout => Outcome::TimedOut,
            LimitKind::Stall => Outcome::Stalled,
            LimitKind::Memory | LimitKind::Swap | LimitKind::Vram => Outcome::OutOfMemory,
            LimitKind::Startup | LimitKind::Cpu => Outcome::Killed,
        }
    }
}

/// Why a generation record was closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClosedBy {
    TaskEnd,
    NextTask,
    ProcessExit,
    Quiet,
    Limit,
    /// The gateway saw the generate call complete in Gradio's queue (no task end on the console).
    QueueEnd,
}

impl ClosedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            ClosedBy::TaskEnd => "task_end",
            ClosedBy::NextTask => "next_task",
            ClosedBy::ProcessExit => "process_exit",
            ClosedBy::Quiet => "quiet",
            ClosedBy::Limit => "limit",
            ClosedBy::QueueEnd => "queue_end",
        }
    }
}

/// Peaks of what the tree used while the generation ran (filled from the sampler).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Peaks {
    pub ram_bytes: Option<u64>,
    pub swap_bytes: Option<u64>,
    pub vram_bytes: Option<u64>,
    pub cpu_percent: Option<f64>,
}

impl Peaks {
    pub fn observe(&mut self, ram: u64, swap: u64, vram: Option<u64>, cpu: f64) {
        self.ram_bytes = Some(self.ram_bytes.unwrap_or(0).max(ram));
        self.swap_bytes = Some(self.swap_bytes.unwrap_or(0).max(swap));
        if let Some(v) = vram {
            self.vram_bytes = Some(self.vram_bytes.unwrap_or(0).max(v));
        }
        self.cpu_percent = Some(self.cpu_percent.unwrap_or(0.0).max(cpu));
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    pub id: u64,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    pub outcome: Outcome,
    pub closed_by: Option<ClosedBy>,
    pub images_done: u32,
    pub images_total: Option<u32>,
    pub image_index: Option<u32>,
    pub last_step: Option<u32>,
    pub steps_total: Option<u32>,
    pub peaks: Peaks,
    /// The limit that stopped it, and how.
    pub limit: Option<LimitKind>,
    pub stop_how: Option<StopHow>,
    pub stop_steps: Vec<StopStep>,
    /// Exception type of the error that failed it (never the prompt).
    pub error: Option<String>,
    #[serde(skip)]
    pub(crate) started_at: Option<Instant>,
    #[serde(skip)]
    pub(crate) last_activity: Option<Instant>,
    #[serde(skip)]
    flags: Flags,
    /// The queue call (session, function) this generation belongs to, once the gateway saw it.
    #[serde(skip)]
    queue: Option<(String, u64)>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Flags {
    stopped: bool,
    skipped: bool,
    failed: bool,
    oom: bool,
    /// The guard asked Fooocus to stop it (a limit or the user through the guard).
    stop_requested: bool,
    /// 2.5's enhance phase runs after the images: sampling again, so not "finishing".
    enhancing: bool,
    /// Opened by a step or a queue update, not by a task start: a start that arrives late
    /// (stdout and stderr are read apart) belongs to it.
    unseen_start: bool,
}

/// What the gateway saw in Gradio's queue, for the tracker (see `Tracker::on_queue`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueSignal {
    /// A queued call sent an update while running. Fooocus's generate call does at every step
    /// it reports; short calls (seed refresh, UI toggles) never do.
    Generating { session_hash: String, fn_index: u64 },
    /// A queued call completed (finished, failed or stopped).
    Completed { session_hash: String, fn_index: u64 },
}

impl Generation {
    pub fn started_at(&self) -> Instant {
        self.started_at.expect("live generation")
    }
    pub fn last_activity(&self) -> Instant {
        self.last_activity.unwrap_or_else(|| self.started_at())
    }
    pub fn elapsed(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started_at())
    }
    pub fn duration_s(&self) -> Option<f64> {
        self.ended_ms.map(|e| (e - self.started_ms) as f64 / 1000.0)
    }
    /// Every image is done: only saving/logging is left, which no step or image marks.
    pub fn finishing(&self) -> bool {
        self.images_all_done() && !self.flags.enhancing
    }

    fn images_all_done(&self) -> bool {
        self.images_total
            .is_some_and(|t| t > 0 && self.images_done >= t)
    }
}

fn epoch_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Where Fooocus is, as the console shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    Starting,
    Ready {
        url: String,
    },
    /// Up but cannot generate (dead worker thread).
    Unhealthy {
        reason: String,
    },
}

/// What changed, for the supervisor to act on and report.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Listening(String),
    Ready(String),
    Version(String),
    Unhealthy(String),
    Started(u64),
    Progress,
    Finished(Box<Generation>),
    Error { exception: String, message: String },
    Oom(String),
}

/// How long after the last image (with no task end) a generation is considered over.
pub const QUIET_AFTER_LAST_IMAGE: Duration = Duration::from_secs(15);
/// Same, when the number of images is unknown: only a long silence closes it.
pub const QUIET_UNKNOWN_TOTAL: Duration = Duration::from_secs(120);

#[derive(Debug)]
pub struct Tracker {
    pub phase: Phase,
    pub version: Option<String>,
    pub listening: Option<String>,
    /// The port Gradio said was taken (`OSError: Cannot find empty port in range: P-P`), for
    /// the supervisor to name when Fooocus exits.
    pub port_taken: Option<u16>,
    /// This Fooocus printed `Started worker with PID` (2.2+, and develop builds still called
    /// 2.1.865): its Stop acts only on the browser session that started the task.
    pub per_session_stop: bool,
    current: Option<Generation>,
    next_id: u64,
    /// The queue call whose generation is already closed (its final updates must not open
    /// another), until the queue says it completed.
    spent_call: Option<(String, u64)>,
    /// When the console last closed a generation: a queue update right after it is the task's
    /// final result being delivered, not a new generation.
    console_closed_at: Option<Instant>,
    /// The model download under way while Fooocus starts (its first start downloads GBs).
    pub download: Option<ModelDownload>,
    /// The last download progress while starting: the start-up limit counts from it.
    pub(crate) startup_activity: Option<Instant>,
}

/// How long after the console closed a generation an untied queue update, or a step bar (tqdm
/// draws on stderr, read apart from stdout's task end), cannot open one.
const QUEUE_TAIL: Duration = Duration::from_secs(5);

impl Tracker {
    /// `next_id` continues the numbering across restarts (and from the store).
    pub fn new(next_id: u64) -> Self {
        Tracker {
            phase: Phase::Starting,
            version: None,
            listening: None,
            port_taken: None,
            per_session_stop: false,
            current: None,
            next_id,
            spent_call: None,
            console_closed_at: None,
            download: None,
            startup_activity: None,
        }
    }

    /// A new Fooocus process: back to starting; numbering continues.
    pub fn restart(&mut self) {
        self.phase = Phase::Starting;
        self.download = None;
        self.startup_activity = None;
        self.listening = None;
        self.port_taken = None;
        self.per_session_stop = false;
    }

    pub fn current(&self) -> Option<&Generation> {
        self.current.as_ref()
    }
    pub fn current_mut(&mut self) -> Option<&mut Generation> {
        self.current.as_mut()
    }
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    fn open(&mut self, now: Instant, wall: SystemTime, out: &mut Vec<Change>) {
        let id = self.next_id;
        self.next_id += 1;
        self.current = Some(Generation {
            id,
            started_ms: epoch_ms(wall),
            ended_ms: None,
            outcome: Outcome::Running,
            closed_by: None,
            images_done: 0,
            images_total: None,
            image_index: None,
            last_step: None,
            steps_total: None,
            peaks: Peaks::default(),
            limit: None,
            stop_how: None,
            stop_steps: Vec::new(),
            error: None,
            started_at: Some(now),
            last_activity: Some(now),
            flags: Flags::default(),
            queue: None,
        });
        out.push(Change::Started(id));
    }

    /// Close the current generation. `forced` overrides the outcome read from the flags.
    pub fn close(
        &mut self,
        by: ClosedBy,
        forced: Option<Outcome>,
        wall: SystemTime,
        out: &mut Vec<Change>,
    ) {
        let Some(mut g) = self.current.take() else {
            return;
        };
        g.ended_ms = Some(epoch_ms(wall).max(g.started_ms));
        g.closed_by = Some(by);
        if by != ClosedBy::QueueEnd {
            self.spent_call = g.queue.clone();
            self.console_closed_at = Some(Instant::now());
        }
        g.outcome = forced.unwrap_or_else(|| {
            if let Some(l) = g.limit {
                Outcome::for_limit(l)
            } else if g.flags.oom {
                Outcome::OutOfMemory
            } else if g.flags.failed {
                Outcome::Failed
            } else if g.flags.stopped {
                Outcome::Stopped
            } else if g.flags.skipped && g.images_total.is_some_and(|t| g.images_done < t) {
                Outcome::Skipped
            } else if by == ClosedBy::ProcessExit {
                Outcome::Crashed
            } else {
                Outcome::Completed
            }
        });
        out.push(Change::Finished(Box::new(g)));
    }

    /// Mark that the guard is stopping the current generation because of `limit`.
    pub fn mark_limit(&mut self, limit: LimitKind) {
        if let Some(g) = self.current.as_mut() {
            g.limit = Some(limit);
            g.flags.stop_requested = true;
        }
    }

    pub fn on_signal(&mut self, s: Signal, now: Instant, wall: SystemTime, out: &mut Vec<Change>) {
        match s {
            Signal::Listening { url } => {
                self.listening = Some(url.clone());
                out.push(Change::Listening(url));
            }
            Signal::Ready { url } => {
                self.download = None;
                if !matches!(self.phase, Phase::Unhealthy { .. }) {
                    self.phase = Phase::Ready { url: url.clone() };
                    out.push(Change::Ready(url));
                }
            }
            Signal::Version { version } => {
                self.version = Some(version.clone());
                out.push(Change::Version(version));
            }
            Signal::WorkerDied => {
                let reason = "Fooocus's worker thread died: the page will wait forever for tasks"
                    .to_string();
                self.phase = Phase::Unhealthy {
                    reason: reason.clone(),
                };
                out.push(Change::Unhealthy(reason));
            }
            Signal::TaskStart => {
                if let Some(g) = self.current.as_mut().filter(|g| {
                    g.flags.unseen_start
                        && g.images_done == 0
                        && !g.flags.failed
                        && !g.flags.stopped
                }) {
                    // Its steps (stderr) were read before its start line (stdout).
                    g.flags.unseen_start = false;
                    g.last_activity = Some(now);
                    return;
                }
                if self.current.is_some() {
                    self.close(ClosedBy::NextTask, None, wall, out);
                }
                self.open(now, wall, out);
            }
            Signal::ImageStart { index, total } => {
                self.ensure_open(now, wall, out);
                let g = self.current.as_mut().expect("open");
                g.image_index = Some(index);
                g.images_total = Some(total.max(g.images_total.unwrap_or(0)));
                // Images before this one are done even if their "done" line was missed.
                g.images_done = g.images_done.max(index.saturating_sub(1));
                g.last_step = None;
                g.last_activity = Some(now);
                out.push(Change::Progress);
            }
            Signal::Progress { step, total } => {
                if self.current.is_none() && self.in_console_tail(now) {
                    return; // the last bars of the task that just ended
                }
                self.ensure_open(now, wall, out);
                let g = self.current.as_mut().expect("open");
                // A step that does not move (a redraw) is not progress for the stall limit.
                if g.last_step != Some(step) || g.steps_total != Some(total) {
                    g.last_activity = Some(now);
                }
                g.last_step = Some(step);
                g.steps_total = Some(total);
                out.push(Change::Progress);
            }
            Signal::ImageDone => {
                if let Some(g) = self.current.as_mut() {
                    g.images_done += 1;
                    if let Some(t) = g.images_total {
                        g.images_total = Some(t.max(g.images_done));
                    }
                    g.last_activity = Some(now);
                    out.push(Change::Progress);
                }
            }
            Signal::TaskEnd => self.close(ClosedBy::TaskEnd, None, wall, out),
            Signal::Stopped => {
                if let Some(g) = self.current.as_mut() {
                    g.flags.stopped = true;
                    g.last_activity = Some(now);
                }
            }
            Signal::Skipped => {
                if let Some(g) = self.current.as_mut() {
                    g.flags.skipped = true;
                    g.last_activity = Some(now);
                }
            }
            Signal::Error { exception, message } => {
                if let Some(g) = self.current.as_mut() {
                    g.flags.failed = true;
                    g.error = Some(exception.clone());
                    g.last_activity = Some(now);
                }
                out.push(Change::Error { exception, message });
            }
            Signal::Oom { message } => {
                if let Some(g) = self.current.as_mut() {
                    g.flags.oom = true;
                    g.last_activity = Some(now);
                }
                out.push(Change::Oom(message));
            }
            Signal::Activity { what } => {
                // Only refreshes a generation: model loads at start-up open none.
                if let Some(g) = self.current.as_mut() {
                    g.last_activity = Some(now);
                    if what == "enhance" {
                        g.flags.enhancing = true;
                    }
                    out.push(Change::Progress);
                }
            }
            Signal::Download(d) => {
                if matches!(self.phase, Phase::Starting) {
                    self.startup_activity = Some(now);
                    let prev = self.download.take().unwrap_or_default();
                    self.download = Some(ModelDownload {
                        // A bar after its `Downloading:` line belongs to that file.
                        file: d.file.or(prev.file),
                        percent: d.percent,
                        size: d.size,
                    });
                    out.push(Change::Progress);
                }
            }
            Signal::PortTaken { port } => self.port_taken = Some(port),
            Signal::WorkerStarted => self.per_session_stop = true,
        }
    }

    /// The second source beside the console: Gradio's queue as the gateway relays it.
    ///
    /// * An update from a call opens a generation when the console shows none (a fork or a
    ///   console that prints no task start) and ties the open generation to that call; each
    ///   update is activity for the stall limit (Fooocus sends them only as steps complete).
    /// * The completion of the tied call closes the generation if the console did not
    ///   (`ClosedBy::QueueEnd`); a completion of any other call changes nothing, so a task that
    ///   another tab queued and the console already started is never closed by mistake.
    pub fn on_queue(
        &mut self,
        q: QueueSignal,
        now: Instant,
        wall: SystemTime,
        out: &mut Vec<Change>,
    ) {
        match q {
            QueueSignal::Generating {
                session_hash,
                fn_index,
            } => {
                if matches!(self.phase, Phase::Unhealthy { .. }) {
                    return;
                }
                let key = (session_hash, fn_index);
                if self.spent_call.as_ref() == Some(&key) {
                    return; // the final results of a generation already closed
                }
                match self.current.as_ref() {
                    // An update of another tab's call: not this generation's.
                    Some(g) if g.queue.as_ref().is_some_and(|k| *k != key) => return,
                    Some(_) => {}
                    None if self.in_console_tail(now) => return,
                    None => {}
                }
                self.ensure_open(now, wall, out);
                let g = self.current.as_mut().expect("open");
                if g.queue.is_none() {
                    g.queue = Some(key);
                }
                g.last_activity = Some(now);
            }
            QueueSignal::Completed {
                session_hash,
                fn_index,
            } => {
                let key = (session_hash, fn_index);
                if self.spent_call.as_ref() == Some(&key) {
                    self.spent_call = None;
                }
                if self
                    .current
                    .as_ref()
                    .is_some_and(|g| g.queue.as_ref() == Some(&key))
                {
                    self.close(ClosedBy::QueueEnd, None, wall, out);
                }
            }
        }
    }

    fn in_console_tail(&self, now: Instant) -> bool {
        self.console_closed_at
            .is_some_and(|t| now.saturating_duration_since(t) < QUEUE_TAIL)
    }

    fn ensure_open(&mut self, now: Instant, wall: SystemTime, out: &mut Vec<Change>) {
        if self.current.is_none() {
            // The task-start marker was missed (a fork that prints none, a start read late
            // from the other pipe, a task under way when the guard attached): progress starts
            // one.
            self.open(now, wall, out);
            if let Some(g) = self.current.as_mut() {
                g.flags.unseen_start = true;
            }
        }
    }

    /// When the current generation will be closed for lack of a task end, if nothing happens.
    pub fn quiet_deadline(&self) -> Option<Instant> {
        let g = self.current.as_ref()?;
        if g.flags.stop_requested {
            return None; // the escalation decides
        }
        let wait = if g.images_all_done() {
            QUIET_AFTER_LAST_IMAGE
        } else if g.images_total.is_none() && g.images_done > 0 {
            QUIET_UNKNOWN_TOTAL
        } else {
            return None;
        };
        Some(g.last_activity() + wait)
    }

    /// Close the generation whose end never came (tab closed, API-driven task).
    pub fn on_tick(&mut self, now: Instant, wall: SystemTime, out: &mut Vec<Change>) {
        if self.quiet_deadline().is_some_and(|d| now >= d) {
            self.close(ClosedBy::Quiet, None, wall, out);
        }
    }

    /// The Fooocus process is gone: close what was running.
    pub fn on_exit(&mut self, oom: bool, wall: SystemTime, out: &mut Vec<Change>) {
        if let Some(g) = self.current.as_mut() {
            if oom {
                g.flags.oom = true;
            }
        }
        self.close(ClosedBy::ProcessExit, None, wall, out);
        self.phase = Phase::Starting;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(t: &mut Tracker, s: Signal, now: Instant) -> Vec<Change> {
        let mut out = Vec::new();
        t.on_signal(s, now, SystemTime::now(), &mut out);
        out
    }

    fn finished(out: &[Change]) -> &Generation {
        out.iter()
            .find_map(|c| {
                if let Change::Finished(g) = c {
                    Some(&**g)
                } else {
                    None
                }
            })
            .expect("a finished generation")
    }

    fn queue(t: &mut Tracker, q: QueueSignal, now: Instant) -> Vec<Change> {
        let mut out = Vec::new();
        t.on_queue(q, now, SystemTime::now(), &mut out);
        out
    }
    fn generating(tab: &str) -> QueueSignal {
        QueueSignal::Generating {
            session_hash: tab.into(),
            fn_index: 67,
        }
    }
    fn completed(tab: &str) -> QueueSignal {
        QueueSignal::Completed {
            session_hash: tab.into(),
            fn_index: 67,
        }
    }

    #[test]
    fn the_queue_starts_and_ends_a_generation_the_console_does_not_show() {
        let mut t = Tracker::new(1);
        let t0 = Instant::now() + Duration::from_secs(60);
        assert_eq!(
            queue(&mut t, generating("tab1"), t0),
            vec![Change::Started(1)]
        );
        // Further updates are activity for the stall limit, not new generations.
        let t1 = t0 + Duration::from_secs(3);
        assert!(queue(&mut t, generating("tab1"), t1).is_empty());
        assert_eq!(t.current().unwrap().last_activity(), t1);
        // Another tab's call completing does not end this generation.
        assert!(queue(&mut t, completed("tab2"), t1).is_empty());
        let out = queue(&mut t, completed("tab1"), t1);
        let g = finished(&out);
        assert_eq!(g.closed_by, Some(ClosedBy::QueueEnd));
        assert_eq!(g.outcome, Outcome::Completed);
        assert!(t.current().is_none());
    }

    #[test]
    fn the_console_and_the_queue_make_one_generation() {
        let mut t = Tracker::new(1);
        let t0 = Instant::now() + Duration::from_secs(60);
        assert_eq!(
            feed(&mut t, Signal::TaskStart, t0),
            vec![Change::Started(1)]
        );
        assert!(
            queue(&mut t, generating("tab1"), t0).is_empty(),
            "tied, not a second one"
        );
        let out = feed(&mut t, Signal::TaskEnd, t0);
        assert_eq!(finished(&out).closed_by, Some(ClosedBy::TaskEnd));
        // The results delivered after the console's end: no phantom generation.
        assert!(queue(&mut t, generating("tab1"), t0 + Duration::from_secs(30)).is_empty());
        assert!(queue(&mut t, completed("tab1"), t0).is_empty());
        assert!(t.current().is_none());
        // The same tab's next task is a new generation.
        let out = queue(&mut t, generating("tab1"), t0 + Duration::from_secs(90));
        assert_eq!(out, vec![Change::Started(2)]);
    }

    #[test]
    fn an_untied_update_right_after_the_console_end_opens_nothing() {
        let mut t = Tracker::new(1);
        let t0 = Instant::now();
        feed(&mut t, Signal::TaskStart, t0);
        feed(&mut t, Signal::TaskEnd, t0);
        assert!(queue(&mut t, generating("tab1"), Instant::now()).is_empty());
        assert!(t.current().is_none());
    }

    #[test]
    fn another_tabs_updates_do_not_touch_the_running_generation() {
        let mut t = Tracker::new(1);
        let t0 = Instant::now() + Duration::from_secs(60);
        queue(&mut t, generating("tab1"), t0);
        assert!(queue(&mut t, generating("tab2"), t0 + Duration::from_secs(9)).is_empty());
        assert_eq!(t.current().unwrap().last_activity(), t0);
    }

    #[test]
    fn a_full_task() {
        let mut t = Tracker::new(1);
        let t0 = Instant::now();
        feed(
            &mut t,
            Signal::Ready {
                url: "http://127.0.0.1:7865".into(),
            },
            t0,
        );
        assert_eq!(
            t.phase,
            Phase::Ready {
                url: "http://127.0.0.1:7865".into()
            }
        );
        assert_eq!(
            feed(&mut t, Signal::TaskStart, t0),
            vec![Change::Started(1)]
        );
        feed(&mut t, Signal::ImageStart { index: 1, total: 2 }, t0);
        feed(&mut t, Signal::Progress { step: 5, total: 10 }, t0);
        feed(&mut t, Signal::ImageDone, t0);
        feed(&mut t, Signal::ImageStart { index: 2, total: 2 }, t0);
        feed(&mut t, Signal::ImageDone, t0);
        let out = feed(&mut t, Signal::TaskEnd, t0);
        let g = finished(&out);
        assert_eq!(
            (g.outcome, g.closed_by, g.images_done, g.images_total),
            (Outcome::Completed, Some(ClosedBy::TaskEnd), 2, Some(2))
        );
        assert!(t.current().is_none());
    }

    #[test]
    fn missing_task_end_closed_by_next_task_or_quiet_or_exit() {
        let mut t = Tracker::new(7);
        let t0 = Instant::now();
        feed(&mut t, Signal::TaskStart, t0);
        let out = feed(&mut t, Signal::TaskStart, t0);
        assert_eq!(finished(&out).closed_by, Some(ClosedBy::NextTask));
        assert_eq!(out.last(), Some(&Change::Started(8)));

        feed(&mut t, Signal::ImageStart { index: 1, total: 1 }, t0);
        feed(&mut t, Signal::ImageDone, t0);
        let d = t.quiet_deadline().unwrap();
        assert_eq!(d, t0 + QUIET_AFTER_LAST_IMAGE);
        let mut out = Vec::new();
        t.on_tick(d - Duration::from_millis(1), SystemTime::now(), &mut out);
        assert!(out.is_empty());
        t.on_tick(d, SystemTime::now(), &mut out);
        assert_eq!(finished(&out).closed_by, Some(ClosedBy::Quiet));
        assert_eq!(finished(&out).outcome, Outcome::Completed);

        feed(&mut t, Signal::TaskStart, t0);
        let mut out = Vec::new();
        t.on_exit(false, SystemTime::now(), &mut out);
        assert_eq!(
            (finished(&out).outcome, finished(&out).closed_by),
            (Outcome::Crashed, Some(ClosedBy::ProcessExit))
        );
    }

    #[test]
    fn outcomes_from_flags() {
        let t0 = Instant::now();
        let cases: Vec<(Vec<Signal>, Outcome)> = vec![
            (vec![Signal::Stopped], Outcome::Stopped),
            (
                vec![Signal::ImageStart { index: 1, total: 2 }, Signal::Skipped],
                Outcome::Skipped,
            ),
            (
                vec![Signal::Error {
                    exception: "RuntimeError".into(),
                    message: "x".into(),
                }],
                Outcome::Failed,
            ),
            (
                vec![
                    Signal::Error {
                        exception: "torch.cuda.OutOfMemoryError".into(),
                        message: "x".into(),
                    },
                    Signal::Oom {
                        message: "CUDA out of memory".into(),
                    },
                ],
                Outcome::OutOfMemory,
            ),
        ];
        for (signals, want) in cases {
            let mut t = Tracker::new(1);
            feed(&mut t, Signal::TaskStart, t0);
            for s in signals {
                feed(&mut t, s, t0);
            }
            let out = feed(&mut t, Signal::TaskEnd, t0);
            assert_eq!(finished(&out).outcome, want);
        }
        let mut t = Tracker::new(1);
        feed(&mut t, Signal::TaskStart, t0);
        t.mark_limit(LimitKind::Timeout);
        let out = feed(&mut t, Signal::TaskEnd, t0);
        assert_eq!(finished(&out).outcome, Outcome::TimedOut);
    }

    #[test]
    fn redraws_are_not_progress_and_dead_worker_is_unhealthy() {
        let mut t = Tracker::new(1);
        let t0 = Instant::now();
        feed(&mut t, Signal::TaskStart, t0);
        feed(&mut t, Signal::Progress { step: 3, total: 10 }, t0);
        feed(
            &mut t,
            Signal::Progress { step: 3, total: 10 },
            t0 + Duration::from_secs(5),
        );
        assert_eq!(t.current().unwrap().last_activity(), t0);
        let out = feed(&mut t, Signal::WorkerDied, t0);
        assert!(matches!(out[0], Change::Unhealthy(_)));
        feed(&mut t, Signal::Ready { url: "u".into() }, t0);
        assert!(matches!(t.phase, Phase::Unhealthy { .. }));
    }

    #[test]
    fn activity_refreshes_the_generation_and_opens_none() {
        let mut t = Tracker::new(1);
        let t0 = Instant::now();
        // Start-up model loads: no generation.
        let out = feed(
            &mut t,
            Signal::Activity {
                what: "model_load".into(),
            },
            t0,
        );
        assert!(out.is_empty() && t.current().is_none());
        feed(&mut t, Signal::TaskStart, t0);
        let later = t0 + Duration::from_secs(80);
        feed(
            &mut t,
            Signal::Activity {
                what: "download".into(),
            },
            later,
        );
        assert_eq!(t.current().unwrap().last_activity(), later);
    }

    #[test]
    fn a_step_without_a_seen_start_opens_a_generation() {
        let mut t = Tracker::new(7);
        let t0 = Instant::now();
        let out = feed(&mut t, Signal::Progress { step: 4, total: 30 }, t0);
        assert_eq!(out[0], Change::Started(7));
        assert_eq!(t.current().unwrap().last_step, Some(4));
    }

    #[test]
    fn the_enhance_phase_is_not_finishing_but_still_closes_when_quiet() {
        let mut t = Tracker::new(1);
        let t0 = Instant::now();
        feed(&mut t, Signal::TaskStart, t0);
        feed(&mut t, Signal::ImageStart { index: 1, total: 1 }, t0);
        feed(&mut t, Signal::ImageDone, t0);
        assert!(t.current().unwrap().finishing());
        let t1 = t0 + Duration::from_secs(3);
        feed(
            &mut t,
            Signal::Activity {
                what: "enhance".into(),
            },
            t1,
        );
        assert!(!t.current().unwrap().finishing(), "enhance samples again");
        assert_eq!(t.quiet_deadline(), Some(t1 + QUIET_AFTER_LAST_IMAGE));
    }

    #[test]
    fn taken_port_and_per_session_stop_are_kept_until_restart() {
        let mut t = Tracker::new(1);
        let t0 = Instant::now();
        feed(&mut t, Signal::WorkerStarted, t0);
        feed(&mut t, Signal::PortTaken { port: 7865 }, t0);
        assert!(t.per_session_stop);
        assert_eq!(t.port_taken, Some(7865));
        t.restart();
        assert!(!t.per_session_stop);
        assert_eq!(t.port_taken, None);
    }

    #[test]
    fn a_late_start_line_joins_the_generation_its_steps_opened() {
        let mut t = Tracker::new(1);
        let t0 = Instant::now();
        feed(&mut t, Signal::Progress { step: 0, total: 5 }, t0);
        let out = feed(&mut t, Signal::TaskStart, t0);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(t.current().unwrap().id, 1);
        // A second start after images is a new task.
        feed(&mut t, Signal::ImageDone, t0);
        let out = feed(&mut t, Signal::TaskStart, t0);
        assert_eq!(finished(&out).id, 1);
        assert_eq!(t.current().unwrap().id, 2);
    }

    #[test]
    fn trailing_bars_after_the_task_end_open_nothing() {
        let mut t = Tracker::new(1);
        let t0 = Instant::now();
        feed(&mut t, Signal::TaskStart, t0);
        feed(&mut t, Signal::Progress { step: 5, total: 5 }, t0);
        feed(&mut t, Signal::TaskEnd, t0);
        let now = Instant::now();
        let out = feed(&mut t, Signal::Progress { step: 5, total: 5 }, now);
        assert!(out.is_empty() && t.current().is_none(), "{out:?}");
        // Long after, a bar is a generation whose start was not seen.
        let out = feed(
            &mut t,
            Signal::Progress { step: 1, total: 5 },
            now + QUEUE_TAIL,
        );
        assert_eq!(out[0], Change::Started(2));
    }
}
