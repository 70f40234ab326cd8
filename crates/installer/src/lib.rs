//! Installing Fooocus for someone who has none yet.
//!
//! Planning is pure ([`plan`]: what to download, how much disk, which phases); [`run`] does the
//! work phase by phase and reports on a bounded channel ([`Progress`]). Everything is made in a
//! hidden staging folder beside the target (`.fooocus-guard-install-NAME`, a name the detector
//! never looks at) and renamed into place only when complete, so a cancel or a failure leaves
//! nothing the detector takes for an install. The staging folder remembers the finished phases:
//! running the same plan again resumes where it stopped (a download from its last byte).

mod download;
mod job;
mod python;
mod safety;
mod unpack;

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::Sender;
use serde::{Deserialize, Serialize};

use guard_fooocus::install::{self, Install};

pub use download::DownloadOptions;
pub use job::{JobStatus, Jobs, PlanView};
pub use python::{find_python, PythonInfo, TorchIndex};

/// Which kind of install is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[cfg_attr(feature = "ts", ts(rename = "InstallPlatform"))]
#[serde(rename_all = "kebab-case")]
pub enum Platform {
    /// Upstream's Windows package: a 7z with `python_embeded`, `Fooocus` and `run.bat`.
    WindowsPortable,
    /// The source at a release tag, with a Python venv (`fooocus_env`) made here.
    LinuxSource,
}

impl Platform {
    pub fn current() -> Platform {
        if cfg!(windows) {
            Platform::WindowsPortable
        } else {
            Platform::LinuxSource
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "kebab-case")]
pub enum ArchiveKind {
    SevenZ,
    TarGz,
}

impl ArchiveKind {
    /// By the name's ending (`.7z`, `.tar.gz`, `.tgz`).
    pub fn of_name(name: &str) -> Option<ArchiveKind> {
        let n = name.to_ascii_lowercase();
        if n.ends_with(".7z") {
            Some(ArchiveKind::SevenZ)
        } else if n.ends_with(".tar.gz") || n.ends_with(".tgz") {
            Some(ArchiveKind::TarGz)
        } else {
            None
        }
    }
}

/// A release the guard knows how to install.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Release {
    pub version: &'static str,
    pub platform: Platform,
    pub url: &'static str,
    /// SHA-256 of the archive, when pinned. Without one the archive is checked by its size and
    /// by its contents (it must unpack into a Fooocus the detector recognises).
    pub sha256: Option<&'static str>,
    /// About how many bytes the archive is.
    pub download_bytes: u64,
    /// About how many bytes it takes unpacked.
    pub unpacked_bytes: u64,
    /// About how many bytes the Python environment takes (torch and the requirements).
    pub environment_bytes: u64,
    /// About how big its largest file is.
    pub largest_file_bytes: u64,
    /// The torch packages Fooocus's own launch.py installs (`TORCH_COMMAND`).
    pub torch: &'static [&'static str],
}

const GB: u64 = 1 << 30;
const MB: u64 = 1 << 20;

/// The releases offered by default: the newest of upstream's for each platform.
pub const RELEASES: &[Release] = &[
    Release {
        version: "2.5.5",
        platform: Platform::LinuxSource,
        url: "https://github.com/lllyasviel/Fooocus/archive/refs/tags/v2.5.5.tar.gz",
        sha256: None,
        download_bytes: 40 * MB,
        unpacked_bytes: 60 * MB,
        environment_bytes: 6 * GB,
        // models/prompt_expansion/fooocus_expansion/tokenizer.json, 2.1 MB.
        largest_file_bytes: 4 * MB,
        torch: &["torch==2.1.0", "torchvision==0.16.0"],
    },
    Release {
        version: "2.5.0",
        platform: Platform::WindowsPortable,
        url:
            "https://github.com/lllyasviel/Fooocus/releases/download/v2.5.0/Fooocus_win64_2-5-0.7z",
        sha256: None,
        download_bytes: 2 * GB,
        unpacked_bytes: 6 * GB,
        environment_bytes: 0,
        // torch's CUDA libraries in python_embeded.
        largest_file_bytes: GB,
        torch: &[],
    },
];

/// How far above a release's figures an archive may go before it is refused (1.5 times).
const CEILING_MARGIN: (u64, u64) = (3, 2);
/// No archive unpacks to more than this many times its own size (plus `RATIO_SLACK`): Fooocus's
/// archives unpack to about 3 times theirs; a decompression bomb to thousands.
const MAX_RATIO: u64 = 20;
const RATIO_SLACK: u64 = 64 * MB;
/// Free space left on the disk for the rest of the system while the install grows.
pub const KEEP_FREE_BYTES: u64 = 256 * MB;

