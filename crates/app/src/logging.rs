//! Rotating JSON-lines log files in the data dir, capped in size as well as in days: a new file
//! each day and whenever the current one reaches `MAX_FILE_BYTES`; the oldest files go first
//! so that the folder never holds more than `MAX_TOTAL_BYTES`, and none older than
//! `RETENTION_DAYS`. The guard's events go there (see `events::trace`); Fooocus's console does
//! not, because it prints prompts, unless the user opted in (`log_prompts`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

/// Days of logs kept.
pub const RETENTION_DAYS: u64 = 14;
/// One log file grows to this, then the next one starts.
pub const MAX_FILE_BYTES: u64 = 10 << 20;
/// All log files together.
pub const MAX_TOTAL_BYTES: u64 = 100 << 20;

/// Log lines waiting for the writer thread; past this they are dropped (counted by the
/// appender), never waited for: the supervisor's loop does not block on the disk.
/// tracing-appender's default, 128,000, fills a 4 MiB queue when it is created (each slot is
/// initialised), which was a quarter of the tray app's memory and, copied into the warden by its
/// fork, again in the warden (tests/app/footprint.sh). The guard logs a few events a minute.
pub const LOG_BACKLOG_LINES: usize = 4096;

const PREFIX: &str = "fooocus-guard.";
const SUFFIX: &str = ".jsonl";

/// Start logging to `dir`. Keep the returned guard alive for as long as logs should be written.
pub fn init(dir: &Path) -> Result<WorkerGuard, String> {
    let log = CappedLog::open(dir, Caps::default())?;
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_BACKLOG_LINES)
        .lossy(true)
        .finish(log);
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

#[derive(Clone, Copy, Debug)]
pub struct Caps {
    pub file_bytes: u64,
    pub total_bytes: u64,
    pub days: u64,
}

impl Default for Caps {
    fn default() -> Self {
        Caps {
            file_bytes: MAX_FILE_BYTES,
            total_bytes: MAX_TOTAL_BYTES,
            days: RETENTION_DAYS,
        }
    }
}

/// The log folder as one append-only stream. Each `write` is one event (the non-blocking
/// writer hands over whole lines), so a file never ends mid-line.
pub struct CappedLog {
    dir: PathBuf,
    caps: Caps,
    file: Option<File>,
    /// The current file's day (YYYY-MM-DD, UTC) and number within the day.
    day: String,
    seq: u32,
    size: u64,
}

impl CappedLog {
    pub fn open(dir: &Path, caps: Caps) -> Result<CappedLog, String> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder
            .create(dir)
            .map_err(|e| format!("cannot create the log folder {}: {e}", dir.display()))?;
        let mut log = CappedLog {
            dir: dir.to_path_buf(),
            caps,
            file: None,
            day: String::new(),
            seq: 0,
            size: 0,
        };
        // Files of earlier runs (an older guard made them 0644) may hold prompts as well.
        #[cfg(unix)]
        for (path, _, _) in log.files() {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(m) = std::fs::symlink_metadata(&path) {
                if m.is_file() && m.permissions().mode() & 0o077 != 0 {
                    let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
                }
            }
        }
        log.roll(&today())
            .map_err(|e| format!("cannot open a log file in {}: {e}", dir.display()))?;
        Ok(log)
    }

    fn path(&self, day: &str, seq: u32) -> PathBuf {
        self.dir.join(format!("{PREFIX}{day}.{seq:04}{SUFFIX}"))
    }

    /// Start the next file (of `day`), after making room for it.
    fn roll(&mut self, day: &str) -> std::io::Result<()> {
        if day != self.day {
            // Continue after the day's last file (a restart of the guard the same day).
            self.seq = self
                .files()
                .iter()
                .filter_map(|(p, _, _)| day_and_seq(p).filter(|(d, _)| d == day))
                .map(|(_, s)| s + 1)
                .max()
                .unwrap_or(0);
            self.day = day.to_string();
        } else {
            self.seq += 1;
        }
        self.file = None;
        self.prune();
        let path = self.path(day, self.seq);
        let file = open_private(&path)?;
        self.size = file.metadata().map(|m| m.len()).unwrap_or(0);
        self.file = Some(file);
        Ok(())
    }

    /// Log files in the folder, oldest first: (path, size, modified).
    fn files(&self) -> Vec<(PathBuf, u64, SystemTime)> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut files: Vec<_> = rd
            .flatten()
            .filter(|e| {
                let n = e.file_name();
                let n = n.to_string_lossy();
                n.starts_with(PREFIX) && n.ends_with(SUFFIX)
            })
            .filter_map(|e| {
                let m = e.metadata().ok()?;
                Some((
                    e.path(),
                    m.len(),
                    m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                ))
            })
            .collect();
        // Names sort by day and number; files of the old daily scheme sort by their day too.
        files.sort_by(|a, b| a.0.cmp(&b.0));
        files
    }

    /// Delete the oldest files until the folder has room for one more full file, and any file
    /// past the retention.
    fn prune(&self) {
        let files = self.files();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        let room = self.caps.total_bytes.saturating_sub(self.caps.file_bytes);
        let cutoff = SystemTime::now().checked_sub(Duration::from_secs(self.caps.days * 86_400));
        for (path, size, modified) in files {
            let expired = cutoff.is_some_and(|c| modified < c);
            if (total > room || expired) && std::fs::remove_file(&path).is_ok() {
                total -= size;
            }
        }
    }
}

