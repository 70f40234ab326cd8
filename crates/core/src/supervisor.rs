//! The supervisor: one thread that owns Fooocus's process, its container, its console, the
//! limit timers and the escalation, driven by messages from small helper threads.
//!
//! Threads:
//! * the supervisor loop (this module's `Loop`), which waits on its channel with a deadline
//!   (the next limit, quiet period, grace period or restart), so limits are kept by a timer;
//! * the spawner, which lives as long as the guard: PR_SET_PDEATHSIG fires when the *thread*
//!   that spawned a child exits, so children are never spawned from short-lived threads;
//! * per run: a reader per output stream and a waiter;
//! * the sampler (see `sampling`), which reports usage to the loop.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{bounded, unbounded, Receiver, RecvTimeoutError, Sender};
use guard_contain::{BackendChoice, Containment, TreeProbe};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::console::{ConsoleBuffer, ConsoleLine, Stream, StreamReader};
use crate::events::{self, EventKind, GuardEvent, LimitKind, StopHow, StopStep};
use crate::generation::{
    Change, ClosedBy, Generation, Outcome, Phase, QueueSignal, Signal, Tracker,
};
use crate::install::{self, Install, LaunchCommand};
use crate::policy::{self, Breach, LimitSet, Usage};
use crate::restart::{Decision, ExitKind, RestartPolicy};
use crate::stop::{self, StopRoute};

/// What the guard runs.
#[derive(Clone, Debug)]
pub enum Target {
    Install(Install),
    /// Any command (`run -- COMMAND ARGS`), still contained and parsed.
    Command(LaunchCommand),
}

impl Target {
    fn command(&self, cfg: &Config) -> LaunchCommand {
        match self {
            Target::Install(i) => install::launch_command(i, &cfg.launch, cfg.launch.port),
            Target::Command(c) => c.clone(),
        }
    }
    fn install(&self) -> Option<&Install> {
        match self {
            Target::Install(i) => Some(i),
            Target::Command(_) => None,
        }
    }
}

pub struct GuardOptions {
    pub config: Config,
    pub target: Option<Target>,
    /// Copy Fooocus's output to this process's stdout (the CLI).
    pub passthrough: bool,
    pub demo: bool,
    /// Start Fooocus right away.
    pub autostart: bool,
    /// Console lines kept for the UI.
    pub console_lines: usize,
    /// Where finished generations and breaches are kept (None: not kept).
    pub store: Option<std::path::PathBuf>,
    /// End the supervisor when Fooocus has stopped for good (exited and not restarted, or
    /// given up): the headless CLI.
    pub exit_when_done: bool,
}