/// The most an archive may weigh, from its release's figures with a margin: a wrong file or a
/// decompression bomb stops at its ceiling, not when the disk is full. Bytes are counted as they
/// are written, never taken from the archive's own headers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[cfg_attr(feature = "ts", ts(rename = "InstallCeilings"))]
pub struct Ceilings {
    /// The archive itself: a download stops here; a larger local file is refused.
    pub archive_bytes: u64,
    /// Everything it unpacks to, each file and folder counting at least `ENTRY_COST`.
    pub unpacked_bytes: u64,
    /// Any one file in it.
    pub file_bytes: u64,
    /// Also at most `ratio` times the archive's own size, plus `slack_bytes`.
    pub ratio: u64,
    pub slack_bytes: u64,
}

impl Ceilings {
    fn of(release: &Release) -> Ceilings {
        let margin = |b: u64| b / CEILING_MARGIN.1 * CEILING_MARGIN.0;
        Ceilings {
            archive_bytes: margin(release.download_bytes),
            unpacked_bytes: margin(release.unpacked_bytes),
            file_bytes: margin(release.largest_file_bytes),
            ratio: MAX_RATIO,
            slack_bytes: RATIO_SLACK,
        }
    }
}

/// What the first start of Fooocus downloads by itself (the default model and its helpers).
pub const FIRST_START_MODELS_BYTES: u64 = 7 * GB;

/// Where the archive comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[cfg_attr(feature = "ts", ts(rename = "InstallSource"))]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Source {
    Url(String),
    Path(PathBuf),
}

impl Source {
    /// `http://`/`https://` is a URL, anything else a path.
    pub fn parse(s: &str) -> Source {
        if s.starts_with("http://") || s.starts_with("https://") {
            Source::Url(s.to_string())
        } else {
            Source::Path(PathBuf::from(s))
        }
    }

    fn name(&self) -> String {
        let s = match self {
            Source::Url(u) => u.split(['?', '#']).next().unwrap_or(u).to_string(),
            Source::Path(p) => p.to_string_lossy().into_owned(),
        };
        s.rsplit(['/', '\\'])
            .next()
            .unwrap_or("fooocus")
            .to_string()
    }

    pub fn describe(&self) -> String {
        match self {
            Source::Url(u) => u.clone(),
            Source::Path(p) => p.display().to_string(),
        }
    }
}

/// What the user asked for.
#[derive(Clone, Debug, Default)]
pub struct Request {
    pub target: PathBuf,
    /// A known release's version; the newest when None.
    pub version: Option<String>,
    /// Where the archive comes from; the release's own URL when None.
    pub source: Option<Source>,
    /// The archive's SHA-256, when the user knows it (overrides the release's).
    pub sha256: Option<String>,
    /// Windows portable or Linux source; this machine's when None.
    pub platform: Option<Platform>,
}

/// One step of an install, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[cfg_attr(feature = "ts", ts(rename = "InstallPhase"))]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Download,
    Verify,
    Unpack,
    Environment,
    Torch,
    Requirements,
    Finish,
}

impl Phase {
    pub fn label(self) -> &'static str {
        match self {
            Phase::Download => "Downloading Fooocus",
            Phase::Verify => "Checking the download",
            Phase::Unpack => "Unpacking",
            Phase::Environment => "Creating its Python environment",
            Phase::Torch => "Installing torch",
            Phase::Requirements => "Installing Fooocus's requirements",
            Phase::Finish => "Moving it into place",
        }
    }
}

/// What will happen, before anything does (shown to the user for confirmation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[cfg_attr(feature = "ts", ts(rename = "InstallPlan"))]
pub struct Plan {
    pub target: PathBuf,
    /// Hidden folder beside the target where everything is made.
    pub staging: PathBuf,
    pub version: String,
    pub platform: Platform,
    pub source: Source,
    pub archive: ArchiveKind,
    pub sha256: Option<String>,
    pub torch: Vec<String>,
    pub phases: Vec<Phase>,
    /// About how much is downloaded now (archive, then torch and the requirements).
    pub download_bytes: u64,
    /// Free space needed on the target's disk before the first byte.
    pub disk_needed_bytes: u64,
    /// What Fooocus downloads by itself at its first start (not counted above).
    pub first_start_bytes: u64,
    /// Where the archive is refused (as too large, or a bomb).
    pub ceilings: Ceilings,
}

impl Plan {
    /// The archive unpacked: the download, or the copy of a local archive made as it is
    /// verified, both in the private staging folder, so what is unpacked is what was hashed
    /// (a file at the user's path may be replaced between the two, or before a resume).
    fn archive_path(&self) -> PathBuf {
        self.staging.join("download").join(self.source.name())
    }
    fn tree(&self) -> PathBuf {
        self.staging.join("tree")
    }
    pub fn log_path(&self) -> PathBuf {
        self.staging.join("install.log")
    }
}

