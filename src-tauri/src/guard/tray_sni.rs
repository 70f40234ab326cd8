//! The tray icon on Linux, spoken directly as a D-Bus StatusNotifierItem with its dbusmenu
//! (ksni): no GTK in the guard's process. Its look follows Fooocus's state, its menu offers what
//! can be done now, and, since Linux indicators show no tooltip, the menu's first (disabled) item
//! is the status line.

use std::sync::Arc;

use crossbeam_channel::Sender;
use guard_app::App;
use guard_core::supervisor::{Actions, FooocusState};
use guard_core::Status;
use ksni::blocking::TrayMethods;
use ksni::menu::{MenuItem, StandardItem};

use super::action::Action;

pub type Handle = ksni::blocking::Handle<Tray>;

const ICON_STOPPED: &[u8] = include_bytes!("../../../icons/tray-stopped.png");
const ICON_STARTING: &[u8] = include_bytes!("../../../icons/tray-starting.png");
const ICON_READY: &[u8] = include_bytes!("../../../icons/tray-ready.png");
const ICON_GENERATING: &[u8] = include_bytes!("../../../icons/tray-generating.png");
const ICON_BREACH: &[u8] = include_bytes!("../../../icons/tray-breach.png");

pub struct Tray {
    core: Arc<App>,
    actions: Sender<Action>,
    line: String,
    look: &'static [u8],
    can: Actions,
}

/// Start the tray; without a session bus there is none, and the guard goes on without it.
pub fn spawn(core: Arc<App>, actions: Sender<Action>) -> Option<Handle> {
    let s = core.status();
    let tray = Tray {
        line: fooocus_guard::status_line(&s),
        look: look(&s),
        can: s.actions,
        core,
        actions,
    };
    // A tray host that starts after the guard (as at login) still finds the icon.
    match tray.assume_sni_available(true).spawn() {
        Ok(h) => Some(h),
        Err(e) => {
            eprintln!("fooocus-guard: no tray icon: {e}");
            None
        }
    }
}

/// Follow the state; ksni sends only what changed.
pub fn update(h: &Handle, s: &Status) {
    let (line, look, can) = (fooocus_guard::status_line(s), look(s), s.actions);
    h.update(move |t| {
        t.line = line;
        t.look = look;
        t.can = can;
    });
}

fn look(s: &Status) -> &'static [u8] {
    match (s.unseen_breach, s.state) {
        (true, _) => ICON_BREACH,
        (_, FooocusState::Generating) => ICON_GENERATING,
        (_, FooocusState::Ready) => ICON_READY,
        (_, FooocusState::Starting | FooocusState::Restarting | FooocusState::Stopping) => {
            ICON_STARTING
        }
        _ => ICON_STOPPED,
    }
}

/// PNG -> the ARGB32 (network byte order) pixmap the protocol carries.
fn pixmap(png_bytes: &[u8]) -> Option<ksni::Icon> {
    let mut dec = png::Decoder::new(std::io::Cursor::new(png_bytes));
    dec.set_transformations(
        png::Transformations::normalize_to_color8() | png::Transformations::ALPHA,
    );
    let mut reader = dec.read_info().ok()?;
    let mut buf = vec![0; reader.output_buffer_size()?];
    let info = reader.next_frame(&mut buf).ok()?;
    let rgba = &buf[..info.buffer_size()];
    let channels = info.color_type.samples();
    let mut data = Vec::with_capacity((info.width * info.height * 4) as usize);
    for px in rgba.chunks(channels) {
        let (r, g, b, a) = match px {
            [r, g, b, a] => (*r, *g, *b, *a),
            [v, a] => (*v, *v, *v, *a),
            _ => return None,
        };
        data.extend_from_slice(&[a, r, g, b]);
    }
    Some(ksni::Icon {
        width: info.width as i32,
        height: info.height as i32,
        data,
    })
}

fn item(label: &str, enabled: bool, act: impl Fn(&mut Tray) + Send + 'static) -> MenuItem<Tray> {
    StandardItem {
        label: label.into(),
        enabled,
        activate: Box::new(act),
        ..Default::default()
    }
    .into()
}

impl ksni::Tray for Tray {
    fn id(&self) -> String {
        "fooocus-guard".into()
    }

    fn title(&self) -> String {
        "Fooocus Guard".into()
    }

    fn icon_pixmap(&self) -> Vec<ksni::Icon> {
        pixmap(self.look).into_iter().collect()
    }

    fn tool_tip(&self) -> ksni::ToolTip {
        ksni::ToolTip {
            title: self.line.clone(),
            ..Default::default()
        }
    }

    /// A left click opens the dashboard.
    fn activate(&mut self, _x: i32, _y: i32) {
        let _ = self.actions.send(Action::OpenDashboard { why: false });
    }

    fn menu(&self) -> Vec<MenuItem<Self>> {
        let c = self.can;
        vec![
            item(&self.line, false, |_| {}),
            item("Open dashboard", true, |t| {
                let _ = t.actions.send(Action::OpenDashboard { why: false });
            }),
            MenuItem::Separator,
            item("Start Fooocus", c.start, |t| {
                if let Err(e) = t.core.start_fooocus() {
                    eprintln!("fooocus-guard: {e}");
                    let _ = t.actions.send(Action::OpenDashboard { why: false });
                }
            }),
            item("Stop Fooocus", c.stop, |t| t.core.guard().stop_fooocus()),
            item("Restart Fooocus", c.restart, |t| {
                t.core.guard().restart_fooocus()
            }),
            item("Open Fooocus in the browser", c.open_browser, |t| {
                let _ = t.core.open_in_browser();
            }),
            item("Stop the current generation", c.stop_generation, |t| {
                t.core.guard().stop_generation()
            }),
            item("Sleep now", c.sleep, |t| t.core.guard().sleep_fooocus()),
            item("Wake Fooocus", c.wake, |t| t.core.guard().wake_fooocus()),
            MenuItem::Separator,
            // Stops Fooocus cleanly first (the main thread does it).
            item("Quit", true, |t| {
                let _ = t.actions.send(Action::Quit);
            }),
        ]
    }
}
