//! Fooocus's console as the guard keeps it: a bounded buffer of lines for the UI and the
//! parser that turns the same bytes into [`Signal`]s.

use std::collections::VecDeque;

use fooocus_console::{EventKind, LineSplitter, Parser};
use serde::{Deserialize, Serialize};

use crate::generation::Signal;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
    /// The guard's own lines ("[guard] generation stopped: timeout").
    Guard,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleLine {
    /// Increasing over the guard's life; the UI asks for lines after the last one it has.
    pub n: u64,
    pub stream: Stream,
    pub text: String,
}

/// The last `capacity` lines.
#[derive(Debug)]
pub struct ConsoleBuffer {
    lines: VecDeque<ConsoleLine>,
    capacity: usize,
    next: u64,
}

impl ConsoleBuffer {
    pub fn new(capacity: usize) -> Self {
        ConsoleBuffer {
            lines: VecDeque::with_capacity(capacity.min(4096)),
            capacity,
            next: 1,
        }
    }

    pub fn push(&mut self, stream: Stream, text: &str) -> ConsoleLine {
        if self.lines.len() == self.capacity {
            self.lines.pop_front();
        }
        let line = ConsoleLine {
            n: self.next,
            stream,
            text: text.to_string(),
        };
        self.next += 1;
        self.lines.push_back(line.clone());
        line
    }

