//! The words of desktop notifications: which limit, its value, what was seen, what happens
//! now. Pure, so the wording is tested without a desktop.

use std::time::Duration;

use crate::events::{BreachAction, EventKind, GuardEvent, LimitKind};
use crate::units::{format_duration, format_size};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub summary: String,
    pub body: String,
}

fn secs(v: f64) -> String {
    format_duration(Duration::from_secs_f64(v.max(0.0)))
}

/// The notification for an event, if it deserves one.
pub fn for_event(ev: &GuardEvent) -> Option<Notice> {
    let n = |summary: &str, body: String| {
        Some(Notice {
            summary: summary.into(),
            body,
        })
    };
    match &ev.kind {
        EventKind::LimitBreached { limit, configured, observed, action, source, .. } => {
            let what_now = match action {
                BreachAction::StopGeneration => "Fooocus is stopping it; it stays up for your next image.",
                BreachAction::KillAndRestart => "Fooocus is restarting; it will be ready in a moment.",
                BreachAction::Restart => "Fooocus is restarting.",
                BreachAction::KilledByKernel => "Fooocus is restarting if your restart setting allows it.",
                BreachAction::Kill => "Fooocus was stopped and stays stopped (your restart setting is never): start it again from the tray.",
            };
            let (summary, body) = match limit {
                LimitKind::Timeout => (
                    "Generation stopped: time limit",
                    format!("Generation stopped after {} -- your limit is {}. {what_now}", secs(*observed), secs(*configured)),
                ),
                LimitKind::Stall => (
                    "Generation stopped: no progress",
                    format!("No progress for {} (your stall limit is {}). {what_now}", secs(*observed), secs(*configured)),
                ),
                LimitKind::Startup => (
                    "Fooocus did not start",
                    format!("Fooocus was not ready after {} (your start-up limit). {what_now}", secs(*configured)),
                ),
                LimitKind::Memory => (
                    "Fooocus hit your RAM cap",
                    format!(
                        "Fooocus used {} of RAM -- your cap is {}, so your PC stays responsive. {what_now}",
                        format_size(*observed as u64),
                        format_size(*configured as u64)
                    ),
                ),
                LimitKind::Swap => (
                    "Fooocus hit your swap cap",
                    format!("Fooocus used {} of swap -- your cap is {}. {what_now}", format_size(*observed as u64), format_size(*configured as u64)),
                ),
                LimitKind::Vram => (
                    "Generation stopped: VRAM cap",
                    format!(
                        "{} used {} of VRAM -- your cap is {}. {what_now}",
                        if source.as_deref() == Some("device") { "The GPU" } else { "Fooocus" },
                        format_size(*observed as u64),
                        format_size(*configured as u64)
                    ),
                ),
                LimitKind::Cpu => ("CPU cap reached", format!("Fooocus is held to {configured:.0}% of a core. {what_now}")),
            };
            n(summary, body.trim_end().to_string())
        }
        EventKind::Exited { expected: false, oom: false, code, signal, .. } => n(
            "Fooocus stopped unexpectedly",
            match (code, signal) {
                (Some(c), _) => format!("Fooocus exited with code {c}. The guard restarts it if your restart setting allows it; the console shows what it printed."),
                (_, Some(s)) => format!("Fooocus was killed by signal {s}. The guard restarts it if your restart setting allows it."),
                _ => "Fooocus exited. The guard restarts it if your restart setting allows it.".to_string(),
            },
        ),
        EventKind::GaveUp { failures, window_s, reason } => n(
            "Fooocus keeps failing",
            format!(
                "Fooocus failed {failures} times in {} (last: {reason}). Restarts are paused: check the console, then start it again.",
                secs(*window_s)
            ),
        ),
        EventKind::KnownFailure { advice, .. } => n("Fooocus hit a known problem", advice.clone()),
        // A visitor sees the reason on the waking page; the user at the PC hears it here.
        EventKind::WakeFailed { reason } => n(
            "Fooocus could not wake up",
            format!("{reason}. It sleeps on: the next visit, or Wake in the tray, tries again; the console shows what it printed."),
        ),
        EventKind::Unhealthy { reason } => n("Fooocus cannot generate", format!("{reason}. The guard restarts it.")),
        EventKind::Ready { url, .. } => n("Fooocus is ready", format!("Open {url} to start generating.")),
        EventKind::GenerationFinished { outcome, seconds, images_done, .. } if outcome == "completed" => n(
            "Generation finished",
            format!(
                "{images_done} image{} in {}.",
                if *images_done == 1 { "" } else { "s" },
                secs(*seconds)
            ),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_words() {
        let ev = GuardEvent::now(EventKind::LimitBreached {
            limit: LimitKind::Timeout,
            configured: 300.0,
            observed: 300.4,
            action: BreachAction::KillAndRestart,
            generation_id: Some(4),
            source: None,
            phase: None,
        });
        let n = for_event(&ev).unwrap();
        assert_eq!(n.summary, "Generation stopped: time limit");
        assert_eq!(
            n.body,
            "Generation stopped after 5 min -- your limit is 5 min. Fooocus is restarting; it will be ready in a moment."
        );
    }

    #[test]
    fn a_finished_generation_in_words() {
        let done = |outcome: &str, images: u32| {
            GuardEvent::now(EventKind::GenerationFinished {
                generation_id: 3,
                outcome: outcome.into(),
                seconds: 95.0,
                closed_by: "task_end".into(),
                images_done: images,
                images_total: Some(images),
                peak_ram_bytes: None,
                peak_vram_bytes: None,
                peak_cpu_percent: None,
            })
        };
        let n = for_event(&done("completed", 2)).unwrap();
        assert_eq!(
            (n.summary.as_str(), n.body.as_str()),
            ("Generation finished", "2 images in 1 min 35 s.")
        );
        assert_eq!(
            for_event(&done("stopped", 1)),
            None,
            "a stop says so itself"
        );
    }

    /// Issue 25: a failed wake reaches the desktop with its reason and what happens next.
    #[test]
    fn a_failed_wake_is_told() {
        let n = for_event(&GuardEvent::now(EventKind::WakeFailed {
            reason: "Fooocus exited with code 1 while starting".into(),
        }))
        .expect("a notification");
        assert_eq!(n.summary, "Fooocus could not wake up");
        assert!(
            n.body
                .starts_with("Fooocus exited with code 1 while starting. It sleeps on"),
            "{}",
            n.body
        );
    }

    /// Issue 26: a failure with a known fix reaches the desktop with the fix; a limit's kill
    /// under the restart policy never says Fooocus stays stopped.
    #[test]
    fn known_failures_and_a_kill_without_restart() {
        let f = fooocus_console::KnownFailure::GpuTooNew;
        let ev = GuardEvent::now(EventKind::KnownFailure {
            failure: f,
            advice: f.advice().into(),
        });
        let n = for_event(&ev).unwrap();
        assert!(n.body.contains("--always-cpu"), "{}", n.body);
        let v: serde_json::Value = serde_json::from_str(&ev.to_json()).unwrap();
        assert_eq!(
            (v["event"].as_str(), v["failure"].as_str()),
            (Some("known_failure"), Some("gpu_too_new"))
        );
        assert!(fooocus_console::KnownFailure::FileLocked
            .advice()
            .contains("Close the other Fooocus"));
        let ev = GuardEvent::now(EventKind::LimitBreached {
            limit: LimitKind::Timeout,
            configured: 300.0,
            observed: 300.4,
            action: BreachAction::Kill,
            generation_id: Some(4),
            source: None,
            phase: None,
        });
        let n = for_event(&ev).unwrap();
        assert!(n.body.contains("stays stopped"), "{}", n.body);
        assert!(!n.body.contains("restarting"), "{}", n.body);
    }

    #[test]
    fn memory_and_crash_and_quiet_events() {
        let ev = GuardEvent::now(EventKind::LimitBreached {
            limit: LimitKind::Memory,
            configured: (12u64 << 30) as f64,
            observed: (12u64 << 30) as f64,
            action: BreachAction::KilledByKernel,
            generation_id: None,
            source: None,
            phase: None,
        });
        assert!(for_event(&ev).unwrap().body.contains("12 GiB"));
        let ev = GuardEvent::now(EventKind::Exited {
            pid: 1,
            code: Some(1),
            signal: None,
            oom: false,
            expected: false,
        });
        assert!(for_event(&ev).unwrap().body.contains("code 1"));
        let ev = GuardEvent::now(EventKind::Exited {
            pid: 1,
            code: Some(0),
            signal: None,
            oom: false,
            expected: true,
        });
        assert_eq!(for_event(&ev), None);
        assert_eq!(
            for_event(&GuardEvent::now(EventKind::GenerationStarted {
                generation_id: 1
            })),
            None
        );
    }
}
