//! Fooocus's console as the guard keeps it: a bounded buffer of lines for the UI and the
//! parser that turns the same bytes into [`Signal`]s (the parser's events, and model downloads).

use std::collections::VecDeque;

use fooocus_console::{EventKind, LineSplitter, Parser, Source};
use serde::{Deserialize, Serialize};

use crate::generation::Signal;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
    /// The guard's own lines ("[guard] generation stopped: timeout").
    Guard,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
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
pub struct StreamReader {
    splitter: LineSplitter,
    parser: Parser,
    events: Vec<fooocus_console::Event>,
}

impl Default for StreamReader {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamReader {
    /// A reader of a merged stream (both outputs in one).
    pub fn new() -> Self {
        Self::with_parser(Parser::new())
    }

    /// A reader of one of Fooocus's outputs: the parser knows which, so a line is read only
    /// as what Fooocus writes to that stream (a prompt echoed on stdout is never a traceback).
    pub fn for_stream(stream: Stream) -> Self {
        Self::with_parser(Parser::for_source(match stream {
            Stream::Stdout => Source::Stdout,
            Stream::Stderr => Source::Stderr,
            Stream::Guard => Source::Merged,
        }))
    }

    fn with_parser(parser: Parser) -> Self {
        StreamReader {
            splitter: LineSplitter::new(),
            parser,
            events: Vec::new(),
        }
    }

    /// Feed bytes; each complete line goes to `line`, each recognised event to `signal`.
    pub fn feed(
        &mut self,
        bytes: &[u8],
        mut line: impl FnMut(&str),
        mut signal: impl FnMut(Signal),
    ) {
        let mut downloads = Vec::new();
        let (parser, events) = (&mut self.parser, &mut self.events);
        self.splitter.feed(bytes, |l| {
            line(l.text);
            let before = events.len();
            parser.feed_line(l.line, l.text, events);
            // A download's progress is read from its own line (the event carries no text).
            if events[before..]
                .iter()
                .any(|e| matches!(&e.kind, EventKind::Activity { what } if what == "download"))
            {
                downloads.extend(fooocus_console::ModelDownload::from_line(l.text));
            }
        });
        for d in downloads.drain(..) {
            signal(Signal::Download(d));
        }
        for e in self.events.drain(..) {
            signal(Signal::Event(e.kind));
        }
    }

    /// The stream has been quiet for a while: a complete traceback becomes its event.
    pub fn settle(&mut self, mut signal: impl FnMut(Signal)) {
        self.parser.settle(&mut self.events);
        for e in self.events.drain(..) {
            signal(Signal::Event(e.kind));
        }
    }

    /// The stream closed: flush a partial last line and an open traceback.
    pub fn finish(&mut self, mut line: impl FnMut(&str), mut signal: impl FnMut(Signal)) {
        let (parser, events) = (&mut self.parser, &mut self.events);
        self.splitter.finish(|l| {
            line(l.text);
            parser.feed_line(l.line, l.text, events);
        });
        parser.finish(events);
        for e in self.events.drain(..) {
            signal(Signal::Event(e.kind));
        }
    }
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
}
