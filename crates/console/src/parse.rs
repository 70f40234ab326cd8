//! Lines to events. A small state machine: whether a task runs, what it has shown so far, and
//! an open Python traceback (kept together as one error event, bounded).

use serde::{Deserialize, Serialize};

/// One recognised event, at the 1-based input line where its text starts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub line: u64,
    #[serde(flatten)]
    pub kind: EventKind,
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
    /// A sampling step (never a model-download bar).
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
    /// phase line, the 2.5 enhance phase. `what` is `model_load`, `download`, `task` or
    /// `enhance` (never the line itself: it can hold the prompt).
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
    /// The dead worker was told (as soon as its frames showed it, not at the traceback's end:
    /// a dead worker prints nothing after it that would close the traceback).
    death_told: bool,
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
    task: Option<Task>,
    tb: Option<Traceback>,
    /// Line of an `Exception in thread ...:` header whose traceback has not started yet.
    thread_header: Option<u64>,
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

/// Out-of-memory wording of CUDA and the CPU allocator.
pub fn is_oom_text(t: &str) -> bool {
    t.contains("CUDA out of memory")
        || t.contains("OutOfMemoryError")
        || t.contains("CUDA error: out of memory")
        || t.contains("DefaultCPUAllocator: not enough memory")
        || t.contains("can't allocate memory")
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

fn url_after<'a>(t: &'a str, marker: &str) -> Option<&'a str> {
    let i = t.find(marker)? + marker.len();
    let rest = t[i..].trim_start();
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    let url = &rest[..end];
    url.starts_with("http").then_some(url)
}

/// The prefix Fooocus-API 0.4+ puts before its log lines (`fooocusapi/utils/logger.py`:
/// `[%(asctime)s] %(levelname)-8s %(message)s`), removed so the message is matched alone.
fn strip_logger_prefix(t: &str) -> &str {
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
        return t;
    }
    let rest = &t[SHAPE.len()..];
    let level_end = rest.find(' ').unwrap_or(rest.len());
    match &rest[..level_end] {
        "DEBUG" | "INFO" | "WARNING" | "ERROR" | "CRITICAL" => rest[level_end..].trim_start(),
        _ => t,
    }
}

