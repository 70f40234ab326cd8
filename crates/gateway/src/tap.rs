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
}
