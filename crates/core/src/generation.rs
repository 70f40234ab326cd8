//! Generations: one record per Fooocus task, built from what Fooocus printed (and what the
//! gateway saw), closed even when the task end never comes. Pure: time is passed in.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fooocus_console::EventKind;
use guard_gateway::QueueEvent;
use serde::{Deserialize, Serialize};

use crate::events::{LimitKind, StopHow, StopStep};

/// What the tracker reads from Fooocus's console: the parser's events as they are, and a model
/// download's progress, which the console crate reads from the line its parser marked as a
/// download (`Activity { what: "download" }`).
#[derive(Clone, Debug, PartialEq)]
pub enum Signal {
    Event(EventKind),
    Download(ModelDownload),
}

impl From<EventKind> for Signal {
    fn from(e: EventKind) -> Signal {
        Signal::Event(e)
    }
}

pub use fooocus_console::ModelDownload;

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

/// Seconds a generation spent in each phase of Fooocus's work (history; docs/ipc.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseTimes {
    pub model_load_s: f64,
    /// Prompt expansion and encoding; also the time before any phase was announced.
    pub preparation_s: f64,
    pub sampling_s: f64,
    pub decode_s: f64,
    pub saving_s: f64,
}

impl PhaseTimes {
    fn add(&mut self, phase: Option<fooocus_console::Phase>, d: Duration) {
        use fooocus_console::Phase as P;
        let slot = match phase {
            Some(P::ModelLoad) => &mut self.model_load_s,
            Some(P::Preparation) | None => &mut self.preparation_s,
            Some(P::Sampling) => &mut self.sampling_s,
            Some(P::Decode) => &mut self.decode_s,
            Some(P::Saving) => &mut self.saving_s,
        };
        *slot += d.as_secs_f64();
    }

    /// The seconds of one phase (`None`: preparation, as in `add`).
    pub fn of(&self, phase: fooocus_console::Phase) -> f64 {
        use fooocus_console::Phase as P;
        match phase {
            P::ModelLoad => self.model_load_s,
            P::Preparation => self.preparation_s,
            P::Sampling => self.sampling_s,
            P::Decode => self.decode_s,
            P::Saving => self.saving_s,
        }
    }
}