/// Every failure names what failed and what to do; `phase` is where a retry resumes.
#[derive(Debug, thiserror::Error)]
pub enum InstallerError {
    #[error("{0} already exists and is not empty: pick a new or empty folder to install Fooocus into (or \"Use an existing install\" if Fooocus is in it)")]
    TargetExists(String),
    #[error("Fooocus {version} is not a version the guard can install on {platform}: pick one of {known}, or give the archive with --source")]
    UnknownVersion {
        version: String,
        platform: String,
        known: String,
    },
    #[error("{0}: the archive must end in .7z, .tar.gz or .tgz")]
    UnknownArchive(String),
    #[error("not enough free space on {path}: {needed} needed, {free} free. Free some space or pick a folder on another disk")]
    NoSpace {
        path: String,
        needed: String,
        free: String,
    },
    #[error(
        "the disk is full while {what}: free some space, then Retry (it resumes where it stopped)"
    )]
    DiskFull { what: String },
    #[error("could not download {url}: {detail}. Check the internet connection (or the address), then Retry: the download resumes where it stopped")]
    Network { url: String, detail: String },
    #[error("the server answered {status} for {url}: {fix}")]
    HttpStatus {
        url: String,
        status: u16,
        fix: String,
    },
    #[error("{what} is not the expected file (SHA-256 {got}, expected {expected}): {fix}")]
    Checksum {
        what: String,
        expected: String,
        got: String,
        fix: String,
    },
    #[error("{what} is not a usable archive ({detail}): Retry downloads it again; if you gave it with --source, check that it is the Fooocus archive")]
    Archive { what: String, detail: String },
    #[error("the archive unpacked into no Fooocus ({0}): give the Fooocus release archive (the source .tar.gz, or the Windows package .7z)")]
    NotFooocus(String),
    /// Too large, a decompression bomb, a link out of the install: never kept for a retry.
    #[error("{what} was refused: {detail}. Nothing was installed and the unfinished install was removed: {fix}")]
    Refused {
        what: String,
        detail: String,
        fix: String,
    },
    #[error("the disk of {path} has {free} free, less than the {keep} the install leaves to the rest of the system: free some space, then Retry (it resumes where it stopped)")]
    DiskLow {
        path: String,
        free: String,
        keep: String,
    },
    /// The target, its staging folder or a folder above them is open to other users.
    #[error("{0}")]
    UnsafeFolder(String),
    #[error("{0}")]
    Python(String),
    #[error("{what} failed (exit {code}): {why}. The whole output is in {log}; Retry resumes from this step")]
    Pip {
        what: String,
        code: String,
        why: String,
        log: String,
    },
    #[error(
        "the install was cancelled: nothing was installed; Install again resumes where it stopped"
    )]
    Cancelled,
    #[error("{what} {path}: {err}")]
    Io {
        what: String,
        path: String,
        err: io::Error,
    },
}

impl InstallerError {
    /// Whether what a failed run made is worth keeping for a retry: a dropped connection or a
    /// full disk resumes; a wrong, oversized or malicious archive is deleted with everything it
    /// unpacked (a retry downloads it again).
    pub fn resumable(&self) -> bool {
        !matches!(
            self,
            InstallerError::Checksum { .. }
                | InstallerError::Archive { .. }
                | InstallerError::NotFooocus(_)
                | InstallerError::Refused { .. }
        )
    }

    pub(crate) fn refused(what: impl ToString, detail: impl ToString) -> InstallerError {
        InstallerError::Refused {
            what: what.to_string(),
            detail: detail.to_string(),
            fix: String::new(),
        }
    }

    pub(crate) fn io(what: &str, path: &Path, err: io::Error) -> InstallerError {
        if is_disk_full(&err) {
            return InstallerError::DiskFull {
                what: format!("{what} {}", path.display()),
            };
        }
        InstallerError::Io {
            what: format!("could not {what}"),
            path: path.display().to_string(),
            err,
        }
    }
}

pub(crate) fn is_disk_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull || {
        #[cfg(unix)]
        {
            e.raw_os_error() == Some(libc::ENOSPC)
        }
        #[cfg(not(unix))]
        {
            e.raw_os_error() == Some(112) // ERROR_DISK_FULL
        }
    }
}

/// Sizes as users read them ("2.0 GB").
pub fn human_bytes(b: u64) -> String {
    if b >= GB {
        format!("{:.1} GB", b as f64 / GB as f64)
    } else if b >= MB {
        format!("{:.0} MB", b as f64 / MB as f64)
    } else {
        format!("{} KB", b.div_ceil(1024))
    }
}

