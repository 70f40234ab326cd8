//! A transparent gateway in front of Fooocus.
//!
//! Fooocus 2.2 and later obey a Stop only from the browser tab (Gradio session) that started the
//! task, and the browser never shows that session. The gateway listens where the user's browser
//! expects Fooocus, relays every connection byte for byte to Fooocus on an internal loopback
//! port, and watches the traffic on the side: from Gradio's queue WebSocket (`/queue/join`) it
//! learns which session started the running generation. The guard can then stop it exactly as
//! that tab's Stop button would (`POST /run/predict` with the tab's `session_hash`).
//!
//! The relay never waits for the watcher: bytes are forwarded first, then handed to a parser
//! that only reads them. Bodies are never buffered whole.

mod tap;
mod ws;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use tap::{QueueEvent, Tap};

#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Where the user's browser connects (127.0.0.1:7865 by default).
    pub listen: SocketAddr,
    /// Fooocus on its internal loopback port.
    pub upstream: SocketAddr,
    /// When set, a client must bring this token (`?token=` once, then a cookie; or
    /// `Authorization: Bearer`). For Fooocus on the LAN.
    pub token: Option<String>,
    /// Generations one client (IP) may queue per minute.
    pub rate_per_minute: Option<u32>,
    /// Where the queue's events go as they are seen (the supervisor's second source of
    /// generation events beside the console). None: kept only for `request_stop`.
    pub events: Option<std::sync::mpsc::Sender<QueueEvent>>,
}

/// A generation seen in the queue traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveTask {
    pub session_hash: String,
    pub fn_index: u64,
    pub started: Instant,
}

#[derive(Default)]
struct State {
    /// Queue joins per client, for the rate limit.
    joins: std::collections::HashMap<std::net::IpAddr, std::collections::VecDeque<Instant>>,
    /// Queue events in flight, by (session, fn): started and not completed.
    running: Vec<ActiveTask>,
    /// Every session hash seen, newest last (for diagnostics).
    sessions: Vec<String>,
    sink: Option<std::sync::mpsc::Sender<QueueEvent>>,
}

impl State {
    fn on_event(&mut self, e: QueueEvent) {
        match e {
            QueueEvent::Joined { session_hash, .. } => {
                if !self.sessions.contains(&session_hash) {
                    self.sessions.push(session_hash);
                    if self.sessions.len() > 64 {
                        self.sessions.remove(0);
                    }
                }
            }
            QueueEvent::Started {
                session_hash,
                fn_index,
            } => {
                self.running
                    .retain(|t| !(t.session_hash == session_hash && t.fn_index == fn_index));
                self.running.push(ActiveTask {
                    session_hash,
                    fn_index,
                    started: Instant::now(),
                });
            }
            QueueEvent::Generating { .. } => {}
            QueueEvent::Completed {
                session_hash,
                fn_index,
            } => {
                self.running
                    .retain(|t| !(t.session_hash == session_hash && t.fn_index == fn_index));
            }
        }
    }
}

#[derive(Debug)]
pub struct GatewayError(pub String);

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for GatewayError {}

