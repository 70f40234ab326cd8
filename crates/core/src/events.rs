//! Structured events: what the guard did and saw, one JSON object per line (`--events`), in
//! the log files, and to the UI. Sizes in bytes, times in seconds. Prompts never appear here.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Which limit a breach is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    Timeout,
    Stall,
    Startup,
    Memory,
    Swap,
    Vram,
    Cpu,
}

impl LimitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Timeout => "timeout",
            LimitKind::Stall => "stall",
            LimitKind::Startup => "startup",
            LimitKind::Memory => "memory",
            LimitKind::Swap => "swap",
            LimitKind::Vram => "vram",
            LimitKind::Cpu => "cpu",
        }
    }
    /// Figures of this limit are bytes (else seconds or percent).
    pub fn is_size(self) -> bool {
        matches!(self, LimitKind::Memory | LimitKind::Swap | LimitKind::Vram)
    }
}

/// How a generation was stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum StopHow {
    Graceful,
    Killed,
}

/// What the guard does about a breach (the `action` of `limit_breached`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum BreachAction {
    /// Ask Fooocus to stop the generation (the tree is killed if it does not).
    StopGeneration,
    /// Kill the tree and start Fooocus again.
    KillAndRestart,
    /// Kill the tree; no restart (the restart policy `never`).
    Kill,
    /// Not ready in time (the start-up limit): end the process and start it again.
    Restart,
    /// The kernel killed the tree at its RAM cap (seen after the fact).
    KilledByKernel,
}

impl BreachAction {
    pub fn as_str(self) -> &'static str {
        match self {
            BreachAction::StopGeneration => "stop_generation",
            BreachAction::KillAndRestart => "kill_and_restart",
            BreachAction::Kill => "kill",
            BreachAction::Restart => "restart",
            BreachAction::KilledByKernel => "killed_by_kernel",
        }
    }
}

/// The word in the event log, as the UI and older callers compare it.
impl PartialEq<str> for BreachAction {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

/// Which step of stopping a generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum StopStepKind {
    /// Fooocus was asked to stop the generation, as its Stop button does.
    Graceful,
    /// The tree was killed.
    Kill,
    /// Fooocus was started again after the kill.
    Restart,
}

impl StopStepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StopStepKind::Graceful => "graceful",
            StopStepKind::Kill => "kill",
            StopStepKind::Restart => "restart",
        }
    }
}