/// The staging folder of a target: hidden, and not named like Fooocus, so neither the
/// detector's scan of usual places nor a user's glance takes it for an install.
pub fn staging_for(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "fooocus".into());
    let parent = target.parent().unwrap_or(Path::new("."));
    parent.join(format!(".fooocus-guard-install-{name}"))
}

/// Where the app offers to install by default: `Fooocus` under the guard's data folder.
pub fn default_target(data_dir: &Path) -> PathBuf {
    data_dir.join("Fooocus")
}

/// Work out what an install will do. Pure: reads nothing but the request.
pub fn plan(req: &Request) -> Result<Plan, InstallerError> {
    let platform = req.platform.unwrap_or_else(Platform::current);
    let known: Vec<&Release> = RELEASES.iter().filter(|r| r.platform == platform).collect();
    let release = match &req.version {
        None => known.first().copied(),
        Some(v) => known.iter().copied().find(|r| r.version == v.as_str()),
    };
    let platform_name = match platform {
        Platform::WindowsPortable => "Windows",
        Platform::LinuxSource => "Linux",
    };
    let release = match (release, &req.source) {
        (Some(r), _) => r.clone(),
        // A version the guard does not know is fine from an archive the user names.
        (None, Some(_)) => Release {
            version: "",
            ..known
                .first()
                .copied()
                .cloned()
                .expect("a release per platform")
        },
        (None, None) => {
            return Err(InstallerError::UnknownVersion {
                version: req.version.clone().unwrap_or_default(),
                platform: platform_name.into(),
                known: known
                    .iter()
                    .map(|r| r.version)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    };
    let source = req
        .source
        .clone()
        .unwrap_or_else(|| Source::Url(release.url.to_string()));
    let archive = match ArchiveKind::of_name(&source.name()) {
        Some(k) => k,
        None => return Err(InstallerError::UnknownArchive(source.describe())),
    };
    let version = req
        .version
        .clone()
        .unwrap_or_else(|| release.version.to_string());
    let from_url = matches!(source, Source::Url(_));
    let mut phases = Vec::new();
    if from_url {
        phases.push(Phase::Download);
    }
    phases.extend([Phase::Verify, Phase::Unpack]);
    if platform == Platform::LinuxSource {
        phases.extend([Phase::Environment, Phase::Torch, Phase::Requirements]);
    }
    phases.push(Phase::Finish);
    let archive_bytes = if from_url { release.download_bytes } else { 0 };
    Ok(Plan {
        target: req.target.clone(),
        staging: staging_for(&req.target),
        version,
        platform,
        sha256: req
            .sha256
            .clone()
            .or(release.sha256.map(str::to_string))
            .map(|s| s.to_ascii_lowercase()),
        torch: release.torch.iter().map(|s| s.to_string()).collect(),
        source,
        archive,
        phases,
        download_bytes: archive_bytes + release.environment_bytes / 2,
        disk_needed_bytes: archive_bytes + release.unpacked_bytes + release.environment_bytes,
        first_start_bytes: FIRST_START_MODELS_BYTES,
        ceilings: Ceilings::of(&release),
    })
}

/// What an install reports while it runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Progress {
    /// A phase begins (`index` of `count`, from 0).
    Phase {
        phase: Phase,
        label: String,
        index: usize,
        count: usize,
    },
    /// A phase that was finished before (a resumed install) is skipped.
    Skipped { phase: Phase },
    /// Bytes of the current phase done, of `total` when known. Lossy: a slow reader misses some.
    Bytes {
        phase: Phase,
        done: u64,
        total: Option<u64>,
    },
    /// A line of output (pip's, or the installer's own), also written to the install log.
    Log { line: String },
}

/// How to run: where bytes come from and which torch build to take.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub download: DownloadOptions,
    pub torch_index: TorchIndex,
    /// The interpreter to make the venv with; found when None (3.10, else 3.11).
    pub python: Option<PathBuf>,
    /// More environment for pip (pip also reads the guard's own `PIP_*` variables).
    pub pip_env: Vec<(String, String)>,
    /// The download and the unpack stop when the disk has less free than this.
    pub keep_free_bytes: u64,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            download: DownloadOptions::default(),
            torch_index: TorchIndex::Cuda,
            python: None,
            pip_env: Vec::new(),
            keep_free_bytes: KEEP_FREE_BYTES,
        }
    }
}

/// The channel and the cancel flag every phase reports to and checks.
pub struct Reporter<'a> {
    tx: &'a Sender<Progress>,
    cancel: &'a AtomicBool,
    log: Option<fs::File>,
}

