//! The durable store (SQLite, WAL): generations and limit breaches. No prompt is ever stored:
//! there is no column for one.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::stats::{stats, LimitStats};

/// 1: the first schema. 2: each generation's phases (seconds), mean step time and longest gap
/// without progress (NULL in rows written before).
const SCHEMA_VERSION: i64 = 2;

/// One generation (docs/ipc.md `GenerationRecord`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct GenerationRecord {
    pub id: i64,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    pub duration_s: Option<f64>,
    pub outcome: String,
    pub closed_by: Option<String>,
    pub images_done: u32,
    pub images_total: Option<u32>,
    pub last_step: Option<u32>,
    pub steps_total: Option<u32>,
    pub peak_ram_bytes: Option<u64>,
    pub peak_swap_bytes: Option<u64>,
    pub peak_vram_bytes: Option<u64>,
    pub peak_cpu_percent: Option<f64>,
    pub limit: Option<String>,
    pub stop_how: Option<String>,
    /// JSON array of the escalation's steps with their timings.
    pub stop_steps: Option<String>,
    pub fooocus_version: Option<String>,
    /// Seconds in each phase of Fooocus's work (None: recorded before schema 2).
    #[serde(default)]
    pub model_load_s: Option<f64>,
    #[serde(default)]
    pub preparation_s: Option<f64>,
    #[serde(default)]
    pub sampling_s: Option<f64>,
    #[serde(default)]
    pub decode_s: Option<f64>,
    #[serde(default)]
    pub saving_s: Option<f64>,
    /// Mean seconds per sampling step.
    #[serde(default)]
    pub step_s: Option<f64>,
    /// The longest time without progress (what the stall limit measures).
    #[serde(default)]
    pub longest_gap_s: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct BreachRecord {
    pub id: i64,
    pub ts_ms: i64,
    pub limit: String,
    pub configured: f64,
    pub observed: f64,
    pub action: String,
    pub how: Option<String>,
    pub generation_id: Option<i64>,
}

/// One sleep of Fooocus (issue 25): when it fell asleep and what that gave back (the sampler's
/// figures: the machine's RAM and the GPUs' VRAM in use before and after, the tree's own RAM),
/// and when and how it woke (None while it sleeps).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SleepRecord {
    pub id: i64,
    pub asleep_ms: i64,
    pub idle_s: f64,
    pub held_ram_bytes: Option<u64>,
    pub ram_before_bytes: Option<u64>,
    pub ram_after_bytes: Option<u64>,
    pub vram_before_bytes: Option<u64>,
    pub vram_after_bytes: Option<u64>,
    pub woke_ms: Option<i64>,
    /// "visit" | "user"
    pub woke_by: Option<String>,
    /// Seconds from the wake to Fooocus being ready.
    pub wake_s: Option<f64>,
}

pub struct Store {
    conn: Mutex<Connection>,
}

#[derive(Debug)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for StoreError {}

fn err(e: rusqlite::Error) -> StoreError {
    StoreError(e.to_string())
}

