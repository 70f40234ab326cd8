//! The run lifecycle and the escalation as an explicit state machine.
//!
//! `Machine::step(input, now)` is the only way the state changes; it returns the effects for the
//! effect code (`run.rs`) to carry out: launch, signal, kill, ask for a graceful stop, say and
//! record things. What an effect learns (the launch worked, the kill reaped so many processes)
//! comes back as another input. Nothing here touches a process, a clock or a thread, so every
//! transition is tested below against a fake clock with the effects recorded.
//!
//! The state is one enum (`State`, and a live process's `RunPhase`): a graceful stop's deadline,
//! a limit's kill, the restart after it, a wake under way each live inside the state they
//! belong to, so no combination of them can contradict another.
//!
//! ```text
//! Idle ──Start──▶ Launch ──Launched──▶ Live{Running}             (starting / ready / generating)
//! Running ──Stop/Restart/Shutdown/Unhealthy──▶ Stopping (Terminate, kill_at) ──timer──▶ KillTree
//! Running ──Breach/StopGeneration──▶ Graceful{deadline} ──generation ended──▶ Running
//!                                         │ ignored / failed / no route
//!                                         ▼
//!                                 LimitKilled (KillTree) ──Exited──▶ Launch ──▶ Restarting
//! Running ──Exited──▶ Idle | Launch | BackingOff{at} | GaveUp
//! BackingOff ──timer──▶ Launch            Restarting ──Ready / deadline──▶ Running
//! Running ──Sleep──▶ FallingAsleep (Terminate) ──Exited──▶ Asleep{since}
//! Asleep ──Wake/Start/Restart──▶ Launch (waking) ──Ready──▶ Woke    ──exit/launch fails──▶ Asleep
//! ```

use std::time::{Duration, Instant};

use crate::config::{RestartConfig, RestartMode};
use crate::events::{BreachAction, EventKind, LimitKind, StopHow, StopStep, StopStepKind};
use crate::generation::Outcome;
use crate::policy::{Breach, Grace, Pace};
use crate::restart::{Decision, ExitKind, RestartPolicy};
use crate::supervisor::FooocusState;
use crate::words::run as words;

/// Why the guard asked the current process to exit (a limit's kill and a sleep are phases of
/// their own).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EndReason {
    UserStop,
    UserRestart,
    Unhealthy,
    Shutdown,
}

/// Who woke Fooocus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WakeBy {
    /// A request the gateway admitted arrived while Fooocus slept.
    Visit,
    /// "Wake" (or Start) in the tray, the dashboard or the CLI's IPC.
    User,
}

impl WakeBy {
    pub fn as_str(self) -> &'static str {
        match self {
            WakeBy::Visit => "visit",
            WakeBy::User => "user",
        }
    }
}

/// A wake under way: the launch it started is not ready yet.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Waking {
    pub by: WakeBy,
    /// How long Fooocus slept.
    pub asleep_s: f64,
    pub started: Instant,
}

/// One Fooocus process, from its launch to its exit. `R` is what the effect code keeps with it
/// (the child's pid, container, pipes, gateway); the tests use `()`.
#[derive(Debug)]
pub(crate) struct RunState<R> {
    pub id: u64,
    pub started: Instant,
    /// Asked to exit, or a kill failed: when the tree is killed (again).
    pub kill_at: Option<Instant>,
    /// Tree kills that did not finish, in a row.
    pub kill_failures: u32,
    /// Launched by a wake and not ready yet: its exit is the wake failing.
    pub waking: Option<Waking>,
    pub io: R,
}

/// Stopping a generation: what was asked, and each step taken so far.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Escalation {
    /// The graceful stop's grace; None when none was tried (no route, or a kill at once).
    pub grace: Option<Grace>,
    pub limit: Option<LimitKind>,
    pub generation: Option<u64>,
    /// The phase Fooocus was in when the stop was asked.
    pub fooocus_phase: Option<fooocus_console::Phase>,
    /// When the limit fell due (or the user asked).
    pub due: Instant,
    pub steps: Vec<StopStep>,
}

/// The restart after a limit's kill: its step is recorded once Fooocus is ready again, or when
/// its deadline (the start-up limit) passes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Recovery {
    /// When the tree was killed (asked to be, until the kill answers).
    pub since: Instant,
    /// When the limit fell due.
    pub due: Instant,
    pub generation: Option<u64>,
}

/// What a launch under way is for, when its ready finishes something.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Pending {
    Wake(Waking),
    Recovery(Recovery),
}

/// What the guard is doing with a live process.
#[derive(Debug, PartialEq)]
pub(crate) enum RunPhase {
    /// Starting, ready or generating (the console tracker tells those apart).
    Running,
    /// Relaunched after a limit's kill and not ready yet.
    Restarting(Recovery),
    /// Fooocus was asked to stop the generation; the tree is killed at `deadline`.
    Graceful {
        esc: Escalation,
        sent: Instant,
        deadline: Instant,
    },
    /// The escalation killed the tree (or asked to); the exit leads to the restart.
    /// `recovery` is None once its deadline passed.
    LimitKilled {
        esc: Escalation,
        recovery: Option<Recovery>,
    },
    /// Asked to exit (or killed) for this reason.
    Stopping(EndReason),
    /// Ending the clean way for the sleep; a wake asked meanwhile starts after the exit (a
    /// start now would race the old process for the port).
    FallingAsleep { wake_after: Option<WakeBy> },
}

/// A process and what the guard is doing with it.
#[derive(Debug)]
pub(crate) struct Live<R> {
    pub run: RunState<R>,
    pub phase: RunPhase,
}

impl<R> Live<R> {
    /// The guard decided to end this process: no limit, stop or sleep applies to it any more.
    pub fn ending(&self) -> bool {
        matches!(
            self.phase,
            RunPhase::LimitKilled { .. } | RunPhase::Stopping(_) | RunPhase::FallingAsleep { .. }
        )
    }
}