/// A running gateway. Dropping it stops accepting connections.
pub struct Gateway {
    addr: SocketAddr,
    upstream: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl Gateway {
    pub fn start(cfg: GatewayConfig) -> Result<Gateway, GatewayError> {
        let listener = TcpListener::bind(cfg.listen).map_err(|e| {
            GatewayError(format!(
                "the gateway cannot listen on {} ({e}): another program (or another Fooocus) uses that port; close it or pick another port",
                cfg.listen
            ))
        })?;
        let addr = listener
            .local_addr()
            .map_err(|e| GatewayError(e.to_string()))?;
        let state = Arc::new(Mutex::new(State {
            sink: cfg.events.clone(),
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, stp) = (state.clone(), stop.clone());
        let rules = Arc::new(cfg.clone());
        let upstream = cfg.upstream;
        std::thread::Builder::new()
            .name("fooocus-gateway".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stp.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(client) = conn else { continue };
                    let (st, rules) = (st.clone(), rules.clone());
                    let _ = std::thread::Builder::new()
                        .name("fooocus-gateway-conn".into())
                        .spawn(move || relay(client, &rules, st));
                }
            })
            .map_err(|e| GatewayError(e.to_string()))?;
        Ok(Gateway {
            addr,
            upstream,
            state,
            stop,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// The generation running now, as the queue traffic shows it (the latest started).
    pub fn active_task(&self) -> Option<ActiveTask> {
        self.state.lock().unwrap().running.last().cloned()
    }

    /// Press the Stop button of the tab that started the running generation: `POST /run/predict`
    /// upstream with the stop function (from `/config`) and that tab's session.
    pub fn request_stop(&self) -> Result<ActiveTask, GatewayError> {
        let task = self
            .active_task()
            .ok_or_else(|| GatewayError("no generation is running through the gateway".into()))?;
        let (status, body) = http(self.upstream, "GET", "/config", None)?;
        if status != 200 {
            return Err(GatewayError(format!("GET /config answered {status}")));
        }
        let config: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| GatewayError(format!("/config is not JSON: {e}")))?;
        let stop = stop_fn_index(&config)
            .ok_or_else(|| GatewayError("Fooocus's /config has no stop button".into()))?;
        let req = serde_json::json!({"fn_index": stop, "data": [null], "session_hash": task.session_hash});
        let (status, _) = http(
            self.upstream,
            "POST",
            "/run/predict",
            Some(req.to_string().as_bytes()),
        )?;
        if status != 200 {
            return Err(GatewayError(format!("the stop request answered {status}")));
        }
        Ok(task)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// Relay one connection both ways; the client's bytes and the server's each go through a tap.
fn relay(client: TcpStream, rules: &GatewayConfig, state: Arc<Mutex<State>>) {
    let upstream = rules.upstream;
    let mut client = client;
    // The first request head decides: refused clients never reach Fooocus.
    let Some(head) = first_head(&mut client) else {
        return;
    };
    let peer = client
        .peer_addr()
        .map(|a| a.ip())
        .unwrap_or([127, 0, 0, 1].into());
    if let Admit::Reply(resp) = admit(rules, &state, peer, &head, Instant::now()) {
        let _ = client.write_all(&resp);
        return;
    }
    let Ok(server) = TcpStream::connect_timeout(&upstream, Duration::from_secs(5)) else {
        let mut c = client;
        let _ = c.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: 46\r\n\r\nFooocus is not answering yet: try again soon.\n");
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let tap = Arc::new(Mutex::new(Tap::default()));
    // The first request head: a queue WebSocket must not negotiate compression, or its messages
    // could not be read on the side. Everything else passes as it came.
    let mut server = server;
    let head = strip_ws_compression(head);
    if server.write_all(&head).is_err() {
        return;
    }
    let events = tap.lock().unwrap().from_client(&head);
    apply(&state, events);
    let (c2, s2) = match (client.try_clone(), server.try_clone()) {
        (Ok(c), Ok(s)) => (c, s),
        _ => return,
    };
    let (tap2, state2) = (tap.clone(), state.clone());
    let (client, server) = (client, server);
    let up = std::thread::Builder::new()
        .name("fooocus-gateway-up".into())
        .spawn(move || {
            pump(client, server, |b| {
                let events = tap2.lock().unwrap().from_client(b);
                apply(&state2, events);
            })
        });
    pump(s2, c2, |b| {
        let events = tap.lock().unwrap().from_server(b);
        apply(&state, events);
    });
    if let Ok(h) = up {
        let _ = h.join();
    }
}

/// Read until the end of the first request head (and whatever came with it).
fn first_head(client: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    loop {
        let n = client.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.len() > 16 * 1024 {
            return Some(buf);
        }
    }
}

/// What to do with a connection, from its first request head.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    Pass,
    /// Answer this and close (401, a redirect that sets the token cookie, 429).
    Reply(Vec<u8>),
}

const COOKIE: &str = "fooocus_guard_token";

fn reply(status: &str, extra: &str, body: &str) -> Admit {
    Admit::Reply(
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

/// The token check and the per-client rate limit on queued generations.
fn admit(
    rules: &GatewayConfig,
    state: &Mutex<State>,
    peer: std::net::IpAddr,
    head: &[u8],
    now: Instant,
) -> Admit {
    let end = head
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(head.len());
    let text = String::from_utf8_lossy(&head[..end]);
    let first = text.split("\r\n").next().unwrap_or("");
    let target = first.split_whitespace().nth(1).unwrap_or("/");
    let header = |name: &str| {
        text.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    if let Some(token) = rules.token.as_deref() {
        let bearer =
            header("authorization").and_then(|v| v.strip_prefix("Bearer ").map(str::to_string));
        let cookie = header("cookie").and_then(|c| {
            c.split(';').find_map(|kv| {
                kv.trim()
                    .strip_prefix(&format!("{COOKIE}="))
                    .map(str::to_string)
            })
        });
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let in_query = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("token="))
            .map(str::to_string);
        if in_query.as_deref() == Some(token) {
            // Once by link; from then on the browser sends the cookie.
            let rest: Vec<&str> = query
                .split('&')
                .filter(|kv| !kv.starts_with("token="))
                .collect();
            let location = if rest.is_empty() {
                path.to_string()
            } else {
                format!("{path}?{}", rest.join("&"))
            };
            return reply(
                "302 Found",
                &format!("Location: {location}\r\nSet-Cookie: {COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict\r\n"),
                "",
            );
        }
        if bearer.as_deref() != Some(token) && cookie.as_deref() != Some(token) {
            return reply(
                "401 Unauthorized",
                "WWW-Authenticate: Bearer\r\n",
                "This Fooocus is protected by Fooocus Guard. Open it once as http://<this address>/?token=<the token from Fooocus Guard's settings>.\n",
            );
        }
    }
    if let Some(rate) = rules.rate_per_minute {
        let upgrade = header("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
        if upgrade && target.starts_with("/queue/join") {
            let mut st = state.lock().unwrap();
            let q = st.joins.entry(peer).or_default();
            while q
                .front()
                .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
            {
                q.pop_front();
            }
            if q.len() as u32 >= rate {
                let wait = q
                    .front()
                    .map(|t| 60u64.saturating_sub(now.duration_since(*t).as_secs()))
                    .unwrap_or(60)
                    .max(1);
                return reply(
                    "429 Too Many Requests",
                    &format!("Retry-After: {wait}\r\n"),
                    &format!("Too many generations from this computer: at most {rate} a minute. Try again in {wait} s.\n"),
                );
            }
            q.push_back(now);
        }
    }
    Admit::Pass
}

/// Drop `Sec-WebSocket-Extensions` from a `/queue/join` upgrade request.
pub fn strip_ws_compression(head: Vec<u8>) -> Vec<u8> {
    let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
        return head;
    };
    let text = String::from_utf8_lossy(&head[..end]);
    let first = text.lines().next().unwrap_or("");
    if !first.contains("/queue/join") || !text.to_ascii_lowercase().contains("upgrade: websocket") {
        return head;
    }
    let kept: Vec<&str> = text
        .split("\r\n")
        .filter(|l| {
            !l.to_ascii_lowercase()
                .starts_with("sec-websocket-extensions:")
        })
        .collect();
    let mut out = kept.join("\r\n").into_bytes();
    out.extend_from_slice(&head[end..]);
    out
}

fn apply(state: &Mutex<State>, events: Vec<QueueEvent>) {
    if events.is_empty() {
        return;
    }
    let mut s = state.lock().unwrap();
    for e in events {
        if let Some(tx) = &s.sink {
            let _ = tx.send(e.clone());
        }
        s.on_event(e);
    }
}

/// Copy `from` to `to` until either side closes; `watch` sees each chunk after it was sent.
fn pump(mut from: TcpStream, mut to: TcpStream, mut watch: impl FnMut(&[u8])) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
                watch(&buf[..n]);
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

/// The dependency a click on the component with elem_id `stop_button` triggers.
pub fn stop_fn_index(config: &serde_json::Value) -> Option<u64> {
    let id = config["components"].as_array()?.iter().find_map(|c| {
        (c["props"]["elem_id"] == "stop_button")
            .then(|| c["id"].as_u64())
            .flatten()
    })?;
    config["dependencies"]
        .as_array()?
        .iter()
        .position(|d| {
            d["targets"].as_array().is_some_and(|ts| {
                ts.iter().any(|t| {
                    t.as_u64() == Some(id)
                        || (t[0].as_u64() == Some(id)
                            && t[1].as_str().is_none_or(|tr| tr == "click"))
                })
            }) && d["trigger"].as_str().is_none_or(|tr| tr == "click")
        })
        .map(|i| i as u64)
}

/// A minimal HTTP/1.1 request to Fooocus (loopback, Connection: close).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> Result<(u16, Vec<u8>), GatewayError> {
    let err = |e: std::io::Error| GatewayError(format!("{method} {path} to Fooocus: {e}"));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map_err(err)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(err)?;
    let body = body.unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())
        .and_then(|_| s.write_all(body))
        .map_err(err)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(err)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| GatewayError("incomplete HTTP response".into()))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Ok((status, body))
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&rest[..eol])
                .split(';')
                .next()
                .unwrap_or("")
                .trim(),
            16,
        )
        .unwrap_or(0);
        rest = &rest[eol + 2..];
        if size == 0 || rest.len() < size {
            break;
        }
        out.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or_default();
    }
    out
}
