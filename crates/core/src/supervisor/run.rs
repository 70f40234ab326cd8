//! The supervisor loop: the effect code around the state machine (`machine.rs`). It owns the
//! OS side of a run (process, container, pipes, gateway), feeds the machine what happens, and
//! carries out the effects the machine returns.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use guard_contain::Containment;
use std::process::Stdio;

use super::io::{self, Spawner};
use super::machine::{
    Effect, ExitFacts, Input, LaunchError, Lifecycle, Machine, Settings, WakeBy, RESTART_DEADLINE,
};
use super::Actions;
use super::{
    Cmd, ExitInfo, GenerationProgress, GracefulStop, GuardOptions, MachineMemory, Msg, Shared,
    SleepInfo, Status, Target, Update,
};
use crate::config::diff::{ConfigDiff, Setting};
use crate::config::Config;
use crate::console::{ConsoleLine, Stream, StreamReader};
use crate::events::{self, EventKind, LimitKind, StopHow};
use crate::generation::{Change, ClosedBy, Generation, Outcome, Phase, Signal, Tracker};
use crate::policy::{self, Breach, LimitSet, Usage};
use guard_fooocus::install::{self, LaunchCommand};
use guard_fooocus::stop::{self, StopRoute};

/// The OS side of one run (the machine keeps its lifecycle).
pub(super) struct Run {
    pid: u32,
    /// Signals reach this very process or nothing (a pidfd where the kernel has them).
    process: guard_contain::process::ProcessHandle,
    container: Box<dyn Containment>,
    out: StreamReader,
    err: StreamReader,
    route: StopRoute,
    /// The gateway in front of this Fooocus (None: off, not possible, or it failed to start).
    gateway: Option<Arc<guard_gateway::Gateway>>,
    /// The run the gateway's queue events belong to: a gateway kept through a sleep serves the
    /// run that wakes next.
    gateway_run: Arc<std::sync::atomic::AtomicU64>,
    /// Why there is no gateway, when the user wanted one.
    gateway_note: Option<String>,
    /// Fooocus could not bind its port: (port, whether it is the user's own port).
    port_taken: Option<(u16, bool)>,
    /// The port the guard told Fooocus to listen on (None: a plain command). The guard's own
    /// requests go there on loopback; a URL Fooocus prints is only checked against it.
    fooocus_port: Option<u16>,
    /// Where the user's browser goes (the gateway's address, or Fooocus's own), as the guard
    /// launched it; None for a plain command, whose first printed URL is taken.
    browse: Option<String>,
    /// When the console counts as quiet (no output since), to complete an open traceback.
    settle_at: Option<Instant>,
}

pub(super) struct Loop {
    cfg: Config,
    limits: LimitSet,
    target: Option<Target>,
    passthrough: bool,
    tx: Sender<Msg>,
    shared: Arc<Shared>,
    spawner: Spawner,
    machine: Machine<Run>,
    tracker: Tracker,
    /// The observed step time, for the grace of a graceful stop.
    step_clock: crate::policy::StepClock,
    /// The phase times of this session's recent generations, for the grace of a stop asked
    /// before the first step or while decoding (a fixed ring: no allocation, no disk).
    recent_phases: RecentPhases,
    next_run: u64,
    /// Shutting down: who to tell once Fooocus is gone.
    quit: Option<Sender<()>>,
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
    /// Asleep: the gateway that keeps the user's port, and what the wake launches behind it.
    parked: Option<Parked>,
    /// When Fooocus last became idle (ready, a generation finished, woke): with the gateway's
    /// last visit, the start of the sleep setting's idle clock.
    idle_since: Option<Instant>,
    /// This launch is a start the user asked for (not a restart, not a wake): with the
    /// `open_browser` setting, its ready opens Fooocus in the user's browser.
    open_browser_at_ready: bool,
    /// The machine's memory at the last sample.
    last_memory: Option<MachineMemory>,
    /// The current (or last) sleep, as the views show it.
    sleep: Option<SleepInfo>,
    /// Asleep and the sleep's event not sent yet: when the tree was gone, and the deadline of
    /// the sample that measures what it gave back.
    asleep_pending: Option<(Instant, Instant)>,
    /// The last start-ups (seconds to ready), for the wake's estimate.
    startups: std::collections::VecDeque<f64>,
    /// How long Fooocus had been idle when the sleep began (0: the user's "Sleep now").
    sleep_idle_s: f64,
    /// The last sleeps, for the graphs (bounded).
    sleep_spans: std::collections::VecDeque<super::SleepSpan>,
}

/// The sleeps the status carries for the graphs: a day of one an hour.
const SLEEP_SPANS_KEPT: usize = 48;

fn epoch_ms_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The gateway kept through a sleep, and where the woken Fooocus must listen behind it.
struct Parked {
    gateway: Arc<guard_gateway::Gateway>,
    gateway_run: Arc<std::sync::atomic::AtomicU64>,
    port: u16,
    browse: Option<String>,
}

/// How long the sleep's event waits for a sample taken after the tree was gone.
const SLEEP_SAMPLE_WAIT: Duration = Duration::from_secs(5);
/// The start-ups the wake's estimate is drawn from.
const STARTUPS_KEPT: usize = 5;

fn settings(cfg: &Config, limits: &LimitSet) -> Settings {
    Settings {
        restart: cfg.restart.clone(),
        startup: limits.startup,
        grace: limits.grace,
        can_terminate: guard_contain::process::CAN_TERMINATE,
    }
}

/// What `launch_with_gateway` decided.
struct Launched {
    command: LaunchCommand,
    gateway: Option<Arc<guard_gateway::Gateway>>,
    /// Why there is no gateway, when the user wanted one.
    note: Option<String>,
    fooocus_port: Option<u16>,
    browse: Option<String>,
    gateway_run: Arc<std::sync::atomic::AtomicU64>,
}

