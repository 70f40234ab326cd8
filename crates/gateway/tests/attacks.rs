//! Attacks on the gateway, each against a small Gradio-like upstream that records every request
//! it is given: what must be refused never reaches it, on any request of any connection.

mod common;

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;
use guard_gateway::{Gateway, GatewayConfig, Limits, QueueEvent};

#[test]
fn every_request_of_a_keep_alive_connection_is_checked() {
    let (g, seen) = start(Some("s3cret-token"), None, Limits::default());
    let mut c = Client::new(g.local_addr());
    let (h, _) = c.ask("GET /config", "Authorization: Bearer s3cret-token\r\n");
    assert!(h.starts_with("http/1.1 200"), "{h}");
    // The same connection, without the token now.
    let (h, _) = c.ask("GET /file=secret.png", "");
    assert!(h.starts_with("http/1.1 401"), "{h}");
    let seen = seen.lock();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        !seen[0].to_ascii_lowercase().contains("s3cret"),
        "the token is not passed to Fooocus: {seen:?}"
    );
}

#[test]
fn keep_alive_then_websocket_upgrade_is_rate_limited_and_tapped() {
    let (g, _, events) = start_with_events(None, Some(1), Limits::default());
    let mut a = Client::new(g.local_addr());
    let (h, _) = a.ask("GET /config", "");
    assert!(h.starts_with("http/1.1 200"), "{h}");
    let (h, _) = a.ask("GET /queue/join", UPGRADE);
    assert!(h.starts_with("http/1.1 101"), "{h}");
    assert_eq!(
        a.frame(r#"{"fn_index":7,"session_hash":"tab-a"}"#),
        r#"{"msg":"process_starts"}"#
    );
    // The tap saw the generation start on the connection's second request.
    let started = QueueEvent::Started {
        session_hash: "tab-a".into(),
        fn_index: 7,
    };
    // (A broken tap fails here after 30 s instead of hanging.)
    let seen: Vec<QueueEvent> =
        std::iter::from_fn(|| events.recv_timeout(Duration::from_secs(30)).ok())
            .take_while(|e| *e != started)
            .collect();
    assert!(
        seen.contains(&QueueEvent::Joined {
            session_hash: "tab-a".into(),
            fn_index: 7
        }),
        "{seen:?}"
    );
    let task = g.active_task().expect("the queue tap saw the generation");
    assert_eq!((task.session_hash.as_str(), task.fn_index), ("tab-a", 7));
    let mut b = Client::new(g.local_addr());
    let (h, _) = b.ask("GET /config", "");
    assert!(h.starts_with("http/1.1 200"), "{h}");
    let (h, body) = b.ask("GET /queue/join", UPGRADE);
    assert!(h.starts_with("http/1.1 429"), "{h}");
    assert!(body.contains("at most 1 a minute"), "{body}");
}

#[test]
fn encoded_queue_paths_are_the_queue() {
    let (g, seen) = start(None, Some(1), Limits::default());
    let mut a = Client::new(g.local_addr());
    let (h, _) = a.ask("GET /queue/%6Aoin", UPGRADE);
    assert!(h.starts_with("http/1.1 101"), "{h}");
    for path in [
        "/queue/%6Aoin",
        "//queue/join",
        "/x/../queue/join",
        "/queue/%6a%6f%69%6e",
    ] {
        let (h, _) = Client::new(g.local_addr()).ask(&format!("GET {path}"), UPGRADE);
        assert!(h.starts_with("http/1.1 429"), "{path}: {h}");
    }
    assert_eq!(seen.lock().len(), 1);
}

#[test]
fn other_sites_cannot_drive_fooocus_without_a_token() {
    let (g, seen) = start(None, None, Limits::default());
    let port = g.local_addr().port();
    let same = format!("Origin: http://127.0.0.1:{port}\r\nHost: 127.0.0.1:{port}\r\n");
    let (h, _) = Client::new(g.local_addr()).ask("GET /queue/join", &format!("{same}{UPGRADE}"));
    assert!(h.starts_with("http/1.1 101"), "same origin: {h}");
    let attacks = [
        // A page of another site opening the queue WebSocket.
        format!("Origin: http://evil.example\r\nHost: 127.0.0.1:{port}\r\n{UPGRADE}"),
        // A rebound DNS name: the page is "same origin" with itself, but not this machine.
        format!("Origin: http://evil.example:{port}\r\nHost: evil.example:{port}\r\n{UPGRADE}"),
        format!("Origin: null\r\nHost: 127.0.0.1:{port}\r\n{UPGRADE}"),
    ];
    for a in &attacks {
        let (h, _) = Client::new(g.local_addr()).ask("GET /queue/join", a);
        assert!(h.starts_with("http/1.1 403"), "{a}: {h}");
    }
    let post =
        format!("Origin: http://evil.example\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 2\r\n");
    let mut c = Client::new(g.local_addr());
    write!(c.w, "POST /run/predict HTTP/1.1\r\n{post}\r\n{{}}").unwrap();
    let (h, _) = c.read_response();
    assert!(h.starts_with("http/1.1 403"), "cross-site POST: {h}");
    assert_eq!(seen.lock().len(), 1, "{:?}", seen.lock());
}

#[test]
fn tokens_wrong_malformed_and_percent_encoded() {
    let token = "p@ss w/rd+x;1";
    let (g, seen) = start(Some(token), None, Limits::default());
    let get = |path: &str, headers: &str| {
        Client::new(g.local_addr()).ask(&format!("GET {path}"), headers)
    };
    for (path, headers) in [
        ("/?token=wrong-token", ""),
        ("/?token=%zz%", ""),
        ("/?token=p@ss%20w/rd+x;", ""),
        ("/?token=", ""),
        ("/", "Authorization: Bearer\r\n"),
        ("/", "Authorization: Basic cEBzcw==\r\n"),
        ("/", "Cookie: fooocus_guard_token=p@ss\r\n"),
    ] {
        let (h, _) = get(path, headers);
        assert!(h.starts_with("http/1.1 401"), "{path} {headers}: {h}");
    }
    // The token as a browser sends it: percent-encoded; answered with the cookie.
    let (h, _) = get("/?token=p%40ss%20w%2Frd%2Bx%3B1&__theme=dark", "");
    assert!(
        h.starts_with("http/1.1 302") && h.contains("location: /?__theme=dark"),
        "{h}"
    );
    let cookie = h
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_string();
    let (h, _) = get("/config", &format!("Cookie: {cookie}\r\n"));
    assert!(
        h.starts_with("http/1.1 200"),
        "the cookie it set works: {h}"
    );
    let (h, _) = get(
        "/config",
        "Authorization: bEARER p%40ss%20w%2Frd%2Bx%3B1\r\n",
    );
    assert!(h.starts_with("http/1.1 200"), "bearer in any case: {h}");
    assert_eq!(seen.lock().len(), 2);
}

#[test]
fn slow_and_silent_connections_are_closed() {
    let (g, seen) = start(None, None, quick());
    let mut silent = Client::new(g.local_addr());
    let mut slow = Client::new(g.local_addr());
    // Slowloris: a header line every 200 ms, never the end of the head.
    slow.w
        .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    let mut w = slow.w.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        for i in 0..100 {
            if write!(w, "X-{i}: y\r\n").is_err() {
                return true; // the gateway closed it
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    });
    assert!(
        silent.closed_by_gateway(),
        "a connection that never sends is closed"
    );
    assert!(trickle.join().unwrap(), "a head that never ends is cut off");
    // An idle keep-alive connection is closed too.
    let mut idle = Client::new(g.local_addr());
    let (h, _) = idle.ask("GET /config", "");
    assert!(h.starts_with("http/1.1 200"), "{h}");
    assert!(
        idle.closed_by_gateway(),
        "an idle keep-alive connection is closed"
    );
    assert_eq!(seen.lock().len(), 1);
}

#[test]
fn a_body_that_stops_arriving_is_cut_off() {
    let limits = Limits {
        body_timeout: Duration::from_secs(1),
        min_body_rate: 1,
        ..Limits::default()
    };
    let (g, seen) = start(None, None, limits);
    let mut c = Client::new(g.local_addr());
    // Headers that promise 1000 bytes, then 10 of them, then nothing: the connection is busy
    // (a request in flight), so it would never be given up to a newcomer.
    write!(
        c.w,
        "POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n0123456789"
    )
    .unwrap();
    let (h, body) = c.read_response();
    assert!(h.starts_with("http/1.1 408"), "{h}");
    assert!(body.contains("stopped arriving"), "{body}");
    assert!(c.closed_by_gateway(), "and its connection is closed");
    // A body that keeps arriving, slower than the limit as a whole, goes through.
    let mut slow = Client::new(g.local_addr());
    write!(
        slow.w,
        "POST /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 6\r\n\r\n"
    )
    .unwrap();
    for b in b"abcdef" {
        std::thread::sleep(Duration::from_millis(400));
        slow.w.write_all(&[*b]).unwrap();
    }
    let (h, body) = slow.read_response();
    assert!(
        h.starts_with("http/1.1 200") && body == "ok /slow",
        "{h} {body}"
    );
    assert!(seen.lock().iter().any(|s| s.starts_with("POST /slow")));
}

#[test]
fn idle_connections_give_way_to_a_real_client() {
    let limits = Limits {
        max_connections: 40,
        max_per_client: 20,
        ..Limits::default()
    };
    let (g, _) = start(None, None, limits);
    let mut idle: Vec<Client> = (0..200).map(|_| Client::new(g.local_addr())).collect();
    let (h, body) = Client::new(g.local_addr()).ask("GET /config", "");
    assert!(h.starts_with("http/1.1 200") && body == "ok /config", "{h}");
    // The oldest idle ones were closed to make room (their header time is far from over).
    assert!(idle[0].closed_by_gateway());
    assert!(idle[100].closed_by_gateway());
}

#[test]
fn an_oversized_head_is_refused() {
    let (g, seen) = start(None, None, Limits::default());
    let mut c = Client::new(g.local_addr());
    let big = format!(
        "GET /config HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    // The gateway may answer and close before all of it is written.
    let _ = c.w.write_all(big.as_bytes());
    let mut answer = String::new();
    let _ = c.r.read_line(&mut answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );
    assert!(seen.lock().is_empty(), "Fooocus never sees it");
}

#[test]
fn a_stopped_gateway_frees_its_port_at_once() {
    let (up, _) = upstream();
    let cfg = |listen: SocketAddr| GatewayConfig {
        listen,
        ..config(up, None, Limits::default())
    };
    // A wildcard listen, as for Fooocus on the LAN, with a connection still open.
    let g = Gateway::start(cfg("0.0.0.0:0".parse().unwrap())).unwrap();
    let port = g.local_addr().port();
    let mut open = Client::new(SocketAddr::from(([127, 0, 0, 1], port)));
    let (h, _) = open.ask("GET /config", "");
    assert!(h.starts_with("http/1.1 200"), "{h}");
    drop(g);
    assert!(
        open.closed_by_gateway(),
        "its connections are closed with it"
    );
    let again = Gateway::start(cfg(SocketAddr::from(([0, 0, 0, 0], port))));
    assert!(again.is_ok(), "{:?}", again.err());

    // Closed while another holder (a stop request in flight) still keeps it: the port is
    // free all the same, so the restart's gateway binds it.
    let g = std::sync::Arc::new(again.unwrap());
    let held = g.clone();
    g.close();
    let third = Gateway::start(cfg(SocketAddr::from(([0, 0, 0, 0], port))));
    assert!(third.is_ok(), "{:?}", third.err());
    drop(held);
}

#[test]
fn a_burst_of_closed_connections_does_not_push_out_a_waiting_request() {
    // Connections that open and close at once pile up in the accept queue (as a flood's do when
    // its client goes away). Each one the gateway accepts while full takes the slot of the
    // longest-idle connection: a real client accepted among them, its request sent but not yet
    // read, must not be the one given up.
    let limits = Limits {
        max_connections: 16,
        max_per_client: 16,
        ..Limits::default()
    };
    let (g, _) = start(None, None, limits);
    let addr = g.local_addr();
    for round in 0..20 {
        let burst: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(move || {
                    for _ in 0..150 {
                        drop(TcpStream::connect(addr).unwrap());
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(2));
        let (h, body) = Client::new(addr).ask("GET /config", "");
        assert!(
            h.starts_with("http/1.1 200") && body == "ok /config",
            "round {round}: {h:?}"
        );
        for t in burst {
            t.join().unwrap();
        }
    }
}

/// Issue 23: any page the user visits read Fooocus's config, files and prompt log through the
/// gateway (a cross-site GET, answered 200 with Gradio's `Access-Control-Allow-Origin: *`).
#[test]
fn other_sites_cannot_read_fooocus_without_a_token() {
    let (g, seen) = start(None, None, Limits::default());
    let port = g.local_addr().port();
    let host = format!("Host: 127.0.0.1:{port}\r\n");
    let own = format!("{host}Origin: http://127.0.0.1:{port}\r\n");
    // Fooocus's own page, a typed address or bookmark, and a link followed in a tab.
    for ok in [
        host.clone(),
        format!("{own}Sec-Fetch-Site: same-origin\r\nSec-Fetch-Mode: cors\r\n"),
        format!("{host}Sec-Fetch-Site: same-origin\r\nSec-Fetch-Dest: image\r\n"),
        format!("{host}Sec-Fetch-Site: none\r\nSec-Fetch-Mode: navigate\r\nSec-Fetch-Dest: document\r\n"),
        format!("{host}Sec-Fetch-Site: cross-site\r\nSec-Fetch-Mode: navigate\r\nSec-Fetch-Dest: document\r\n"),
        format!("Host: localhost:{port}\r\nOrigin: http://localhost:{port}\r\n"),
    ] {
        let (h, body) = Client::new(g.local_addr()).ask("GET /config", &ok);
        assert!(h.starts_with("http/1.1 200"), "{ok}: {h}");
        assert_eq!(body, "ok /config");
        assert!(
            !h.contains("access-control-"),
            "Gradio's wildcard CORS never reaches the browser: {h}"
        );
    }
    let before = seen.lock().len();
    for path in [
        "/config",
        "/file=config.txt",
        "/file=outputs/2026-01-01/log.html",
    ] {
        for bad in [
            // fetch() from another site's page.
            format!("{host}Origin: http://evil.example\r\nSec-Fetch-Site: cross-site\r\nSec-Fetch-Mode: cors\r\n"),
            // An older browser: Origin only.
            format!("{host}Origin: https://evil.example\r\n"),
            // <img>/<script> (no Origin), and a frame.
            format!("{host}Sec-Fetch-Site: cross-site\r\nSec-Fetch-Mode: no-cors\r\nSec-Fetch-Dest: image\r\n"),
            format!("{host}Sec-Fetch-Site: cross-site\r\nSec-Fetch-Mode: navigate\r\nSec-Fetch-Dest: iframe\r\n"),
            // A page on another port of this machine: same-site, another origin.
            format!("{host}Origin: http://127.0.0.1:3000\r\nSec-Fetch-Site: same-site\r\nSec-Fetch-Mode: cors\r\n"),
            format!("{host}Origin: null\r\n"),
            // DNS rebinding: the page is "same origin" with itself, the name is not this machine.
            format!("Host: evil.example:{port}\r\nSec-Fetch-Site: same-origin\r\n"),
            format!("Host: evil.example:{port}\r\n"),
        ] {
            let (h, body) = Client::new(g.local_addr()).ask(&format!("GET {path}"), &bad);
            assert!(h.starts_with("http/1.1 403"), "{path} {bad}: {h}");
            assert!(!h.contains("access-control-"), "{h}");
            assert!(
                body.contains("allowed origins") || body.contains("not this computer"),
                "the refusal says why and what to do: {body}"
            );
        }
    }
    assert_eq!(seen.lock().len(), before, "none of them reached Fooocus");
}

#[test]
fn an_allowed_origin_gets_its_own_origin_never_a_wildcard() {
    let (up, seen) = upstream();
    let g = Gateway::start(GatewayConfig {
        allowed_origins: vec!["http://127.0.0.1:3000".into()],
        ..config(up, None, Limits::default())
    })
    .unwrap();
    let port = g.local_addr().port();
    let from = |origin: &str| {
        Client::new(g.local_addr()).ask(
            "GET /config",
            &format!("Host: 127.0.0.1:{port}\r\nOrigin: {origin}\r\nSec-Fetch-Site: same-site\r\nSec-Fetch-Mode: cors\r\n"),
        )
    };
    let (h, body) = from("http://127.0.0.1:3000");
    assert!(h.starts_with("http/1.1 200") && body == "ok /config", "{h}");
    assert!(
        h.contains("access-control-allow-origin: http://127.0.0.1:3000\r\n"),
        "{h}"
    );
    assert!(!h.contains("access-control-allow-origin: *"), "{h}");
    assert!(h.contains("vary: origin"), "{h}");
    let (h, _) = from("http://127.0.0.1:3001");
    assert!(h.starts_with("http/1.1 403"), "{h}");
    // Its own page gets no CORS header at all.
    let (h, _) =
        Client::new(g.local_addr()).ask("GET /config", &format!("Host: 127.0.0.1:{port}\r\n"));
    assert!(
        h.starts_with("http/1.1 200") && !h.contains("access-control-"),
        "{h}"
    );
    assert_eq!(seen.lock().len(), 2);
}

/// With a token, any name reaches Fooocus (the token authenticates; a rebound name's page has
/// no cookie), but a page of another origin is refused even with the cookie: a page on another
/// port of this machine is same-site and the browser sends it the SameSite=Strict cookie.
#[test]
fn with_a_token_other_sites_are_refused_even_with_the_cookie() {
    let (g, seen) = start(Some("s3cret-token"), None, Limits::default());
    let port = g.local_addr().port();
    let cookie = "Cookie: fooocus_guard_token=s3cret-token\r\n";
    let (h, _) = Client::new(g.local_addr()).ask(
        "GET /config",
        &format!("Host: mybox.lan:{port}\r\nOrigin: http://mybox.lan:{port}\r\n{cookie}"),
    );
    assert!(h.starts_with("http/1.1 200"), "{h}");
    let mut c = Client::new(g.local_addr());
    write!(
        c.w,
        "POST /run/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:8080\r\nSec-Fetch-Site: same-site\r\n{cookie}Content-Length: 2\r\n\r\n{{}}"
    )
    .unwrap();
    let (h, _) = c.read_response();
    assert!(h.starts_with("http/1.1 403"), "{h}");
    let (h, _) = Client::new(g.local_addr()).ask(
        "GET /queue/join",
        &format!("Host: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:8080\r\n{cookie}{UPGRADE}"),
    );
    assert!(h.starts_with("http/1.1 403"), "{h}");
    assert_eq!(seen.lock().len(), 1);
}

/// Issue 23: the cookie in a second `Cookie:` header went to Fooocus (only the first header was
/// read and cleaned).
#[test]
fn the_token_never_reaches_fooocus_in_any_header() {
    let token = "s3cret-token";
    let (g, seen) = start(Some(token), None, Limits::default());
    for headers in [
        format!("Authorization: Bearer {token}\r\nCookie: a=b\r\nCookie: fooocus_guard_token={token}\r\n"),
        format!("Cookie: a=b\r\nCookie: c=d; fooocus_guard_token={token}\r\n"),
        format!("Cookie: fooocus_guard_token={token}\r\nAuthorization: Basic YTpi\r\nAuthorization: Bearer {token}\r\n"),
        format!("Cookie: fooocus_guard_token={token}\r\nReferer: http://127.0.0.1/?token={token}\r\nX-Copy: {token}\r\n"),
        format!("Cookie: fooocus_guard_token={token}\r\nCookie: fooocus_guard_token=\"{token}\"\r\n"),
    ] {
        let (h, _) = Client::new(g.local_addr()).ask("GET /config", &headers);
        assert!(h.starts_with("http/1.1 200"), "{headers}: {h}");
        let last = seen.lock().last().cloned().unwrap();
        assert!(!last.contains(token), "the token reached Fooocus: {last}");
    }
    // What is not the token passes.
    let last = seen.lock()[1].clone();
    assert!(last.contains("a=b; c=d"), "{last}");
}

/// Issue 23: 60 addresses guessed 1,326 tokens a second (10 a minute each), and an address over
/// its 10 could not use the right token for a minute.
#[test]
fn many_addresses_guess_no_faster_than_the_budget_and_the_right_token_gets_in() {
    let limits = Limits {
        wrong_tokens_per_minute: 600, // 10 a second, bursts of 20
        token_wait: Duration::from_secs(10),
        ..Limits::default()
    };
    let (g, _) = start(Some("right-token"), None, limits);
    let addr = g.local_addr();
    let start = std::time::Instant::now();
    let guessers: Vec<_> = (10..40u8)
        .map(|a| {
            std::thread::spawn(move || {
                let (mut wrong, mut refused) = (0u32, 0u32);
                let mut last = Duration::ZERO;
                let mut i = 0;
                while start.elapsed() < Duration::from_secs(3) {
                    i += 1;
                    let (h, _) = Client::from([127, 0, 0, a], addr).ask(
                        "GET /config",
                        &format!("Authorization: Bearer guess-{a}-{i}\r\n"),
                    );
                    if h.starts_with("http/1.1 401") {
                        wrong += 1;
                        last = start.elapsed();
                    } else {
                        assert!(h.starts_with("http/1.1 429"), "{h}");
                        refused += 1;
                    }
                }
                (wrong, refused, last)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    // The right token, from an address that guessed, and from one that did not.
    for a in [10, 99] {
        let (h, body) = Client::from([127, 0, 0, a], addr)
            .ask("GET /config", "Authorization: Bearer right-token\r\n");
        assert!(
            h.starts_with("http/1.1 200"),
            "from 127.0.0.{a}: {h} {body}"
        );
    }
    let (mut wrong, mut refused, mut last) = (0, 0, Duration::ZERO);
    for t in guessers {
        let (w, r, l) = t.join().unwrap();
        wrong += w;
        refused += r;
        last = last.max(l);
    }
    eprintln!(
        "30 addresses: {wrong} wrong tokens compared in {last:.1?} ({:.1} a second), {refused} refused unchecked",
        wrong as f64 / last.as_secs_f64()
    );
    let budget = 20.0 + 10.0 * last.as_secs_f64();
    assert!(
        (wrong as f64) <= budget + 3.0,
        "{wrong} wrong tokens compared in {last:?}: over the budget ({budget:.0})"
    );
}

/// One request cannot test many guesses for one check: past three different tokens it is
/// refused unchecked, the right one among them or not.
#[test]
fn one_request_cannot_test_many_tokens() {
    let (g, seen) = start(Some("right-token"), None, Limits::default());
    let many: String = (0..10)
        .map(|i| format!("Authorization: Bearer guess-{i}\r\n"))
        .collect();
    let (h, body) = Client::new(g.local_addr()).ask(
        "GET /config?token=guess-q",
        &format!(
            "{many}Authorization: Bearer right-token\r\nCookie: fooocus_guard_token=guess-c\r\n"
        ),
    );
    assert!(h.starts_with("http/1.1 400"), "{h}");
    assert!(body.contains("13 different tokens"), "{body}");
    // A link with the token opened by a browser that still has an old cookie: two, fine.
    let (h, _) = Client::new(g.local_addr()).ask(
        "GET /config?token=right-token",
        "Cookie: fooocus_guard_token=old-token\r\n",
    );
    assert!(h.starts_with("http/1.1 302"), "{h}");
    assert!(seen.lock().is_empty());
}

/// Issue 23: a body trickling a byte every 20 s held its connection for good (nothing for 30 s
/// was the only bound).
#[test]
fn a_body_below_the_minimum_rate_is_cut_off() {
    let limits = Limits {
        body_timeout: Duration::from_secs(1),
        min_body_rate: 100,
        ..Limits::default()
    };
    let (g, _) = start(None, None, limits);
    let mut c = Client::new(g.local_addr());
    write!(
        c.w,
        "POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n"
    )
    .unwrap();
    let mut w = c.w.try_clone().unwrap();
    // A byte every 200 ms: never silent for the 1 s, 5 bytes a second.
    let trickle = std::thread::spawn(move || {
        for _ in 0..1000 {
            if w.write_all(b"x").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let started = std::time::Instant::now();
    let (h, body) = c.read_response();
    assert!(h.starts_with("http/1.1 408"), "{h}");
    assert!(body.contains("100 bytes a second"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    drop(c);
    trickle.join().unwrap();
}

/// Issue 23: pipelined requests whose answers were never read held their connection for good.
#[test]
fn a_client_that_takes_no_answer_loses_its_connection() {
    let limits = Limits {
        send_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let (g, seen) = start(None, None, limits);
    let mut c = Client::reading_nothing([127, 0, 0, 2], g.local_addr());
    let asks = "GET /big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".repeat(8);
    c.w.write_all(asks.as_bytes()).unwrap();
    seen.wait_for("GET /big", 1);
    // Reading nothing for a while is the attack; the gateway gives up on the client meanwhile.
    std::thread::sleep(Duration::from_secs(4));
    let (closed, got) = c.drain_until_closed();
    assert!(closed, "the connection stayed open ({got} bytes read)");
    assert!(got < 8 * BIG, "{got}");
}

/// A WebSocket whose client reads nothing: the tunnel's write to it fails after the send
/// timeout and the connection goes (before, the tunnel waited on it for good).
#[test]
fn a_websocket_client_that_reads_nothing_loses_its_connection() {
    let limits = Limits {
        send_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let (g, _) = start(None, None, limits);
    let mut c = Client::reading_nothing([127, 0, 0, 2], g.local_addr());
    let (h, _) = c.ask("GET /queue/join", UPGRADE);
    assert!(h.starts_with("http/1.1 101"), "{h}");
    // Fooocus answers with 16 MiB of messages, which this client does not read for a while.
    c.w.write_all(&[0x81, 0x85, 0, 0, 0, 0]).unwrap();
    c.w.write_all(b"flood").unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let (closed, got) = c.drain_until_closed();
    assert!(closed, "the connection stayed open ({got} bytes read)");
    assert!(got < 16 * BIG, "{got}");
}

/// The queue socket of a tab waiting behind a long generation stays quiet: it is not closed for
/// silence (only a client that takes nothing sent to it is).
#[test]
fn a_quiet_queue_socket_stays_open() {
    let limits = Limits {
        send_timeout: Duration::from_secs(1),
        ..quick()
    };
    let (g, _) = start(None, None, limits);
    let mut a = Client::new(g.local_addr());
    let (h, _) = a.ask("GET /queue/join", UPGRADE);
    assert!(h.starts_with("http/1.1 101"), "{h}");
    assert_eq!(
        a.frame(r#"{"fn_index":7,"session_hash":"tab-a"}"#),
        r#"{"msg":"process_starts"}"#
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        a.frame(r#"{"fn_index":7,"session_hash":"tab-a"}"#),
        r#"{"msg":"process_starts"}"#
    );
}

/// A queue socket whose slot is given to a newcomer still ends like a closed tab: its running
/// call is reported abandoned and the bytes its tap held are given back.
#[test]
fn an_evicted_queue_socket_abandons_its_call_and_frees_its_tap() {
    let limits = Limits {
        max_per_client: 1,
        ..Limits::default()
    };
    let (g, _, events) = start_with_events(None, None, limits);
    let mut a = Client::from([127, 0, 0, 9], g.local_addr());
    let (h, _) = a.ask("GET /queue/join", UPGRADE);
    assert!(h.starts_with("http/1.1 101"), "{h}");
    assert_eq!(
        a.frame(r#"{"fn_index":7,"session_hash":"tab-a"}"#),
        r#"{"msg":"process_starts"}"#
    );
    let started = QueueEvent::Started {
        session_hash: "tab-a".into(),
        fn_index: 7,
    };
    assert!(
        std::iter::from_fn(|| events.recv_timeout(Duration::from_secs(30)).ok())
            .any(|e| e == started),
        "the tap saw the call start"
    );
    // Half a frame: the tap holds it.
    a.w.write_all(&[0x81, 0x80 | 100, 0, 0, 0, 0, b'{', b'"'])
        .unwrap();
    let t0 = std::time::Instant::now();
    while g.tap_bytes() == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the tap never held the half frame"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The address's one slot goes to its new connection.
    let (h, _) = Client::from([127, 0, 0, 9], g.local_addr()).ask("GET /config", "");
    assert!(h.starts_with("http/1.1 200"), "{h}");
    let abandoned = QueueEvent::Abandoned {
        session_hash: "tab-a".into(),
        fn_index: 7,
    };
    assert_eq!(
        events.recv_timeout(Duration::from_secs(30)).ok(),
        Some(abandoned)
    );
    assert_eq!(g.tap_bytes(), 0);
    assert!(a.closed_by_gateway());
}

/// The redirect that takes the token out of the link stays on this site: a path made to look
/// like another site's address (`//host/`, `/\host/`) is not followed there.
#[test]
fn the_token_redirect_never_leaves_the_site() {
    let (g, _) = start(Some("s3cret-token"), None, Limits::default());
    for (path, to) in [
        ("//evil.example/?token=s3cret-token", "/evil.example/"),
        (
            "///evil.example/x?token=s3cret-token&a=1",
            "/evil.example/x?a=1",
        ),
        ("/\\evil.example/?token=s3cret-token", "/evil.example/"),
        ("/\\/\\evil.example/?token=s3cret-token", "/evil.example/"),
    ] {
        let (h, _) = Client::new(g.local_addr()).ask(&format!("GET {path}"), "");
        let location = h.lines().find_map(|l| l.strip_prefix("location: "));
        assert_eq!(location, Some(to), "{path}: {h}");
    }
}

/// A request the cookie lets in does not carry a copy of the token in its query to Fooocus
/// (whose access log the guard keeps): after a `;`, under another key, `+`-encoded.
#[test]
fn the_token_never_reaches_fooocus_in_the_query() {
    let token = "s3cret tok";
    let (g, seen) = start(Some(token), None, Limits::default());
    for path in [
        "/config?a=1;token=s3cret%20tok",
        "/config?x=s3cret+tok&b=2",
        "/config?b=2&Tok=%73%33cret%20tok",
    ] {
        let (h, _) = Client::new(g.local_addr()).ask(
            &format!("POST {path}"),
            "Cookie: fooocus_guard_token=s3cret%20tok\r\nContent-Length: 0\r\n",
        );
        assert!(h.starts_with("http/1.1 200"), "{path}: {h}");
        let last = seen.lock().last().cloned().unwrap();
        assert!(
            !last.contains("s3cret") && !last.contains("%73%33cret"),
            "the token reached Fooocus: {last}"
        );
    }
}

/// Another site cannot show Fooocus in a frame (a frame of a plain-http LAN address carries
/// neither Origin nor Sec-Fetch-Site, so the request checks let it through): every answer,
/// Fooocus's and the gateway's own, allows framing by this site and the allowed origins only.
#[test]
fn other_sites_cannot_frame_fooocus() {
    let (up, _) = upstream();
    let g = Gateway::start(GatewayConfig {
        allowed_origins: vec!["http://127.0.0.1:3000".into()],
        ..config(up, Some("s3cret-token"), Limits::default())
    })
    .unwrap();
    for (path, headers, status) in [
        ("/", "Authorization: Bearer s3cret-token\r\n", "200"),
        ("/config", "", "401"),
        ("/?token=s3cret-token", "", "302"),
    ] {
        let (h, _) = Client::new(g.local_addr()).ask(&format!("GET {path}"), headers);
        assert!(h.starts_with(&format!("http/1.1 {status}")), "{path}: {h}");
        assert!(h.contains("x-frame-options: sameorigin\r\n"), "{path}: {h}");
        assert!(
            h.contains("content-security-policy: frame-ancestors 'self' http://127.0.0.1:3000\r\n"),
            "{path}: {h}"
        );
    }
}

/// Review M4: 60 addresses, each holding fewer connections than the user, filled the gateway
/// and pushed the user's connections out one by one (its queue socket too, mid-generation).
/// Connections that proved the token are given up only after every unproven one.
#[test]
fn many_addresses_cannot_push_out_a_proven_client() {
    let token = "s3cret-token";
    let limits = Limits {
        max_connections: 40,
        max_per_client: 20,
        ..Limits::default()
    };
    let (g, _, events) = start_with_events(Some(token), None, limits);
    let auth = format!("Authorization: Bearer {token}\r\n");
    let user = [127, 0, 0, 2];
    let mut queue = Client::from(user, g.local_addr());
    let (h, _) = queue.ask("GET /queue/join", &format!("{auth}{UPGRADE}"));
    assert!(h.starts_with("http/1.1 101"), "{h}");
    assert_eq!(
        queue.frame(r#"{"fn_index":7,"session_hash":"tab-a"}"#),
        r#"{"msg":"process_starts"}"#
    );
    let started = QueueEvent::Started {
        session_hash: "tab-a".into(),
        fn_index: 7,
    };
    assert!(
        std::iter::from_fn(|| events.recv_timeout(Duration::from_secs(30)).ok())
            .any(|e| e == started),
        "the tap saw the call start"
    );
    let mut tabs: Vec<Client> = (0..10)
        .map(|_| {
            let mut c = Client::from(user, g.local_addr());
            let (h, _) = c.ask("GET /config", &auth);
            assert!(h.starts_with("http/1.1 200"), "{h}");
            c
        })
        .collect();
    // 60 addresses, 5 quiet connections each: 300 for the 29 slots left.
    let _flood: Vec<TcpStream> = (0..300)
        .map(|i| connect_from([127, 0, 1, 1 + (i % 60) as u8], g.local_addr(), None))
        .collect();
    // One more, answered or closed: once it is, the gateway has taken every connection before
    // it. Closed may mean reset before the request is even written (Windows resets a socket
    // closed with data unread), so neither the write nor the read may fail the test.
    let mut last = connect_from([127, 0, 2, 1], g.local_addr(), None);
    last.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let _ = last.write_all(b"GET /config HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let _ = last.read(&mut [0u8; 64]);
    for (i, c) in tabs.iter_mut().enumerate() {
        let (h, _) = c.ask("GET /config", &auth);
        assert!(h.starts_with("http/1.1 200"), "tab {i}: {h}");
    }
    assert_eq!(
        queue.frame(r#"{"fn_index":7,"session_hash":"tab-a"}"#),
        r#"{"msg":"process_starts"}"#
    );
    assert!(events
        .try_iter()
        .all(|e| !matches!(e, QueueEvent::Abandoned { .. })));
}

/// With a token, an allowed origin's page can use Fooocus: its preflight (which never carries
/// a credential) is answered by the gateway without Fooocus, and the gateway's own answers to it
/// (401 here) are readable by it.
#[test]
fn an_allowed_origin_s_preflight_and_refusals_reach_its_page() {
    let (up, seen) = upstream();
    let g = Gateway::start(GatewayConfig {
        allowed_origins: vec!["http://127.0.0.1:3000".into()],
        ..config(up, Some("s3cret-token"), Limits::default())
    })
    .unwrap();
    let from =
        "Origin: http://127.0.0.1:3000\r\nSec-Fetch-Site: same-site\r\nSec-Fetch-Mode: cors\r\n";
    let (h, _) = Client::new(g.local_addr()).ask(
        "OPTIONS /run/predict",
        &format!("{from}Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: authorization, content-type\r\n"),
    );
    assert!(h.starts_with("http/1.1 204"), "{h}");
    for line in [
        "access-control-allow-origin: http://127.0.0.1:3000\r\n",
        "access-control-allow-credentials: true\r\n",
        "access-control-allow-methods: post\r\n",
        "access-control-allow-headers: authorization, content-type\r\n",
        "vary: origin\r\n",
    ] {
        assert!(h.contains(line), "{line}: {h}");
    }
    let (h, _) = Client::new(g.local_addr()).ask("GET /config", from);
    assert!(h.starts_with("http/1.1 401"), "{h}");
    assert!(
        h.contains("access-control-allow-origin: http://127.0.0.1:3000\r\n"),
        "{h}"
    );
    let (h, body) = Client::new(g.local_addr()).ask(
        "GET /config",
        &format!("{from}Authorization: Bearer s3cret-token\r\n"),
    );
    assert!(h.starts_with("http/1.1 200") && body == "ok /config", "{h}");
    // Another origin's preflight is refused as before, naming no origin.
    let (h, _) = Client::new(g.local_addr()).ask(
        "OPTIONS /run/predict",
        "Origin: http://127.0.0.1:3001\r\nSec-Fetch-Site: same-site\r\nAccess-Control-Request-Method: POST\r\n",
    );
    assert!(
        h.starts_with("http/1.1 403") && !h.contains("access-control-allow-origin"),
        "{h}"
    );
    assert_eq!(seen.lock().len(), 1, "{:?}", seen.lock());
}

/// Review M2: a browser sends several requests at once with the right cookie; they wait for
/// the check together. Once one of them proves the token, the others are let in at once, not
/// one round of every guessing address's turns each (6 s a round here: the 3rd on waited past
/// `token_wait` and got 429).
#[test]
fn a_browser_s_requests_sent_together_all_get_in_while_60_addresses_guess() {
    let limits = Limits {
        wrong_tokens_per_minute: 600, // 10 a second: a round of 60 addresses takes 6 s
        token_wait: Duration::from_secs(9),
        ..Limits::default()
    };
    let (g, _) = start(Some("right-token"), None, limits);
    let addr = g.local_addr();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let guessers: Vec<_> = (1..=60u8)
        .map(|a| {
            let done = done.clone();
            std::thread::spawn(move || {
                let mut i = 0;
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    i += 1;
                    let (h, _) = Client::from([127, 0, 1, a], addr).ask(
                        "GET /config",
                        &format!("Authorization: Bearer guess-{a}-{i}\r\n"),
                    );
                    assert!(
                        h.starts_with("http/1.1 401") || h.starts_with("http/1.1 429"),
                        "{h}"
                    );
                }
            })
        })
        .collect();
    // The burst of 20 is spent and the guesses queue.
    std::thread::sleep(Duration::from_secs(1));
    let tabs: Vec<_> = (0..6)
        .map(|_| {
            std::thread::spawn(move || {
                Client::from([127, 0, 0, 2], addr)
                    .ask("GET /config", "Cookie: fooocus_guard_token=right-token\r\n")
                    .0
            })
        })
        .collect();
    let answers: Vec<String> = tabs.into_iter().map(|t| t.join().unwrap()).collect();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    for t in guessers {
        t.join().unwrap();
    }
    for (i, h) in answers.iter().enumerate() {
        assert!(h.starts_with("http/1.1 200"), "request {i}: {h}");
    }
}