/// The supervisor's state.
#[derive(Debug)]
pub(crate) enum State<R> {
    /// Nothing runs; a launch asked for may be on its way (what its ready finishes).
    Idle(Option<Pending>),
    Live(Box<Live<R>>),
    /// Waiting to launch again after a failure (or a limit's kill).
    BackingOff {
        at: Instant,
        attempt: u32,
        recovery: Option<Recovery>,
    },
    GaveUp,
    /// Stopped to give its memory back; the gateway holds the port and wakes it on a visit.
    Asleep {
        since: Instant,
    },
}

/// Which kill a `Killed` input answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KillFor {
    /// Step 2 of the escalation.
    Escalation,
    /// Ending the run without a SIGTERM first (no way to ask on this OS).
    End,
    /// The timer after a SIGTERM, or the retry after a failed kill.
    Timer,
}
/// How the main process ended, as the effect code saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct ExitFacts {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// Killed by the kernel (or refused memory by the job) at the RAM cap.
    pub oom: bool,
    /// Fooocus could not bind its port: (port, whether it is the user's own port).
    pub port_taken: Option<(u16, bool)>,
}

/// Why a launch did not produce a process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LaunchError {
    /// Nothing to launch yet.
    NoTarget,
    /// A launch that cannot work until the user changes something (an option the install
    /// lacks, no container): no retry.
    Fatal,
    /// Spawning failed (counted as a failure, restarted with backoff).
    Spawn,
}

#[derive(Debug)]
pub(crate) enum Input<R> {
    Start,
    Stop,
    Restart,
    Shutdown,
    /// The user's Stop of the current generation.
    StopGeneration {
        generation: Option<u64>,
        /// Ok: Fooocus can be asked; Err: why not.
        route: Result<(), String>,
        pace: Pace,
    },
    /// A limit fired (the policy decided that; the machine decides what to do about it).
    Breach {
        breach: Breach,
        generation: Option<u64>,
        route: Result<(), String>,
        pace: Pace,
    },
    /// A sampling step of the current generation was seen (with the step-time estimate): a
    /// graceful stop waiting for the next step now has one step's time left.
    Step {
        step_seconds: Option<f64>,
    },
    /// Fooocus is up but cannot generate.
    Unhealthy,
    Launched {
        attempt: u32,
        run: u64,
        io: R,
    },
    LaunchFailed(LaunchError),
    /// The answer to `Effect::KillTree`: the processes reaped, or the error; how long it took.
    Killed {
        kill: KillFor,
        took: Duration,
        result: Result<u32, String>,
    },
    /// The graceful stop request for `run` could not be delivered.
    StopFailed {
        run: u64,
        why: String,
    },
    /// Fooocus said it is ready.
    Ready,
    /// The console closed generation `id`.
    GenerationFinished {
        id: u64,
    },
    Exited {
        run: u64,
        facts: ExitFacts,
    },
    /// A timer fell due (or any wake-up: timers compare with `now`).
    Tick,
    /// The effect code's deadlines as they stand now (see `Watches`).
    Watch(Watches),
    /// Idle for the sleep setting, or the user's "Sleep now". `generating`: a generation runs
    /// (the console tracker knows), which a sleep must never cut short.
    Sleep {
        generating: bool,
    },
    /// A visit (through the gateway) or the user asks for Fooocus while it sleeps.
    Wake(WakeBy),
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Effect {
    /// A line on the guard's console (and stderr).
    Say(String),
    Emit(EventKind),
    Launch {
        attempt: u32,
    },
    /// Ask the main process to exit (SIGTERM).
    Terminate,
    KillTree(KillFor),
    /// Ask Fooocus to stop the current generation (a thread answers with `StopFailed`).
    RequestStop,
    /// The current generation is being stopped for this limit.
    MarkLimit(LimitKind),
    /// The kill ended the current generation: close its record with this outcome.
    CloseGeneration {
        outcome: Outcome,
        steps: Vec<StopStep>,
    },
    /// The generation just finished was ended by the graceful stop.
    StoppedGracefully {
        steps: Vec<StopStep>,
        by_user: bool,
    },
    /// Add a step to a generation already recorded.
    AppendStopStep {
        generation: u64,
        step: StopStep,
    },
    /// Falling asleep: the gateway is told (a visit from now on wakes Fooocus again) and the
    /// memory in use is noted before the stop.
    Sleeping,
    /// Fooocus's tree is gone for the sleep.
    Asleep,
    /// A wake starts (a `Launch` follows).
    Waking(WakeBy),
    /// Fooocus is ready again after a sleep.
    Woke {
        asleep_s: f64,
        by: WakeBy,
        ready_s: f64,
    },
    /// The wake's start-up failed: Fooocus sleeps on (the next visit tries again).
    WakeFailed(String),
    /// One of the effect code's deadlines fell due: it checks what it is about.
    Due(Due),
}

/// Deadlines of what the effect code knows and the machine does not: the policy's time
/// limits, the tracker's quiet end of a generation, the console, the sleep's idle clock. The
/// machine waits on them with its own timers, in the states they count in, and says when each
/// falls due: `Machine::next_deadline` is the loop's only clock.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Watches {
    /// The run's next time limit (start-up, timeout, stall).
    pub limit: Option<Instant>,
    /// The tracker closes a generation whose end never came (tab closed, API-driven task).
    pub quiet: Option<Instant>,
    /// The console has been quiet long enough to complete an open traceback.
    pub settle: Option<Instant>,
    /// Console lines wait for the next batch to the views.
    pub flush: Option<Instant>,
    /// Idle for the sleep setting.
    pub sleep: Option<Instant>,
    /// The sample that measures what a sleep gave back is late: the sleep's event goes without.
    pub sleep_sample: Option<Instant>,
}

/// Which of the `Watches` fell due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Due {
    Settle,
    Flush,
    SleepSample,
    Sleep,
    Limit,
    Quiet,
}

