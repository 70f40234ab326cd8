//! Bytes to lines: `\n`, `\r\n` and a lone `\r` (tqdm redraws) end a line; ANSI escapes are
//! dropped; invalid UTF-8 becomes U+FFFD; a line longer than the limit is cut and the rest of
//! it dropped, so memory stays bounded whatever the input.

/// One line, borrowed from the splitter's buffer until the callback returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineRef<'a> {
    /// 1-based number of the newline-terminated input line the text starts on. A `\r`
    /// redraw does not start a new number.
    pub line: u64,
    pub text: &'a str,
    /// The line was longer than the limit and was cut.
    pub truncated: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Esc {
    None,
    /// Saw ESC.
    Start,
    /// Inside `ESC [ ...` until a final byte.
    Csi,
    /// Inside `ESC ] ...` until BEL or `ESC \`.
    Osc,
    /// Saw ESC inside an OSC (maybe the `ESC \` terminator).
    OscTerminator,
}

pub const DEFAULT_MAX_LINE: usize = 16 * 1024;

#[derive(Debug)]
pub struct LineSplitter {
    buf: Vec<u8>,
    text: String,
    max: usize,
    line: u64,
    truncated: bool,
    esc: Esc,
    /// The last byte was a `\r` that ended a segment: a `\n` right after it ends nothing more.
    after_cr: bool,
}

impl Default for LineSplitter {
    fn default() -> Self {
        Self::new()
    }
}

impl LineSplitter {
    pub fn new() -> Self {
        Self::with_max_line(DEFAULT_MAX_LINE)
    }

    pub fn with_max_line(max: usize) -> Self {
        let max = max.max(16);
        LineSplitter {
            buf: Vec::with_capacity(256),
            text: String::with_capacity(256),
            max,
            line: 1,
            truncated: false,
            esc: Esc::None,
            after_cr: false,
        }
    }

    /// Bytes held for the current partial line (never more than the limit).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Capacity of the internal buffers (for memory-bound tests).
    pub fn capacity(&self) -> usize {
        self.buf.capacity() + self.text.capacity()
    }

    pub fn max_line(&self) -> usize {
        self.max
    }

    fn emit(&mut self, f: &mut impl FnMut(LineRef<'_>)) {
        self.text.clear();
        for chunk in self.buf.utf8_chunks() {
            self.text.push_str(chunk.valid());
            if !chunk.invalid().is_empty() {
                self.text.push('\u{FFFD}');
            }
        }
        f(LineRef {
            line: self.line,
            text: &self.text,
            truncated: self.truncated,
        });
        self.buf.clear();
        self.truncated = false;
    }

    pub fn feed(&mut self, bytes: &[u8], mut f: impl FnMut(LineRef<'_>)) {
        for &b in bytes {
            match self.esc {
                Esc::Start => {
                    self.esc = match b {
                        b'[' => Esc::Csi,
                        b']' => Esc::Osc,
                        _ => Esc::None,
                    };
                    continue;
                }
                Esc::Csi => {
                    if (0x40..=0x7e).contains(&b) {
                        self.esc = Esc::None;
                    } else if b == b'\n' || b == b'\r' {
                        // A broken escape never swallows a line end.
                        self.esc = Esc::None;
                    } else {
                        continue;
                    }
                    if b != b'\n' && b != b'\r' {
                        continue;
                    }
                }
                Esc::Osc => {
                    match b {
                        0x07 => self.esc = Esc::None,
                        0x1b => self.esc = Esc::OscTerminator,
                        b'\n' | b'\r' => self.esc = Esc::None,
                        _ => {}
                    }
                    if b != b'\n' && b != b'\r' {
                        continue;
                    }
                }
                Esc::OscTerminator => {
                    self.esc = if b == b'\\' { Esc::None } else { Esc::Osc };
                    continue;
                }
                Esc::None => {}
            }
            match b {
                b'\n' => {
                    if !(self.after_cr && self.buf.is_empty() && !self.truncated) {
                        self.emit(&mut f);
                    }
                    self.after_cr = false;
                    self.line += 1;
                }
                b'\r' => {
                    self.emit(&mut f);
                    self.after_cr = true;
                }
                0x1b => {
                    self.esc = Esc::Start;
                }
                _ => {
                    self.after_cr = false;
                    if self.buf.len() < self.max {
                        self.buf.push(b);
                    } else {
                        self.truncated = true;
                    }
                }
            }
        }
    }

    /// End of input: a last line without a terminator is still a line.
    pub fn finish(&mut self, mut f: impl FnMut(LineRef<'_>)) {
        if !self.buf.is_empty() || self.truncated {
            self.emit(&mut f);
        }
        self.esc = Esc::None;
        self.after_cr = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<(u64, String)> {
        let mut s = LineSplitter::with_max_line(32);
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, |l| out.push((l.line, l.text.to_string())));
        }
        s.finish(|l| out.push((l.line, l.text.to_string())));
        out
    }

    #[test]
    fn line_ends_and_numbers() {
        let out = split(&[b"a\r\nb\n 10%|1/10\r 20%|2/10\r\nc"]);
        assert_eq!(
            out,
            vec![
                (1, "a".into()),
                (2, "b".into()),
                (3, " 10%|1/10".into()),
                (3, " 20%|2/10".into()),
                (4, "c".into())
            ]
        );
    }

    #[test]
    fn utf8_split_across_chunks_and_invalid_bytes() {
        let s = "█ é".as_bytes();
        let out = split(&[&s[..1], &s[1..4], &s[4..], b"\xff\n"]);
        assert_eq!(out, vec![(1, "█ é\u{FFFD}".into())]);
    }

    #[test]
    fn ansi_is_dropped_even_across_chunks() {
        let out = split(&[b"\x1b[3", b"2mgreen\x1b[0m \x1b]0;title\x07done\n"]);
        assert_eq!(out, vec![(1, "green done".into())]);
    }

    #[test]
    fn endless_lines_are_cut() {
        let long = vec![b'x'; 1000];
        let mut s = LineSplitter::with_max_line(32);
        let mut out = Vec::new();
        for _ in 0..100 {
            s.feed(&long, |l| out.push(l.text.len()));
            assert!(s.buffered() <= 32);
        }
        s.feed(b"\nnext\n", |l| out.push(l.text.len()));
        assert_eq!(out, vec![32, 4]);
    }

    #[test]
    fn empty_lines_count() {
        assert_eq!(
            split(&[b"\n\nx\n"]),
            vec![(1, "".into()), (2, "".into()), (3, "x".into())]
        );
    }
}