/// Kept: 90 days, and at most this many generations.
pub const KEEP_DAYS: i64 = 90;
pub const KEEP_GENERATIONS: i64 = 100_000;

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)
                .map_err(|e| StoreError(format!("cannot create {}: {e}", d.display())))?;
        }
        let conn = Connection::open(path)
            .map_err(|e| StoreError(format!("cannot open {}: {e}", path.display())))?;
        Self::init(conn)
    }

    pub fn open_in_memory() -> Result<Store, StoreError> {
        Self::init(Connection::open_in_memory().map_err(err)?)
    }

    fn init(conn: Connection) -> Result<Store, StoreError> {
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(err)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError(format!(
                "the history was written by a newer Fooocus Guard (schema {version}); update the app or move the file away"
            )));
        }
        if version < 1 {
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS generations (
                    id INTEGER PRIMARY KEY, started_ms INTEGER NOT NULL, ended_ms INTEGER, outcome TEXT NOT NULL,
                    closed_by TEXT, images_done INTEGER NOT NULL, images_total INTEGER, last_step INTEGER,
                    steps_total INTEGER, peak_ram_bytes INTEGER, peak_swap_bytes INTEGER, peak_vram_bytes INTEGER,
                    peak_cpu_percent REAL, limit_kind TEXT, stop_how TEXT, stop_steps TEXT, fooocus_version TEXT);
                 CREATE INDEX IF NOT EXISTS generations_started ON generations(started_ms);
                 CREATE TABLE IF NOT EXISTS breaches (
                    id INTEGER PRIMARY KEY AUTOINCREMENT, ts_ms INTEGER NOT NULL, limit_kind TEXT NOT NULL,
                    configured REAL NOT NULL, observed REAL NOT NULL, action TEXT NOT NULL, how TEXT, generation_id INTEGER);
                 CREATE INDEX IF NOT EXISTS breaches_ts ON breaches(ts_ms);
                 PRAGMA user_version = 1;",
            )
            .map_err(err)?;
        }
        // A table of its own, created where missing whatever the schema version: an older
        // guard opening the file ignores it.
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS sleeps (
                id INTEGER PRIMARY KEY AUTOINCREMENT, asleep_ms INTEGER NOT NULL, idle_s REAL NOT NULL,
                held_ram_bytes INTEGER, ram_before_bytes INTEGER, ram_after_bytes INTEGER,
                vram_before_bytes INTEGER, vram_after_bytes INTEGER,
                woke_ms INTEGER, woke_by TEXT, wake_s REAL);
             CREATE INDEX IF NOT EXISTS sleeps_asleep ON sleeps(asleep_ms);",
        )
        .map_err(err)?;
        if version < 2 {
            // Added columns: rows of schema 1 read them as NULL (unknown), never as 0. Another
            // guard opening the same file may migrate first: the version is read again under
            // the write lock.
            let mut conn = conn;
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(err)?;
            let now: i64 = tx
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .map_err(err)?;
            if now < 2 {
                tx.execute_batch(
                    "ALTER TABLE generations ADD COLUMN model_load_s REAL;
                     ALTER TABLE generations ADD COLUMN preparation_s REAL;
                     ALTER TABLE generations ADD COLUMN sampling_s REAL;
                     ALTER TABLE generations ADD COLUMN decode_s REAL;
                     ALTER TABLE generations ADD COLUMN saving_s REAL;
                     ALTER TABLE generations ADD COLUMN step_s REAL;
                     ALTER TABLE generations ADD COLUMN longest_gap_s REAL;
                     PRAGMA user_version = 2;",
                )
                .map_err(err)?;
            }
            tx.commit().map_err(err)?;
            return Ok(Store {
                conn: Mutex::new(conn),
            });
        }
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    /// Record that Fooocus fell asleep; its row.
    pub fn insert_sleep(&self, s: &SleepRecord) -> Result<i64, StoreError> {
        let c = self.conn.lock().unwrap();
        let n = |v: Option<u64>| v.map(|v| v.min(i64::MAX as u64) as i64);
        c.execute(
            "INSERT INTO sleeps (asleep_ms, idle_s, held_ram_bytes, ram_before_bytes, ram_after_bytes, vram_before_bytes, vram_after_bytes) VALUES (?1,?2,?3,?4,?5,?6,?7)",
            params![s.asleep_ms, s.idle_s, n(s.held_ram_bytes), n(s.ram_before_bytes), n(s.ram_after_bytes), n(s.vram_before_bytes), n(s.vram_after_bytes)],
        )
        .map_err(err)?;
        Ok(c.last_insert_rowid())
    }

    /// Close the latest open sleep: woken at `woke_ms` by `by`, ready `wake_s` later.
    pub fn set_woke(&self, woke_ms: i64, by: &str, wake_s: f64) -> Result<(), StoreError> {
        let c = self.conn.lock().unwrap();
        c.execute(
            "UPDATE sleeps SET woke_ms = ?1, woke_by = ?2, wake_s = ?3 WHERE id = (SELECT MAX(id) FROM sleeps WHERE woke_ms IS NULL)",
            params![woke_ms, by, wake_s],
        )
        .map_err(err)?;
        Ok(())
    }

    /// Sleeps that overlap the time from `since_ms` on, oldest first (at most `limit`).
    pub fn sleeps(&self, since_ms: i64, limit: u32) -> Vec<SleepRecord> {
        let c = self.conn.lock().unwrap();
        c.prepare("SELECT id, asleep_ms, idle_s, held_ram_bytes, ram_before_bytes, ram_after_bytes, vram_before_bytes, vram_after_bytes, woke_ms, woke_by, wake_s FROM sleeps WHERE woke_ms IS NULL OR woke_ms >= ?1 ORDER BY asleep_ms DESC, id DESC LIMIT ?2")
            .and_then(|mut s| {
                let u = |v: Option<i64>| v.map(|v| v.max(0) as u64);
                s.query_map(params![since_ms, limit.clamp(1, 10_000) as i64], |r| {
                    Ok(SleepRecord {
                        id: r.get(0)?,
                        asleep_ms: r.get(1)?,
                        idle_s: r.get(2)?,
                        held_ram_bytes: u(r.get(3)?),
                        ram_before_bytes: u(r.get(4)?),
                        ram_after_bytes: u(r.get(5)?),
                        vram_before_bytes: u(r.get(6)?),
                        vram_after_bytes: u(r.get(7)?),
                        woke_ms: r.get(8)?,
                        woke_by: r.get(9)?,
                        wake_s: r.get(10)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()
            })
            .map(|mut v| {
                v.reverse();
                v
            })
            .unwrap_or_default()
    }

    pub fn next_generation_id(&self) -> i64 {
        let c = self.conn.lock().unwrap();
        c.query_row(
            "SELECT COALESCE(MAX(id), 0) + 1 FROM generations",
            [],
            |r| r.get(0),
        )
        .unwrap_or(1)
    }

    /// Save a generation under the supervisor's number, and answer the row it went to. A row of
    /// that number that holds another generation (another guard on the same data folder, or
    /// numbers restarted while the database was locked) is never overwritten: the generation
    /// then gets the next free number. The same generation (same start) is updated in place.
    pub fn save_generation(&self, g: &GenerationRecord) -> Result<i64, StoreError> {
        let mut c = self.conn.lock().unwrap();
        let tx = c.transaction().map_err(err)?;
        let existing: Option<i64> = tx
            .query_row(
                "SELECT started_ms FROM generations WHERE id = ?1",
                [g.id],
                |r| r.get(0),
            )
            .optional()
            .map_err(err)?;
        let id = match existing {
            Some(started) if started != g.started_ms => tx
                .query_row("SELECT MAX(id) + 1 FROM generations", [], |r| r.get(0))
                .map_err(err)?,
            _ => g.id,
        };
        tx.execute(
            "INSERT OR REPLACE INTO generations (id, started_ms, ended_ms, outcome, closed_by, images_done, images_total,
             last_step, steps_total, peak_ram_bytes, peak_swap_bytes, peak_vram_bytes, peak_cpu_percent, limit_kind,
             stop_how, stop_steps, fooocus_version, model_load_s, preparation_s, sampling_s, decode_s, saving_s, step_s,
             longest_gap_s) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?22,?23,?24)",
            params![
                id,
                g.started_ms,
                g.ended_ms,
                g.outcome,
                g.closed_by,
                g.images_done,
                g.images_total,
                g.last_step,
                g.steps_total,
                g.peak_ram_bytes.map(|v| v as i64),
                g.peak_swap_bytes.map(|v| v as i64),
                g.peak_vram_bytes.map(|v| v as i64),
                g.peak_cpu_percent,
                g.limit,
                g.stop_how,
                g.stop_steps,
                g.fooocus_version,
                g.model_load_s,
                g.preparation_s,
                g.sampling_s,
                g.decode_s,
                g.saving_s,
                g.step_s,
                g.longest_gap_s
            ],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(id)
    }

    pub fn generation(&self, id: i64) -> Option<GenerationRecord> {
        let c = self.conn.lock().unwrap();
        c.query_row(&format!("{SELECT_GEN} WHERE id = ?1"), [id], row_gen)
            .optional()
            .ok()
            .flatten()
    }

    /// Newest first, optionally only one outcome.
    pub fn generations(&self, outcome: Option<&str>, limit: u32) -> Vec<GenerationRecord> {
        let c = self.conn.lock().unwrap();
        let limit = limit.clamp(1, 100_000) as i64;
        let res = match outcome {
            Some(o) => c
                .prepare(&format!(
                    "{SELECT_GEN} WHERE outcome = ?1 ORDER BY started_ms DESC, id DESC LIMIT ?2"
                ))
                .and_then(|mut s| {
                    s.query_map(params![o, limit], row_gen)?
                        .collect::<Result<Vec<_>, _>>()
                }),
            None => c
                .prepare(&format!(
                    "{SELECT_GEN} ORDER BY started_ms DESC, id DESC LIMIT ?1"
                ))
                .and_then(|mut s| {
                    s.query_map(params![limit], row_gen)?
                        .collect::<Result<Vec<_>, _>>()
                }),
        };
        res.unwrap_or_default()
    }

    pub fn insert_breach(&self, b: &BreachRecord) -> Result<i64, StoreError> {
        let c = self.conn.lock().unwrap();
        c.execute(
            "INSERT INTO breaches (ts_ms, limit_kind, configured, observed, action, how, generation_id) VALUES (?1,?2,?3,?4,?5,?6,?7)",
            params![b.ts_ms, b.limit, b.configured, b.observed, b.action, b.how, b.generation_id],
        )
        .map_err(err)?;
        Ok(c.last_insert_rowid())
    }

    /// Record how a breach ended (graceful / killed) on the latest breach of a generation.
    pub fn set_breach_how(&self, generation_id: i64, how: &str) {
        let c = self.conn.lock().unwrap();
        let _ = c.execute(
            "UPDATE breaches SET how = ?1 WHERE id = (SELECT MAX(id) FROM breaches WHERE generation_id = ?2)",
            params![how, generation_id],
        );
    }

    pub fn breaches(&self, limit: u32) -> Vec<BreachRecord> {
        let c = self.conn.lock().unwrap();
        c.prepare("SELECT id, ts_ms, limit_kind, configured, observed, action, how, generation_id FROM breaches ORDER BY ts_ms DESC, id DESC LIMIT ?1")
            .and_then(|mut s| {
                s.query_map([limit.clamp(1, 100_000) as i64], |r| {
                    Ok(BreachRecord {
                        id: r.get(0)?,
                        ts_ms: r.get(1)?,
                        limit: r.get(2)?,
                        configured: r.get(3)?,
                        observed: r.get(4)?,
                        action: r.get(5)?,
                        how: r.get(6)?,
                        generation_id: r.get(7)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()
            })
            .unwrap_or_default()
    }

    /// What completed generations used, for one limit, in the quantity that limit measures:
    /// the time the timeout counts (the duration less a model load), the longest gap without
    /// progress (stall; generations recorded before it was kept have none and are left out),
    /// peak bytes (memory, vram, swap), peak percent (cpu).
    pub fn limit_stats(&self, kind: &str, proposed: Option<f64>) -> Result<LimitStats, StoreError> {
        let column = match kind {
            "timeout" => "(ended_ms - started_ms) / 1000.0 - COALESCE(model_load_s, 0)",
            "stall" => "longest_gap_s",
            "memory" => "peak_ram_bytes",
            "vram" => "peak_vram_bytes",
            "swap" => "peak_swap_bytes",
            "cpu" => "peak_cpu_percent",
            other => {
                return Err(StoreError(format!(
                    "'{other}' has no statistics: use timeout, stall, memory, vram, swap or cpu"
                )))
            }
        };
        let c = self.conn.lock().unwrap();
        let values: Vec<f64> = c
            .prepare(&format!(
                "SELECT CAST({column} AS REAL) FROM generations WHERE outcome = 'completed' AND {column} IS NOT NULL ORDER BY started_ms DESC LIMIT 5000"
            ))
            .and_then(|mut s| s.query_map([], |r| r.get::<_, f64>(0))?.collect::<Result<Vec<_>, _>>())
            .map_err(err)?;
        Ok(stats(kind, values, proposed))
    }

    pub fn counts_by_outcome(&self) -> Vec<(String, u64)> {
        self.counts("SELECT outcome, COUNT(*) FROM generations GROUP BY outcome")
    }

    pub fn counts_by_limit(&self) -> Vec<(String, u64)> {
        self.counts("SELECT limit_kind, COUNT(*) FROM breaches GROUP BY limit_kind")
    }

    fn counts(&self, sql: &str) -> Vec<(String, u64)> {
        let c = self.conn.lock().unwrap();
        c.prepare(sql)
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .unwrap_or_default()
    }

    /// Drop what is older than `KEEP_DAYS` or beyond `KEEP_GENERATIONS`.
    pub fn prune(&self, now_ms: i64) {
        let c = self.conn.lock().unwrap();
        let cutoff = now_ms - KEEP_DAYS * 86_400_000;
        let _ = c.execute("DELETE FROM generations WHERE started_ms < ?1", [cutoff]);
        let _ = c.execute("DELETE FROM breaches WHERE ts_ms < ?1", [cutoff]);
        let _ = c.execute("DELETE FROM sleeps WHERE asleep_ms < ?1", [cutoff]);
        let _ = c.execute(
            "DELETE FROM generations WHERE id NOT IN (SELECT id FROM generations ORDER BY started_ms DESC LIMIT ?1)",
            [KEEP_GENERATIONS],
        );
    }
}

const SELECT_GEN: &str = "SELECT id, started_ms, ended_ms, outcome, closed_by, images_done, images_total, last_step, steps_total,
    peak_ram_bytes, peak_swap_bytes, peak_vram_bytes, peak_cpu_percent, limit_kind, stop_how, stop_steps, fooocus_version,
    model_load_s, preparation_s, sampling_s, decode_s, saving_s, step_s, longest_gap_s FROM generations";

fn row_gen(r: &rusqlite::Row<'_>) -> rusqlite::Result<GenerationRecord> {
    let started: i64 = r.get(1)?;
    let ended: Option<i64> = r.get(2)?;
    Ok(GenerationRecord {
        id: r.get(0)?,
        started_ms: started,
        ended_ms: ended,
        duration_s: ended.map(|e| (e - started) as f64 / 1000.0),
        outcome: r.get(3)?,
        closed_by: r.get(4)?,
        images_done: r.get(5)?,
        images_total: r.get(6)?,
        last_step: r.get(7)?,
        steps_total: r.get(8)?,
        peak_ram_bytes: r.get::<_, Option<i64>>(9)?.map(|v| v as u64),
        peak_swap_bytes: r.get::<_, Option<i64>>(10)?.map(|v| v as u64),
        peak_vram_bytes: r.get::<_, Option<i64>>(11)?.map(|v| v as u64),
        peak_cpu_percent: r.get(12)?,
        limit: r.get(13)?,
        stop_how: r.get(14)?,
        stop_steps: r.get(15)?,
        fooocus_version: r.get(16)?,
        model_load_s: r.get(17)?,
        preparation_s: r.get(18)?,
        sampling_s: r.get(19)?,
        decode_s: r.get(20)?,
        saving_s: r.get(21)?,
        step_s: r.get(22)?,
        longest_gap_s: r.get(23)?,
    })
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// CSV (RFC 4180) of generations, with a header row.
pub fn csv(gens: &[GenerationRecord]) -> String {
    let mut out = String::from(
        "id,started_ms,ended_ms,duration_s,outcome,closed_by,images_done,images_total,peak_ram_bytes,peak_vram_bytes,peak_cpu_percent,limit,stop_how\r\n",
    );
    let o = |v: Option<String>| v.unwrap_or_default();
    for g in gens {
        let row = [
            g.id.to_string(),
            g.started_ms.to_string(),
            o(g.ended_ms.map(|v| v.to_string())),
            o(g.duration_s.map(|v| format!("{v:.3}"))),
            g.outcome.clone(),
            o(g.closed_by.clone()),
            g.images_done.to_string(),
            o(g.images_total.map(|v| v.to_string())),
            o(g.peak_ram_bytes.map(|v| v.to_string())),
            o(g.peak_vram_bytes.map(|v| v.to_string())),
            o(g.peak_cpu_percent.map(|v| format!("{v:.1}"))),
            o(g.limit.clone()),
            o(g.stop_how.clone()),
        ];
        out.push_str(
            &row.iter()
                .map(|f| csv_field(f))
                .collect::<Vec<_>>()
                .join(","),
        );
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sleep_is_recorded_then_closed_by_its_wake_and_found_by_time() {
        let st = Store::open_in_memory().unwrap();
        let gib = 1u64 << 30;
        st.insert_sleep(&SleepRecord {
            asleep_ms: 1_000,
            idle_s: 1200.0,
            held_ram_bytes: Some(9 * gib),
            ram_before_bytes: Some(20 * gib),
            ram_after_bytes: Some(11 * gib),
            ..Default::default()
        })
        .unwrap();
        st.set_woke(61_000, "visit", 24.5).unwrap();
        st.insert_sleep(&SleepRecord {
            asleep_ms: 100_000,
            idle_s: 0.0,
            ..Default::default()
        })
        .unwrap();
        let all = st.sleeps(0, 10);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].asleep_ms, 1_000, "oldest first");
        assert_eq!(all[0].woke_ms, Some(61_000));
        assert_eq!(all[0].woke_by.as_deref(), Some("visit"));
        assert_eq!(all[0].wake_s, Some(24.5));
        assert_eq!(all[0].ram_before_bytes, Some(20 * gib));
        assert_eq!(all[1].woke_ms, None, "still asleep");
        // A sleep that ended before the range is left out; one still going is not.
        let recent = st.sleeps(70_000, 10);
        assert_eq!(recent.len(), 1);
        assert_eq!(recent[0].asleep_ms, 100_000);
        // Its wake closes the open one only.
        st.set_woke(130_000, "user", 3.0).unwrap();
        let all = st.sleeps(0, 10);
        assert_eq!(all[0].woke_ms, Some(61_000));
        assert_eq!(all[1].woke_by.as_deref(), Some("user"));
    }

    fn gen(id: i64, secs: i64, outcome: &str, ram: u64) -> GenerationRecord {
        GenerationRecord {
            id,
            started_ms: id * 1_000_000,
            ended_ms: Some(id * 1_000_000 + secs * 1000),
            outcome: outcome.into(),
            images_done: 1,
            peak_ram_bytes: Some(ram),
            ..Default::default()
        }
    }

    #[test]
    fn round_trip_through_a_real_file_and_reopen() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("h.sqlite3");
        {
            let s = Store::open(&p).unwrap();
            s.save_generation(&gen(1, 30, "completed", 100)).unwrap();
            s.save_generation(&gen(2, 400, "timed_out", 200)).unwrap();
            let mut g = gen(3, 60, "completed", 300);
            g.limit = Some("a, \"quoted\" value".into());
            s.save_generation(&g).unwrap();
            s.insert_breach(&BreachRecord {
                ts_ms: 5,
                limit: "timeout".into(),
                configured: 300.0,
                observed: 300.1,
                action: "kill_and_restart".into(),
                generation_id: Some(2),
                ..Default::default()
            })
            .unwrap();
            s.set_breach_how(2, "killed");
        }
        let s = Store::open(&p).unwrap();
        assert_eq!(s.next_generation_id(), 4);
        let all = s.generations(None, 10);
        assert_eq!(all.iter().map(|g| g.id).collect::<Vec<_>>(), [3, 2, 1]);
        assert_eq!(all[1].duration_s, Some(400.0));
        assert_eq!(s.generations(Some("timed_out"), 10).len(), 1);
        let b = s.breaches(10);
        assert_eq!(b[0].how.as_deref(), Some("killed"));
        let st = s.limit_stats("timeout", Some(45.0)).unwrap();
        assert_eq!(st.values.len(), 2, "only completed generations");
        assert_eq!(st.would_stop, 1);
        assert!(s.limit_stats("prompt", None).is_err());
        let text = csv(&all);
        assert!(text.starts_with("id,started_ms"));
        assert!(text.contains("\"a, \"\"quoted\"\" value\""), "{text}");
        assert_eq!(s.counts_by_limit(), vec![("timeout".to_string(), 1)]);
    }

    /// Two guards on one data folder, or numbers restarted from 1: nothing is overwritten.
    #[test]
    fn a_generation_of_another_start_never_overwrites() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("h.sqlite3");
        let a = Store::open(&p).unwrap();
        let b = Store::open(&p).unwrap();
        assert_eq!(a.save_generation(&gen(1, 30, "completed", 100)).unwrap(), 1);
        let mut other = gen(1, 40, "timed_out", 200);
        other.started_ms += 5;
        assert_eq!(b.save_generation(&other).unwrap(), 2);
        // The same generation again (its end recorded later) is updated in place.
        let mut again = gen(1, 31, "stopped", 100);
        again.started_ms = 1_000_000;
        assert_eq!(a.save_generation(&again).unwrap(), 1);
        let all = a.generations(None, 10);
        assert_eq!(all.len(), 2);
        assert_eq!(all.iter().find(|g| g.id == 1).unwrap().outcome, "stopped");
        assert_eq!(all.iter().find(|g| g.id == 2).unwrap().outcome, "timed_out");
    }

    /// A database of schema 1 (written before phases were kept) opens, keeps its rows, reads
    /// the new columns as unknown, takes new rows with them, and the stall statistics use only
    /// the longest gaps (not durations).
    #[test]
    fn a_schema_1_history_is_migrated_and_stays_readable() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("h.sqlite3");
        {
            let c = Connection::open(&p).unwrap();
            c.execute_batch(
                "CREATE TABLE generations (
                    id INTEGER PRIMARY KEY, started_ms INTEGER NOT NULL, ended_ms INTEGER, outcome TEXT NOT NULL,
                    closed_by TEXT, images_done INTEGER NOT NULL, images_total INTEGER, last_step INTEGER,
                    steps_total INTEGER, peak_ram_bytes INTEGER, peak_swap_bytes INTEGER, peak_vram_bytes INTEGER,
                    peak_cpu_percent REAL, limit_kind TEXT, stop_how TEXT, stop_steps TEXT, fooocus_version TEXT);
                 CREATE TABLE breaches (
                    id INTEGER PRIMARY KEY AUTOINCREMENT, ts_ms INTEGER NOT NULL, limit_kind TEXT NOT NULL,
                    configured REAL NOT NULL, observed REAL NOT NULL, action TEXT NOT NULL, how TEXT, generation_id INTEGER);
                 INSERT INTO generations (id, started_ms, ended_ms, outcome, images_done)
                    VALUES (1, 1000000, 1300000, 'completed', 1);
                 PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let s = Store::open(&p).unwrap();
        let old = s.generation(1).unwrap();
        assert_eq!(old.duration_s, Some(300.0));
        assert_eq!((old.longest_gap_s, old.preparation_s), (None, None));
        let mut g = gen(2, 200, "completed", 1);
        g.model_load_s = Some(50.0);
        g.preparation_s = Some(100.0);
        g.step_s = Some(4.0);
        g.longest_gap_s = Some(100.0);
        s.save_generation(&g).unwrap();
        assert_eq!(
            s.generation(2).unwrap(),
            GenerationRecord {
                duration_s: Some(200.0),
                ..g
            }
        );
        // The stall limit's quantity: the longest gap, only where it is known.
        let st = s.limit_stats("stall", Some(90.0)).unwrap();
        assert_eq!((st.values.clone(), st.would_stop), (vec![100.0], 1));
        // The timeout's: the duration less the model load.
        let mut t = s.limit_stats("timeout", None).unwrap().values;
        t.sort_by(f64::total_cmp);
        assert_eq!(t, [150.0, 300.0]);
        drop(s);
        let c = Connection::open(&p).unwrap();
        let v: i64 = c
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
    }

    #[test]
    fn prune_drops_old_rows() {
        let s = Store::open_in_memory().unwrap();
        s.save_generation(&gen(1, 1, "completed", 1)).unwrap();
        s.prune(1_000_000 + (KEEP_DAYS + 1) * 86_400_000);
        assert!(s.generations(None, 10).is_empty());
    }
}
