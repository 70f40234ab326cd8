//! What the gateway costs, on loopback: the latency it adds to a keep-alive request (median and
//! p99 over the same requests sent directly), the memory one idle connection takes, and how
//! soon a browser opening a sleeping Fooocus sees the waking page (first byte, on a fresh
//! connection, beside the same navigation forwarded to an awake upstream).
//!
//!   cargo bench -p guard-gateway --bench latency

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use guard_gateway::{Gateway, GatewayConfig, Limits, Upstream};

const BODY: &[u8] = &[b'x'; 2048];

/// A keep-alive upstream answering every request with 2 KiB (about Gradio's /config size class).
fn upstream() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = c.set_nodelay(true);
                let mut w = c.try_clone().unwrap();
                let mut r = BufReader::new(c);
                loop {
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut resp =
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", BODY.len())
                            .into_bytes();
                    resp.extend_from_slice(BODY);
                    if w.write_all(&resp).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Round trips of `GET /config` on one keep-alive connection, in microseconds, sorted.
fn round_trips(addr: SocketAddr, n: usize) -> Vec<f64> {
    let s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut body = vec![0u8; BODY.len()];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        w.write_all(b"GET /config HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .unwrap();
        let mut line = String::new();
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
        }
        r.read_exact(&mut body).unwrap();
        out.push(t.elapsed().as_secs_f64() * 1e6);
    }
    out.sort_by(|a, b| a.partial_cmp(b).unwrap());
    out
}

/// A browser opening the page: a fresh connection, a navigation's head; microseconds from the
/// connect to the answer's first byte, sorted.
fn first_bytes(addr: SocketAddr, n: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/html\r\nSec-Fetch-Mode: navigate\r\nSec-Fetch-Dest: document\r\nSec-Fetch-Site: none\r\n\r\n")
            .unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
        out.push(t.elapsed().as_secs_f64() * 1e6);
    }
    out.sort_by(|a, b| a.partial_cmp(b).unwrap());
    out
}

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn main() {
    let up = upstream();
    let g = Gateway::start(GatewayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: up,
        token: None,
        rate_per_minute: None,
        events: None,
        allowed_origins: Vec::new(),
        limits: Limits {
            header_timeout: Duration::from_secs(600),
            ..Limits::default()
        },
    })
    .unwrap();
    let n = 5000;
    // Warm both paths, then alternate so load on the machine hits both alike.
    round_trips(up, 200);
    round_trips(g.local_addr(), 200);
    let mut direct = Vec::new();
    let mut through = Vec::new();
    for _ in 0..5 {
        direct.extend(round_trips(up, n / 5));
        through.extend(round_trips(g.local_addr(), n / 5));
    }
    direct.sort_by(|a, b| a.partial_cmp(b).unwrap());
    through.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let q = |v: &[f64], p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
    println!(
        "gateway latency, {n} keep-alive GETs of 2 KiB on loopback: added {:.0} us median; through the gateway median {:.0} us, p99 {:.0} us; direct median {:.0} us, p99 {:.0} us",
        q(&through, 0.5) - q(&direct, 0.5),
        q(&through, 0.5),
        q(&through, 0.99),
        q(&direct, 0.5),
        q(&direct, 0.99),
    );

    // Idle connections: the gateway's slot, its task and hyper's buffers (the client sockets in
    // this process add little to the resident size; the kernel's socket memory is not counted).
    let idle = 300;
    let before = rss_kib();
    let conns: Vec<TcpStream> = (0..idle)
        .map(|_| TcpStream::connect(g.local_addr()).unwrap())
        .collect();
    // One request on a fresh connection: the gateway has accepted everything before it.
    round_trips(g.local_addr(), 1);
    let after = rss_kib();
    match (before, after) {
        (Some(b), Some(a)) => println!(
            "memory per idle connection: {:.1} KiB ({idle} connections, resident size {b} -> {a} KiB)",
            a.saturating_sub(b) as f64 / idle as f64
        ),
        _ => println!("memory per idle connection: not measured (no /proc/self/status)"),
    }
    drop(conns);

    // The waking page: asleep, a navigation gets the guard's page (the first wakes it; the
    // gateway is Waking for the rest, which serves the same page). Alternated with the same
    // navigation forwarded to the awake upstream.
    let asleep = Upstream::Asleep {
        wake_estimate: Duration::from_secs(40),
        hold_limit: Duration::from_secs(600),
    };
    let n = 1000;
    let mut page = Vec::new();
    let mut awake = Vec::new();
    for _ in 0..5 {
        g.set_upstream(asleep.clone());
        page.extend(first_bytes(g.local_addr(), n / 5));
        g.set_upstream(Upstream::Awake);
        awake.extend(first_bytes(g.local_addr(), n / 5));
    }
    page.sort_by(|a, b| a.partial_cmp(b).unwrap());
    awake.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "waking page, {n} navigations on fresh connections: first byte median {:.0} us, p99 {:.0} us; forwarded to an awake upstream median {:.0} us, p99 {:.0} us",
        q(&page, 0.5),
        q(&page, 0.99),
        q(&awake, 0.5),
        q(&awake, 0.99),
    );
}
