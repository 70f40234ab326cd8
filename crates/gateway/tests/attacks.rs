//! Attacks on the gateway, each against a small Gradio-like upstream that records every request
//! it is given: what must be refused never reaches it, on any request of any connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use guard_gateway::{Gateway, GatewayConfig, Limits, QueueEvent};

/// Request heads the upstream received, in order.
type Seen = Arc<Mutex<Vec<String>>>;

/// Keep-alive HTTP/1.1 that answers `ok <path>`; a WebSocket upgrade gets 101, and then every
/// client frame is answered with a `process_starts` message (Gradio's queue, shortened).
fn upstream() -> (SocketAddr, Seen) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            let seen = seen2.clone();
            std::thread::spawn(move || serve_upstream(c, seen));
        }
    });
    (addr, seen)
}

fn serve_upstream(c: TcpStream, seen: Seen) {
    let mut w = c.try_clone().unwrap();
    let mut r = BufReader::new(c);
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        seen.lock().unwrap().push(head.clone());
        let lower = head.to_ascii_lowercase();
        if lower.contains("upgrade: websocket") {
            let _ = w.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
            // Each client frame (2-byte header, 4-byte mask, short payload) -> process_starts.
            let mut hdr = [0u8; 2];
            while r.read_exact(&mut hdr).is_ok() {
                let mut rest = vec![0u8; 4 + (hdr[1] & 0x7f) as usize];
                if r.read_exact(&mut rest).is_err() {
                    return;
                }
                let msg = br#"{"msg":"process_starts"}"#;
                let mut f = vec![0x81, msg.len() as u8];
                f.extend_from_slice(msg);
                let _ = w.write_all(&f);
            }
            return;
        }
        let len: usize = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        let _ = r.read_exact(&mut body);
        let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
        let text = format!("ok {path}");
        let _ = write!(
            w,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
    }
}

fn start(token: Option<&str>, rate: Option<u32>, limits: Limits) -> (Gateway, Seen) {
    let (g, seen, _) = start_with_events(token, rate, limits);
    (g, seen)
}

fn start_with_events(
    token: Option<&str>,
    rate: Option<u32>,
    limits: Limits,
) -> (Gateway, Seen, std::sync::mpsc::Receiver<QueueEvent>) {
    let (up, seen) = upstream();
    let (tx, rx) = std::sync::mpsc::channel();
    let g = Gateway::start(GatewayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: up,
        token: token.map(String::from),
        rate_per_minute: rate,
        events: Some(tx),
        limits,
    })
    .unwrap();
    (g, seen, rx)
}

/// A client connection that reads one response at a time (keep-alive).
struct Client {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Client {
    fn new(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).unwrap();
        // Only so that a broken gateway fails the test instead of hanging it.
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Client {
            w: s.try_clone().unwrap(),
            r: BufReader::new(s),
        }
    }

    /// Send a request head (Host 127.0.0.1 unless given) and read the response: status line
    /// and headers in lower case, and the body.
    fn ask(&mut self, line: &str, headers: &str) -> (String, String) {
        let host = if headers.to_ascii_lowercase().contains("host:") {
            ""
        } else {
            "Host: 127.0.0.1\r\n"
        };
        write!(self.w, "{line} HTTP/1.1\r\n{host}{headers}\r\n").unwrap();
        self.read_response()
    }

    fn read_response(&mut self) -> (String, String) {
        let mut head = String::new();
        loop {
            let mut l = String::new();
            if self.r.read_line(&mut l).unwrap() == 0 {
                return (head.to_ascii_lowercase(), String::new());
            }
            if l == "\r\n" {
                break;
            }
            head.push_str(&l);
        }
        let head = head.to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        self.r.read_exact(&mut body).unwrap();
        (head, String::from_utf8_lossy(&body).into_owned())
    }

    /// Send a masked text frame and read one frame's payload back.
    fn frame(&mut self, text: &str) -> String {
        let mut f = vec![0x81, 0x80 | text.len() as u8, 1, 2, 3, 4];
        f.extend(
            text.bytes()
                .enumerate()
                .map(|(i, b)| b ^ [1, 2, 3, 4][i % 4]),
        );
        self.w.write_all(&f).unwrap();
        let mut hdr = [0u8; 2];
        self.r.read_exact(&mut hdr).unwrap();
        let mut p = vec![0u8; (hdr[1] & 0x7f) as usize];
        self.r.read_exact(&mut p).unwrap();
        String::from_utf8(p).unwrap()
    }

    /// Whether the gateway closed this connection (EOF or reset), waiting for it at most 30 s.
    fn closed_by_gateway(&mut self) -> bool {
        let mut b = [0u8; 1];
        match self.r.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    }
}

const UPGRADE: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

fn quick() -> Limits {
    Limits {
        header_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        ..Limits::default()
    }
}

#[test]
fn every_request_of_a_keep_alive_connection_is_checked() {
    let (g, seen) = start(Some("s3cret-token"), None, Limits::default());
    let mut c = Client::new(g.local_addr());
    let (h, _) = c.ask("GET /config", "Authorization: Bearer s3cret-token\r\n");
    assert!(h.starts_with("http/1.1 200"), "{h}");
    // The same connection, without the token now.
    let (h, _) = c.ask("GET /file=secret.png", "");
    assert!(h.starts_with("http/1.1 401"), "{h}");
    let seen = seen.lock().unwrap();
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
    assert_eq!(seen.lock().unwrap().len(), 1);
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
    // Reading pages stays open to any client.
    let (h, _) =
        Client::new(g.local_addr()).ask("GET /", &format!("Host: evil.example:{port}\r\n"));
    assert!(h.starts_with("http/1.1 200"), "{h}");
    assert_eq!(seen.lock().unwrap().len(), 2, "{:?}", seen.lock().unwrap());
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
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[test]
fn wrong_tokens_are_throttled_per_client() {
    let (g, _) = start(Some("right-token"), None, Limits::default());
    let get = |headers: &str| Client::new(g.local_addr()).ask("GET /config", headers);
    // A browser with the cookie of an old token sends it with every request: one wrong token.
    for _ in 0..30 {
        let (h, _) = get("Cookie: fooocus_guard_token=old-token\r\n");
        assert!(h.starts_with("http/1.1 401"), "{h}");
    }
    let (h, _) = get("Authorization: Bearer right-token\r\n");
    assert!(
        h.starts_with("http/1.1 200"),
        "a stale cookie does not lock out: {h}"
    );
    // A guesser's tokens all differ.
    for i in 0..9 {
        let (h, _) = get(&format!("Authorization: Bearer wrong-token-{i}\r\n"));
        assert!(h.starts_with("http/1.1 401"), "{h}");
    }
    // Even the right token is not compared now: guessing stops here.
    let (h, _) = get("Authorization: Bearer right-token\r\n");
    assert!(
        h.starts_with("http/1.1 429") && h.contains("retry-after:"),
        "{h}"
    );
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
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[test]
fn a_body_that_stops_arriving_is_cut_off() {
    let limits = Limits {
        body_timeout: Duration::from_secs(1),
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
    assert!(seen
        .lock()
        .unwrap()
        .iter()
        .any(|s| s.starts_with("POST /slow")));
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
    assert!(seen.lock().unwrap().is_empty(), "Fooocus never sees it");
}

#[test]
fn a_stopped_gateway_frees_its_port_at_once() {
    let (up, _) = upstream();
    let cfg = |listen: SocketAddr| GatewayConfig {
        listen,
        upstream: up,
        token: None,
        rate_per_minute: None,
        events: None,
        limits: Limits::default(),
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
