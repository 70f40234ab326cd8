//! Fooocus's console, understood: bytes in, events out. Pure logic, no OS.
//!
//! * [`LineSplitter`]: chunks split anywhere (mid-line, mid-UTF-8) to lines, on `\n`, `\r\n`
//!   and `\r`; ANSI escapes dropped, invalid UTF-8 replaced, endless lines cut.
//! * [`Parser`]: lines to [`Event`]s for Fooocus 2.0 to 2.5, mashb1t, MRE and Fooocus-API; a
//!   line counts only where and when Fooocus itself prints it (see `parse.rs`: the console
//!   also echoes prompts).
//!
//! Line numbers are those of newline-terminated input lines (a tqdm `\r` redraw keeps its
//! line's number), so an event points at where its text starts in a saved log.

mod download;
mod parse;
mod split;

pub use download::{taken_port, ModelDownload};

pub use parse::{
    is_gpu_too_new_text, is_oom_text, tqdm_step, Event, EventKind, KnownFailure, Parser, Phase,
    Source, MAX_TRACEBACK_LINES,
};
pub use split::{LineRef, LineSplitter, DEFAULT_MAX_LINE};

use std::io::Read;

/// Splitter and parser together, for callers that only want events.
#[derive(Debug, Default)]
pub struct ConsoleParser {
    splitter: LineSplitter,
    parser: Parser,
}

impl ConsoleParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// For one of Fooocus's streams read apart (see [`Source`]).
    pub fn for_source(source: Source) -> Self {
        ConsoleParser {
            splitter: LineSplitter::default(),
            parser: Parser::for_source(source),
        }
    }

    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Event>) {
        let parser = &mut self.parser;
        self.splitter
            .feed(bytes, |l| parser.feed_line(l.line, l.text, out));
    }

    pub fn finish(&mut self, out: &mut Vec<Event>) {
        let parser = &mut self.parser;
        self.splitter
            .finish(|l| parser.feed_line(l.line, l.text, out));
        self.parser.finish(out);
    }

    /// The stream went quiet: complete what only a next line could have continued.
    pub fn settle(&mut self, out: &mut Vec<Event>) {
        self.parser.settle(out);
    }

    /// Memory held (for bound tests).
    pub fn buffered(&self) -> usize {
        self.splitter.buffered()
    }
}

/// Parse a whole console log (`fooocus-guard-cli parse-log`), calling `emit` per event.
///
/// A saved log is both of Fooocus's streams merged, so it is read with less than the live
/// guard knows: the guard reads stdout and stderr apart (a prompt is echoed on stdout, where
/// Python writes no traceback and tqdm no bar), knows when its own process started and
/// ended, and behind its gateway knows from Gradio's queue when a generation ends. Here the
/// line's shape and place are all there is, so a prompt that Fooocus echoes (2.5's Enhance
/// detection prompt keeps its new lines) can still pass for some of Fooocus's own lines: a
/// task end, a traceback, or a new launch (`[System ARGV] [...]`, after which start-up lines
/// count again). Read the result as a diagnosis of a log, not as what the guard would do.
pub fn parse_log<R: Read>(mut r: R, mut emit: impl FnMut(&Event)) -> std::io::Result<()> {
    let mut p = ConsoleParser::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        p.feed(&buf[..n], &mut out);
        for e in out.drain(..) {
            emit(&e);
        }
    }
    p.finish(&mut out);
    for e in out.drain(..) {
        emit(&e);
    }
    Ok(())
}
