//! A transparent gateway in front of Fooocus.
//!
//! Fooocus 2.2 and later obey a Stop only from the browser tab (Gradio session) that started the
//! task, and the browser never shows that session. The gateway listens where the user's browser
//! expects Fooocus, relays every request to Fooocus on an internal loopback port, and watches
//! Gradio's queue WebSocket (`/queue/join`) on the side: from it it learns which session started
//! the running generation. The guard can then stop it exactly as that tab's Stop button would
//! (`POST /run/predict` with the tab's `session_hash`).
//!
//! HTTP is hyper's (server and client) on one tokio thread; bodies stream through unchanged.
//! Every request on every connection is checked (token, origin, rate limit, queue tap) on the
//! path as Fooocus's server routes it, and every connection is bounded (see [`Limits`]).
//! While Fooocus sleeps ([`Upstream`]) the gateway keeps the port: the first admitted request
//! wakes it, a browser gets a waking page, other requests wait (bounded) for it.

mod relay;
pub mod rules;
mod tap;
mod throttle;
mod wake;
mod ws;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use rules::{browser_url, url_with_token};
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
    /// Pages of other sites the user lets use this Fooocus from their browser (read its
    /// answers, post to it, open its WebSocket), as exact origins: `scheme://host:port`, e.g.
    /// `http://192.168.1.5:3000` (the port may be left out for 80 and 443; no path, no `*`;
    /// see `rules::valid_origin`). Empty (the default): only Fooocus's own page.
    pub allowed_origins: Vec<String>,
    pub limits: Limits,
}

/// What is behind the gateway, as the supervisor tells it (issue 25: Fooocus sleeps while
/// nobody uses it and wakes on a visit; the gateway keeps the user's port meanwhile).
#[derive(Clone, Debug, PartialEq)]
pub enum Upstream {
    /// Fooocus runs (or is restarting after a crash): requests are forwarded as always.
    Awake,
    /// Put to sleep: the first admitted request wakes it (`QueueEvent::WakeRequested`, once).
    Asleep {
        wake_estimate: Duration,
        hold_limit: Duration,
    },
    /// A wake is under way (by a visit, or by the user from the tray): requests wait for Awake.
    Waking {
        wake_estimate: Duration,
        hold_limit: Duration,
    },
    /// The wake failed: waiting and new requests get 503 with this reason until the state
    /// changes.
    Failed { reason: String },
}

/// What one client, or all of them, can hold of the gateway.
#[derive(Clone, Debug)]
pub struct Limits {
    /// A connection must send a whole request head within this after it opens.
    pub header_timeout: Duration,
    /// A keep-alive connection with no request in flight is closed after this.
    pub idle_timeout: Duration,
    /// A request body that sends nothing for this long is cut off (408): a request in flight
    /// keeps its connection busy.
    pub body_timeout: Duration,
    /// Bytes a second a request body must average, counted over the time the gateway waited
    /// for it, once it has waited `body_timeout`: a body that trickles slower is cut off (408).
    pub min_body_rate: u32,
    /// A client that takes none of the bytes sent to it (an answer, a WebSocket's messages)
    /// for this long loses its connection.
    pub send_timeout: Duration,
    /// Connections open at once (lowered to fit the process's file limit).
    pub max_connections: usize,
    /// Connections open at once from one address.
    pub max_per_client: usize,
    /// Bytes of one request head.
    pub max_header_bytes: usize,
    /// Tokens compared and found wrong per minute, all addresses together (bursts of a
    /// thirtieth of it). Past it, a token that is not already known right or wrong waits its
    /// address's turn.
    pub wrong_tokens_per_minute: u32,
    /// How long a token waits for its turn before the answer is 429.
    pub token_wait: Duration,
    /// Requests held while Fooocus wakes, all clients together; past it, 503.
    pub max_held: usize,
    /// Requests held while Fooocus wakes from one client.
    pub max_held_per_client: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(30),
            min_body_rate: 1024,
            send_timeout: Duration::from_secs(30),
            max_connections: 400,
            max_per_client: 100,
            max_header_bytes: 32 * 1024,
            wrong_tokens_per_minute: 300,
            token_wait: Duration::from_secs(30),
            max_held: 256,
            max_held_per_client: 64,
        }
    }
}

/// A generation seen in the queue traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveTask {
    pub session_hash: String,
    pub fn_index: u64,
    pub started: Instant,
    /// Its tab closed before the call completed: Gradio stops following the call (no
    /// completion will come), but Fooocus's worker still runs the task to its end.
    pub abandoned: bool,
}

/// Per client address: when each counted thing happened.
type PerClient = std::collections::HashMap<std::net::IpAddr, std::collections::VecDeque<Instant>>;

#[derive(Default)]
struct State {
    /// Generations queued per client, for the rate limit.
    joins: PerClient,
    /// Queue events in flight, by (session, fn): started and not completed.
    running: Vec<ActiveTask>,
    /// Every session hash seen, newest last (for diagnostics).
    sessions: Vec<String>,
    sink: Option<std::sync::mpsc::Sender<QueueEvent>>,
}