/// One step of an escalation, with its timing (also kept in the generation record).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct StopStep {
    pub step: StopStepKind,
    /// Seconds from the breach to the start of this step.
    pub at_s: f64,
    /// Seconds this step took.
    pub took_s: f64,
    /// "ended" | "ignored" | "unavailable" | "reaped" | "ready" | ...
    pub result: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// Fooocus (or the command) started inside its container.
    Started {
        pid: u32,
        backend: String,
        backend_reason: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "ts", ts(optional))]
        version: Option<String>,
        attempt: u32,
    },
    /// Fooocus printed its ready line.
    Ready {
        url: String,
        startup_s: f64,
    },
    /// Fooocus is up but cannot generate (dead worker thread, no ready line in time).
    Unhealthy {
        reason: String,
    },
    GenerationStarted {
        generation_id: u64,
    },
    /// Fooocus entered a phase of its work (the start-up model load has no generation).
    Phase {
        phase: fooocus_console::Phase,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "ts", ts(optional))]
        generation_id: Option<u64>,
    },
    GenerationFinished {
        generation_id: u64,
        outcome: String,
        seconds: f64,
        closed_by: String,
        images_done: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "ts", ts(optional))]
        images_total: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "ts", ts(optional))]
        peak_ram_bytes: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "ts", ts(optional))]
        peak_vram_bytes: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "ts", ts(optional))]
        peak_cpu_percent: Option<f64>,
    },
    LimitBreached {
        limit: LimitKind,
        configured: f64,
        observed: f64,
        action: BreachAction,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "ts", ts(optional))]
        generation_id: Option<u64>,
        /// For VRAM: "tree" (the tree's processes) or "device" (per-process figures unsupported).
        #[serde(skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "ts", ts(optional))]
        source: Option<String>,
        /// The phase Fooocus was in at the breach (omitted when unknown).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "ts", ts(optional))]
        phase: Option<fooocus_console::Phase>,
    },
    GenerationStopped {
        #[serde(skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "ts", ts(optional))]
        generation_id: Option<u64>,
        how: StopHow,
        limit: Option<LimitKind>,
        /// Seconds from the breach (or the user's request) to the generation being over.
        took_s: f64,
        steps: Vec<StopStep>,
        /// How long the graceful stop was given before the kill (0 when it was unavailable).
        grace_s: f64,
        /// Why that long: "configured"; "one step" when the estimated step time was longer
        /// (Fooocus looks at Stop only between steps); "until the first step" (loading or
        /// preparing), "until the next step or the end" (decoding or saving); "none".
        grace: String,
        /// The phase Fooocus was in when the stop was asked (omitted when unknown).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "ts", ts(optional))]
        phase: Option<fooocus_console::Phase>,
        /// In plain words: what happened, what the guard did, one change to try (words/why.rs).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "ts", ts(optional))]
        summary: Option<crate::words::why::StopSummary>,
    },
    /// A Python error printed by Fooocus (exception type and message only).
    FooocusError {
        exception: String,
        message: String,
    },
    OutOfMemory {
        message: String,
    },
    Exited {
        pid: u32,
        code: Option<i32>,
        signal: Option<i32>,
        oom: bool,
        /// The guard asked for this exit (user stop, limit kill, restart).
        expected: bool,
    },
    Restarting {
        attempt: u32,
        delay_s: f64,
        reason: String,
    },
    GaveUp {
        failures: u32,
        window_s: f64,
        reason: String,
    },
    /// Fooocus fell asleep (idle for the sleep setting, or the user's "Sleep now"): its tree is
    /// gone and the gateway wakes it on a visit. Memory as `SleepInfo` (supervisor) measures
    /// it: the machine's RAM and the GPUs' VRAM in use before the stop and after the tree was
    /// gone; `held_ram_bytes` is what the tree itself held.
    Asleep {
        idle_s: f64,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "ts", ts(optional))]
        held_ram_bytes: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "ts", ts(optional))]
        ram_before_bytes: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "ts", ts(optional))]
        ram_after_bytes: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "ts", ts(optional))]
        vram_before_bytes: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "ts", ts(optional))]
        vram_after_bytes: Option<u64>,
    },
    /// Fooocus is ready again after a sleep. `by`: "visit" | "user"; `ready_s` from the wake.
    Woke {
        asleep_s: f64,
        by: String,
        ready_s: f64,
    },
    /// A wake's start-up failed; Fooocus sleeps on and the next visit tries again.
    WakeFailed {
        reason: String,
    },
    /// Containers left by a guard that died were cleaned at start.
    StaleCleaned {
        group: String,
    },
    /// Something the user should know about the guard itself (config fallback, gateway down).
    Warning {
        message: String,
    },
    /// Fooocus printed a failure with a known fix: which, and the fix in plain words.
    KnownFailure {
        failure: fooocus_console::KnownFailure,
        advice: String,
    },
    Stopped,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct GuardEvent {
    /// RFC 3339, UTC, milliseconds.
    pub ts: String,
    #[serde(flatten)]
    pub kind: EventKind,
}

impl GuardEvent {
    pub fn now(kind: EventKind) -> Self {
        GuardEvent {
            ts: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            kind,
        }
    }

    pub fn name(&self) -> &'static str {
        match &self.kind {
            EventKind::Started { .. } => "started",
            EventKind::Ready { .. } => "ready",
            EventKind::Unhealthy { .. } => "unhealthy",
            EventKind::GenerationStarted { .. } => "generation_started",
            EventKind::Phase { .. } => "phase",
            EventKind::GenerationFinished { .. } => "generation_finished",
            EventKind::LimitBreached { .. } => "limit_breached",
            EventKind::GenerationStopped { .. } => "generation_stopped",
            EventKind::FooocusError { .. } => "fooocus_error",
            EventKind::OutOfMemory { .. } => "out_of_memory",
            EventKind::Exited { .. } => "exited",
            EventKind::Restarting { .. } => "restarting",
            EventKind::GaveUp { .. } => "gave_up",
            EventKind::StaleCleaned { .. } => "stale_cleaned",
            EventKind::Asleep { .. } => "asleep",
            EventKind::Woke { .. } => "woke",
            EventKind::WakeFailed { .. } => "wake_failed",
            EventKind::Warning { .. } => "warning",
            EventKind::KnownFailure { .. } => "known_failure",
            EventKind::Stopped => "stopped",
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("events serialise")
    }
}

/// Writes events as JSON lines to a file or stdout (`--events FILE|-`).
#[derive(Clone)]
pub struct JsonLines {
    out: Arc<Mutex<Box<dyn Write + Send>>>,
}

