//! Sleep and wake (issue 25): while Fooocus sleeps the gateway keeps the port; the first admitted
//! request wakes it (once), a browser opening a page gets the guard's waking page, anything else
//! is held until Fooocus is awake (bounded in count, bytes and time), and every rule holds as
//! when it is awake: a refused request wakes nothing.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use common::*;
use guard_gateway::{Gateway, Limits, QueueEvent, Upstream};

const TOKEN: &str = "s3cret-token";

fn asleep(estimate_s: u64, hold_s: u64) -> Upstream {
    Upstream::Asleep {
        wake_estimate: Duration::from_secs(estimate_s),
        hold_limit: Duration::from_secs(hold_s),
    }
}

/// What Chromium sends when the user opens a page by its address.
const NAVIGATE: &str = "Accept: text/html,application/xhtml+xml,*/*;q=0.8\r\nSec-Fetch-Mode: navigate\r\nSec-Fetch-Dest: document\r\nSec-Fetch-Site: none\r\n";

/// The events the gateway sent so far, without waiting.
fn told(events: &Receiver<QueueEvent>) -> Vec<QueueEvent> {
    events.try_iter().collect()
}

/// Wait (at most 30 s) until the gateway holds `n` requests.
#[track_caller]
fn wait_held(g: &Gateway, n: usize) {
    let t0 = Instant::now();
    while g.held_requests() != n {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{} requests held, not {n}",
            g.held_requests()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Send a request head (and body) now; its answer is read later.
fn send(addr: SocketAddr, line: &str, headers: &str, body: &str) -> Client {
    let mut c = Client::new(addr);
    write!(
        c.w,
        "{line} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    c
}

#[test]
fn a_browser_opening_fooocus_asleep_gets_the_waking_page_then_fooocus() {
    let (g, seen, events) = start_with_events(None, None, Limits::default());
    g.set_upstream(asleep(12, 60));
    let mut tab = Client::new(g.local_addr());
    let t0 = Instant::now();
    let (h, page) = tab.ask("GET /", NAVIGATE);
    assert!(h.starts_with("http/1.1 200"), "{h}");
    assert!(h.contains("content-type: text/html"), "{h}");
    assert!(h.contains("cache-control: no-store"), "{h}");
    assert!(
        page.contains("Waking Fooocus up, about 12 s"),
        "waited {:?}: {page}",
        t0.elapsed()
    );
    // Strict policy: its own script and style only, nothing inline, framed by no other site.
    let csp = h
        .lines()
        .find_map(|l| l.strip_prefix("content-security-policy: "))
        .unwrap_or_else(|| panic!("no policy: {h}"));
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'self'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert!(!page.contains("<script>"), "no inline script: {page}");
    assert!(h.contains("x-frame-options: sameorigin"), "{h}");
    assert_eq!(told(&events), [QueueEvent::WakeRequested]);

    // The page follows the wake on the guard's own path; its script and style are served too.
    let (h, state) = tab.ask(
        "GET /.fooocus-guard/wake",
        "Sec-Fetch-Site: same-origin\r\n",
    );
    assert!(h.starts_with("http/1.1 200"), "{h}");
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["state"], "waking");
    assert_eq!(state["estimate_s"], 12);
    assert!(state["elapsed_s"].as_f64().unwrap() >= 0.0, "{state}");
    let (h, script) = tab.ask("GET /.fooocus-guard/wake.js", "");
    assert!(h.contains("content-type: text/javascript"), "{h}");
    assert!(script.contains("location.reload()"), "{script}");
    let (h, _) = tab.ask("GET /.fooocus-guard/wake.css", "");
    assert!(h.contains("content-type: text/css"), "{h}");
    // A browser without Fetch metadata, asking for HTML, gets the page too.
    let (h, page) = Client::new(g.local_addr()).ask("GET /", "Accept: text/html\r\n");
    assert!(h.starts_with("http/1.1 200"), "{h}");
    assert!(page.contains("Waking Fooocus up"), "{page}");
    assert!(
        seen.lock().is_empty(),
        "nothing reached Fooocus while it slept"
    );

    g.set_upstream(Upstream::Awake);
    let (_, state) = tab.ask("GET /.fooocus-guard/wake", "");
    assert!(state.contains(r#""state":"awake""#), "{state}");
    // The page's reload lands in Fooocus.
    let (h, body) = tab.ask("GET /", NAVIGATE);
    assert!(h.starts_with("http/1.1 200"), "{h}");
    assert_eq!(body, "ok /");
    assert_eq!(told(&events), [], "one wake, and no more");
}

#[test]
fn an_api_request_held_while_fooocus_wakes_is_forwarded_once_it_is_awake() {
    let (g, seen, events) = start_with_events(None, None, Limits::default());
    g.set_upstream(asleep(5, 60));
    let mut api = send(
        g.local_addr(),
        "POST /run/predict",
        "Content-Type: application/json\r\n",
        r#"{"fn_index":1,"data":[]}"#,
    );
    wait_held(&g, 1);
    assert_eq!(told(&events), [QueueEvent::WakeRequested]);
    assert!(seen.lock().is_empty(), "held, not forwarded");
    g.set_upstream(Upstream::Awake);
    let (h, body) = api.read_response();
    assert!(h.starts_with("http/1.1 200"), "{h}");
    assert_eq!(body, "ok /run/predict");
    assert_eq!(g.held_requests(), 0);
    // The connection goes on as any other.
    let (h, body) = api.ask("GET /config", "");
    assert!(h.starts_with("http/1.1 200"), "{h}");
    assert_eq!(body, "ok /config");
}

/// A tab opened before the sleep reconnects its queue socket after it: the upgrade waits for
/// the wake, then is tunnelled (and tapped) as always.
#[test]
fn a_queue_socket_held_while_fooocus_wakes_is_tunnelled_once_it_is_awake() {
    let (g, _, events) = start_with_events(None, None, Limits::default());
    g.set_upstream(asleep(5, 60));
    let mut tab = Client::new(g.local_addr());
    write!(
        tab.w,
        "GET /queue/join HTTP/1.1\r\nHost: 127.0.0.1\r\n{UPGRADE}\r\n"
    )
    .unwrap();
    wait_held(&g, 1);
    assert_eq!(told(&events), [QueueEvent::WakeRequested]);
    g.set_upstream(Upstream::Awake);
    let (h, _) = tab.read_response();
    assert!(h.starts_with("http/1.1 101"), "{h}");
    assert_eq!(
        tab.frame(r#"{"fn_index":7,"session_hash":"tab-a"}"#),
        r#"{"msg":"process_starts"}"#
    );
    let joined = QueueEvent::Joined {
        session_hash: "tab-a".into(),
        fn_index: 7,
    };
    assert_eq!(
        events.recv_timeout(Duration::from_secs(30)).ok(),
        Some(joined)
    );
}

#[test]
fn past_the_hold_limit_a_held_request_gets_503_and_the_reason() {
    let (g, _, _) = start_with_events(None, None, Limits::default());
    g.set_upstream(asleep(20, 1));
    let t0 = Instant::now();
    let (h, body) = Client::new(g.local_addr()).ask("GET /config", "");
    let waited = t0.elapsed();
    assert!(h.starts_with("http/1.1 503"), "{h}");
    assert!(h.contains("retry-after: 20"), "{h}");
    assert!(body.contains("did not wake up within 1 s"), "{body}");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    assert_eq!(g.held_requests(), 0);
}

#[test]
fn a_failed_wake_answers_503_with_its_reason() {
    let (g, seen, _) = start_with_events(None, None, Limits::default());
    g.set_upstream(asleep(5, 60));
    let mut api = send(g.local_addr(), "POST /run/predict", "", "{}");
    wait_held(&g, 1);
    let reason = "Fooocus exited during start-up (<CUDA> out of memory).";
    g.set_upstream(Upstream::Failed {
        reason: reason.into(),
    });
    let (h, body) = api.read_response();
    assert!(h.starts_with("http/1.1 503"), "{h}");
    assert!(h.contains("retry-after:"), "{h}");
    assert!(
        body.contains("(<CUDA> out of memory). Wake it again"),
        "{body}"
    );
    // New requests too, until the state changes.
    let (h, body) = Client::new(g.local_addr()).ask("GET /config", "");
    assert!(
        h.starts_with("http/1.1 503") && body.contains(reason),
        "{h}{body}"
    );
    // A browser gets the page with the reason, as text, never as markup.
    let (h, page) = Client::new(g.local_addr()).ask("GET /", NAVIGATE);
    assert!(h.starts_with("http/1.1 503"), "{h}");
    assert!(page.contains("&lt;CUDA&gt; out of memory). Wake"), "{page}");
    assert!(!page.contains("<CUDA>"), "{page}");
    let (_, state) = Client::new(g.local_addr()).ask("GET /.fooocus-guard/wake", "");
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(
        (state["state"].as_str(), state["reason"].as_str()),
        (Some("failed"), Some(reason))
    );
    assert!(seen.lock().is_empty());
    // Woken from the tray: the next request waits for it again, and goes through.
    g.set_upstream(Upstream::Waking {
        wake_estimate: Duration::from_secs(5),
        hold_limit: Duration::from_secs(60),
    });
    let mut again = send(g.local_addr(), "GET /config", "", "");
    wait_held(&g, 1);
    g.set_upstream(Upstream::Awake);
    assert_eq!(again.read_response().1, "ok /config");
}

/// What the rules refuse awake they refuse asleep, with the same answer, and it wakes nothing:
/// a wrong or missing token (from this machine or another address), another site's page, a
/// name that is not this machine (without a token), a client over its rate.
#[test]
fn a_refused_request_wakes_nothing_and_gets_what_it_gets_awake() {
    let (with_token, seen_t, events_t) = start_with_events(Some(TOKEN), None, Limits::default());
    let (open, seen_o, events_o) = start_with_events(None, Some(1), Limits::default());
    let port = open.local_addr().port();
    // (gateway, from, request line, headers)
    let refused: Vec<(&Gateway, [u8; 4], &str, String)> = vec![
        (&with_token, [127, 0, 0, 1], "GET /", NAVIGATE.to_string()),
        (&with_token, [127, 0, 0, 7], "GET /config", String::new()),
        (
            &with_token,
            [127, 0, 0, 7],
            "POST /run/predict",
            "Authorization: Bearer wrong-token\r\nContent-Length: 0\r\n".into(),
        ),
        (
            &with_token,
            [127, 0, 0, 7],
            "GET /queue/join",
            format!("Cookie: fooocus_guard_token=wrong\r\n{UPGRADE}"),
        ),
        (
            &with_token,
            [127, 0, 0, 1],
            "GET /config",
            format!("Authorization: Bearer {TOKEN}\r\nOrigin: http://evil.example\r\n"),
        ),
        (
            &open,
            [127, 0, 0, 1],
            "GET /queue/join",
            format!("Origin: http://evil.example\r\n{UPGRADE}"),
        ),
        (
            &open,
            [127, 0, 0, 1],
            "GET /",
            format!("Host: rebound.example:{port}\r\n{NAVIGATE}"),
        ),
        (
            &open,
            [127, 0, 0, 1],
            "GET /config",
            "Sec-Fetch-Site: cross-site\r\nSec-Fetch-Mode: cors\r\n".into(),
        ),
    ];
    let ask = |(g, from, line, headers): &(&Gateway, [u8; 4], &str, String)| {
        let (h, body) = Client::from(*from, g.local_addr()).ask(line, headers);
        (h.lines().next().unwrap_or("").to_string(), body)
    };
    let awake: Vec<_> = refused.iter().map(ask).collect();
    // The rate: one queue join a minute from this address, taken while awake.
    let (h, _) = Client::new(open.local_addr()).ask("GET /queue/join", UPGRADE);
    assert!(h.starts_with("http/1.1 101"), "{h}");
    let seen_before = (seen_t.lock().len(), seen_o.lock().len());
    told(&events_t);
    told(&events_o);

    with_token.set_upstream(asleep(5, 60));
    open.set_upstream(asleep(5, 60));
    let sleeping: Vec<_> = refused.iter().map(ask).collect();
    for ((r, a), s) in refused.iter().zip(&awake).zip(&sleeping) {
        assert_eq!(a, s, "{} {}", r.2, r.3);
        assert!(
            a.0.starts_with("http/1.1 401") || a.0.starts_with("http/1.1 403"),
            "refused: {a:?}"
        );
    }
    let (h, body) = Client::new(open.local_addr()).ask("GET /queue/join", UPGRADE);
    assert!(
        h.starts_with("http/1.1 429"),
        "over the rate while asleep: {h}"
    );
    assert!(body.contains("at most 1 a minute"), "{body}");

    assert_eq!(told(&events_t), [], "nothing woke Fooocus");
    assert_eq!(told(&events_o), []);
    assert_eq!(with_token.last_visit(), None, "no visit");
    let (_, state) = Client::new(with_token.local_addr()).ask(
        "GET /.fooocus-guard/wake",
        &format!("Authorization: Bearer {TOKEN}\r\n"),
    );
    assert!(state.contains(r#""state":"asleep""#), "{state}");
    // The wake's state is the guard's own and passes the rules too: no token, no answer.
    let (h, _) =
        Client::from([127, 0, 0, 7], with_token.local_addr()).ask("GET /.fooocus-guard/wake", "");
    assert!(h.starts_with("http/1.1 401"), "{h}");
    assert_eq!(
        (seen_t.lock().len(), seen_o.lock().len()),
        seen_before,
        "nothing reached Fooocus"
    );
    // The right token from another address is a visit: it wakes Fooocus.
    let (h, page) = Client::from([127, 0, 0, 7], with_token.local_addr()).ask(
        "GET /",
        &format!("Cookie: fooocus_guard_token={TOKEN}\r\n{NAVIGATE}"),
    );
    assert!(h.starts_with("http/1.1 200"), "{h}");
    assert!(
        !page.contains(TOKEN),
        "the token stays out of the page: {page}"
    );
    assert_eq!(told(&events_t), [QueueEvent::WakeRequested]);
}

/// WakeRequested once per sleep, whatever arrives meanwhile; a wake from the tray (the
/// supervisor says Waking) is not asked for again.
#[test]
fn a_sleep_is_woken_once() {
    let (g, _, events) = start_with_events(None, None, Limits::default());
    g.set_upstream(asleep(5, 60));
    let mut held = Vec::new();
    for i in 0..3 {
        let (h, _) = Client::new(g.local_addr()).ask("GET /", NAVIGATE);
        assert!(h.starts_with("http/1.1 200"), "{h}");
        held.push(send(g.local_addr(), &format!("GET /file={i}.png"), "", ""));
    }
    wait_held(&g, 3);
    assert_eq!(told(&events), [QueueEvent::WakeRequested]);
    g.set_upstream(Upstream::Awake);
    for (i, mut c) in held.into_iter().enumerate() {
        assert_eq!(c.read_response().1, format!("ok /file={i}.png"));
    }
    // The next sleep is woken again, once.
    g.set_upstream(asleep(5, 60));
    let (h, _) = Client::new(g.local_addr()).ask("GET /", NAVIGATE);
    assert!(h.starts_with("http/1.1 200"), "{h}");
    let (h, _) = Client::new(g.local_addr()).ask("GET /", NAVIGATE);
    assert!(h.starts_with("http/1.1 200"), "{h}");
    assert_eq!(told(&events), [QueueEvent::WakeRequested]);
    // Woken from the tray: a visit finds it waking and asks for nothing.
    g.set_upstream(Upstream::Awake);
    g.set_upstream(Upstream::Waking {
        wake_estimate: Duration::from_secs(5),
        hold_limit: Duration::from_secs(60),
    });
    let (h, _) = Client::new(g.local_addr()).ask("GET /", NAVIGATE);
    assert!(h.starts_with("http/1.1 200"), "{h}");
    assert_eq!(told(&events), []);
}

/// The idle clock moves for admitted requests only: not for a refused one, the waking page's
/// polls or the guard's own Stop.
#[test]
fn the_last_visit_is_the_last_admitted_request() {
    let (g, seen, events) = start_with_events(Some(TOKEN), None, Limits::default());
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    assert_eq!(g.last_visit(), None);
    let (h, _) = Client::new(g.local_addr()).ask("GET /config", "");
    assert!(h.starts_with("http/1.1 401"), "{h}");
    assert_eq!(g.last_visit(), None);
    let before = Instant::now();
    let mut tab = Client::new(g.local_addr());
    let (h, _) = tab.ask("GET /queue/join", &format!("{auth}{UPGRADE}"));
    assert!(h.starts_with("http/1.1 101"), "{h}");
    let visit = g.last_visit().expect("an admitted request is a visit");
    assert!(visit >= before, "{visit:?} {before:?}");
    tab.frame(r#"{"fn_index":7,"session_hash":"tab-a"}"#);
    let started = QueueEvent::Started {
        session_hash: "tab-a".into(),
        fn_index: 7,
    };
    assert!(
        std::iter::from_fn(|| events.recv_timeout(Duration::from_secs(30)).ok())
            .any(|e| e == started)
    );
    // The guard's Stop asks Fooocus for /config (the fake's is not Gradio's, so the Stop
    // fails there): it went to Fooocus, and is no visit.
    let n = seen.lock().len();
    assert!(g.request_stop().is_err());
    assert_eq!(seen.lock().len(), n + 1);
    let (h, _) = Client::new(g.local_addr()).ask("GET /.fooocus-guard/wake", &auth);
    assert!(h.starts_with("http/1.1 200"), "{h}");
    let (h, _) = Client::new(g.local_addr()).ask("GET /config", "Authorization: Bearer nope\r\n");
    assert!(h.starts_with("http/1.1 401"), "{h}");
    assert_eq!(g.last_visit(), Some(visit));
    let (h, _) = Client::new(g.local_addr()).ask("GET /config", &auth);
    assert!(h.starts_with("http/1.1 200"), "{h}");
    assert!(g.last_visit().unwrap() > visit);
}

/// Held requests are bounded in count (per client and in all) and a held request's body stays
/// with its client: the gateway reads no more of it than its head's buffer until Fooocus is
/// awake, then it is forwarded whole.
#[test]
fn the_hold_is_bounded() {
    let limits = Limits {
        max_held: 3,
        max_held_per_client: 2,
        ..Limits::default()
    };
    let (g, seen, _) = start_with_events(None, None, limits);
    g.set_upstream(asleep(5, 60));
    let addr = g.local_addr();
    let held = |from: [u8; 4], path: &str| {
        let mut c = Client::from(from, addr);
        write!(c.w, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        c
    };
    let mut waiting = vec![held([127, 0, 0, 1], "/a"), held([127, 0, 0, 1], "/b")];
    wait_held(&g, 2);
    let (h, body) = Client::new(addr).ask("GET /c", "");
    assert!(
        h.starts_with("http/1.1 503"),
        "over this client's share: {h}"
    );
    assert!(h.contains("retry-after:"), "{h}");
    assert!(body.contains("from this computer are waiting"), "{body}");
    waiting.push(held([127, 0, 0, 2], "/d"));
    wait_held(&g, 3);
    let (h, body) = Client::from([127, 0, 0, 3], addr).ask("GET /e", "");
    assert!(h.starts_with("http/1.1 503"), "over the total: {h}");
    assert!(body.contains("Too many requests are waiting"), "{body}");
    // A held connection that leaves gives its place back.
    drop(waiting.pop());
    wait_held(&g, 2);

    // A held upload: its client's writes stall (what the gateway does not read stays in the
    // sockets' buffers) instead of the gateway taking the body.
    const LEN: usize = 64 << 20;
    let mut up = Client::from([127, 0, 0, 4], addr);
    write!(
        up.w,
        "POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {LEN}\r\n\r\n"
    )
    .unwrap();
    wait_held(&g, 3);
    // Written by a thread of its own with plain blocking writes (a socket write timeout leaves
    // a Windows socket unusable); stalled = no progress for 2 s.
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut w = up.w.try_clone().unwrap();
    let sent2 = sent.clone();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'u'; 64 * 1024];
        let mut n = 0;
        while n < LEN {
            n += w.write(&chunk[..chunk.len().min(LEN - n)]).unwrap();
            sent2.store(n, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let sent_now = || sent.load(std::sync::atomic::Ordering::SeqCst);
    let (mut last, mut since) = (sent_now(), Instant::now());
    while since.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            sent_now() < 24 << 20,
            "the gateway took {} MiB of a held body",
            sent_now() >> 20
        );
        if sent_now() != last {
            (last, since) = (sent_now(), Instant::now());
        }
    }
    println!(
        "held upload: the client's writes stalled after {} KiB",
        last >> 10
    );
    g.set_upstream(Upstream::Awake);
    writer.join().unwrap();
    let (h, body) = up.read_response();
    assert!(h.starts_with("http/1.1 200"), "{h}");
    assert_eq!(body, "ok /upload");
    for mut c in waiting {
        assert!(c.read_response().0.starts_with("http/1.1 200"));
    }
    assert_eq!(seen.lock().len(), 3, "/a, /b and the upload; /d left");
}

/// Awake with Fooocus not answering (a restart after a crash): as always, 502 at once.
#[test]
fn awake_with_fooocus_gone_answers_as_before() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up = dead.local_addr().unwrap();
    drop(dead);
    let g = Gateway::start(config(up, None, Limits::default())).unwrap();
    g.set_upstream(asleep(5, 60));
    g.set_upstream(Upstream::Awake);
    let (h, body) = Client::new(g.local_addr()).ask("GET /config", "");
    assert!(h.starts_with("http/1.1 502"), "{h}");
    assert!(body.contains("Fooocus is not answering yet"), "{body}");
}

/// A held request keeps its connection in the connection limits: over its address's share, a
/// newcomer of the same address takes a held one's place as it would any busy connection's
/// (the held request is dropped and its place among the held returned), never a new place.
#[test]
fn held_requests_stay_within_the_connection_limits() {
    let limits = Limits {
        max_per_client: 2,
        ..Limits::default()
    };
    let (g, seen, _) = start_with_events(None, None, limits);
    g.set_upstream(asleep(5, 60));
    let addr = g.local_addr();
    let held = |path: &str| {
        let mut c = Client::from([127, 0, 0, 5], addr);
        write!(c.w, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        c
    };
    let mut a = held("/a");
    let mut b = held("/b");
    wait_held(&g, 2);
    let mut c = held("/c");
    // One of a and b gave its place to c: still 2 held, and the address holds 2 connections.
    let t0 = Instant::now();
    let gone = loop {
        if a.closed_by_gateway_now() {
            break 'a';
        }
        if b.closed_by_gateway_now() {
            break 'b';
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no connection gave its place"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    wait_held(&g, 2);
    g.set_upstream(Upstream::Awake);
    let kept = if gone == 'a' { &mut b } else { &mut a };
    assert!(kept.read_response().0.starts_with("http/1.1 200"));
    assert_eq!(c.read_response().1, "ok /c");
    assert_eq!(seen.lock().len(), 2, "{:?}", seen.lock());
}

/// Over the wrong-token budget a token waits its turn and then gets 429, asleep as awake, and
/// wakes nothing (a guesser cannot keep the GPU busy by guessing either).
#[test]
fn over_the_wrong_token_budget_nothing_wakes() {
    let limits = Limits {
        wrong_tokens_per_minute: 1,
        token_wait: Duration::from_millis(300),
        ..Limits::default()
    };
    let (g, seen, events) = start_with_events(Some(TOKEN), None, limits);
    g.set_upstream(asleep(5, 60));
    let (h, _) = Client::from([127, 0, 0, 8], g.local_addr())
        .ask("GET /", "Authorization: Bearer guess-1\r\n");
    assert!(h.starts_with("http/1.1 401"), "the budget's one check: {h}");
    let (h, body) = Client::from([127, 0, 0, 8], g.local_addr())
        .ask("GET /", "Authorization: Bearer guess-2\r\n");
    assert!(h.starts_with("http/1.1 429"), "{h}");
    assert!(body.contains("Too many wrong tokens"), "{body}");
    assert_eq!(told(&events), []);
    assert_eq!(g.last_visit(), None);
    assert_eq!(g.held_requests(), 0);
    assert!(seen.lock().is_empty());
}