/// Count one event for `ip` in a sliding minute unless `limit` are already there; the seconds
/// until the oldest leaves when refused.
fn count_in_minute(
    map: &mut PerClient,
    ip: std::net::IpAddr,
    limit: u32,
    now: Instant,
) -> Result<(), u64> {
    if map.len() > 4096 {
        map.retain(|_, q| {
            q.back()
                .is_some_and(|t| now.duration_since(*t) < Duration::from_secs(60))
        });
    }
    let q = map.entry(ip).or_default();
    while q
        .front()
        .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
    {
        q.pop_front();
    }
    if q.len() as u32 >= limit {
        let wait = q
            .front()
            .map(|t| 60u64.saturating_sub(now.duration_since(*t).as_secs()))
            .unwrap_or(60)
            .max(1);
        return Err(wait);
    }
    q.push_back(now);
    Ok(())
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
                    abandoned: false,
                });
            }
            QueueEvent::Generating { .. }
            | QueueEvent::Abandoned { .. }
            | QueueEvent::WakeRequested => {}
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

impl State {
    /// A queue WebSocket closed: a call of its session still running was abandoned by its tab.
    /// The sink is told at once (the supervisor's tracker hands that generation back to the
    /// console, since no completion will come for it).
    fn closed(&mut self, session_hash: &str, fn_index: u64) {
        for t in &mut self.running {
            if t.session_hash == session_hash && t.fn_index == fn_index && !t.abandoned {
                t.abandoned = true;
                if let Some(tx) = &self.sink {
                    let _ = tx.send(QueueEvent::Abandoned {
                        session_hash: session_hash.to_string(),
                        fn_index,
                    });
                }
            }
        }
    }

    /// The generation that runs now: the oldest call still running. Fooocus's worker takes
    /// tasks in order, and another tab's call can start once a closed tab's call is dropped
    /// by the queue, while the worker still runs the closed tab's task (its Stop must go to
    /// that session: a stop sent to the newer one would stop it later, at its first image).
    fn active(&self) -> Option<&ActiveTask> {
        self.running.first()
    }

