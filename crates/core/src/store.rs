//! The supervisor's side of the history store: generations and breaches as the guard sees
//! them, written to guard-history's SQLite store. Failures to write are reported once and never
//! stop supervision.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

pub use guard_history::{BreachRecord, GenerationRecord, HistoryPoint, LimitStats, SleepRecord};

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
        self.record_event_mapped(ev, |_| None)
    }

    /// `record_event`, with the row each of the supervisor's generation numbers went to.
    fn record_event_mapped(&self, ev: &GuardEvent, row: impl Fn(u64) -> Option<i64>) {
        let row = |id: u64| row(id).unwrap_or(id as i64);
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
                    action: action.as_str().into(),
                    how: None,
                    generation_id: generation_id.map(row),
                }));
            }
            EventKind::GenerationStopped {
                generation_id: Some(id),
                how,
                ..
            } => {
                self.inner.set_breach_how(
                    row(*id),
                    if *how == crate::events::StopHow::Graceful {
                        "graceful"
                    } else {
                        "killed"
                    },
                );
            }
            EventKind::Asleep {
                idle_s,
                held_ram_bytes,
                ram_before_bytes,
                ram_after_bytes,
                vram_before_bytes,
                vram_after_bytes,
            } => {
                self.check(self.inner.insert_sleep(&guard_history::SleepRecord {
                    asleep_ms: epoch_ms(&ev.ts),
                    idle_s: *idle_s,
                    held_ram_bytes: *held_ram_bytes,
                    ram_before_bytes: *ram_before_bytes,
                    ram_after_bytes: *ram_after_bytes,
                    vram_before_bytes: *vram_before_bytes,
                    vram_after_bytes: *vram_after_bytes,
                    ..Default::default()
                }));
            }
            EventKind::Woke { by, ready_s, .. } => {
                self.check(self.inner.set_woke(epoch_ms(&ev.ts), by, *ready_s));
            }
            _ => {}
        }
    }

    /// Save `g`; the row it went to (another number when its own holds another generation).
    pub fn save_generation(&self, g: &Generation) -> Option<i64> {
        let r = self.inner.save_generation(&record(g));
        let id = r.as_ref().ok().copied();
        self.check(r);
        id
    }

    /// The restart step of an escalation ends after the generation was saved: add it.
    pub fn append_stop_step(&self, row: i64, step: &StopStep) {
        if let Some(mut r) = self.inner.generation(row) {
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
        self.inner
            .limit_stats(kind, value)
            .map_err(|e| e.to_string())
    }

    pub fn export_csv(&self) -> String {
        guard_history::csv(&self.inner.generations(None, 100_000))
    }
}

/// What the supervisor hands to the history writer.
enum Record {
    Event(Box<GuardEvent>),
    Generation(Box<Generation>),
    StopStep(u64, StopStep),
}

/// How many records may wait for the disk. A stalled disk or a database held by another
/// process delays records (and past this, drops them, counted), never the supervisor's loop.
pub const WRITER_QUEUE: usize = 256;

/// The history store on a thread of its own, fed through a bounded queue: SQLite waits up to
/// 5 s on a locked database, and the loop that keeps deadlines must never wait on it.
pub struct HistoryWriter {
    tx: crossbeam_channel::Sender<Record>,
    dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
    opened: HistoryReader,
    past_phases: PastPhases,
}

/// What the history held before this start, read once on the writer's thread (the supervisor
/// looks at it without waiting on the disk): the phase times of the last generations that
/// completed, and how long the last wakes took.
#[derive(Clone, Default)]
pub struct PastPhases(std::sync::Arc<std::sync::OnceLock<Past>>);

#[derive(Default)]
struct Past {
    phases: Vec<crate::generation::PhaseTimes>,
    wakes_s: Vec<f64>,
}

impl PastPhases {
    /// Empty until read (or when the history has none).
    pub fn get(&self) -> &[crate::generation::PhaseTimes] {
        self.0.get().map_or(&[], |p| p.phases.as_slice())
    }

    /// Seconds from a wake to Fooocus ready, oldest first (empty until read or when none).
    pub fn wakes_s(&self) -> &[f64] {
        self.0.get().map_or(&[], |p| p.wakes_s.as_slice())
    }
}

/// How many past generations bound the grace of a stop before the first step.
pub const PAST_PHASES: u32 = 8;
/// How many past wakes make the waking page's first estimate.
pub const PAST_WAKES: u32 = 5;

