//! "Why it stopped": the plain-words summary of a generation a limit stopped -- what happened,
//! what the guard did, one change to try. It travels in the `generation_stopped` event, and the
//! dashboard's card shows these very words.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::events::{EventKind, LimitKind, StopHow};
use crate::units::{format_duration, format_size};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct StopSummary {
    /// What happened: "Generation 3 ran for 20 s, past its 20 s timeout."
    pub headline: String,
    /// What the guard did about it.
    pub did: String,
    /// One change to try.
    pub suggestion: String,
}

fn name(l: LimitKind) -> &'static str {
    match l {
        LimitKind::Timeout => "timeout",
        LimitKind::Stall => "stall",
        LimitKind::Startup => "start-up",
        LimitKind::Memory => "RAM",
        LimitKind::Swap => "swap",
        LimitKind::Vram => "VRAM",
        LimitKind::Cpu => "CPU",
    }
}

fn value(l: LimitKind, v: f64) -> String {
    match l {
        LimitKind::Memory | LimitKind::Swap | LimitKind::Vram => format_size(v.max(0.0) as u64),
        LimitKind::Cpu => format!("{} % of one core", v.round()),
        _ => seconds(v),
    }
}

fn seconds(v: f64) -> String {
    format_duration(Duration::from_secs_f64((v.max(0.0) * 10.0).round() / 10.0))
}

