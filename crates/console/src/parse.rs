//! Lines to events. A small state machine: whether Fooocus is still starting, whether a task
//! runs, what it has shown so far, and an open Python traceback (kept together as one error
//! event, bounded).
//!
//! Fooocus prints what users type: the prompt (`[Prompt Expansion] ...`, `[Wildcards]
//! processing: ...`), and 2.5's Enhance detection prompt verbatim, new lines included
//! (`[Enhance] Searching for "..."`), so a console line can start with anything a user wrote.
//! A marker therefore counts only where Fooocus itself prints it:
//! * at the start of the line, in the version's own format (never found inside a line);
//! * in the phase where it can occur: the start-up lines (version, listening URL, worker PID,
//!   ready, a taken port) only before ready and before any task, since a prompt is printed only
//!   by a task, which runs only once the worker loop printed its ready line;
//! * on the stream it is written to, when the caller reads the streams apart ([`Source`]):
//!   Python writes tracebacks (and `Exception in thread`), tqdm its bars and uvicorn its log
//!   on stderr, while every line that can hold a prompt is a `print` or Fooocus-API's logger
//!   on stdout. Only a merged saved log ([`Source::Merged`]) has to go without this rule.

use serde::{Deserialize, Serialize};

/// One recognised event, at the 1-based input line where its text starts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub line: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Which output of Fooocus a parser reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Source {
    /// Both streams in one (a saved log, `parse-log`): no line can be ruled out by its stream.
    #[default]
    Merged,
    /// `print` and Fooocus-API 0.4+'s logger: where prompts are echoed. Never a worker death,
    /// a tqdm bar or uvicorn's line; a traceback only as the tail of a logger ERROR record.
    Stdout,
    /// Python's tracebacks, tqdm, uvicorn, torch.hub.
    Stderr,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// Gradio's "Running on local URL" (models may still be loading).
    Listening {
        url: String,
    },
    /// Fooocus can take tasks ("App started successful", or Uvicorn's line for Fooocus-API).
    Ready {
        url: String,
    },
    Version {
        version: String,
    },
    TaskStart,
    ImageStart {
        index: u32,
        total: u32,
    },
    /// A sampling step (never a model-download bar), 2.5 Enhance's steps included; from a bar
    /// or from tqdm's line without one (`  0% 0/30 [00:01<?, ?it/s]`, a console that is no
    /// terminal).
    Progress {
        step: u32,
        total: u32,
    },
    ImageDone {
        seconds: f64,
    },
    /// `Total time`; Fooocus-API's "Finish task" has no figure (null).
    TaskEnd {
        seconds: Option<f64>,
    },
    Stopped,
    Skipped,
    /// A Python traceback, at the line where it starts. `traceback` holds its first lines.
    Error {
        exception: String,
        message: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        traceback: Vec<String>,
    },
    /// Out of memory (CUDA or the CPU allocator); right after the error it belongs to.
    Oom {
        message: String,
    },
    /// The worker thread died: Fooocus is up but will never run a task.
    WorkerDied,
    /// Work that is not a sampling step: a model load or move, a download, a `[Fooocus] ...`
    /// phase line, the 2.5 enhance phase's lines (its steps are [`EventKind::Progress`]).
    /// `what` is `model_load`, `download`, `task` or `enhance` (never the line itself: it can
    /// hold the prompt).
    Activity {
        what: String,
    },
    /// Gradio could not bind the port it was given (`OSError: Cannot find empty port in range:
    /// P-P`): another program holds it.
    PortTaken {
        port: u16,
    },
    /// `Started worker with PID n` (2.2 and later, and develop builds still called 2.1.865
    /// since 2024-02-24): Stop and Skip act on the browser session that started the task.
    WorkerStarted {
        pid: u32,
    },
    /// Fooocus entered a phase of its work (a generation's, or a model load at start-up or
    /// between tasks), told once on entry: a new task, a new image and a new sampler run
    /// (after a stop) start their phases afresh. Read apart, stdout's parser tells the phases
    /// of the prints and stderr's those of the bars (sampling, decode): a reader of both takes
    /// the latest, and a phase equal to the current one as no change.
    Phase {
        phase: Phase,
    },
    /// A failure users keep reporting upstream, recognised so the guard can name the fix.
    KnownFailure {
        failure: KnownFailure,
    },
}

/// The phases of Fooocus's work, each with its own cost and its own answer to Stop: Fooocus
/// looks at Stop only between sampling steps, so a stop asked for in any other phase waits
/// for the next step (or the generation's end).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Loading or moving the checkpoint (at start-up, or when a generation changes models).
    ModelLoad,
    /// Prompt expansion and text encoding, before the first sampling step.
    Preparation,
    /// The sampler's steps.
    Sampling,
    /// The VAE turning latents into an image.
    Decode,
    /// Writing the image and its log.
    Saving,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::ModelLoad => "model_load",
            Phase::Preparation => "preparation",
            Phase::Sampling => "sampling",
            Phase::Decode => "decode",
            Phase::Saving => "saving",
        }
    }
}

/// Failures users keep reporting upstream, each with a known fix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum KnownFailure {
    /// "no kernel image is available for execution on the device": a GPU newer than the
    /// bundled torch (RTX 50-series with torch 2.1; lllyasviel/Fooocus#3862).
    GpuTooNew,
    /// An update failing with "Access denied" on a `.pyd` that another Python still holds
    /// (#3295, #3305).
    FileLocked,
}

impl KnownFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            KnownFailure::GpuTooNew => "gpu_too_new",
            KnownFailure::FileLocked => "file_locked",
        }
    }

    /// The fix, in plain words.
    pub fn advice(self) -> &'static str {
        match self {
            KnownFailure::GpuTooNew => {
                "This GPU is newer than the torch bundled with Fooocus (2.1, built for CUDA \
                 12.1): an RTX 50-series card (compute capability sm_120) needs torch 2.7 or \
                 later built for CUDA 12.8, and an NVIDIA driver that supports CUDA 12.8. \
                 Install it into Fooocus's own Python (in the Windows package, \
                 python_embeded\\python.exe -m pip install --upgrade torch torchvision \
                 --index-url https://download.pytorch.org/whl/cu128), then start Fooocus \
                 again; until then it runs, slowly, with --always-cpu. \
                 lllyasviel/Fooocus#3862 has the steps users took."
            }
            KnownFailure::FileLocked => {
                "Fooocus's update could not replace a module file (.pyd) because another \
                 Python still has it open: another Fooocus window, or a Python left running \
                 from an earlier start. Close the other Fooocus and Python windows (or end \
                 python.exe in the Task Manager), then start Fooocus again so the update can \
                 finish (lllyasviel/Fooocus#3295, #3305)."
            }
        }
    }
}