/// A tqdm bar in `t`: the text before it (tqdm's description, e.g. `Fetching 3 files:`) and
/// the text glued after its closing `]` (in a merged log, the next stdout line can follow a
/// bar that never printed a newline).
fn bar_parts(t: &str) -> Option<(&str, &str)> {
    let pipe = t.find("%|")?;
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

    /// Whether a task is open (started and not ended).
    pub fn in_task(&self) -> bool {
        self.task.is_some()
    }

    fn flush_traceback(&mut self, out: &mut Vec<Event>) {
        let Some(tb) = self.tb.take() else { return };
        let (exception, message) = tb
            .exception
            .clone()
            .unwrap_or_else(|| ("UnknownError".into(), String::new()));
        let oom = is_oom_text(&exception)
            || is_oom_text(&message)
            || tb.lines.iter().any(|l| is_oom_text(l));
        let port = port_taken(&message);
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
        if self.task.as_ref().is_some_and(|t| t.end_after_traceback) {
            self.task = None;
            out.push(Event {
                line: tb.line,
                kind: EventKind::TaskEnd { seconds: None },
            });
        }
    }

    fn tb_push(tb: &mut Traceback, t: &str, out: &mut Vec<Event>) {
        if t.ends_with(", in worker") || t.ends_with(", in task_schedule_loop") {
            tb.through_worker = true;
        }
        if t.ends_with(", in _bootstrap_inner") {
            tb.thread_top = true;
        }
        if tb.lines.len() < MAX_TRACEBACK_LINES {
            tb.lines.push(clip(t));
        }
        if let (Some(header), true, false) = (
            tb.thread_header.or(tb.thread_top.then_some(tb.line)),
            tb.through_worker,
            tb.death_told,
        ) {
            // The exception escaped the worker loop: the thread is gone (Fooocus before
            // 2.0.90 and MRE on any task error; any version when the worker fails to start).
            tb.death_told = true;
            out.push(Event {
                line: header,
                kind: EventKind::WorkerDied,
            });
        }
    }

    /// Feed one line (as split by [`crate::LineSplitter`]).
    pub fn feed_line(&mut self, line: u64, text: &str, out: &mut Vec<Event>) {
        let text = strip_logger_prefix(text);
        let t = text.trim_end();
        if let Some(tb) = self.tb.as_mut() {
            if t.starts_with("Traceback (most recent call last)")
                && (tb.chained || tb.exception.is_none())
            {
                tb.chained = false;
                Self::tb_push(tb, t, out);
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
                Self::tb_push(tb, t, out);
                return;
            }
            let indented = text.starts_with([' ', '\t']);
            if tb.exception.is_none() {
                if indented {
                    Self::tb_push(tb, t, out);
                    return;
                }
                if let Some((name, msg)) = exception_line(t) {
                    tb.exception = Some((name.to_string(), clip(msg)));
                    Self::tb_push(tb, t, out);
                    return;
                }
                tb.foreign += 1;
                if tb.foreign <= MAX_FOREIGN_LINES {
                    // Another stream's line in a merged log: the traceback goes on after it.
                    self.plain_line(line, t, out);
                    return;
                }
            } else if indented && tb.lines.len() < MAX_TRACEBACK_LINES {
                // The message of an exception can run over several indented lines.
                tb.lines.push(clip(t));
                return;
            }
            self.flush_traceback(out);
        }
        if t.starts_with("Traceback (most recent call last)") {
            self.tb = Some(Traceback {
                line,
                lines: vec![clip(t)],
                thread_header: self.thread_header.take(),
                ..Default::default()
            });
            return;
        }
        self.plain_line(line, t, out);
    }

    fn start_task(&mut self, line: u64, out: &mut Vec<Event>) {
        if self.task.as_ref().is_some_and(|t| !t.progressed) {
            return; // a second marker of the same task
        }
        self.task = Some(Task::default());
        out.push(Event {
            line,
            kind: EventKind::TaskStart,
        });
    }

    /// Fooocus-API's `[Task Queue]` start: a task still open here never printed its end.
    fn start_api_task(&mut self, line: u64, no_end_after_stop: bool, out: &mut Vec<Event>) {
        if self.task.take().is_some() {
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
                _ => return self.plain_line(line, next, out),
            }
        }
    }

    fn one_bar(&mut self, line: u64, s: &str, desc: &str, out: &mut Vec<Event>) {
        match (tqdm_step(s), self.task.as_mut()) {
            (Some(_), Some(task)) if task.enhancing => out.push(activity(line, "enhance")),
            (Some((k, n)), Some(task)) => {
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
            // A sampling bar of a task whose start was not seen (or a fork that prints
            // none); sampling bars carry no description.
            (Some((k, n)), None) if desc.is_empty() => out.push(Event {
                line,
                kind: EventKind::Progress { step: k, total: n },
            }),
            // Byte-unit bars and described ones (`Fetching 3 files:`): downloads.
            _ => out.push(activity(line, "download")),
        }
    }

    fn plain_line(&mut self, line: u64, t: &str, out: &mut Vec<Event>) {
        let s = t.trim_start();
        if s.is_empty() {
            return;
        }
        if s.starts_with("Exception in thread ") {
            // Dead or not is decided by its traceback (Python 3.9 and older print no thread
            // function name: `Exception in thread Thread-2:`).
            self.thread_header = Some(line);
            return;
        }
        if let Some(port) = port_taken(s) {
            out.push(Event {
                line,
                kind: EventKind::PortTaken { port },
            });
            return;
        }
        if let Some(url) = url_after(s, "Running on local URL:") {
            out.push(Event {
                line,
                kind: EventKind::Listening {
                    url: url.to_string(),
                },
            });
            return;
        }
        if s.starts_with("App started successful") {
            if let Some(url) = url_after(s, "Use the app with") {
                out.push(Event {
                    line,
                    kind: EventKind::Ready {
                        url: url.trim_end_matches('/').to_string(),
                    },
                });
            }
            return;
        }
        if let Some(url) = url_after(s, "Uvicorn running on") {
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
            return;
        }
        if let Some(v) = s.strip_prefix("Fooocus version:") {
            out.push(Event {
                line,
                kind: EventKind::Version {
                    version: v.trim().to_string(),
                },
            });
            return;
        }
        if let Some(pid) = s
            .strip_prefix("Started worker with PID ")
            .and_then(|p| parse_u32(p.trim()))
        {
            out.push(Event {
                line,
                kind: EventKind::WorkerStarted { pid },
            });
            return;
        }
        if s.starts_with("[Task Queue] Task queue start task") {
            self.start_api_task(line, true, out);
            return;
        }
        if s.starts_with("[Task Queue] Start task") {
            self.start_api_task(line, false, out);
            return;
        }
        // Fooocus-API 0.4 logs the mode lines as `[Fooocus] Enter LCM mode.`.
        let m = s.strip_prefix("[Fooocus] ").unwrap_or(s);
        if m.starts_with("Enter LCM mode")
            || m.starts_with("Enter Lightning mode")
            || m.starts_with("Enter Hyper-SD mode")
            || s.starts_with("[Parameters] Adaptive CFG")
            || s.starts_with("[Fooocus] Initializing")
        {
            self.start_task(line, out);
            return;
        }
        if let Some(rest) = s.strip_prefix("[Fooocus] Preparing task ") {
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
        if let Some((desc, rest)) = bar_parts(s) {
            self.bar_line(line, s, desc, rest, out);
            return;
        }
        // The end of one image: `Generating and saving time` (2.0.80+; Fooocus-API logs it
        // as `[Fooocus] Generating ...`), `Diffusion time` (2.0.0-2.0.78 and MRE).
        if let Some(rest) = s
            .strip_prefix("Generating and saving time:")
            .or_else(|| s.strip_prefix("[Fooocus] Generating and saving time:"))
            .or_else(|| s.strip_prefix("Diffusion time:"))
        {
            if let Some(secs) = leading_f64(rest.trim()) {
                if let Some(task) = self.task.as_mut() {
                    task.images_done += 1;
                    task.image_running = false;
                    task.progressed = true;
                }
                out.push(Event {
                    line,
                    kind: EventKind::ImageDone { seconds: secs },
                });
            }
            return;
        }
        if let Some(rest) = s.strip_prefix("Total time:") {
            if let Some(secs) = leading_f64(rest.trim()) {
                self.task = None;
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
                let msg = msg.trim_start_matches([':', ',', ' ']).to_string();
                out.push(Event {
                    line,
                    kind: EventKind::Error {
                        exception: "TaskError".into(),
                        message: clip(&msg),
                        traceback: Vec::new(),
                    },
                });
                if is_oom_text(&msg) {
                    out.push(Event {
                        line,
                        kind: EventKind::Oom {
                            message: clip(&msg),
                        },
                    });
                }
            }
            // 0.5 prints it after a Stop too, when the task is already over here.
            if self.task.take().is_some() {
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
                self.task = None;
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
        if is_oom_text(s) {
            // Fooocus-API logs the message right before its traceback, which tells it again.
            if !self.task.as_ref().is_some_and(|t| t.end_after_traceback) {
                out.push(Event {
                    line,
                    kind: EventKind::Oom { message: clip(s) },
                });
            }
            return;
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
        self.flush_traceback(out);
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
            self.flush_traceback(out);
        }
    }
}
