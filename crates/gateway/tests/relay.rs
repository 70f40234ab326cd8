//! The gateway in front of a small upstream on loopback: bodies pass byte for byte, the token
//! and the rate limit refuse with clear HTTP errors, a taken port is a clear error.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use guard_gateway::{Gateway, GatewayConfig};

/// An upstream that answers every request with its body (and 101 to an upgrade).
fn echo_upstream() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut c = c;
                let mut buf = Vec::new();
                let mut chunk = [0u8; 65536];
                let end = loop {
                    let n = c.read(&mut chunk).unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(e) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break e;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                if head.contains("upgrade: websocket") {
                    let _ = c.write_all(
                        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
                    );
                    return;
                }
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map(|v| v.trim().parse().unwrap())
                    .unwrap_or(0);
                let mut body = buf[end + 4..].to_vec();
                while body.len() < len {
                    let n = c.read(&mut chunk).unwrap();
                    body.extend_from_slice(&chunk[..n]);
                }
                let _ = write!(
                    c,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = c.write_all(&body);
            });
        }
    });
    addr
}

fn gateway(token: Option<&str>, rate: Option<u32>) -> Gateway {
    Gateway::start(GatewayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: echo_upstream(),
        token: token.map(String::from),
        rate_per_minute: rate,
        events: None,
        allowed_origins: Vec::new(),
        limits: Default::default(),
    })
    .unwrap()
}

fn request(addr: SocketAddr, head: &str, body: &[u8]) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|e| e + 4)
        .unwrap_or(raw.len());
    (
        // Header names in lower case (hyper writes them so).
        String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase(),
        raw[end..].to_vec(),
    )
}

#[test]
fn bodies_pass_byte_for_byte() {
    let g = gateway(None, None);
    // 5 MiB that is not all one byte.
    let body: Vec<u8> = (0..5u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let (h, got) = request(g.local_addr(), &head, &body);
    assert!(h.starts_with("http/1.1 200"), "{h}");
    assert!(
        got == body,
        "the body came back changed ({} of {} bytes)",
        got.len(),
        body.len()
    );
}

#[test]
fn the_token_is_asked_for_and_then_remembered() {
    let g = gateway(Some("s3cret-token"), None);
    let get = |extra: &str, path: &str| {
        request(
            g.local_addr(),
            &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Connection: close\r\n\r\n"),
            b"",
        )
    };
    let (h, body) = get("", "/");
    assert!(h.starts_with("http/1.1 401"), "{h}");
    assert!(
        String::from_utf8_lossy(&body).contains("?token="),
        "the refusal says how to get in"
    );
    let (h, _) = get("", "/?token=wrong");
    assert!(h.starts_with("http/1.1 401"), "{h}");
    let (h, _) = get("", "/?token=s3cret-token&x=1");
    assert!(
        h.starts_with("http/1.1 302")
            && h.contains("location: /?x=1")
            && h.contains("set-cookie: fooocus_guard_token=s3cret-token"),
        "{h}"
    );
    let (h, _) = get(
        "Cookie: a=b; fooocus_guard_token=s3cret-token\r\n",
        "/config",
    );
    assert!(h.starts_with("http/1.1 200"), "{h}");
    let (h, _) = get("Authorization: Bearer s3cret-token\r\n", "/config");
    assert!(h.starts_with("http/1.1 200"), "{h}");
}

#[test]
fn a_client_over_its_rate_is_refused() {
    let g = gateway(None, Some(2));
    let join =
        "GET /queue/join HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    for _ in 0..2 {
        let (h, _) = request(g.local_addr(), join, b"");
        assert!(h.starts_with("http/1.1 101"), "{h}");
    }
    let (h, body) = request(g.local_addr(), join, b"");
    assert!(
        h.starts_with("http/1.1 429") && h.contains("retry-after:"),
        "{h}"
    );
    assert!(String::from_utf8_lossy(&body).contains("at most 2 a minute"));
    // Other requests are not counted.
    let (h, _) = request(
        g.local_addr(),
        "GET /config HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        b"",
    );
    assert!(h.starts_with("http/1.1 200"), "{h}");
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let e = Gateway::start(GatewayConfig {
        listen: taken.local_addr().unwrap(),
        upstream: echo_upstream(),
        token: None,
        rate_per_minute: None,
        events: None,
        allowed_origins: Vec::new(),
        limits: Default::default(),
    })
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains(&taken.local_addr().unwrap().to_string()) && e.contains("port"),
        "{e}"
    );
}
