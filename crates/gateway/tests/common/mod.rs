//! What the gateway's test binaries share: a Gradio-like upstream that records what reaches it,
//! a keep-alive client, and connections from other loopback addresses.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use guard_gateway::{Gateway, GatewayConfig, Limits, QueueEvent};

/// Request heads the upstream received, in order, and a signal for each new one.
#[derive(Clone, Default)]
pub struct Seen(Arc<(Mutex<Vec<String>>, Condvar)>);

impl Seen {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.0 .0.lock().unwrap()
    }

    fn push(&self, head: String) {
        self.lock().push(head);
        self.0 .1.notify_all();
    }

    /// Wait (at most 60 s) until `n` of the heads received start with `start`.
    pub fn wait_for(&self, start: &str, n: usize) {
        let count = |v: &Vec<String>| v.iter().filter(|h| h.starts_with(start)).count();
        let guard = self.lock();
        let (guard, timeout) = self
            .0
             .1
            .wait_timeout_while(guard, Duration::from_secs(60), |v| count(v) < n)
            .unwrap();
        assert!(
            !timeout.timed_out(),
            "{} of {n} requests {start:?} reached Fooocus",
            count(&guard)
        );
    }
}

/// The answer to `GET /big`: 1 MiB.
pub const BIG: usize = 1 << 20;

/// Keep-alive HTTP/1.1 that answers `ok <path>` with `Access-Control-Allow-Origin: *` (as
/// Gradio 3 does), or 1 MiB to `/big`, 16 MiB to `/huge`; a WebSocket upgrade gets 101, and then every client
/// frame is answered with a `process_starts` message (Gradio's queue, shortened).
pub fn upstream() -> (SocketAddr, Seen) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Seen::default();
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            let seen = seen2.clone();
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || serve_upstream(c, seen))
                .unwrap();
        }
    });
    (addr, seen)
}

fn serve_upstream(c: TcpStream, seen: Seen) {
    static BIG_BODY: [u8; BIG] = [b'b'; BIG];
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
        seen.push(head.clone());
        let lower = head.to_ascii_lowercase();
        if lower.contains("upgrade: websocket") {
            let _ = w.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
            // Each client frame -> process_starts; "flood" -> 16 binary frames of 1 MiB.
            while let Ok(payload) = read_frame(&mut r) {
                if payload == b"flood" {
                    for _ in 0..16 {
                        let mut f = vec![0x82, 127];
                        f.extend_from_slice(&(BIG as u64).to_be_bytes());
                        if w.write_all(&f).is_err() || w.write_all(&BIG_BODY).is_err() {
                            return;
                        }
                    }
                    continue;
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
        if std::io::copy(&mut (&mut r).take(len as u64), &mut std::io::sink()).is_err() {
            return;
        }
        let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
        let mibs = match path.as_str() {
            "/big" => 1,
            "/huge" => 16,
            _ => 0,
        };
        if mibs > 0 {
            let _ = write!(
                w,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                mibs * BIG
            );
            for _ in 0..mibs {
                if w.write_all(&BIG_BODY).is_err() {
                    return;
                }
            }
            continue;
        }
        let text = format!("ok {path}");
        let _ = write!(
            w,
            "HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: *\r\nAccess-Control-Allow-Credentials: true\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
    }
}

/// One client frame: its payload unmasked when short, else read and dropped (empty).
fn read_frame(r: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut hdr = [0u8; 2];
    r.read_exact(&mut hdr)?;
    let len = match hdr[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b)?;
            u16::from_be_bytes(b) as u64
        }
        127 => {
            let mut b = [0u8; 8];
            r.read_exact(&mut b)?;
            u64::from_be_bytes(b)
        }
        n => n as u64,
    };
    let masked = hdr[1] & 0x80 != 0;
    if len < 126 {
        let mut key = [0u8; 4];
        if masked {
            r.read_exact(&mut key)?;
        }
        let mut p = vec![0u8; len as usize];
        r.read_exact(&mut p)?;
        for (i, b) in p.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
        return Ok(p);
    }
    let skip = if masked { 4 } else { 0 } + len;
    let n = std::io::copy(&mut r.take(skip), &mut std::io::sink())?;
    if n < skip {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(Vec::new())
}

pub fn config(up: SocketAddr, token: Option<&str>, limits: Limits) -> GatewayConfig {
    GatewayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: up,
        token: token.map(String::from),
        rate_per_minute: None,
        events: None,
        allowed_origins: Vec::new(),
        limits,
    }
}

pub fn start(token: Option<&str>, rate: Option<u32>, limits: Limits) -> (Gateway, Seen) {
    let (g, seen, _) = start_with_events(token, rate, limits);
    (g, seen)
}

pub fn start_with_events(
    token: Option<&str>,
    rate: Option<u32>,
    limits: Limits,
) -> (Gateway, Seen, std::sync::mpsc::Receiver<QueueEvent>) {
    let (up, seen) = upstream();
    let (tx, rx) = std::sync::mpsc::channel();
    let g = Gateway::start(GatewayConfig {
        rate_per_minute: rate,
        events: Some(tx),
        ..config(up, token, limits)
    })
    .unwrap();
    (g, seen, rx)
}

/// A TCP connection to `to` from the loopback address `from` (127.0.0.x): another client
/// address without a network namespace. `window`: a receive buffer this small (bytes), so that
/// answers the client does not read stay with the gateway instead of the kernel's buffers on
/// this side (loopback's hold megabytes).
pub fn connect_from(from: [u8; 4], to: SocketAddr, window: Option<u32>) -> TcpStream {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let rt = RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap()
    });
    let s = rt
        .block_on(async {
            let s = tokio::net::TcpSocket::new_v4()?;
            if let Some(w) = window {
                s.set_recv_buffer_size(w)?;
            }
            s.bind(SocketAddr::from((from, 0)))?;
            s.connect(to).await?.into_std()
        })
        .unwrap();
    s.set_nonblocking(false).unwrap();
    s
}