/// Fill in the summary of a `generation_stopped` event from the breach that caused it (the last
/// `limit_breached` event, if it is about the same limit and generation) and the settings.
pub fn summarize(stopped: &mut EventKind, last_breach: Option<&EventKind>, cfg: &Config) {
    let EventKind::GenerationStopped {
        generation_id,
        how,
        limit,
        took_s,
        grace_s,
        grace,
        phase,
        summary,
        steps,
    } = stopped
    else {
        return;
    };
    let breach = match last_breach {
        Some(EventKind::LimitBreached {
            limit: bl,
            configured,
            observed,
            generation_id: bg,
            ..
        }) if limit.is_none_or(|l| l == *bl)
            && (bg.is_none() || generation_id.is_none() || bg == generation_id) =>
        {
            Some((*bl, *configured, *observed))
        }
        _ => None,
    };
    let Some(limit) = limit.or(breach.map(|b| b.0)) else {
        return; // stopped by the user: nothing to explain
    };
    let generation = match generation_id {
        Some(id) => format!("Generation {id}"),
        None => "The generation".into(),
    };
    let headline = match (limit, breach) {
        (LimitKind::Timeout, Some((_, c, o))) => format!(
            "{generation} ran for {}, past its {} timeout (all of a generation counts, except model loading in the first one after Fooocus starts).",
            value(limit, o),
            value(limit, c)
        ),
        (LimitKind::Stall, Some((_, c, o))) => format!(
            "{generation} made no progress for {} (stall limit {}).",
            value(limit, o),
            value(limit, c)
        ),
        (_, Some((_, c, o))) => format!(
            "{generation} used {} of {}, over its {} limit.",
            value(limit, o),
            name(limit),
            value(limit, c)
        ),
        (_, None) => format!("{generation} went over the {} limit.", name(limit)),
    };
    let grace_why = match grace.as_str() {
        "one step" => " (one step's time, longer than the configured grace)",
        "configured" => " (the configured grace)",
        "until the first step" => {
            " (until its first sampling step, bounded by how long that took before)"
        }
        "until the next step or the end" => {
            " (until its next step or the end, bounded by how long that took before)"
        }
        _ => "",
    };
    // Fooocus looks at Stop only between sampling steps: say where it was.
    use fooocus_console::Phase as P;
    let where_ = match phase {
        Some(P::ModelLoad) => " Fooocus was still loading the model, and it looks at Stop only at its first sampling step.",
        Some(P::Preparation) => " Fooocus was still preparing the prompt (expanding and encoding it), and it looks at Stop only at its first sampling step.",
        Some(P::Decode) => " Fooocus was decoding an image (the VAE), and it looks at Stop only at its next sampling step.",
        Some(P::Saving) => " Fooocus was saving an image, and it looks at Stop only at its next sampling step.",
        Some(P::Sampling) | None => "",
    };
    let restarted = if cfg.restart.policy == crate::config::RestartMode::Never {
        "killed Fooocus; it stays stopped (restart policy: never)"
    } else {
        "killed Fooocus and restarted it"
    };
    let took = format!(
        " It was over {} after the limit fell due.",
        seconds(*took_s)
    );
    // The stop's request itself failed (a frozen Fooocus does not answer): not "not stopped
    // after the grace", which would mean Fooocus took the request and went on.
    let request_failed = steps
        .iter()
        .find(|st| st.step == crate::events::StopStepKind::Graceful)
        .and_then(|st| st.result.strip_prefix("failed: "));
    let did = match how {
        StopHow::Killed if request_failed.is_some() => format!(
            "The guard asked Fooocus to stop, but Fooocus did not answer the request ({}): it may be frozen. So the guard {restarted}.{where_}{took}",
            request_failed.unwrap_or_default()
        ),
        StopHow::Graceful => format!(
            "The guard asked Fooocus to stop the generation, as the Stop button does, and Fooocus stopped within the {} grace{grace_why}.{where_}{took}",
            seconds(*grace_s)
        ),
        StopHow::Killed if *grace_s > 0.0 => format!(
            "The guard asked Fooocus to stop, but it had not stopped after the {} grace{grace_why}, so the guard {restarted}.{where_}{took}",
            seconds(*grace_s)
        ),
        StopHow::Killed => format!(
            "Fooocus could not be asked to stop gracefully, so the guard {}.{where_}{took}",
            restarted.replacen("Fooocus", "it", 1)
        ),
    };
    let observed = breach.map(|b| b.2);
    let suggestion = match limit {
        LimitKind::Vram => match cfg.launch.vram_mode.as_deref() {
            Some("always-low-vram" | "always-no-vram" | "always-cpu") => {
                "Generate at a lower resolution (a smaller aspect ratio in Fooocus), or raise the VRAM limit in Settings.".into()
            }
            _ => "Start Fooocus in a lower-VRAM mode: Settings → Launch → VRAM mode → always-low-vram (slower, but it fits).".into(),
        },
        LimitKind::Memory => {
            let to = observed
                .map(|o| {
                    let gib = (o * 1.25 / f64::from(1u32 << 30)).ceil() as u64;
                    format!(" (to about {})", format_size(gib << 30))
                })
                .unwrap_or_default();
            format!("Raise the RAM limit in Settings{to}, or close other programs first.")
        }
        LimitKind::Swap => {
            "Raise the swap limit in Settings, or give Fooocus more RAM so it swaps less.".into()
        }
        LimitKind::Cpu => match cfg.limits.cpu_percent {
            Some(p) => {
                format!("Raise the CPU limit in Settings (now {p} %, 100 % = one core).")
            }
            None => "Raise the CPU limit in Settings.".into(),
        },
        LimitKind::Timeout if matches!(phase, Some(P::ModelLoad | P::Preparation)) => {
            "Fooocus was still preparing when the timeout fell due: prompt expansion and encoding count toward the timeout, and they can take minutes on a CPU. Give the timeout room for them (History shows how long preparation took), or turn off the Fooocus V2 style to skip the expansion.".into()
        }
        LimitKind::Timeout => {
            let to = observed
                .filter(|o| *o > 0.0)
                .map(|o| {
                    let min = (o * 1.5 / 60.0).ceil() as u64;
                    format!(" (to {} or more)", format_duration(Duration::from_secs(min * 60)))
                })
                .unwrap_or_default();
            format!("Raise the timeout in Settings{to}, or generate fewer images or a lower resolution at a time.")
        }
        LimitKind::Stall => "Raise the stall limit in Settings if the first step often takes this long (model loading), or check the console for an error.".into(),
        LimitKind::Startup => "Raise the start-up limit in Settings if Fooocus loads its models slowly here, or check the console for an error.".into(),
    };
    *summary = Some(StopSummary {
        headline,
        did,
        suggestion,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{BreachAction, StopStep, StopStepKind};

    fn stopped(how: StopHow, grace_s: f64) -> EventKind {
        EventKind::GenerationStopped {
            generation_id: Some(3),
            how,
            limit: Some(LimitKind::Timeout),
            took_s: 1.2,
            steps: vec![],
            grace_s,
            grace: "configured".into(),
            phase: None,
            summary: None,
        }
    }

    fn breach(limit: LimitKind, configured: f64, observed: f64, id: Option<u64>) -> EventKind {
        EventKind::LimitBreached {
            limit,
            configured,
            observed,
            action: BreachAction::StopGeneration,
            generation_id: id,
            source: None,
            phase: None,
        }
    }

    fn summary(e: &EventKind) -> StopSummary {
        match e {
            EventKind::GenerationStopped { summary, .. } => summary.clone().unwrap(),
            _ => unreachable!(),
        }
    }

    /// A frozen Fooocus (tests/real's stall scenario) never answers the stop's request: the card
    /// says so, not that it went on past the grace.
    #[test]
    fn a_stop_request_fooocus_never_answered_is_told_as_such() {
        let mut e = stopped(StopHow::Killed, 11.4);
        if let EventKind::GenerationStopped { steps, limit, .. } = &mut e {
            *limit = Some(LimitKind::Stall);
            steps.push(StopStep {
                step: StopStepKind::Graceful,
                at_s: 0.0,
                took_s: 10.0,
                result: "failed: GET /config to Fooocus: no answer in 10 s".into(),
            });
        }
        summarize(
            &mut e,
            Some(&breach(LimitKind::Stall, 120.0, 120.0, Some(3))),
            &Config::default(),
        );
        let did = summary(&e).did;
        assert!(
            did.starts_with("The guard asked Fooocus to stop, but Fooocus did not answer the request (GET /config to Fooocus: no answer in 10 s): it may be frozen. So the guard killed Fooocus and restarted it."),
            "{did}"
        );
        assert!(!did.contains("had not stopped"), "{did}");
    }

    #[test]
    fn a_timeout_says_how_long_what_was_done_and_what_to_change() {
        let mut e = stopped(StopHow::Graceful, 3.0);
        summarize(
            &mut e,
            Some(&breach(LimitKind::Timeout, 20.0, 20.04, Some(3))),
            &Config::default(),
        );
        let s = summary(&e);
        assert_eq!(
            s.headline,
            "Generation 3 ran for 20 s, past its 20 s timeout (all of a generation counts, except model loading in the first one after Fooocus starts)."
        );
        assert!(
            s.did
                .starts_with("The guard asked Fooocus to stop the generation"),
            "{}",
            s.did
        );
        assert!(
            s.did.contains("3 s grace (the configured grace)"),
            "{}",
            s.did
        );
        assert_eq!(
            s.suggestion,
            "Raise the timeout in Settings (to 1 min or more), or generate fewer images or a lower resolution at a time."
        );
    }

    #[test]
    fn a_kill_after_the_grace_and_a_ram_breach() {
        let mut e = stopped(StopHow::Killed, 10.0);
        if let EventKind::GenerationStopped { limit, .. } = &mut e {
            *limit = Some(LimitKind::Memory);
        }
        summarize(
            &mut e,
            Some(&breach(
                LimitKind::Memory,
                2.0 * 1073741824.0,
                2.5 * 1073741824.0,
                Some(3),
            )),
            &Config::default(),
        );
        let s = summary(&e);
        assert_eq!(
            s.headline,
            "Generation 3 used 2.5 GiB of RAM, over its 2 GiB limit."
        );
        assert!(
            s.did.contains("killed Fooocus and restarted it"),
            "{}",
            s.did
        );
        assert!(s.suggestion.contains("to about 4 GiB"), "{}", s.suggestion);
    }

    /// Issue 26, finding 1: a stop before the first step names the phase, not only "raise
    /// the timeout".
    #[test]
    fn a_stop_while_preparing_names_the_phase() {
        let mut e = stopped(StopHow::Graceful, 90.0);
        if let EventKind::GenerationStopped { grace, phase, .. } = &mut e {
            *grace = "until the first step".into();
            *phase = Some(fooocus_console::Phase::Preparation);
        }
        summarize(
            &mut e,
            Some(&breach(LimitKind::Timeout, 20.0, 20.04, Some(3))),
            &Config::default(),
        );
        let s = summary(&e);
        assert!(
            s.did.contains("Fooocus was still preparing the prompt"),
            "{}",
            s.did
        );
        assert!(
            s.did.contains("(until its first sampling step"),
            "{}",
            s.did
        );
        assert!(
            s.suggestion.starts_with("Fooocus was still preparing"),
            "{}",
            s.suggestion
        );
        assert!(!s.suggestion.starts_with("Raise the timeout"));
    }

    /// Issue 26, finding 3: with the restart policy `never` the card does not say
    /// "restarted".
    #[test]
    fn a_kill_under_restart_never_says_fooocus_stays_stopped() {
        let mut e = stopped(StopHow::Killed, 10.0);
        let mut cfg = Config::default();
        cfg.restart.policy = crate::config::RestartMode::Never;
        summarize(
            &mut e,
            Some(&breach(LimitKind::Timeout, 20.0, 20.04, Some(3))),
            &cfg,
        );
        let s = summary(&e);
        assert!(s.did.contains("it stays stopped"), "{}", s.did);
        assert!(!s.did.contains("restarted"), "{}", s.did);
    }

    #[test]
    fn a_breach_of_another_generation_is_not_this_ones_cause() {
        let mut e = stopped(StopHow::Graceful, 3.0);
        summarize(
            &mut e,
            Some(&breach(LimitKind::Timeout, 20.0, 21.0, Some(2))),
            &Config::default(),
        );
        assert_eq!(
            summary(&e).headline,
            "Generation 3 went over the timeout limit."
        );
    }
}
