//! Sleep and wake (issue 25): while Fooocus sleeps the gateway keeps the user's port, and the
//! first admitted request wakes it. What is behind the gateway is told by the supervisor
//! (`Gateway::set_upstream`); the gateway itself only turns Asleep into Waking, once per sleep.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use tokio::sync::watch;

use crate::relay::{text, Body};
use crate::{Limits, Upstream};

/// The state behind the gateway and when the wake under way began.
#[derive(Clone, Debug)]
pub(crate) struct Wake {
    pub(crate) upstream: Upstream,
    /// When the wake began (Waking, and Failed after it): the hold limit and the page's
    /// elapsed seconds count from it.
    pub(crate) since: Option<Instant>,
}

pub(crate) struct WakeCell {
    tx: watch::Sender<Wake>,
    last_visit: Mutex<Option<Instant>>,
    /// Requests held for the wake, per client.
    held: Mutex<HashMap<IpAddr, usize>>,
}

impl WakeCell {
    pub(crate) fn new() -> WakeCell {
        WakeCell {
            tx: watch::Sender::new(Wake {
                upstream: Upstream::Awake,
                since: None,
            }),
            last_visit: Mutex::new(None),
            held: Mutex::new(HashMap::new()),
        }
    }

    /// The supervisor's word. A wake already under way keeps its start (the tray's Wake after a
    /// visit's, or a new estimate), so its hold limit is not stretched.
    pub(crate) fn set(&self, state: Upstream) {
        self.tx.send_modify(|w| {
            let since = match (&w.upstream, &state) {
                (Upstream::Waking { .. }, Upstream::Waking { .. } | Upstream::Failed { .. }) => {
                    w.since
                }
                (_, Upstream::Waking { .. }) => Some(Instant::now()),
                _ => None,
            };
            *w = Wake {
                upstream: state,
                since,
            };
        });
    }

    pub(crate) fn now(&self) -> Wake {
        self.tx.borrow().clone()
    }

    pub(crate) fn last_visit(&self) -> Option<Instant> {
        *self.last_visit.lock().unwrap()
    }

    /// An admitted request arrived: the idle clock restarts, and a sleeping Fooocus is now
    /// waking. True when this visit is the one that woke it (the caller tells the supervisor).
    pub(crate) fn visit(&self) -> bool {
        *self.last_visit.lock().unwrap() = Some(Instant::now());
        self.tx.send_if_modified(|w| match w.upstream {
            Upstream::Asleep {
                wake_estimate,
                hold_limit,
            } => {
                *w = Wake {
                    upstream: Upstream::Waking {
                        wake_estimate,
                        hold_limit,
                    },
                    since: Some(Instant::now()),
                };
                true
            }
            _ => false,
        })
    }

    /// Hold a request until Fooocus is awake (None: forward it now), within the hold limit from
    /// the wake's start; else the answer it gets instead (503 with the reason). Held requests
    /// are bounded in count (`Limits::max_held`, `max_held_per_client`); each keeps its
    /// connection (and its slot: the connection limits and the eviction order apply to it as to
    /// any request), and nothing more of it is read meanwhile (its body waits in the client's
    /// socket, the gateway keeps at most hyper's read buffer of it).
    pub(crate) async fn hold(&self, ip: IpAddr, limits: &Limits) -> Option<Response<Body>> {
        let _place = match self.take_place(ip, limits) {
            Ok(p) => p,
            Err(who) => {
                return Some(unavailable(
                    &format!("Too many requests {who}are waiting for Fooocus to wake up: send this one again once it is awake."),
                    5,
                ))
            }
        };
        let mut rx = self.tx.subscribe();
        loop {
            let w = rx.borrow_and_update().clone();
            let (wake_estimate, hold_limit) = match w.upstream {
                Upstream::Awake => return None,
                Upstream::Failed { reason } => return Some(failed(&reason)),
                Upstream::Asleep { .. } => {
                    return Some(unavailable(
                        "Fooocus was put back to sleep before it woke up: send the request again to wake it.",
                        5,
                    ))
                }
                Upstream::Waking {
                    wake_estimate,
                    hold_limit,
                } => (wake_estimate, hold_limit),
            };
            let due = w.since.unwrap_or_else(Instant::now) + hold_limit;
            tokio::select! {
                changed = rx.changed() => if changed.is_err() {
                    return Some(unavailable("The gateway is closing.", 5));
                },
                _ = tokio::time::sleep_until(due.into()) => {
                    return Some(unavailable(
                        &format!(
                            "Fooocus did not wake up within {} s (its start-up limit); it may still be starting: try again soon, or see Fooocus Guard.",
                            secs(hold_limit)
                        ),
                        secs(wake_estimate),
                    ));
                }
            }
        }
    }