    /// Lines after `after` (all when None) that contain `query` (case-insensitive), at most
    /// `max`, oldest first.
    pub fn query(&self, after: Option<u64>, query: Option<&str>, max: usize) -> Vec<ConsoleLine> {
        let q = query.filter(|q| !q.is_empty()).map(|q| q.to_lowercase());
        let mut out: Vec<ConsoleLine> = self
            .lines
            .iter()
            .rev()
            .filter(|l| after.is_none_or(|a| l.n > a))
            .filter(|l| q.as_ref().is_none_or(|q| l.text.to_lowercase().contains(q)))
            .take(max)
            .cloned()
            .collect();
        out.reverse();
        out
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

/// One output stream of Fooocus: splits it into lines and parses it.
/// Fooocus's two pipes into one parser. Each pipe has its own line splitter (their lines
/// interleave mid-line), but the lines go to a single parser in the order they arrive: tqdm
/// draws its bars on stderr while the task's lines come on stdout, and a bar only means a step
/// of the task the other stream opened.
pub struct ConsoleReader {
    out: LineSplitter,
    err: LineSplitter,
    parser: Parser,
    /// Lines of both streams, numbered in arrival order.
    lines: u64,
    /// Streams that reached their end.
    closed: [bool; 2],
    events: Vec<fooocus_console::Event>,
}

impl Default for ConsoleReader {
    fn default() -> Self {
        Self::new()
    }
}

impl ConsoleReader {
    pub fn new() -> Self {
        ConsoleReader {
            out: LineSplitter::new(),
            err: LineSplitter::new(),
            parser: Parser::new(),
            lines: 0,
            closed: [false; 2],
            events: Vec::new(),
        }
    }

    fn index(stream: Stream) -> usize {
        usize::from(stream == Stream::Stderr)
    }

    /// Feed bytes of `stream`; each complete line goes to `line`, each event to `signal`.
    pub fn feed(
        &mut self,
        stream: Stream,
        bytes: &[u8],
        mut line: impl FnMut(&str),
        signal: impl FnMut(Signal),
    ) {
        let (parser, events, n) = (&mut self.parser, &mut self.events, &mut self.lines);
        let splitter = if Self::index(stream) == 0 {
            &mut self.out
        } else {
            &mut self.err
        };
        splitter.feed(bytes, |l| {
            line(l.text);
            *n += 1;
            parser.feed_line(*n, l.text, events);
        });
        self.drain(signal);
    }

    /// `stream` closed: flush its partial last line; once both closed, an open traceback.
    pub fn finish(
        &mut self,
        stream: Stream,
        mut line: impl FnMut(&str),
        signal: impl FnMut(Signal),
    ) {
        let i = Self::index(stream);
        let (parser, events, n) = (&mut self.parser, &mut self.events, &mut self.lines);
        let splitter = if i == 0 { &mut self.out } else { &mut self.err };
        splitter.finish(|l| {
            line(l.text);
            *n += 1;
            parser.feed_line(*n, l.text, events);
        });
        self.closed[i] = true;
        if self.closed == [true, true] {
            self.parser.finish(&mut self.events);
        }
        self.drain(signal);
    }

    /// The console has been quiet for a while: a complete traceback becomes its event.
    pub fn settle(&mut self, signal: impl FnMut(Signal)) {
        self.parser.settle(&mut self.events);
        self.drain(signal);
    }

    fn drain(&mut self, mut signal: impl FnMut(Signal)) {
        for e in self.events.drain(..) {
            if let Some(s) = signal_of(e.kind) {
                signal(s);
            }
        }
    }
}

/// The parser's events in the supervisor's words.
pub fn signal_of(kind: EventKind) -> Option<Signal> {
    Some(match kind {
        EventKind::Listening { url } => Signal::Listening { url },
        EventKind::Ready { url } => Signal::Ready { url },
        EventKind::Version { version } => Signal::Version { version },
        EventKind::TaskStart => Signal::TaskStart,
        EventKind::ImageStart { index, total } => Signal::ImageStart { index, total },
        EventKind::Progress { step, total } => Signal::Progress { step, total },
        EventKind::ImageDone { .. } => Signal::ImageDone,
        EventKind::TaskEnd { .. } => Signal::TaskEnd,
        EventKind::Stopped => Signal::Stopped,
        EventKind::Skipped => Signal::Skipped,
        EventKind::Error {
            exception, message, ..
        } => Signal::Error { exception, message },
        EventKind::Oom { message } => Signal::Oom { message },
        EventKind::WorkerDied => Signal::WorkerDied,
        EventKind::Activity { what } => Signal::Activity { what },
        EventKind::PortTaken { port } => Signal::PortTaken { port },
        EventKind::WorkerStarted { .. } => Signal::WorkerStarted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_is_bounded_and_searchable() {
        let mut b = ConsoleBuffer::new(3);
        for i in 0..5 {
            b.push(Stream::Stdout, &format!("line {i}"));
        }
        assert_eq!(b.len(), 3);
        let all = b.query(None, None, 10);
        assert_eq!(all.iter().map(|l| l.n).collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!(b.query(Some(4), None, 10).len(), 1);
        assert_eq!(b.query(None, Some("LINE 3"), 10)[0].text, "line 3");
        assert_eq!(
            b.query(None, None, 2)
                .iter()
                .map(|l| l.n)
                .collect::<Vec<_>>(),
            [4, 5]
        );
    }

    /// Fooocus 2.1 announces its images only by its first steps, and tqdm draws the steps on
    /// stderr while the task's lines come on stdout: one parser must see both.
    #[test]
    fn bars_on_stderr_count_within_the_task_stdout_opened() {
        let mut r = ConsoleReader::new();
        let mut signals = Vec::new();
        r.feed(
            Stream::Stdout,
            b"[Fooocus] Initializing ...\n[Parameters] Adaptive CFG = 7\n[Fooocus] Encoding positive #1 ...\n[Fooocus] Encoding positive #2 ...\n",
            |_| {},
            |s| signals.push(s),
        );
        r.feed(
            Stream::Stderr,
            b"  3%|3         | 1/30 [00:01<00:29,  1.00s/it]\n",
            |_| {},
            |s| signals.push(s),
        );
        assert!(
            signals
                .iter()
                .any(|s| matches!(s, Signal::ImageStart { index: 1, total: 2 })),
            "{signals:?}"
        );
        assert!(signals
            .iter()
            .any(|s| matches!(s, Signal::Progress { step: 1, total: 30 })));
    }
}
