//! The guard's updates for the dashboard's page, held until the page asks for them
//! (`take_updates`, docs/ipc.md).
//!
//! Why the page pulls instead of being sent events: Tauri delivers an event by evaluating a
//! script of its own in the web process, the payload written into its source, so every sample,
//! status and console line is parsed and compiled as new code (tauri 2 `emit_js_script`). A reply
//! to a command is data: one JSON body a batch. The page asks again as soon as a batch arrives;
//! the ask waits here until there is something to say (or [`IDLE`] passes), so updates reach the
//! page as fast as events did, and whatever piles up while the page is busy goes in one batch.
//!
//! Every list has a bound (the page shows no more than this of any of them); only the latest
//! status matters, so a newer one replaces the older.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

/// How long an ask waits for an update before it is answered with an empty batch (and asked
/// again): the page's proof that its guard still answers.
pub const IDLE: Duration = Duration::from_secs(2);

/// The most samples held: two minutes at the sampler's fastest second.
pub const MAX_SAMPLES: usize = 120;
/// The most console lines held: what the dashboard's console shows (ui/src/views/dashboard.ts).
pub const MAX_CONSOLE: usize = 500;
/// The most guard events held.
pub const MAX_EVENTS: usize = 100;

/// One answer to `take_updates`, oldest first in each list; also what the inbox holds meanwhile.
/// Its TypeScript type is generated into ui/src/generated/types.ts (src/command.rs's tests);
/// the lists hold the guard's JSON as it came, typed there by what it is.
#[derive(Debug, Default, Serialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS), ts(rename = "UpdateBatch"))]
pub struct Batch {
    /// The newest status, if it changed since the last batch.
    #[cfg_attr(test, ts(type = "Status | null"))]
    pub status: Option<Value>,
    #[cfg_attr(test, ts(type = "Sample[]"))]
    pub samples: VecDeque<Value>,
    /// Console lines (`ConsoleLine`), one list however many batches the guard sent.
    #[cfg_attr(test, ts(type = "ConsoleLine[]"))]
    pub console: VecDeque<Value>,
    #[cfg_attr(test, ts(type = "GuardEvent[]"))]
    pub events: VecDeque<Value>,
    /// A limit's notification was clicked while the window was open: show "why it stopped".
    pub open_why: bool,
    /// Updates dropped since the last batch because a list was full (the page was not asking).
    pub dropped: u64,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.status.is_none()
            && self.samples.is_empty()
            && self.console.is_empty()
            && self.events.is_empty()
            && !self.open_why
    }
}

/// Appends, dropping the oldest past `max`; counts what it dropped.
fn push_bounded(list: &mut VecDeque<Value>, v: Value, max: usize, dropped: &mut u64) {
    if list.len() == max {
        list.pop_front();
        *dropped += 1;
    }
    list.push_back(v);
}

/// Updates waiting for the page. One writer (the guard's events) and one reader (the page's ask).
#[derive(Default)]
pub struct Inbox {
    held: Mutex<Batch>,
    arrived: Condvar,
}

impl Inbox {
    pub fn new() -> Self {
        Self::default()
    }

    /// An update under its event name (docs/ipc.md: `status`, `sample`, `console`,
    /// `guard-event`, `open-why`); other names are not the page's and are ignored.
    pub fn push(&self, name: &str, payload: Value) {
        let mut h = self.held.lock().unwrap();
        let h = &mut *h;
        match name {
            "status" => h.status = Some(payload),
            "sample" => push_bounded(&mut h.samples, payload, MAX_SAMPLES, &mut h.dropped),
            "console" => match payload {
                Value::Array(lines) => {
                    for l in lines {
                        push_bounded(&mut h.console, l, MAX_CONSOLE, &mut h.dropped);
                    }
                }
                line => push_bounded(&mut h.console, line, MAX_CONSOLE, &mut h.dropped),
            },
            "guard-event" => push_bounded(&mut h.events, payload, MAX_EVENTS, &mut h.dropped),
            "open-why" => h.open_why = true,
            _ => return,
        }
        self.arrived.notify_all();
    }