    /// A place among the held requests, or who is over the bound ("from this computer " when
    /// it is the client's share).
    fn take_place(&self, ip: IpAddr, limits: &Limits) -> Result<HeldPlace<'_>, &'static str> {
        let mut held = self.held.lock().unwrap();
        let total: usize = held.values().sum();
        let mine = held.get(&ip).copied().unwrap_or(0);
        if mine >= limits.max_held_per_client {
            return Err("from this computer ");
        }
        if total >= limits.max_held {
            return Err("");
        }
        *held.entry(ip).or_default() += 1;
        Ok(HeldPlace { cell: self, ip })
    }

    /// Requests held now, all clients together.
    pub(crate) fn held(&self) -> usize {
        self.held.lock().unwrap().values().sum()
    }
}

/// A held request's place in the count, given back when it ends however it ends (forwarded,
/// refused, or dropped with its connection).
struct HeldPlace<'a> {
    cell: &'a WakeCell,
    ip: IpAddr,
}

impl Drop for HeldPlace<'_> {
    fn drop(&mut self) {
        let mut held = self.cell.held.lock().unwrap();
        if let Some(n) = held.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.ip);
            }
        }
    }
}

/// Whole seconds, rounded up, at least 1 (a `Retry-After`, an estimate shown).
fn secs(d: Duration) -> u64 {
    (d.as_secs_f64().ceil() as u64).max(1)
}

fn unavailable(reason: &str, retry_s: u64) -> Response<Body> {
    text(
        StatusCode::SERVICE_UNAVAILABLE,
        &[(header::RETRY_AFTER, retry_s.max(1).to_string())],
        format!("{reason}\n"),
    )
}

fn failed(reason: &str) -> Response<Body> {
    unavailable(
        &format!(
            "Fooocus did not wake up: {}. Wake it again from Fooocus Guard (tray menu or dashboard).",
            sentence(reason)
        ),
        30,
    )
}

/// The guard's own paths, beside Fooocus's (which has nothing under `/.fooocus-guard/`).
pub(crate) const STATE_PATH: &str = "/.fooocus-guard/wake";
const SCRIPT_PATH: &str = "/.fooocus-guard/wake.js";
const STYLE_PATH: &str = "/.fooocus-guard/wake.css";

/// What the waking page may do: its own script and style (no inline script), ask its own site
/// for the wake's state, nothing else (`relay::frame_policy` adds `frame-ancestors`).
const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'";

/// The guard's own answers on its reserved paths (to requests that passed every rule; they
/// wake nothing and are no visit): the wake's state as JSON, the waking page's script and style.
pub(crate) fn own(cell: &WakeCell, path: &str, method: &Method) -> Option<Response<Body>> {
    let (content_type, body) = match path {
        STATE_PATH => ("application/json", state_json(&cell.now()).to_string()),
        SCRIPT_PATH => ("text/javascript; charset=utf-8", SCRIPT.to_string()),
        STYLE_PATH => ("text/css; charset=utf-8", STYLE.to_string()),
        _ => return None,
    };
    if method != Method::GET && method != Method::HEAD {
        return Some(text(
            StatusCode::METHOD_NOT_ALLOWED,
            &[(header::ALLOW, "GET, HEAD".into())],
            "Only GET is answered here.\n".into(),
        ));
    }
    let mut r = text(StatusCode::OK, &[], body);
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Some(r)
}

/// `{state, elapsed_s, estimate_s, reason}`: what the waking page follows.
pub(crate) fn state_json(w: &Wake) -> serde_json::Value {
    let elapsed = w
        .since
        .map(|s| (s.elapsed().as_secs_f64() * 10.0).round() / 10.0);
    let (state, estimate, reason) = match &w.upstream {
        Upstream::Awake => ("awake", None, None),
        Upstream::Asleep { wake_estimate, .. } => ("asleep", Some(secs(*wake_estimate)), None),
        Upstream::Waking { wake_estimate, .. } => ("waking", Some(secs(*wake_estimate)), None),
        Upstream::Failed { reason } => ("failed", None, Some(reason.as_str())),
    };
    serde_json::json!({
        "state": state,
        "elapsed_s": elapsed,
        "estimate_s": estimate,
        "reason": reason,
    })
}