/// The browser's URL for a server on `port` at the `listen` address of the settings.
fn browse_url(listen: Option<&str>, port: u16) -> String {
    match listen {
        None | Some("0.0.0.0") | Some("::") => format!("http://127.0.0.1:{port}"),
        Some(h) if h.contains(':') => format!("http://[{h}]:{port}"),
        Some(h) => format!("http://{h}:{port}"),
    }
}

/// Whether an error in a task kills Fooocus's worker thread (see `Tracker`): no `try` around
/// the task before 2.0.90 and in MRE; Fooocus-API's loop; anything unknown.
fn task_errors_kill_worker(install: Option<&guard_fooocus::install::Install>) -> bool {
    use guard_fooocus::install::Fork;
    match install {
        None => true,
        Some(i) => match i.fork {
            Fork::Mre | Fork::FooocusApi => true,
            Fork::Fooocus | Fork::Mashb1t => i
                .version
                .as_deref()
                .is_none_or(|v| install::version_le(v, "2.0.89")),
        },
    }
}

/// A stop route as the machine sees it: Ok when Fooocus can be asked, else why not.
fn route_result(route: &StopRoute) -> Result<(), String> {
    match route {
        StopRoute::Unavailable { why } => Err(why.clone()),
        _ => Ok(()),
    }
}

impl Loop {
    pub(super) fn new(
        opts: GuardOptions,
        tx: Sender<Msg>,
        shared: Arc<Shared>,
        spawner: Spawner,
    ) -> Loop {
        // The history database is opened and written on a thread of its own: a database held
        // by another process must not hold up the launch or any deadline.
        let mut opts = opts;
        let (store, next_id) = match opts.history.take() {
            Some((w, first)) => (Some(w), first),
            None => (None, 1),
        };
        let limits = LimitSet::from(&opts.config.limits);
        Loop {
            machine: Machine::new(settings(&opts.config, &limits)),
            limits,
            cfg: opts.config,
            target: opts.target,
            passthrough: opts.passthrough,
            tx,
            shared,
            spawner,
            tracker: Tracker::new(next_id),
            step_clock: Default::default(),
            recent_phases: RecentPhases {
                past: store.as_ref().map(|w| w.past_phases()).unwrap_or_default(),
                ..RecentPhases::default()
            },
            next_run: 1,
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
            parked: None,
            idle_since: None,
            open_browser_at_ready: false,
            last_memory: None,
            sleep: None,
            asleep_pending: None,
            startups: Default::default(),
            sleep_idle_s: 0.0,
            sleep_spans: Default::default(),
        }
    }

    fn io(&self) -> Option<&Run> {
        self.machine.run().map(|r| &r.io)
    }

    /// Feed the machine and carry out what it decided.
    fn drive(&mut self, input: Input<Run>) {
        self.drive_at(input, Instant::now());
    }

    fn drive_at(&mut self, input: Input<Run>, now: Instant) {
        for effect in self.machine.step(input, now) {
            self.effect(effect);
        }
        // The port is let go once Fooocus no longer sleeps (stopped, shut down); a wake's
        // launch took the gateway over already.
        if !matches!(self.machine.lifecycle, Lifecycle::Asleep { .. }) {
            if let Some(p) = self.parked.take() {
                p.gateway.close();
            }
        }
        if !matches!(
            self.machine.lifecycle,
            Lifecycle::Asleep { .. } | Lifecycle::Running(_)
        ) && self.machine.waking.is_none()
        {
            self.sleep = None;
            self.asleep_pending = None;
            self.end_sleep_span();
        }
        // A kill closes the current generation: record it now.
        if !self.changes.is_empty() {
            self.apply_changes(now);
        }
    }

    fn effect(&mut self, effect: Effect) {
        match effect {
            Effect::Say(text) => self.guard_line(&text),
            Effect::Emit(kind) => self.emit(kind),
            Effect::Launch { attempt } => match self.start_run(attempt) {
                Ok((run, io)) => {
                    // A wake's launch has a parked gateway: a browser is already waiting.
                    self.open_browser_at_ready = attempt == 0 && self.parked.is_none();
                    // The run holds the kept gateway now.
                    self.parked = None;
                    self.drive(Input::Launched { attempt, run, io })
                }
                Err(e) => self.drive(Input::LaunchFailed(e)),
            },
            Effect::Sleeping => self.falling_asleep(),
            Effect::Asleep => {
                let now = Instant::now();
                self.asleep_pending = Some((now, now + SLEEP_SAMPLE_WAIT));
            }
            Effect::Waking(by) => {
                self.finish_asleep(None);
                let upstream = guard_gateway::Upstream::Waking {
                    wake_estimate: self.wake_estimate(),
                    hold_limit: self.hold_limit(),
                };
                if let Some(p) = &self.parked {
                    p.gateway.set_upstream(upstream);
                }
                if let Some(s) = self.sleep.as_mut() {
                    s.waking = true;
                    s.wake_failed = None;
                }
                self.guard_line(&format!(
                    "waking Fooocus ({})",
                    if by == WakeBy::Visit {
                        "a visit"
                    } else {
                        "the user's Wake"
                    }
                ));
            }
            Effect::Woke {
                asleep_s,
                by,
                ready_s,
            } => {
                if let Some(gw) = self.io().and_then(|r| r.gateway.as_ref()) {
                    gw.set_upstream(guard_gateway::Upstream::Awake);
                }
                self.sleep = None;
                self.end_sleep_span();
                self.idle_since = Some(Instant::now());
                self.emit(EventKind::Woke {
                    asleep_s,
                    by: by.as_str().into(),
                    ready_s,
                });
            }
            Effect::WakeFailed(reason) => {
                if let Some(p) = &self.parked {
                    p.gateway.set_upstream(guard_gateway::Upstream::Failed {
                        reason: reason.clone(),
                    });
                }
                if let Some(s) = self.sleep.as_mut() {
                    s.waking = false;
                    s.wake_failed = Some(reason.clone());
                }
                self.emit(EventKind::WakeFailed { reason });
            }
            Effect::Terminate => {
                // Gone already: its exit is on the way, and the kill timer stands regardless.
                if let Some(run) = self.io() {
                    let _ = run.process.terminate();
                }
            }
            Effect::KillTree(kill) => {
                let Some(run) = self.io() else { return };
                let began = Instant::now();
                let (took, result) = match run.container.kill_tree() {
                    Ok(r) => (r.elapsed, Ok(r.signalled)),
                    Err(e) => (began.elapsed(), Err(e.to_string())),
                };
                self.drive(Input::Killed { kill, took, result });
            }
            Effect::RequestStop => self.request_stop(),
            Effect::MarkLimit(limit) => self.tracker.mark_limit(limit),
            Effect::CloseGeneration { outcome, steps } => {
                if let Some(g) = self.tracker.current_mut() {
                    g.stop_how = Some(StopHow::Killed);
                    g.stop_steps = steps;
                }
                self.tracker.close(
                    ClosedBy::Limit,
                    Some(outcome),
                    SystemTime::now(),
                    &mut self.changes,
                );
            }
            // Handled where the generation is at hand (`generation_finished`).
            Effect::StoppedGracefully { .. } => {}
            Effect::AppendStopStep { generation, step } => {
                if let Some(store) = &self.store {
                    // A dropped step is said by the next overflow of a larger record.
                    let _ = store.append_stop_step(generation, &step);
                }
            }
        }
    }