/// Settings the machine reads (from the config).
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub restart: RestartConfig,
    pub startup: Option<Duration>,
    pub grace: Duration,
    /// The OS can ask a process to exit (Unix: SIGTERM); else a stop kills at once.
    pub can_terminate: bool,
}

/// How long the restart after a kill may take when the start-up limit is off.
pub(crate) const RESTART_DEADLINE: Duration = Duration::from_secs(600);
/// How long a user's stop waits for Fooocus's exit handlers before the tree kill.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long a shutdown waits for the main process to be reaped.
pub(crate) const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);
/// How often a failed tree kill is tried again.
pub(crate) const KILL_RETRY: Duration = Duration::from_secs(1);

pub(crate) struct Machine<R> {
    pub state: State<R>,
    pub restart: RestartPolicy,
    settings: Settings,
    /// Launches after the first (the `attempt` of a restart's `started` event).
    attempts: u32,
    /// Restarts scheduled (shown in the status).
    pub restarts: u32,
    /// Shutting down: by when the main process must have been reaped.
    pub quit_by: Option<Instant>,
    /// The effect code's deadlines (the last `Input::Watch`).
    watches: Watches,
}

impl<R> Machine<R> {
    pub fn new(settings: Settings) -> Self {
        Machine {
            state: State::Idle(None),
            restart: RestartPolicy::new(settings.restart.clone()),
            settings,
            attempts: 0,
            restarts: 0,
            quit_by: None,
            watches: Watches::default(),
        }
    }

    pub fn set_settings(&mut self, settings: Settings) {
        self.restart.set_config(settings.restart.clone());
        self.settings = settings;
    }

    pub fn live(&self) -> Option<&Live<R>> {
        match &self.state {
            State::Live(l) => Some(l),
            _ => None,
        }
    }

    fn live_mut(&mut self) -> Option<&mut Live<R>> {
        match &mut self.state {
            State::Live(l) => Some(l),
            _ => None,
        }
    }

    pub fn run(&self) -> Option<&RunState<R>> {
        self.live().map(|l| &l.run)
    }

    pub fn run_mut(&mut self) -> Option<&mut RunState<R>> {
        self.live_mut().map(|l| &mut l.run)
    }

    /// The current run, if it is run `id` (messages of an older run are ignored).
    pub fn current(&self, id: u64) -> Option<&RunState<R>> {
        self.run().filter(|r| r.id == id)
    }

    pub fn running(&self) -> bool {
        self.run().is_some()
    }

    /// A process the guard is not ending: a limit, a stop or a sleep may still apply to it.
    pub fn up(&self) -> Option<&RunState<R>> {
        self.live().filter(|l| !l.ending()).map(|l| &l.run)
    }

    /// A process running as usual (no generation being stopped, not restarting after a kill):
    /// the time and usage limits and the sleep's idle clock watch only this one.
    pub fn watched(&self) -> Option<&RunState<R>> {
        self.live()
            .filter(|l| l.phase == RunPhase::Running)
            .map(|l| &l.run)
    }

    /// Nothing runs and nothing will by itself (stopped, or given up).
    pub fn stopped(&self) -> bool {
        matches!(self.state, State::Idle(_) | State::GaveUp)
    }

    pub fn asleep(&self) -> bool {
        matches!(self.state, State::Asleep { .. })
    }

    /// A wake's launch was asked for and has not answered yet.
    pub fn launching_wake(&self) -> bool {
        matches!(self.state, State::Idle(Some(Pending::Wake(_))))
    }

    /// The state the views show. The machine knows the lifecycle; the console tracker knows
    /// whether Fooocus said it is ready and whether a generation runs.
    pub fn state(&self, configured: bool, ready: bool, generating: bool) -> FooocusState {
        match &self.state {
            _ if !configured => FooocusState::NotConfigured,
            State::Idle(_) => FooocusState::Stopped,
            State::GaveUp => FooocusState::GaveUp,
            State::BackingOff { .. } => FooocusState::Restarting,
            State::Asleep { .. } => FooocusState::Asleep,
            State::Live(l) => match l.phase {
                RunPhase::LimitKilled { .. } if self.restarts_after_limit() => {
                    FooocusState::Restarting
                }
                _ if l.ending() => FooocusState::Stopping,
                _ if generating => FooocusState::Generating,
                _ if ready => FooocusState::Ready,
                _ => FooocusState::Starting,
            },
        }
    }

    /// Whether the exit of run `run` leaves Fooocus asleep (falling asleep, or a wake whose
    /// start-up failed): the effect code keeps the gateway on the user's port then.
    pub fn sleeps_after_exit(&self, run: u64) -> bool {
        self.live().filter(|l| l.run.id == run).is_some_and(|l| {
            matches!(l.phase, RunPhase::FallingAsleep { .. })
                || (l.run.waking.is_some() && ends_wake(&l.phase))
        })
    }

    /// The restart after a limit's kill, in whichever state it is waited for.
    fn recovery(&self) -> Option<&Recovery> {
        match &self.state {
            State::Idle(Some(Pending::Recovery(r))) => Some(r),
            State::BackingOff { recovery, .. } => recovery.as_ref(),
            State::Live(l) => match &l.phase {
                RunPhase::Restarting(r) => Some(r),
                RunPhase::LimitKilled { recovery, .. } => recovery.as_ref(),
                _ => None,
            },
            _ => None,
        }
    }

    /// The restart after a kill is over (ready, or its deadline passed).
    fn end_recovery(&mut self) {
        match &mut self.state {
            State::Idle(pending @ Some(Pending::Recovery(_))) => *pending = None,
            State::BackingOff { recovery, .. } => *recovery = None,
            State::Live(l) => match &mut l.phase {
                RunPhase::Restarting(_) => l.phase = RunPhase::Running,
                RunPhase::LimitKilled { recovery, .. } => *recovery = None,
                _ => {}
            },
            _ => {}
        }
    }