    /// Fooocus's console says a task ended: an abandoned call at the head of the line was it
    /// (no completion will ever come for it).
    fn task_ended(&mut self) {
        if self.running.first().is_some_and(|t| t.abandoned) {
            self.running.remove(0);
        }
    }
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

#[derive(Debug)]
pub struct GatewayError(pub String);

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for GatewayError {}

/// Connections the kernel completes and holds for the gateway before it accepts them. std's
/// 128 overflows under a flood of connections: the kernel then drops new handshakes and a
/// real client's browser waits a second (and then three) before it tries again.
const ACCEPT_BACKLOG: u32 = 1024;

/// The listening socket, bound as std binds one (address reuse on Unix only: on Windows it
/// would let another program take the port over) but with room for `ACCEPT_BACKLOG`.
fn listen(at: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if at.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(at)?;
    socket.listen(ACCEPT_BACKLOG)
}

/// A running gateway. Dropping it closes its port (and every connection) before it returns, so
/// the next gateway can bind the same port at once.
pub struct Gateway {
    addr: SocketAddr,
    upstream: SocketAddr,
    state: Arc<Mutex<State>>,
    shared: Arc<relay::Shared>,
    stop: Arc<tokio::sync::Notify>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Gateway {
    pub fn start(cfg: GatewayConfig) -> Result<Gateway, GatewayError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| GatewayError(format!("the gateway cannot start: {e}")))?;
        let listener = {
            let _in = rt.enter();
            listen(cfg.listen).map_err(|e| {
                GatewayError(format!(
                    "the gateway cannot listen on {} ({e}): another program (or another Fooocus) uses that port; close it or pick another port",
                    cfg.listen
                ))
            })?
        };
        let addr = listener
            .local_addr()
            .map_err(|e| GatewayError(e.to_string()))?;
        let state = Arc::new(Mutex::new(State {
            sink: cfg.events.clone(),
            ..State::default()
        }));
        let stop = Arc::new(tokio::sync::Notify::new());
        let upstream = cfg.upstream;
        let shared = relay::Shared::new(cfg, state.clone());
        let shared2 = shared.clone();
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("fooocus-gateway".into())
            .spawn(move || {
                rt.block_on(relay::accept_loop(listener, shared2, stop2));
                // Dropping the runtime drops every connection with it.
                drop(rt);
            })
            .map_err(|e| GatewayError(e.to_string()))?;
        Ok(Gateway {
            addr,
            upstream,
            state,
            shared,
            stop,
            thread: Mutex::new(Some(thread)),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Bytes the queue taps hold now, all connections together (partial frames; each tap
    /// holds at most two frames' first 4 KiB). For tests and diagnostics.
    pub fn tap_bytes(&self) -> usize {
        self.shared
            .tap_bytes
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// What is behind the gateway now (the supervisor says; a visit while Asleep makes it
    /// Waking). Requests held for a wake go on when it is Awake, or get 503 when Failed.
    pub fn set_upstream(&self, state: Upstream) {
        self.shared.wake.set(state);
    }

    /// When the last admitted request arrived (one that passed the token, origin, LAN and rate
    /// rules; the guard's own Stop calls and its waking page's polls do not count): the
    /// supervisor's idle clock.
    pub fn last_visit(&self) -> Option<Instant> {
        self.shared.wake.last_visit()
    }

    /// Requests held now until Fooocus is awake (for tests and diagnostics).
    pub fn held_requests(&self) -> usize {
        self.shared.wake.held()
    }

    /// The generation running now, as the queue traffic shows it (see `State::active`).
    pub fn active_task(&self) -> Option<ActiveTask> {
        self.state.lock().unwrap().active().cloned()
    }

    /// The supervisor saw Fooocus's console end a task: forget a closed tab's call it was.
    pub fn task_ended(&self) {
        self.state.lock().unwrap().task_ended();
    }

    /// Press the Stop button of the tab that started the running generation, with that tab's
    /// session (guard-fooocus's one Gradio stop). Blocking: the supervisor calls it on a
    /// thread of its own.
    pub fn request_stop(&self) -> Result<ActiveTask, GatewayError> {
        let task = self
            .active_task()
            .ok_or_else(|| GatewayError("no generation is running through the gateway".into()))?;
        guard_fooocus::stop::press_stop_button(
            &format!("http://{}", self.upstream),
            &task.session_hash,
            None,
            Duration::from_secs(10),
            &|| true,
        )
        .map_err(|e| GatewayError(format!("to Fooocus: {}", String::from(e))))?;
        Ok(task)
    }
}

impl Gateway {
    /// Close the port and every connection now, before returning, even while other holders
    /// of this gateway (a stop request in flight) keep it: the next run's gateway must be able
    /// to bind the same port at once.
    pub fn close(&self) {
        let thread = self.thread.lock().unwrap().take();
        if let Some(t) = thread {
            self.stop.notify_one();
            let _ = t.join();
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.close();
    }
}

/// A small loopback HTTP server on the gateway's stack (hyper, bounded the same way) for the
/// guard's own pages, such as `/metrics`: `page(path)` gives the body, None is a 404.
pub struct PageServer {
    addr: SocketAddr,
    stop: Arc<tokio::sync::Notify>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PageServer {
    pub fn start(
        listen: SocketAddr,
        content_type: &'static str,
        page: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Result<PageServer, GatewayError> {
        let listener =
            std::net::TcpListener::bind(listen).map_err(|e| GatewayError(e.to_string()))?;
        let addr = listener
            .local_addr()
            .map_err(|e| GatewayError(e.to_string()))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| GatewayError(e.to_string()))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| GatewayError(e.to_string()))?;
        let listener = {
            let _in = rt.enter();
            tokio::net::TcpListener::from_std(listener).map_err(|e| GatewayError(e.to_string()))?
        };
        let stop = Arc::new(tokio::sync::Notify::new());
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("fooocus-guard-pages".into())
            .spawn(move || {
                rt.block_on(relay::serve_pages(
                    listener,
                    Arc::new(page),
                    content_type,
                    stop2,
                ));
                drop(rt);
            })
            .map_err(|e| GatewayError(e.to_string()))?;
        Ok(PageServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.stop.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(s: &mut State, session: &str) {
        s.on_event(QueueEvent::Started {
            session_hash: session.into(),
            fn_index: 7,
        });
    }

    /// Fidelity M5: a tab closed mid-generation (Gradio stops following its call; the worker
    /// still runs its task) while another tab's call starts: the stop goes to the task the
    /// worker runs, and the closed tab's call is forgotten when the console ends that task.
    #[test]
    fn a_closed_tabs_generation_is_the_one_stopped_until_it_ends() {
        let mut s = State::default();
        started(&mut s, "tabA");
        s.closed("tabA", 7);
        started(&mut s, "tabB");
        let a = s.active().unwrap();
        assert_eq!((a.session_hash.as_str(), a.abandoned), ("tabA", true));
        s.task_ended();
        assert_eq!(s.active().unwrap().session_hash, "tabB");
        // A call that completed normally is not touched by a console task end.
        s.task_ended();
        assert_eq!(s.active().unwrap().session_hash, "tabB");
        s.on_event(QueueEvent::Completed {
            session_hash: "tabB".into(),
            fn_index: 7,
        });
        assert!(s.active().is_none());
    }

    /// The supervisor learns of an abandoned call when its socket closes, once, and only for a
    /// call still running (a socket closing after its call completed abandons nothing).
    #[test]
    fn a_closed_tab_is_told_once_and_only_while_its_call_runs() {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut s = State {
            sink: Some(tx),
            ..State::default()
        };
        started(&mut s, "tabA");
        s.closed("tabA", 7);
        s.closed("tabA", 7);
        s.closed("tabB", 7);
        let told: Vec<QueueEvent> = rx.try_iter().collect();
        assert_eq!(
            told,
            [QueueEvent::Abandoned {
                session_hash: "tabA".into(),
                fn_index: 7
            }]
        );
    }
}