impl Reporter<'_> {
    pub(crate) fn cancelled(&self) -> Result<(), InstallerError> {
        if self.cancel.load(Ordering::Relaxed) {
            Err(InstallerError::Cancelled)
        } else {
            Ok(())
        }
    }
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
    pub(crate) fn bytes(&self, phase: Phase, done: u64, total: Option<u64>) {
        // Lossy on purpose: the next figure supersedes this one.
        let _ = self.tx.try_send(Progress::Bytes { phase, done, total });
    }
    pub(crate) fn line(&mut self, line: &str) {
        if let Some(f) = self.log.as_mut() {
            let _ = writeln!(f, "{line}");
        }
        // Blocks while the reader is behind (bounded); a receiver that is gone ends nothing.
        let _ = self.tx.send_timeout(
            Progress::Log {
                line: line.to_string(),
            },
            Duration::from_secs(5),
        );
    }
    fn send(&self, p: Progress) {
        let _ = self.tx.send_timeout(p, Duration::from_secs(5));
    }
}

/// The finished phases, kept in the staging folder so a retry resumes.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
struct State {
    source: String,
    version: String,
    done: Vec<Phase>,
}

fn read_state(plan: &Plan) -> State {
    let fresh = State {
        source: plan.source.describe(),
        version: plan.version.clone(),
        done: Vec::new(),
    };
    // Never through a link (the staging folder is this user's own, but a link there would
    // have been planted), and never more than a state file can be.
    let read = || -> Option<State> {
        let f = safety::open_read(&plan.staging.join("state.json")).ok()?;
        let mut b = Vec::new();
        f.take(STATE_MAX_BYTES).read_to_end(&mut b).ok()?;
        serde_json::from_slice(&b).ok()
    };
    match read() {
        Some(s) if s.source == fresh.source && s.version == fresh.version => s,
        _ => fresh,
    }
}

fn write_state(plan: &Plan, s: &State) -> Result<(), InstallerError> {
    let path = plan.staging.join("state.json");
    let tmp = plan.staging.join("state.json.tmp");
    // Made fresh: whatever is at the .tmp name (a link to a file of root's) is removed, not
    // written through; rename() then replaces state.json itself, never what it may link to.
    let write = || -> io::Result<()> {
        let mut f = safety::create_fresh(&tmp)?;
        f.write_all(&serde_json::to_vec(s).expect("state"))?;
        drop(f);
        fs::rename(&tmp, &path)
    };
    write().map_err(|e| InstallerError::io("write", &path, e))
}

const STATE_MAX_BYTES: u64 = 64 * 1024;
/// Free space is looked at again after this many bytes written.
const DISK_CHECK_EVERY: u64 = 16 * MB;

/// Stops a download or an unpack before it fills the disk: the free space is read again every
/// `DISK_CHECK_EVERY` bytes, and below `keep` the install stops (resumable: free some space).
pub(crate) struct DiskWatch {
    path: PathBuf,
    keep: u64,
    next: u64,
}

impl DiskWatch {
    pub(crate) fn new(path: &Path, keep: u64) -> DiskWatch {
        DiskWatch {
            path: path.to_path_buf(),
            keep,
            next: 0,
        }
    }

    /// `written`: the bytes written so far by this step.
    pub(crate) fn check(&mut self, written: u64) -> Result<(), InstallerError> {
        if written < self.next {
            return Ok(());
        }
        self.next = written.saturating_add(DISK_CHECK_EVERY);
        match free_space(&self.path) {
            Ok(free) if free < self.keep => Err(InstallerError::DiskLow {
                path: self.path.display().to_string(),
                free: human_bytes(free),
                keep: human_bytes(self.keep),
            }),
            // A disk whose space cannot be read is left to the write errors (ENOSPC).
            _ => Ok(()),
        }
    }
}

/// Free bytes on the disk that holds `path` (or its nearest existing parent).
pub fn free_space(path: &Path) -> io::Result<u64> {
    let mut p = path;
    loop {
        if p.exists() {
            return fs4::available_space(p);
        }
        match p.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => p = parent,
            _ => return fs4::available_space(Path::new(".")),
        }
    }
}

