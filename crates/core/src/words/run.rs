//! What the supervisor's machine says: the console's `[guard]` lines and the reasons its
//! events carry (restarts, give-ups, exits, breaches). With `why` (the why-card) and `notice`
//! (the desktop notification), every sentence the supervisor writes for the user is here.

use std::time::Duration;

use crate::events::BreachAction;
use crate::events::LimitKind;
use crate::policy::Breach;
use crate::supervisor::machine::{ExitFacts, WakeBy};

/// Said when Fooocus has stopped to give its memory back.
pub(crate) const ASLEEP: &str = "Fooocus is asleep: it wakes when you open it";

/// Said when a limit's kill ends Fooocus under the restart policy `never`.
pub(crate) const STAYS_STOPPED_AFTER_LIMIT: &str = "Fooocus was stopped for a limit and stays stopped (restart policy: never); start it again from the tray or the dashboard, or run the guard again";

/// Said when Fooocus is stopped by the user.
pub(crate) const STOPPED: &str = "Fooocus stopped";

/// A launch that could not start a process (the restart policy decides what follows).
pub(crate) const COULD_NOT_START: &str = "could not start";

/// Why a wake failed when nothing could be started.
pub(crate) const NO_INSTALL: &str = "no Fooocus install is configured";
pub(crate) const COULD_NOT_START_WAKE: &str = "Fooocus could not be started (the console says why)";

/// Why a wake failed when its Fooocus ended before it was ready.
pub(crate) const NOT_READY_IN_TIME: &str = "Fooocus was not ready in time";
pub(crate) const LIMIT_STOPPED_THE_WAKE: &str = "a limit stopped it while it started";

/// Fooocus is up but its worker is gone: it will never run a task.
pub(crate) const COULD_NOT_GENERATE: &str = "Fooocus could not generate";

/// "Sleep now" (or the idle clock) while a generation runs or a limit is handled.
pub(crate) const NOT_SLEEPING_WHILE_BUSY: &str = "not going to sleep: a generation is running or being stopped; Fooocus sleeps once it has been idle again for the sleep setting";

/// A wake that got Fooocus ready.
pub(crate) fn awake(ready_s: f64, by: WakeBy) -> String {
    let by = if by == WakeBy::Visit {
        "visit"
    } else {
        "user's Wake"
    };
    format!("Fooocus is awake ({ready_s:.1} s after the {by})")
}

/// A limit fell due: what it saw, and what the guard does.
pub(crate) fn breached(what: &str, action: BreachAction) -> String {
    format!("limit breached: {what}; action: {}", action.as_str())
}

/// The escalation killed the tree.
pub(crate) fn tree_killed(took_s: f64, restarting: bool) -> String {
    let next = if restarting {
        "restarting Fooocus"
    } else {
        "Fooocus stays stopped (restart policy: never)"
    };
    format!(
        "tree killed {:.1} ms after the limit fell due; {next}",
        took_s * 1000.0
    )
}

/// A tree kill that did not finish, tried again every second.
pub(crate) fn kill_failed(why: &str, attempt: u32) -> String {
    format!(
        "could not kill Fooocus's processes ({why}); trying again every second (attempt {attempt})"
    )
}

/// The restart after a limit's kill, ready or not.
pub(crate) fn ready_after_kill(took_s: f64) -> String {
    format!("Fooocus is ready again {took_s:.1} s after the kill")
}
pub(crate) fn not_ready_after_kill(since_kill: Duration) -> String {
    format!(
        "Fooocus was not ready {:.0} s after the kill",
        since_kill.as_secs_f64()
    )
}

/// A generation Fooocus stopped when asked.
pub(crate) fn stopped_gracefully(generation: u64, took_s: f64) -> String {
    format!("generation {generation} stopped gracefully in {took_s:.1} s")
}

/// A wake whose start-up failed.
pub(crate) fn did_not_wake(reason: &str) -> String {
    format!("Fooocus did not wake: {reason}; it sleeps on, and the next visit tries again")
}

/// Every restart says why and when, whatever caused it.
pub(crate) fn restarting(attempt: u32, delay: Duration, reason: &str) -> String {
    format!(
        "restarting Fooocus in {:.1} s (attempt {attempt}; {reason})",
        delay.as_secs_f64()
    )
}

/// The restart policy gave up.
pub(crate) fn giving_up(failures: u32, window_s: f64, reason: &str) -> String {
    format!(
        "giving up: Fooocus failed {failures} times in {} (last: {reason}). Fix the cause, then start it again",
        crate::units::format_duration(Duration::from_secs_f64(window_s))
    )
}

/// How the main process ended, in the user's words.
pub(crate) fn exit(facts: &ExitFacts) -> String {
    match (facts.code, facts.signal, facts.oom, facts.port_taken) {
        (_, _, true, _) => "killed by the RAM cap".to_string(),
        // Said in plain words, and restarted with backoff: the other program may let go of
        // the port (give-up, if it comes, names the port).
        (_, _, _, Some((port, true))) => format!(
            "could not listen: port {port} is taken by another program (close it, or pick another port in the settings)"
        ),
        (Some(c), _, _, _) => format!("exited with code {c}"),
        (_, Some(s), _, _) => format!("killed by signal {s}"),
        _ => "exited".to_string(),
    }
}

/// A breach in the user's words.
pub(crate) fn breach(b: &Breach, generation: Option<u64>) -> String {
    use crate::units::{format_duration, format_size};
    let secs = Duration::from_secs_f64;
    match b.limit {
        LimitKind::Timeout => format!(
            "generation {} ran for {} -- over its timeout of {}",
            generation.unwrap_or(0),
            format_duration(secs(b.observed)),
            format_duration(secs(b.configured))
        ),
        LimitKind::Stall => format!(
            "generation {} made no progress for {}",
            generation.unwrap_or(0),
            format_duration(secs(b.observed))
        ),
        LimitKind::Startup => format!(
            "Fooocus was not ready after {}",
            format_duration(secs(b.observed))
        ),
        k => format!(
            "{} use {} is over the cap of {}",
            k.as_str(),
            format_size(b.observed as u64),
            format_size(b.configured as u64)
        ),
    }
}

/// The give-up reason when the same limit stopped Fooocus each time: which limit, and the
/// change that usually helps.
pub(crate) fn keeps_firing(limit: Option<LimitKind>) -> String {
    let Some(limit) = limit else {
        return "a limit stopped it each time: check the limits in the settings against what History shows past generations used".into();
    };
    let advice = match limit {
        LimitKind::Memory | LimitKind::Swap | LimitKind::Cpu => {
            "a cap below what Fooocus needs once loaded is the usual cause: raise it in the settings (History shows what past generations used)"
        }
        LimitKind::Vram => {
            "a cap below what the model needs on the GPU is the usual cause: raise it, or pick a lower VRAM mode in the settings (History shows what past generations used)"
        }
        LimitKind::Timeout => {
            "generations take longer than it allows: raise the timeout in the settings (History shows how long past generations took), or generate fewer or smaller images"
        }
        LimitKind::Stall => {
            "Fooocus printed nothing for longer than it allows, which a first model load can do: raise the stall limit in the settings"
        }
        LimitKind::Startup => {
            "Fooocus takes longer to get ready than it allows: raise the start-up limit in the settings"
        }
    };
    format!(
        "its {} limit stopped it each time; {advice}",
        limit.as_str()
    )
}
