//! Friendly desktop notifications (notify-rust), rate-limited so a crash loop cannot flood
//! the desktop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use guard_core::config::Notifications;
use guard_core::events::{EventKind, GuardEvent};
use guard_core::words::notice;

pub struct Notifier {
    cfg: Notifications,
    sent: Vec<Instant>,
    /// What clicking a limit's notification does: open the dashboard at "why it stopped".
    open_why: Option<Arc<dyn Fn() + Send + Sync>>,
}

/// At most this many notifications per minute; the rest are dropped (the history keeps them).
const PER_MINUTE: usize = 4;

impl Notifier {
    pub fn new(cfg: Notifications) -> Self {
        Notifier {
            cfg,
            sent: Vec::new(),
            open_why: None,
        }
    }

    /// Clicking the notification of a limit calls `f` (where the desktop supports actions).
    #[cfg_attr(windows, allow(dead_code))]
    pub fn on_click_why(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.open_why = Some(Arc::new(f));
        self
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
        let mut note = notify_rust::Notification::new();
        note.appname("Fooocus Guard")
            .summary(&n.summary)
            .body(&n.body)
            .icon("dialog-information")
            .timeout(notify_rust::Timeout::Milliseconds(8000));
        #[cfg(windows)]
        if fooocus_guard::installed() {
            note.app_id(fooocus_guard::APP_USER_MODEL_ID);
        }
        let breach = matches!(ev.kind, EventKind::LimitBreached { .. });
        if breach && self.open_why.is_some() {
            // The default action: what a click on the notification does.
            note.action("default", "Show why it stopped");
        }
        match note.show() {
            #[cfg(all(unix, not(target_os = "macos")))]
            Ok(handle) => {
                if let (true, Some(open)) = (breach, self.open_why.clone()) {
                    // Waits for the click or the close (a few seconds); at most PER_MINUTE a minute.
                    let _ = std::thread::Builder::new()
                        .name("fooocus-guard-notification".into())
                        .spawn(move || {
                            handle.wait_for_action(|action| {
                                if action == "default" {
                                    open();
                                }
                            })
                        });
                }
            }
            #[cfg(not(all(unix, not(target_os = "macos"))))]
            Ok(_) => {}
            // No notification daemon: the event is still in the history and the log.
            Err(e) => eprintln!("fooocus-guard: notification not shown: {e}"),
        }
    }
}