impl Write for CappedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let day = today();
        let full = self.size > 0 && self.size + buf.len() as u64 > self.caps.file_bytes;
        if day != self.day || full || self.file.is_none() {
            self.roll(&day)?;
        }
        // One event larger than a whole file is cut, so the caps hold.
        let n = buf.len().min(self.caps.file_bytes as usize);
        let file = self.file.as_mut().expect("log file");
        file.write_all(&buf[..n])?;
        self.size += n as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.as_mut().map_or(Ok(()), |f| f.flush())
    }
}

/// A log file for this user alone: with `log_prompts` on it holds prompts. Created 0600, and a
/// file an older guard left 0644 (or the user widened) is narrowed again when it is reopened.
fn open_private(path: &Path) -> std::io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let file = opts.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if file.metadata()?.permissions().mode() & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(file)
}

/// (day, number) of a file of this scheme.
fn day_and_seq(path: &Path) -> Option<(String, u32)> {
    let name = path.file_name()?.to_str()?;
    let mid = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    let (day, seq) = mid.split_once('.')?;
    Some((day.to_string(), seq.parse().ok()?))
}

/// Today's date in UTC, YYYY-MM-DD.
fn today() -> String {
    let t = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    t[..10].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder_bytes(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.metadata().unwrap().len())
            .sum()
    }

    fn lines(dir: &Path) -> Vec<String> {
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        paths.sort();
        paths
            .iter()
            .flat_map(|p| {
                std::fs::read_to_string(p)
                    .unwrap()
                    .lines()
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn the_folder_stays_under_its_cap_and_the_newest_events_survive() {
        let dir = tempfile::tempdir().unwrap();
        let caps = Caps {
            file_bytes: 4096,
            total_bytes: 20_000,
            days: 14,
        };
        // A file of the old daily scheme, and a stray file that is not a log.
        std::fs::write(dir.path().join("fooocus-guard.2000-01-01.jsonl"), "old\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
        let mut log = CappedLog::open(dir.path(), caps).unwrap();
        let mut peak = 0;
        for i in 0..5000 {
            let line = format!(
                "{{\"event\":\"sample\",\"n\":{i:06},\"pad\":\"{}\"}}\n",
                "x".repeat(60)
            );
            log.write_all(line.as_bytes()).unwrap();
            peak = peak.max(folder_bytes(dir.path()) - 4);
        }
        log.flush().unwrap();
        assert!(
            peak <= caps.total_bytes,
            "the folder held {peak} bytes of logs, over the cap of {}",
            caps.total_bytes
        );
        assert!(
            peak > caps.total_bytes - 2 * caps.file_bytes,
            "the cap is used ({peak} bytes), not pruned far below it"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("notes.txt")).unwrap(),
            "mine",
            "only log files are pruned"
        );
        let kept: Vec<String> = lines(dir.path())
            .into_iter()
            .filter(|l| l.starts_with('{'))
            .collect();
        let numbers: Vec<u32> = kept
            .iter()
            .map(|l| {
                let at = l.find("\"n\":").unwrap() + 4;
                l[at..at + 6].parse().unwrap()
            })
            .collect();
        assert_eq!(*numbers.last().unwrap(), 4999, "the newest event survives");
        assert!(
            numbers.windows(2).all(|w| w[1] == w[0] + 1),
            "what is kept is the newest stretch, without gaps or cut lines"
        );
        assert!(numbers.len() > 150, "kept {} events", numbers.len());
    }

    #[test]
    fn a_restart_the_same_day_continues_after_the_last_file() {
        let dir = tempfile::tempdir().unwrap();
        let caps = Caps {
            file_bytes: 100,
            total_bytes: 10_000,
            days: 14,
        };
        let mut log = CappedLog::open(dir.path(), caps).unwrap();
        for _ in 0..5 {
            log.write_all(&[b'a'; 60]).unwrap();
        }
        let before = log.seq;
        drop(log);
        let log = CappedLog::open(dir.path(), caps).unwrap();
        assert_eq!(log.seq, before + 1, "no file is appended to out of order");
    }

    #[cfg(unix)]
    #[test]
    fn log_files_are_this_users_alone_rotated_ones_and_old_ones_included() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        // A file an older guard made world-readable, today's: the log reopens it.
        std::fs::create_dir(&logs).unwrap();
        let old = logs.join(format!("{PREFIX}{}.0000{SUFFIX}", today()));
        std::fs::write(&old, "{}\n").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o755)).unwrap();
        let caps = Caps {
            file_bytes: 200,
            total_bytes: 100_000,
            days: 14,
        };
        let mut log = CappedLog::open(&logs, caps).unwrap();
        // Rotation makes the next files itself.
        for _ in 0..10 {
            log.write_all(&[b'p'; 150]).unwrap();
        }
        log.flush().unwrap();
        let files: Vec<PathBuf> = log.files().into_iter().map(|f| f.0).collect();
        assert!(files.len() >= 5, "{files:?}");
        for f in &files {
            assert_eq!(mode(f), 0o600, "{}", f.display());
        }
        // A new log folder is this user's too.
        let fresh = dir.path().join("fresh/logs");
        drop(CappedLog::open(&fresh, caps).unwrap());
        assert_eq!(mode(&fresh), 0o700);
    }

    #[test]
    fn one_event_larger_than_a_file_is_cut_to_the_file_cap() {
        let dir = tempfile::tempdir().unwrap();
        let caps = Caps {
            file_bytes: 1000,
            total_bytes: 3000,
            days: 14,
        };
        let mut log = CappedLog::open(dir.path(), caps).unwrap();
        log.write_all(&[b'x'; 50_000]).unwrap();
        log.flush().unwrap();
        assert!(folder_bytes(dir.path()) <= caps.total_bytes);
    }
}