/// The checks before the first byte: the folders are closed to other users, the target is
/// free, the disk has room.
pub fn preflight(plan: &Plan) -> Result<(), InstallerError> {
    safety::check_folders(plan)?;
    if let Ok(mut rd) = fs::read_dir(&plan.target) {
        if rd.next().is_some() {
            return Err(InstallerError::TargetExists(
                plan.target.display().to_string(),
            ));
        }
    } else if plan.target.exists() {
        return Err(InstallerError::TargetExists(
            plan.target.display().to_string(),
        ));
    }
    let free = free_space(&plan.target)
        .map_err(|e| InstallerError::io("read the free space of", &plan.target, e))?;
    // What a resumed install already holds counts as made.
    let have = dir_size(&plan.staging);
    let needed = plan.disk_needed_bytes.saturating_sub(have);
    if free < needed {
        return Err(InstallerError::NoSpace {
            path: plan
                .target
                .parent()
                .unwrap_or(&plan.target)
                .display()
                .to_string(),
            needed: human_bytes(needed),
            free: human_bytes(free),
        });
    }
    Ok(())
}

fn dir_size(p: &Path) -> u64 {
    let Ok(md) = fs::symlink_metadata(p) else {
        return 0;
    };
    if !md.is_dir() {
        return md.len();
    }
    fs::read_dir(p)
        .map(|rd| rd.flatten().map(|e| dir_size(&e.path())).sum())
        .unwrap_or(0)
}

/// The torch build for the GPU the sampler sees here, and what it saw.
pub fn torch_for_this_machine(nvml: Option<&Path>) -> (TorchIndex, String) {
    let mut s = guard_sample::Sampler::new(guard_sample::SamplerConfig {
        nvml_lib: nvml.map(Into::into),
        gpu: true,
        sysfs_root: None,
    });
    let names: Vec<String> = s.sample().gpus.iter().map(|g| g.name.clone()).collect();
    let seen = if names.is_empty() {
        format!("no GPU found: {}", s.gpu_status())
    } else {
        format!("found {}", names.join(", "))
    };
    (TorchIndex::from_gpu_names(&names), seen)
}

/// Run (or resume) an install. Returns the install as the detector sees it.
pub fn run(
    plan: &Plan,
    opts: &RunOptions,
    tx: &Sender<Progress>,
    cancel: &AtomicBool,
) -> Result<Install, InstallerError> {
    preflight(plan)?;
    safety::make_staging(plan)?;
    let log = safety::open_append(&plan.log_path()).ok();
    let mut rep = Reporter { tx, cancel, log };
    // The archive readers panic on some inconsistent archives (sevenz-rust slices and indexes
    // by sizes from the header): that is a bad archive, not a dead install thread.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_phases(plan, opts, &mut rep)
    }))
    .unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(InstallerError::Archive {
            what: plan.source.describe(),
            detail: format!("it could not be read ({why})"),
        })
    })
    .map_err(|e| with_fix(e, &plan.source));
    if let Err(e) = &r {
        if !e.resumable() {
            // What is wrong is the archive: nothing of it is kept (a bomb's gigabytes, a
            // planted link), and a retry starts from the download.
            rep.log = None;
            let _ = discard(plan);
        }
    }
    r
}

/// What to do about a refused archive, by where it came from.
fn with_fix(mut e: InstallerError, source: &Source) -> InstallerError {
    match &mut e {
        InstallerError::Checksum { what, fix, .. } => {
            *what = source.describe();
            *fix = match source {
                Source::Url(_) => "it was deleted; Retry downloads it again. If this repeats, the address serves something else".into(),
                Source::Path(_) => "check that it is the archive you meant, and the checksum you gave".into(),
            };
        }
        InstallerError::Refused { fix, .. } if fix.is_empty() => {
            *fix = match source {
                Source::Url(_) => "check the address: it must serve the Fooocus release archive (the source .tar.gz, or the Windows package .7z)".into(),
                Source::Path(_) => "give the Fooocus release archive (the source .tar.gz, or the Windows package .7z)".into(),
            };
        }
        _ => {}
    }
    e
}

