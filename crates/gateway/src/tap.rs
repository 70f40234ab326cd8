//! Watching a Gradio queue WebSocket (`/queue/join`) after its upgrade; nothing else is read.

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
    /// Its tab's queue socket closed while it ran: Gradio stops following the call (no
    /// `Completed` will come), while Fooocus's worker still runs its task to the end. Told by the
    /// gateway when the socket closes, not read from the traffic.
    Abandoned { session_hash: String, fn_index: u64 },
    /// An admitted request arrived while Fooocus was asleep (`Upstream::Asleep`): wake it. The
    /// gateway switches itself to `Upstream::Waking` at the same time, so it is sent once per
    /// sleep.
    WakeRequested,
}

/// The two directions of one queue WebSocket, after the upgrade: only frames pass here.
#[derive(Debug, Default)]
pub struct Tap {
    client_frames: Frames,
    server_frames: Frames,
    session: Option<(String, u64)>,
}

impl Tap {
    /// The session and function this queue connection joined for, once the browser said.
    pub fn session(&self) -> Option<(String, u64)> {
        self.session.clone()
    }

    /// Bytes its frame readers hold now.
    pub fn held(&self) -> usize {
        self.client_frames.held() + self.server_frames.held()
    }

    /// Bytes the browser sent (masked frames).
    pub fn from_client(&mut self, bytes: &[u8]) -> Vec<QueueEvent> {
        let mut out = Vec::new();
        self.client_text(bytes, &mut out);
        out
    }

    /// Bytes Fooocus sent.
    pub fn from_server(&mut self, bytes: &[u8]) -> Vec<QueueEvent> {
        let mut out = Vec::new();
        self.server_text(bytes, &mut out);
        out
    }

    fn client_text(&mut self, bytes: &[u8], out: &mut Vec<QueueEvent>) {
        let session = &mut self.session;
        self.client_frames.push(bytes, |t, whole| {
            // The join (`send_hash`) is small; a larger message is the call's data.
            if !whole {
                return;
            }
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
        self.server_frames.push(bytes, |t, whole| {
            let Some((h, f)) = session.clone() else {
                return;
            };
            let msg = if whole {
                serde_json::from_slice::<serde_json::Value>(t)
                    .ok()
                    .and_then(|v| v["msg"].as_str().map(String::from))
            } else {
                leading_msg(t)
            };
            match msg.as_deref() {
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

/// The `msg` of a message known by its first bytes only: Gradio writes it first
/// (`{"msg": "process_generating", "output": ...}`).
fn leading_msg(prefix: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(prefix).unwrap_or_else(|e| {
        // A multi-byte character cut at the end of the prefix.
        std::str::from_utf8(&prefix[..e.valid_up_to()]).unwrap_or("")
    });
    let rest = text.trim_start().strip_prefix('{')?.trim_start();
    let rest = rest.strip_prefix("\"msg\"")?.trim_start();
    let rest = rest.strip_prefix(':')?.trim_start().strip_prefix('"')?;
    let (msg, _) = rest.split_once('"')?;
    Some(msg.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::text_frame;

    #[test]
    fn learns_the_session_of_a_queue_join() {
        let mut t = Tap::default();
        assert!(t
            .from_server(&text_frame(br#"{"msg":"send_hash"}"#, None))
            .is_empty());
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
    fn a_large_message_is_known_by_its_first_bytes() {
        let mut t = Tap::default();
        t.from_client(&text_frame(
            br#"{"fn_index":3,"session_hash":"tab2"}"#,
            Some([1, 2, 3, 4]),
        ));
        let mut big = br#"{"msg": "process_completed", "output": {"data": [""#.to_vec();
        big.extend(vec![b'A'; 300 * 1024]);
        big.extend(br#""]}, "success": true}"#);
        assert_eq!(
            t.from_server(&text_frame(&big, None)),
            vec![QueueEvent::Completed {
                session_hash: "tab2".into(),
                fn_index: 3
            }]
        );
        assert_eq!(
            leading_msg(br#"{"output": {"msg": "process_starts"}}"#),
            None
        );
    }
}
