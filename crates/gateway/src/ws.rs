//! WebSocket frames, read only: text payloads (unmasked) out, memory bounded.

/// Bytes of a text frame's payload kept to read it: Gradio's queue messages that matter (the
/// join, `process_starts`, `process_completed`) say what they are in their first bytes; the rest
/// of a larger frame (an image preview) passes by unkept. So a frame that never ends holds at
/// most this much, however long it says it is.
pub const KEEP: usize = 4 * 1024;

/// A frame head is at most 14 bytes (2, an extended length of 8, a mask of 4).
#[cfg(test)]
const MAX_HEAD: usize = 14;

#[derive(Debug, Default)]
pub struct Frames {
    /// The head of the next frame while it arrives.
    head: Vec<u8>,
    /// The frame whose payload arrives now.
    cur: Option<Current>,
}

#[derive(Debug)]
struct Current {
    text: bool,
    mask: Option<[u8; 4]>,
    len: u64,
    seen: u64,
    kept: Vec<u8>,
}

impl Frames {
    /// Feed bytes as they passed; `on_text(payload, whole)` for each text frame that ends, with
    /// its first `KEEP` bytes (`whole`: that is all of it).
    pub fn push(&mut self, mut bytes: &[u8], mut on_text: impl FnMut(&[u8], bool)) {
        while !bytes.is_empty() {
            let Some(cur) = &mut self.cur else {
                let need = self.head_len().unwrap_or(2) - self.head.len();
                let n = need.min(bytes.len());
                self.head.extend_from_slice(&bytes[..n]);
                bytes = &bytes[n..];
                self.start_frame();
                if let Some(Current { len: 0, .. }) = &self.cur {
                    self.end_frame(&mut on_text);
                }
                continue;
            };
            let n = ((cur.len - cur.seen) as usize).min(bytes.len());
            if cur.text {
                let room = KEEP.saturating_sub(cur.kept.len()).min(n);
                for (i, b) in bytes[..room].iter().enumerate() {
                    let at = (cur.seen as usize + i) % 4;
                    cur.kept.push(cur.mask.map_or(*b, |m| b ^ m[at]));
                }
            }
            cur.seen += n as u64;
            bytes = &bytes[n..];
            if cur.seen == cur.len {
                self.end_frame(&mut on_text);
            }
        }
    }

    /// Bytes held now (for the gateway's count of what its taps hold).
    pub fn held(&self) -> usize {
        self.head.len() + self.cur.as_ref().map_or(0, |c| c.kept.capacity())
    }

    /// The whole head's length once its first bytes tell, None before.
    fn head_len(&self) -> Option<usize> {
        let h = &self.head;
        if h.len() < 2 {
            return None;
        }
        let ext = match h[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if h[1] & 0x80 != 0 { 4 } else { 0 };
        Some(2 + ext + mask)
    }

    fn start_frame(&mut self) {
        let Some(need) = self.head_len() else { return };
        if self.head.len() < need {
            return;
        }
        let h = &self.head;
        let (len, at) = match h[1] & 0x7f {
            126 => (u16::from_be_bytes([h[2], h[3]]) as u64, 4),
            127 => (
                u64::from_be_bytes(h[2..10].try_into().expect("8 bytes")),
                10,
            ),
            n => (n as u64, 2),
        };
        let mask = (h[1] & 0x80 != 0).then(|| [h[at], h[at + 1], h[at + 2], h[at + 3]]);
        let text = h[0] & 0x0f == 1;
        self.cur = Some(Current {
            text,
            mask,
            len,
            seen: 0,
            kept: Vec::with_capacity(if text { (len as usize).min(KEEP) } else { 0 }),
        });
        self.head.clear();
    }

    fn end_frame(&mut self, on_text: &mut impl FnMut(&[u8], bool)) {
        if let Some(c) = self.cur.take() {
            if c.text {
                on_text(&c.kept, c.len as usize <= KEEP);
            }
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
        bytes.extend(text_frame(&vec![b'y'; 256 * 1024 + 10], None));
        bytes.extend(text_frame(b"", None));
        bytes.extend(text_frame(b"last", Some([9, 8, 7, 6])));
        for cut in [1usize, 3, 7, 1000, bytes.len()] {
            let mut f = Frames::default();
            let mut seen = Vec::new();
            for c in bytes.chunks(cut) {
                f.push(c, |t, whole| seen.push((t.to_vec(), whole)));
                assert!(f.held() <= KEEP + MAX_HEAD, "bounded: {}", f.held());
            }
            assert_eq!(seen.len(), 5, "cut {cut}");
            assert_eq!(seen[0], (br#"{"msg":"send_hash"}"#.to_vec(), true));
            assert_eq!(seen[1], (vec![b'x'; 300], true));
            assert_eq!(seen[2], (vec![b'y'; KEEP], false), "its first bytes only");
            assert_eq!(seen[3], (Vec::new(), true));
            assert_eq!(seen[4], (b"last".to_vec(), true));
        }
    }

    #[test]
    fn a_frame_that_never_ends_holds_only_its_first_bytes() {
        let mut f = Frames::default();
        let whole = text_frame(&vec![b'z'; 200_000], Some([1, 2, 3, 4]));
        f.push(&whole[..150_000], |_, _| panic!("not ended"));
        assert!(f.held() <= KEEP + MAX_HEAD, "{}", f.held());
    }
}