impl JsonLines {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        JsonLines {
            out: Arc::new(Mutex::new(out)),
        }
    }

    pub fn open(path: &str) -> std::io::Result<Self> {
        if path == "-" {
            return Ok(Self::new(Box::new(std::io::stdout())));
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Self::new(Box::new(f)))
    }

    pub fn write(&self, ev: &GuardEvent) {
        let mut line = ev.to_json();
        line.push('\n');
        if let Ok(mut out) = self.out.lock() {
            let _ = out.write_all(line.as_bytes());
            let _ = out.flush();
        }
    }
}

/// Also record every event through `tracing` (JSON log files), at a level that fits.
pub fn trace(ev: &GuardEvent) {
    let json = ev.to_json();
    match &ev.kind {
        EventKind::LimitBreached { .. }
        | EventKind::GaveUp { .. }
        | EventKind::Unhealthy { .. }
        | EventKind::OutOfMemory { .. }
        | EventKind::Warning { .. }
        | EventKind::WakeFailed { .. }
        | EventKind::KnownFailure { .. } => {
            tracing::warn!(target: "fooocus_guard::event", event = ev.name(), data = %json)
        }
        _ => tracing::info!(target: "fooocus_guard::event", event = ev.name(), data = %json),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_on_the_wire() {
        let ev = GuardEvent::now(EventKind::LimitBreached {
            limit: LimitKind::Timeout,
            configured: 300.0,
            observed: 300.02,
            action: BreachAction::StopGeneration,
            generation_id: Some(3),
            source: None,
            phase: Some(fooocus_console::Phase::Preparation),
        });
        let v: serde_json::Value = serde_json::from_str(&ev.to_json()).unwrap();
        assert_eq!(v["event"], "limit_breached");
        assert_eq!(v["limit"], "timeout");
        assert_eq!(v["configured"], 300.0);
        assert!(v["ts"].as_str().unwrap().ends_with('Z'));
        assert!(v.get("source").is_none());
        assert_eq!(v["phase"], "preparation");
        let back: GuardEvent = serde_json::from_str(&ev.to_json()).unwrap();
        assert_eq!(back, ev);
    }

    /// The breach's action and the stop's steps are enums; the log, the history and the UI
    /// read the same words as when they were strings.
    #[test]
    fn actions_and_steps_keep_their_words() {
        use BreachAction as A;
        for a in [
            A::StopGeneration,
            A::KillAndRestart,
            A::Kill,
            A::Restart,
            A::KilledByKernel,
        ] {
            assert_eq!(serde_json::to_value(a).unwrap(), a.as_str());
            assert!(a == *a.as_str());
        }
        assert_eq!(A::KillAndRestart.as_str(), "kill_and_restart");
        assert_eq!(A::KilledByKernel.as_str(), "killed_by_kernel");
        let step = StopStep {
            step: StopStepKind::Graceful,
            at_s: 0.0,
            took_s: 1.0,
            result: "ended".into(),
        };
        let v = serde_json::to_value(&step).unwrap();
        assert_eq!(v["step"], "graceful");
        for k in [
            StopStepKind::Graceful,
            StopStepKind::Kill,
            StopStepKind::Restart,
        ] {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        // Records stored before keep reading.
        let old: StopStep =
            serde_json::from_str(r#"{"step":"restart","at_s":0.1,"took_s":20.0,"result":"ready"}"#)
                .unwrap();
        assert_eq!(old.step, StopStepKind::Restart);
    }

    /// The contract other tests (the real-Fooocus suite) assert: the phase event's names.
    #[test]
    fn phase_events_on_the_wire() {
        use fooocus_console::Phase as P;
        let ev = GuardEvent::now(EventKind::Phase {
            phase: P::ModelLoad,
            generation_id: None,
        });
        let v: serde_json::Value = serde_json::from_str(&ev.to_json()).unwrap();
        assert_eq!(v["event"], "phase");
        assert_eq!(v["phase"], "model_load");
        assert!(v.get("generation_id").is_none());
        let names: Vec<String> = [
            P::ModelLoad,
            P::Preparation,
            P::Sampling,
            P::Decode,
            P::Saving,
        ]
        .into_iter()
        .map(|p| {
            let ev = GuardEvent::now(EventKind::Phase {
                phase: p,
                generation_id: Some(4),
            });
            let v: serde_json::Value = serde_json::from_str(&ev.to_json()).unwrap();
            assert_eq!(v["generation_id"], 4);
            v["phase"].as_str().unwrap().to_string()
        })
        .collect();
        assert_eq!(
            names,
            ["model_load", "preparation", "sampling", "decode", "saving"]
        );
    }
}