    /// Everything held, once there is something or `wait` has passed (then an empty batch).
    pub fn take(&self, wait: Duration) -> Batch {
        let deadline = Instant::now() + wait;
        let mut h = self.held.lock().unwrap();
        while h.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            h = self.arrived.wait_timeout(h, left).unwrap().0;
        }
        std::mem::take(&mut *h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    #[test]
    fn an_empty_inbox_answers_empty_after_the_wait() {
        let inbox = Inbox::new();
        let t = Instant::now();
        let b = inbox.take(Duration::from_millis(50));
        assert!(b.is_empty());
        assert!(t.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn an_update_wakes_a_waiting_ask() {
        let inbox = Arc::new(Inbox::new());
        let i = inbox.clone();
        let asker = std::thread::spawn(move || {
            let t = Instant::now();
            (i.take(Duration::from_secs(60)), t.elapsed())
        });
        std::thread::sleep(Duration::from_millis(20));
        inbox.push("sample", json!({"ts_ms": 1}));
        let (b, waited) = asker.join().unwrap();
        assert_eq!(b.samples, vec![json!({"ts_ms": 1})]);
        // Were the wake lost, the ask would have waited out its full minute.
        assert!(
            waited < Duration::from_secs(30),
            "woken only by the timeout"
        );
    }

    #[test]
    fn a_batch_holds_everything_once_in_order_and_the_newest_status() {
        let inbox = Inbox::new();
        inbox.push("status", json!({"state": "starting"}));
        inbox.push("sample", json!(1));
        inbox.push("console", json!([{"n": 1}, {"n": 2}]));
        inbox.push("status", json!({"state": "ready"}));
        inbox.push("sample", json!(2));
        inbox.push("console", json!([{"n": 3}]));
        inbox.push("guard-event", json!({"event": "ready"}));
        inbox.push("open-why", Value::Null);
        inbox.push("quit", Value::Null);
        let b = inbox.take(Duration::ZERO);
        assert_eq!(b.status, Some(json!({"state": "ready"})));
        assert_eq!(b.samples, vec![json!(1), json!(2)]);
        assert_eq!(
            b.console,
            vec![json!({"n": 1}), json!({"n": 2}), json!({"n": 3})]
        );
        assert_eq!(b.events, vec![json!({"event": "ready"})]);
        assert!(b.open_why);
        assert_eq!(b.dropped, 0);
        assert!(inbox.take(Duration::ZERO).is_empty(), "taken once");
    }

    #[test]
    fn a_page_that_does_not_ask_holds_at_most_the_bounds() {
        let inbox = Inbox::new();
        for i in 0..MAX_SAMPLES + 5 {
            inbox.push("sample", json!(i));
        }
        let lines: Vec<Value> = (0..MAX_CONSOLE + 7).map(|n| json!({"n": n})).collect();
        inbox.push("console", Value::Array(lines));
        for i in 0..MAX_EVENTS + 1 {
            inbox.push("guard-event", json!(i));
        }
        let b = inbox.take(Duration::ZERO);
        assert_eq!(b.samples.len(), MAX_SAMPLES);
        assert_eq!(b.samples[0], json!(5), "the oldest went");
        assert_eq!(b.console.len(), MAX_CONSOLE);
        assert_eq!(b.console.back(), Some(&json!({"n": MAX_CONSOLE + 6})));
        assert_eq!(b.events.len(), MAX_EVENTS);
        assert_eq!(b.dropped, 5 + 7 + 1);
    }

    #[test]
    fn the_batch_is_what_the_page_reads() {
        let inbox = Inbox::new();
        inbox.push("sample", json!({"ts_ms": 5}));
        let v = serde_json::to_value(inbox.take(Duration::ZERO)).unwrap();
        assert_eq!(
            v,
            json!({"status": null, "samples": [{"ts_ms": 5}], "console": [], "events": [],
                   "open_why": false, "dropped": 0})
        );
    }
}