    /// The earliest timer of the state: the only clock the effect code waits on.
    pub fn next_deadline(&self) -> Option<Instant> {
        let recovery = self.recovery().map(|r| r.since + self.restart_deadline());
        let timer = match &self.state {
            State::Live(l) => match &l.phase {
                RunPhase::Graceful { deadline, .. } => {
                    [l.run.kill_at, Some(*deadline)].into_iter().flatten().min()
                }
                _ => l.run.kill_at,
            },
            State::BackingOff { at, .. } => Some(*at),
            _ => None,
        };
        let watches = self.watches_in_force().into_iter().filter_map(|(_, at)| at);
        [recovery, timer, self.quit_by]
            .into_iter()
            .flatten()
            .chain(watches)
            .min()
    }

    /// The effect code's deadlines that count in this state, in the order they are handled:
    /// the time limits and the sleep's idle clock only while Fooocus runs as usual (not while
    /// a generation is being stopped, a restart after a kill waits for ready, or the process is
    /// being ended), the quiet end of a generation while the process is not being ended.
    fn watches_in_force(&self) -> [(Due, Option<Instant>); 6] {
        let w = &self.watches;
        let (live, up, watched) = (
            self.running(),
            self.up().is_some(),
            self.watched().is_some(),
        );
        [
            (Due::Settle, w.settle.filter(|_| live)),
            (Due::Flush, w.flush),
            (Due::SleepSample, w.sleep_sample),
            (Due::Sleep, w.sleep.filter(|_| watched)),
            (Due::Limit, w.limit.filter(|_| watched)),
            (Due::Quiet, w.quiet.filter(|_| up)),
        ]
    }

    /// Whether `due` fell due by `now`; it is cleared then (the effect code sets it again
    /// from what it knows, if it still stands).
    fn take_due(&mut self, due: Due, now: Instant) -> bool {
        let at = self
            .watches_in_force()
            .into_iter()
            .find(|(d, _)| *d == due)
            .and_then(|(_, at)| at);
        if at.is_none_or(|at| now < at) {
            return false;
        }
        let w = &mut self.watches;
        let slot = match due {
            Due::Settle => &mut w.settle,
            Due::Flush => &mut w.flush,
            Due::SleepSample => &mut w.sleep_sample,
            Due::Sleep => &mut w.sleep,
            Due::Limit => &mut w.limit,
            Due::Quiet => &mut w.quiet,
        };
        *slot = None;
        true
    }

    /// Shutting down and the main process is reaped (or it is hopeless): the loop may end.
    pub fn quit_done(&self, now: Instant) -> bool {
        self.quit_by.is_some_and(|by| !self.running() || now >= by)
    }

    fn restart_deadline(&self) -> Duration {
        self.settings.startup.unwrap_or(RESTART_DEADLINE)
    }

    pub fn step(&mut self, input: Input<R>, now: Instant) -> Vec<Effect> {
        let mut fx = Vec::new();
        match input {
            Input::Start | Input::Restart | Input::Wake(_) if self.asleep() => {
                let by = match input {
                    Input::Wake(by) => by,
                    _ => WakeBy::User,
                };
                self.wake(by, now, &mut fx);
            }
            Input::Wake(by) => {
                if let Some(RunPhase::FallingAsleep { wake_after }) =
                    self.live_mut().map(|l| &mut l.phase)
                {
                    *wake_after = Some(by);
                }
            }
            Input::Sleep { generating } => self.sleep(generating, now, &mut fx),
            Input::Start => {
                if !self.running() {
                    self.restart.reset();
                    fx.push(Effect::Launch { attempt: 0 });
                }
            }
            Input::Stop => {
                self.restart.reset();
                self.end_run(EndReason::UserStop, now, &mut fx);
                self.settle_idle();
            }
            Input::Restart => {
                self.restart.reset();
                if self.running() {
                    self.end_run(EndReason::UserRestart, now, &mut fx);
                } else {
                    fx.push(Effect::Launch { attempt: 0 });
                }
            }
            Input::Shutdown => {
                self.quit_by = Some(now + SHUTDOWN_DEADLINE);
                self.end_run(EndReason::Shutdown, now, &mut fx);
                self.settle_idle();
            }
            Input::StopGeneration {
                generation,
                route,
                pace,
            } => {
                if generation.is_some() && self.watched().is_some() {
                    self.begin_stop(None, generation, route, pace, now, now, &mut fx);
                }
            }
            Input::Breach {
                breach,
                generation,
                route,
                pace,
            } => self.breach(breach, generation, route, pace, now, &mut fx),
            Input::Step { step_seconds } => self.step_seen(step_seconds, now),
            Input::Unhealthy => self.end_run(EndReason::Unhealthy, now, &mut fx),
            Input::Launched { attempt, run, io } => self.launched(attempt, run, io, now),
            Input::LaunchFailed(e) if self.launching_wake() => {
                let reason = match e {
                    LaunchError::NoTarget => words::NO_INSTALL,
                    LaunchError::Fatal | LaunchError::Spawn => words::COULD_NOT_START_WAKE,
                };
                self.wake_failed(reason.into(), now, &mut fx);
            }
            Input::LaunchFailed(LaunchError::NoTarget) => {}
            Input::LaunchFailed(LaunchError::Fatal) => self.state = State::GaveUp,
            Input::LaunchFailed(LaunchError::Spawn) => {
                let recovery = self.recovery().copied();
                self.state = State::Idle(None);
                self.after_failure(now, words::COULD_NOT_START.into(), recovery, &mut fx);
            }
            Input::Killed { kill, took, result } => self.killed(kill, took, result, now, &mut fx),
            Input::StopFailed { run, why } => {
                if self.live_mut().is_some_and(|l| l.run.id == run) {
                    self.graceful_gave_way(format!("failed: {why}"), now, &mut fx);
                }
            }
            Input::Ready => self.ready(now, &mut fx),
            Input::GenerationFinished { id } => self.generation_finished(id, now, &mut fx),
            Input::Exited { run, facts } => {
                if self.current(run).is_some() {
                    self.exited(facts, now, &mut fx);
                }
            }
            Input::Tick => self.tick(now, &mut fx),
            Input::Watch(w) => self.watches = w,
        }
        fx
    }