impl GuardOptions {
    pub fn new(config: Config, target: Option<Target>) -> Self {
        GuardOptions {
            config,
            target,
            passthrough: false,
            demo: false,
            autostart: true,
            console_lines: 5000,
            store: None,
            exit_when_done: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FooocusState {
    NotConfigured,
    Stopped,
    Starting,
    Ready,
    Generating,
    Stopping,
    Restarting,
    GaveUp,
}

/// What the user may do in a state: derived here once, and rendered as it is by the tray's menu
/// and the dashboard's buttons (which used to decide each on their own, and disagreed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actions {
    pub start: bool,
    pub stop: bool,
    pub restart: bool,
    pub open_browser: bool,
    pub stop_generation: bool,
}

impl Actions {
    pub fn for_state(state: FooocusState, has_url: bool) -> Actions {
        use FooocusState::*;
        let running = matches!(state, Starting | Ready | Generating | Restarting);
        Actions {
            start: !running && !matches!(state, NotConfigured | Stopping),
            stop: running,
            restart: running,
            open_browser: has_url && matches!(state, Ready | Generating),
            stop_generation: state == Generating,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenerationProgress {
    pub id: u64,
    pub started_ms: i64,
    pub image_index: Option<u32>,
    pub image_total: Option<u32>,
    pub step: Option<u32>,
    pub step_total: Option<u32>,
    pub elapsed_s: f64,
    pub timeout_s: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GracefulStop {
    pub available: bool,
    pub why: String,
}

/// What the UI shows (docs/ipc.md `Status`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub state: FooocusState,
    pub url: Option<String>,
    pub install: Option<Install>,
    pub backend: Option<BackendChoice>,
    pub gpu_status: String,
    pub generation: Option<GenerationProgress>,
    pub unseen_breach: bool,
    pub graceful_stop: GracefulStop,
    pub demo: bool,
    pub restarts: u32,
    pub pid: Option<u32>,
    /// What the user may do now (see `Actions::for_state`).
    pub actions: Actions,
}

/// What subscribers receive.
#[derive(Clone, Debug)]
pub enum Update {
    Event(GuardEvent),
    Status(Box<Status>),
    Console(Vec<ConsoleLine>),
    Sample(Arc<guard_sample::Sample>),
}

#[derive(Debug)]
enum Cmd {
    Start,
    Stop,
    Restart,
    StopGeneration,
    SetConfig(Box<Config>, Sender<Vec<String>>),
    SetTarget(Box<Target>),
    Warn(String),
    Shutdown(Sender<()>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ExitInfo {
    Code(i32),
    /// Unix only: Windows processes end with a code.
    #[cfg_attr(not(unix), allow(dead_code))]
    Signal(i32),
}

enum Msg {
    Cmd(Cmd),
    Output {
        run: u64,
        stream: Stream,
        bytes: Vec<u8>,
    },
    Eof {
        run: u64,
        stream: Stream,
    },
    Exited {
        run: u64,
        exit: ExitInfo,
    },
    Usage(Usage),
    /// Gradio's queue as the gateway relays it.
    Queue {
        run: u64,
        event: guard_gateway::QueueEvent,
    },
    /// Something the container saw itself (Windows job messages).
    Container {
        run: u64,
        event: guard_contain::ContainerEvent,
    },
    StopSent {
        run: u64,
        result: Result<(), String>,
    },
}

/// Shared with the handle and the sampler.
pub(crate) struct Shared {
    pub status: Mutex<Status>,
    pub console: Mutex<ConsoleBuffer>,
    subscribers: Mutex<Vec<Sender<Update>>>,
    /// The current tree, for the sampler: (probe, root pid).
    pub tree: Mutex<Option<(TreeProbe, u32)>>,
    pub generating: AtomicBool,
    pub gpu_status: Mutex<String>,
    /// How the last Fooocus process ended: (code, signal).
    pub last_exit: Mutex<Option<(Option<i32>, Option<i32>)>>,
}

impl Shared {
    pub(crate) fn publish(&self, u: Update) {
        let mut subs = self.subscribers.lock().unwrap();
        subs.retain(|s| match s.try_send(u.clone()) {
            Ok(()) => true,
            // A slow subscriber loses updates rather than stalling the supervisor.
            Err(crossbeam_channel::TrySendError::Full(_)) => true,
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => false,
        });
    }
}

/// A running guard. Cheap to clone; dropping the last clone does not stop it: call
/// [`Guard::shutdown`].
#[derive(Clone)]
pub struct Guard {
    tx: Sender<Msg>,
    shared: Arc<Shared>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl Guard {
    pub fn start(opts: GuardOptions) -> std::io::Result<Guard> {
        let (tx, rx) = unbounded();
        let state = if opts.target.is_some() {
            FooocusState::Stopped
        } else {
            FooocusState::NotConfigured
        };
        let shared = Arc::new(Shared {
            status: Mutex::new(Status {
                state,
                url: None,
                install: opts.target.as_ref().and_then(|t| t.install().cloned()),
                backend: None,
                gpu_status: "not sampled yet".into(),
                generation: None,
                unseen_breach: false,
                graceful_stop: GracefulStop {
                    available: false,
                    why: "Fooocus is not running".into(),
                },
                demo: opts.demo,
                restarts: 0,
                pid: None,
                actions: Actions::for_state(state, false),
            }),
            console: Mutex::new(ConsoleBuffer::new(opts.console_lines)),
            subscribers: Mutex::new(Vec::new()),
            tree: Mutex::new(None),
            generating: AtomicBool::new(false),
            gpu_status: Mutex::new(String::new()),
            last_exit: Mutex::new(None),
        });
        let spawner = Spawner::start()?;
        let autostart = opts.autostart && opts.target.is_some();
        let mut lp = Loop::new(opts, tx.clone(), shared.clone(), spawner);
        let thread = std::thread::Builder::new()
            .name("fooocus-guard-supervisor".into())
            .spawn(move || {
                lp.clean_stale();
                if autostart {
                    lp.start_run(0);
                }
                lp.run(rx);
            })?;
        Ok(Guard {
            tx,
            shared,
            thread: Arc::new(Mutex::new(Some(thread))),
        })
    }

    pub fn start_fooocus(&self) {
        let _ = self.tx.send(Msg::Cmd(Cmd::Start));
    }
    pub fn stop_fooocus(&self) {
        let _ = self.tx.send(Msg::Cmd(Cmd::Stop));
    }
    pub fn restart_fooocus(&self) {
        let _ = self.tx.send(Msg::Cmd(Cmd::Restart));
    }
    pub fn stop_generation(&self) {
        let _ = self.tx.send(Msg::Cmd(Cmd::StopGeneration));
    }

    /// Supervise another install from the next start on.
    pub fn set_target(&self, target: Target) {
        let _ = self.tx.send(Msg::Cmd(Cmd::SetTarget(Box::new(target))));
    }

    /// Tell the user something about the guard itself (console line, event, log).
    pub fn warn(&self, message: &str) {
        let _ = self.tx.send(Msg::Cmd(Cmd::Warn(message.to_string())));
    }

    /// Apply new settings. Returns the names of settings that need a Fooocus restart.
    pub fn set_config(&self, config: Config) -> Vec<String> {
        let (rtx, rrx) = bounded(1);
        if self
            .tx
            .send(Msg::Cmd(Cmd::SetConfig(Box::new(config), rtx)))
            .is_err()
        {
            return Vec::new();
        }
        rrx.recv_timeout(Duration::from_secs(10))
            .unwrap_or_default()
    }

    pub fn status(&self) -> Status {
        self.shared.status.lock().unwrap().clone()
    }

    pub fn mark_breaches_seen(&self) {
        self.shared.status.lock().unwrap().unseen_breach = false;
        let s = self.status();
        self.shared.publish(Update::Status(Box::new(s)));
    }

    pub fn console(&self, after: Option<u64>, query: Option<&str>, max: usize) -> Vec<ConsoleLine> {
        self.shared.console.lock().unwrap().query(after, query, max)
    }

    /// Updates from now on. Bounded: a subscriber that does not keep up loses updates.
    pub fn subscribe(&self) -> Receiver<Update> {
        let (tx, rx) = bounded(4096);
        self.shared.subscribers.lock().unwrap().push(tx);
        rx
    }

    /// Report resource usage of the tree (from the sampler) to the limit policy.
    pub fn report_usage(&self, usage: Usage) {
        let _ = self.tx.send(Msg::Usage(usage));
    }

    /// The tree the sampler should watch, and whether a generation runs (sample faster).
    pub fn tree(&self) -> (Option<(TreeProbe, u32)>, bool) {
        (
            self.shared.tree.lock().unwrap().clone(),
            self.shared.generating.load(Ordering::Relaxed),
        )
    }

    pub fn set_gpu_status(&self, s: &str) {
        let mut g = self.shared.gpu_status.lock().unwrap();
        if *g != s {
            *g = s.to_string();
            drop(g);
            let mut st = self.shared.status.lock().unwrap();
            st.gpu_status = s.to_string();
            let snapshot = st.clone();
            drop(st);
            self.shared.publish(Update::Status(Box::new(snapshot)));
        }
    }

    /// Let every subscriber's channel end (after the supervisor stopped), so their threads
    /// drain what is left and finish.
    pub fn close_subscribers(&self) {
        self.shared.subscribers.lock().unwrap().clear();
    }

    /// Hand a sample to subscribers (the UI's graphs).
    pub fn publish_sample(&self, s: Arc<guard_sample::Sample>) {
        self.shared.publish(Update::Sample(s));
    }

    /// Stop Fooocus cleanly, then end the supervisor. Every process of the tree is gone when
    /// this returns.
    pub fn shutdown(&self) {
        let (rtx, rrx) = bounded(1);
        if self.tx.send(Msg::Cmd(Cmd::Shutdown(rtx))).is_ok() {
            let _ = rrx.recv_timeout(Duration::from_secs(60));
        }
        if let Some(t) = self.thread.lock().unwrap().take() {
            let _ = t.join();
        }
    }

    /// Wait until the supervisor ends by itself (the CLI: gave up, or a command that exited
    /// with restarts off).
    pub fn wait(&self) {
        if let Some(t) = self.thread.lock().unwrap().take() {
            let _ = t.join();
        }
    }

    /// How the last Fooocus process ended: (exit code, signal).
    pub fn last_exit(&self) -> Option<(Option<i32>, Option<i32>)> {
        *self.shared.last_exit.lock().unwrap()
    }
}

// --- the spawner thread -------------------------------------------------------------------

type SpawnReply = Sender<std::io::Result<Child>>;

struct Spawner {
    tx: Sender<(Command, SpawnReply)>,
}

impl Spawner {
    fn start() -> std::io::Result<Spawner> {
        let (tx, rx) = unbounded::<(Command, SpawnReply)>();
        std::thread::Builder::new()
            .name("fooocus-guard-spawner".into())
            .spawn(move || {
                // Lives until the supervisor drops its sender: children's PDEATHSIG is tied to it.
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })?;
        Ok(Spawner { tx })
    }

    fn spawn(&self, cmd: Command) -> std::io::Result<Child> {
        let (rtx, rrx) = bounded(1);
        self.tx
            .send((cmd, rtx))
            .map_err(|_| std::io::Error::other("spawner thread is gone"))?;
        rrx.recv()
            .map_err(|_| std::io::Error::other("spawner thread is gone"))?
    }
}

// --- the loop ------------------------------------------------------------------------------

/// Why the guard ended the current process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EndReason {
    UserStop,
    UserRestart,
    Limit,
    Unhealthy,
    Shutdown,
}

struct Run {
    id: u64,
    pid: u32,
    started: Instant,
    container: Box<dyn Containment>,
    out: StreamReader,
    err: StreamReader,
    end: Option<EndReason>,
    route: StopRoute,
    /// The gateway in front of this Fooocus (None: off, not possible, or it failed to start).
    gateway: Option<Arc<guard_gateway::Gateway>>,
    /// Why there is no gateway, when the user wanted one.
    gateway_note: Option<String>,
    /// Fooocus could not bind its port: (port, whether it is the user's own port).
    port_taken: Option<(u16, bool)>,
    /// Asked to exit (SIGTERM): when the tree is killed if it has not exited by then.
    kill_at: Option<Instant>,
    /// When the console counts as quiet (no output since), to complete an open traceback.
    settle_at: Option<Instant>,
    /// Tree kills that did not finish, in a row.
    kill_failures: u32,
}

#[derive(Debug)]
enum EscPhase {
    /// Waiting for the graceful stop to end the generation.
    Graceful { sent: Instant, deadline: Instant },
    /// Killed; waiting for the exit, then for ready after the restart.
    Restarting { since: Instant },
}

#[derive(Debug)]
struct Escalation {
    /// The graceful stop's grace; None when none was tried (no route, or a kill at once).
    grace: Option<crate::policy::Grace>,
    limit: Option<LimitKind>,
    generation: Option<u64>,
    /// When the limit fell due (or the user asked).
    due: Instant,
    steps: Vec<StopStep>,
    phase: EscPhase,
}

enum Mode {
    Idle,
    Running(Box<Run>),
    WaitingRestart { at: Instant, attempt: u32 },
    GaveUp,
}

struct Loop {
    cfg: Config,
    limits: LimitSet,
    target: Option<Target>,
    passthrough: bool,
    tx: Sender<Msg>,
    shared: Arc<Shared>,
    spawner: Spawner,
    mode: Mode,
    tracker: Tracker,
    /// The observed step time, for the grace of a graceful stop.
    step_clock: crate::policy::StepClock,
    restart: RestartPolicy,
    esc: Option<Escalation>,
    next_run: u64,
    attempts: u32,
    /// Shutting down: who to tell, and by when the main process must have been reaped.
    quit: Option<(Sender<()>, Instant)>,
    changes: Vec<Change>,
    last_status: Option<Status>,
    pending_console: Vec<ConsoleLine>,
    last_console_flush: Instant,
    store: Option<crate::store::HistoryWriter>,
    /// Bytes of Fooocus's output read but not yet handled by the loop (bounded).
    console_inflight: Arc<std::sync::atomic::AtomicUsize>,
    /// The history queue overflowed (said once).
    history_warned: bool,
    exit_when_done: bool,
    /// The last breach, for the summary of the stop it causes.
    last_breach: Option<EventKind>,
}

impl Loop {
    fn new(opts: GuardOptions, tx: Sender<Msg>, shared: Arc<Shared>, spawner: Spawner) -> Loop {
        // The history database is opened and written on a thread of its own: a database held
        // by another process must not hold up the launch or any deadline.
        let (store, next_id) = match opts.store.clone() {
            Some(p) => {
                let (w, first) = crate::store::HistoryWriter::spawn(p, Duration::from_millis(300));
                (Some(w), first)
            }
            None => (None, 1),
        };
        Loop {
            limits: LimitSet::from(&opts.config.limits),
            restart: RestartPolicy::new(opts.config.restart.clone()),
            cfg: opts.config,
            target: opts.target,
            passthrough: opts.passthrough,
            tx,
            shared,
            spawner,
            mode: Mode::Idle,
            tracker: Tracker::new(next_id),
            step_clock: Default::default(),
            esc: None,
            next_run: 1,
            attempts: 0,
            quit: None,
            changes: Vec::new(),
            last_status: None,
            pending_console: Vec::new(),
            last_console_flush: Instant::now(),
            store,
            console_inflight: Default::default(),
            history_warned: false,
            exit_when_done: opts.exit_when_done,
            last_breach: None,
        }
    }

    fn emit(&mut self, mut kind: EventKind) {
        if let EventKind::LimitBreached { .. } = kind {
            self.last_breach = Some(kind.clone());
        }
        crate::why::summarize(&mut kind, self.last_breach.as_ref(), &self.cfg);
        let ev = GuardEvent::now(kind);
        events::trace(&ev);
        let kept = self.store.as_ref().is_none_or(|s| s.record_event(&ev));
        if let EventKind::LimitBreached { .. } = ev.kind {
            self.shared.status.lock().unwrap().unseen_breach = true;
        }
        self.shared.publish(Update::Event(ev));
        if !kept {
            self.history_overflowed();
        }
    }

    /// A tree kill did not finish (the group could not be read, processes stuck in the
    /// kernel): the tree may still run, so it is tried again every second until it empties,
    /// and the user is told.
    fn kill_failed(&mut self, now: Instant, why: String) {
        let Mode::Running(run) = &mut self.mode else {
            return;
        };
        run.kill_failures += 1;
        run.kill_at = Some(now + Duration::from_secs(1));
        let n = run.kill_failures;
        if n == 1 || n % 30 == 0 {
            let msg = format!(
                "could not kill Fooocus's processes ({why}); trying again every second (attempt {n})"
            );
            self.guard_line(&msg);
            self.emit(EventKind::Warning { message: msg });
        }
    }

    /// The disk or the database is too slow for the history queue: records were dropped.
    fn history_overflowed(&mut self) {
        if std::mem::replace(&mut self.history_warned, true) {
            return;
        }
        let msg = "the history database is not keeping up (held by another program, or a slow disk): some history records are dropped; supervision goes on".to_string();
        self.guard_line(&msg);
        self.emit(EventKind::Warning { message: msg });
    }

    fn guard_line(&mut self, text: &str) {
        let line = self
            .shared
            .console
            .lock()
            .unwrap()
            .push(Stream::Guard, text);
        self.pending_console.push(line);
        eprintln!("fooocus-guard: {text}");
    }

    fn clean_stale(&mut self) {
        for group in guard_contain::clean_stale() {
            self.emit(EventKind::StaleCleaned { group });
        }
    }

    fn run(&mut self, rx: Receiver<Msg>) {
        loop {
            let wake = self.next_wake();
            let msg = match wake {
                Some(at) => rx.recv_deadline(at),
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match msg {
                Ok(m) => self.handle(m),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.on_time(Instant::now());
            self.flush_console(false);
            self.publish_status();
            if let Some((_, by)) = &self.quit {
                // Leave only once the waiter has reaped the main process (or it is hopeless).
                if !matches!(self.mode, Mode::Running(_)) || Instant::now() >= *by {
                    self.flush_console(true);
                    self.publish_status();
                    let (done, _) = self.quit.take().expect("quit");
                    self.emit(EventKind::Stopped);
                    let _ = done.send(());
                    break;
                }
            }
            if matches!(self.mode, Mode::Idle | Mode::GaveUp) && self.exit_when_idle() {
                break;
            }
        }
    }

    /// The CLI running a plain command with restarts off ends when the command ends.
    fn exit_when_idle(&self) -> bool {
        self.exit_when_done && self.next_run > 1
    }

    fn next_wake(&self) -> Option<Instant> {
        let mut at: Option<Instant> = None;
        let mut take = |t: Option<Instant>| {
            if let Some(t) = t {
                at = Some(at.map_or(t, |a: Instant| a.min(t)));
            }
        };
        match &self.mode {
            Mode::Running(run) => {
                if self.esc.is_none() {
                    take(
                        policy::next_time_limit(&self.limits, &self.tracker, Some(run.started))
                            .map(|(t, _)| t),
                    );
                }
                take(self.tracker.quiet_deadline());
                take(run.kill_at);
                take(run.settle_at);
            }
            Mode::WaitingRestart { at, .. } => take(Some(*at)),
            _ => {}
        }
        match &self.esc {
            Some(Escalation {
                phase: EscPhase::Graceful { deadline, .. },
                ..
            }) => take(Some(*deadline)),
            Some(Escalation {
                phase: EscPhase::Restarting { since },
                ..
            }) => take(Some(
                *since + self.limits.startup.unwrap_or(RESTART_DEADLINE),
            )),
            None => {}
        }
        if !self.pending_console.is_empty() {
            take(Some(self.last_console_flush + Duration::from_millis(100)));
        }
        if let Some((_, by)) = &self.quit {
            take(Some(*by));
        }
        at
    }

    fn handle(&mut self, m: Msg) {
        match m {
            Msg::Cmd(c) => self.command(c),
            Msg::Output { run, stream, bytes } => {
                self.output(run, stream, Some(&bytes));
                self.console_inflight
                    .fetch_sub(bytes.len(), Ordering::Relaxed);
            }
            Msg::Eof { run, stream } => self.output(run, stream, None),
            Msg::Exited { run, exit } => self.exited(run, exit),
            Msg::Usage(u) => self.usage(u),
            Msg::Container { run, event } => self.container_event(run, event),
            Msg::Queue { run, event } => self.queue_event(run, event),
            Msg::StopSent { run, result } => self.stop_sent(run, result),
        }
    }

    fn command(&mut self, c: Cmd) {
        match c {
            Cmd::Start => match self.mode {
                Mode::Running(_) => {}
                _ => {
                    self.restart.reset();
                    self.start_run(0);
                }
            },
            Cmd::Stop => {
                self.restart.reset();
                self.end_run(EndReason::UserStop);
                if matches!(self.mode, Mode::WaitingRestart { .. } | Mode::GaveUp) {
                    self.mode = Mode::Idle;
                }
            }
            Cmd::Restart => {
                self.restart.reset();
                if matches!(self.mode, Mode::Running(_)) {
                    self.end_run(EndReason::UserRestart);
                } else {
                    self.start_run(0);
                }
            }
            Cmd::StopGeneration => {
                if self.tracker.current().is_some() && self.esc.is_none() {
                    self.begin_stop(None, Instant::now());
                }
            }
            Cmd::SetTarget(t) => {
                let install = t.install().cloned();
                self.target = Some(*t);
                self.shared.status.lock().unwrap().install = install;
            }
            Cmd::Warn(message) => {
                self.guard_line(&message);
                self.emit(EventKind::Warning { message });
            }
            Cmd::SetConfig(cfg, reply) => {
                let needs = self.set_config(*cfg);
                let _ = reply.send(needs);
            }
            Cmd::Shutdown(done) => {
                self.quit = Some((done, Instant::now() + Duration::from_secs(10)));
                self.end_run(EndReason::Shutdown);
                if matches!(self.mode, Mode::WaitingRestart { .. } | Mode::GaveUp) {
                    self.mode = Mode::Idle;
                }
            }
        }
    }

    fn set_config(&mut self, cfg: Config) -> Vec<String> {
        let mut needs = Vec::new();
        if cfg.launch != self.cfg.launch {
            needs.push("launch options".to_string());
        }
        if cfg.install_path != self.cfg.install_path || cfg.python != self.cfg.python {
            needs.push("install".to_string());
        }
        if cfg.gateway != self.cfg.gateway {
            needs.push("gateway".to_string());
        }
        if cfg.containment != self.cfg.containment {
            needs.push("containment backend".to_string());
        }
        self.limits = LimitSet::from(&cfg.limits);
        self.restart.set_config(cfg.restart.clone());
        if let Mode::Running(run) = &self.mode {
            if let Err(e) = run.container.set_limits(&self.limits.containment()) {
                let msg = format!("could not apply the new RAM/CPU caps: {e}");
                self.guard_line(&msg);
                self.emit(EventKind::Warning { message: msg });
            }
        }
        self.cfg = cfg;
        needs
    }

    /// Replace the target (the app picked another install).
    fn start_run(&mut self, attempt: u32) {
        let Some(target) = self.target.clone() else {
            self.guard_line("no Fooocus install is configured: pick one in the settings");
            return;
        };
        if let Some(install) = target.install() {
            // Fooocus's parser would exit with code 2 on an option it lacks: say so instead.
            if let Err(e) = install::check_options(install, &self.cfg.launch) {
                let msg = format!("cannot start Fooocus: {e}");
                self.guard_line(&msg);
                self.emit(EventKind::Warning { message: msg });
                self.mode = Mode::GaveUp;
                return;
            }
            for note in install::launch(install, &self.cfg.launch, self.cfg.launch.port).notes {
                self.guard_line(&note);
            }
        }
        let run_id = self.next_run;
        self.next_run += 1;
        let (launch, gateway, gateway_note) = self.launch_with_gateway(&target, run_id);
        let container = match guard_contain::create(self.cfg.containment_preference(), "fooocus") {
            Ok(c) => c,
            Err(e) => {
                let msg = format!("cannot contain Fooocus: {e}");
                self.guard_line(&msg);
                self.emit(EventKind::Warning { message: msg });
                self.mode = Mode::GaveUp;
                return;
            }
        };
        if let Err(e) = container.set_limits(&self.limits.containment()) {
            let msg = format!("cannot apply the RAM/CPU caps: {e}");
            self.guard_line(&msg);
            self.emit(EventKind::Warning { message: msg });
        }
        let mut cmd = launch.to_command();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Err(e) = container.prepare(&mut cmd) {
            let msg = format!("cannot prepare the container: {e}");
            self.guard_line(&msg);
            self.emit(EventKind::Warning { message: msg });
            self.mode = Mode::GaveUp;
            return;
        }
        let mut child = match self.spawner.spawn(cmd) {
            Ok(c) => c,
            Err(e) => {
                let msg = format!("cannot start {}: {e}", launch.program.display());
                self.guard_line(&msg);
                self.emit(EventKind::Warning { message: msg });
                self.after_failure(Instant::now(), "could not start".into());
                return;
            }
        };
        if let Err(e) = container.adopt(&child) {
            let _ = child.kill();
            let msg = format!("cannot put Fooocus in its container: {e}");
            self.guard_line(&msg);
            self.emit(EventKind::Warning { message: msg });
            self.mode = Mode::GaveUp;
            return;
        }
        if let Some(events) = container.take_events() {
            self.forward("container-events", events, move |event| Msg::Container {
                run: run_id,
                event,
            });
        }
        let pid = child.id();
        let choice = container.choice().clone();
        *self.shared.tree.lock().unwrap() = Some((container.probe(), pid));
        self.spawn_io(run_id, child);
        self.tracker.restart();
        self.attempts += u32::from(attempt > 0);
        self.shared.status.lock().unwrap().backend = Some(choice.clone());
        let line = format!(
            "started {} (pid {pid}) in {}",
            launch.argv_display().join(" "),
            choice.kind.as_str()
        );
        self.guard_line(&line);
        self.emit(EventKind::Started {
            pid,
            backend: choice.kind.as_str().into(),
            backend_reason: choice.reason.clone(),
            version: target.install().and_then(|i| i.version.clone()),
            attempt,
        });
        self.mode = Mode::Running(Box::new(Run {
            id: run_id,
            pid,
            started: Instant::now(),
            container,
            out: StreamReader::new(),
            err: StreamReader::new(),
            end: None,
            route: StopRoute::Unavailable {
                why: "Fooocus is starting".into(),
            },
            gateway,
            gateway_note,
            port_taken: None,
            kill_at: None,
            settle_at: None,
            kill_failures: 0,
        }));
    }

    /// Hands what `from` yields to the supervisor as messages, on a thread of its own that ends
    /// with `from` (its last sender dropped with the run's container or gateway).
    fn forward<T: Send + 'static>(
        &self,
        name: &str,
        from: impl IntoIterator<Item = T> + Send + 'static,
        wrap: impl Fn(T) -> Msg + Send + 'static,
    ) {
        let tx = self.tx.clone();
        let _ = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                for item in from {
                    if tx.send(wrap(item)).is_err() {
                        break;
                    }
                }
            });
    }

    /// A sender for the gateway's queue events, handed to the supervisor as `Msg::Queue`.
    fn queue_events(&self, run_id: u64) -> std::sync::mpsc::Sender<guard_gateway::QueueEvent> {
        let (qtx, qrx) = std::sync::mpsc::channel();
        self.forward("queue-events", qrx, move |event| Msg::Queue {
            run: run_id,
            event,
        });
        qtx
    }

    /// The command for `target`, and the gateway in front of it when the user wants one: then
    /// Fooocus listens on an internal loopback port and the gateway on the user's port. If the
    /// gateway cannot start, the reason is kept and Fooocus starts on the user's port, but only
    /// on loopback when the user shares it (a token, or a listen address beyond loopback): the
    /// LAN never reaches Fooocus without the gateway in front.
    fn launch_with_gateway(
        &mut self,
        target: &Target,
        run_id: u64,
    ) -> (
        LaunchCommand,
        Option<Arc<guard_gateway::Gateway>>,
        Option<String>,
    ) {
        let Target::Install(install) = target else {
            return (target.command(&self.cfg), None, None);
        };
        if !self.cfg.gateway.enabled {
            let note = "the gateway is turned off in the settings".to_string();
            return (target.command(&self.cfg), None, Some(note));
        }
        let internal = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port());
        let listen_ip: std::net::IpAddr = self
            .cfg
            .launch
            .listen
            .as_deref()
            .and_then(|l| l.parse().ok())
            .unwrap_or([127, 0, 0, 1].into());
        let shared = self.cfg.gateway.token.is_some() || !listen_ip.is_loopback();
        let started = internal.map_err(|e| e.to_string()).and_then(|port| {
            guard_gateway::Gateway::start(guard_gateway::GatewayConfig {
                listen: std::net::SocketAddr::new(listen_ip, self.cfg.launch.port),
                upstream: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                token: self.cfg.gateway.token.clone(),
                rate_per_minute: self.cfg.gateway.rate_per_minute,
                events: Some(self.queue_events(run_id)),
                limits: guard_gateway::Limits::default(),
            })
            .map(|g| (g, port))
            .map_err(|e| e.to_string())
        });
        // Fooocus itself only on loopback: behind the gateway, or alone when it cannot start.
        let mut loopback = self.cfg.launch.clone();
        loopback.listen = None;
        match started {
            Ok((gw, port)) => {
                let cmd = install::launch_command(install, &loopback, port);
                (cmd, Some(Arc::new(gw)), None)
            }
            Err(why) if shared => {
                let msg = format!(
                    "graceful stop is unavailable and Fooocus is not shared on the network: {why}; Fooocus starts on this computer only (127.0.0.1:{port}), because without the gateway nothing would check the token or the rate; free the port and restart Fooocus to share it again",
                    port = self.cfg.launch.port
                );
                self.guard_line(&msg);
                self.emit(EventKind::Warning { message: msg });
                let cmd = install::launch_command(install, &loopback, self.cfg.launch.port);
                let note =
                    format!("{why}; Fooocus is on this computer only until the gateway can start");
                (cmd, None, Some(note))
            }
            Err(why) => {
                let msg = format!(
                    "graceful stop is unavailable: {why}; Fooocus starts directly on port {}",
                    self.cfg.launch.port
                );
                self.guard_line(&msg);
                self.emit(EventKind::Warning { message: msg });
                (target.command(&self.cfg), None, Some(why))
            }
        }
    }

    /// Where the user's browser should go: the gateway's address when there is one.
    fn user_url(&self, url: String) -> String {
        match &self.mode {
            Mode::Running(run) if run.gateway.is_some() => {
                let host = match self.cfg.launch.listen.as_deref() {
                    None | Some("0.0.0.0") | Some("::") => "127.0.0.1",
                    Some(h) => h,
                };
                format!("http://{host}:{}", self.cfg.launch.port)
            }
            _ => url,
        }
    }

    fn spawn_io(&self, run: u64, mut child: Child) {
        let streams: [(Option<Box<dyn Read + Send>>, Stream); 2] = [
            (
                child
                    .stdout
                    .take()
                    .map(|s| Box::new(s) as Box<dyn Read + Send>),
                Stream::Stdout,
            ),
            (
                child
                    .stderr
                    .take()
                    .map(|s| Box::new(s) as Box<dyn Read + Send>),
                Stream::Stderr,
            ),
        ];
        // The pipes tell the waiter when they have sent their last bytes, so that what
        // Fooocus printed just before it exited (a taken port, a traceback) reaches the
        // loop before its exit does.
        let (closed_tx, closed_rx) = bounded::<()>(2);
        let mut open_pipes = 0;
        for (pipe, stream) in streams {
            let Some(mut pipe) = pipe else { continue };
            open_pipes += 1;
            let closed_tx = closed_tx.clone();
            let tx = self.tx.clone();
            let passthrough = self.passthrough;
            let inflight = self.console_inflight.clone();
            let _ = std::thread::Builder::new()
                .name(format!("fooocus-{stream:?}"))
                .spawn(move || {
                    // Read continuously: a full pipe blocks Fooocus's print and looks like a hang.
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut dropped = 0usize;
                    loop {
                        match pipe.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => {
                                if passthrough {
                                    let mut o = std::io::stdout().lock();
                                    let _ = o.write_all(&buf[..n]);
                                    let _ = o.flush();
                                }
                                // Fooocus flooding its console must not grow the guard (it
                                // sits outside the cgroup, so no cap would catch it): past
                                // the budget, output is dropped and counted, and the pipe is
                                // still read so Fooocus never blocks on a print.
                                if inflight.load(Ordering::Relaxed) + n > CONSOLE_BUDGET {
                                    dropped += n;
                                    continue;
                                }
                                let mut bytes = Vec::new();
                                if dropped > 0 {
                                    bytes.extend_from_slice(
                                        format!("\n[fooocus-guard: {dropped} bytes of Fooocus's output dropped: it printed faster than the guard could read]\n")
                                            .as_bytes(),
                                    );
                                    dropped = 0;
                                }
                                bytes.extend_from_slice(&buf[..n]);
                                inflight.fetch_add(bytes.len(), Ordering::Relaxed);
                                if tx.send(Msg::Output { run, stream, bytes }).is_err() {
                                    break;
                                }
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                            Err(_) => break,
                        }
                    }
                    let _ = tx.send(Msg::Eof { run, stream });
                    let _ = closed_tx.send(());
                });
        }
        drop(closed_tx);
        let tx = self.tx.clone();
        // The waiter owns the Child: only it reaps the main process.
        let _ = std::thread::Builder::new()
            .name("fooocus-waiter".into())
            .spawn(move || {
                let exit = match child.wait() {
                    Ok(st) => exit_info(st),
                    Err(_) => ExitInfo::Code(-1),
                };
                // A grandchild may hold the pipes open for ever: wait a little, not for them
                // (the loop kills the tree on exit, which closes them).
                let deadline = Instant::now() + PIPE_DRAIN;
                for _ in 0..open_pipes {
                    if closed_rx.recv_deadline(deadline).is_err() {
                        break;
                    }
                }
                let _ = tx.send(Msg::Exited { run, exit });
            });
    }

    /// Fooocus printed `bytes` on `stream` (None: the stream closed, flush what is partial).
    fn output(&mut self, run_id: u64, stream: Stream, bytes: Option<&[u8]>) {
        let Mode::Running(run) = &mut self.mode else {
            return;
        };
        if run.id != run_id {
            return;
        }
        let now = Instant::now();
        let wall = SystemTime::now();
        run.settle_at = Some(now + CONSOLE_SETTLE);
        let reader = if stream == Stream::Stdout {
            &mut run.out
        } else {
            &mut run.err
        };
        let mut console = self.shared.console.lock().unwrap();
        let pending = &mut self.pending_console;
        let tracker = &mut self.tracker;
        let changes = &mut self.changes;
        // Fooocus's console holds prompts: it reaches the log files only if the user opted in.
        let log_console = self.cfg.log_prompts;
        let on_line = |line: &str| {
            if log_console {
                tracing::info!(target: "fooocus_guard::console", stream = ?stream, line);
            }
            pending.push(console.push(stream, line))
        };
        let step_clock = &mut self.step_clock;
        let on_signal = |sig| {
            match &sig {
                Signal::TaskStart => step_clock.reset(),
                Signal::Progress { step, total } => step_clock.on_progress(*step, *total, now),
                _ => {}
            }
            tracker.on_signal(sig, now, wall, changes)
        };
        match bytes {
            Some(b) => reader.feed(b, on_line, on_signal),
            None => reader.finish(on_line, on_signal),
        }
        drop(console);
        self.apply_changes(now);
    }

    /// Act on what the tracker saw.
    fn apply_changes(&mut self, now: Instant) {
        let changes = std::mem::take(&mut self.changes);
        for c in changes {
            match c {
                Change::Listening(url) => {
                    let url = self.user_url(url);
                    self.shared.status.lock().unwrap().url = Some(url);
                    self.update_route();
                }
                Change::Version(_) => self.update_route(),
                Change::Ready(url) => {
                    self.restart.on_ready();
                    let startup_s = match &self.mode {
                        Mode::Running(r) => now.duration_since(r.started).as_secs_f64(),
                        _ => 0.0,
                    };
                    let url = self.user_url(url);
                    self.shared.status.lock().unwrap().url = Some(url.clone());
                    self.update_route();
                    self.emit(EventKind::Ready { url, startup_s });
                    self.finish_restart_step(now);
                }
                Change::Unhealthy(reason) => {
                    self.guard_line(&format!(
                        "Fooocus is up but cannot generate: {reason}; restarting it"
                    ));
                    self.emit(EventKind::Unhealthy { reason });
                    self.end_run(EndReason::Unhealthy);
                }
                Change::Started(id) => {
                    self.shared.generating.store(true, Ordering::Relaxed);
                    self.emit(EventKind::GenerationStarted { generation_id: id });
                }
                Change::Progress => {}
                Change::Error { exception, message } => {
                    if let Some(port) = taken_port(&message) {
                        self.port_taken(port);
                    }
                    self.emit(EventKind::FooocusError { exception, message });
                }
                Change::Oom(message) => self.emit(EventKind::OutOfMemory { message }),
                Change::Finished(g) => self.generation_finished(*g, now),
            }
        }
    }

    fn update_route(&mut self) {
        let Mode::Running(run) = &mut self.mode else {
            return;
        };
        let install = self.target.as_ref().and_then(|t| t.install());
        let url = self
            .shared
            .status
            .lock()
            .unwrap()
            .url
            .clone()
            .or_else(|| self.tracker.listening.clone());
        // The status URL is the gateway's when there is one, which asks callers for the token:
        // the guard's own stop goes to Fooocus directly, on its internal loopback port.
        let url = match &run.gateway {
            Some(gw) if url.is_some() => Some(format!("http://{}", gw.upstream())),
            _ => url,
        };
        let version = self
            .tracker
            .version
            .clone()
            .or_else(|| install.and_then(|i| i.version.clone()));
        // A develop build between 2.1.865 and 2.2.0 still says 2.1.865 but already stops per
        // session; its worker's "Started worker with PID" line gives it away.
        let version = if self.tracker.per_session_stop {
            None
        } else {
            version
        };
        let creds = install
            .map(|i| stop::Credentials::for_install(&i.fooocus_dir, &self.cfg.launch.extra_args))
            .unwrap_or_default();
        run.route = StopRoute::for_fooocus(
            install.map(|i| i.fork),
            version.as_deref(),
            url.as_deref(),
            run.gateway.is_some(),
            &creds,
        );
        if let (StopRoute::Unavailable { why }, Some(note)) = (&mut run.route, &run.gateway_note) {
            why.push_str(&format!(" ({note})"));
        }
    }

    fn generation_finished(&mut self, g: Generation, now: Instant) {
        self.shared.generating.store(false, Ordering::Relaxed);
        // The console ended the task: a closed tab's call the gateway still held was it.
        if let Mode::Running(run) = &self.mode {
            if let Some(gw) = &run.gateway {
                gw.task_ended();
            }
        }
        // A graceful stop ended it.
        if let Some(esc) = &mut self.esc {
            if esc.generation == Some(g.id) {
                if let EscPhase::Graceful { sent, .. } = esc.phase {
                    let took = now.duration_since(sent).as_secs_f64();
                    esc.steps.push(StopStep {
                        step: "graceful".into(),
                        at_s: sent.saturating_duration_since(esc.due).as_secs_f64(),
                        took_s: took,
                        result: "ended".into(),
                    });
                    let esc = self.esc.take().expect("escalation");
                    let mut g = g;
                    g.stop_how = Some(StopHow::Graceful);
                    g.stop_steps = esc.steps.clone();
                    if esc.limit.is_none() {
                        g.outcome = Outcome::Stopped;
                    }
                    self.guard_line(&format!(
                        "generation {} stopped gracefully in {took:.1} s",
                        g.id
                    ));
                    self.emit(EventKind::GenerationStopped {
                        generation_id: Some(g.id),
                        how: StopHow::Graceful,
                        limit: esc.limit,
                        took_s: now.saturating_duration_since(esc.due).as_secs_f64(),
                        steps: esc.steps,
                        grace_s: esc.grace.as_ref().map_or(0.0, |g| g.duration.as_secs_f64()),
                        grace: esc.grace.as_ref().map_or("none", |g| g.reason).into(),
                        summary: None,
                    });
                    self.record_finished(g);
                    return;
                }
            }
        }
        self.record_finished(g);
    }

    fn record_finished(&mut self, g: Generation) {
        self.emit(EventKind::GenerationFinished {
            generation_id: g.id,
            outcome: g.outcome.as_str().into(),
            seconds: g.duration_s().unwrap_or(0.0),
            closed_by: g.closed_by.map(|c| c.as_str()).unwrap_or("").into(),
            images_done: g.images_done,
            images_total: g.images_total,
            peak_ram_bytes: g.peaks.ram_bytes,
            peak_vram_bytes: g.peaks.vram_bytes,
            peak_cpu_percent: g.peaks.cpu_percent,
        });
        if !self.store.as_ref().is_none_or(|s| s.save_generation(&g)) {
            self.history_overflowed();
        }
    }

    fn usage(&mut self, u: Usage) {
        if !matches!(self.mode, Mode::Running(_)) {
            return;
        }
        if let Some(g) = self.tracker.current_mut() {
            g.peaks.observe(
                u.ram_bytes,
                u.swap_bytes,
                u.tree_vram_bytes.or(u.device_vram_bytes),
                u.cpu_percent,
            );
        }
        if self.esc.is_some() {
            return;
        }
        let watchdog = match &self.mode {
            Mode::Running(r) => r
                .container
                .choice()
                .unenforced
                .iter()
                .any(|s| s == "memory"),
            _ => false,
        };
        let generating = self.tracker.current().is_some();
        if let Some(b) = policy::check_usage(&self.limits, &u, generating, watchdog) {
            self.breach(b, Instant::now());
        }
    }

    fn on_time(&mut self, now: Instant) {
        let wall = SystemTime::now();
        // Graceful stop not honoured in time: kill.
        if let Some(Escalation {
            phase: EscPhase::Graceful { sent, deadline },
            ..
        }) = &self.esc
        {
            if now >= *deadline {
                let sent = *sent;
                let esc = self.esc.as_mut().expect("escalation");
                esc.steps.push(StopStep {
                    step: "graceful".into(),
                    at_s: sent.saturating_duration_since(esc.due).as_secs_f64(),
                    took_s: now.duration_since(sent).as_secs_f64(),
                    result: "ignored".into(),
                });
                self.kill_for_escalation(now);
            }
        }
        if let Mode::Running(run) = &mut self.mode {
            if run.settle_at.is_some_and(|at| now >= at) {
                run.settle_at = None;
                let wall = SystemTime::now();
                let (tracker, changes) = (&mut self.tracker, &mut self.changes);
                for reader in [&mut run.out, &mut run.err] {
                    reader.settle(|sig| tracker.on_signal(sig, now, wall, changes));
                }
            }
        }
        if let Mode::Running(run) = &mut self.mode {
            if run.kill_at.is_some_and(|at| now >= at) {
                run.kill_at = None;
                if let Err(e) = run.container.kill_tree() {
                    self.kill_failed(now, e.to_string());
                }
            }
        }
        // The restart after a kill has a deadline too: past the start-up limit (10 min when
        // that is off) the escalation ends and the start-up limit watches Fooocus again.
        if let Some(Escalation {
            phase: EscPhase::Restarting { since },
            ..
        }) = &self.esc
        {
            if now >= *since + self.limits.startup.unwrap_or(RESTART_DEADLINE) {
                let since = *since;
                let esc = self.esc.take().expect("escalation");
                self.guard_line(&format!(
                    "Fooocus was not ready {:.0} s after the kill",
                    now.duration_since(since).as_secs_f64()
                ));
                if let (Some(store), Some(id)) = (&self.store, esc.generation) {
                    let _ = store.append_stop_step(
                        id,
                        &StopStep {
                            step: "restart".into(),
                            at_s: since.saturating_duration_since(esc.due).as_secs_f64(),
                            took_s: now.duration_since(since).as_secs_f64(),
                            result: "not ready in time".into(),
                        },
                    );
                }
            }
        }
        match &self.mode {
            // Stopping on purpose: no limit applies any more.
            Mode::Running(run) if run.end.is_some() => {}
            Mode::Running(run) => {
                let started = run.started;
                if self.esc.is_none() {
                    if let Some(b) =
                        policy::check_time(&self.limits, &self.tracker, Some(started), now)
                    {
                        self.breach(b, now);
                    }
                }
                self.tracker.on_tick(now, wall, &mut self.changes);
                self.apply_changes(now);
            }
            Mode::WaitingRestart { at, attempt } if now >= *at => {
                let attempt = *attempt;
                self.mode = Mode::Idle;
                self.start_run(attempt);
            }
            _ => {}
        }
    }

    fn breach(&mut self, b: Breach, now: Instant) {
        let generation = self.tracker.current().map(|g| g.id);
        let route_ok = matches!(&self.mode, Mode::Running(r) if r.route.available());
        let generation_limit = matches!(
            b.limit,
            LimitKind::Timeout | LimitKind::Stall | LimitKind::Vram
        );
        let action = if b.limit == LimitKind::Startup {
            "restart"
        } else if generation_limit && route_ok && generation.is_some() {
            "stop_generation"
        } else {
            "kill_and_restart"
        };
        let what = match b.limit {
            LimitKind::Timeout => format!(
                "generation {} ran for {} -- over its timeout of {}",
                generation.unwrap_or(0),
                crate::units::format_duration(Duration::from_secs_f64(b.observed)),
                crate::units::format_duration(Duration::from_secs_f64(b.configured))
            ),
            LimitKind::Stall => format!(
                "generation {} made no progress for {}",
                generation.unwrap_or(0),
                crate::units::format_duration(Duration::from_secs_f64(b.observed))
            ),
            LimitKind::Startup => format!(
                "Fooocus was not ready after {}",
                crate::units::format_duration(Duration::from_secs_f64(b.observed))
            ),
            k => format!(
                "{} use {} is over the cap of {}",
                k.as_str(),
                crate::units::format_size(b.observed as u64),
                crate::units::format_size(b.configured as u64)
            ),
        };
        self.guard_line(&format!("limit breached: {what}; action: {action}"));
        self.emit(EventKind::LimitBreached {
            limit: b.limit,
            configured: b.configured,
            observed: b.observed,
            action: action.into(),
            generation_id: generation,
            source: b.source.map(String::from),
        });
        if b.limit == LimitKind::Startup {
            self.emit(EventKind::Unhealthy { reason: what });
            self.end_run(EndReason::Unhealthy);
            return;
        }
        self.tracker.mark_limit(b.limit);
        let due = b.due.unwrap_or(now);
        if action == "stop_generation" {
            self.begin_stop(Some(b.limit), due);
        } else {
            self.esc = Some(Escalation {
                grace: None,
                limit: Some(b.limit),
                generation,
                due,
                steps: Vec::new(),
                phase: EscPhase::Restarting { since: now },
            });
            self.kill_for_escalation(now);
        }
    }

    /// Ask Fooocus to stop the current generation; kill if it cannot be asked.
    fn begin_stop(&mut self, limit: Option<LimitKind>, due: Instant) {
        let now = Instant::now();
        let generation = self.tracker.current().map(|g| g.id);
        let Mode::Running(run) = &self.mode else {
            return;
        };
        let route = run.route.clone();
        let gateway = run.gateway.clone();
        let run_id = run.id;
        let grace = crate::policy::grace_for(self.limits.grace, self.step_clock.step_seconds());
        let mut esc = Escalation {
            grace: Some(grace.clone()),
            limit,
            generation,
            due,
            steps: Vec::new(),
            phase: EscPhase::Graceful {
                sent: now,
                deadline: now + grace.duration,
            },
        };
        if !route.available() {
            let why = match &route {
                StopRoute::Unavailable { why } => why.clone(),
                _ => String::new(),
            };
            esc.steps.push(StopStep {
                step: "graceful".into(),
                at_s: 0.0,
                took_s: 0.0,
                result: format!("unavailable: {why}"),
            });
            esc.grace = None;
            self.esc = Some(esc);
            self.kill_for_escalation(now);
            return;
        }
        self.esc = Some(esc);
        let tx = self.tx.clone();
        let shared = self.shared.clone();
        let _ = std::thread::Builder::new()
            .name("fooocus-stop".into())
            .spawn(move || {
                let result = match (&route, gateway) {
                    // The tab's own Stop, through the gateway that saw its session.
                    (StopRoute::Gateway, Some(gw)) => {
                        gw.request_stop().map(|_| ()).map_err(|e| e.to_string())
                    }
                    _ => {
                        let still = || shared.generating.load(Ordering::Relaxed);
                        stop::request_stop(&route, &still).map(|_| ())
                    }
                };
                let _ = tx.send(Msg::StopSent {
                    run: run_id,
                    result,
                });
            });
    }

    fn stop_sent(&mut self, run_id: u64, result: Result<(), String>) {
        let current = matches!(&self.mode, Mode::Running(r) if r.id == run_id);
        if !current {
            return;
        }
        if let Err(why) = result {
            if let Some(Escalation {
                phase: EscPhase::Graceful { sent, .. },
                ..
            }) = &self.esc
            {
                let sent = *sent;
                let now = Instant::now();
                let esc = self.esc.as_mut().expect("escalation");
                esc.steps.push(StopStep {
                    step: "graceful".into(),
                    at_s: sent.saturating_duration_since(esc.due).as_secs_f64(),
                    took_s: now.duration_since(sent).as_secs_f64(),
                    result: format!("failed: {why}"),
                });
                self.kill_for_escalation(now);
            }
        }
    }

    /// Step 2 of the escalation: kill the tree; the exit then restarts Fooocus (step 3).
    fn kill_for_escalation(&mut self, now: Instant) {
        let Mode::Running(run) = &mut self.mode else {
            self.esc = None;
            return;
        };
        run.end = Some(EndReason::Limit);
        let report = run.container.kill_tree();
        let done = Instant::now();
        let Some(esc) = self.esc.as_mut() else { return };
        let (took, result) = match &report {
            Ok(r) => (
                r.elapsed.as_secs_f64(),
                format!("reaped {} processes", r.signalled),
            ),
            Err(e) => (
                done.duration_since(now).as_secs_f64(),
                format!("failed: {e}"),
            ),
        };
        esc.steps.push(StopStep {
            step: "kill".into(),
            at_s: now.saturating_duration_since(esc.due).as_secs_f64(),
            took_s: took,
            result,
        });
        esc.phase = EscPhase::Restarting { since: done };
        if let Err(e) = &report {
            let why = e.to_string();
            self.kill_failed(done, why);
        }
        let Some(esc) = self.esc.as_mut() else { return };
        let took_total = done.saturating_duration_since(esc.due).as_secs_f64();
        let (limit, generation, steps) = (esc.limit, esc.generation, esc.steps.clone());
        let (grace_s, grace) = match &esc.grace {
            Some(g) => (g.duration.as_secs_f64(), g.reason.to_string()),
            None => (0.0, "none".to_string()),
        };
        let wall = SystemTime::now();
        if let Some(g) = self.tracker.current_mut() {
            g.stop_how = Some(StopHow::Killed);
            g.stop_steps = steps.clone();
        }
        let forced = Some(limit.map(Outcome::for_limit).unwrap_or(Outcome::Killed));
        self.tracker
            .close(ClosedBy::Limit, forced, wall, &mut self.changes);
        self.guard_line(&format!(
            "tree killed {:.1} ms after the limit fell due; restarting Fooocus",
            took_total * 1000.0
        ));
        if generation.is_some() {
            self.emit(EventKind::GenerationStopped {
                generation_id: generation,
                how: StopHow::Killed,
                limit,
                took_s: took_total,
                steps,
                grace_s,
                grace,
                summary: None,
            });
        }
        self.apply_changes(done);
    }

    /// Ready after a limit restart: the escalation is over.
    fn finish_restart_step(&mut self, now: Instant) {
        if let Some(Escalation {
            phase: EscPhase::Restarting { since },
            ..
        }) = &self.esc
        {
            let since = *since;
            let esc = self.esc.take().expect("escalation");
            let step = StopStep {
                step: "restart".into(),
                at_s: since.saturating_duration_since(esc.due).as_secs_f64(),
                took_s: now.duration_since(since).as_secs_f64(),
                result: "ready".into(),
            };
            self.guard_line(&format!(
                "Fooocus is ready again {:.1} s after the kill",
                step.took_s
            ));
            if let (Some(store), Some(id)) = (&self.store, esc.generation) {
                // A dropped step is said by the next overflow of a larger record.
                let _ = store.append_stop_step(id, &step);
            }
        }
    }

    /// End the current process for `why`: a clean stop (SIGTERM, a few seconds, then the
    /// tree kill), or a kill straight away.
    fn end_run(&mut self, why: EndReason) {
        let Mode::Running(run) = &mut self.mode else {
            return;
        };
        run.end = Some(why);
        if matches!(
            why,
            EndReason::UserStop | EndReason::Shutdown | EndReason::UserRestart
        ) {
            self.shared.status.lock().unwrap().state = FooocusState::Stopping;
            // Fooocus holds no state worth a long wait; 5 s covers its exit handlers. The loop
            // goes on meanwhile (a timer, like a limit stop's grace), so it never sleeps here.
            if terminate(run.pid) {
                run.kill_at = Some(Instant::now() + Duration::from_secs(5));
                return;
            }
        }
        if let Err(e) = run.container.kill_tree() {
            self.kill_failed(Instant::now(), e.to_string());
        }
    }

    fn queue_event(&mut self, run_id: u64, event: guard_gateway::QueueEvent) {
        use guard_gateway::QueueEvent;
        if !matches!(&self.mode, Mode::Running(run) if run.id == run_id) {
            return;
        }
        let signal = match event {
            QueueEvent::Generating {
                session_hash,
                fn_index,
            } => QueueSignal::Generating {
                session_hash,
                fn_index,
            },
            QueueEvent::Completed {
                session_hash,
                fn_index,
            } => QueueSignal::Completed {
                session_hash,
                fn_index,
            },
            QueueEvent::Joined { .. } | QueueEvent::Started { .. } => return,
        };
        let now = Instant::now();
        self.tracker
            .on_queue(signal, now, SystemTime::now(), &mut self.changes);
        self.apply_changes(now);
    }

    fn container_event(&mut self, run_id: u64, event: guard_contain::ContainerEvent) {
        use guard_contain::ContainerEvent;
        let Mode::Running(run) = &self.mode else {
            return;
        };
        if run.id != run_id {
            return;
        }
        match event {
            // Windows does not kill at the job's memory limit: the allocation that crossed it
            // failed, and Fooocus is left in whatever state its error handling leaves. Treat it
            // as the RAM cap's breach: stop, kill, restart.
            ContainerEvent::MemoryLimitHit => {
                let Some(cap) = self.limits.memory else {
                    return;
                };
                let observed = run
                    .container
                    .native_usage()
                    .map(|u| u.peak_memory_bytes.max(cap))
                    .unwrap_or(cap);
                self.breach(
                    Breach {
                        limit: LimitKind::Memory,
                        configured: cap as f64,
                        observed: observed as f64,
                        due: None,
                        source: None,
                    },
                    Instant::now(),
                );
            }
            ContainerEvent::ProcessExited {
                pid,
                code,
                abnormal: true,
            } if pid != run.pid => {
                let code = code.map_or("unknown".into(), |c| format!("{c:#x}"));
                self.guard_line(&format!(
                    "a process of Fooocus's tree (pid {pid}) crashed (exit code {code})"
                ));
            }
            ContainerEvent::NewProcess { .. }
            | ContainerEvent::ProcessExited { .. }
            | ContainerEvent::Empty => {}
        }
    }

    fn exited(&mut self, run_id: u64, exit: ExitInfo) {
        let Mode::Running(run) = &mut self.mode else {
            return;
        };
        if run.id != run_id {
            return;
        }
        // Whatever the main process left behind goes with it.
        let _ = run.container.kill_tree();
        let oom_kills = run.container.oom_kills();
        let (code, signal) = match exit {
            ExitInfo::Code(c) => (Some(c), None),
            ExitInfo::Signal(s) => (None, Some(s)),
        };
        // Linux: the kernel SIGKILLed it in the cgroup. Windows: the job refused memory.
        let oom = oom_kills > 0 && (signal == Some(9) || cfg!(windows));
        *self.shared.last_exit.lock().unwrap() = Some((code, signal));
        let end = run.end;
        let pid = run.pid;
        let port_taken = run.port_taken.or_else(|| {
            let port = self.tracker.port_taken?;
            Some((port, run.gateway.is_none() && port == self.cfg.launch.port))
        });
        let now = Instant::now();
        *self.shared.tree.lock().unwrap() = None;
        self.shared.generating.store(false, Ordering::Relaxed);
        // The next run's gateway binds the same port: close this one now, even if a stop
        // request in flight still holds it.
        if let Some(gw) = &run.gateway {
            gw.close();
        }
        let peak_ram = self.tracker.current().and_then(|g| g.peaks.ram_bytes);
        self.tracker
            .on_exit(oom, SystemTime::now(), &mut self.changes);
        self.mode = Mode::Idle;
        self.apply_changes(now);
        self.emit(EventKind::Exited {
            pid,
            code,
            signal,
            oom,
            expected: end.is_some(),
        });
        if oom {
            let cap = self.limits.memory.unwrap_or(0);
            self.guard_line(&format!(
                "Fooocus was killed by the kernel: the tree reached its RAM cap of {}",
                crate::units::format_size(cap)
            ));
            self.emit(EventKind::LimitBreached {
                limit: LimitKind::Memory,
                configured: cap as f64,
                observed: peak_ram.unwrap_or(cap) as f64,
                action: "killed_by_kernel".into(),
                generation_id: None,
                source: None,
            });
        }
        match end {
            Some(EndReason::UserStop) | Some(EndReason::Shutdown) => {
                self.guard_line("Fooocus stopped");
            }
            Some(EndReason::UserRestart) => self.start_run(self.attempts + 1),
            Some(EndReason::Limit) => {
                let limit = self.esc.as_ref().and_then(|e| e.limit);
                match self.restart.on_limit_kill(now) {
                    Decision::Restart { delay, .. } if delay.is_zero() => {
                        self.start_run(self.attempts + 1)
                    }
                    Decision::Restart { attempt, delay } => self.schedule_restart(
                        now,
                        attempt,
                        delay,
                        "stopped again for a limit".into(),
                    ),
                    Decision::GiveUp { failures } => {
                        self.esc = None;
                        let what = limit.map_or("a", |l| l.as_str());
                        self.give_up(
                            failures,
                            format!(
                                "its {what} limit stopped it each time; a cap below what Fooocus needs once loaded is the usual cause: raise it in the settings (History shows what past generations used)"
                            ),
                        )
                    }
                    Decision::Stay => self.start_run(self.attempts + 1),
                }
            }
            Some(EndReason::Unhealthy) => {
                self.after_failure(now, "Fooocus could not generate".into())
            }
            None => {
                let kind = if code == Some(0) {
                    ExitKind::Clean
                } else {
                    ExitKind::Failure
                };
                let reason = match (code, signal, oom, port_taken) {
                    (_, _, true, _) => "killed by the RAM cap".to_string(),
                    // Said in plain words, and restarted with backoff: the other program may
                    // let go of the port (give-up, if it comes, names the port).
                    (_, _, _, Some((port, true))) => format!(
                        "could not listen: port {port} is taken by another program (close it, or pick another port in the settings)"
                    ),
                    (Some(c), _, _, _) => format!("exited with code {c}"),
                    (_, Some(s), _, _) => format!("killed by signal {s}"),
                    _ => "exited".to_string(),
                };
                self.guard_line(&format!("Fooocus {reason}"));
                match self.restart.on_exit(kind, now) {
                    Decision::Restart { attempt, delay } => {
                        self.schedule_restart(now, attempt, delay, reason)
                    }
                    Decision::GiveUp { failures } => self.give_up(failures, reason),
                    Decision::Stay => {}
                }
            }
        }
    }

    /// Gradio was given `--port P` and P is taken: it tries only that port and exits
    /// (networking.py: "Cannot find empty port in range: P-P"). Behind the gateway P is the
    /// guard's internal port, and the restart picks another; the user's own port stays taken
    /// until they act, so restarting cannot help.
    fn port_taken(&mut self, port: u16) {
        let Mode::Running(run) = &mut self.mode else {
            return;
        };
        let users = run.gateway.is_none() && port == self.cfg.launch.port;
        run.port_taken = Some((port, users));
        let msg = if users {
            format!("port {port} is taken by another program (another Fooocus?): close it, or pick another port in the settings")
        } else {
            format!("Fooocus's internal port {port} was taken just before it started; the restart uses another")
        };
        self.guard_line(&msg);
        self.emit(EventKind::Warning { message: msg });
    }

    fn after_failure(&mut self, now: Instant, reason: String) {
        match self.restart.on_exit(ExitKind::Failure, now) {
            Decision::Restart { attempt, delay } => {
                self.schedule_restart(now, attempt, delay, reason)
            }
            Decision::GiveUp { failures } => self.give_up(failures, reason),
            Decision::Stay => self.mode = Mode::Idle,
        }
    }

    fn schedule_restart(&mut self, now: Instant, attempt: u32, delay: Duration, reason: String) {
        self.shared.status.lock().unwrap().restarts += 1;
        self.guard_line(&format!(
            "restarting Fooocus in {:.1} s (attempt {attempt})",
            delay.as_secs_f64()
        ));
        self.emit(EventKind::Restarting {
            attempt,
            delay_s: delay.as_secs_f64(),
            reason,
        });
        self.mode = Mode::WaitingRestart {
            at: now + delay,
            attempt,
        };
    }

    fn give_up(&mut self, failures: u32, reason: String) {
        let window_s = self.cfg.restart.window_s as f64;
        self.guard_line(&format!(
            "giving up: Fooocus failed {failures} times in {} (last: {reason}). Fix the cause, then start it again",
            crate::units::format_duration(Duration::from_secs_f64(window_s))
        ));
        self.emit(EventKind::GaveUp {
            failures,
            window_s,
            reason,
        });
        self.mode = Mode::GaveUp;
    }

    fn flush_console(&mut self, force: bool) {
        if self.pending_console.is_empty() {
            return;
        }
        let now = Instant::now();
        if force || now.duration_since(self.last_console_flush) >= Duration::from_millis(100) {
            let lines = std::mem::take(&mut self.pending_console);
            self.last_console_flush = now;
            self.shared.publish(Update::Console(lines));
        }
    }

    fn publish_status(&mut self) {
        let now = Instant::now();
        let mut st = self.shared.status.lock().unwrap();
        st.state = match &self.mode {
            _ if self.target.is_none() => FooocusState::NotConfigured,
            Mode::Idle => FooocusState::Stopped,
            Mode::GaveUp => FooocusState::GaveUp,
            Mode::WaitingRestart { .. } => FooocusState::Restarting,
            Mode::Running(r) if r.end.is_some() => {
                if r.end == Some(EndReason::Limit) {
                    FooocusState::Restarting
                } else {
                    FooocusState::Stopping
                }
            }
            Mode::Running(_) => match (&self.tracker.phase, self.tracker.current()) {
                (_, Some(_)) => FooocusState::Generating,
                (Phase::Ready { .. }, None) => FooocusState::Ready,
                _ => FooocusState::Starting,
            },
        };
        st.pid = match &self.mode {
            Mode::Running(r) => Some(r.pid),
            _ => None,
        };
        if !matches!(self.mode, Mode::Running(_)) {
            st.url = None;
        }
        st.graceful_stop = match &self.mode {
            Mode::Running(r) => match &r.route {
                StopRoute::Unavailable { why } => GracefulStop {
                    available: false,
                    why: why.clone(),
                },
                _ => GracefulStop {
                    available: true,
                    why: "Fooocus can be asked to stop a generation".into(),
                },
            },
            _ => GracefulStop {
                available: false,
                why: "Fooocus is not running".into(),
            },
        };
        st.actions = Actions::for_state(st.state, st.url.is_some());
        st.generation = self.tracker.current().map(|g| GenerationProgress {
            id: g.id,
            started_ms: g.started_ms,
            image_index: g.image_index,
            image_total: g.images_total,
            step: g.last_step,
            step_total: g.steps_total,
            elapsed_s: g.elapsed(now).as_secs_f64(),
            timeout_s: self.limits.timeout.map(|d| d.as_secs_f64()),
        });
        // Elapsed time alone is no reason to publish: the UI counts it up itself.
        let mut key = st.clone();
        if let Some(g) = key.generation.as_mut() {
            g.elapsed_s = 0.0;
        }
        let changed = self.last_status.as_ref() != Some(&key);
        let snapshot = st.clone();
        drop(st);
        if changed {
            self.last_status = Some(key);
            self.shared.publish(Update::Status(Box::new(snapshot)));
        }
    }
}

/// Ask Fooocus to exit; false when there is no way to ask.
#[cfg(unix)]
fn terminate(pid: u32) -> bool {
    // SAFETY: plain kill(2) on the pid the guard spawned and has not reaped yet.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
    true
}

#[cfg(not(unix))]
fn terminate(_pid: u32) -> bool {
    // Windows has no SIGTERM, and a process without a console gets no Ctrl-Break: the tree
    // kill follows at once rather than after a wait for nothing.
    false
}

#[cfg(unix)]
fn exit_info(st: std::process::ExitStatus) -> ExitInfo {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => ExitInfo::Code(c),
        (None, Some(s)) => ExitInfo::Signal(s),
        _ => ExitInfo::Code(-1),
    }
}

#[cfg(not(unix))]
fn exit_info(st: std::process::ExitStatus) -> ExitInfo {
    ExitInfo::Code(st.code().unwrap_or(-1))
}

/// Argv helper for the CLI: OsString from &str.
pub fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// How long the restart after a kill may take when the start-up limit is off.
const RESTART_DEADLINE: Duration = Duration::from_secs(600);

/// How long the waiter lets the pipes deliver Fooocus's last lines before it reports the exit.
const PIPE_DRAIN: Duration = Duration::from_millis(500);
/// Quiet this long, the console's open traceback is complete (see `Parser::settle`).
const CONSOLE_SETTLE: Duration = Duration::from_millis(300);

/// How much of Fooocus's output may wait for the loop (both pipes together).
const CONSOLE_BUDGET: usize = 4 << 20;

/// The port in Gradio's "Cannot find empty port in range: P-P" (its networking.py, 3.39/3.41).
fn taken_port(message: &str) -> Option<u16> {
    let rest = message.split("Cannot find empty port in range:").nth(1)?;
    let first = rest.trim_start().split('-').next()?;
    first.trim().parse().ok()
}

#[cfg(test)]
mod actions_tests {
    use super::*;

    #[test]
    fn each_state_allows_its_actions() {
        use FooocusState::*;
        let a = |s, url| Actions::for_state(s, url);
        assert!(a(Stopped, false).start && !a(Stopped, false).stop);
        assert!(!a(NotConfigured, false).start, "nothing to start");
        assert!(
            !a(Stopping, true).start && !a(Stopping, true).stop,
            "wait for the stop"
        );
        assert!(a(GaveUp, false).start, "start again after fixing the cause");
        let g = a(Generating, true);
        assert!(g.stop && g.restart && g.open_browser && g.stop_generation && !g.start);
        assert!(
            !a(Starting, true).open_browser,
            "not before Fooocus is ready"
        );
        assert!(!a(Ready, false).open_browser, "no address yet");
        assert!(!a(Ready, true).stop_generation);
    }
}

#[cfg(test)]
mod port_tests {
    #[test]
    fn the_taken_port_is_read_from_gradios_message() {
        let m = "Cannot find empty port in range: 7865-7865. You can specify a different port by setting the GRADIO_SERVER_PORT environment variable or passing the `server_port` parameter to `launch()`.";
        assert_eq!(super::taken_port(m), Some(7865));
        assert_eq!(super::taken_port("CUDA out of memory"), None);
    }
}
