//! What the guard remembers: a bounded in-memory history of samples for the graphs
//! ([`SampleHistory`]), and a durable SQLite store of generations and limit breaches
//! ([`Store`]) that the history view and the limit tuning query.

mod ring;
mod stats;
mod store;

pub use ring::{HistoryPoint, Point, SampleHistory, BUCKET_MS, FULL_RES_POINTS};
pub use stats::{percentile, suggest, LimitStats};
pub use store::{csv, BreachRecord, GenerationRecord, SleepRecord, Store, StoreError};