    fn launched(&mut self, attempt: u32, id: u64, io: R, now: Instant) {
        self.attempts += u32::from(attempt > 0);
        let (waking, phase) = match std::mem::replace(&mut self.state, State::Idle(None)) {
            State::Idle(Some(Pending::Wake(w))) => (Some(w), RunPhase::Running),
            State::Idle(Some(Pending::Recovery(r)))
            | State::BackingOff {
                recovery: Some(r), ..
            } => (None, RunPhase::Restarting(r)),
            State::Live(l) => match l.phase {
                RunPhase::Restarting(r) => (l.run.waking, RunPhase::Restarting(r)),
                _ => (l.run.waking, RunPhase::Running),
            },
            _ => (None, RunPhase::Running),
        };
        self.state = State::Live(Box::new(Live {
            run: RunState {
                id,
                started: now,
                kill_at: None,
                kill_failures: 0,
                waking,
                io,
            },
            phase,
        }));
    }

    /// Fooocus said it is ready. A process the guard is ending may still print its last lines:
    /// only a live one's ready counts.
    fn ready(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        if self.up().is_none() {
            return;
        }
        self.restart.on_ready();
        if let Some(&r) = self.recovery() {
            self.end_recovery();
            self.finish_restart_step(r, now, fx);
        }
        let Some(w) = self.run_mut().and_then(|r| r.waking.take()) else {
            return;
        };
        let ready_s = now.saturating_duration_since(w.started).as_secs_f64();
        fx.push(Effect::Say(words::awake(ready_s, w.by)));
        fx.push(Effect::Woke {
            asleep_s: w.asleep_s,
            by: w.by,
            ready_s,
        });
    }

    /// Fall asleep: end the run the clean way (as the user's Stop does). Never while a
    /// generation runs or a limit is being handled: those end first, and the idle clock
    /// starts again after them.
    fn sleep(&mut self, generating: bool, now: Instant, fx: &mut Vec<Effect>) {
        let Some(l) = self.live_mut() else { return };
        if l.ending() {
            return;
        }
        if generating || l.phase != RunPhase::Running {
            fx.push(Effect::Say(words::NOT_SLEEPING_WHILE_BUSY.into()));
            return;
        }
        l.run.waking = None;
        l.phase = RunPhase::FallingAsleep { wake_after: None };
        fx.push(Effect::Sleeping);
        self.ask_to_exit(true, now, fx);
    }

    /// Start Fooocus again after a sleep.
    fn wake(&mut self, by: WakeBy, now: Instant, fx: &mut Vec<Effect>) {
        let State::Asleep { since } = self.state else {
            return;
        };
        self.restart.reset();
        self.state = State::Idle(Some(Pending::Wake(Waking {
            by,
            asleep_s: now.saturating_duration_since(since).as_secs_f64(),
            started: now,
        })));
        fx.push(Effect::Waking(by));
        fx.push(Effect::Launch { attempt: 0 });
    }

    /// The wake's start-up failed: sleep on, so the next visit tries again (each try is a
    /// user's request, never a loop of the guard's own).
    fn wake_failed(&mut self, reason: String, now: Instant, fx: &mut Vec<Effect>) {
        self.state = State::Asleep { since: now };
        fx.push(Effect::Say(words::did_not_wake(&reason)));
        fx.push(Effect::WakeFailed(reason));
    }

    /// A stop or shutdown: no wake goes on, and waiting to restart, given up or asleep, it is
    /// just stopped.
    fn settle_idle(&mut self) {
        match &mut self.state {
            State::BackingOff { .. } | State::GaveUp | State::Asleep { .. } => {
                self.state = State::Idle(None)
            }
            State::Idle(pending @ Some(Pending::Wake(_))) => *pending = None,
            State::Live(l) => l.run.waking = None,
            _ => {}
        }
    }

    fn tick(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        // The console's quiet first: what it completes may end a generation.
        if self.take_due(Due::Settle, now) {
            fx.push(Effect::Due(Due::Settle));
        }
        // Graceful stop not honoured in time: kill.
        if self.live_mut().is_some_and(
            |l| matches!(l.phase, RunPhase::Graceful { deadline, .. } if now >= deadline),
        ) {
            self.graceful_gave_way("ignored".into(), now, fx);
        }
        if let Some(run) = self.run_mut() {
            if run.kill_at.is_some_and(|at| now >= at) {
                run.kill_at = None;
                fx.push(Effect::KillTree(KillFor::Timer));
            }
        }
        // The restart after a kill has a deadline too: past the start-up limit (10 min when
        // that is off) the escalation ends and the start-up limit watches Fooocus again.
        if let Some(&r) = self
            .recovery()
            .filter(|r| now >= r.since + self.restart_deadline())
        {
            self.end_recovery();
            fx.push(Effect::Say(words::not_ready_after_kill(
                now.duration_since(r.since),
            )));
            if let Some(generation) = r.generation {
                fx.push(Effect::AppendStopStep {
                    generation,
                    step: StopStep {
                        step: StopStepKind::Restart,
                        at_s: r.since.saturating_duration_since(r.due).as_secs_f64(),
                        took_s: now.duration_since(r.since).as_secs_f64(),
                        result: "not ready in time".into(),
                    },
                });
            }
        }
        if let State::BackingOff {
            at,
            attempt,
            recovery,
        } = self.state
        {
            if now >= at {
                self.state = State::Idle(recovery.map(Pending::Recovery));
                fx.push(Effect::Launch { attempt });
            }
        }
        // The effect code's deadlines, in the state the timers above left.
        for due in [
            Due::Flush,
            Due::SleepSample,
            Due::Sleep,
            Due::Limit,
            Due::Quiet,
        ] {
            if self.take_due(due, now) {
                fx.push(Effect::Due(due));
            }
        }
    }