impl Store {
    /// The phase times of the last `n` completed generations that have them.
    pub fn recent_phases(&self, n: u32) -> Vec<crate::generation::PhaseTimes> {
        self.inner
            .generations(Some("completed"), n.saturating_mul(4))
            .into_iter()
            .filter_map(|r| {
                Some(crate::generation::PhaseTimes {
                    model_load_s: r.model_load_s?,
                    preparation_s: r.preparation_s?,
                    sampling_s: r.sampling_s?,
                    decode_s: r.decode_s?,
                    saving_s: r.saving_s?,
                })
            })
            .take(n as usize)
            .collect()
    }

    /// How long the last `n` wakes took until Fooocus was ready, oldest first.
    pub fn recent_wakes(&self, n: u32) -> Vec<f64> {
        self.inner
            .sleeps(0, n)
            .into_iter()
            .filter_map(|s| s.wake_s)
            .filter(|s| s.is_finite() && *s > 0.0)
            .collect()
    }
}

/// The read side of the history (the UI's lists and statistics): the very store the writer
/// opened, once it has, so that one place opens the database.
#[derive(Clone, Default)]
pub struct HistoryReader(std::sync::Arc<std::sync::OnceLock<std::sync::Arc<Store>>>);

impl HistoryReader {
    /// None until the writer has opened the database (or when it cannot).
    pub fn get(&self) -> Option<std::sync::Arc<Store>> {
        self.0.get().cloned()
    }
}

