//! Rotating JSON-lines log files: one file a day in the data dir, the last 14 kept.
//! The guard's events go there (see `events::trace`); Fooocus's console does not, because it
//! prints prompts, unless the user opted in (`log_prompts`).

use std::path::Path;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::EnvFilter;

/// Days of logs kept.
pub const RETENTION_FILES: usize = 14;

/// Start logging to `dir`. Keep the returned guard alive for as long as logs should be written.
pub fn init(dir: &Path) -> Result<WorkerGuard, String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create the log folder {}: {e}", dir.display()))?;
    let appender = RollingFileAppender::builder()
        .rotation(Rotation::DAILY)
        .filename_prefix("fooocus-guard")
        .filename_suffix("jsonl")
        .max_log_files(RETENTION_FILES)
        .build(dir)
        .map_err(|e| format!("cannot open a log file in {}: {e}", dir.display()))?;
    let (writer, guard) = tracing_appender::non_blocking(appender);
    let filter =
        EnvFilter::try_from_env("FOOOCUS_GUARD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_current_span(false)
        .try_init()
        .map_err(|e| format!("logging already set up: {e}"))?;
    Ok(guard)
}