impl EventKind {
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Listening { .. } => "listening",
            EventKind::Ready { .. } => "ready",
            EventKind::Version { .. } => "version",
            EventKind::TaskStart => "task_start",
            EventKind::ImageStart { .. } => "image_start",
            EventKind::Progress { .. } => "progress",
            EventKind::ImageDone { .. } => "image_done",
            EventKind::TaskEnd { .. } => "task_end",
            EventKind::Stopped => "stopped",
            EventKind::Skipped => "skipped",
            EventKind::Error { .. } => "error",
            EventKind::Oom { .. } => "oom",
            EventKind::WorkerDied => "worker_died",
            EventKind::Activity { .. } => "activity",
            EventKind::PortTaken { .. } => "port_taken",
            EventKind::WorkerStarted { .. } => "worker_started",
            EventKind::Phase { .. } => "phase",
            EventKind::KnownFailure { .. } => "known_failure",
        }
    }
}

/// Lines of one traceback kept for the error event.
pub const MAX_TRACEBACK_LINES: usize = 40;
/// Characters kept of one traceback line or message.
const MAX_KEPT: usize = 500;
/// Non-traceback lines tolerated inside an open traceback (merged stdout+stderr logs) before
/// it is closed without its exception line.
const MAX_FOREIGN_LINES: u32 = 8;

#[derive(Debug, Default)]
struct Traceback {
    line: u64,
    lines: Vec<String>,
    exception: Option<(String, String)>,
    /// "During handling ..." seen: another Traceback line continues this one.
    chained: bool,
    foreign: u32,
    /// The line of the `Exception in thread ...:` header printed just before it, if any.
    thread_header: Option<u64>,
    /// A frame of Fooocus's worker loop (`in worker`) or Fooocus-API's (`in
    /// task_schedule_loop`) was seen: an exception escaping it kills the thread.
    through_worker: bool,
    /// A `threading.py ... in _bootstrap_inner` frame: the exception escaped a thread's
    /// function (only an uncaught one shows the frames above it), header printed or not.
    thread_top: bool,
    /// The dead worker was told (at its exception line, which Python prints right after the
    /// frames: a dead worker prints nothing after it that would close the traceback).
    death_told: bool,
}

impl Traceback {
    /// Its frames show an exception that escaped the worker thread's loop.
    fn worker_death(&self) -> Option<u64> {
        let header = self
            .thread_header
            .or(self.thread_top.then_some(self.line))?;
        self.through_worker.then_some(header)
    }
}

#[derive(Debug, Default)]
struct Task {
    /// Any image or step seen: a new start marker means a new task.
    progressed: bool,
    /// `[Fooocus] Preparing task i/N` seen (2.4+): images are announced explicitly.
    explicit_images: bool,
    /// Highest `Encoding positive #k` (2.0-2.3: the number of images).
    encodings: u32,
    images_done: u32,
    /// The current image has shown a step (2.0-2.3: the next step after a done image starts one).
    image_running: bool,
    /// Started by Fooocus-API 0.3/0.4's `[Task Queue] Task queue start task`: they print no
    /// task end after a Stop or an error inside the image loop, so those end the task here
    /// (0.5's `[Task Queue] Start task` prints `Finish task` after a Stop).
    api: bool,
    /// Fooocus-API printed `Process error:`: the traceback it logs next ends the task.
    end_after_traceback: bool,
    /// 2.5 enhance phase: its sampling bars are not the images' steps.
    enhancing: bool,
}

#[derive(Debug, Default)]
pub struct Parser {
    source: Source,
    task: Option<Task>,
    tb: Option<Traceback>,
    /// Line of an `Exception in thread ...:` header whose traceback has not started yet.
    thread_header: Option<u64>,
    /// Start-up is over: ready was printed or a task started. No start-up line counts after it
    /// (a prompt can only be printed from here on).
    started: bool,
    /// The previous line was a logger record at ERROR level (Fooocus-API 0.4+ on stdout):
    /// `logging.exception` prints its traceback right under it.
    after_error_record: bool,
    /// `Fooocus version:` said a version whose worker loop runs each task inside `try` (2.0.90
    /// and later, MRE excepted): its worker can only die before ready.
    worker_survives_tasks: bool,
    /// The phase last told (start-up's model load, or the open task's): a phase event is
    /// written only when it changes. None once ready, between tasks and between images.
    phase: Option<Phase>,
    /// The last sampling bar's (step, total): a bar that goes back or changes its total is a
    /// new sampler run, which enters sampling again.
    last_bar: Option<(u32, u32)>,
    /// The worker's last progress line was a VAE encode (img2img, inpaint, upscale): the VAE
    /// loaded next is for it, not for a decode.
    vae_encoding: bool,
    /// torch warned at start-up that the GPU's compute capability (`sm_N`) is not one it was
    /// built for; its next line says which it was built for.
    unsupported_gpu: Option<u32>,
    /// Gradio's `Running on local URL` of this start (before ready).
    listening_url: Option<String>,
    /// The worker finished loading before `launch()` set the app's URL, so its ready line was
    /// lost to the exception it caught: ready comes with Gradio's listening line instead.
    ready_line_lost: bool,
}

/// Whether Fooocus `version` wraps each task in `try` (2.0.90+, commit aebfc566; never MRE).
fn worker_survives_tasks(version: &str) -> bool {
    if version.contains("MRE") {
        return false;
    }
    let n: Vec<u32> = version
        .split(|c: char| !c.is_ascii_digit())
        .take_while(|p| !p.is_empty())
        .filter_map(|p| p.parse().ok())
        .collect();
    n.len() >= 2 && (n[0], n[1], n.get(2).copied().unwrap_or(0)) >= (2, 0, 90)
}