fn run_phases(
    plan: &Plan,
    opts: &RunOptions,
    rep: &mut Reporter,
) -> Result<Install, InstallerError> {
    let mut state = read_state(plan);
    rep.line(&format!(
        "Installing Fooocus {} from {} into {}",
        plan.version,
        plan.source.describe(),
        plan.target.display()
    ));
    let count = plan.phases.len();
    // Python is checked before the first byte too: a machine without a usable one learns it
    // now, not after a 2 GB download.
    let python =
        if plan.phases.contains(&Phase::Environment) && !state.done.contains(&Phase::Environment) {
            Some(python::find_python(opts.python.as_deref())?)
        } else {
            None
        };
    for (index, &phase) in plan.phases.iter().enumerate() {
        rep.cancelled()?;
        // The venv's interpreter is needed by the pip phases, finished or not.
        if state.done.contains(&phase) && phase != Phase::Finish {
            rep.send(Progress::Skipped { phase });
            continue;
        }
        rep.send(Progress::Phase {
            phase,
            label: phase.label().to_string(),
            index,
            count,
        });
        match phase {
            Phase::Download => {
                let Source::Url(url) = &plan.source else {
                    unreachable!("download only for URLs")
                };
                download::fetch(
                    url,
                    &plan.archive_path(),
                    &opts.download,
                    plan.ceilings.archive_bytes,
                    DiskWatch::new(&plan.staging, opts.keep_free_bytes),
                    rep,
                )?;
            }
            Phase::Verify => {
                // A wrong checksum deletes the download with the staging folder (run()).
                match &plan.source {
                    Source::Url(_) => download::verify(
                        &plan.archive_path(),
                        plan.sha256.as_deref(),
                        plan.ceilings.archive_bytes,
                        None,
                        rep,
                    )?,
                    Source::Path(p) => download::verify(
                        p,
                        plan.sha256.as_deref(),
                        plan.ceilings.archive_bytes,
                        Some(&plan.archive_path()),
                        rep,
                    )?,
                };
            }
            Phase::Unpack => {
                let tree = plan.tree();
                if fs::symlink_metadata(&tree).is_ok() {
                    unpack::remove_tree(&tree)
                        .map_err(|e| InstallerError::io("clear", &tree, e))?;
                }
                unpack::unpack(
                    &plan.archive_path(),
                    plan.archive,
                    &tree,
                    &plan.ceilings,
                    DiskWatch::new(&plan.staging, opts.keep_free_bytes),
                    rep,
                )?;
                check_tree(&tree, plan.platform)?;
            }
            Phase::Environment => {
                let py = python.as_ref().expect("found before the first phase");
                rep.line(&py.note());
                python::make_venv(py, &plan.tree().join("fooocus_env"), rep)?;
            }
            Phase::Torch => {
                let venv_py = python::venv_python(&plan.tree().join("fooocus_env"));
                let mut args: Vec<String> = vec!["install".into()];
                args.extend(plan.torch.iter().cloned());
                args.extend(opts.torch_index.pip_args());
                python::pip(
                    &venv_py,
                    &plan.tree(),
                    &args,
                    "Installing torch",
                    &opts.pip_env,
                    &plan.log_path(),
                    rep,
                )?;
            }
            Phase::Requirements => {
                let venv_py = python::venv_python(&plan.tree().join("fooocus_env"));
                let args = vec![
                    "install".to_string(),
                    "-r".into(),
                    "requirements_versions.txt".into(),
                ];
                python::pip(
                    &venv_py,
                    &plan.tree(),
                    &args,
                    "Installing Fooocus's requirements",
                    &opts.pip_env,
                    &plan.log_path(),
                    rep,
                )?;
            }
            Phase::Finish => {
                rep.cancelled()?;
                finish(plan, rep)?;
                let install = install::inspect(&plan.target, None)
                    .map_err(|e| InstallerError::NotFooocus(format!("the detector says: {e}")))?;
                return Ok(install);
            }
        }
        state.done.push(phase);
        write_state(plan, &state)?;
    }
    unreachable!("the plan ends with Finish")
}

/// The unpacked tree must be what the detector will take for Fooocus.
fn check_tree(tree: &Path, platform: Platform) -> Result<(), InstallerError> {
    let ok = match platform {
        Platform::WindowsPortable => {
            tree.join("python_embeded").join("python.exe").is_file()
                && tree.join("Fooocus").join("entry_with_update.py").is_file()
        }
        Platform::LinuxSource => {
            tree.join("entry_with_update.py").is_file()
                && tree.join("requirements_versions.txt").is_file()
        }
    };
    if ok {
        Ok(())
    } else {
        Err(InstallerError::NotFooocus(match platform {
            Platform::WindowsPortable => {
                "no python_embeded/python.exe and Fooocus/entry_with_update.py".into()
            }
            Platform::LinuxSource => "no entry_with_update.py and requirements_versions.txt".into(),
        }))
    }
}