impl HistoryWriter {
    /// Open the store on the writer's thread. The first generation number is answered within
    /// `wait` when the database can be read by then (1 otherwise: the store renumbers a
    /// generation whose number is taken, so nothing is overwritten).
    pub fn spawn(path: std::path::PathBuf, wait: std::time::Duration) -> (HistoryWriter, u64) {
        let (tx, rx) = crossbeam_channel::bounded::<Record>(WRITER_QUEUE);
        let (id_tx, id_rx) = crossbeam_channel::bounded(1);
        let opened = HistoryReader::default();
        let shared = opened.clone();
        let past_phases = PastPhases::default();
        let past = past_phases.clone();
        let _ = std::thread::Builder::new()
            .name("history-writer".into())
            .spawn(move || {
                let store = match Store::open(&path) {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("fooocus-guard: history is not kept: {e}");
                        let _ = id_tx.send(1);
                        // Drain, so senders never see a full queue for a store that is gone.
                        for _ in rx {}
                        return;
                    }
                };
                let first = store.next_generation_id();
                let store = std::sync::Arc::new(store);
                // Readable from the moment the first number is answered.
                let _ = shared.0.set(store.clone());
                // Before the first number is answered: a supervisor that got it sees them.
                let _ = past.0.set(Past {
                    phases: store.recent_phases(PAST_PHASES),
                    wakes_s: store.recent_wakes(PAST_WAKES),
                });
                let _ = id_tx.send(first);
                // The supervisor's generation number -> the row it went to (bounded).
                let mut rows: std::collections::VecDeque<(u64, i64)> = Default::default();
                for r in rx {
                    match r {
                        Record::Event(ev) => store.record_event_mapped(&ev, |id| {
                            rows.iter().rev().find(|(g, _)| *g == id).map(|(_, r)| *r)
                        }),
                        Record::Generation(g) => {
                            if let Some(row) = store.save_generation(&g) {
                                rows.retain(|(id, _)| *id != g.id);
                                rows.push_back((g.id, row));
                                if rows.len() > 64 {
                                    rows.pop_front();
                                }
                            }
                        }
                        Record::StopStep(id, step) => {
                            let row = rows
                                .iter()
                                .rev()
                                .find(|(g, _)| *g == id)
                                .map_or(id as i64, |(_, r)| *r);
                            store.append_stop_step(row, &step);
                        }
                    }
                }
            });
        let first = id_rx.recv_timeout(wait).unwrap_or(1);
        (
            HistoryWriter {
                tx,
                dropped: Default::default(),
                opened,
                past_phases,
            },
            first,
        )
    }

    fn send(&self, r: Record) -> bool {
        let ok = self.tx.try_send(r).is_ok();
        if !ok {
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        ok
    }

    /// False when the queue was full and the record was dropped (counted).
    pub fn record_event(&self, ev: &GuardEvent) -> bool {
        match ev.kind {
            EventKind::LimitBreached { .. }
            | EventKind::GenerationStopped { .. }
            | EventKind::Asleep { .. }
            | EventKind::Woke { .. } => self.send(Record::Event(Box::new(ev.clone()))),
            _ => true,
        }
    }

    pub fn save_generation(&self, g: &Generation) -> bool {
        self.send(Record::Generation(Box::new(g.clone())))
    }

    pub fn append_stop_step(&self, id: u64, step: &StopStep) -> bool {
        self.send(Record::StopStep(id, step.clone()))
    }

    pub fn past_phases(&self) -> PastPhases {
        self.past_phases.clone()
    }

    pub fn reader(&self) -> HistoryReader {
        self.opened.clone()
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
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
        model_load_s: Some(g.phases.model_load_s),
        preparation_s: Some(g.phases.preparation_s),
        sampling_s: Some(g.phases.sampling_s),
        decode_s: Some(g.phases.decode_s),
        saving_s: Some(g.phases.saving_s),
        step_s: g.step_s,
        longest_gap_s: Some(g.longest_gap_s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reader_uses_the_store_the_writer_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.sqlite3");
        let seed = Store::open(&path).unwrap();
        seed.inner
            .save_generation(&GenerationRecord {
                id: 5,
                // Recent: older records are pruned when the store opens.
                started_ms: epoch_ms(
                    &humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
                ),
                outcome: "completed".into(),
                ..Default::default()
            })
            .unwrap();
        drop(seed);
        let (w, first) = HistoryWriter::spawn(path, std::time::Duration::from_secs(30));
        assert_eq!(first, 6);
        let r = w
            .reader()
            .get()
            .expect("readable once the first number is answered");
        assert_eq!(r.generations(None, 10)[0].id, 5);
    }

    /// Issue 25: each sleep and its wake are kept (how long asleep, memory given back, wake time).
    #[test]
    fn sleeps_and_wakes_reach_the_history() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("history.sqlite3")).unwrap();
        let at = |ts: &str, kind| GuardEvent {
            ts: ts.into(),
            kind,
        };
        store.record_event(&at(
            "2026-12-07T06:00:00.000Z",
            EventKind::Asleep {
                idle_s: 1200.0,
                held_ram_bytes: Some(9 << 30),
                ram_before_bytes: Some(20 << 30),
                ram_after_bytes: Some(11 << 30),
                vram_before_bytes: None,
                vram_after_bytes: None,
            },
        ));
        store.record_event(&at(
            "2026-12-07T07:00:00.000Z",
            EventKind::Woke {
                asleep_s: 3600.0,
                by: "visit".into(),
                ready_s: 24.5,
            },
        ));
        let s = store.inner.sleeps(0, 10);
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!(s[0].held_ram_bytes, Some(9 << 30));
        assert_eq!(s[0].woke_by.as_deref(), Some("visit"));
        assert_eq!(s[0].wake_s, Some(24.5));
        assert_eq!(s[0].woke_ms.unwrap() - s[0].asleep_ms, 3_600_000);
    }

    /// The grace of a stop before the first step is bounded by past generations' phases: the
    /// writer reads them once, and only generations that recorded them count.
    #[test]
    fn past_phases_are_read_from_the_history_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.sqlite3");
        let seed = Store::open(&path).unwrap();
        let now =
            epoch_ms(&humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string());
        for (id, prep) in [(1, Some(40.0)), (2, None), (3, Some(90.0))] {
            seed.inner
                .save_generation(&GenerationRecord {
                    id,
                    started_ms: now + id,
                    outcome: "completed".into(),
                    model_load_s: prep.map(|_| 0.0),
                    preparation_s: prep,
                    sampling_s: prep.map(|_| 30.0),
                    decode_s: prep.map(|_| 10.0),
                    saving_s: prep.map(|_| 0.5),
                    ..Default::default()
                })
                .unwrap();
        }
        // Two wakes and a sleep not woken: the waking page's first estimate.
        for (i, wake_s) in [(0, Some(20.0)), (1, Some(30.0)), (2, None)] {
            seed.inner
                .insert_sleep(&SleepRecord {
                    asleep_ms: now + i * 1000,
                    ..Default::default()
                })
                .unwrap();
            if let Some(w) = wake_s {
                seed.inner
                    .set_woke(now + i * 1000 + 500, "visit", w)
                    .unwrap();
            }
        }
        drop(seed);
        let (w, _) = HistoryWriter::spawn(path, std::time::Duration::from_secs(30));
        // Read before the first number was answered.
        let past = w.past_phases();
        let prep: Vec<f64> = past.get().iter().map(|p| p.preparation_s).collect();
        assert_eq!(prep, [90.0, 40.0]);
        assert_eq!(past.wakes_s(), [20.0, 30.0]);
    }
}