    fn breach(
        &mut self,
        b: Breach,
        generation: Option<u64>,
        route: Result<(), String>,
        pace: Pace,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        // A process the guard is already ending has no limits any more (its exit must not
        // turn into a limit's restart). During an escalation the loop checks no time or usage
        // limit; the container's own breach (the Windows job's memory) still comes.
        if self.up().is_none() {
            return;
        }
        let generation_limit = matches!(
            b.limit,
            LimitKind::Timeout | LimitKind::Stall | LimitKind::Vram
        );
        let action = if b.limit == LimitKind::Startup {
            BreachAction::Restart
        } else if generation_limit && route.is_ok() && generation.is_some() {
            BreachAction::StopGeneration
        } else if self.restarts_after_limit() {
            BreachAction::KillAndRestart
        } else {
            BreachAction::Kill
        };
        let what = words::breach(&b, generation);
        fx.push(Effect::Say(words::breached(&what, action)));
        fx.push(Effect::Emit(EventKind::LimitBreached {
            limit: b.limit,
            configured: b.configured,
            observed: b.observed,
            action,
            generation_id: generation,
            source: b.source.map(String::from),
            phase: pace.phase,
        }));
        if b.limit == LimitKind::Startup {
            fx.push(Effect::Emit(EventKind::Unhealthy { reason: what }));
            self.end_run(EndReason::Unhealthy, now, fx);
            return;
        }
        fx.push(Effect::MarkLimit(b.limit));
        let due = b.due.unwrap_or(now);
        if action == BreachAction::StopGeneration {
            self.begin_stop(Some(b.limit), generation, route, pace, due, now, fx);
        } else {
            let esc = Escalation {
                grace: None,
                limit: Some(b.limit),
                generation,
                fooocus_phase: pace.phase,
                due,
                steps: Vec::new(),
            };
            self.kill_for_escalation(esc, now, fx);
        }
    }

    /// Step 1: ask Fooocus to stop the current generation; kill if it cannot be asked.
    #[allow(clippy::too_many_arguments)]
    fn begin_stop(
        &mut self,
        limit: Option<LimitKind>,
        generation: Option<u64>,
        route: Result<(), String>,
        pace: Pace,
        due: Instant,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        // Nothing to stop in a process that is not running or already ending.
        if self.up().is_none() {
            return;
        }
        let grace = crate::policy::grace_for(self.settings.grace, &pace);
        let mut esc = Escalation {
            grace: Some(grace.clone()),
            limit,
            generation,
            fooocus_phase: pace.phase,
            due,
            steps: Vec::new(),
        };
        if let Err(why) = route {
            esc.steps.push(StopStep {
                step: StopStepKind::Graceful,
                at_s: 0.0,
                took_s: 0.0,
                result: format!("unavailable: {why}"),
            });
            esc.grace = None;
            self.kill_for_escalation(esc, now, fx);
            return;
        }
        if let Some(l) = self.live_mut() {
            l.phase = RunPhase::Graceful {
                esc,
                sent: now,
                deadline: now + grace.duration,
            };
        }
        fx.push(Effect::RequestStop);
    }

    /// A step was seen: a graceful stop that waited for it (Fooocus honours Stop at a step)
    /// keeps one step's grace from now, never more than it had.
    fn step_seen(&mut self, step_seconds: Option<f64>, now: Instant) {
        let configured = self.settings.grace;
        if let Some(RunPhase::Graceful {
            esc: Escalation {
                grace: Some(grace), ..
            },
            deadline,
            ..
        }) = self.live_mut().map(|l| &mut l.phase)
        {
            if grace.until_step {
                let step = crate::policy::grace_after_step(configured, step_seconds);
                *deadline = (*deadline).min(now + step.duration);
                grace.until_step = false;
            }
        }
    }

    /// Whether a limit's kill is followed by a restart: not with the restart policy `never`.
    fn restarts_after_limit(&self) -> bool {
        self.settings.restart.policy != RestartMode::Never
    }

    /// Step 2: kill the tree (the answer comes as `Killed { kill: Escalation }`).
    /// The graceful stop failed or was ignored (`result` says which): its step is recorded and
    /// the tree is killed. Nothing happens outside a graceful stop.
    fn graceful_gave_way(&mut self, result: String, now: Instant, fx: &mut Vec<Effect>) {
        let Some(l) = self.live_mut() else {
            return;
        };
        let RunPhase::Graceful { sent, .. } = l.phase else {
            return;
        };
        let RunPhase::Graceful { mut esc, .. } = std::mem::replace(&mut l.phase, RunPhase::Running)
        else {
            unreachable!()
        };
        esc.steps.push(StopStep {
            step: StopStepKind::Graceful,
            at_s: sent.saturating_duration_since(esc.due).as_secs_f64(),
            took_s: now.duration_since(sent).as_secs_f64(),
            result,
        });
        self.kill_for_escalation(esc, now, fx);
    }

    fn kill_for_escalation(&mut self, esc: Escalation, now: Instant, fx: &mut Vec<Effect>) {
        let Some(l) = self.live_mut() else { return };
        let recovery = Some(Recovery {
            since: now,
            due: esc.due,
            generation: esc.generation,
        });
        l.phase = RunPhase::LimitKilled { esc, recovery };
        fx.push(Effect::KillTree(KillFor::Escalation));
    }

