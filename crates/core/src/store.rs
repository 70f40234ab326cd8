//! The supervisor's side of the history store: generations and breaches as the guard sees
//! them, written to guard-history's SQLite store. Failures to write are reported once and never
//! stop supervision.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

pub use guard_history::{BreachRecord, GenerationRecord, HistoryPoint, LimitStats};

use crate::events::{EventKind, GuardEvent, StopStep};
use crate::generation::Generation;

pub struct Store {
    inner: guard_history::Store,
    warned: AtomicBool,
}

fn epoch_ms(ts: &str) -> i64 {
    humantime::parse_rfc3339(ts)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, String> {
        let inner = guard_history::Store::open(path).map_err(|e| e.to_string())?;
        inner.prune(epoch_ms(
            &humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        ));
        Ok(Store {
            inner,
            warned: AtomicBool::new(false),
        })
    }

    fn check<T>(&self, r: Result<T, guard_history::StoreError>) {
        if let Err(e) = r {
            if !self.warned.swap(true, Ordering::Relaxed) {
                eprintln!("fooocus-guard: the history store failed ({e}); supervision goes on");
            }
        }
    }

    pub fn next_generation_id(&self) -> u64 {
        self.inner.next_generation_id().max(1) as u64
    }

    /// Breaches go to their table; a stop records how it ended on its breach.
    pub fn record_event(&self, ev: &GuardEvent) {
        match &ev.kind {
            EventKind::LimitBreached {
                limit,
                configured,
                observed,
                action,
                generation_id,
                ..
            } => {
                self.check(self.inner.insert_breach(&BreachRecord {
                    id: 0,
                    ts_ms: epoch_ms(&ev.ts),
                    limit: limit.as_str().into(),
                    configured: *configured,
                    observed: *observed,
                    action: action.clone(),
                    how: None,
                    generation_id: generation_id.map(|g| g as i64),
                }));
            }
            EventKind::GenerationStopped {
                generation_id: Some(id),
                how,
                ..
            } => {
                self.inner.set_breach_how(
                    *id as i64,
                    if *how == crate::events::StopHow::Graceful {
                        "graceful"
                    } else {
                        "killed"
                    },
                );
            }
            _ => {}
        }
    }

    pub fn save_generation(&self, g: &Generation) {
        self.check(self.inner.save_generation(&record(g)));
    }

    /// The restart step of an escalation ends after the generation was saved: add it.
    pub fn append_stop_step(&self, id: u64, step: &StopStep) {
        if let Some(mut r) = self.inner.generation(id as i64) {
            let mut steps: Vec<StopStep> = r
                .stop_steps
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or_default();
            steps.push(step.clone());
            r.stop_steps = serde_json::to_string(&steps).ok();
            self.check(self.inner.save_generation(&r));
        }
    }

    pub fn generations(&self, outcome: Option<&str>, limit: u32) -> Vec<GenerationRecord> {
        self.inner.generations(outcome, limit)
    }

    pub fn breaches(&self, limit: u32) -> Vec<BreachRecord> {
        self.inner.breaches(limit)
    }

    pub fn limit_stats(&self, kind: &str, value: Option<f64>) -> Result<LimitStats, String> {
        let kind = if kind == "stall" { "timeout" } else { kind };
        self.inner
            .limit_stats(kind, value)
            .map_err(|e| e.to_string())
    }

    pub fn export_csv(&self) -> String {
        guard_history::csv(&self.inner.generations(None, 100_000))
    }
}

pub fn record(g: &Generation) -> GenerationRecord {
    GenerationRecord {
        id: g.id as i64,
        started_ms: g.started_ms,
        ended_ms: g.ended_ms,
        duration_s: g.duration_s(),
        outcome: g.outcome.as_str().into(),
        closed_by: g.closed_by.map(|c| c.as_str().to_string()),
        images_done: g.images_done,
        images_total: g.images_total,
        last_step: g.last_step,
        steps_total: g.steps_total,
        peak_ram_bytes: g.peaks.ram_bytes,
        peak_swap_bytes: g.peaks.swap_bytes,
        peak_vram_bytes: g.peaks.vram_bytes,
        peak_cpu_percent: g.peaks.cpu_percent,
        limit: g.limit.map(|l| l.as_str().to_string()),
        stop_how: g.stop_how.map(|h| {
            if h == crate::events::StopHow::Graceful {
                "graceful".into()
            } else {
                "killed".into()
            }
        }),
        stop_steps: (!g.stop_steps.is_empty())
            .then(|| serde_json::to_string(&g.stop_steps).unwrap_or_default()),
        fooocus_version: None,
    }
}