/// The most model-load time the per-generation timeout leaves out (the first generation after
/// a start may load the checkpoint; a load that never ends still meets the timeout).
pub const MODEL_LOAD_EXCLUDED_MAX: Duration = Duration::from_secs(600);

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
    /// Seconds in each phase.
    #[serde(default)]
    pub phases: PhaseTimes,
    /// Mean seconds per sampling step.
    #[serde(default)]
    pub step_s: Option<f64>,
    /// The longest time without progress (what the stall limit measures), in seconds.
    #[serde(default)]
    pub longest_gap_s: f64,
    /// The phase Fooocus is in (None: none announced yet, before the first step).
    #[serde(skip)]
    pub phase: Option<fooocus_console::Phase>,
    #[serde(skip)]
    phase_since: Option<Instant>,
    /// Steps counted for `step_s`.
    #[serde(skip)]
    steps_counted: u32,
    #[serde(skip)]
    pub(crate) started_at: Option<Instant>,
    #[serde(skip)]
    pub(crate) last_activity: Option<Instant>,
    #[serde(skip)]
    flags: Flags,
    /// The queue call (session, function) this generation belongs to, once the gateway saw it.
    #[serde(skip)]
    queue: Option<(String, u64)>,
    /// Another call seen in the queue while this generation's was tied, and its updates since.
    #[serde(skip)]
    next_call: Option<((String, u64), u32)>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Flags {
    /// The first generation of this Fooocus process: the one that loads what the start-up did
    /// not (the timeout leaves its model loads out).
    first_of_process: bool,
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
    /// The tied queue call's tab went away (its queue socket closed): Gradio stops following
    /// the call, so no completion will come and the console rules again (see `held`).
    queue_gone: bool,
    /// The console printed a task end while the tied call was running: kept for `closed_by`
    /// when the queue's completion closes the generation.
    console_ended: bool,
    /// The last task start the console printed after its tab went away: the next task's
    /// start only once the queue shows that task running (see `Tracker::another_call`).
    deferred_start: Option<(Instant, SystemTime)>,
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
    /// When the per-generation timeout counts from: the start, moved on by the time spent
    /// loading a model (up to `MODEL_LOAD_EXCLUDED_MAX`) in the first generation after Fooocus
    /// started. While a load runs the timeout waits for the most it could still leave out; the
    /// load's end brings it back.
    ///
    /// Only the first: it loads what the start-up left for later (the model moved or patched
    /// for sampling, the prompt expansion), seconds on a GPU and a minute or more on a CPU,
    /// which no later generation pays again. Real 2.5.5 prints a load before every sampling
    /// (`Requested to load SDXL`, 3-13 s on this CPU): after the first generation that is
    /// part of what every generation costs, in history as in the timeout, and leaving it out
    /// made a generation run minutes past "its timeout".
    pub fn timeout_from(&self) -> Instant {
        if !self.flags.first_of_process {
            return self.started_at();
        }
        let done = self.model_load_left_out();
        let loading = self.phase == Some(fooocus_console::Phase::ModelLoad);
        self.started_at()
            + if loading {
                MODEL_LOAD_EXCLUDED_MAX
            } else {
                done
            }
    }
    /// The timeout leaves this generation's model loads out: the first after a start.
    pub fn loads_left_out(&self) -> bool {
        self.flags.first_of_process
    }
    /// The time of finished model loads the timeout leaves out (none after the first
    /// generation of a Fooocus process).
    pub fn model_load_left_out(&self) -> Duration {
        if !self.flags.first_of_process {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(self.phases.model_load_s.max(0.0)).min(MODEL_LOAD_EXCLUDED_MAX)
    }
    /// How long the timeout has counted at `now`.
    pub fn timed(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.timeout_from())
    }
    /// Progress was seen at `now`: the gap before it may be the longest.
    fn progressed(&mut self, now: Instant) {
        let gap = now
            .saturating_duration_since(self.last_activity())
            .as_secs_f64();
        self.longest_gap_s = self.longest_gap_s.max(gap);
        self.last_activity = Some(now);
    }
    /// Enter `phase` at `now`; false when already in it.
    fn enter(&mut self, phase: fooocus_console::Phase, now: Instant) -> bool {
        if self.phase == Some(phase) {
            return false;
        }
        let since = self.phase_since.unwrap_or_else(|| self.started_at());
        self.phases
            .add(self.phase, now.saturating_duration_since(since));
        self.phase = Some(phase);
        self.phase_since = Some(now);
        true
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

    /// Tied to a queue call that still runs in Gradio's queue: only the queue ends it (see
    /// `Tracker::on_signal`'s task end).
    fn held(&self) -> bool {
        self.queue.is_some() && !self.flags.queue_gone
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
    Error {
        exception: String,
        message: String,
    },
    Oom(String),
    /// Fooocus said it listens on a URL whose port is not the one it was given: not taken.
    WrongPort(String),
    /// Fooocus entered a phase, in this generation (None: outside one, the start-up load).
    Phase(fooocus_console::Phase, Option<u64>),
    /// A failure with a known fix was recognised.
    KnownFailure(fooocus_console::KnownFailure),
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
    /// The port the guard told Fooocus to listen on (None: a plain command, the guard chose
    /// none). A listening or ready URL on another port is not Fooocus's.
    pub expected_port: Option<u16>,
    /// Whether an error in a task kills the worker thread (Fooocus before 2.0.90, MRE;
    /// Fooocus-API's loop; unknown builds). Elsewhere the loop wraps each task in `try` from
    /// its first line on, so the worker can only die before its ready line.
    pub task_errors_kill_worker: bool,
    /// The phase Fooocus is in outside a generation (the start-up model load).
    pub idle_phase: Option<fooocus_console::Phase>,
    /// A generation was opened since this Fooocus process started.
    opened_since_start: bool,
    /// The latest instant a signal was handled at: a record closed without one (an exit)
    /// ends its last phase there or now, whichever is later.
    seen_at: Option<Instant>,
}

/// The port of `scheme://host:port/...`.
fn url_port(url: &str) -> Option<u16> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    authority.rsplit_once(':')?.1.parse().ok()
}

/// How long after the console closed a generation an untied queue update, or a step bar (tqdm
/// draws on stderr, read apart from stdout's task end), cannot open one.
const QUEUE_TAIL: Duration = Duration::from_secs(5);

/// How long before the next call's first update from the worker a task start on the console
/// counts as that task's start (the update and the line race to the guard on two paths; the
/// worker prints the line and sends the update within milliseconds). Short: a prompt's start
/// line can be older, and then the next generation starts at the update instead.
const DEFERRED_START: Duration = Duration::from_secs(1);

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
            expected_port: None,
            task_errors_kill_worker: true,
            idle_phase: None,
            seen_at: None,
            opened_since_start: false,
        }
    }

    /// A new Fooocus process: back to starting; numbering continues.
    pub fn restart(&mut self) {
        self.phase = Phase::Starting;
        self.download = None;
        self.startup_activity = None;
        self.listening = None;
        self.version = None;
        self.port_taken = None;
        self.per_session_stop = false;
        self.idle_phase = None;
        self.opened_since_start = false;
        // The new process's queue holds none of the old one's calls.
        self.spent_call = None;
    }

    /// Whether `url` is on the port Fooocus was told to use (any, when the guard chose none).
    fn on_expected_port(&self, url: &str) -> bool {
        self.expected_port.is_none_or(|p| url_port(url) == Some(p))
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
        self.idle_phase = None;
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
            phases: PhaseTimes::default(),
            step_s: None,
            longest_gap_s: 0.0,
            phase: None,
            phase_since: Some(now),
            steps_counted: 0,
            started_at: Some(now),
            last_activity: Some(now),
            flags: Flags {
                first_of_process: !std::mem::replace(&mut self.opened_since_start, true),
                ..Flags::default()
            },
            queue: None,
            next_call: None,
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
        let Some(g) = self.current.take() else {
            return;
        };
        self.idle_phase = None;
        // Its call may still run in Gradio's queue (a limit's kill, a process exit, a call
        // its tab left): its final updates must not open another generation.
        if g.held() {
            self.spent_call = g.queue.clone();
        }
        self.console_closed_at = Some(Instant::now());
        self.finish(g, by, forced, wall, out);
    }

    /// The tied call completed in Gradio's queue: the generation is over. Closed by the task
    /// end when the console printed one first (`Total time` comes right before the call's
    /// completion), else by the queue.
    fn close_by_queue(&mut self, wall: SystemTime, out: &mut Vec<Change>) {
        let Some(g) = self.current.take() else {
            return;
        };
        let by = if g.flags.console_ended {
            // Trailing bars read late from stderr belong to it.
            self.console_closed_at = Some(Instant::now());
            ClosedBy::TaskEnd
        } else {
            ClosedBy::QueueEnd
        };
        self.finish(g, by, None, wall, out);
    }

    fn finish(
        &mut self,
        mut g: Generation,
        by: ClosedBy,
        forced: Option<Outcome>,
        wall: SystemTime,
        out: &mut Vec<Change>,
    ) {
        g.ended_ms = Some(epoch_ms(wall).max(g.started_ms));
        // The last phase and the last gap run to the end (a stalled generation's gap is the
        // stall itself).
        let end = self
            .seen_at
            .map_or_else(Instant::now, |t| t.max(Instant::now()));
        let since = g.phase_since.unwrap_or_else(|| g.started_at());
        g.phases.add(g.phase, end.saturating_duration_since(since));
        g.phase_since = Some(end);
        let gap = end
            .saturating_duration_since(g.last_activity())
            .as_secs_f64();
        g.longest_gap_s = g.longest_gap_s.max(gap);
        if g.steps_counted > 0 && g.phases.sampling_s > 0.0 {
            g.step_s = Some(g.phases.sampling_s / f64::from(g.steps_counted));
        }
        g.closed_by = Some(by);
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

    pub fn on_signal(
        &mut self,
        s: impl Into<Signal>,
        now: Instant,
        wall: SystemTime,
        out: &mut Vec<Change>,
    ) {
        self.seen_at = Some(now);
        match s.into() {
            // Start-up lines count only while Fooocus starts, the first of each kind: a prompt
            // can be printed only once it is ready, and may hold such a line (stdout and stderr
            // are parsed apart, so only here are both streams' phases one).
            Signal::Event(EventKind::Listening { url }) => {
                if matches!(self.phase, Phase::Starting) && self.listening.is_none() {
                    if !self.on_expected_port(&url) {
                        out.push(Change::WrongPort(url));
                        return;
                    }
                    self.listening = Some(url.clone());
                    out.push(Change::Listening(url));
                }
            }
            Signal::Event(EventKind::Ready { url }) => {
                if matches!(self.phase, Phase::Starting) {
                    if !self.on_expected_port(&url) {
                        out.push(Change::WrongPort(url));
                        return;
                    }
                    self.download = None;
                    // Ready: the start-up load is over.
                    self.idle_phase = None;
                    self.phase = Phase::Ready { url: url.clone() };
                    out.push(Change::Ready(url));
                }
            }
            Signal::Event(EventKind::Version { version }) => {
                if matches!(self.phase, Phase::Starting) && self.version.is_none() {
                    self.version = Some(version.clone());
                    out.push(Change::Version(version));
                }
            }
            Signal::Event(EventKind::WorkerDied) => {
                let possible = match self.phase {
                    Phase::Starting => true,
                    Phase::Ready { .. } => self.task_errors_kill_worker,
                    Phase::Unhealthy { .. } => false, // told already
                };
                if !possible {
                    return;
                }
                let reason = "Fooocus's worker thread died: the page will wait forever for tasks"
                    .to_string();
                self.phase = Phase::Unhealthy {
                    reason: reason.clone(),
                };
                out.push(Change::Unhealthy(reason));
            }
            Signal::Event(EventKind::TaskStart) => {
                if let Some(g) = self.current.as_mut().filter(|g| {
                    g.flags.unseen_start
                        && g.images_done == 0
                        && !g.flags.failed
                        && !g.flags.stopped
                }) {
                    // Its steps (stderr) were read before its start line (stdout).
                    g.flags.unseen_start = false;
                    g.progressed(now);
                    return;
                }
                if let Some(g) = self.current.as_mut().filter(|g| g.queue.is_some()) {
                    if !g.flags.queue_gone {
                        // Gradio's queue runs one call at a time (Fooocus's `.queue()`:
                        // concurrency 1) and the worker one task at a time: while the tied call
                        // runs, no other task can start. A start line here is a prompt's (2.5's
                        // Enhance detection prompt, printed verbatim after a forged `Total time`).
                        return;
                    }
                    // Its tab went away: the next task is the next call's, and the queue shows
                    // when the worker starts it (`another_call`). Until then this line may be a
                    // prompt's; kept for the case it was that task's own.
                    g.flags.deferred_start = Some((now, wall));
                    return;
                }
                if self.current.is_some() {
                    self.close(ClosedBy::NextTask, None, wall, out);
                }
                self.open(now, wall, out);
            }
            Signal::Event(EventKind::ImageStart { index, total }) => {
                self.ensure_open(now, wall, out);
                let g = self.current.as_mut().expect("open");
                g.image_index = Some(index);
                g.images_total = Some(total.max(g.images_total.unwrap_or(0)));
                // Images before this one are done even if their "done" line was missed.
                g.images_done = g.images_done.max(index.saturating_sub(1));
                g.last_step = None;
                g.progressed(now);
                out.push(Change::Progress);
            }
            Signal::Event(EventKind::Progress { step, total }) => {
                if self.current.is_none() && self.in_console_tail(now) {
                    return; // the last bars of the task that just ended
                }
                self.ensure_open(now, wall, out);
                let g = self.current.as_mut().expect("open");
                // A step that does not move (a redraw) is not progress for the stall limit,
                // nor a return to sampling (tqdm redraws the last bar at close, after the
                // parser read it as the start of the decode).
                let moved = g.last_step != Some(step) || g.steps_total != Some(total);
                if moved {
                    g.progressed(now);
                }
                if let (Some(last), Some(t)) = (g.last_step, g.steps_total) {
                    if t == total && step > last {
                        g.steps_counted = g.steps_counted.saturating_add(step - last);
                    }
                }
                g.last_step = Some(step);
                g.steps_total = Some(total);
                // A step is sampling, whether or not its phase line was read.
                if moved && g.enter(fooocus_console::Phase::Sampling, now) {
                    out.push(Change::Phase(fooocus_console::Phase::Sampling, Some(g.id)));
                }
                out.push(Change::Progress);
            }
            Signal::Event(EventKind::ImageDone { .. }) => {
                if let Some(g) = self.current.as_mut() {
                    g.images_done += 1;
                    if let Some(t) = g.images_total {
                        g.images_total = Some(t.max(g.images_done));
                    }
                    g.progressed(now);
                    out.push(Change::Progress);
                }
            }
            Signal::Event(EventKind::TaskEnd { .. }) => {
                if let Some(g) = self.current.as_mut().filter(|g| g.queue.is_some()) {
                    // Behind the gateway the queue says when the generation ends, and the
                    // console cannot: a prompt printed verbatim (2.5's Enhance detection
                    // prompt, new lines included) can write `Total time: ...` on the same
                    // stream, in the same format, and closing here would let the next bar open
                    // a new generation whose timeout starts again. Fooocus prints the real one
                    // in `generate_clicked` after its last update, right before the call
                    // completes (webui.py), so the completion follows at once; for a call
                    // whose tab went away Gradio never resumes `generate_clicked`, so it never
                    // prints one (the next task's start or the quiet after the last image
                    // closes that generation). This holds for every version whose Generate is
                    // a queued Gradio call (2.0 to 2.5, MRE, mashb1t: the same generate_clicked).
                    //
                    // Untied (--no-gateway, Fooocus-API, a task not started from a tab) the
                    // console is all there is, and it closes: no rule on the console alone is
                    // sound. After a forged end the same prompt can print the next task's start
                    // lines, and how long until work shows again is the prompt's to choose,
                    // while a real end can be followed within milliseconds by a real start
                    // (another tab's call waiting in the queue). So there a prompt can still
                    // restart the timeout; the gateway (on by default) is the defence.
                    g.flags.console_ended = true;
                    return;
                }
                self.close(ClosedBy::TaskEnd, None, wall, out)
            }
            Signal::Event(EventKind::Stopped) => {
                if let Some(g) = self.current.as_mut() {
                    g.flags.stopped = true;
                    g.last_activity = Some(now);
                }
            }
            Signal::Event(EventKind::Skipped) => {
                if let Some(g) = self.current.as_mut() {
                    g.flags.skipped = true;
                    g.last_activity = Some(now);
                }
            }
            Signal::Event(EventKind::Error {
                exception, message, ..
            }) => {
                if let Some(g) = self.current.as_mut() {
                    g.flags.failed = true;
                    g.error = Some(exception.clone());
                    g.last_activity = Some(now);
                }
                out.push(Change::Error { exception, message });
            }
            Signal::Event(EventKind::Oom { message }) => {
                if let Some(g) = self.current.as_mut() {
                    g.flags.oom = true;
                    g.last_activity = Some(now);
                }
                out.push(Change::Oom(message));
            }
            Signal::Event(EventKind::Activity { what }) => {
                // Only refreshes a generation: model loads at start-up open none.
                if let Some(g) = self.current.as_mut() {
                    g.progressed(now);
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
            Signal::Event(EventKind::PortTaken { port }) => {
                if matches!(self.phase, Phase::Starting) {
                    self.port_taken = Some(port);
                }
            }
            Signal::Event(EventKind::WorkerStarted { .. }) => {
                if matches!(self.phase, Phase::Starting) {
                    self.per_session_stop = true;
                }
            }
            Signal::Event(EventKind::Phase { phase: p }) => match self.current.as_mut() {
                Some(g) => {
                    if g.enter(p, now) {
                        g.progressed(now);
                        out.push(Change::Phase(p, Some(g.id)));
                    }
                }
                None => {
                    if self.idle_phase != Some(p) {
                        self.idle_phase = Some(p);
                        if matches!(self.phase, Phase::Starting) {
                            self.startup_activity = Some(now);
                        }
                        out.push(Change::Phase(p, None));
                    }
                }
            },
            Signal::Event(EventKind::KnownFailure { failure: f }) => {
                out.push(Change::KnownFailure(f))
            }
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
        q: QueueEvent,
        now: Instant,
        wall: SystemTime,
        out: &mut Vec<Change>,
    ) {
        self.seen_at = Some(now);
        match q {
            QueueEvent::Generating {
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
                if let Some(g) = self.current.as_ref() {
                    // An update of another tab's call: not this generation's (unless it ends
                    // it, see `another_call`).
                    if g.queue.as_ref().is_some_and(|k| *k != key)
                        && !self.another_call(&key, true, now, wall, out)
                    {
                        return;
                    }
                } else if self.in_console_tail(now) {
                    return;
                }
                self.ensure_open(now, wall, out);
                let g = self.current.as_mut().expect("open");
                if g.queue.is_none() {
                    g.queue = Some(key);
                }
                g.progressed(now);
            }
            QueueEvent::Completed {
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
                    self.close_by_queue(wall, out);
                }
            }
            QueueEvent::Started {
                session_hash,
                fn_index,
            } => {
                let key = (session_hash, fn_index);
                if self
                    .current
                    .as_ref()
                    .is_some_and(|g| g.queue.as_ref().is_some_and(|k| *k != key))
                {
                    self.another_call(&key, false, now, wall, out);
                }
            }
            QueueEvent::Abandoned {
                session_hash,
                fn_index,
            } => {
                let key = (session_hash, fn_index);
                if self.spent_call.as_ref() == Some(&key) {
                    self.spent_call = None; // no completion will come to clear it
                }
                if let Some(g) = self
                    .current
                    .as_mut()
                    .filter(|g| g.queue.as_ref() == Some(&key))
                {
                    g.flags.queue_gone = true;
                }
            }
            // A tab joining the queue says nothing of a generation; a wake request is the
            // supervisor's (it never reaches the tracker).
            QueueEvent::Joined { .. } | QueueEvent::WakeRequested => {}
        }
    }

    /// Another call than the current generation's runs in Gradio's queue (`update`: it sent an
    /// update). The queue runs one call at a time (concurrency 1), so the tied call no longer
    /// runs there: its tab went away, while the worker may still be running its task. The other
    /// call's first update is `generate_clicked`'s `Waiting for task to start ...`, sent before
    /// it hands its task to the worker; every later one comes from the worker running that task
    /// (`async_task.yields`), so the worker is done with the tied call's. Then the current
    /// generation ends and the next one starts: at the task start the console printed just
    /// before (`DEFERRED_START`), else now. A prompt's start line alone ends nothing. Returns
    /// whether it did.
    fn another_call(
        &mut self,
        key: &(String, u64),
        update: bool,
        now: Instant,
        wall: SystemTime,
        out: &mut Vec<Change>,
    ) -> bool {
        let Some(g) = self.current.as_mut() else {
            return false;
        };
        g.flags.queue_gone = true;
        let seen = match &g.next_call {
            Some((k, n)) if k == key => *n,
            _ => 0,
        };
        let updates = seen + u32::from(update);
        g.next_call = Some((key.clone(), updates));
        if updates < 2 {
            return false;
        }
        let (at, at_wall) = g
            .flags
            .deferred_start
            .filter(|(at, _)| now.saturating_duration_since(*at) <= DEFERRED_START)
            .unwrap_or((now, wall));
        self.close(ClosedBy::NextTask, None, at_wall, out);
        self.open(at, at_wall, out);
        true
    }

    /// The queue call the current generation is tied to while it still runs in Gradio's queue
    /// (for the supervisor to ask the gateway whether its tab is still there).
    pub fn held_call(&self) -> Option<(&str, u64)> {
        let g = self.current.as_ref().filter(|g| g.held())?;
        g.queue.as_ref().map(|(s, f)| (s.as_str(), *f))
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
        if g.held() {
            // Its call still runs in Gradio's queue: the queue says when it is over (2.5's
            // enhance phase can be quiet for long after the last image: model loads).
            return None;
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
        self.seen_at = Some(now);
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

    fn feed(t: &mut Tracker, s: impl Into<Signal>, now: Instant) -> Vec<Change> {
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

    fn queue(t: &mut Tracker, q: QueueEvent, now: Instant) -> Vec<Change> {
        let mut out = Vec::new();
        t.on_queue(q, now, SystemTime::now(), &mut out);
        out
    }
    fn generating(tab: &str) -> QueueEvent {
        QueueEvent::Generating {
            session_hash: tab.into(),
            fn_index: 67,
        }
    }
    fn completed(tab: &str) -> QueueEvent {
        QueueEvent::Completed {
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
            feed(&mut t, EventKind::TaskStart, t0),
            vec![Change::Started(1)]
        );
        assert!(
            queue(&mut t, generating("tab1"), t0).is_empty(),
            "tied, not a second one"
        );
        // Fooocus prints `Total time` right before the call completes: the queue ends it.
        assert!(feed(&mut t, EventKind::TaskEnd { seconds: None }, t0).is_empty());
        let out = queue(&mut t, completed("tab1"), t0);
        assert_eq!(finished(&out).closed_by, Some(ClosedBy::TaskEnd));
        assert!(t.current().is_none());
        // The same tab's next task is a new generation.
        let out = queue(&mut t, generating("tab1"), t0 + Duration::from_secs(90));
        assert_eq!(out, vec![Change::Started(2)]);
    }

    /// Issue 23: 2.5 prints the Enhance detection prompt verbatim, new lines included, so a
    /// prompt can write `Total time: ...` and a next task's start on stdout, in Fooocus's own
    /// format. While the generation's queue call runs, neither ends it, and the bars after
    /// them open no new generation: its timeout counts from its real start.
    #[test]
    fn a_prompts_task_end_does_not_end_a_generation_its_queue_call_holds() {
        let mut t = Tracker::new(1);
        let t0 = Instant::now() + Duration::from_secs(60);
        queue(&mut t, generating("tab1"), t0);
        feed(&mut t, EventKind::TaskStart, t0);
        feed(&mut t, EventKind::ImageStart { index: 1, total: 1 }, t0);
        feed(
            &mut t,
            EventKind::Progress {
                step: 30,
                total: 30,
            },
            t0,
        );
        feed(&mut t, EventKind::ImageDone { seconds: 1.0 }, t0);
        feed(
            &mut t,
            EventKind::Activity {
                what: "enhance".into(),
            },
            t0,
        );
        // The detection prompt's lines, then the enhance phase's bars and updates.
        let t1 = t0 + Duration::from_secs(20);
        for s in [
            EventKind::TaskEnd { seconds: None },
            EventKind::TaskStart,
            EventKind::ImageStart { index: 1, total: 1 },
            EventKind::TaskEnd { seconds: None },
            EventKind::Progress { step: 1, total: 30 },
        ] {
            assert!(
                !feed(&mut t, s.clone(), t1)
                    .iter()
                    .any(|c| matches!(c, Change::Finished(_) | Change::Started(_))),
                "{s:?}"
            );
        }
        assert!(queue(&mut t, generating("tab1"), t1).is_empty());
        let g = t.current().unwrap();
        assert_eq!(
            (g.id, g.started_at()),
            (1, t0),
            "the clock runs from the real start"
        );
        assert_eq!(t.held_call(), Some(("tab1", 67)));
        // Quiet after the last image: the enhance phase can be; the queue says when it is over.
        assert_eq!(t.quiet_deadline(), None);
        let mut out = Vec::new();
        t.on_tick(t1 + QUIET_UNKNOWN_TOTAL, SystemTime::now(), &mut out);
        assert!(out.is_empty(), "{out:?}");
        // The real end: `Total time`, then the call completes.
        feed(&mut t, EventKind::TaskEnd { seconds: None }, t1);
        let out = queue(&mut t, completed("tab1"), t1);
        let g = finished(&out);
        assert_eq!(
            (g.id, g.closed_by, g.outcome),
            (1, Some(ClosedBy::TaskEnd), Outcome::Completed)
        );
        assert!(t.current().is_none() && t.held_call().is_none());
        // The same tab's next Generate is a new generation.
        let out = queue(&mut t, generating("tab1"), t1 + Duration::from_secs(30));
        assert_eq!(out, vec![Change::Started(2)]);
    }

    /// A tab that went away leaves its call running in no queue: no completion will come, and
    /// Gradio never resumes `generate_clicked`, so no `Total time` either; the worker runs the
    /// task to its end. The quiet after the last image ends the generation, or the next call's
    /// task starting in the worker, which the queue shows: that call's second update (its first
    /// is sent before the worker has the task). A start line alone ends nothing (a prompt can
    /// print one); one printed just before that update is where the next generation starts.
    #[test]
    fn a_generation_whose_tab_went_away_ends_when_the_next_task_runs() {
        let t0 = Instant::now() + Duration::from_secs(60);
        let gone = |t: &mut Tracker| {
            queue(t, generating("tab1"), t0);
            feed(t, EventKind::TaskStart, t0);
            feed(t, EventKind::ImageStart { index: 1, total: 1 }, t0);
            feed(t, EventKind::ImageDone { seconds: 1.0 }, t0);
            assert_eq!(t.quiet_deadline(), None);
            let abandoned = QueueEvent::Abandoned {
                session_hash: "tab1".into(),
                fn_index: 67,
            };
            assert!(queue(t, abandoned, t0).is_empty());
            assert_eq!(t.held_call(), None);
        };
        // The quiet after the last image.
        let mut t = Tracker::new(1);
        gone(&mut t);
        assert_eq!(t.quiet_deadline(), Some(t0 + QUIET_AFTER_LAST_IMAGE));
        let mut out = Vec::new();
        t.on_tick(t0 + QUIET_AFTER_LAST_IMAGE, SystemTime::now(), &mut out);
        assert_eq!(finished(&out).closed_by, Some(ClosedBy::Quiet));

        // A prompt's end and start, then the next tab's call: waiting, then its task runs.
        let mut t = Tracker::new(1);
        gone(&mut t);
        let t1 = t0 + Duration::from_secs(2);
        assert!(feed(&mut t, EventKind::TaskEnd { seconds: None }, t1).is_empty());
        assert!(feed(&mut t, EventKind::TaskStart, t1).is_empty());
        assert!(queue(&mut t, generating("tab2"), t1).is_empty(), "waiting");
        let t2 = t1 + Duration::from_secs(20);
        assert!(feed(&mut t, EventKind::TaskStart, t2).is_empty());
        let out = queue(&mut t, generating("tab2"), t2 + Duration::from_millis(20));
        assert_eq!(
            (finished(&out).id, finished(&out).closed_by),
            (1, Some(ClosedBy::NextTask))
        );
        assert_eq!(out.last(), Some(&Change::Started(2)));
        assert_eq!(t.current().unwrap().started_at(), t2, "at its start line");
        assert_eq!(t.held_call(), Some(("tab2", 67)));

        // The update first, then the start line: one new generation, from the update.
        let mut t = Tracker::new(1);
        gone(&mut t);
        queue(&mut t, generating("tab2"), t1);
        let out = queue(&mut t, generating("tab2"), t2);
        assert_eq!(out.last(), Some(&Change::Started(2)));
        assert!(feed(&mut t, EventKind::TaskStart, t2).is_empty());
        assert_eq!(
            (t.current().unwrap().id, t.current().unwrap().started_at()),
            (2, t2)
        );

        // A prompt's start line long before: the next generation starts at the update.
        let mut t = Tracker::new(1);
        gone(&mut t);
        feed(&mut t, EventKind::TaskStart, t1);
        queue(&mut t, generating("tab2"), t2);
        let t3 = t2 + Duration::from_secs(3);
        queue(&mut t, generating("tab2"), t3);
        assert_eq!(t.current().unwrap().started_at(), t3);
    }

    #[test]
    fn an_untied_update_right_after_the_console_end_opens_nothing() {
        let mut t = Tracker::new(1);
        let t0 = Instant::now();
        feed(&mut t, EventKind::TaskStart, t0);
        feed(&mut t, EventKind::TaskEnd { seconds: None }, t0);
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

    /// Issue 26: the record keeps each phase's seconds, the mean step time and the longest
    /// gap without progress (what the stall limit measures), and a phase change is reported
    /// once per entry.
    #[test]
    fn a_generation_records_its_phases_and_its_longest_gap() {
        use fooocus_console::Phase as P;
        let mut t = Tracker::new(1);
        let t0 = Instant::now();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        // The start-up load belongs to no generation.
        assert_eq!(
            feed(
                &mut t,
                EventKind::Phase {
                    phase: P::ModelLoad
                },
                at(0.0)
            ),
            vec![Change::Phase(P::ModelLoad, None)]
        );
        assert_eq!(t.idle_phase, Some(P::ModelLoad));
        feed(&mut t, EventKind::Ready { url: "u".into() }, at(20.0));
        assert_eq!(t.idle_phase, None, "ready: the load is over");
        feed(&mut t, EventKind::TaskStart, at(30.0));
        assert_eq!(
            feed(
                &mut t,
                EventKind::Phase {
                    phase: P::Preparation
                },
                at(32.0)
            ),
            vec![Change::Phase(P::Preparation, Some(1))]
        );
        // Announced again (a second prompt's encoding): no new entry.
        assert!(feed(
            &mut t,
            EventKind::Phase {
                phase: P::Preparation
            },
            at(40.0)
        )
        .is_empty());
        // The first step enters sampling even when no phase line came for it.
        let out = feed(&mut t, EventKind::Progress { step: 1, total: 4 }, at(92.0));
        assert!(
            out.contains(&Change::Phase(P::Sampling, Some(1))),
            "{out:?}"
        );
        feed(&mut t, EventKind::Progress { step: 2, total: 4 }, at(96.0));
        feed(&mut t, EventKind::Progress { step: 4, total: 4 }, at(104.0));
        feed(&mut t, EventKind::Phase { phase: P::Decode }, at(104.0));
        // tqdm redraws the last bar when it closes: still the decode.
        let out = feed(&mut t, EventKind::Progress { step: 4, total: 4 }, at(105.0));
        assert!(
            !out.iter().any(|c| matches!(c, Change::Phase(..))),
            "{out:?}"
        );
        feed(&mut t, EventKind::Phase { phase: P::Saving }, at(114.0));
        let out = feed(&mut t, EventKind::TaskEnd { seconds: None }, at(116.0));
        let g = finished(&out);
        assert_eq!(
            g.phases,
            PhaseTimes {
                model_load_s: 0.0,
                preparation_s: 62.0,
                sampling_s: 12.0,
                decode_s: 10.0,
                saving_s: 2.0,
            }
        );
        assert_eq!(g.step_s, Some(4.0));
        // 32 s -> 92 s: preparing (a phase announced again is no progress of its own).
        assert_eq!(g.longest_gap_s, 60.0);
        // Outside a generation again, a load is reported without one.
        assert_eq!(
            feed(
                &mut t,
                EventKind::Phase {
                    phase: P::ModelLoad
                },
                at(200.0)
            ),
            vec![Change::Phase(P::ModelLoad, None)]
        );
    }

    /// A failure with a known fix is passed on, in or out of a generation, and changes nothing
    /// of the generation.
    #[test]
    fn a_known_failure_is_passed_on() {
        let f = fooocus_console::KnownFailure::GpuTooNew;
        let mut t = Tracker::new(1);
        let t0 = Instant::now();
        assert_eq!(
            feed(&mut t, EventKind::KnownFailure { failure: f }, t0),
            vec![Change::KnownFailure(f)]
        );
        feed(&mut t, EventKind::TaskStart, t0);
        assert_eq!(
            feed(&mut t, EventKind::KnownFailure { failure: f }, t0),
            vec![Change::KnownFailure(f)]
        );
        assert_eq!(t.current().unwrap().outcome, Outcome::Running);
    }

    /// Issue 26, "decide how the timeout treats the model load": the loads of the first
    /// generation after a start do not count, up to a ceiling; preparation counts, and so do
    /// the loads of later generations.
    #[test]
    fn the_timeout_leaves_out_the_model_load() {
        use fooocus_console::Phase as P;
        let mut t = Tracker::new(1);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        feed(&mut t, EventKind::Ready { url: "u".into() }, at(0));
        feed(&mut t, EventKind::TaskStart, at(10));
        feed(
            &mut t,
            EventKind::Phase {
                phase: P::ModelLoad,
            },
            at(11),
        );
        // While loading, the timeout waits for the most it could leave out.
        let g = t.current().unwrap();
        assert_eq!(g.timeout_from(), at(10) + MODEL_LOAD_EXCLUDED_MAX);
        feed(
            &mut t,
            EventKind::Phase {
                phase: P::Preparation,
            },
            at(71),
        );
        let g = t.current().unwrap();
        // 1 s before the load (preparation) counts, the 60 s load does not.
        assert_eq!(g.timeout_from(), at(70));
        assert_eq!(g.timed(at(100)), Duration::from_secs(30));
        // The next generation of the same process pays its own loads (a move to the device
        // before sampling): the timeout counts them.
        feed(&mut t, EventKind::TaskEnd { seconds: None }, at(120));
        feed(&mut t, EventKind::TaskStart, at(130));
        feed(
            &mut t,
            EventKind::Phase {
                phase: P::ModelLoad,
            },
            at(131),
        );
        feed(&mut t, EventKind::Phase { phase: P::Sampling }, at(141));
        assert_eq!(t.current().unwrap().timeout_from(), at(130));
        // A new process: its first generation's loads are left out again.
        feed(&mut t, EventKind::TaskEnd { seconds: None }, at(150));
        t.restart();
        feed(&mut t, EventKind::Ready { url: "u".into() }, at(200));
        feed(&mut t, EventKind::TaskStart, at(210));
        feed(
            &mut t,
            EventKind::Phase {
                phase: P::ModelLoad,
            },
            at(210),
        );
        feed(&mut t, EventKind::Phase { phase: P::Sampling }, at(230));
        assert_eq!(t.current().unwrap().timeout_from(), at(230));
        // A load that never ends meets the timeout after the ceiling.
        let mut t = Tracker::new(1);
        feed(&mut t, EventKind::Ready { url: "u".into() }, at(0));
        feed(&mut t, EventKind::TaskStart, at(0));
        feed(
            &mut t,
            EventKind::Phase {
                phase: P::ModelLoad,
            },
            at(0),
        );
        feed(
            &mut t,
            EventKind::Phase {
                phase: P::Preparation,
            },
            at(5000),
        );
        assert_eq!(
            t.current().unwrap().timeout_from(),
            at(0) + MODEL_LOAD_EXCLUDED_MAX
        );
    }

    #[test]
    fn a_full_task() {
        let mut t = Tracker::new(1);
        let t0 = Instant::now();
        feed(
            &mut t,
            EventKind::Ready {
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
            feed(&mut t, EventKind::TaskStart, t0),
            vec![Change::Started(1)]
        );
        feed(&mut t, EventKind::ImageStart { index: 1, total: 2 }, t0);
        feed(&mut t, EventKind::Progress { step: 5, total: 10 }, t0);
        feed(&mut t, EventKind::ImageDone { seconds: 1.0 }, t0);
        feed(&mut t, EventKind::ImageStart { index: 2, total: 2 }, t0);
        feed(&mut t, EventKind::ImageDone { seconds: 1.0 }, t0);
        let out = feed(&mut t, EventKind::TaskEnd { seconds: None }, t0);
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
        feed(&mut t, EventKind::TaskStart, t0);
        let out = feed(&mut t, EventKind::TaskStart, t0);
        assert_eq!(finished(&out).closed_by, Some(ClosedBy::NextTask));
        assert_eq!(out.last(), Some(&Change::Started(8)));

        feed(&mut t, EventKind::ImageStart { index: 1, total: 1 }, t0);
        feed(&mut t, EventKind::ImageDone { seconds: 1.0 }, t0);
        let d = t.quiet_deadline().unwrap();
        assert_eq!(d, t0 + QUIET_AFTER_LAST_IMAGE);
        let mut out = Vec::new();
        t.on_tick(d - Duration::from_millis(1), SystemTime::now(), &mut out);
        assert!(out.is_empty());
        t.on_tick(d, SystemTime::now(), &mut out);
        assert_eq!(finished(&out).closed_by, Some(ClosedBy::Quiet));
        assert_eq!(finished(&out).outcome, Outcome::Completed);

        feed(&mut t, EventKind::TaskStart, t0);
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
        let cases: Vec<(Vec<EventKind>, Outcome)> = vec![
            (vec![EventKind::Stopped], Outcome::Stopped),
            (
                vec![
                    EventKind::ImageStart { index: 1, total: 2 },
                    EventKind::Skipped,
                ],
                Outcome::Skipped,
            ),
            (
                vec![EventKind::Error {
                    traceback: Vec::new(),
                    exception: "RuntimeError".into(),
                    message: "x".into(),
                }],
                Outcome::Failed,
            ),
            (
                vec![
                    EventKind::Error {
                        traceback: Vec::new(),
                        exception: "torch.cuda.OutOfMemoryError".into(),
                        message: "x".into(),
                    },
                    EventKind::Oom {
                        message: "CUDA out of memory".into(),
                    },
                ],
                Outcome::OutOfMemory,
            ),
        ];
        for (signals, want) in cases {
            let mut t = Tracker::new(1);
            feed(&mut t, EventKind::TaskStart, t0);
            for s in signals {
                feed(&mut t, s, t0);
            }
            let out = feed(&mut t, EventKind::TaskEnd { seconds: None }, t0);
            assert_eq!(finished(&out).outcome, want);
        }
        let mut t = Tracker::new(1);
        feed(&mut t, EventKind::TaskStart, t0);
        t.mark_limit(LimitKind::Timeout);
        let out = feed(&mut t, EventKind::TaskEnd { seconds: None }, t0);
        assert_eq!(finished(&out).outcome, Outcome::TimedOut);
    }

    #[test]
    fn redraws_are_not_progress_and_dead_worker_is_unhealthy() {
        let mut t = Tracker::new(1);
        let t0 = Instant::now();
        feed(&mut t, EventKind::TaskStart, t0);
        feed(&mut t, EventKind::Progress { step: 3, total: 10 }, t0);
        feed(
            &mut t,
            EventKind::Progress { step: 3, total: 10 },
            t0 + Duration::from_secs(5),
        );
        assert_eq!(t.current().unwrap().last_activity(), t0);
        let out = feed(&mut t, EventKind::WorkerDied, t0);
        assert!(matches!(out[0], Change::Unhealthy(_)));
        feed(&mut t, EventKind::Ready { url: "u".into() }, t0);
        assert!(matches!(t.phase, Phase::Unhealthy { .. }));
    }

    #[test]
    fn activity_refreshes_the_generation_and_opens_none() {
        let mut t = Tracker::new(1);
        let t0 = Instant::now();
        // Start-up model loads: no generation.
        let out = feed(
            &mut t,
            EventKind::Activity {
                what: "model_load".into(),
            },
            t0,
        );
        assert!(out.is_empty() && t.current().is_none());
        feed(&mut t, EventKind::TaskStart, t0);
        let later = t0 + Duration::from_secs(80);
        feed(
            &mut t,
            EventKind::Activity {
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
        let out = feed(&mut t, EventKind::Progress { step: 4, total: 30 }, t0);
        assert_eq!(out[0], Change::Started(7));
        assert_eq!(t.current().unwrap().last_step, Some(4));
    }

    #[test]
    fn the_enhance_phase_is_not_finishing_but_still_closes_when_quiet() {
        let mut t = Tracker::new(1);
        let t0 = Instant::now();
        feed(&mut t, EventKind::TaskStart, t0);
        feed(&mut t, EventKind::ImageStart { index: 1, total: 1 }, t0);
        feed(&mut t, EventKind::ImageDone { seconds: 1.0 }, t0);
        assert!(t.current().unwrap().finishing());
        let t1 = t0 + Duration::from_secs(3);
        feed(
            &mut t,
            EventKind::Activity {
                what: "enhance".into(),
            },
            t1,
        );
        assert!(!t.current().unwrap().finishing(), "enhance samples again");
        assert_eq!(t.quiet_deadline(), Some(t1 + QUIET_AFTER_LAST_IMAGE));
    }

    /// Start-up is learned once, while Fooocus starts, on the port the guard gave it: a
    /// prompt echoed later (stdout and stderr are parsed apart, so each parser alone cannot
    /// know the other stream said ready) moves nothing.
    #[test]
    fn start_up_is_learned_once_on_the_guards_port() {
        let mut t = Tracker::new(1);
        t.expected_port = Some(7865);
        let t0 = Instant::now();
        let ready = |url: &str| EventKind::Ready { url: url.into() };
        let out = feed(&mut t, ready("http://127.0.0.1:9"), t0);
        assert_eq!(out, [Change::WrongPort("http://127.0.0.1:9".into())]);
        assert_eq!(t.phase, Phase::Starting);
        let listen = |url: &str| EventKind::Listening { url: url.into() };
        assert_eq!(feed(&mut t, listen("http://127.0.0.1:7865"), t0).len(), 1);
        assert_eq!(
            feed(
                &mut t,
                EventKind::Version {
                    version: "2.5.5".into()
                },
                t0
            )
            .len(),
            1
        );
        let out = feed(&mut t, ready("http://127.0.0.1:7865"), t0);
        assert_eq!(out, [Change::Ready("http://127.0.0.1:7865".into())]);
        // Everything a prompt could repeat after ready.
        for s in [
            ready("http://127.0.0.1:7865"),
            ready("http://203.0.113.9:80"),
            listen("http://203.0.113.9:80"),
            EventKind::Version {
                version: "2.1.865".into(),
            },
            EventKind::WorkerStarted { pid: 1 },
            EventKind::PortTaken { port: 7865 },
        ] {
            assert_eq!(feed(&mut t, s.clone(), t0), [], "{s:?}");
        }
        assert_eq!(
            t.phase,
            Phase::Ready {
                url: "http://127.0.0.1:7865".into()
            }
        );
        assert_eq!(t.listening.as_deref(), Some("http://127.0.0.1:7865"));
        assert_eq!(t.version.as_deref(), Some("2.5.5"));
        assert!(!t.per_session_stop && t.port_taken.is_none());
    }

    /// Where each task runs inside `try` (2.0.90 and later), the worker can only die before its
    /// ready line; where a task error kills it (before 2.0.90, MRE, Fooocus-API) it can die
    /// later too.
    #[test]
    fn a_worker_death_after_ready_only_where_a_task_can_kill_it() {
        for (kills, unhealthy) in [(false, false), (true, true)] {
            let mut t = Tracker::new(1);
            t.task_errors_kill_worker = kills;
            let t0 = Instant::now();
            feed(&mut t, EventKind::Ready { url: "u".into() }, t0);
            let out = feed(&mut t, EventKind::WorkerDied, t0);
            assert_eq!(
                matches!(t.phase, Phase::Unhealthy { .. }),
                unhealthy,
                "{kills}"
            );
            assert_eq!(out.len(), unhealthy as usize);
        }
        let mut t = Tracker::new(1);
        t.task_errors_kill_worker = false;
        let out = feed(&mut t, EventKind::WorkerDied, Instant::now());
        assert!(matches!(out[..], [Change::Unhealthy(_)]), "before ready");
        assert_eq!(
            feed(&mut t, EventKind::WorkerDied, Instant::now()),
            [],
            "told once"
        );
    }

    #[test]
    fn taken_port_and_per_session_stop_are_kept_until_restart() {
        let mut t = Tracker::new(1);
        let t0 = Instant::now();
        feed(&mut t, EventKind::WorkerStarted { pid: 1 }, t0);
        feed(&mut t, EventKind::PortTaken { port: 7865 }, t0);
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
        feed(&mut t, EventKind::Progress { step: 0, total: 5 }, t0);
        let out = feed(&mut t, EventKind::TaskStart, t0);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(t.current().unwrap().id, 1);
        // A second start after images is a new task.
        feed(&mut t, EventKind::ImageDone { seconds: 1.0 }, t0);
        let out = feed(&mut t, EventKind::TaskStart, t0);
        assert_eq!(finished(&out).id, 1);
        assert_eq!(t.current().unwrap().id, 2);
    }

    #[test]
    fn trailing_bars_after_the_task_end_open_nothing() {
        let mut t = Tracker::new(1);
        let t0 = Instant::now();
        feed(&mut t, EventKind::TaskStart, t0);
        feed(&mut t, EventKind::Progress { step: 5, total: 5 }, t0);
        feed(&mut t, EventKind::TaskEnd { seconds: None }, t0);
        let now = Instant::now();
        let out = feed(&mut t, EventKind::Progress { step: 5, total: 5 }, now);
        assert!(out.is_empty() && t.current().is_none(), "{out:?}");
        // Long after, a bar is a generation whose start was not seen.
        let out = feed(
            &mut t,
            EventKind::Progress { step: 1, total: 5 },
            now + QUEUE_TAIL,
        );
        assert_eq!(out[0], Change::Started(2));
    }
}
