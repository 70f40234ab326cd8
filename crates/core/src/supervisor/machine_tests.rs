//! The state machine against a fake clock, with its effects recorded: no process, no thread.
//!
//! `TABLE` lists every (state, input) pair the supervisor can meet and the state and effects
//! it must lead to; `every_row_of_the_table_holds` runs each row. The scenario tests below it
//! follow longer paths: crash backoff and give-up, limit kills backing off and giving up, the
//! stop deadline, a failing kill retried, the escalation's steps.

use std::time::{Duration, Instant};

use super::*;

type M = Machine<()>;

fn settings() -> Settings {
    Settings {
        restart: RestartConfig::default(),
        startup: None,
        grace: Duration::from_secs(10),
        can_terminate: true,
    }
}

/// The fake clock: seconds after a fixed instant.
struct Clock(Instant);
impl Clock {
    fn at(&self, s: f64) -> Instant {
        self.0 + Duration::from_secs_f64(s)
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A short name for the machine's state, as the table writes it.
fn label(m: &M) -> &'static str {
    match &m.state {
        State::Idle(Some(Pending::Wake(_))) => "waking",
        State::Idle(_) => "idle",
        State::Asleep { .. } => "asleep",
        State::GaveUp => "gave-up",
        State::BackingOff { .. } => "backing-off",
        State::Live(l) => match &l.phase {
            RunPhase::FallingAsleep { .. } => "falling-asleep",
            RunPhase::LimitKilled { .. } => "limit-killed",
            RunPhase::Stopping(_) => "stopping",
            RunPhase::Graceful { .. } => "graceful",
            RunPhase::Restarting(_) => "restarting",
            RunPhase::Running if l.run.waking.is_some() => "waking",
            RunPhase::Running => "running",
        },
    }
}

/// Whether anything of a stop is left: a graceful stop, a limit's kill, the restart after it.
fn escalating(m: &M) -> bool {
    m.recovery().is_some()
        || m.live().is_some_and(|l| {
            matches!(
                l.phase,
                RunPhase::Graceful { .. } | RunPhase::LimitKilled { .. }
            )
        })
}

/// A short name for each effect, as the table writes them (events by their JSON name).
fn kinds(fx: &[Effect]) -> Vec<String> {
    fx.iter()
        .map(|e| match e {
            Effect::Say(_) => "say".to_string(),
            Effect::Emit(k) => crate::events::GuardEvent::now(k.clone()).name().to_string(),
            Effect::Launch { attempt } => format!("launch {attempt}"),
            Effect::Terminate => "terminate".into(),
            Effect::KillTree(KillFor::Escalation) => "kill escalation".into(),
            Effect::KillTree(KillFor::End) => "kill end".into(),
            Effect::KillTree(KillFor::Timer) => "kill timer".into(),
            Effect::RequestStop => "request-stop".into(),
            Effect::MarkLimit(_) => "mark-limit".into(),
            Effect::CloseGeneration { .. } => "close-generation".into(),
            Effect::StoppedGracefully { .. } => "stopped-gracefully".into(),
            Effect::AppendStopStep { .. } => "append-step".into(),
            Effect::Sleeping => "sleeping".into(),
            Effect::Asleep => "asleep".into(),
            Effect::Waking(by) => format!("waking {}", by.as_str()),
            Effect::Woke { .. } => "woke".into(),
            Effect::WakeFailed(_) => "wake-failed".into(),
            Effect::Due(d) => format!("due {d:?}"),
        })
        .collect()
}

fn says(fx: &[Effect]) -> Vec<&str> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Say(s) => Some(s.as_str()),
            _ => None,
        })
        .collect()
}

// --- setups: each leaves the machine in one state at t = 0 ----------------------------------

fn idle(_: &mut M, _: &Clock) {}

fn running(m: &mut M, c: &Clock) {
    m.step(Input::Start, c.at(0.0));
    m.step(launched(0, 1), c.at(0.0));
}

fn stopping(m: &mut M, c: &Clock) {
    running(m, c);
    m.step(Input::Stop, c.at(0.0));
}

fn restarting_by_user(m: &mut M, c: &Clock) {
    running(m, c);
    m.step(Input::Restart, c.at(0.0));
}

fn shutting_down(m: &mut M, c: &Clock) {
    running(m, c);
    m.step(Input::Shutdown, c.at(0.0));
}

fn unhealthy(m: &mut M, c: &Clock) {
    running(m, c);
    m.step(Input::Unhealthy, c.at(0.0));
}

fn graceful(m: &mut M, c: &Clock) {
    running(m, c);
    m.step(stop_generation(Ok(())), c.at(0.0));
}

fn graceful_for_limit(m: &mut M, c: &Clock) {
    running(m, c);
    m.step(breach(LimitKind::Timeout, Ok(())), c.at(0.0));
}

/// The escalation asked for the kill and waits for its answer.
fn kill_sent(m: &mut M, c: &Clock) {
    running(m, c);
    m.step(breach(LimitKind::Memory, Ok(())), c.at(0.0));
}

/// The kill reaped the tree; the exit is next.
fn killed(m: &mut M, c: &Clock) {
    kill_sent(m, c);
    m.step(kill_ok(KillFor::Escalation), c.at(0.0));
}

/// Relaunched after a limit kill, waiting for ready.
fn relaunched(m: &mut M, c: &Clock) {
    killed(m, c);
    let fx = m.step(exited(1, None), c.at(0.0));
    assert_eq!(kinds(&fx), ["say", "restarting", "launch 1"]);
    m.step(launched(1, 2), c.at(0.0));
}

/// Run 1 exits with code 1 at 1 s; its restart is due at 2 s (the first backoff) and launched.
fn crashed_and_relaunched(m: &mut M, c: &Clock) {
    m.step(exited(1, Some(1)), c.at(1.0));
    m.step(Input::Tick, c.at(2.0));
    m.step(launched(1, 2), c.at(2.0));
}

fn backing_off(m: &mut M, c: &Clock) {
    running(m, c);
    m.step(exited(1, Some(1)), c.at(0.0));
}

fn gave_up(m: &mut M, c: &Clock) {
    m.step(Input::LaunchFailed(LaunchError::Fatal), c.at(0.0));
}

/// Idle for the sleep setting: asked to exit, the tree kill 5 s later.
fn falling_asleep(m: &mut M, c: &Clock) {
    running(m, c);
    m.step(sleep(), c.at(0.0));
}

/// Run 1 exited for the sleep.
fn asleep(m: &mut M, c: &Clock) {
    falling_asleep(m, c);
    m.step(exited(1, None), c.at(0.0));
}

/// A visit woke it: the launch is asked for, its answer not in yet.
fn wake_launching(m: &mut M, c: &Clock) {
    asleep(m, c);
    m.step(Input::Wake(WakeBy::Visit), c.at(0.0));
}

/// Woken: run 2 started and is not ready yet.
fn waking(m: &mut M, c: &Clock) {
    wake_launching(m, c);
    m.step(launched(0, 2), c.at(0.0));
}

// --- inputs -------------------------------------------------------------------------------

fn stop_generation(route: Result<(), String>) -> Input<()> {
    Input::StopGeneration {
        generation: Some(7),
        route,
        pace: Pace::default(),
    }
}

fn breach(limit: LimitKind, route: Result<(), String>) -> Input<()> {
    Input::Breach {
        breach: Breach {
            limit,
            configured: 20.0,
            observed: 21.0,
            due: None,
            source: None,
        },
        generation: Some(7),
        route,
        pace: Pace::default(),
    }
}

fn kill_ok(kill: KillFor) -> Input<()> {
    Input::Killed {
        kill,
        took: Duration::from_millis(30),
        result: Ok(3),
    }
}

fn kill_err(kill: KillFor) -> Input<()> {
    Input::Killed {
        kill,
        took: Duration::from_millis(30),
        result: Err("cgroup.procs: too many open files".into()),
    }
}

