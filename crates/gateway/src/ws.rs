//! WebSocket frames, read only: text payloads (unmasked) out, memory bounded.

/// Text frames larger than this are skipped, not buffered (Gradio's queue messages are small;
/// image previews are not needed).
pub const MAX_TEXT: usize = 256 * 1024;

#[derive(Debug, Default)]
pub struct Frames {
    buf: Vec<u8>,
    /// Bytes of an oversized frame still to pass by.
    skip: u64,
}

impl Frames {
    pub fn push(&mut self, mut bytes: &[u8], mut on_text: impl FnMut(&[u8])) {
        if self.skip > 0 {
            let n = (self.skip as usize).min(bytes.len());
            self.skip -= n as u64;
            bytes = &bytes[n..];
        }
        self.buf.extend_from_slice(bytes);
        loop {
            let b = &self.buf;
            if b.len() < 2 {
                return;
            }
            let opcode = b[0] & 0x0f;
            let masked = b[1] & 0x80 != 0;
            let (len, mut at) = match b[1] & 0x7f {
                126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as u64, 4),
                127 if b.len() >= 10 => (
                    u64::from_be_bytes(b[2..10].try_into().expect("8 bytes")),
                    10,
                ),
                126 | 127 => return,
                n => (n as u64, 2),
            };
            let mask = if masked {
                if b.len() < at + 4 {
                    return;
                }
                let m = [b[at], b[at + 1], b[at + 2], b[at + 3]];
                at += 4;
                Some(m)
            } else {
                None
            };
            if len as usize > MAX_TEXT {
                // Pass it by without keeping it.
                let have = (self.buf.len() - at) as u64;
                if have >= len {
                    self.buf.drain(..at + len as usize);
                    continue;
                }
                self.skip = len - have;
                self.buf.clear();
                return;
            }
            let end = at + len as usize;
            if self.buf.len() < end {
                return;
            }
            if opcode == 1 {
                let mut payload = self.buf[at..end].to_vec();
                if let Some(m) = mask {
                    for (i, x) in payload.iter_mut().enumerate() {
                        *x ^= m[i % 4];
                    }
                }
                on_text(&payload);
            }
            self.buf.drain(..end);
        }
    }
}

/// Encode a text frame (tests).
#[cfg(test)]
pub fn text_frame(payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut f = vec![0x81];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => f.push(m | n as u8),
        n if n <= 0xffff => {
            f.push(m | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(m | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(k) => {
            f.extend_from_slice(&k);
            f.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => f.extend_from_slice(payload),
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_anywhere_and_masked() {
        let mut bytes = text_frame(br#"{"msg":"send_hash"}"#, None);
        bytes.extend(text_frame(&vec![b'x'; 300], Some([1, 2, 3, 4])));
        bytes.extend(text_frame(&vec![b'y'; MAX_TEXT + 10], None));
        bytes.extend(text_frame(b"last", Some([9, 8, 7, 6])));
        for cut in [1usize, 3, 7, 1000, bytes.len()] {
            let mut f = Frames::default();
            let mut seen = Vec::new();
            for c in bytes.chunks(cut) {
                f.push(c, |t| seen.push(t.to_vec()));
                assert!(f.buf.len() <= MAX_TEXT + 16, "bounded");
            }
            assert_eq!(seen.len(), 3, "cut {cut}");
            assert_eq!(seen[0], br#"{"msg":"send_hash"}"#);
            assert_eq!(seen[1], vec![b'x'; 300]);
            assert_eq!(seen[2], b"last");
        }
    }
}