fn clip(s: &str) -> String {
    if s.len() <= MAX_KEPT {
        return s.to_string();
    }
    let mut end = MAX_KEPT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// `Name` or `dotted.Name: message` at the start of a line: a Python exception line.
fn exception_line(t: &str) -> Option<(&str, &str)> {
    let end = t
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(t.len());
    let name = &t[..end];
    if name.is_empty()
        || !name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
    {
        return None;
    }
    let rest = &t[end..];
    let last = name.rsplit('.').next().unwrap_or(name);
    // Python exception classes are CamelCase names ending in Error/Exception/... or known ones.
    let looks = last.ends_with("Error")
        || last.ends_with("Exception")
        || last.ends_with("Interrupt")
        || last.ends_with("Exit")
        || last.ends_with("Warning")
        || last == "StopIteration";
    if !looks {
        return None;
    }
    if rest.is_empty() {
        Some((name, ""))
    } else {
        rest.strip_prefix(':').map(|m| (name, m.trim()))
    }
}

/// torch's own out-of-memory message at the start of `t`: CUDA's (`CUDA out of memory. Tried
/// to allocate ...`, `CUDA error: out of memory`) or the CPU allocator's (`[enforce fail at
/// alloc_cpu.cpp:N] ... DefaultCPUAllocator: not enough memory: ...`), bare (a logged message)
/// or as the exception line that carries it (`torch.cuda.OutOfMemoryError: ...`). Never
/// found further into a line: a prompt echoed after a prefix can say anything.
pub fn is_oom_text(t: &str) -> bool {
    match exception_line(t) {
        Some((name, msg)) => oom_exception(name, msg),
        None => oom_message(t),
    }
}

/// An exception line that reports an out-of-memory error (its class, or torch's message).
fn oom_exception(name: &str, msg: &str) -> bool {
    name.rsplit('.').next() == Some("OutOfMemoryError") || oom_message(msg)
}

/// torch's CUDA error when none of its kernels was built for the GPU's architecture, on a
/// line of its own or as the message of the exception line that carries it (start of line
/// only, like [`is_oom_text`]).
pub fn is_gpu_too_new_text(t: &str) -> bool {
    match exception_line(t) {
        Some((_, msg)) => gpu_too_new_message(msg),
        None => gpu_too_new_message(t),
    }
}

fn gpu_too_new_message(m: &str) -> bool {
    m.starts_with("CUDA error: no kernel image is available")
}

/// pip failing to replace a file another process holds open (Windows): `ERROR: Could not
/// install packages due to an OSError: [WinError 5] Access is denied: 'PATH'`, a `.pyd` (or
/// `.dll`) module of the venv. Printed live on stderr, or by `launch_util.run_pip` on stdout
/// inside its error text (`stderr: ERROR: ...`).
fn file_locked(s: &str) -> bool {
    let s = s.strip_prefix("stderr: ").unwrap_or(s);
    let Some(rest) = s.strip_prefix("ERROR: Could not install packages due to an OSError:") else {
        return false;
    };
    let Some(path) = rest.trim_start().strip_prefix("[WinError 5]") else {
        return false;
    };
    let path = path.trim_end().trim_end_matches(['\'', '"']).as_bytes();
    let ext = &path[path.len().saturating_sub(4)..];
    ext.eq_ignore_ascii_case(b".pyd") || ext.eq_ignore_ascii_case(b".dll")
}

/// `DEVICE with CUDA capability sm_N is not compatible with the current PyTorch installation.`
/// (torch's `_check_capability` warning): N.
fn unsupported_capability(s: &str) -> Option<u32> {
    let (_, rest) = s.split_once(" with CUDA capability sm_")?;
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[end..]
        .starts_with(" is not compatible with the current PyTorch installation")
        .then(|| parse_u32(&rest[..end]))
        .flatten()
}

fn oom_message(m: &str) -> bool {
    m.starts_with("CUDA out of memory")
        || m.starts_with("CUDA error: out of memory")
        || (m.starts_with("[enforce fail at alloc_cpu.cpp")
            && (m.contains("DefaultCPUAllocator: not enough memory")
                || m.contains("DefaultCPUAllocator: can't allocate memory")))
}

fn parse_u32(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `k/K [` of a tqdm bar with plain integer counts (download bars have units: `6.46G/6.46G`).
pub fn tqdm_step(t: &str) -> Option<(u32, u32)> {
    if !t.contains('%') {
        return None;
    }
    let bracket = t.find(" [")?;
    let head = t[..bracket].trim_end();
    let start = head.rfind(['|', ' ']).map(|i| i + 1).unwrap_or(0);
    let (k, n) = head[start..].split_once('/')?;
    let (k, n) = (parse_u32(k)?, parse_u32(n)?);
    (n > 0 && k <= n).then_some((k, n))
}

/// A float at the start of `s` ("27.03 seconds").
fn leading_f64(s: &str) -> Option<f64> {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    s[..end].parse().ok()
}

/// The first line a Fooocus process prints, at the very start of the line as it prints it:
/// `[System ARGV] ['launch.py', ...]` (`str(sys.argv)`: launch.py of 2.1.865 and later,
/// mashb1t, Fooocus-API's main.py), or `Python 3.10.12 (main, ...) [GCC ...]` (`sys.version`:
/// launch.py of 2.0.x, 2.1.679 and MRE print nothing before it; later versions print it right
/// after the first, which starts the same launch again). Only a saved log (`Source::Merged`)
/// holds several launches: a live parser belongs to one process. A prompt can write either
/// line too: see `crate::parse_log`.
fn launch_line(t: &str) -> bool {
    if let Some(argv) = t.strip_prefix("[System ARGV] [") {
        return argv.ends_with(']');
    }
    // sys.version: `3.MINOR.MICRO[suffix] (build info) [compiler]` (conda puts `| packaged
    // by ... |` before the build info).
    let Some((version, build)) = t.strip_prefix("Python ").and_then(|v| v.split_once(' ')) else {
        return false;
    };
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    let mut parts = version.split('.');
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next()),
        (Some("3"), Some(minor), Some(micro), None)
            if digits(minor) && micro.starts_with(|c: char| c.is_ascii_digit())
    ) && build.contains('(')
        && build.ends_with(']')
}

/// The URL right after `marker` at the start of `s` (`marker` then spaces then `http...`).
fn url_at_start<'a>(s: &'a str, marker: &str) -> Option<&'a str> {
    let rest = s.strip_prefix(marker)?.trim_start();
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    let url = &rest[..end];
    url.starts_with("http").then_some(url)
}

/// `  File "PATH", line N, in NAME`: a frame line of a Python traceback, exactly as
/// `traceback` prints it (two spaces, then the quoted path, the line number and the function).
/// Returns (PATH, NAME).
fn frame(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix("  File \"")?;
    let (path, tail) = rest.rsplit_once("\", line ")?;
    let (n, name) = tail.split_once(", in ")?;
    (parse_u32(n).is_some() && !name.is_empty() && !name.contains(char::is_whitespace))
        .then_some((path, name))
}

/// The prefix Fooocus-API 0.4+ puts before its log lines (`fooocusapi/utils/logger.py`:
/// `[%(asctime)s] %(levelname)-8s %(message)s`), removed so the message is matched alone.
/// Returns the level too (None: no prefix).
fn strip_logger_prefix(t: &str) -> (Option<&str>, &str) {
    let b = t.as_bytes();
    const SHAPE: &[u8] = b"[dddd-dd-dd dd:dd:dd] ";
    if b.len() <= SHAPE.len()
        || !SHAPE.iter().zip(b).all(|(&p, &c)| {
            if p == b'd' {
                c.is_ascii_digit()
            } else {
                p == c
            }
        })
    {
        return (None, t);
    }
    let rest = &t[SHAPE.len()..];
    let level_end = rest.find(' ').unwrap_or(rest.len());
    match &rest[..level_end] {
        l @ ("DEBUG" | "INFO" | "WARNING" | "ERROR" | "CRITICAL") => {
            (Some(l), rest[level_end..].trim_start())
        }
        _ => (None, t),
    }
}