/// The effect code's report that Fooocus was started (`run` counts launches from 1).
fn launched(attempt: u32, run: u64) -> Input<()> {
    Input::Launched {
        attempt,
        run,
        io: (),
    }
}

fn exited(run: u64, code: Option<i32>) -> Input<()> {
    Input::Exited {
        run,
        facts: ExitFacts {
            code,
            signal: code.is_none().then_some(9),
            ..Default::default()
        },
    }
}

fn sleep() -> Input<()> {
    Input::Sleep { generating: false }
}

fn no_route() -> Result<(), String> {
    Err("Fooocus 2.0 has no stop".into())
}

struct Row {
    setup: fn(&mut M, &Clock),
    input: fn() -> Input<()>,
    /// Seconds after the setup.
    at: f64,
    state: &'static str,
    effects: &'static [&'static str],
}

const fn row(
    setup: fn(&mut M, &Clock),
    input: fn() -> Input<()>,
    at: f64,
    state: &'static str,
    effects: &'static [&'static str],
) -> Row {
    Row {
        setup,
        input,
        at,
        state,
        effects,
    }
}

/// (state, input, when) -> (state, effects). A launch is an effect: the state changes only
/// when the effect code answers `Launched`.
#[rustfmt::skip]
const TABLE: &[Row] = &[
    // Idle
    row(idle, || Input::Start, 0.0, "idle", &["launch 0"]),
    row(idle, || Input::Stop, 0.0, "idle", &[]),
    row(idle, || Input::Restart, 0.0, "idle", &["launch 0"]),
    row(idle, || Input::Shutdown, 0.0, "idle", &[]),
    row(idle, || launched(0, 1), 0.0, "running", &[]),
    row(idle, || Input::LaunchFailed(LaunchError::NoTarget), 0.0, "idle", &[]),
    row(idle, || Input::LaunchFailed(LaunchError::Fatal), 0.0, "gave-up", &[]),
    row(idle, || Input::LaunchFailed(LaunchError::Spawn), 0.0, "backing-off", &["say", "restarting"]),
    row(idle, || stop_generation(Ok(())), 0.0, "idle", &[]),
    row(idle, || Input::Tick, 100.0, "idle", &[]),
    row(idle, || exited(1, Some(1)), 0.0, "idle", &[]),
    row(idle, || Input::Ready, 0.0, "idle", &[]),
    row(idle, || breach(LimitKind::Memory, Ok(())), 0.0, "idle", &[]),
    row(idle, || Input::Unhealthy, 0.0, "idle", &[]),
    row(idle, || kill_err(KillFor::Timer), 0.0, "idle", &[]),
    row(idle, || Input::StopFailed { run: 1, why: "refused".into() }, 0.0, "idle", &[]),
    row(idle, || Input::GenerationFinished { id: 7 }, 0.0, "idle", &[]),
    // Running (starting, ready or generating: the console tracker tells those apart)
    row(running, || Input::Start, 0.0, "running", &[]),
    row(running, || Input::Stop, 0.0, "stopping", &["terminate"]),
    row(running, || Input::Restart, 0.0, "stopping", &["terminate"]),
    row(running, || Input::Shutdown, 0.0, "stopping", &["terminate"]),
    row(running, || Input::Unhealthy, 0.0, "stopping", &["kill end"]),
    row(running, || Input::Ready, 0.0, "running", &[]),
    row(running, || Input::Tick, 100.0, "running", &[]),
    row(running, || Input::GenerationFinished { id: 7 }, 0.0, "running", &[]),
    row(running, || stop_generation(Ok(())), 0.0, "graceful", &["request-stop"]),
    row(running, || Input::StopGeneration { generation: None, route: Ok(()), pace: Pace::default() }, 0.0, "running", &[]),
    row(running, || stop_generation(no_route()), 0.0, "limit-killed", &["kill escalation"]),
    row(running, || breach(LimitKind::Startup, Ok(())), 0.0, "stopping", &["say", "limit_breached", "unhealthy", "kill end"]),
    row(running, || breach(LimitKind::Timeout, Ok(())), 0.0, "graceful", &["say", "limit_breached", "mark-limit", "request-stop"]),
    row(running, || breach(LimitKind::Stall, Ok(())), 0.0, "graceful", &["say", "limit_breached", "mark-limit", "request-stop"]),
    row(running, || breach(LimitKind::Vram, Ok(())), 0.0, "graceful", &["say", "limit_breached", "mark-limit", "request-stop"]),
    row(running, || breach(LimitKind::Timeout, no_route()), 0.0, "limit-killed", &["say", "limit_breached", "mark-limit", "kill escalation"]),
    row(running, || breach(LimitKind::Memory, Ok(())), 0.0, "limit-killed", &["say", "limit_breached", "mark-limit", "kill escalation"]),
    row(running, || breach(LimitKind::Swap, Ok(())), 0.0, "limit-killed", &["say", "limit_breached", "mark-limit", "kill escalation"]),
    row(running, || breach(LimitKind::Cpu, Ok(())), 0.0, "limit-killed", &["say", "limit_breached", "mark-limit", "kill escalation"]),
    row(running, || kill_ok(KillFor::Timer), 0.0, "running", &[]),
    row(running, || kill_err(KillFor::Timer), 0.0, "running", &["say", "warning"]),
    row(running, || Input::StopFailed { run: 1, why: "refused".into() }, 0.0, "running", &[]),
    row(running, || exited(1, Some(1)), 0.0, "backing-off", &["say", "say", "restarting"]),
    row(running, || exited(1, None), 0.0, "backing-off", &["say", "say", "restarting"]),
    row(running, || exited(1, Some(0)), 0.0, "idle", &["say"]),
    row(running, || exited(9, Some(1)), 0.0, "running", &[]),
    // Stopping: SIGTERM sent, the tree kill 5 s later
    row(stopping, || Input::Tick, 4.9, "stopping", &[]),
    row(stopping, || Input::Tick, 5.0, "stopping", &["kill timer"]),
    row(stopping, || kill_err(KillFor::Timer), 5.0, "stopping", &["say", "warning"]),
    row(stopping, || Input::Start, 0.0, "stopping", &[]),
    row(stopping, || exited(1, None), 1.0, "idle", &["say"]),
    row(shutting_down, || exited(1, None), 1.0, "idle", &["say"]),
    row(restarting_by_user, || exited(1, None), 1.0, "idle", &["say", "restarting", "launch 1"]),
    row(unhealthy, || exited(1, None), 1.0, "backing-off", &["say", "restarting"]),
    row(unhealthy, || kill_err(KillFor::End), 0.0, "stopping", &["say", "warning"]),
    row(stopping, || Input::Stop, 1.0, "stopping", &[]),
    row(stopping, || Input::Restart, 1.0, "stopping", &[]),
    row(stopping, || Input::Shutdown, 1.0, "stopping", &[]),
    row(stopping, || Input::Unhealthy, 1.0, "stopping", &[]),
    row(stopping, || breach(LimitKind::Memory, Ok(())), 1.0, "stopping", &[]),
    row(stopping, || stop_generation(Ok(())), 1.0, "stopping", &[]),
    row(stopping, || Input::StopFailed { run: 1, why: "refused".into() }, 1.0, "stopping", &[]),
    row(stopping, || Input::Ready, 1.0, "stopping", &[]),
    row(stopping, || Input::GenerationFinished { id: 7 }, 1.0, "stopping", &[]),
    // Graceful stop under way
    row(graceful, || Input::GenerationFinished { id: 7 }, 2.0, "running", &["stopped-gracefully", "say", "generation_stopped"]),
    row(graceful, || Input::GenerationFinished { id: 6 }, 2.0, "graceful", &[]),
    row(graceful, || Input::Tick, 9.9, "graceful", &[]),
    row(graceful, || Input::Tick, 10.0, "limit-killed", &["kill escalation"]),
    // A step seen during a graceful stop with the configured grace changes nothing (it waited
    // for no step); in any other state too.
    row(graceful, || Input::Step { step_seconds: Some(30.0) }, 1.0, "graceful", &[]),
    row(running, || Input::Step { step_seconds: None }, 1.0, "running", &[]),
    row(idle, || Input::Step { step_seconds: None }, 1.0, "idle", &[]),
    row(killed, || Input::Step { step_seconds: None }, 0.5, "limit-killed", &[]),
    row(graceful, || Input::StopFailed { run: 1, why: "refused".into() }, 0.5, "limit-killed", &["kill escalation"]),
    row(graceful, || Input::StopFailed { run: 0, why: "refused".into() }, 0.5, "graceful", &[]),
    row(graceful, || stop_generation(Ok(())), 1.0, "graceful", &[]),
    row(graceful, || exited(1, Some(1)), 1.0, "backing-off", &["say", "say", "restarting"]),
    row(graceful_for_limit, || Input::GenerationFinished { id: 7 }, 2.0, "running", &["stopped-gracefully", "say", "generation_stopped"]),
    row(graceful, || Input::Stop, 1.0, "stopping", &["terminate"]),
    row(graceful, || Input::Restart, 1.0, "stopping", &["terminate"]),
    row(graceful, || Input::Shutdown, 1.0, "stopping", &["terminate"]),
    row(graceful, || Input::Unhealthy, 1.0, "stopping", &["kill end"]),
    row(graceful, || Input::Start, 1.0, "graceful", &[]),
    row(graceful, || breach(LimitKind::Memory, Ok(())), 1.0, "limit-killed", &["say", "limit_breached", "mark-limit", "kill escalation"]),
    row(graceful, || kill_ok(KillFor::Timer), 1.0, "graceful", &[]),
    row(graceful, || Input::Ready, 1.0, "graceful", &[]),
    // The kill, its answer, the exit, the relaunch
    row(kill_sent, || kill_ok(KillFor::Escalation), 0.0, "limit-killed", &["close-generation", "say", "generation_stopped"]),
    row(kill_sent, || kill_err(KillFor::Escalation), 0.0, "limit-killed", &["say", "warning", "close-generation", "say", "generation_stopped"]),
    row(killed, || Input::Tick, 1.0, "limit-killed", &[]),
    row(killed, || exited(1, None), 0.5, "idle", &["say", "restarting", "launch 1"]),
    row(killed, || Input::Stop, 0.5, "stopping", &[]),
    row(killed, || Input::Restart, 0.5, "stopping", &[]),
    row(killed, || Input::Shutdown, 0.5, "stopping", &[]),
    row(killed, || Input::Start, 0.5, "limit-killed", &[]),
    row(killed, || Input::Unhealthy, 0.5, "limit-killed", &[]),
    row(killed, || Input::Ready, 0.5, "limit-killed", &[]),
    row(killed, || breach(LimitKind::Memory, Ok(())), 0.5, "limit-killed", &[]),
    row(killed, || stop_generation(Ok(())), 0.5, "limit-killed", &[]),
    row(killed, || Input::StopFailed { run: 1, why: "refused".into() }, 0.5, "limit-killed", &[]),
    row(killed, || Input::GenerationFinished { id: 7 }, 0.5, "limit-killed", &[]),
    row(relaunched, || Input::Stop, 5.0, "stopping", &["terminate"]),
    row(relaunched, || Input::Restart, 5.0, "stopping", &["terminate"]),
    row(relaunched, || Input::Shutdown, 5.0, "stopping", &["terminate"]),
    row(relaunched, || Input::Start, 5.0, "restarting", &[]),
    row(relaunched, || Input::Unhealthy, 5.0, "stopping", &["kill end"]),
    row(relaunched, || breach(LimitKind::Startup, Ok(())), 5.0, "stopping", &["say", "limit_breached", "unhealthy", "kill end"]),
    row(relaunched, || stop_generation(Ok(())), 5.0, "restarting", &[]),
    row(relaunched, || kill_err(KillFor::Timer), 5.0, "restarting", &["say", "warning"]),
    row(relaunched, || Input::StopFailed { run: 2, why: "refused".into() }, 5.0, "restarting", &[]),
    row(relaunched, || Input::GenerationFinished { id: 8 }, 5.0, "restarting", &[]),
    row(relaunched, || Input::Ready, 30.0, "running", &["say", "append-step"]),
    row(relaunched, || Input::Tick, 599.0, "restarting", &[]),
    row(relaunched, || Input::Tick, 600.0, "running", &["say", "append-step"]),
    row(relaunched, || exited(2, Some(1)), 5.0, "backing-off", &["say", "say", "restarting"]),
    // Backing off
    row(backing_off, || Input::Tick, 0.9, "backing-off", &[]),
    row(backing_off, || Input::Tick, 1.0, "idle", &["launch 1"]),
    row(backing_off, || Input::Start, 0.5, "backing-off", &["launch 0"]),
    row(backing_off, || Input::Restart, 0.5, "backing-off", &["launch 0"]),
    row(backing_off, || Input::Stop, 0.5, "idle", &[]),
    row(backing_off, || Input::Shutdown, 0.5, "idle", &[]),
    row(backing_off, || exited(1, Some(1)), 0.5, "backing-off", &[]),
    row(backing_off, || launched(0, 2), 0.5, "running", &[]),
    row(backing_off, || Input::LaunchFailed(LaunchError::Spawn), 0.5, "backing-off", &["say", "restarting"]),
    row(backing_off, || Input::LaunchFailed(LaunchError::Fatal), 0.5, "gave-up", &[]),
    row(backing_off, || breach(LimitKind::Memory, Ok(())), 0.5, "backing-off", &[]),
    row(backing_off, || Input::Unhealthy, 0.5, "backing-off", &[]),
    row(backing_off, || Input::Ready, 0.5, "backing-off", &[]),
    row(backing_off, || stop_generation(Ok(())), 0.5, "backing-off", &[]),
    row(backing_off, || kill_err(KillFor::Timer), 0.5, "backing-off", &[]),
    row(backing_off, || Input::StopFailed { run: 1, why: "refused".into() }, 0.5, "backing-off", &[]),
    row(backing_off, || Input::GenerationFinished { id: 7 }, 0.5, "backing-off", &[]),
    // Gave up
    row(gave_up, || Input::Tick, 1000.0, "gave-up", &[]),
    row(gave_up, || Input::Start, 0.0, "gave-up", &["launch 0"]),
    row(gave_up, || Input::Restart, 0.0, "gave-up", &["launch 0"]),
    row(gave_up, || Input::Stop, 0.0, "idle", &[]),
    row(gave_up, || Input::Shutdown, 0.0, "idle", &[]),
    row(gave_up, || launched(0, 1), 0.0, "running", &[]),
    row(gave_up, || Input::LaunchFailed(LaunchError::Fatal), 0.0, "gave-up", &[]),
    row(gave_up, || exited(1, Some(1)), 0.0, "gave-up", &[]),
    row(gave_up, || breach(LimitKind::Memory, Ok(())), 0.0, "gave-up", &[]),
    row(gave_up, || Input::Unhealthy, 0.0, "gave-up", &[]),
    row(gave_up, || Input::Ready, 0.0, "gave-up", &[]),
    row(gave_up, || stop_generation(Ok(())), 0.0, "gave-up", &[]),
    row(gave_up, || kill_err(KillFor::Timer), 0.0, "gave-up", &[]),
    row(gave_up, || Input::StopFailed { run: 1, why: "refused".into() }, 0.0, "gave-up", &[]),
    row(gave_up, || Input::GenerationFinished { id: 7 }, 0.0, "gave-up", &[]),
    // Sleep: idle for the setting, or "Sleep now"; a clean stop, never during a generation
    row(idle, sleep, 0.0, "idle", &[]),
    row(idle, || Input::Wake(WakeBy::User), 0.0, "idle", &[]),
    row(gave_up, || Input::Wake(WakeBy::Visit), 0.0, "gave-up", &[]),
    row(backing_off, sleep, 0.5, "backing-off", &[]),
    row(running, sleep, 0.0, "falling-asleep", &["sleeping", "terminate"]),
    row(running, || Input::Sleep { generating: true }, 0.0, "running", &["say"]),
    row(running, || Input::Wake(WakeBy::Visit), 0.0, "running", &[]),
    row(stopping, sleep, 1.0, "stopping", &[]),
    // A breach racing the sleep: the first to arrive decides
    row(graceful, sleep, 1.0, "graceful", &["say"]),
    row(kill_sent, sleep, 0.0, "limit-killed", &[]),
    row(relaunched, sleep, 5.0, "restarting", &["say"]),
    row(falling_asleep, || breach(LimitKind::Memory, Ok(())), 1.0, "falling-asleep", &[]),
    row(falling_asleep, || breach(LimitKind::Startup, Ok(())), 1.0, "falling-asleep", &[]),
    row(falling_asleep, || breach(LimitKind::Timeout, Ok(())), 1.0, "falling-asleep", &[]),
    row(falling_asleep, || Input::Unhealthy, 1.0, "falling-asleep", &[]),
    row(falling_asleep, sleep, 1.0, "falling-asleep", &[]),
    row(falling_asleep, || Input::Tick, 4.9, "falling-asleep", &[]),
    row(falling_asleep, || Input::Tick, 5.0, "falling-asleep", &["kill timer"]),
    row(falling_asleep, || exited(1, None), 1.0, "asleep", &["say", "asleep"]),
    row(falling_asleep, || exited(1, Some(1)), 1.0, "asleep", &["say", "asleep"]),
    row(falling_asleep, || Input::Wake(WakeBy::Visit), 1.0, "falling-asleep", &[]),
    row(falling_asleep, || Input::Stop, 1.0, "stopping", &[]),
    row(falling_asleep, || Input::Shutdown, 1.0, "stopping", &[]),
    row(falling_asleep, || Input::Ready, 1.0, "falling-asleep", &[]),
    // Asleep: the tree is gone, the gateway keeps the port
    row(asleep, || Input::Wake(WakeBy::Visit), 60.0, "waking", &["waking visit", "launch 0"]),
    row(asleep, || Input::Wake(WakeBy::User), 60.0, "waking", &["waking user", "launch 0"]),
    row(asleep, || Input::Start, 60.0, "waking", &["waking user", "launch 0"]),
    row(asleep, || Input::Restart, 60.0, "waking", &["waking user", "launch 0"]),
    row(asleep, || Input::Stop, 60.0, "idle", &[]),
    row(asleep, || Input::Shutdown, 60.0, "idle", &[]),
    row(asleep, sleep, 60.0, "asleep", &[]),
    row(asleep, || Input::Tick, 1000.0, "asleep", &[]),
    row(asleep, || breach(LimitKind::Memory, Ok(())), 60.0, "asleep", &[]),
    row(asleep, || breach(LimitKind::Startup, Ok(())), 60.0, "asleep", &[]),
    row(asleep, || Input::Unhealthy, 60.0, "asleep", &[]),
    row(asleep, || Input::Ready, 60.0, "asleep", &[]),
    row(asleep, || exited(1, Some(1)), 60.0, "asleep", &[]),
    row(asleep, || stop_generation(Ok(())), 60.0, "asleep", &[]),
    row(asleep, || Input::GenerationFinished { id: 7 }, 60.0, "asleep", &[]),
    row(asleep, || kill_err(KillFor::Timer), 60.0, "asleep", &[]),
    // Waking: ready ends it; a failed start-up sleeps on
    row(wake_launching, || launched(0, 2), 0.0, "waking", &[]),
    row(wake_launching, || Input::LaunchFailed(LaunchError::Spawn), 0.0, "asleep", &["say", "wake-failed"]),
    row(wake_launching, || Input::LaunchFailed(LaunchError::Fatal), 0.0, "asleep", &["say", "wake-failed"]),
    row(waking, || Input::Ready, 20.0, "running", &["say", "woke"]),
    row(waking, || exited(2, Some(1)), 3.0, "asleep", &["say", "wake-failed"]),
    row(waking, || breach(LimitKind::Startup, Ok(())), 30.0, "stopping", &["say", "limit_breached", "unhealthy", "kill end"]),
    row(waking, || Input::Stop, 3.0, "stopping", &["terminate"]),
    row(waking, || Input::Shutdown, 3.0, "stopping", &["terminate"]),
    row(waking, || Input::Wake(WakeBy::Visit), 3.0, "waking", &[]),
    row(waking, sleep, 3.0, "falling-asleep", &["sleeping", "terminate"]),
];

