//! Arbitrary bytes, cut into arbitrary chunks, through the splitter and the parser: no panic,
//! memory bounded, and the events do not depend on where the chunks were cut.
#![no_main]

use fooocus_console::{ConsoleParser, EventKind, Source, DEFAULT_MAX_LINE, MAX_TRACEBACK_LINES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    // The first byte chooses the chunk size and the stream read.
    let chunk = 1 + data[0] as usize % 64;
    let source = [Source::Merged, Source::Stdout, Source::Stderr][(data[0] >> 6) as usize % 3];
    let body = &data[1..];
    let mut whole = ConsoleParser::for_source(source);
    let mut a = Vec::new();
    whole.feed(body, &mut a);
    whole.finish(&mut a);

    let mut cut = ConsoleParser::for_source(source);
    let mut b = Vec::new();
    for c in body.chunks(chunk) {
        cut.feed(c, &mut b);
        assert!(cut.buffered() <= DEFAULT_MAX_LINE);
    }
    cut.finish(&mut b);
    assert_eq!(a, b);
    for e in &a {
        if let EventKind::Error { traceback, .. } = &e.kind {
            assert!(traceback.len() <= MAX_TRACEBACK_LINES);
        }
    }
});
