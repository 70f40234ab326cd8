//! Watching one relayed connection: only a Gradio queue WebSocket (`/queue/join`) is read; every
//! other connection is passed through unread after its first request head.

use crate::ws::Frames;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueEvent {
    /// A tab joined the queue for a function (its `session_hash`).
    Joined { session_hash: String, fn_index: u64 },
    /// The function started running for that session.
    Started { session_hash: String, fn_index: u64 },
    /// It sent an update while running (`process_generating`): Fooocus's generate function does
    /// at every step it reports (progress text, a preview), and only while it makes progress.
    Generating { session_hash: String, fn_index: u64 },
    /// It ended (finished, failed or stopped).
    Completed { session_hash: String, fn_index: u64 },
}

#[derive(Debug, Default, PartialEq, Eq)]
enum Mode {
    /// Reading the first request / response head.
    #[default]
    Head,
    /// A queue WebSocket: frames are read.
    Queue,
    /// Anything else: not read.
    Ignore,
}

const MAX_HEAD: usize = 16 * 1024;

#[derive(Debug, Default)]
pub struct Tap {
    client_mode: Mode,
    server_mode: Mode,
    client_head: Vec<u8>,
    server_head: Vec<u8>,
    client_frames: Frames,
    server_frames: Frames,
    session: Option<(String, u64)>,
}

/// Split off a complete HTTP head; the rest (if any) follows it.
fn head_done(buf: &mut Vec<u8>, bytes: &[u8]) -> Option<(String, Vec<u8>)> {
    buf.extend_from_slice(bytes);
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let rest = buf[end + 4..].to_vec();
    buf.clear();
    Some((head, rest))
}

impl Tap {
    pub fn from_client(&mut self, bytes: &[u8]) -> Vec<QueueEvent> {
        let mut out = Vec::new();
        match self.client_mode {
            Mode::Ignore => {}
            Mode::Head => {
                if let Some((head, rest)) = head_done(&mut self.client_head, bytes) {
                    let first = head.lines().next().unwrap_or("");
                    let lower = head.to_ascii_lowercase();
                    if first.contains("/queue/join") && lower.contains("upgrade: websocket") {
                        self.client_mode = Mode::Queue;
                        self.client_text(&rest, &mut out);
                    } else {
                        self.client_mode = Mode::Ignore;
                        self.server_mode = Mode::Ignore;
                    }
                } else if self.client_head.len() > MAX_HEAD {
                    self.client_mode = Mode::Ignore;
                    self.client_head = Vec::new();
                }
            }
            Mode::Queue => self.client_text(bytes, &mut out),
        }
        out
    }

    pub fn from_server(&mut self, bytes: &[u8]) -> Vec<QueueEvent> {
        let mut out = Vec::new();
        match self.server_mode {
            Mode::Ignore => {}
            Mode::Head => {
                if let Some((head, rest)) = head_done(&mut self.server_head, bytes) {
                    if head.starts_with("HTTP/1.1 101") && self.client_mode == Mode::Queue {
                        self.server_mode = Mode::Queue;
                        self.server_text(&rest, &mut out);
                    } else {
                        self.server_mode = Mode::Ignore;
                    }
                } else if self.server_head.len() > MAX_HEAD {
                    self.server_mode = Mode::Ignore;
                    self.server_head = Vec::new();
                }
            }
            Mode::Queue => self.server_text(bytes, &mut out),
        }
        out
    }

    fn client_text(&mut self, bytes: &[u8], out: &mut Vec<QueueEvent>) {
        let session = &mut self.session;
        self.client_frames.push(bytes, |t| {
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(t) else {
                return;
            };
            if let (Some(h), Some(f)) = (v["session_hash"].as_str(), v["fn_index"].as_u64()) {
                if session.as_ref().map(|(s, i)| (s.as_str(), *i)) != Some((h, f)) {
                    *session = Some((h.to_string(), f));
                    out.push(QueueEvent::Joined {
                        session_hash: h.to_string(),
                        fn_index: f,
                    });
                }
            }
        });
    }

    fn server_text(&mut self, bytes: &[u8], out: &mut Vec<QueueEvent>) {
        let session = &self.session;
        self.server_frames.push(bytes, |t| {
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(t) else {
                return;
            };
            let Some((h, f)) = session.clone() else {
                return;
            };
            match v["msg"].as_str() {
                Some("process_starts") => out.push(QueueEvent::Started {
                    session_hash: h,
                    fn_index: f,
                }),
                Some("process_generating") => out.push(QueueEvent::Generating {
                    session_hash: h,
                    fn_index: f,
                }),
                Some("process_completed") => out.push(QueueEvent::Completed {
                    session_hash: h,
                    fn_index: f,
                }),
                _ => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::text_frame;

    #[test]
    fn learns_the_session_of_a_queue_join() {
        let mut t = Tap::default();
        let req = b"GET /queue/join HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
        assert!(t.from_client(req).is_empty());
        let mut resp = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n".to_vec();
        resp.extend(text_frame(br#"{"msg":"send_hash"}"#, None));
        assert!(t.from_server(&resp).is_empty());
        let join = text_frame(
            br#"{"fn_index":12,"session_hash":"tab1"}"#,
            Some([5, 6, 7, 8]),
        );
        assert_eq!(
            t.from_client(&join),
            vec![QueueEvent::Joined {
                session_hash: "tab1".into(),
                fn_index: 12
            }]
        );
        let mut msgs = text_frame(br#"{"msg":"estimation","rank":0}"#, None);
        msgs.extend(text_frame(br#"{"msg":"process_starts"}"#, None));
        assert_eq!(
            t.from_server(&msgs),
            vec![QueueEvent::Started {
                session_hash: "tab1".into(),
                fn_index: 12
            }]
        );
        let step = text_frame(
            br#"{"msg":"process_generating","output":{"data":[]}}"#,
            None,
        );
        assert_eq!(
            t.from_server(&step),
            vec![QueueEvent::Generating {
                session_hash: "tab1".into(),
                fn_index: 12
            }]
        );
        let done = text_frame(br#"{"msg":"process_completed","success":true}"#, None);
        assert_eq!(
            t.from_server(&done),
            vec![QueueEvent::Completed {
                session_hash: "tab1".into(),
                fn_index: 12
            }]
        );
    }

    #[test]
    fn queue_joins_do_not_negotiate_compression() {
        let req = b"GET /queue/join HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\nSec-WebSocket-Key: k\r\n\r\nextra".to_vec();
        let out = String::from_utf8(crate::strip_ws_compression(req)).unwrap();
        assert_eq!(out, "GET /queue/join HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n\r\nextra");
        let other = b"GET /config HTTP/1.1\r\nSec-WebSocket-Extensions: x\r\n\r\n".to_vec();
        assert_eq!(crate::strip_ws_compression(other.clone()), other);
    }

    #[test]
    fn other_connections_are_not_read() {
        let mut t = Tap::default();
        t.from_client(b"GET /file=x.png HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(t
            .from_client(&text_frame(
                br#"{"fn_index":1,"session_hash":"h"}"#,
                Some([1, 1, 1, 1])
            ))
            .is_empty());
        assert!(t.from_server(b"HTTP/1.1 200 OK\r\n\r\n").is_empty());
        assert_eq!(t.client_mode, Mode::Ignore);
    }
}