/// A tqdm bar in `t`: the text before it (tqdm's description, e.g. `Fetching 3 files:`) and
/// the text glued after its closing `]` (in a merged log, the next stdout line can follow a
/// bar that never printed a newline).
fn bar_parts(t: &str) -> Option<(&str, &str)> {
    let Some(pipe) = t.find("%|") else {
        return barless_parts(t);
    };
    let pct_start = t[..pipe]
        .rfind(|c: char| !(c.is_ascii_digit() || c == '.' || c == ' '))
        .map(|i| i + t[i..].chars().next().map_or(1, char::len_utf8))
        .unwrap_or(0);
    let desc = t[..pct_start].trim();
    let after = &t[pipe..];
    let rest = after
        .find(" [")
        .and_then(|i| after[i..].find(']').map(|j| &after[i + j + 1..]))
        .unwrap_or("");
    Some((desc, rest))
}

/// tqdm's line without its bar, as it draws when it cannot tell the width of its output (a
/// console that is no terminal: Colab, docker logs, a pipe): `  0% 0/30 [00:01<?, ?it/s]`,
/// or with a description before it. Its shape is checked in full (percentage, `k/N`, the
/// time pair and rate in brackets), since no `%|` marks it. Returns what `bar_parts` does.
fn barless_parts(t: &str) -> Option<(&str, &str)> {
    let mut from = 0;
    while let Some(i) = t[from..].find("% ").map(|i| i + from) {
        from = i + 2;
        let digits = t[..i].bytes().rev().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 3 {
            continue;
        }
        let pct_start = i - digits;
        let after = &t[i + 2..];
        let Some(open) = after.find(" [") else {
            continue;
        };
        let counts = &after[..open];
        let Some(close) = after[open..].find(']').map(|j| open + j) else {
            continue;
        };
        let inside = &after[open + 2..close];
        let counted = counts.split_once('/').is_some_and(|(k, n)| {
            !k.is_empty()
                && !n.is_empty()
                && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
                && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
        });
        let timed = inside.contains('<') && inside.contains(", ") && inside.contains("/s")
            || inside.contains("s/it");
        if counted && timed {
            return Some((t[..pct_start].trim(), &after[close + 1..]));
        }
    }
    None
}

/// Non-step work worth knowing about (the stall limit must not fire during it).
fn activity_of(s: &str) -> Option<&'static str> {
    const MODEL: &[&str] = &[
        "Requested to load",
        "[Fooocus Model Management]",
        "Base model loaded",
        "Refiner model loaded",
        "Refiner unloaded",
        "Refiner Swapped",
        "Synthetic Refiner Activated",
        "[Fooocus] Loading",
        "Model loaded",
        "loaded completely",
        "VAE loaded",
    ];
    if s.starts_with("Loading ") && s.contains(" new model") {
        return Some("model_load");
    }
    if MODEL.iter().any(|m| s.starts_with(m)) {
        return Some("model_load");
    }
    if s.starts_with("[Fooocus] Downloading") || s.starts_with("Downloading: \"") {
        return Some("download");
    }
    if s.starts_with("[Enhance]")
        || s.starts_with("Enhancement time:")
        || s.starts_with("Enhancement image time:")
        || s.starts_with("[Fooocus] Preparing enhance")
        || s.starts_with("[Fooocus] Processing enhance")
    {
        return Some("enhance");
    }
    // Every `progressbar(...)` of the worker prints `[Fooocus] <text>`.
    if s.starts_with("[Fooocus]") {
        return Some("task");
    }
    None
}

/// The phase a line of Fooocus's own starts (a `print` on stdout, at the start of its line).
/// `vae_encoding`: the worker's last progress line announced a VAE encode.
fn phase_of(s: &str, vae_encoding: bool) -> Option<Phase> {
    // The worker's `progressbar(...)` texts (`async_worker.py`, Fooocus-API's `worker.py`).
    if let Some(text) = s.strip_prefix("[Fooocus] ") {
        const PREPARATION: &[&str] = &[
            "Initializing",
            "Processing prompts",
            "Preparing Fooocus text",
            "Encoding positive",
            "Encoding negative",
            "Encoding base",
            "Encoding refiner",
            "Image processing",
            "VAE encoding",
            "VAE Inpaint encoding",
            "VAE inpaint encoding",
            "VAE SD15 encoding",
            "Upscaling image",
            // 2.5: after the images, before the first enhancement's mask and prompts.
            "Processing enhance",
        ];
        return if text.starts_with("Loading ") {
            // `Loading models ...` (refresh_everything), `Loading control models ...`.
            Some(Phase::ModelLoad)
        } else if text.starts_with("Saving image") {
            // 2.4+: `Saving image i/N to system ...`, before the file and its log are written.
            Some(Phase::Saving)
        } else if PREPARATION.iter().any(|p| text.starts_with(p)) {
            Some(Phase::Preparation)
        } else {
            None
        };
    }
    // The backend's model management (`model_management.load_models_gpu`), before it moves a
    // model to the device. The VAE is loaded by its own encode or decode (`sd.py`): unless the
    // worker just announced an encode, it is the decode after the last step (stdout's parser,
    // reading apart, never sees that step's bar).
    if let Some(class) = s.strip_prefix("Requested to load ") {
        return Some(if class.trim() == "AutoencoderKL" && !vae_encoding {
            Phase::Decode
        } else {
            Phase::ModelLoad
        });
    }
    // (`Loading N new model(s)` follows those lines: it continues their phase.)

    // The checkpoint's UNet being built (`model_base.py`: `model_type EPS`), the first line
    // of a checkpoint load in every backend (ComfyUI's, fcbh, ldm_patched).
    if let Some(kind) = s.strip_prefix("model_type ") {
        let word = !kind.is_empty() && kind.bytes().all(|b| b.is_ascii_uppercase() || b == b'_');
        return word.then_some(Phase::ModelLoad);
    }
    // `private_logger.log`, once the image is written (2.0-2.3 print nothing before saving).
    if s.starts_with("Image generated with private log at:") {
        return Some(Phase::Saving);
    }
    None
}