/// A client connection that reads one response at a time (keep-alive).
pub struct Client {
    pub w: TcpStream,
    pub r: BufReader<TcpStream>,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Client {
        Client::over(TcpStream::connect(addr).unwrap())
    }

    /// From another loopback address (see `connect_from`).
    pub fn from(from: [u8; 4], addr: SocketAddr) -> Client {
        Client::over(connect_from(from, addr, None))
    }

    /// From another loopback address, with a receive window of 4 KiB: a client that reads
    /// nothing leaves what it is sent with the gateway.
    pub fn reading_nothing(from: [u8; 4], addr: SocketAddr) -> Client {
        Client::over(connect_from(from, addr, Some(4096)))
    }

    fn over(s: TcpStream) -> Client {
        // Only so that a broken gateway fails the test instead of hanging it.
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Client {
            w: s.try_clone().unwrap(),
            r: BufReader::new(s),
        }
    }

    /// Read whatever is left until the gateway closes the connection: whether it did (rather
    /// than the read timing out) and how many bytes came before.
    pub fn drain_until_closed(&mut self) -> (bool, usize) {
        let mut got = 0usize;
        let mut b = vec![0u8; 64 * 1024];
        loop {
            match self.r.read(&mut b) {
                Ok(0) => return (true, got),
                Ok(n) => got += n,
                Err(e) => {
                    let timed_out = matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    );
                    return (!timed_out, got);
                }
            }
        }
    }

    /// Send a request head (Host 127.0.0.1 unless given) and read the response: status line
    /// and headers in lower case, and the body.
    #[track_caller]
    pub fn ask(&mut self, line: &str, headers: &str) -> (String, String) {
        let host = if headers.to_ascii_lowercase().contains("host:") {
            ""
        } else {
            "Host: 127.0.0.1\r\n"
        };
        write!(self.w, "{line} HTTP/1.1\r\n{host}{headers}\r\n").unwrap();
        self.read_response()
    }

    pub fn read_response(&mut self) -> (String, String) {
        let mut head = String::new();
        loop {
            let mut l = String::new();
            if self.r.read_line(&mut l).unwrap_or(0) == 0 {
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
    pub fn frame(&mut self, text: &str) -> String {
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

    /// Whether the gateway has closed this connection already (EOF or reset), without waiting
    /// (a byte that arrived instead is lost: for connections that expect no answer yet).
    pub fn closed_by_gateway_now(&mut self) -> bool {
        self.r.get_ref().set_nonblocking(true).unwrap();
        let mut b = [0u8; 1];
        let closed = match self.r.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        };
        self.r.get_ref().set_nonblocking(false).unwrap();
        closed
    }

    /// Whether the gateway closed this connection (EOF or reset), waiting for it at most 30 s.
    pub fn closed_by_gateway(&mut self) -> bool {
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

pub const UPGRADE: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

/// The head of a masked text frame that says it is `len` bytes long.
pub fn frame_head(len: u64) -> Vec<u8> {
    let mut f = vec![0x81, 0x80 | 127];
    f.extend_from_slice(&len.to_be_bytes());
    f.extend_from_slice(&[1, 2, 3, 4]);
    f
}

pub fn quick() -> Limits {
    Limits {
        header_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        ..Limits::default()
    }
}

/// This process's resident memory, in KiB.
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}
