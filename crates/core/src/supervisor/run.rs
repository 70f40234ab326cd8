//! The supervisor loop: the effect code around the state machine (`machine.rs`). It owns the
//! OS side of a run (process, container, pipes, gateway), feeds the machine what happens, and
//! carries out the effects the machine returns.
//!
//! Here: the loop, the effects, the commands, the sleep. By concern beside it: `launch`
//! (command, gateway, container, the threads that feed the loop), `observe` (console, queue,
//! container events, usage, exit -> the machine's inputs), `publish` (events, console lines,
//! status).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use guard_contain::Containment;
use std::process::Stdio;

mod launch;
mod observe;
mod publish;

use super::io::{self, Spawner};
use super::machine::{
    Due, Effect, ExitFacts, Input, LaunchError, Machine, Settings, WakeBy, Watches,
    RESTART_DEADLINE,
};
use super::Actions;
use super::{
    Cmd, ExitInfo, GenerationProgress, GracefulStop, GuardOptions, MachineMemory, Msg, Sampled,
    Shared, SleepInfo, Status, Target, Update,
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
    /// What opens the user's browser (None: nothing does).
    browser: Option<super::Browser>,
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
    /// The generation just finished, while the machine hears of it (`generation_finished`).
    finished: Option<Generation>,
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
            browser: opts.browser,
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
            finished: None,
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
        let effects = self.machine.step(input, now);
        self.carry_out(effects);
        self.after_step(now);
    }

    /// Carry out effects in order. What an effect learns (the launch worked, the kill reaped
    /// the tree) is the machine's next input, and its effects join the back of the queue: the
    /// machine is never stepped from inside an effect.
    fn carry_out(&mut self, effects: Vec<Effect>) {
        let mut queue = VecDeque::from(effects);
        while let Some(effect) = queue.pop_front() {
            if let Some(answer) = self.effect(effect) {
                queue.extend(self.machine.step(answer, Instant::now()));
            }
        }
    }

    /// What follows any step: the parked gateway, the sleep's figures, the records of
    /// generations a kill closed.
    fn after_step(&mut self, now: Instant) {
        // The port is let go once Fooocus no longer sleeps (stopped, shut down); a wake's
        // launch took the gateway over already.
        if !self.machine.asleep() {
            if let Some(p) = self.parked.take() {
                p.gateway.close();
            }
        }
        if !(self.machine.asleep() || self.machine.running() || self.machine.launching_wake()) {
            self.sleep = None;
            self.asleep_pending = None;
            self.end_sleep_span();
        }
        // A kill closes the current generation: record it now.
        if !self.changes.is_empty() {
            self.apply_changes(now);
        }
    }

    /// Carry out one effect; the answer, when it has one, is the machine's next input.
    fn effect(&mut self, effect: Effect) -> Option<Input<Run>> {
        match effect {
            Effect::Say(text) => self.guard_line(&text),
            Effect::Emit(kind) => self.emit(kind),
            Effect::Launch { attempt } => match self.start_run(attempt) {
                Ok((run, io)) => {
                    // A wake's launch has a parked gateway: a browser is already waiting.
                    self.open_browser_at_ready = attempt == 0 && self.parked.is_none();
                    // The run holds the kept gateway now.
                    self.parked = None;
                    return Some(Input::Launched { attempt, run, io });
                }
                Err(e) => return Some(Input::LaunchFailed(e)),
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
                let run = self.io()?;
                let began = Instant::now();
                let (took, result) = match run.container.kill_tree() {
                    Ok(r) => (r.elapsed, Ok(r.signalled)),
                    Err(e) => (began.elapsed(), Err(e.to_string())),
                };
                return Some(Input::Killed { kill, took, result });
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
            // The generation in hand (`generation_finished`) was ended by the graceful stop.
            Effect::StoppedGracefully { steps, by_user } => {
                if let Some(g) = self.finished.as_mut() {
                    g.stop_how = Some(StopHow::Graceful);
                    g.stop_steps = steps;
                    if by_user {
                        g.outcome = Outcome::Stopped;
                    }
                }
            }
            Effect::AppendStopStep { generation, step } => {
                if let Some(store) = &self.store {
                    // A dropped step is said by the next overflow of a larger record.
                    let _ = store.append_stop_step(generation, &step);
                }
            }
            Effect::Due(due) => return self.due(due, Instant::now()),
        }
        None
    }

    /// The deadlines only the loop knows, handed to the machine: its `next_deadline` is the
    /// one clock the loop waits on.
    fn watch(&mut self, now: Instant) {
        let run = self.machine.run();
        let watches = Watches {
            limit: self.machine.watched().and_then(|r| {
                policy::next_time_limit(&self.limits, &self.tracker, Some(r.started))
                    .map(|(t, _)| t)
            }),
            quiet: run.and(self.tracker.quiet_deadline()),
            settle: run.and_then(|r| r.io.settle_at),
            flush: (!self.pending_console.is_empty())
                .then(|| self.last_console_flush + CONSOLE_BATCH),
            sleep: self.sleep_due(),
            sleep_sample: self.asleep_pending.map(|(_, by)| by),
        };
        let effects = self.machine.step(Input::Watch(watches), now);
        self.carry_out(effects);
    }

    /// One of the loop's deadlines fell due: whatever it is about is checked afresh.
    fn due(&mut self, due: Due, now: Instant) -> Option<Input<Run>> {
        let wall = SystemTime::now();
        match due {
            Due::Settle => {
                let run = &mut self.machine.run_mut()?.io;
                if run.settle_at.is_some_and(|at| now >= at) {
                    run.settle_at = None;
                    let (tracker, changes) = (&mut self.tracker, &mut self.changes);
                    for reader in [&mut run.out, &mut run.err] {
                        reader.settle(|sig| tracker.on_signal(sig, now, wall, changes));
                    }
                }
            }
            Due::Flush => self.flush_console(false),
            Due::SleepSample => {
                if self.asleep_pending.is_some_and(|(_, by)| now >= by) {
                    self.finish_asleep(None);
                }
            }
            Due::Sleep => {
                let (due, after) = (self.sleep_due()?, self.sleep_after()?);
                if now >= due {
                    self.sleep_idle_s = (now - due + after).as_secs_f64();
                    return Some(Input::Sleep { generating: false });
                }
            }
            Due::Limit => {
                let started = self.machine.watched()?.started;
                let b = policy::check_time(&self.limits, &self.tracker, Some(started), now)?;
                return Some(self.breach_input(b));
            }
            Due::Quiet => self.tracker.on_tick(now, wall, &mut self.changes),
        }
        None
    }

    pub(super) fn clean_stale(&mut self) {
        for group in guard_contain::clean_stale() {
            self.emit(EventKind::StaleCleaned { group });
        }
    }

    pub(super) fn autostart(&mut self) {
        self.carry_out(vec![Effect::Launch { attempt: 0 }]);
        self.after_step(Instant::now());
    }

    pub(super) fn run(&mut self, rx: Receiver<Msg>) {
        loop {
            self.watch(Instant::now());
            let msg = match self.machine.next_deadline() {
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
            if self.machine.stopped() && self.exit_when_idle() {
                break;
            }
        }
    }

    /// The CLI running a plain command with restarts off ends when the command ends.
    fn exit_when_idle(&self) -> bool {
        self.exit_when_done && self.next_run > 1
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
            Msg::Sampled(s) => self.sampled(*s),
            Msg::Container { run, event } => self.container_event(run, event),
            Msg::Queue { run, event } => self.queue_event(run, event),
            Msg::StopSent { run, result } => {
                if let Err(why) = result {
                    self.drive(Input::StopFailed { run, why });
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
            Cmd::BreachesSeen(reply) => {
                self.shared.status.lock().unwrap().unseen_breach = false;
                self.last_status = None; // publish even if nothing else changed
                self.publish_status();
                let _ = reply.send(());
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
        let Some(run) = self.machine.up() else {
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
        let run = self.machine.watched()?;
        let gateway = run.io.gateway.as_ref()?;
        if self.tracker.current().is_some() || !matches!(self.tracker.phase, Phase::Ready { .. }) {
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

    /// Every timer that fell due by `now`: the machine's own (grace, kill, restart deadline,
    /// backoff) and the loop's deadlines as they stand now (`Effect::Due`).
    fn on_time(&mut self, now: Instant) {
        self.watch(now);
        self.drive_at(Input::Tick, now);
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
        let input = self.breach_input(breach);
        self.drive_at(input, now);
    }

    fn breach_input(&self, breach: Breach) -> Input<Run> {
        let route = self.io().map_or(Err("Fooocus is not running".into()), |r| {
            route_result(&r.route)
        });
        Input::Breach {
            breach,
            generation: self.tracker.current().map(|g| g.id),
            route,
            pace: self.pace(),
        }
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
}

/// Console lines go to the views at most this often.
const CONSOLE_BATCH: Duration = Duration::from_millis(100);

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
