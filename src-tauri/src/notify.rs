//! Friendly desktop notifications (notify-rust), rate-limited so a crash loop cannot flood
//! the desktop.

use std::time::{Duration, Instant};

use guard_core::config::Notifications;
use guard_core::events::{EventKind, GuardEvent};
use guard_core::notice;

pub struct Notifier {
    cfg: Notifications,
    sent: Vec<Instant>,
}

/// At most this many notifications per minute; the rest are dropped (the history keeps them).
const PER_MINUTE: usize = 4;

impl Notifier {
    pub fn new(cfg: Notifications) -> Self {
        Notifier {
            cfg,
            sent: Vec::new(),
        }
    }

    pub fn set_config(&mut self, cfg: Notifications) {
        self.cfg = cfg;
    }

    pub fn on_event(&mut self, ev: &GuardEvent) {
        if !self.cfg.enabled {
            return;
        }
        if matches!(ev.kind, EventKind::Ready { .. }) && !self.cfg.on_ready {
            return;
        }
        if matches!(ev.kind, EventKind::GenerationFinished { .. }) && !self.cfg.on_finished {
            return;
        }
        let Some(n) = notice::for_event(ev) else {
            return;
        };
        let now = Instant::now();
        self.sent
            .retain(|t| now.duration_since(*t) < Duration::from_secs(60));
        if self.sent.len() >= PER_MINUTE {
            return;
        }
        self.sent.push(now);
        let res = notify_rust::Notification::new()
            .appname("Fooocus Guard")
            .summary(&n.summary)
            .body(&n.body)
            .icon("dialog-information")
            .timeout(notify_rust::Timeout::Milliseconds(8000))
            .show();
        if let Err(e) = res {
            // No notification daemon: the event is still in the history and the log.
            eprintln!("fooocus-guard: notification not shown: {e}");
        }
    }
}
