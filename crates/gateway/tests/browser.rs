//! The waking page in a real browser: the system's Chromium, headless, opens a sleeping Fooocus
//! through the gateway, gets the waking page (its script and style under the page's strict
//! policy), and lands in Fooocus by the page's own reload once it is awake. Needs Chromium
//! (`chromium` on PATH, or FG_CHROMIUM), so plain `cargo test` leaves it out; the gateway suite runs it:
//!
//!   cargo test -p guard-gateway --test browser -- --ignored    (CI: scripts/test.sh gateway)

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use guard_gateway::{Limits, QueueEvent, Upstream};

/// Chromium, killed and its profile removed when the test ends (passed or not).
struct Browser {
    child: Child,
    profile: std::path::PathBuf,
    devtools: SocketAddr,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Browser {
    fn open(url: &str) -> Browser {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let profile =
            std::env::temp_dir().join(format!("fg-gateway-browser-{}", std::process::id()));
        let exe = std::env::var("FG_CHROMIUM").unwrap_or_else(|_| "chromium".into());
        let child = Command::new(&exe)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("--remote-debugging-port={port}"))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{exe} could not start ({e}): install Chromium or set FG_CHROMIUM")
            });
        Browser {
            child,
            profile,
            devtools: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    /// The titles of the open pages, from the DevTools HTTP endpoint (no protocol client needed).
    fn titles(&self) -> Vec<String> {
        let Ok(mut s) = TcpStream::connect(self.devtools) else {
            return Vec::new();
        };
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = write!(
            s,
            "GET /json/list HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        );
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let list: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        list.as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["type"] == "page")
            .filter_map(|p| p["title"].as_str().map(String::from))
            .collect()
    }

    /// Wait (at most 60 s) until a page's title satisfies `ok`.
    #[track_caller]
    fn wait_title(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let t0 = Instant::now();
        loop {
            let titles = self.titles();
            if let Some(t) = titles.iter().find(|t| ok(t)) {
                return t.clone();
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "no page {what}: {titles:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
#[ignore = "drives the system's Chromium: cargo test -p guard-gateway --test browser -- --ignored"]
fn a_tab_opened_while_asleep_lands_in_fooocus_once_awake() {
    let (g, seen, events) = start_with_events(None, None, Limits::default());
    g.set_upstream(Upstream::Asleep {
        wake_estimate: Duration::from_secs(30),
        hold_limit: Duration::from_secs(120),
    });
    let url = format!("http://127.0.0.1:{}/", g.local_addr().port());
    let browser = Browser::open(&url);
    let t0 = Instant::now();
    browser.wait_title("with the waking page", |t| {
        t == "Waking Fooocus up, about 30 s"
    });
    println!(
        "the waking page's title in Chromium after {:?}",
        t0.elapsed()
    );
    assert_eq!(
        events.recv_timeout(Duration::from_secs(30)).ok(),
        Some(QueueEvent::WakeRequested)
    );
    assert!(
        !seen.lock().iter().any(|h| h.starts_with("GET / ")),
        "Fooocus was asleep: nothing reached it"
    );
    g.set_upstream(Upstream::Awake);
    // Only the page's script, following /.fooocus-guard/wake, reloads the tab into Fooocus.
    seen.wait_for("GET / ", 1);
    browser.wait_title("in Fooocus", |t| !t.starts_with("Waking"));
    assert_eq!(events.try_iter().count(), 0, "woken once");
}