/// A browser opening a page (GET or HEAD, `Sec-Fetch-Mode: navigate` for a document, or
/// without Fetch metadata an `Accept` of HTML), not another site's page asking: it can be shown
/// the waking page. Anything else is held.
pub(crate) fn is_navigation<B>(req: &Request<B>, same_site: bool) -> bool {
    let h = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok());
    if !(req.method() == Method::GET || req.method() == Method::HEAD) || !same_site {
        return false;
    }
    match h("sec-fetch-mode") {
        Some(mode) => {
            mode.trim().eq_ignore_ascii_case("navigate")
                && h("sec-fetch-dest").is_none_or(|d| d.trim().eq_ignore_ascii_case("document"))
        }
        None => h("accept").is_some_and(|a| a.to_ascii_lowercase().contains("text/html")),
    }
}

/// The guard's waking page: 200 while Fooocus wakes, 503 with the reason when the wake failed.
/// It holds nothing of the request (no prompt, no token): the wake's estimate and, failed, the
/// supervisor's reason.
pub(crate) fn page(w: &Wake) -> Response<Body> {
    let (status, title, note) = match &w.upstream {
        Upstream::Failed { reason } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Fooocus did not wake up".to_string(),
            format!(
                "{}. Wake it again from Fooocus Guard (tray menu or dashboard); this page opens Fooocus once it is awake.",
                escape(sentence(reason))
            ),
        ),
        Upstream::Asleep { wake_estimate, .. } | Upstream::Waking { wake_estimate, .. } => {
            let left = wake_estimate
                .saturating_sub(w.since.map_or(Duration::ZERO, |s| s.elapsed()));
            (
                StatusCode::OK,
                format!("Waking Fooocus up, about {} s", secs(left)),
                "Fooocus was asleep to give its memory back to this computer. This page opens Fooocus once it is ready.".to_string(),
            )
        }
        Upstream::Awake => (
            StatusCode::OK,
            "Fooocus is awake".to_string(),
            "Reload this page to open Fooocus.".to_string(),
        ),
    };
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><meta name=\"referrer\" content=\"no-referrer\"><title>{title}</title><link rel=\"stylesheet\" href=\"{STYLE_PATH}\"></head>\n<body><main><h1 id=\"title\">{title}</h1><p id=\"note\">{note}</p><progress id=\"bar\" hidden></progress><noscript><p>Reload this page in a little while to open Fooocus.</p></noscript><p class=\"by\">Fooocus Guard</p></main><script src=\"{SCRIPT_PATH}\"></script></body></html>\n"
    );
    let mut r = text(status, &[], body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_POLICY),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
    }
    r
}