    fn killed(
        &mut self,
        kill: KillFor,
        took: Duration,
        result: Result<u32, String>,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        if kill != KillFor::Escalation {
            if let Err(why) = result {
                self.kill_failed(now, why, fx);
            }
            return;
        }
        let Some(RunPhase::LimitKilled { esc, recovery }) = self.live_mut().map(|l| &mut l.phase)
        else {
            return;
        };
        let outcome = match &result {
            Ok(n) => format!("reaped {n} processes"),
            Err(e) => format!("failed: {e}"),
        };
        // The kill started `took` before its answer.
        let began = now.checked_sub(took).unwrap_or(now);
        esc.steps.push(StopStep {
            step: StopStepKind::Kill,
            at_s: began.saturating_duration_since(esc.due).as_secs_f64(),
            took_s: took.as_secs_f64(),
            result: outcome,
        });
        // The restart's clock starts with the kill done.
        *recovery = Some(Recovery {
            since: now,
            due: esc.due,
            generation: esc.generation,
        });
        let took_total = now.saturating_duration_since(esc.due).as_secs_f64();
        let (limit, generation, steps) = (esc.limit, esc.generation, esc.steps.clone());
        let fooocus_phase = esc.fooocus_phase;
        let (grace_s, grace) = match &esc.grace {
            Some(g) => (g.duration.as_secs_f64(), g.reason.to_string()),
            None => (0.0, "none".to_string()),
        };
        if let Err(why) = result {
            self.kill_failed(now, why, fx);
        }
        fx.push(Effect::CloseGeneration {
            outcome: limit.map(Outcome::for_limit).unwrap_or(Outcome::Killed),
            steps: steps.clone(),
        });
        fx.push(Effect::Say(words::tree_killed(
            took_total,
            self.restarts_after_limit(),
        )));
        if generation.is_some() {
            fx.push(Effect::Emit(EventKind::GenerationStopped {
                generation_id: generation,
                how: StopHow::Killed,
                limit,
                took_s: took_total,
                steps,
                grace_s,
                grace,
                phase: fooocus_phase,
                summary: None,
            }));
        }
    }

    /// A tree kill did not finish (the group could not be read, processes stuck in the
    /// kernel): the tree may still run, so it is tried again every second until it empties,
    /// and the user is told.
    fn kill_failed(&mut self, now: Instant, why: String, fx: &mut Vec<Effect>) {
        let Some(run) = self.run_mut() else { return };
        run.kill_failures += 1;
        run.kill_at = Some(now + KILL_RETRY);
        let n = run.kill_failures;
        if n == 1 || n % 30 == 0 {
            let message = words::kill_failed(&why, n);
            fx.push(Effect::Say(message.clone()));
            fx.push(Effect::Emit(EventKind::Warning { message }));
        }
    }

    /// Ready after a limit restart: the escalation is over.
    fn finish_restart_step(&mut self, r: Recovery, now: Instant, fx: &mut Vec<Effect>) {
        let step = StopStep {
            step: StopStepKind::Restart,
            at_s: r.since.saturating_duration_since(r.due).as_secs_f64(),
            took_s: now.duration_since(r.since).as_secs_f64(),
            result: "ready".into(),
        };
        fx.push(Effect::Say(words::ready_after_kill(step.took_s)));
        if let Some(generation) = r.generation {
            fx.push(Effect::AppendStopStep { generation, step });
        }
    }

    fn generation_finished(&mut self, id: u64, now: Instant, fx: &mut Vec<Effect>) {
        let Some(l) = self.live_mut() else { return };
        let RunPhase::Graceful {
            esc: Escalation {
                generation: Some(g),
                ..
            },
            sent,
            ..
        } = l.phase
        else {
            return;
        };
        if g != id {
            return;
        }
        let RunPhase::Graceful { mut esc, .. } = std::mem::replace(&mut l.phase, RunPhase::Running)
        else {
            unreachable!()
        };
        let took = now.duration_since(sent).as_secs_f64();
        esc.steps.push(StopStep {
            step: StopStepKind::Graceful,
            at_s: sent.saturating_duration_since(esc.due).as_secs_f64(),
            took_s: took,
            result: "ended".into(),
        });
        fx.push(Effect::StoppedGracefully {
            steps: esc.steps.clone(),
            by_user: esc.limit.is_none(),
        });
        fx.push(Effect::Say(words::stopped_gracefully(id, took)));
        fx.push(Effect::Emit(EventKind::GenerationStopped {
            generation_id: Some(id),
            how: StopHow::Graceful,
            limit: esc.limit,
            took_s: now.saturating_duration_since(esc.due).as_secs_f64(),
            steps: esc.steps,
            grace_s: esc.grace.as_ref().map_or(0.0, |g| g.duration.as_secs_f64()),
            grace: esc.grace.as_ref().map_or("none", |g| g.reason).into(),
            phase: esc.fooocus_phase,
            summary: None,
        }));
    }

    /// End the current process for `why`: a clean stop (SIGTERM, a few seconds, then the
    /// tree kill), or a kill straight away. The loop goes on meanwhile (a timer, like a limit
    /// stop's grace), so it never sleeps here.
    fn end_run(&mut self, why: EndReason, now: Instant, fx: &mut Vec<Effect>) {
        let clean = why != EndReason::Unhealthy;
        let Some(l) = self.live_mut() else { return };
        if l.ending() {
            // Already ending: the user's word decides what follows the exit (no restart after a
            // Stop, no limit's restart), and the deadline that stands is kept, not pushed back
            // by a second click.
            if clean && l.phase != RunPhase::Stopping(EndReason::Shutdown) {
                l.phase = RunPhase::Stopping(why);
                if l.run.kill_at.is_none() {
                    l.run.kill_at = Some(now + STOP_GRACE);
                }
            }
            return;
        }
        // Ending the process supersedes stopping a generation: that deadline must not kill it
        // a second time and turn the exit into a limit's restart.
        l.phase = RunPhase::Stopping(why);
        self.ask_to_exit(clean, now, fx);
    }

    /// SIGTERM and the tree kill 5 s later (Fooocus holds no state worth a long wait; 5 s
    /// covers its exit handlers), or the kill at once.
    fn ask_to_exit(&mut self, clean: bool, now: Instant, fx: &mut Vec<Effect>) {
        let can_terminate = self.settings.can_terminate;
        let Some(run) = self.run_mut() else { return };
        if clean && can_terminate {
            fx.push(Effect::Terminate);
            run.kill_at = Some(now + STOP_GRACE);
        } else {
            fx.push(Effect::KillTree(KillFor::End));
        }
    }