    fn emit(&mut self, mut kind: EventKind) {
        if let EventKind::LimitBreached { .. } = kind {
            self.last_breach = Some(kind.clone());
        }
        crate::why::summarize(&mut kind, self.last_breach.as_ref(), &self.cfg);
        let ev = crate::events::GuardEvent::now(kind);
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

    pub(super) fn clean_stale(&mut self) {
        for group in guard_contain::clean_stale() {
            self.emit(EventKind::StaleCleaned { group });
        }
    }

    pub(super) fn autostart(&mut self) {
        self.effect(Effect::Launch { attempt: 0 });
    }

    pub(super) fn run(&mut self, rx: Receiver<Msg>) {
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
            // Leave only once the waiter has reaped the main process (or it is hopeless).
            if self.quit.is_some() && self.machine.quit_done(Instant::now()) {
                self.flush_console(true);
                self.publish_status();
                let done = self.quit.take().expect("quit");
                self.emit(EventKind::Stopped);
                let _ = done.send(());
                break;
            }
            let idle = matches!(self.machine.lifecycle, Lifecycle::Idle | Lifecycle::GaveUp);
            if idle && self.exit_when_idle() {
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
        take(self.machine.next_deadline());
        if let Some(run) = self.machine.run() {
            if self.machine.esc.is_none() {
                take(
                    policy::next_time_limit(&self.limits, &self.tracker, Some(run.started))
                        .map(|(t, _)| t),
                );
            }
            take(self.tracker.quiet_deadline());
            take(run.io.settle_at);
        }
        if !self.pending_console.is_empty() {
            take(Some(self.last_console_flush + Duration::from_millis(100)));
        }
        take(self.sleep_due());
        take(self.asleep_pending.map(|(_, by)| by));
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
            Msg::StopSent { run, result } => {
                if let Err(why) = result {
                    self.drive(Input::StopFailed { run, why });
                }
            }
            Msg::Memory(m) => {
                self.last_memory = Some(m);
                // The first sample begun after the tree was gone measures what it gave back.
                if self
                    .asleep_pending
                    .is_some_and(|(gone, _)| m.taken >= gone && m.tree_ram_bytes.is_none())
                {
                    self.finish_asleep(Some(m));
                }
            }
        }
    }

    fn command(&mut self, c: Cmd) {
        match c {
            Cmd::Start => self.drive(Input::Start),
            Cmd::Stop => self.drive(Input::Stop),
            Cmd::Restart => self.drive(Input::Restart),
            Cmd::Sleep => {
                if let Some(why) = self.cannot_sleep() {
                    let msg = format!("cannot sleep: {why}");
                    self.guard_line(&msg);
                    self.emit(EventKind::Warning { message: msg });
                    return;
                }
                self.sleep_idle_s = 0.0;
                let generating = self.tracker.current().is_some();
                self.drive(Input::Sleep { generating });
            }
            Cmd::Wake => self.drive(Input::Wake(WakeBy::User)),
            Cmd::StopGeneration => {
                let Some(run) = self.io() else { return };
                let input = Input::StopGeneration {
                    generation: self.tracker.current().map(|g| g.id),
                    route: route_result(&run.route),
                    pace: self.pace(),
                };
                self.drive(input);
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
            Cmd::SetConfig(new, reply) => {
                let (cfg, diff) = *new;
                self.set_config(cfg, &diff);
                let _ = reply.send(());
            }
            Cmd::Shutdown(done) => {
                self.quit = Some(done);
                self.drive(Input::Shutdown);
            }
        }
    }

    /// The live part of new settings. The launch options, the install, the gateway and the
    /// containment backend are read at the next launch; the sleep setting, the console's
    /// logging and the browser's opening where they are used: keeping `cfg` is enough.
    fn set_config(&mut self, cfg: Config, diff: &ConfigDiff) {
        if diff.changed(Setting::Limits) || diff.changed(Setting::RestartPolicy) {
            self.limits = LimitSet::from(&cfg.limits);
            // The start-up timeout and the grace are limits the machine keeps.
            self.machine.set_settings(settings(&cfg, &self.limits));
        }
        if diff.changed(Setting::Limits) {
            if let Some(run) = self.io() {
                if let Err(e) = run.container.set_limits(&self.limits.containment()) {
                    let msg = format!("could not apply the new RAM/CPU caps: {e}");
                    self.guard_line(&msg);
                    self.emit(EventKind::Warning { message: msg });
                }
            }
        }
        self.cfg = cfg;
    }

    /// The sleep setting, when it is on.
    fn sleep_after(&self) -> Option<Duration> {
        self.cfg
            .sleep_after_s
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(Duration::from_secs_f64)
    }

    /// Why Fooocus cannot sleep now (None: it can).
    fn cannot_sleep(&self) -> Option<String> {
        let Some(run) = self.machine.run().filter(|r| r.end.is_none()) else {
            return Some("Fooocus is not running".into());
        };
        if run.io.gateway.is_none() {
            return Some(match &run.io.gateway_note {
                Some(note) => format!("only the gateway can wake Fooocus on a visit, and it is not running ({note}); turn the gateway on in the settings"),
                None => "only the gateway can wake Fooocus on a visit, and a plain command runs without it".into(),
            });
        }
        None
    }

    /// When Fooocus falls asleep if nothing happens: the sleep setting after the later of the
    /// last idle start (ready, a generation's end, a wake) and the gateway's last visit. None
    /// while it starts, generates, is being stopped, or without the gateway.
    fn sleep_due(&self) -> Option<Instant> {
        let after = self.sleep_after()?;
        let run = self.machine.run().filter(|r| r.end.is_none())?;
        let gateway = run.io.gateway.as_ref()?;
        if self.machine.esc.is_some()
            || self.tracker.current().is_some()
            || !matches!(self.tracker.phase, Phase::Ready { .. })
        {
            return None;
        }
        let since = self
            .idle_since
            .into_iter()
            .chain(gateway.last_visit())
            .max()?;
        Some(since + after)
    }

    /// About how long a wake takes: the mean of this session's last start-ups, else of the
    /// last wakes the history holds (a minute, within the start-up limit, when neither has any).
    fn wake_estimate(&self) -> Duration {
        let past = self.recent_phases.past.wakes_s();
        let (sum, n) = if self.startups.is_empty() {
            (past.iter().sum::<f64>(), past.len())
        } else {
            (self.startups.iter().sum::<f64>(), self.startups.len())
        };
        if n == 0 {
            return Duration::from_secs(60).min(self.hold_limit());
        }
        Duration::from_secs_f64((sum / n as f64).clamp(0.0, 24.0 * 3600.0))
    }

    /// How long the gateway holds a request for a wake: the start-up limit (10 min when off).
    fn hold_limit(&self) -> Duration {
        self.limits.startup.unwrap_or(RESTART_DEADLINE)
    }

    /// The sleep starts: the gateway answers for Fooocus from now on, and the memory in use
    /// before the stop is noted.
    fn falling_asleep(&mut self) {
        let upstream = guard_gateway::Upstream::Asleep {
            wake_estimate: self.wake_estimate(),
            hold_limit: self.hold_limit(),
        };
        if let Some(gw) = self.io().and_then(|r| r.gateway.as_ref()) {
            gw.set_upstream(upstream);
        }
        let before = self.last_memory;
        self.sleep = Some(SleepInfo {
            since_ms: epoch_ms_now(),
            idle_s: self.sleep_idle_s,
            held_ram_bytes: before.and_then(|m| m.tree_ram_bytes),
            ram_before_bytes: before.map(|m| m.ram_used_bytes),
            vram_before_bytes: before.and_then(|m| m.vram_used_bytes),
            wake_estimate_s: self.wake_estimate().as_secs_f64(),
            ..Default::default()
        });
        if self.sleep_spans.len() == SLEEP_SPANS_KEPT {
            self.sleep_spans.pop_front();
        }
        self.sleep_spans.push_back(super::SleepSpan {
            asleep_ms: epoch_ms_now(),
            woke_ms: None,
        });
        let line = if self.sleep_idle_s > 0.0 {
            format!(
                "Fooocus has been idle for {}: putting it to sleep to give its memory back",
                crate::units::format_duration(Duration::from_secs_f64(self.sleep_idle_s))
            )
        } else {
            "putting Fooocus to sleep (Sleep now)".to_string()
        };
        self.guard_line(&line);
    }

    /// The last sleep's span ends (woken, or stopped while asleep).
    fn end_sleep_span(&mut self) {
        if let Some(span) = self.sleep_spans.back_mut().filter(|s| s.woke_ms.is_none()) {
            span.woke_ms = Some(epoch_ms_now());
        }
    }

    /// The sleep's event, with the sample that measured what it gave back (None: no sample in
    /// time, the figures after are left out).
    fn finish_asleep(&mut self, after: Option<MachineMemory>) {
        if self.asleep_pending.take().is_none() {
            return;
        }
        let Some(info) = self.sleep.as_mut() else {
            return;
        };
        if let Some(m) = after {
            info.ram_after_bytes = Some(m.ram_used_bytes);
            info.vram_after_bytes = m.vram_used_bytes;
        }
        let ev = EventKind::Asleep {
            idle_s: info.idle_s,
            held_ram_bytes: info.held_ram_bytes,
            ram_before_bytes: info.ram_before_bytes,
            ram_after_bytes: info.ram_after_bytes,
            vram_before_bytes: info.vram_before_bytes,
            vram_after_bytes: info.vram_after_bytes,
        };
        self.emit(ev);
    }

    /// Launch Fooocus: the run's id and its OS side, or why there is none (said already).
    fn start_run(&mut self, attempt: u32) -> Result<(u64, Run), LaunchError> {
        let Some(target) = self.target.clone() else {
            self.guard_line("no Fooocus install is configured: pick one in the settings");
            return Err(LaunchError::NoTarget);
        };
        if let Some(install) = target.install() {
            // Fooocus's parser would exit with code 2 on an option it lacks: say so instead.
            if let Err(e) = install::check_options(install, &self.cfg.launch) {
                let msg = format!("cannot start Fooocus: {e}");
                self.guard_line(&msg);
                self.emit(EventKind::Warning { message: msg });
                return Err(LaunchError::Fatal);
            }
            for note in install::launch(install, &self.cfg.launch, self.cfg.launch.port).notes {
                self.guard_line(&note);
            }
        }
        let run_id = self.next_run;
        self.next_run += 1;
        let Launched {
            command: launch,
            gateway,
            note: gateway_note,
            fooocus_port,
            browse,
            gateway_run,
        } = self.launch_with_gateway(&target, run_id);
        let container = match guard_contain::create(self.cfg.containment_preference(), "fooocus") {
            Ok(c) => c,
            Err(e) => {
                let msg = format!("cannot contain Fooocus: {e}");
                self.guard_line(&msg);
                self.emit(EventKind::Warning { message: msg });
                return Err(LaunchError::Fatal);
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
            return Err(LaunchError::Fatal);
        }
        let mut child = match self.spawner.spawn(cmd) {
            Ok(c) => c,
            Err(e) => {
                let msg = format!("cannot start {}: {e}", launch.program.display());
                self.guard_line(&msg);
                self.emit(EventKind::Warning { message: msg });
                return Err(LaunchError::Spawn);
            }
        };
        if let Err(e) = container.adopt(&child) {
            let _ = child.kill();
            let msg = format!("cannot put Fooocus in its container: {e}");
            self.guard_line(&msg);
            self.emit(EventKind::Warning { message: msg });
            return Err(LaunchError::Fatal);
        }
        if let Some(events) = container.take_events() {
            self.forward("container-events", events, move |event| Msg::Container {
                run: run_id,
                event,
            });
        }
        let pid = child.id();
        // Before the waiter owns (and may reap) the child.
        let process = guard_contain::process::ProcessHandle::new(&child);
        let choice = container.choice().clone();
        *self.shared.tree.lock().unwrap() = Some((container.probe(), pid));
        io::spawn_io(
            &self.tx,
            self.passthrough,
            &self.console_inflight,
            run_id,
            child,
        );
        self.tracker.restart();
        self.tracker.expected_port = fooocus_port;
        self.tracker.task_errors_kill_worker = task_errors_kill_worker(target.install());
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
        Ok((
            run_id,
            Run {
                pid,
                process,
                container,
                out: StreamReader::for_stream(Stream::Stdout),
                err: StreamReader::for_stream(Stream::Stderr),
                route: StopRoute::Unavailable {
                    why: "Fooocus is starting".into(),
                },
                gateway,
                gateway_run,
                gateway_note,
                port_taken: None,
                fooocus_port,
                browse,
                settle_at: None,
            },
        ))
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

    /// A sender for the gateway's queue events, handed to the supervisor as `Msg::Queue` for
    /// the run `gateway_run` names when each arrives.
    fn queue_events(
        &self,
        gateway_run: Arc<std::sync::atomic::AtomicU64>,
    ) -> std::sync::mpsc::Sender<guard_gateway::QueueEvent> {
        let (qtx, qrx) = std::sync::mpsc::channel();
        self.forward("queue-events", qrx, move |event| Msg::Queue {
            run: gateway_run.load(Ordering::Relaxed),
            event,
        });
        qtx
    }

    /// The command for `target`, and the gateway in front of it when the user wants one: then
    /// Fooocus listens on an internal loopback port and the gateway on the user's port. If the
    /// gateway cannot start, the reason is kept and Fooocus starts on the user's port, but only
    /// on loopback when the user shares it (a token, or a listen address beyond loopback): the
    /// LAN never reaches Fooocus without the gateway in front.
    fn launch_with_gateway(&mut self, target: &Target, run_id: u64) -> Launched {
        let gateway_run = Arc::new(std::sync::atomic::AtomicU64::new(run_id));
        let Target::Install(install) = target else {
            return Launched {
                command: target.command(&self.cfg),
                gateway: None,
                note: None,
                fooocus_port: None,
                browse: None,
                gateway_run,
            };
        };
        // Waking: Fooocus starts behind the gateway that kept the port, where it listened
        // before (the gateway relays there). Kept in `parked` until the launch worked, so a
        // failed wake still has it.
        if let Some(p) = &self.parked {
            p.gateway_run.store(run_id, Ordering::Relaxed);
            let mut loopback = self.cfg.launch.clone();
            loopback.listen = None;
            return Launched {
                command: install::launch_command(install, &loopback, p.port),
                gateway: Some(p.gateway.clone()),
                note: None,
                fooocus_port: Some(p.port),
                browse: p.browse.clone(),
                gateway_run: p.gateway_run.clone(),
            };
        }
        if !self.cfg.gateway.enabled {
            let note = "the gateway is turned off in the settings".to_string();
            return self.direct(target, note, gateway_run);
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
                allowed_origins: self.cfg.gateway.allowed_origins.clone(),
                events: Some(self.queue_events(gateway_run.clone())),
                limits: guard_gateway::Limits::default(),
            })
            .map(|g| (g, port))
            .map_err(|e| e.to_string())
        });
        // Fooocus itself only on loopback: behind the gateway, or alone when it cannot start.
        let mut loopback = self.cfg.launch.clone();
        loopback.listen = None;
        match started {
            Ok((gw, port)) => Launched {
                command: install::launch_command(install, &loopback, port),
                gateway: Some(Arc::new(gw)),
                note: None,
                fooocus_port: Some(port),
                browse: Some(browse_url(
                    self.cfg.launch.listen.as_deref(),
                    self.cfg.launch.port,
                )),
                gateway_run,
            },
            Err(why) if shared => {
                let msg = format!(
                    "graceful stop is unavailable and Fooocus is not shared on the network: {why}; Fooocus starts on this computer only (127.0.0.1:{port}), because without the gateway nothing would check the token or the rate; free the port and restart Fooocus to share it again",
                    port = self.cfg.launch.port
                );
                self.guard_line(&msg);
                self.emit(EventKind::Warning { message: msg });
                let note =
                    format!("{why}; Fooocus is on this computer only until the gateway can start");
                Launched {
                    command: install::launch_command(install, &loopback, self.cfg.launch.port),
                    gateway: None,
                    note: Some(note),
                    fooocus_port: Some(self.cfg.launch.port),
                    browse: Some(browse_url(None, self.cfg.launch.port)),
                    gateway_run,
                }
            }
            Err(why) => {
                let msg = format!(
                    "graceful stop is unavailable: {why}; Fooocus starts directly on port {}",
                    self.cfg.launch.port
                );
                self.guard_line(&msg);
                self.emit(EventKind::Warning { message: msg });
                self.direct(target, why, gateway_run)
            }
        }
    }

    /// Fooocus alone on the user's port, at the listen address of the settings.
    fn direct(
        &self,
        target: &Target,
        note: String,
        gateway_run: Arc<std::sync::atomic::AtomicU64>,
    ) -> Launched {
        Launched {
            gateway_run,
            command: target.command(&self.cfg),
            gateway: None,
            note: Some(note),
            fooocus_port: Some(self.cfg.launch.port),
            browse: Some(browse_url(
                self.cfg.launch.listen.as_deref(),
                self.cfg.launch.port,
            )),
        }
    }

    /// Where the user's browser should go: the address the guard launched Fooocus (or the
    /// gateway) on, never one read from the console; a plain command's printed URL.
    /// Opens `url` (the user's address: the gateway's, with its token once) in the user's
    /// browser, from the guard and so outside Fooocus's tree, on a thread of its own: starting
    /// the opener is not the loop's to wait for.
    fn open_browser(&self, url: &str) {
        let url = guard_gateway::url_with_token(url, self.cfg.gateway.token.as_deref());
        let tx = self.tx.clone();
        let _ = std::thread::Builder::new()
            .name("fooocus-open-browser".into())
            .spawn(move || {
                if let Err(e) = crate::browser::open(&url) {
                    let _ = tx.send(Msg::Cmd(Cmd::Warn(format!(
                        "could not open the browser: {e}"
                    ))));
                }
            });
    }

    fn user_url(&self, url: String) -> String {
        self.io().and_then(|run| run.browse.clone()).unwrap_or(url)
    }

    /// Fooocus printed `bytes` on `stream` (None: the stream closed, flush what is partial).
    fn output(&mut self, run_id: u64, stream: Stream, bytes: Option<&[u8]>) {
        let Some(run) = self.machine.run_mut().filter(|r| r.id == run_id) else {
            return;
        };
        let run = &mut run.io;
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
                Signal::Event(fooocus_console::EventKind::TaskStart) => step_clock.reset(),
                Signal::Event(fooocus_console::EventKind::Progress { step, total }) => {
                    step_clock.on_progress(*step, *total, now)
                }
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
                    let startup_s = match self.machine.run() {
                        Some(r) => now.duration_since(r.started).as_secs_f64(),
                        None => 0.0,
                    };
                    let url = self.user_url(url);
                    self.shared.status.lock().unwrap().url = Some(url.clone());
                    self.update_route();
                    if std::mem::take(&mut self.open_browser_at_ready) && self.cfg.open_browser {
                        self.open_browser(&url);
                    }
                    self.emit(EventKind::Ready { url, startup_s });
                    if self.startups.len() == STARTUPS_KEPT {
                        self.startups.pop_front();
                    }
                    self.startups.push_back(startup_s);
                    self.idle_since = Some(now);
                    self.drive_at(Input::Ready, now);
                }
                Change::Unhealthy(reason) => {
                    self.guard_line(&format!(
                        "Fooocus is up but cannot generate: {reason}; restarting it"
                    ));
                    self.emit(EventKind::Unhealthy { reason });
                    self.drive_at(Input::Unhealthy, now);
                }
                Change::Started(id) => {
                    self.shared.generating.store(true, Ordering::Relaxed);
                    self.emit(EventKind::GenerationStarted { generation_id: id });
                }
                Change::Progress => {}
                Change::Phase(phase, generation_id) => {
                    if phase == fooocus_console::Phase::Sampling {
                        // The step a graceful stop may be waiting for.
                        let step_seconds = self.step_clock.step_seconds();
                        self.drive_at(Input::Step { step_seconds }, now);
                    }
                    self.emit(EventKind::Phase {
                        phase,
                        generation_id,
                    });
                }
                Change::KnownFailure(failure) => {
                    let advice = failure.advice();
                    self.guard_line(advice);
                    self.emit(EventKind::KnownFailure {
                        failure,
                        advice: advice.to_string(),
                    });
                }
                Change::WrongPort(url) => {
                    let msg = format!(
                        "Fooocus says it listens on {url}, not on the port the guard gave it ({}): ignored",
                        self.tracker.expected_port.unwrap_or(0)
                    );
                    self.guard_line(&msg);
                    self.emit(EventKind::Warning { message: msg });
                }
                Change::Error { exception, message } => {
                    // Gradio's launch() fails before anything else runs: only while starting.
                    if let Some(port) = fooocus_console::taken_port(&message)
                        .filter(|_| matches!(self.tracker.phase, Phase::Starting))
                    {
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
        let Some(run) = self.machine.run_mut() else {
            return;
        };
        let run = &mut run.io;
        let install = self.target.as_ref().and_then(|t| t.install());
        // The guard's own stop goes to Fooocus directly, on the loopback port the guard gave it
        // (behind the gateway its internal one: the gateway asks callers for the token), once
        // Fooocus has said it listens. Never to a URL from the console.
        let listening =
            self.tracker.listening.is_some() || matches!(self.tracker.phase, Phase::Ready { .. });
        let port = run.fooocus_port.filter(|_| listening);
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
            port,
            run.gateway.is_some(),
            &creds,
        );
        if let (StopRoute::Unavailable { why }, Some(note)) = (&mut run.route, &run.gateway_note) {
            why.push_str(&format!(" ({note})"));
        }
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

    fn queue_event(&mut self, run_id: u64, event: guard_gateway::QueueEvent) {
        use guard_gateway::QueueEvent;
        // Sent by the gateway kept through the sleep, whatever run it served last.
        if let QueueEvent::WakeRequested = event {
            self.drive(Input::Wake(WakeBy::Visit));
            return;
        }
        if self.machine.current(run_id).is_none() {
            return;
        }
        let now = Instant::now();
        self.tracker
            .on_queue(event, now, SystemTime::now(), &mut self.changes);
        self.apply_changes(now);
    }

    fn container_event(&mut self, run_id: u64, event: guard_contain::ContainerEvent) {
        use guard_contain::ContainerEvent;
        let Some(run) = self.machine.current(run_id) else {
            return;
        };
        let run = &run.io;
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

    /// Gradio was given `--port P` and P is taken: it tries only that port and exits
    /// (networking.py: "Cannot find empty port in range: P-P"). Behind the gateway P is the
    /// guard's internal port, and the restart picks another; the user's own port stays taken
    /// until they act, so restarting cannot help.
    fn port_taken(&mut self, port: u16) {
        let Some(run) = self.machine.run_mut() else {
            return;
        };
        let run = &mut run.io;
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
        // The one place the state is derived: the tray and the dashboard render it as it is.
        st.state = self.machine.state(
            self.target.is_some(),
            matches!(self.tracker.phase, Phase::Ready { .. }),
            self.tracker.current().is_some(),
        );
        st.restarts = self.machine.restarts;
        let run = self.machine.run().map(|r| &r.io);
        st.pid = run.map(|r| r.pid);
        if run.is_none() {
            // Asleep, the gateway kept the address: opening it wakes Fooocus.
            st.url = self.parked.as_ref().and_then(|p| p.browse.clone());
        }
        st.graceful_stop = match run {
            Some(r) => match &r.route {
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
        st.actions.sleep =
            st.state == super::FooocusState::Ready && run.is_some_and(|r| r.gateway.is_some());
        st.sleep = self.sleep.clone();
        if st.sleep_spans.len() != self.sleep_spans.len()
            || st.sleep_spans.last() != self.sleep_spans.back()
        {
            st.sleep_spans = self.sleep_spans.iter().copied().collect();
        }
        st.download = (st.state == super::FooocusState::Starting)
            .then(|| self.tracker.download.clone())
            .flatten();
        st.generation = self.tracker.current().map(|g| GenerationProgress {
            id: g.id,
            started_ms: g.started_ms,
            image_index: g.image_index,
            image_total: g.images_total,
            step: g.last_step,
            step_total: g.steps_total,
            elapsed_s: g.elapsed(now).as_secs_f64(),
            timeout_s: self.limits.timeout.map(|d| d.as_secs_f64()),
            phase: g.phase,
            timeout_from_ms: g.started_ms + g.model_load_left_out().as_millis() as i64,
            loads_left_out: g.loads_left_out(),
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
    fn generation_finished(&mut self, g: Generation, now: Instant) {
        self.shared.generating.store(false, Ordering::Relaxed);
        self.recent_phases.push(g.phases);
        // A finished generation restarts the sleep's idle clock.
        self.idle_since = Some(now);
        // The console ended the task: a closed tab's call the gateway still held was it.
        if let Some(gw) = self.io().and_then(|r| r.gateway.as_ref()) {
            gw.task_ended();
        }
        let mut g = g;
        let effects = self
            .machine
            .step(Input::GenerationFinished { id: g.id }, now);
        for effect in effects {
            match effect {
                // A graceful stop ended it.
                Effect::StoppedGracefully { steps, by_user } => {
                    g.stop_how = Some(StopHow::Graceful);
                    g.stop_steps = steps;
                    if by_user {
                        g.outcome = Outcome::Stopped;
                    }
                }
                other => self.effect(other),
            }
        }
        self.record_finished(g);
    }

    fn usage(&mut self, u: Usage) {
        if !self.machine.running() {
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
        if self.machine.esc.is_some() {
            return;
        }
        let watchdog = self.io().is_some_and(|r| {
            r.container
                .choice()
                .unenforced
                .iter()
                .any(|s| s == "memory")
        });
        let generating = self.tracker.current().is_some();
        if let Some(b) = policy::check_usage(&self.limits, &u, generating, watchdog) {
            self.breach(b, Instant::now());
        }
    }

    fn on_time(&mut self, now: Instant) {
        let wall = SystemTime::now();
        if let Some(run) = self.machine.run_mut() {
            let run = &mut run.io;
            if run.settle_at.is_some_and(|at| now >= at) {
                run.settle_at = None;
                let (tracker, changes) = (&mut self.tracker, &mut self.changes);
                for reader in [&mut run.out, &mut run.err] {
                    reader.settle(|sig| tracker.on_signal(sig, now, wall, changes));
                }
            }
        }
        // The machine's timers: grace, kill, restart deadline, backoff.
        self.drive_at(Input::Tick, now);
        if self.asleep_pending.is_some_and(|(_, by)| now >= by) {
            self.finish_asleep(None);
        }
        if let (Some(due), Some(after)) = (self.sleep_due(), self.sleep_after()) {
            if now >= due {
                self.sleep_idle_s = (now - due + after).as_secs_f64();
                self.drive_at(Input::Sleep { generating: false }, now);
            }
        }
        // Stopping on purpose: no limit applies any more.
        let Some(run) = self.machine.run().filter(|r| r.end.is_none()) else {
            return;
        };
        let started = run.started;
        if self.machine.esc.is_none() {
            if let Some(b) = policy::check_time(&self.limits, &self.tracker, Some(started), now) {
                self.breach(b, now);
            }
        }
        self.tracker.on_tick(now, wall, &mut self.changes);
        self.apply_changes(now);
    }

    /// What Fooocus is doing, for the grace of a stop: its phase (before any step and with no
    /// phase announced it is preparing), the step estimate, the phase's recent longest time.
    fn pace(&self) -> crate::policy::Pace {
        // Outside a generation: the start-up model load, if under way (a RAM cap below what
        // loading needs is met there).
        let phase = match self.tracker.current() {
            Some(g) => Some(g.phase.unwrap_or(fooocus_console::Phase::Preparation)),
            None => self.tracker.idle_phase,
        };
        crate::policy::Pace {
            phase,
            step_seconds: self.step_clock.step_seconds(),
            phase_history_s: phase.and_then(|p| self.recent_phases.bound(p)),
        }
    }

    /// A limit fired: the machine decides between a graceful stop and a kill.
    fn breach(&mut self, breach: Breach, now: Instant) {
        let route = self.io().map_or(Err("Fooocus is not running".into()), |r| {
            route_result(&r.route)
        });
        let input = Input::Breach {
            breach,
            generation: self.tracker.current().map(|g| g.id),
            route,
            pace: self.pace(),
        };
        self.drive_at(input, now);
    }

    /// Ask Fooocus to stop the current generation, on a thread (the answer is `StopSent`).
    fn request_stop(&self) {
        let Some(run) = self.machine.run() else {
            return;
        };
        let route = run.io.route.clone();
        let gateway = run.io.gateway.clone();
        let run_id = run.id;
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

    fn exited(&mut self, run_id: u64, exit: ExitInfo) {
        let Some(run) = self.machine.current(run_id) else {
            return;
        };
        let end = run.end;
        let run = &run.io;
        // Whatever the main process left behind goes with it.
        let _ = run.container.kill_tree();
        let oom_kills = run.container.oom_kills();
        let (code, signal) = exit.parts();
        // Linux: the kernel SIGKILLed it in the cgroup. Windows: the job refused memory.
        let oom = oom_kills > 0 && (signal == Some(9) || cfg!(windows));
        *self.shared.last_exit.lock().unwrap() = Some((code, signal));
        let pid = run.pid;
        let port_taken = run.port_taken.or_else(|| {
            let port = self.tracker.port_taken?;
            Some((port, run.gateway.is_none() && port == self.cfg.launch.port))
        });
        let now = Instant::now();
        *self.shared.tree.lock().unwrap() = None;
        self.shared.generating.store(false, Ordering::Relaxed);
        // Falling asleep (or a wake that failed): the gateway keeps the user's port, and the
        // woken Fooocus listens where this one did.
        let park = self.machine.sleeps_after_exit(run_id);
        if park {
            if let (Some(gateway), Some(port)) = (run.gateway.clone(), run.fooocus_port) {
                self.parked = Some(Parked {
                    gateway,
                    gateway_run: run.gateway_run.clone(),
                    port,
                    browse: run.browse.clone(),
                });
            }
        } else if let Some(gw) = &run.gateway {
            // The next run's gateway binds the same port: close this one now, even if a stop
            // request in flight still holds it.
            gw.close();
        }
        let peak_ram = self.tracker.current().and_then(|g| g.peaks.ram_bytes);
        self.tracker
            .on_exit(oom, SystemTime::now(), &mut self.changes);
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
                // A cap below what loading needs is met during the load.
                phase: self
                    .tracker
                    .current()
                    .and_then(|g| g.phase)
                    .or(self.tracker.idle_phase),
            });
        }
        let facts = ExitFacts {
            code,
            signal,
            oom,
            port_taken,
        };
        self.drive_at(Input::Exited { run: run_id, facts }, now);
    }
}

/// Quiet this long, the console's open traceback is complete (see `Parser::settle`).
const CONSOLE_SETTLE: Duration = Duration::from_millis(300);

/// How many recent generations' phase times bound the grace of a stop.
const RECENT_GENERATIONS: usize = 8;

/// The phase times of the recent generations: this session's (a ring) and those the history
/// held at start.
#[derive(Default)]
struct RecentPhases {
    ring: [crate::generation::PhaseTimes; RECENT_GENERATIONS],
    seen: usize,
    past: crate::store::PastPhases,
}

impl RecentPhases {
    fn push(&mut self, p: crate::generation::PhaseTimes) {
        self.ring[self.seen % RECENT_GENERATIONS] = p;
        self.seen += 1;
    }

    /// How long a stop asked in `phase` may wait for Fooocus, by history: that phase's longest
    /// recent time; while decoding, the save after it too (the next step or the end comes only
    /// after both).
    fn bound(&self, phase: fooocus_console::Phase) -> Option<f64> {
        use fooocus_console::Phase as P;
        match phase {
            P::Decode => match (self.longest(P::Decode), self.longest(P::Saving)) {
                (None, None) => None,
                (d, s) => Some(d.unwrap_or(0.0) + s.unwrap_or(0.0)),
            },
            p => self.longest(p),
        }
    }

    /// The longest time `phase` took recently (None without history, or when it never ran).
    fn longest(&self, phase: fooocus_console::Phase) -> Option<f64> {
        self.ring[..self.seen.min(RECENT_GENERATIONS)]
            .iter()
            .chain(self.past.get())
            .map(|p| p.of(phase))
            .filter(|s| *s > 0.0)
            .max_by(f64::total_cmp)
    }
}

#[cfg(test)]
mod recent_phases_tests {
    use super::*;
    use crate::generation::PhaseTimes;
    use fooocus_console::Phase as P;

    #[test]
    fn the_bound_is_the_longest_recent_time_and_decoding_includes_the_save() {
        let mut r = RecentPhases::default();
        assert_eq!(
            r.bound(P::Preparation),
            None,
            "no history: the default applies"
        );
        for prep in [30.0, 110.0, 20.0] {
            r.push(PhaseTimes {
                preparation_s: prep,
                decode_s: 10.0,
                saving_s: 2.0,
                ..PhaseTimes::default()
            });
        }
        assert_eq!(r.bound(P::Preparation), Some(110.0));
        assert_eq!(r.bound(P::Decode), Some(12.0));
        assert_eq!(r.bound(P::Saving), Some(2.0));
        assert_eq!(r.bound(P::ModelLoad), None, "never ran: no bound from it");
        // The ring keeps the last 8: an old long preparation falls out.
        for _ in 0..RECENT_GENERATIONS {
            r.push(PhaseTimes {
                preparation_s: 5.0,
                ..PhaseTimes::default()
            });
        }
        assert_eq!(r.bound(P::Preparation), Some(5.0));
    }
}