/// A reason as the start of a sentence the guard goes on with: without its own closing period.
fn sentence(reason: &str) -> &str {
    reason.trim_end().trim_end_matches('.').trim_end()
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Follows the wake once a second (every 5 s once it failed or Fooocus sleeps again) and
/// reloads into Fooocus when it is awake; never reloads while asleep (that would wake it again
/// with nobody asking). Text goes in as text (`textContent`), never as HTML.
const SCRIPT: &str = r#""use strict";
(function () {
  var title = document.getElementById("title");
  var note = document.getElementById("note");
  var bar = document.getElementById("bar");
  function show(s) {
    if (s.state === "awake") {
      title.textContent = "Fooocus is awake, opening it";
      location.reload();
      return 0;
    }
    if (s.state === "failed") {
      title.textContent = "Fooocus did not wake up";
      note.textContent = String(s.reason).replace(/[.\s]+$/, "") + ". Wake it again from Fooocus Guard (tray menu or dashboard); this page opens Fooocus once it is awake.";
      bar.hidden = true;
      return 5000;
    }
    if (s.state === "asleep") {
      title.textContent = "Fooocus is asleep";
      note.textContent = "Reload this page to wake it.";
      bar.hidden = true;
      return 5000;
    }
    var left = Math.max(0, Math.ceil(s.estimate_s - s.elapsed_s));
    title.textContent = left > 0 ? "Waking Fooocus up, about " + left + " s" : "Waking Fooocus up, almost ready";
    bar.max = Math.max(1, s.estimate_s);
    bar.value = Math.min(s.elapsed_s, bar.max);
    bar.hidden = false;
    return 1000;
  }
  function poll() {
    fetch("/.fooocus-guard/wake", { cache: "no-store", credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (s) { var next = show(s); if (next) { setTimeout(poll, next); } })
      .catch(function () { setTimeout(poll, 2000); });
  }
  poll();
})();
"#;

const STYLE: &str = "body{font-family:system-ui,sans-serif;background:#111;color:#eee;display:flex;min-height:90vh;align-items:center;justify-content:center;margin:0}\nmain{max-width:36em;padding:2em}\nh1{font-size:1.6em;font-weight:600}\nprogress{width:100%}\n.by{color:#888;font-size:.85em}\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn waking(estimate_s: u64) -> Upstream {
        Upstream::Waking {
            wake_estimate: Duration::from_secs(estimate_s),
            hold_limit: Duration::from_secs(60),
        }
    }

    /// A wake keeps its start when the tray's Wake (or a new estimate) follows a visit's, and
    /// when it fails; a new wake after a sleep starts anew.
    #[test]
    fn a_wake_keeps_its_start_until_fooocus_sleeps_or_wakes() {
        let cell = WakeCell::new();
        assert!(!cell.visit(), "awake: nothing to wake");
        cell.set(Upstream::Asleep {
            wake_estimate: Duration::from_secs(9),
            hold_limit: Duration::from_secs(60),
        });
        assert_eq!(cell.now().since, None);
        assert!(cell.visit());
        assert!(!cell.visit(), "once per sleep");
        let start = cell.now().since.unwrap();
        assert_eq!(cell.now().upstream, waking(9));
        cell.set(waking(20));
        assert_eq!(cell.now().since, Some(start));
        cell.set(Upstream::Failed { reason: "x".into() });
        assert_eq!(cell.now().since, Some(start));
        cell.set(Upstream::Awake);
        assert_eq!(cell.now().since, None);
        cell.set(waking(20));
        assert!(cell.now().since.unwrap() > start);
    }

    #[test]
    fn what_counts_as_a_browser_opening_a_page() {
        let req = |method: &str, headers: &[(&str, &str)]| {
            let mut b = Request::builder().method(method).uri("/");
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            b.body(()).unwrap()
        };
        let nav = [
            ("sec-fetch-mode", "navigate"),
            ("sec-fetch-dest", "document"),
        ];
        assert!(is_navigation(&req("GET", &nav), true));
        assert!(is_navigation(&req("HEAD", &nav), true));
        assert!(!is_navigation(&req("POST", &nav), true));
        assert!(!is_navigation(&req("GET", &nav), false), "another site's");
        let frame = [("sec-fetch-mode", "navigate"), ("sec-fetch-dest", "iframe")];
        assert!(!is_navigation(&req("GET", &frame), true));
        // A fetch asking for HTML is no navigation when the browser says what it is.
        let fetch = [("sec-fetch-mode", "cors"), ("accept", "text/html")];
        assert!(!is_navigation(&req("GET", &fetch), true));
        assert!(is_navigation(&req("GET", &[("accept", "TEXT/HTML")]), true));
        assert!(!is_navigation(&req("GET", &[("accept", "*/*")]), true));
        assert!(!is_navigation(&req("GET", &[]), true), "an API client");
    }

    #[test]
    fn estimates_round_up_and_reasons_stay_text() {
        assert_eq!(secs(Duration::ZERO), 1);
        assert_eq!(secs(Duration::from_millis(2500)), 3);
        assert_eq!(secs(Duration::from_secs(40)), 40);
        assert_eq!(
            escape(r#"<img src=x onerror="a('b')">&"#),
            "&lt;img src=x onerror=&quot;a(&#39;b&#39;)&quot;&gt;&amp;"
        );
        let w = Wake {
            upstream: waking(40),
            since: Some(Instant::now()),
        };
        let j = state_json(&w);
        assert_eq!(
            (j["state"].as_str(), j["estimate_s"].as_u64()),
            (Some("waking"), Some(40))
        );
        assert!(j["reason"].is_null());
    }
}