    fn exited(&mut self, facts: ExitFacts, now: Instant, fx: &mut Vec<Effect>) {
        let State::Live(l) = std::mem::replace(&mut self.state, State::Idle(None)) else {
            return;
        };
        let Live { run, phase } = *l;
        let next = self.attempts + 1;
        if let RunPhase::FallingAsleep { wake_after } = phase {
            self.state = State::Asleep { since: now };
            fx.push(Effect::Say(words::ASLEEP.into()));
            fx.push(Effect::Asleep);
            if let Some(by) = wake_after {
                self.wake(by, now, fx);
            }
            return;
        }
        if run.waking.is_some() && ends_wake(&phase) {
            let reason = match phase {
                RunPhase::Stopping(EndReason::Unhealthy) => words::NOT_READY_IN_TIME.to_string(),
                RunPhase::LimitKilled { .. } => words::LIMIT_STOPPED_THE_WAKE.to_string(),
                _ => format!("Fooocus {}", words::exit(&facts)),
            };
            self.wake_failed(reason, now, fx);
            return;
        }
        match phase {
            RunPhase::Stopping(EndReason::UserStop | EndReason::Shutdown) => {
                fx.push(Effect::Say(words::STOPPED.into()));
            }
            RunPhase::Stopping(EndReason::UserRestart) => {
                // A wake restarted by the user is still a wake.
                self.state = State::Idle(run.waking.map(Pending::Wake));
                self.say_restarting(next, Duration::ZERO, "user".into(), fx);
                fx.push(Effect::Launch { attempt: next })
            }
            RunPhase::LimitKilled { .. } if !self.restarts_after_limit() => {
                // `never` means never: the generation ended with the kill, Fooocus stays down.
                fx.push(Effect::Say(words::STAYS_STOPPED_AFTER_LIMIT.into()));
            }
            RunPhase::LimitKilled { esc, recovery } => {
                let reason = match esc.limit {
                    Some(l) => format!("limit: {}", l.as_str()),
                    None => "limit".to_string(),
                };
                match self.restart.on_limit_kill(now) {
                    Decision::Restart { attempt, delay } if !delay.is_zero() => {
                        self.schedule_restart(now, attempt, delay, reason, recovery, fx)
                    }
                    Decision::GiveUp { failures } => {
                        self.give_up(failures, words::keeps_firing(esc.limit), fx)
                    }
                    Decision::Restart { .. } | Decision::Stay => {
                        self.state = State::Idle(recovery.map(Pending::Recovery));
                        self.say_restarting(next, Duration::ZERO, reason, fx);
                        fx.push(Effect::Launch { attempt: next })
                    }
                }
            }
            RunPhase::Stopping(EndReason::Unhealthy) => {
                self.after_failure(now, words::COULD_NOT_GENERATE.into(), None, fx)
            }
            // It ended by itself. A graceful stop in flight has nothing left to stop (its
            // deadline would otherwise kill the next run); a restart after a kill goes on.
            RunPhase::Running | RunPhase::Graceful { .. } | RunPhase::Restarting(_) => {
                let recovery = match phase {
                    RunPhase::Restarting(r) => Some(r),
                    _ => None,
                };
                let kind = if facts.code == Some(0) {
                    ExitKind::Clean
                } else {
                    ExitKind::Failure
                };
                let reason = words::exit(&facts);
                fx.push(Effect::Say(format!("Fooocus {reason}")));
                match self.restart.on_exit(kind, now) {
                    Decision::Restart { attempt, delay } => {
                        self.schedule_restart(now, attempt, delay, reason, recovery, fx)
                    }
                    Decision::GiveUp { failures } => self.give_up(failures, reason, fx),
                    Decision::Stay => self.state = State::Idle(recovery.map(Pending::Recovery)),
                }
            }
            RunPhase::FallingAsleep { .. } => unreachable!("handled above"),
        }
    }

    fn after_failure(
        &mut self,
        now: Instant,
        reason: String,
        recovery: Option<Recovery>,
        fx: &mut Vec<Effect>,
    ) {
        match self.restart.on_exit(ExitKind::Failure, now) {
            Decision::Restart { attempt, delay } => {
                self.schedule_restart(now, attempt, delay, reason, recovery, fx)
            }
            Decision::GiveUp { failures } => self.give_up(failures, reason, fx),
            Decision::Stay => self.state = State::Idle(recovery.map(Pending::Recovery)),
        }
    }

    fn schedule_restart(
        &mut self,
        now: Instant,
        attempt: u32,
        delay: Duration,
        reason: String,
        recovery: Option<Recovery>,
        fx: &mut Vec<Effect>,
    ) {
        self.restarts += 1;
        self.say_restarting(attempt, delay, reason, fx);
        self.state = State::BackingOff {
            at: now + delay,
            attempt,
            recovery,
        };
    }

    /// Every restart says why and when, whatever caused it.
    fn say_restarting(&self, attempt: u32, delay: Duration, reason: String, fx: &mut Vec<Effect>) {
        fx.push(Effect::Say(words::restarting(attempt, delay, &reason)));
        fx.push(Effect::Emit(EventKind::Restarting {
            attempt,
            delay_s: delay.as_secs_f64(),
            reason,
        }));
    }

    fn give_up(&mut self, failures: u32, reason: String, fx: &mut Vec<Effect>) {
        let window_s = self.settings.restart.window_s as f64;
        fx.push(Effect::Say(words::giving_up(failures, window_s, &reason)));
        fx.push(Effect::Emit(EventKind::GaveUp {
            failures,
            window_s,
            reason,
        }));
        self.state = State::GaveUp;
    }
}

/// Whether a wake's process ending in this phase is the wake failing (not a user's stop).
fn ends_wake(phase: &RunPhase) -> bool {
    matches!(
        phase,
        RunPhase::Running
            | RunPhase::Restarting(_)
            | RunPhase::Graceful { .. }
            | RunPhase::LimitKilled { .. }
            | RunPhase::Stopping(EndReason::Unhealthy)
    )
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