#[test]
fn every_row_of_the_table_holds() {
    let mut failures = Vec::new();
    for (i, r) in TABLE.iter().enumerate() {
        let c = Clock(Instant::now());
        let mut m = M::new(settings());
        (r.setup)(&mut m, &c);
        let before = label(&m);
        let fx = m.step((r.input)(), c.at(r.at));
        let got = (label(&m), kinds(&fx));
        if got.0 != r.state || got.1 != r.effects {
            failures.push(format!(
                "row {i} ({before} + {:?} at {} s): expected {} {:?}, got {} {:?}",
                (r.input)(),
                r.at,
                r.state,
                r.effects,
                got.0,
                got.1
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_table_starts_from_every_state() {
    let c = Clock(Instant::now());
    let mut seen: Vec<&str> = TABLE
        .iter()
        .map(|r| {
            let mut m = M::new(settings());
            (r.setup)(&mut m, &c);
            label(&m)
        })
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen,
        [
            "asleep",
            "backing-off",
            "falling-asleep",
            "gave-up",
            "graceful",
            "idle",
            "limit-killed",
            "restarting",
            "running",
            "stopping",
            "waking"
        ]
    );
}

#[test]
fn the_views_state_is_derived_from_the_machine_and_the_console() {
    use FooocusState::*;
    let c = Clock(Instant::now());
    let state = |setup: fn(&mut M, &Clock), ready, generating| {
        let mut m = M::new(settings());
        setup(&mut m, &c);
        m.state(true, ready, generating)
    };
    assert_eq!(state(idle, false, false), Stopped);
    assert_eq!(M::new(settings()).state(false, false, false), NotConfigured);
    assert_eq!(state(running, false, false), Starting);
    assert_eq!(state(running, true, false), Ready);
    assert_eq!(state(running, true, true), Generating);
    assert_eq!(state(graceful, true, true), Generating);
    assert_eq!(state(stopping, true, true), Stopping);
    assert_eq!(state(kill_sent, true, true), Restarting);
    assert_eq!(state(backing_off, false, false), Restarting);
    assert_eq!(state(gave_up, false, false), GaveUp);
    assert_eq!(state(relaunched, false, false), Starting);
}

#[test]
fn crashes_back_off_exponentially_then_give_up() {
    let c = Clock(Instant::now());
    let mut m = M::new(settings());
    let mut t = 0.0;
    let mut delays = Vec::new();
    for run in 1..=6u64 {
        m.step(Input::Start, c.at(t));
        m.step(launched(0, run), c.at(t));
        // Start resets the count: relaunch from the backoff instead after the first.
        let fx = m.step(exited(run, Some(1)), c.at(t + 1.0));
        t += 1.0;
        match &m.state {
            State::BackingOff { at, attempt, .. } => {
                delays.push(at.duration_since(c.at(t)).as_secs());
                assert_eq!(*attempt, 1, "Start forgot the failures before it");
                assert_eq!(kinds(&fx), ["say", "say", "restarting"]);
            }
            other => panic!("expected backing off, got {other:?}"),
        }
    }
    assert_eq!(
        delays,
        [1, 1, 1, 1, 1, 1],
        "a user's Start resets the backoff"
    );

    // Without the user: the backoff doubles and, past max_restarts in the window, gives up.
    let mut m = M::new(settings());
    m.step(Input::Start, c.at(0.0));
    let mut t = 0.0;
    let mut delays = Vec::new();
    let mut run = 0;
    loop {
        run += 1;
        m.step(launched(run as u32 - 1, run), c.at(t));
        t += 2.0;
        let fx = m.step(exited(run, Some(1)), c.at(t));
        match m.state {
            State::BackingOff { at, .. } => {
                let d = at.duration_since(c.at(t));
                delays.push(d.as_secs());
                t += d.as_secs_f64();
                let fx = m.step(Input::Tick, c.at(t));
                assert_eq!(kinds(&fx), [format!("launch {run}")]);
            }
            State::GaveUp => {
                assert_eq!(kinds(&fx), ["say", "say", "gave_up"]);
                assert!(says(&fx)[1].contains("failed 6 times"), "{:?}", says(&fx));
                break;
            }
            ref other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(delays, [1, 2, 4, 8, 16]);
    assert_eq!(m.restarts, 5, "the status counts each scheduled restart");
}

#[test]
fn ready_resets_the_crash_backoff() {
    let c = Clock(Instant::now());
    let mut m = M::new(settings());
    running(&mut m, &c);
    crashed_and_relaunched(&mut m, &c);
    m.step(Input::Ready, c.at(3.0));
    m.step(exited(2, Some(1)), c.at(4.0));
    let State::BackingOff { at, attempt, .. } = m.state else {
        panic!("{:?}", m.state)
    };
    assert_eq!(at, c.at(5.0), "1 s again after ready, not 2 s");
    assert_eq!(attempt, 2, "the window still counts both failures");
}

#[test]
fn restarts_never_leaves_a_crash_stopped() {
    let c = Clock(Instant::now());
    let mut m = M::new(Settings {
        restart: RestartConfig {
            policy: RestartMode::Never,
            ..Default::default()
        },
        ..settings()
    });
    running(&mut m, &c);
    let fx = m.step(exited(1, Some(1)), c.at(1.0));
    assert_eq!(label(&m), "idle");
    assert_eq!(says(&fx), ["Fooocus exited with code 1"]);
}

#[test]
fn a_limit_that_fires_every_time_backs_off_then_gives_up_naming_the_limit() {
    let c = Clock(Instant::now());
    let mut m = M::new(settings());
    running(&mut m, &c);
    let mut t = 0.0;
    let mut waits = Vec::new();
    for run in 1u64.. {
        // Loaded, generating, over the RAM cap again.
        t += 30.0;
        m.step(Input::Ready, c.at(t));
        let fx = m.step(breach(LimitKind::Memory, Ok(())), c.at(t));
        assert_eq!(fx.last(), Some(&Effect::KillTree(KillFor::Escalation)));
        m.step(kill_ok(KillFor::Escalation), c.at(t));
        let fx = m.step(exited(run, None), c.at(t + 0.1));
        match &m.state {
            State::Idle(_) => {
                assert_eq!(kinds(&fx), ["say", "restarting", &format!("launch {run}")]);
                waits.push(0);
            }
            State::BackingOff { at, .. } => {
                assert_eq!(kinds(&fx), ["say", "restarting"]);
                let d = at.duration_since(c.at(t + 0.1));
                waits.push(d.as_secs());
                t += 0.1 + d.as_secs_f64();
                let fx = m.step(Input::Tick, c.at(t));
                assert!(matches!(fx[..], [Effect::Launch { .. }]));
            }
            State::GaveUp => {
                assert_eq!(kinds(&fx), ["say", "gave_up"]);
                let Effect::Emit(EventKind::GaveUp {
                    reason, failures, ..
                }) = &fx[1]
                else {
                    panic!("{fx:?}")
                };
                assert_eq!(*failures, 6);
                assert!(
                    reason.contains("its memory limit stopped it each time"),
                    "{reason}"
                );
                assert!(!escalating(&m), "no escalation outlives the give-up");
                assert_eq!(m.next_deadline(), None, "nothing left to wake for");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
        m.step(launched(run as u32, run + 1), c.at(t));
    }
    assert_eq!(
        waits,
        [0, 1, 2, 4, 8],
        "the first kill restarts at once, then backoff"
    );
}

/// Issue 26, finding 3: `--restart never` means never, after a limit's kill too: the
/// generation ends with the kill, Fooocus stays down, and the words say so and how to start it.
#[test]
fn restarts_never_leaves_fooocus_down_after_a_limit_kill() {
    let c = Clock(Instant::now());
    let mut m = M::new(Settings {
        restart: RestartConfig {
            policy: RestartMode::Never,
            ..Default::default()
        },
        ..settings()
    });
    running(&mut m, &c);
    let fx = m.step(breach(LimitKind::Memory, Ok(())), c.at(0.0));
    let Some(Effect::Emit(EventKind::LimitBreached { action, .. })) = fx.get(1) else {
        panic!("{fx:?}")
    };
    assert_eq!(*action, crate::events::BreachAction::Kill);
    assert_eq!(
        m.state(true, true, true),
        FooocusState::Stopping,
        "not Restarting: it will not"
    );
    let fx = m.step(kill_ok(KillFor::Escalation), c.at(0.0));
    assert!(
        says(&fx).iter().any(|s| s.contains("stays stopped")),
        "{fx:?}"
    );
    assert!(
        !says(&fx).iter().any(|s| s.contains("restarting")),
        "{fx:?}"
    );
    let fx = m.step(exited(1, None), c.at(0.1));
    assert_eq!(kinds(&fx), ["say"]);
    assert!(says(&fx)[0].contains("start it again"), "{fx:?}");
    assert_eq!(label(&m), "idle");
    assert!(!escalating(&m));
    assert_eq!(m.next_deadline(), None, "nothing will launch it");
    assert_eq!(m.state(true, false, false), FooocusState::Stopped);
}

/// Issue 26, finding 6: every restart says why and when, the one after a limit's kill and
/// the user's too.
#[test]
fn every_restart_says_why_and_when() {
    let c = Clock(Instant::now());
    let mut m = M::new(settings());
    running(&mut m, &c);
    m.step(breach(LimitKind::Timeout, no_route()), c.at(0.0));
    m.step(kill_ok(KillFor::Escalation), c.at(0.0));
    let fx = m.step(exited(1, None), c.at(0.1));
    assert_eq!(
        fx[1],
        Effect::Emit(EventKind::Restarting {
            attempt: 1,
            delay_s: 0.0,
            reason: "limit: timeout".into()
        })
    );
    assert_eq!(fx[2], Effect::Launch { attempt: 1 });
    m.step(launched(1, 2), c.at(0.1));
    m.step(Input::Restart, c.at(1.0));
    let fx = m.step(exited(2, None), c.at(1.5));
    assert_eq!(
        fx[1],
        Effect::Emit(EventKind::Restarting {
            attempt: 2,
            delay_s: 0.0,
            reason: "user".into()
        })
    );
}

fn stop_in(phase: fooocus_console::Phase, history: Option<f64>) -> Input<()> {
    Input::StopGeneration {
        generation: Some(7),
        route: Ok(()),
        pace: Pace {
            phase: Some(phase),
            step_seconds: None,
            phase_history_s: history,
        },
    }
}

/// Issue 26, finding 1: on real Fooocus a stop during preparation was killed after the 10 s
/// setting although Fooocus keeps the request and honours it at its first step. The grace
/// now lasts until that step (bounded by history), then one step.
#[test]
fn a_stop_before_the_first_step_waits_for_it_then_one_step() {
    use fooocus_console::Phase as P;
    let c = Clock(Instant::now());
    let mut m = M::new(settings());
    running(&mut m, &c);
    // The longest recent preparation took 60 s: 90 s of grace.
    let fx = m.step(stop_in(P::Preparation, Some(60.0)), c.at(0.0));
    assert_eq!(kinds(&fx), ["request-stop"]);
    assert_eq!(m.next_deadline(), Some(c.at(90.0)));
    // Past the configured 10 s, nothing is killed.
    assert!(m.step(Input::Tick, c.at(30.0)).is_empty());
    // The first step: one step's grace is left (the configured 10 s here).
    m.step(Input::Step { step_seconds: None }, c.at(40.0));
    assert_eq!(m.next_deadline(), Some(c.at(50.0)));
    // A later step does not push it back.
    m.step(
        Input::Step {
            step_seconds: Some(30.0),
        },
        c.at(45.0),
    );
    assert_eq!(m.next_deadline(), Some(c.at(50.0)));
    let fx = m.step(Input::GenerationFinished { id: 7 }, c.at(42.0));
    let Some(Effect::Emit(EventKind::GenerationStopped {
        grace,
        grace_s,
        phase,
        how,
        ..
    })) = fx.get(2)
    else {
        panic!("{fx:?}")
    };
    assert_eq!(
        (grace.as_str(), *grace_s, *phase, *how),
        (
            "until the first step",
            90.0,
            Some(P::Preparation),
            StopHow::Graceful
        )
    );
}

#[test]
fn a_stop_while_decoding_waits_until_the_next_step_or_the_end_and_names_the_phase() {
    use fooocus_console::Phase as P;
    let c = Clock(Instant::now());
    let mut m = M::new(settings());
    running(&mut m, &c);
    let fx = m.step(
        Input::Breach {
            breach: Breach {
                limit: LimitKind::Timeout,
                configured: 20.0,
                observed: 21.0,
                due: None,
                source: None,
            },
            generation: Some(7),
            route: Ok(()),
            pace: Pace {
                phase: Some(P::Decode),
                step_seconds: Some(4.0),
                phase_history_s: None,
            },
        },
        c.at(0.0),
    );
    let Some(Effect::Emit(EventKind::LimitBreached { phase, .. })) = fx.get(1) else {
        panic!("{fx:?}")
    };
    assert_eq!(*phase, Some(P::Decode));
    assert_eq!(m.next_deadline(), Some(c.at(60.0)));
    // Never stopped: killed at the bound, and the stop says which phase and why that long.
    m.step(Input::Tick, c.at(60.0));
    let fx = m.step(kill_ok(KillFor::Escalation), c.at(60.0));
    let Some(Effect::Emit(EventKind::GenerationStopped {
        grace, phase, how, ..
    })) = fx.last()
    else {
        panic!("{fx:?}")
    };
    assert_eq!(
        (grace.as_str(), *phase, *how),
        (
            "until the next step or the end",
            Some(P::Decode),
            StopHow::Killed
        )
    );
}

#[test]
fn a_users_stop_kills_on_a_deadline_and_never_waits_in_the_step() {
    let c = Clock(Instant::now());
    let mut m = M::new(settings());
    stopping(&mut m, &c);
    assert_eq!(m.next_deadline(), Some(c.at(5.0)));
    assert_eq!(kinds(&m.step(Input::Tick, c.at(4.0))), Vec::<String>::new());
    assert_eq!(kinds(&m.step(Input::Tick, c.at(5.0))), ["kill timer"]);
    assert_eq!(m.next_deadline(), None, "one kill per deadline");
    // Where the OS cannot ask a process to exit, the kill comes at once.
    let mut m = M::new(Settings {
        can_terminate: false,
        ..settings()
    });
    running(&mut m, &c);
    assert_eq!(kinds(&m.step(Input::Stop, c.at(0.0))), ["kill end"]);
}

#[test]
fn a_kill_that_fails_is_retried_every_second_and_reported_sparingly() {
    let c = Clock(Instant::now());
    let mut m = M::new(settings());
    stopping(&mut m, &c);
    let mut t = 5.0;
    let mut reports = 0;
    for n in 1..=60 {
        let fx = m.step(Input::Tick, c.at(t));
        assert_eq!(kinds(&fx), ["kill timer"], "attempt {n}");
        let fx = m.step(kill_err(KillFor::Timer), c.at(t));
        if !fx.is_empty() {
            reports += 1;
            assert!(says(&fx)[0].contains(&format!("(attempt {n})")), "{fx:?}");
            assert!(says(&fx)[0].contains("too many open files"));
        }
        assert_eq!(m.next_deadline(), Some(c.at(t + 1.0)));
        t += 1.0;
    }
    assert_eq!(reports, 3, "said at the 1st, 30th and 60th failure");
    // It works at last: no more retries, and the exit ends the run.
    m.step(Input::Tick, c.at(t));
    assert!(m.step(kill_ok(KillFor::Timer), c.at(t)).is_empty());
    assert_eq!(m.next_deadline(), None);
    m.step(exited(1, None), c.at(t + 0.1));
    assert_eq!(label(&m), "idle");
}

#[test]
fn a_failed_escalation_kill_is_retried_too() {
    let c = Clock(Instant::now());
    let mut m = M::new(settings());
    kill_sent(&mut m, &c);
    m.step(kill_err(KillFor::Escalation), c.at(0.0));
    assert_eq!(m.run().unwrap().kill_at, Some(c.at(1.0)));
    assert_eq!(kinds(&m.step(Input::Tick, c.at(1.0))), ["kill timer"]);
}

#[test]
fn the_escalation_records_each_step_from_the_breach() {
    let c = Clock(Instant::now());
    let mut m = M::new(settings());
    running(&mut m, &c);
    let due = c.at(0.0);
    let mut b = breach(LimitKind::Timeout, Ok(()));
    if let Input::Breach { breach, .. } = &mut b {
        breach.due = Some(due);
    }
    // The loop noticed 50 ms late; the graceful stop is ignored for its 10 s; the kill takes 30 ms.
    m.step(b, c.at(0.05));
    assert_eq!(m.next_deadline(), Some(c.at(10.05)));
    let fx = m.step(Input::Tick, c.at(10.05));
    assert_eq!(kinds(&fx), ["kill escalation"]);
    let fx = m.step(kill_ok(KillFor::Escalation), c.at(10.08));
    let Some(Effect::Emit(EventKind::GenerationStopped {
        steps,
        took_s,
        grace,
        grace_s,
        limit,
        how,
        ..
    })) = fx.iter().find(|e| matches!(e, Effect::Emit(_)))
    else {
        panic!("{fx:?}")
    };
    assert_eq!(*how, StopHow::Killed);
    assert_eq!(*limit, Some(LimitKind::Timeout));
    assert_eq!((grace.as_str(), *grace_s), ("configured", 10.0));
    assert!((took_s - 10.08).abs() < 1e-6, "{took_s}");
    let summary: Vec<_> = steps
        .iter()
        .map(|s| {
            (
                s.step.as_str(),
                s.result.as_str(),
                (s.at_s * 100.0).round() / 100.0,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("graceful", "ignored", 0.05),
            ("kill", "reaped 3 processes", 10.05)
        ]
    );
    assert!(matches!(
        &fx[0],
        Effect::CloseGeneration { outcome: Outcome::TimedOut, steps } if steps.len() == 2
    ));
    // Exit, relaunch, ready: the restart step goes to the generation already recorded.
    m.step(exited(1, None), c.at(10.1));
    m.step(launched(1, 2), c.at(10.1));
    let fx = m.step(Input::Ready, c.at(40.1));
    let Some(Effect::AppendStopStep { generation, step }) = fx.last() else {
        panic!("{fx:?}")
    };
    assert_eq!(*generation, 7);
    assert_eq!(step.result, "ready");
    assert!((step.took_s - 30.02).abs() < 1e-6, "{}", step.took_s);
}

#[test]
fn a_graceful_stop_waits_one_observed_step_when_steps_are_slower_than_the_grace() {
    let c = Clock(Instant::now());
    let mut m = M::new(settings());
    running(&mut m, &c);
    m.step(
        Input::StopGeneration {
            generation: Some(7),
            route: Ok(()),
            pace: Pace {
                step_seconds: Some(20.0),
                ..Pace::default()
            },
        },
        c.at(0.0),
    );
    assert_eq!(m.next_deadline(), Some(c.at(30.0)));
    let fx = m.step(Input::GenerationFinished { id: 7 }, c.at(25.0));
    assert_eq!(
        fx[0],
        Effect::StoppedGracefully {
            steps: vec![StopStep {
                step: StopStepKind::Graceful,
                at_s: 0.0,
                took_s: 25.0,
                result: "ended".into()
            }],
            by_user: true
        }
    );
    let Effect::Emit(EventKind::GenerationStopped { grace, .. }) = &fx[2] else {
        panic!("{fx:?}")
    };
    assert_eq!(grace, "one step");
}

#[test]
fn without_a_stop_route_the_kill_says_why() {
    let c = Clock(Instant::now());
    let mut m = M::new(settings());
    running(&mut m, &c);
    m.step(stop_generation(no_route()), c.at(0.0));
    let fx = m.step(kill_ok(KillFor::Escalation), c.at(0.1));
    let Effect::CloseGeneration { outcome, steps } = &fx[0] else {
        panic!("{fx:?}")
    };
    assert_eq!(*outcome, Outcome::Killed, "the user's stop, not a limit");
    assert_eq!(steps[0].result, "unavailable: Fooocus 2.0 has no stop");
}

#[test]
fn the_restart_after_a_kill_has_the_startup_limit_as_its_deadline() {
    let c = Clock(Instant::now());
    let mut m = M::new(Settings {
        startup: Some(secs(120)),
        ..settings()
    });
    relaunched(&mut m, &c);
    assert_eq!(m.next_deadline(), Some(c.at(120.0)));
    let fx = m.step(Input::Tick, c.at(120.0));
    assert_eq!(kinds(&fx), ["say", "append-step"]);
    assert!(!escalating(&m));
}

#[test]
fn an_exit_during_a_graceful_stop_drops_it_so_its_deadline_cannot_kill_the_next_run() {
    let c = Clock(Instant::now());
    let mut m = M::new(settings());
    graceful(&mut m, &c);
    crashed_and_relaunched(&mut m, &c);
    assert!(!escalating(&m));
    assert!(m.step(Input::Tick, c.at(10.0)).is_empty());
    assert_eq!(label(&m), "running");
}

#[test]
fn a_port_taken_or_the_ram_cap_is_said_in_plain_words() {
    let c = Clock(Instant::now());
    let exit = |facts| {
        let mut m = M::new(settings());
        running(&mut m, &c);
        let fx = m.step(Input::Exited { run: 1, facts }, c.at(1.0));
        says(&fx)[0].to_string()
    };
    assert_eq!(
        exit(ExitFacts {
            code: Some(1),
            port_taken: Some((7865, true)),
            ..Default::default()
        }),
        "Fooocus could not listen: port 7865 is taken by another program (close it, or pick another port in the settings)"
    );
    assert_eq!(
        exit(ExitFacts {
            signal: Some(9),
            oom: true,
            ..Default::default()
        }),
        "Fooocus killed by the RAM cap"
    );
    assert_eq!(
        exit(ExitFacts {
            code: Some(1),
            port_taken: Some((40000, false)),
            ..Default::default()
        }),
        "Fooocus exited with code 1",
        "the internal port: the restart picks another"
    );
}

#[test]
fn shutdown_ends_once_the_process_is_reaped_or_after_its_deadline() {
    let c = Clock(Instant::now());
    let mut m = M::new(settings());
    shutting_down(&mut m, &c);
    assert!(!m.quit_done(c.at(1.0)));
    assert!(m.quit_done(c.at(10.0)), "hopeless after 10 s");
    m.step(exited(1, None), c.at(1.0));
    assert!(m.quit_done(c.at(1.0)));
    let mut m = M::new(settings());
    m.step(Input::Shutdown, c.at(0.0));
    assert!(m.quit_done(c.at(0.0)), "nothing running: at once");
}

#[test]
fn next_deadline_names_each_states_timer() {
    let c = Clock(Instant::now());
    let deadline = |setup: fn(&mut M, &Clock)| {
        let mut m = M::new(settings());
        setup(&mut m, &c);
        m.next_deadline()
    };
    assert_eq!(deadline(idle), None);
    assert_eq!(deadline(running), None, "the time limits are the policy's");
    assert_eq!(deadline(stopping), Some(c.at(5.0)));
    assert_eq!(deadline(graceful), Some(c.at(10.0)));
    assert_eq!(deadline(killed), Some(c.at(600.0)));
    assert_eq!(deadline(backing_off), Some(c.at(1.0)));
    assert_eq!(deadline(gave_up), None);
    assert_eq!(deadline(shutting_down), Some(c.at(5.0)));
}

#[test]
fn a_second_stop_keeps_the_deadline_of_the_first() {
    let c = Clock(Instant::now());
    let mut m = M::new(settings());
    stopping(&mut m, &c);
    assert!(
        m.step(Input::Stop, c.at(3.0)).is_empty(),
        "no second SIGTERM"
    );
    m.step(Input::Shutdown, c.at(4.0));
    assert_eq!(m.run().unwrap().kill_at, Some(c.at(5.0)), "not pushed back");
}

#[test]
fn a_users_stop_during_a_graceful_stop_is_not_turned_into_a_limit_restart() {
    let c = Clock(Instant::now());
    let mut m = M::new(settings());
    graceful_for_limit(&mut m, &c);
    m.step(Input::Stop, c.at(1.0));
    // The graceful stop's deadline (10 s) is gone; the stop's own (1 + 5 s) stands.
    assert_eq!(m.next_deadline(), Some(c.at(6.0)));
    assert_eq!(kinds(&m.step(Input::Tick, c.at(6.0))), ["kill timer"]);
    assert!(m.step(Input::Tick, c.at(10.0)).is_empty());
    let fx = m.step(exited(1, None), c.at(10.5));
    assert_eq!(says(&fx), ["Fooocus stopped"]);
    assert_eq!(label(&m), "idle");
}

#[test]
fn a_stop_after_a_limit_kill_leaves_fooocus_stopped() {
    let c = Clock(Instant::now());
    let mut m = M::new(settings());
    killed(&mut m, &c);
    m.step(Input::Stop, c.at(0.1));
    let fx = m.step(exited(1, None), c.at(0.2));
    assert_eq!(kinds(&fx), ["say"], "no relaunch");
    assert!(!escalating(&m));
    assert_eq!(m.next_deadline(), None);
}

#[test]
fn a_breach_while_stopping_does_not_turn_the_exit_into_a_restart() {
    let c = Clock(Instant::now());
    let mut m = M::new(settings());
    stopping(&mut m, &c);
    assert!(m
        .step(breach(LimitKind::Memory, Ok(())), c.at(1.0))
        .is_empty());
    let fx = m.step(exited(1, None), c.at(2.0));
    assert_eq!(kinds(&fx), ["say"]);
    assert_eq!(label(&m), "idle");
}

#[test]
fn a_shutdown_during_a_users_restart_does_not_relaunch() {
    let c = Clock(Instant::now());
    let mut m = M::new(settings());
    restarting_by_user(&mut m, &c);
    m.step(Input::Shutdown, c.at(1.0));
    let fx = m.step(exited(1, None), c.at(2.0));
    assert_eq!(kinds(&fx), ["say"]);
    assert!(m.quit_done(c.at(2.0)));
}

#[test]
fn ready_from_a_process_being_ended_does_not_reset_the_backoff() {
    let c = Clock(Instant::now());
    let mut m = M::new(settings());
    killed(&mut m, &c);
    assert!(m.step(Input::Ready, c.at(0.1)).is_empty());
    assert!(
        escalating(&m),
        "the escalation waits for the new process's ready"
    );
}

#[test]
fn a_give_up_for_a_limit_names_it_and_the_change_that_helps() {
    let timeout = words::keeps_firing(Some(LimitKind::Timeout));
    assert!(
        timeout.starts_with("its timeout limit stopped it each time"),
        "{timeout}"
    );
    assert!(timeout.contains("raise the timeout"), "{timeout}");
    assert!(
        !timeout.contains("cap"),
        "a timeout is not a cap: {timeout}"
    );
    let vram = words::keeps_firing(Some(LimitKind::Vram));
    assert!(vram.contains("VRAM mode"), "{vram}");
    let ram = words::keeps_firing(Some(LimitKind::Memory));
    assert!(ram.contains("needs once loaded"), "{ram}");
    assert!(words::keeps_firing(Some(LimitKind::Stall)).contains("stall limit"));
    assert!(words::keeps_firing(None).contains("check the limits"));
}

#[test]
fn sleeping_and_waking_never_count_as_failures() {
    // One failure allowed in the window: twenty sleeps and wakes in a row must not give up,
    // back off, or schedule a restart.
    let c = Clock(Instant::now());
    let mut m = M::new(Settings {
        restart: RestartConfig {
            policy: RestartMode::Always,
            max_restarts: 1,
            window_s: 3600,
        },
        ..settings()
    });
    running(&mut m, &c);
    m.step(Input::Ready, c.at(1.0));
    let mut all = Vec::new();
    for i in 0..20u64 {
        let t = 10.0 * i as f64 + 2.0;
        all.extend(m.step(sleep(), c.at(t)));
        all.extend(m.step(exited(i + 1, None), c.at(t + 1.0)));
        assert_eq!(label(&m), "asleep", "cycle {i}");
        all.extend(m.step(Input::Wake(WakeBy::Visit), c.at(t + 5.0)));
        all.extend(m.step(launched(0, i + 2), c.at(t + 5.0)));
        all.extend(m.step(Input::Ready, c.at(t + 8.0)));
        assert_eq!(label(&m), "running", "cycle {i}");
    }
    let k = kinds(&all);
    assert!(
        !k.iter()
            .any(|e| e == "restarting" || e == "gave_up" || e.starts_with("launch 1")),
        "{k:?}"
    );
    assert_eq!(k.iter().filter(|e| *e == "woke").count(), 20);
    assert_eq!(m.restarts, 0);
}

#[test]
fn a_wake_asked_while_falling_asleep_starts_once_the_tree_is_gone() {
    let c = Clock(Instant::now());
    let mut m = M::new(settings());
    falling_asleep(&mut m, &c);
    assert!(kinds(&m.step(Input::Wake(WakeBy::Visit), c.at(1.0))).is_empty());
    let fx = m.step(exited(1, None), c.at(2.0));
    assert_eq!(kinds(&fx), ["say", "asleep", "waking visit", "launch 0"]);
    assert_eq!(label(&m), "waking");
}

#[test]
fn woke_says_how_long_it_slept_who_woke_it_and_how_long_the_start_took() {
    let c = Clock(Instant::now());
    let mut m = M::new(settings());
    asleep(&mut m, &c);
    m.step(Input::Wake(WakeBy::Visit), c.at(60.0));
    m.step(launched(0, 2), c.at(60.5));
    let fx = m.step(Input::Ready, c.at(80.0));
    let woke = fx.iter().find_map(|e| match e {
        Effect::Woke {
            asleep_s,
            by,
            ready_s,
        } => Some((*asleep_s, *by, *ready_s)),
        _ => None,
    });
    let (asleep_s, by, ready_s) = woke.expect("a woke effect");
    assert!((asleep_s - 60.0).abs() < 1e-6, "{asleep_s}");
    assert_eq!(by, WakeBy::Visit);
    assert!((ready_s - 20.0).abs() < 1e-6, "{ready_s}");
    // Once awake, a second ready says nothing more.
    assert!(!kinds(&m.step(Input::Ready, c.at(81.0))).contains(&"woke".to_string()));
}

#[test]
fn a_wake_whose_start_up_fails_sleeps_on_with_the_reason_and_the_next_visit_tries_again() {
    let c = Clock(Instant::now());
    let mut m = M::new(settings());
    waking(&mut m, &c);
    m.step(breach(LimitKind::Startup, Ok(())), c.at(30.0));
    assert!(m.sleeps_after_exit(2), "the gateway keeps the port");
    let fx = m.step(exited(2, None), c.at(30.5));
    let reason = fx.iter().find_map(|e| match e {
        Effect::WakeFailed(r) => Some(r.clone()),
        _ => None,
    });
    assert_eq!(reason.as_deref(), Some("Fooocus was not ready in time"));
    assert_eq!(label(&m), "asleep");
    assert_eq!(
        m.state(true, false, false),
        crate::supervisor::FooocusState::Asleep
    );
    let fx = m.step(Input::Wake(WakeBy::Visit), c.at(40.0));
    assert_eq!(kinds(&fx), ["waking visit", "launch 0"]);
}

#[test]
fn only_a_sleep_or_a_failed_wake_keeps_the_gateway_through_the_exit() {
    let c = Clock(Instant::now());
    let mut m = M::new(settings());
    falling_asleep(&mut m, &c);
    assert!(m.sleeps_after_exit(1));
    assert!(!m.sleeps_after_exit(2), "another run's exit");
    let mut m = M::new(settings());
    running(&mut m, &c);
    assert!(!m.sleeps_after_exit(1), "a crash while awake restarts");
    m.step(Input::Stop, c.at(0.0));
    assert!(!m.sleeps_after_exit(1), "the user's stop lets the port go");
    let mut m = M::new(settings());
    waking(&mut m, &c);
    m.step(Input::Stop, c.at(1.0));
    assert!(
        !m.sleeps_after_exit(2),
        "a stop while waking ends the sleep"
    );
    let fx = m.step(exited(2, None), c.at(2.0));
    assert_eq!(kinds(&fx), ["say"]);
    assert_eq!(label(&m), "idle");
}

/// The loop's deadlines are the machine's clock too (its `next_deadline` is the only one the
/// loop waits on): each counts in the states it belongs to, and says once when it falls due.
#[test]
fn the_loops_deadlines_fall_due_only_in_the_states_they_count_in() {
    let c = Clock(Instant::now());
    let watches = Watches {
        limit: Some(c.at(1.0)),
        sleep: Some(c.at(2.0)),
        quiet: Some(c.at(3.0)),
        ..Default::default()
    };
    let mut m = M::new(settings());
    running(&mut m, &c);
    m.step(Input::Watch(watches), c.at(0.0));
    assert_eq!(m.next_deadline(), Some(c.at(1.0)));
    assert!(m.step(Input::Tick, c.at(0.9)).is_empty());
    assert_eq!(kinds(&m.step(Input::Tick, c.at(1.0))), ["due Limit"]);
    assert_eq!(m.next_deadline(), Some(c.at(2.0)), "said once");
    assert_eq!(
        kinds(&m.step(Input::Tick, c.at(5.0))),
        ["due Sleep", "due Quiet"]
    );
    assert_eq!(m.next_deadline(), None);
    // A generation being stopped: no time limit, no sleep; its quiet end still counts.
    let mut m = M::new(settings());
    graceful(&mut m, &c);
    m.step(Input::Watch(watches), c.at(0.0));
    assert_eq!(m.next_deadline(), Some(c.at(3.0)));
    assert_eq!(kinds(&m.step(Input::Tick, c.at(5.0))), ["due Quiet"]);
    // A process being ended: none of them; a sleep's late sample whatever the state.
    let mut m = M::new(settings());
    stopping(&mut m, &c);
    m.step(
        Input::Watch(Watches {
            sleep_sample: Some(c.at(4.0)),
            ..watches
        }),
        c.at(0.0),
    );
    assert_eq!(m.next_deadline(), Some(c.at(4.0)));
    assert_eq!(
        kinds(&m.step(Input::Tick, c.at(5.0))),
        ["kill timer", "due SleepSample"]
    );
}