/// The one step that makes the install visible: the complete tree is renamed into place.
fn finish(plan: &Plan, rep: &mut Reporter) -> Result<(), InstallerError> {
    if plan.target.is_dir() {
        // preflight() checked it is empty; rename() cannot replace a folder on Windows.
        fs::remove_dir(&plan.target).map_err(|e| InstallerError::io("replace", &plan.target, e))?;
    } else if let Some(parent) = plan.target.parent() {
        fs::create_dir_all(parent).map_err(|e| InstallerError::io("create", parent, e))?;
    }
    fs::rename(plan.tree(), &plan.target)
        .map_err(|e| InstallerError::io("move the install into", &plan.target, e))?;
    let venv = plan.target.join("fooocus_env");
    if venv.is_dir() {
        python::relocate_venv(&plan.tree().join("fooocus_env"), &venv)
            .map_err(|e| InstallerError::io("update the scripts of", &venv, e))?;
    }
    rep.line(&format!(
        "Fooocus is installed in {}",
        plan.target.display()
    ));
    // The log goes with the install; the rest (the archive) is no longer needed. Written
    // fresh: a file of that name from the archive is replaced, never written through.
    let copy = || -> io::Result<u64> {
        let mut from = safety::open_read(&plan.log_path())?;
        let mut to = safety::create_fresh(&plan.target.join("fooocus-guard-install.log"))?;
        io::copy(&mut from, &mut to)
    };
    let _ = copy();
    rep.log = None;
    let _ = unpack::remove_tree(&plan.staging);
    Ok(())
}

/// Forget a cancelled or failed install: remove its staging folder.
pub fn discard(plan: &Plan) -> Result<(), InstallerError> {
    match unpack::remove_tree(&plan.staging) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(InstallerError::io("remove", &plan.staging, e)),
    }
}

/// Which phases a resumed run would skip (for the UI: "resumes from ...").
pub fn finished_phases(plan: &Plan) -> Vec<Phase> {
    read_state(plan).done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(target: &str) -> Request {
        Request {
            target: PathBuf::from(target),
            ..Request::default()
        }
    }

    #[test]
    fn linux_plan_makes_a_venv_and_windows_one_does_not() {
        let mut r = req("/home/me/Fooocus");
        r.platform = Some(Platform::LinuxSource);
        let p = plan(&r).unwrap();
        assert_eq!(p.version, "2.5.5");
        assert_eq!(p.archive, ArchiveKind::TarGz);
        assert_eq!(
            p.phases,
            vec![
                Phase::Download,
                Phase::Verify,
                Phase::Unpack,
                Phase::Environment,
                Phase::Torch,
                Phase::Requirements,
                Phase::Finish
            ]
        );
        assert_eq!(
            p.staging,
            PathBuf::from("/home/me/.fooocus-guard-install-Fooocus")
        );
        assert!(p.disk_needed_bytes > 6 * GB);

        r.platform = Some(Platform::WindowsPortable);
        let p = plan(&r).unwrap();
        assert_eq!(p.archive, ArchiveKind::SevenZ);
        assert!(!p.phases.contains(&Phase::Environment));
    }

    #[test]
    fn a_local_archive_is_not_downloaded_and_unknown_versions_are_named() {
        let mut r = req("/x/F");
        r.platform = Some(Platform::LinuxSource);
        r.source = Some(Source::parse("/tmp/fooocus-2.5.5.tar.gz"));
        let p = plan(&r).unwrap();
        assert_eq!(p.phases[0], Phase::Verify);

        let mut r = req("/x/F");
        r.platform = Some(Platform::LinuxSource);
        r.version = Some("9.9".into());
        let e = plan(&r).unwrap_err().to_string();
        assert!(
            e.contains("9.9") && e.contains("2.5.5") && e.contains("--source"),
            "{e}"
        );

        r.source = Some(Source::parse("http://127.0.0.1:1/f.zip"));
        let e = plan(&r).unwrap_err().to_string();
        assert!(e.contains(".7z, .tar.gz"), "{e}");
    }

    #[test]
    fn the_ceilings_are_the_release_figures_with_a_margin() {
        let mut r = req("/x/F");
        r.platform = Some(Platform::LinuxSource);
        let c = plan(&r).unwrap().ceilings;
        assert_eq!(
            (c.archive_bytes, c.unpacked_bytes, c.file_bytes),
            (60 * MB, 90 * MB, 6 * MB)
        );
        // An archive the user names is held to its platform's figures too.
        r.source = Some(Source::parse("/tmp/fork.tar.gz"));
        r.version = Some("9.9".into());
        assert_eq!(plan(&r).unwrap().ceilings, c);
        r = req("/x/F");
        r.platform = Some(Platform::WindowsPortable);
        let c = plan(&r).unwrap().ceilings;
        assert_eq!(
            (c.archive_bytes, c.unpacked_bytes, c.file_bytes),
            (3 * GB, 9 * GB, 3 * GB / 2)
        );
        assert_eq!((c.ratio, c.slack_bytes), (20, 64 * MB));
    }

    #[test]
    fn the_staging_folder_is_never_taken_for_an_install() {
        let s = staging_for(Path::new("/a/Fooocus"));
        let name = s
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_ascii_lowercase();
        // usual_places() looks at names starting with "fooocus".
        assert!(!name.starts_with("fooocus") && name.starts_with('.'));
    }
}