/// What the worker's ready `try` prints when the app has no URL yet (`async_worker.py`, every
/// version: `print(e)` of the AttributeError it caught), as the whole line:
/// `'NoneType' object has no attribute 'local_url'` (`shared.gradio_root` not built yet) or
/// `'Blocks' object has no attribute 'server_name'` (built, `launch()` not yet past setting it;
/// 2.5.5 under tests/real's scenario R printed both, by the moment the worker finished).
fn lost_ready_line(s: &str) -> bool {
    let Some(attr) = s
        .trim_end()
        .strip_prefix("'NoneType' object has no attribute '")
        .or_else(|| {
            s.trim_end()
                .strip_prefix("'Blocks' object has no attribute '")
        })
    else {
        return false;
    };
    matches!(
        attr,
        "local_url'" | "server_name'" | "server_port'" | "share'" | "share_url'"
    )
}

/// `OSError: Cannot find empty port in range: P-Q. ...` (Gradio `networking.py`).
fn port_taken(s: &str) -> Option<u16> {
    let rest = s
        .split_once("Cannot find empty port in range:")?
        .1
        .trim_start();
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn activity(line: u64, what: &str) -> Event {
    Event {
        line,
        kind: EventKind::Activity {
            what: what.to_string(),
        },
    }
}

impl Parser {
    pub fn new() -> Self {
        Parser::default()
    }

    /// A parser of one of Fooocus's streams read apart (see [`Source`]).
    pub fn for_source(source: Source) -> Self {
        Parser {
            source,
            ..Parser::default()
        }
    }

    /// Whether a task is open (started and not ended).
    pub fn in_task(&self) -> bool {
        self.task.is_some()
    }

    /// A new Fooocus process in a saved log: start-up lines count again, and what the old
    /// process left open (a task, the version's rules) is gone with it.
    fn new_launch(&mut self) {
        self.started = false;
        self.listening_url = None;
        self.ready_line_lost = false;
        self.task = None;
        self.thread_header = None;
        self.after_error_record = false;
        self.worker_survives_tasks = false;
        self.phase = None;
        self.last_bar = None;
        self.vae_encoding = false;
        self.unsupported_gpu = None;
    }

    /// Fooocus entered `phase`: told once, on entry (a bar redrawn or a second line of the
    /// same phase tells nothing new).
    fn enter(&mut self, line: u64, phase: Phase, out: &mut Vec<Event>) {
        if self.phase != Some(phase) {
            self.phase = Some(phase);
            out.push(Event {
                line,
                kind: EventKind::Phase { phase },
            });
        }
    }

    /// The open task is over (its phases with it).
    fn end_task(&mut self) -> bool {
        self.phase = None;
        self.task.take().is_some()
    }

    /// End a traceback. `cut`: the input ended inside it (a log excerpt that stops mid-way),
    /// so a worker death its frames show is told even without the exception line.
    fn flush_traceback(&mut self, cut: bool, out: &mut Vec<Event>) {
        let Some(tb) = self.tb.take() else { return };
        if cut && !tb.death_told && self.worker_can_die() {
            if let Some(header) = tb.worker_death() {
                out.push(Event {
                    line: header,
                    kind: EventKind::WorkerDied,
                });
            }
        }
        let (exception, message) = tb
            .exception
            .clone()
            .unwrap_or_else(|| ("UnknownError".into(), String::new()));
        // Only the exception line says what went wrong: the lines above it are the code's.
        let oom = tb.exception.is_some() && oom_exception(&exception, &message);
        let gpu_too_new = tb.exception.is_some() && gpu_too_new_message(&message);
        // Gradio's launch() fails before anything else runs (networking.py), so only during
        // start-up.
        let port = (exception == "OSError" && !self.started)
            .then(|| port_taken(&message))
            .flatten();
        out.push(Event {
            line: tb.line,
            kind: EventKind::Error {
                exception,
                message: message.clone(),
                traceback: tb.lines,
            },
        });
        if oom {
            out.push(Event {
                line: tb.line,
                kind: EventKind::Oom { message },
            });
        }
        if let Some(port) = port {
            out.push(Event {
                line: tb.line,
                kind: EventKind::PortTaken { port },
            });
        }
        if gpu_too_new {
            out.push(Event {
                line: tb.line,
                kind: EventKind::KnownFailure {
                    failure: KnownFailure::GpuTooNew,
                },
            });
        }
        if self.task.as_ref().is_some_and(|t| t.end_after_traceback) {
            self.end_task();
            out.push(Event {
                line: tb.line,
                kind: EventKind::TaskEnd { seconds: None },
            });
        }
    }

    fn tb_push(tb: &mut Traceback, t: &str) {
        // Only frame lines say where the exception went: a source line under a frame is code.
        if let Some((path, name)) = frame(t) {
            if name == "worker" || name == "task_schedule_loop" {
                tb.through_worker = true;
            }
            if name == "_bootstrap_inner" && path.ends_with("threading.py") {
                tb.thread_top = true;
            }
        }
        if tb.lines.len() < MAX_TRACEBACK_LINES {
            tb.lines.push(clip(t));
        }
    }

    /// The exception line of the open traceback: a worker death its frames show is told now
    /// (Python's threading excepthook writes it to stderr, never to stdout).
    fn tb_exception(&mut self, out: &mut Vec<Event>) {
        let possible = self.worker_can_die();
        let Some(tb) = self.tb.as_mut() else { return };
        if let (Some(header), false, true) = (tb.worker_death(), tb.death_told, possible) {
            // The exception escaped the worker loop: the thread is gone (Fooocus before
            // 2.0.90 and MRE on any task error; any version when the worker fails to start).
            tb.death_told = true;
            out.push(Event {
                line: header,
                kind: EventKind::WorkerDied,
            });
        }
    }

    /// Whether a worker death can be read here: never on stdout (Python's threading excepthook
    /// writes to stderr); after ready only where a task's error escapes the worker loop.
    fn worker_can_die(&self) -> bool {
        self.source != Source::Stdout && !(self.started && self.worker_survives_tasks)
    }

    /// Feed one line (as split by [`crate::LineSplitter`]).
    pub fn feed_line(&mut self, line: u64, text: &str, out: &mut Vec<Event>) {
        let (level, text) = strip_logger_prefix(text);
        let after_error_record = std::mem::replace(&mut self.after_error_record, false);
        let t = text.trim_end();
        if let Some(tb) = self.tb.as_mut() {
            if t.starts_with("Traceback (most recent call last)")
                && (tb.chained || tb.exception.is_none())
            {
                tb.chained = false;
                Self::tb_push(tb, t);
                return;
            }
            if t.is_empty() {
                return;
            }
            if t.starts_with("During handling of the above exception")
                || t.starts_with("The above exception was the direct cause")
            {
                tb.chained = true;
                tb.exception = None;
                Self::tb_push(tb, t);
                return;
            }
            let indented = text.starts_with([' ', '\t']);
            if tb.exception.is_none() {
                if indented {
                    Self::tb_push(tb, t);
                    return;
                }
                if let Some((name, msg)) = exception_line(t) {
                    tb.exception = Some((name.to_string(), clip(msg)));
                    Self::tb_push(tb, t);
                    self.tb_exception(out);
                    return;
                }
                tb.foreign += 1;
                if tb.foreign <= MAX_FOREIGN_LINES {
                    // Another stream's line in a merged log: the traceback goes on after it.
                    self.plain_line(line, level, t, out);
                    return;
                }
            } else if indented && tb.lines.len() < MAX_TRACEBACK_LINES {
                // The message of an exception can run over several indented lines.
                tb.lines.push(clip(t));
                return;
            }
            self.flush_traceback(false, out);
        }
        // Python writes tracebacks to stderr; on stdout only Fooocus-API's logger does, as the
        // tail of an ERROR record (`logging.exception`), never on a line of its own.
        if t.starts_with("Traceback (most recent call last)")
            && (self.source != Source::Stdout || after_error_record)
        {
            self.tb = Some(Traceback {
                line,
                lines: vec![clip(t)],
                thread_header: self.thread_header.take(),
                ..Default::default()
            });
            return;
        }
        self.after_error_record = level == Some("ERROR");
        self.plain_line(line, level, t, out);
    }

    fn start_task(&mut self, line: u64, out: &mut Vec<Event>) {
        // A task runs only after the worker printed its ready line: start-up is over.
        self.started = true;
        if self.task.as_ref().is_some_and(|t| !t.progressed) {
            return; // a second marker of the same task
        }
        self.task = Some(Task::default());
        out.push(Event {
            line,
            kind: EventKind::TaskStart,
        });
        // Every version's task starts by preparing: image inputs, downloads of the mode's
        // components, then (after `Loading models`) the prompts.
        self.phase = None;
        self.enter(line, Phase::Preparation, out);
    }

    /// Fooocus-API's `[Task Queue]` start: a task still open here never printed its end.
    fn start_api_task(&mut self, line: u64, no_end_after_stop: bool, out: &mut Vec<Event>) {
        if self.end_task() {
            out.push(Event {
                line,
                kind: EventKind::TaskEnd { seconds: None },
            });
        }
        self.start_task(line, out);
        if let Some(t) = self.task.as_mut() {
            t.api = no_end_after_stop;
        }
    }

    /// A tqdm bar (`bar_parts` found it), then whatever was glued after it (more bars, or
    /// one other line; a loop, so a line of endless glued bars cannot grow the stack).
    fn bar_line(&mut self, line: u64, s: &str, desc: &str, rest: &str, out: &mut Vec<Event>) {
        let (mut s, mut desc, mut rest) = (s, desc, rest);
        loop {
            self.one_bar(line, s, desc, out);
            let next = rest.trim_start();
            if next.is_empty() {
                return;
            }
            match bar_parts(next) {
                Some((d, r)) if r.len() < rest.len() => (s, desc, rest) = (next, d, r),
                _ => return self.plain_line(line, None, next, out),
            }
        }
    }

    fn one_bar(&mut self, line: u64, s: &str, desc: &str, out: &mut Vec<Event>) {
        // Sampling bars carry no description; text before a bar is tqdm's description of
        // other work (`Fetching 3 files:`), or a line that merely contains one.
        let Some((k, n)) = tqdm_step(s).filter(|_| desc.is_empty()) else {
            // Byte-unit bars and described ones (`Fetching 3 files:`): downloads.
            out.push(activity(line, "download"));
            return;
        };
        // The first bar of a sampler run (`0/N`, or a later step when tqdm drew none before)
        // enters sampling; its last (`N/N`, drawn once the loop is over) leaves it for the VAE
        // decode. A bar redrawn, or the final bar drawn again at close, changes nothing. Read
        // apart, stderr's parser never sees the task's lines: a run that starts over (a new
        // task after a stop) enters sampling again even if this parser saw no other phase.
        let same_run = self
            .last_bar
            .is_some_and(|(last, total)| total == n && k >= last);
        self.last_bar = Some((k, n));
        let redraw = same_run
            && (self.phase == Some(Phase::Sampling)
                || (self.phase == Some(Phase::Decode) && k == n));
        if !redraw {
            self.phase = None;
            self.enter(line, Phase::Sampling, out);
        }
        self.step_bar(line, k, n, out);
        if k == n {
            self.enter(line, Phase::Decode, out);
        }
    }

    fn step_bar(&mut self, line: u64, k: u32, n: u32, out: &mut Vec<Event>) {
        match self.task.as_mut() {
            // 2.5's Enhance runs the sampler again per detected region: real steps (a stall
            // limit must see them), but never a new image of the task.
            Some(task) if task.enhancing => out.push(Event {
                line,
                kind: EventKind::Progress { step: k, total: n },
            }),
            Some(task) => {
                if !task.explicit_images && !task.image_running {
                    // 2.0-2.3: an image starts with its first step; N = the prompts encoded.
                    let index = task.images_done + 1;
                    let total = task.encodings.max(index);
                    task.image_running = true;
                    out.push(Event {
                        line,
                        kind: EventKind::ImageStart { index, total },
                    });
                }
                task.progressed = true;
                out.push(Event {
                    line,
                    kind: EventKind::Progress { step: k, total: n },
                });
            }
            // A sampling bar of a task whose start was not seen (or a fork that prints none).
            None => out.push(Event {
                line,
                kind: EventKind::Progress { step: k, total: n },
            }),
        }
    }

    /// Fooocus is ready at `url`: start-up is over, and with it the start-up model load.
    fn ready(&mut self, line: u64, url: String, out: &mut Vec<Event>) {
        self.started = true;
        self.phase = None;
        out.push(Event {
            line,
            kind: EventKind::Ready { url },
        });
    }

    /// The worker is up but its ready line was lost: ready at Gradio's URL, now if it was
    /// printed already, or when it is.
    fn ready_line_lost(&mut self, line: u64, out: &mut Vec<Event>) {
        self.ready_line_lost = true;
        if let Some(url) = self.listening_url.clone() {
            self.ready(line, url, out);
        }
    }

    /// The lines Fooocus prints while it starts, each at the start of its line in its own
    /// format; true if `s` was one. Called only before ready.
    fn startup_line(&mut self, line: u64, s: &str, out: &mut Vec<Event>) -> bool {
        // Gradio's launch(): `Running on local URL:  http://127.0.0.1:7865` (print, stdout).
        if let Some(url) = url_at_start(s, "Running on local URL:") {
            out.push(Event {
                line,
                kind: EventKind::Listening {
                    url: url.to_string(),
                },
            });
            if self.listening_url.is_none() {
                self.listening_url = Some(url.to_string());
            }
            if self.ready_line_lost {
                self.ready(line, url.to_string(), out);
            }
            return true;
        }
        // The worker thread, once its imports are done (`async_worker.py`): `App started
        // successful. Use the app with http://127.0.0.1:7865/ or 127.0.0.1:7865`.
        if let Some(rest) = s.strip_prefix("App started successful.") {
            match url_at_start(rest.trim_start(), "Use the app with") {
                Some(url) => self.ready(line, url.trim_end_matches('/').to_string(), out),
                // `Use the app with None`: the app's URL was not set yet (the same race as
                // below, had `launch()` begun).
                None => self.ready_line_lost(line, out),
            }
            return true;
        }
        // The same `try` when the worker's imports (the model load) finished before `launch()`
        // set the app's URL: it prints the exception it caught instead (`print(e)`), and Fooocus
        // comes up all the same (tests/real, scenario R, forces this order).
        if self.source != Source::Stderr && lost_ready_line(s) {
            self.ready_line_lost(line, out);
            return true;
        }
        // Fooocus-API: uvicorn's own logger, `INFO:     Uvicorn running on URL (Press CTRL+C to
        // quit)`, on stderr.
        if let Some(url) = s
            .strip_prefix("INFO:")
            .and_then(|r| url_at_start(r.trim_start(), "Uvicorn running on"))
            .filter(|_| self.source != Source::Stdout)
        {
            self.started = true;
            self.phase = None;
            out.push(Event {
                line,
                kind: EventKind::Listening {
                    url: url.to_string(),
                },
            });
            out.push(Event {
                line,
                kind: EventKind::Ready {
                    url: url.to_string(),
                },
            });
            return true;
        }
        // launch.py, before anything else.
        if let Some(v) = s.strip_prefix("Fooocus version:") {
            self.worker_survives_tasks = worker_survives_tasks(v.trim());
            out.push(Event {
                line,
                kind: EventKind::Version {
                    version: v.trim().to_string(),
                },
            });
            return true;
        }
        // torch's warning when it first sees the GPU (stderr, at start-up): `NVIDIA GeForce
        // RTX 5090 with CUDA capability sm_120 is not compatible with the current PyTorch
        // installation.`, then `The current PyTorch install supports CUDA capabilities sm_50
        // ... sm_90.` A GPU newer than every one listed is the failure every generation will
        // hit (an older one is another matter).
        if self.source != Source::Stdout {
            if let Some(cap) = unsupported_capability(s) {
                self.unsupported_gpu = Some(cap);
                return true;
            }
            if let Some(built) =
                s.strip_prefix("The current PyTorch install supports CUDA capabilities")
            {
                let newest = built
                    .split_whitespace()
                    .filter_map(|c| parse_u32(c.trim_start_matches("sm_").trim_end_matches('.')))
                    .max();
                if let (Some(cap), Some(newest)) = (self.unsupported_gpu.take(), newest) {
                    if cap > newest {
                        out.push(Event {
                            line,
                            kind: EventKind::KnownFailure {
                                failure: KnownFailure::GpuTooNew,
                            },
                        });
                    }
                }
                return true;
            }
        }
        // launch.py's requirements install, before anything else runs (no prompt yet).
        if file_locked(s) {
            out.push(Event {
                line,
                kind: EventKind::KnownFailure {
                    failure: KnownFailure::FileLocked,
                },
            });
            return true;
        }
        // The worker thread, before its ready line (2.2+).
        if let Some(pid) = s
            .strip_prefix("Started worker with PID ")
            .and_then(|p| parse_u32(p.trim()))
        {
            out.push(Event {
                line,
                kind: EventKind::WorkerStarted { pid },
            });
            return true;
        }
        false
    }

    /// Whether the open task is in 2.5's enhance phase, after its images: the task's start,
    /// image and per-image lines were printed before it and cannot come again (only the
    /// Enhance detection prompt, echoed verbatim, can write them here).
    fn enhancing(&self) -> bool {
        self.task.as_ref().is_some_and(|t| t.enhancing)
    }

    fn plain_line(&mut self, line: u64, level: Option<&str>, t: &str, out: &mut Vec<Event>) {
        let s = t.trim_start();
        if s.is_empty() {
            return;
        }
        if s.starts_with("Exception in thread ") {
            // Python's threading excepthook (stderr). Dead or not is decided by its traceback
            // (Python 3.9 and older print no thread function name: `Exception in thread
            // Thread-2:`).
            if self.source != Source::Stdout {
                self.thread_header = Some(line);
            }
            return;
        }
        if self.source == Source::Merged && launch_line(t) {
            // A saved log can hold several launches (a restart): each starts afresh.
            self.new_launch();
            return;
        }
        if !self.started && self.startup_line(line, s, out) {
            return;
        }
        let enhancing = self.enhancing();
        if s.starts_with("[Task Queue] Task queue start task") && !enhancing {
            self.start_api_task(line, true, out);
            return;
        }
        if s.starts_with("[Task Queue] Start task") && !enhancing {
            self.start_api_task(line, false, out);
            return;
        }
        // Fooocus-API 0.4 logs the mode lines as `[Fooocus] Enter LCM mode.`.
        let m = s.strip_prefix("[Fooocus] ").unwrap_or(s);
        if (m.starts_with("Enter LCM mode")
            || m.starts_with("Enter Lightning mode")
            || m.starts_with("Enter Hyper-SD mode")
            || s.starts_with("[Parameters] Adaptive CFG")
            || s.starts_with("[Fooocus] Initializing"))
            && !enhancing
        {
            self.start_task(line, out);
            return;
        }
        if let Some(rest) = s
            .strip_prefix("[Fooocus] Preparing task ")
            .filter(|_| !enhancing)
        {
            let nums = rest.split_whitespace().next().unwrap_or("");
            if let Some((i, n)) = nums
                .split_once('/')
                .and_then(|(i, n)| Some((parse_u32(i)?, parse_u32(n)?)))
            {
                if self.task.is_none() {
                    self.start_task(line, out);
                }
                let task = self.task.as_mut().expect("task");
                task.explicit_images = true;
                task.progressed = true;
                task.image_running = true;
                out.push(Event {
                    line,
                    kind: EventKind::ImageStart { index: i, total: n },
                });
                // 2.4+: each image is prepared (its conditioning applied, the model moved)
                // before its first step.
                self.enter(line, Phase::Preparation, out);
            }
            return;
        }
        // 2.1+ `Encoding positive #k`; 2.0.x and MRE `Encoding base positive #k`.
        if let Some(rest) = s
            .strip_prefix("[Fooocus] Encoding positive #")
            .or_else(|| s.strip_prefix("[Fooocus] Encoding base positive #"))
        {
            if let (Some(task), Some(k)) = (
                self.task.as_mut(),
                parse_u32(rest.split_whitespace().next().unwrap_or("")),
            ) {
                task.encodings = task.encodings.max(k);
            }
        }
        // tqdm draws on stderr: a bar on stdout is text that merely looks like one.
        if let Some((desc, rest)) = bar_parts(s).filter(|_| self.source != Source::Stdout) {
            self.bar_line(line, s, desc, rest, out);
            return;
        }
        // The end of one image: `Generating and saving time` (2.0.80+; Fooocus-API logs it
        // as `[Fooocus] Generating ...`), `Diffusion time` (2.0.0-2.0.78 and MRE).
        if let Some(rest) = s
            .strip_prefix("Generating and saving time:")
            .or_else(|| s.strip_prefix("[Fooocus] Generating and saving time:"))
            .or_else(|| s.strip_prefix("Diffusion time:"))
            .filter(|_| !enhancing)
        {
            if let Some(secs) = leading_f64(rest.trim()) {
                if let Some(task) = self.task.as_mut() {
                    task.images_done += 1;
                    task.image_running = false;
                    task.progressed = true;
                }
                // The next image's phases start afresh (read apart, its sampling is told by
                // the other stream's parser, which this one never hears).
                self.phase = None;
                out.push(Event {
                    line,
                    kind: EventKind::ImageDone { seconds: secs },
                });
            }
            return;
        }
        if let Some(rest) = s.strip_prefix("Total time:") {
            if let Some(secs) = leading_f64(rest.trim()) {
                self.end_task();
                out.push(Event {
                    line,
                    kind: EventKind::TaskEnd {
                        seconds: Some(secs),
                    },
                });
            }
            return;
        }
        if let Some(rest) = s.strip_prefix("[Task Queue] Finish task") {
            if let Some(msg) = rest.trim_start().strip_prefix("with error") {
                // 0.5: `with error: {e}, job_id=J`; 0.3 and 0.4: `with error, job_id=J` (or
                // `seq=J`), the error itself logged before. The job's id is no message.
                let msg = msg.trim_start_matches([':', ',', ' ']);
                let msg = match msg.rsplit_once(", job_id=") {
                    Some((m, _)) => m,
                    None if msg.starts_with("job_id=") || msg.starts_with("seq=") => "",
                    None => msg,
                };
                out.push(Event {
                    line,
                    kind: EventKind::Error {
                        exception: "TaskError".into(),
                        message: clip(msg),
                        traceback: Vec::new(),
                    },
                });
                if is_oom_text(msg) {
                    out.push(Event {
                        line,
                        kind: EventKind::Oom { message: clip(msg) },
                    });
                }
                if is_gpu_too_new_text(msg) {
                    out.push(Event {
                        line,
                        kind: EventKind::KnownFailure {
                            failure: KnownFailure::GpuTooNew,
                        },
                    });
                }
            }
            // 0.5 prints it after a Stop too, when the task is already over here.
            if self.end_task() {
                out.push(Event {
                    line,
                    kind: EventKind::TaskEnd { seconds: None },
                });
            }
            return;
        }
        if s == "User stopped" || s == "[Fooocus] User stopped" {
            out.push(Event {
                line,
                kind: EventKind::Stopped,
            });
            if self.task.as_ref().is_some_and(|t| t.api) {
                // Fooocus-API 0.3/0.4 print no "Finish task" after a Stop (0.4.1.1
                // `worker.py:1014-1037`).
                self.end_task();
                out.push(Event {
                    line,
                    kind: EventKind::TaskEnd { seconds: None },
                });
            }
            return;
        }
        if s == "User skipped" {
            // The skipped image is over: the next step starts the next image (2.0-2.3).
            if let Some(task) = self.task.as_mut() {
                task.images_done += 1;
                task.image_running = false;
            }
            out.push(Event {
                line,
                kind: EventKind::Skipped,
            });
            return;
        }
        if s.starts_with("Process error:") || s.starts_with("[Fooocus] Process error:") {
            // Fooocus-API: an error inside the image loop, logged with its traceback next;
            // no "Finish task" follows.
            if let Some(task) = self.task.as_mut().filter(|t| t.api) {
                task.end_after_traceback = true;
            }
            return;
        }
        // torch's message on a line of its own: Fooocus-API's `logging.exception` record (on
        // stderr in 0.3, an ERROR record of its logger on stdout in 0.4). Not any stdout line:
        // one can start with a prompt's second line.
        if is_gpu_too_new_text(s) && (self.source != Source::Stdout || level == Some("ERROR")) {
            // As for OOM below: the traceback logged next tells it again.
            if !self.task.as_ref().is_some_and(|t| t.end_after_traceback) {
                out.push(Event {
                    line,
                    kind: EventKind::KnownFailure {
                        failure: KnownFailure::GpuTooNew,
                    },
                });
            }
            return;
        }
        if is_oom_text(s) && (self.source != Source::Stdout || level == Some("ERROR")) {
            // Fooocus-API logs the message right before its traceback, which tells it again.
            if !self.task.as_ref().is_some_and(|t| t.end_after_traceback) {
                out.push(Event {
                    line,
                    kind: EventKind::Oom { message: clip(s) },
                });
            }
            return;
        }
        // Only outside 2.5's enhance phase: there the detection prompt is echoed verbatim,
        // new lines included, so any line on stdout may be the user's (its phases come from
        // the sampler's bars alone, on stderr).
        if !enhancing {
            if let Some(text) = s.strip_prefix("[Fooocus] ") {
                self.vae_encoding = text.starts_with("VAE") && text.contains("ncoding");
            }
            if let Some(phase) = phase_of(s, self.vae_encoding) {
                self.enter(line, phase, out);
            }
        }
        if let Some(what) = activity_of(s) {
            // 2.5: the enhance phase after the images (`[Enhance] Skipping` ends a task without
            // one).
            if s.starts_with("[Fooocus] Processing enhance")
                || s.starts_with("[Fooocus] Preparing enhancement ")
            {
                if let Some(task) = self.task.as_mut() {
                    task.enhancing = true;
                }
            }
            out.push(activity(line, what));
        }
    }

    /// End of input: an open traceback becomes its error event.
    pub fn finish(&mut self, out: &mut Vec<Event>) {
        self.flush_traceback(true, out);
    }

    /// The stream went quiet: a traceback whose exception line was seen is complete (only
    /// a next line could have continued it). A dead worker thread prints nothing after its
    /// traceback, so without this its death would be seen only when Fooocus exits.
    pub fn settle(&mut self, out: &mut Vec<Event>) {
        if self
            .tb
            .as_ref()
            .is_some_and(|tb| tb.exception.is_some() && !tb.chained)
        {
            self.flush_traceback(false, out);
        }
    }
}
