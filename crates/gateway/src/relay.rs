//! The relay: hyper's HTTP/1 server towards the browser, hyper's client towards Fooocus, one
//! tokio thread for all connections. Each connection holds a slot; slots are bounded in total
//! and per client, an idle slot (no request in flight) is closed after a deadline, and when the
//! gateway is full the address holding the most gives its worst slot to a newcomer.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::rules::{self, Presented};
use crate::throttle::{TokenGate, Verdict, MAX_VALUES};
use crate::wake::{self, WakeCell};
use crate::{apply, count_in_minute, GatewayConfig, Limits, QueueEvent, State, Tap, Upstream};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub(crate) type Body = BoxBody<Bytes, BoxError>;

pub(crate) struct Shared {
    cfg: GatewayConfig,
    limits: Limits,
    state: Arc<Mutex<State>>,
    slots: Mutex<HashMap<u64, Arc<Slot>>>,
    next_id: AtomicU64,
    epoch: Instant,
    machine: Option<String>,
    hasher: std::collections::hash_map::RandomState,
    pub(crate) gate: TokenGate,
    /// Bytes the queue taps hold now (partial frames), all connections together.
    pub(crate) tap_bytes: AtomicUsize,
    /// What is behind the gateway (awake, asleep, waking) and the last visit.
    pub(crate) wake: WakeCell,
}

impl Shared {
    pub(crate) fn new(cfg: GatewayConfig, state: Arc<Mutex<State>>) -> Arc<Shared> {
        let mut limits = cfg.limits.clone();
        limits.max_connections = limits.max_connections.min(fd_budget()).max(8);
        limits.max_per_client = limits.max_per_client.min(limits.max_connections);
        Arc::new(Shared {
            gate: TokenGate::new(limits.wrong_tokens_per_minute),
            cfg,
            limits,
            state,
            slots: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            epoch: Instant::now(),
            machine: rules::machine_name(),
            hasher: Default::default(),
            tap_bytes: AtomicUsize::new(0),
            wake: WakeCell::new(),
        })
    }

    /// A keyed hash of the tokens a request brought (the throttle keeps no token).
    fn key_of(&self, p: &Presented) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one((&p.query, &p.bearer, &p.cookie))
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// A slot for a new connection from `ip`. When the gateway (or `ip`'s share) is full, a
    /// connection gives its slot up. Over `ip`'s share: one of `ip`'s own. Gateway full: an
    /// unproven connection (`Slot::tier` 0) of the address holding the most, when it holds
    /// more than one more than `ip` (its fair share is then smaller); else one of `ip`'s own;
    /// else, when no unproven connection is left, one of the address holding the most. Proven
    /// connections are thus never given up to a newcomer of another address while unproven
    /// ones are left (60 addresses each holding fewer than the user cannot push the user out),
    /// and a queue socket whose generation runs goes last. Of the address chosen, the least
    /// protected, then the worst (see `Slot::badness`). None: the newcomer is refused.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Held> {
        let mut slots = self.slots.lock().unwrap();
        let token = self.cfg.token.is_some();
        let mut per_ip: HashMap<IpAddr, usize> = HashMap::new();
        let mut unproven: HashMap<IpAddr, usize> = HashMap::new();
        for s in slots.values() {
            *per_ip.entry(s.ip).or_default() += 1;
            if s.tier(token) == 0 {
                *unproven.entry(s.ip).or_default() += 1;
            }
        }
        let mine = per_ip.get(&ip).copied().unwrap_or(0);
        let over_client = mine >= self.limits.max_per_client;
        if over_client || slots.len() >= self.limits.max_connections {
            // The address holding the most (all its connections counted) among `among`'s.
            let top = |among: &HashMap<IpAddr, usize>| {
                among
                    .keys()
                    .map(|a| (*a, per_ip[a]))
                    .max_by_key(|(_, n)| *n)
            };
            let (from, only_unproven) = if over_client {
                (ip, false)
            } else {
                match top(&unproven) {
                    Some((a, n)) if n > mine + 1 => (a, true),
                    _ if mine > 0 => (ip, false),
                    Some(_) => return None,
                    None => match top(&per_ip) {
                        Some((a, n)) if n > mine + 1 => (a, false),
                        _ => return None,
                    },
                }
            };
            let now = self.now_ms();
            let victim = slots
                .values()
                .filter(|s| s.ip == from && (!only_unproven || s.tier(token) == 0))
                .max_by_key(|s| (std::cmp::Reverse(s.tier(token)), s.badness(now)))
                .cloned()?;
            slots.remove(&victim.id);
            victim.close();
        }
        let now = self.now_ms();
        let slot = Arc::new(Slot {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            ip,
            busy: AtomicUsize::new(0),
            served: AtomicUsize::new(0),
            proven: AtomicBool::new(false),
            running: AtomicBool::new(false),
            idle_since: AtomicU64::new(now),
            progress: AtomicU64::new(now),
            closing: AtomicBool::new(false),
            close: tokio::sync::Notify::new(),
        });
        slots.insert(slot.id, slot.clone());
        Some(Held {
            shared: self.clone(),
            slot,
        })
    }
}

/// Connections the process's file limit leaves room for: each takes two descriptors (the
/// client's and Fooocus's), and the guard needs some for itself (logs, cgroup files).
fn fd_budget() -> usize {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: a valid out-pointer to an rlimit.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
            return (lim.rlim_cur as usize).saturating_sub(128) / 2;
        }
    }
    usize::MAX
}

struct Slot {
    id: u64,
    ip: IpAddr,
    /// Requests in flight (and an upgraded tunnel).
    busy: AtomicUsize,
    /// Requests answered on this connection.
    served: AtomicUsize,
    /// A request on it brought the right token.
    proven: AtomicBool,
    /// A queue tunnel whose generation is running (the tap saw it start, not complete).
    running: AtomicBool,
    /// When the connection last became idle (ms since the gateway started).
    idle_since: AtomicU64,
    /// When bytes last moved between the client and the gateway, either way (ms).
    progress: AtomicU64,
    closing: AtomicBool,
    close: tokio::sync::Notify,
}

impl Slot {
    /// Which connection gives its slot up first: an idle one (no request in flight), the
    /// longest idle first; then the one whose bytes last moved longest ago (a silent WebSocket,
    /// an answer its client does not take, a body that stopped).
    fn badness(&self, now: u64) -> (bool, u64) {
        if self.busy.load(Ordering::SeqCst) == 0 {
            (
                true,
                now.saturating_sub(self.idle_since.load(Ordering::SeqCst)),
            )
        } else {
            (
                false,
                now.saturating_sub(self.progress.load(Ordering::SeqCst)),
            )
        }
    }

    /// How protected the connection is from being given up: 0, nothing shown yet (it may be
    /// one of many an attacker opens from many addresses); 1, it brought the right token (or,
    /// without a token, had a request answered); 2, its queue socket's generation runs.
    fn tier(&self, token: bool) -> u8 {
        let shown = if token {
            self.proven.load(Ordering::SeqCst)
        } else {
            self.served.load(Ordering::SeqCst) > 0
        };
        if self.running.load(Ordering::SeqCst) {
            2
        } else {
            u8::from(shown)
        }
    }

    fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.close.notify_waiters();
    }

    /// Until the connection is told to close (its slot given to a newcomer, or the gateway
    /// stopping).
    async fn closed(&self) {
        loop {
            let told = self.close.notified();
            tokio::pin!(told);
            told.as_mut().enable();
            if self.closing.load(Ordering::SeqCst) {
                return;
            }
            told.await;
        }
    }
}

/// A connection's hold on its slot, shared by its tasks; the slot is free when the last drops.
struct Held {
    shared: Arc<Shared>,
    slot: Arc<Slot>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.shared.slots.lock().unwrap().remove(&self.slot.id);
    }
}

/// A request (or tunnel) in flight on a connection: the connection is not idle meanwhile.
struct Busy(Arc<Held>);

impl Busy {
    fn new(held: &Arc<Held>) -> Busy {
        held.slot.busy.fetch_add(1, Ordering::SeqCst);
        Busy(held.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let s = &self.0.slot;
        s.served.fetch_add(1, Ordering::SeqCst);
        s.idle_since.store(self.0.shared.now_ms(), Ordering::SeqCst);
        s.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: Arc<tokio::sync::Notify>,
) {
    let gate = shared.clone();
    tokio::spawn(async move { gate.gate.dispatch().await });
    loop {
        let accepted = tokio::select! {
            _ = stop.notified() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let Some(held) = shared.admit(client_of(peer.ip())) else {
                    continue; // dropped: closed at once
                };
                let _ = stream.set_nodelay(true);
                let local = stream.local_addr().ok();
                tokio::spawn(serve(stream, Arc::new(held), local));
                // Let the new connection be read before the next accept: a request already
                // waiting makes it busy (never given up), a connection its client already
                // closed frees its slot. Without this, a backlog of closed connections accepted
                // in one go took the slot of a real request accepted among them.
                tokio::task::yield_now().await;
            }
            // Out of descriptors (EMFILE) or any other accept error: wait instead of retrying
            // at once, so the loop never spins; idle connections time out meanwhile.
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The client a connection's address stands for, in every per-client count (places, rate,
/// turns for a token check): an IPv6 address's /64, which one machine or home network gets
/// whole (so 2^64 addresses are one client, not a way round fair shares).
fn client_of(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v) => {
            let s = v.segments();
            IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0])
        }
        v4 => v4,
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v) => v.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Per connection: the client, and the connection to Fooocus reused for its requests.
struct Conn {
    held: Arc<Held>,
    local: Option<SocketAddr>,
    upstream: tokio::sync::Mutex<Option<(SendRequest<Body>, Instant)>>,
}

async fn serve(stream: TcpStream, held: Arc<Held>, local: Option<SocketAddr>) {
    let shared = held.shared.clone();
    let slot = held.slot.clone();
    let io = Watched::new(stream, slot.clone(), shared.clone());
    let conn = Arc::new(Conn {
        held: held.clone(),
        local,
        upstream: tokio::sync::Mutex::new(None),
    });
    drop(held);
    let svc = hyper::service::service_fn(move |req| {
        let conn = conn.clone();
        async move {
            let cfg = &conn.held.shared.cfg;
            let allowed = header_str(&req, header::ORIGIN)
                .filter(|o| rules::origin_allowed(o, &cfg.allowed_origins))
                .and_then(|o| HeaderValue::from_str(o).ok());
            let mut resp = handle(conn.clone(), req).await;
            let h = resp.headers_mut();
            frame_policy(h, &cfg.allowed_origins);
            // The gateway's own answers (401, 429, 302, ...) to an allowed origin's page are
            // readable by it too, as Fooocus's are (`cors`).
            if !h.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
                match allowed {
                    Some(o) => allow_origin(h, o),
                    // Answers differ by Origin once some are allowed (`cors` says so too).
                    None if !cfg.allowed_origins.is_empty() && !h.contains_key(header::VARY) => {
                        h.insert(header::VARY, HeaderValue::from_static("Origin"));
                    }
                    None => {}
                }
            }
            Ok::<_, Infallible>(resp)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // max_buf_size bounds what hyper reads ahead (a head, pipelined requests) and what it
    // holds of an answer its client has not taken yet.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(shared.limits.header_timeout)
        .max_buf_size(shared.limits.max_header_bytes.max(8192))
        .max_header_size(shared.limits.max_header_bytes);
    let served = builder
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    tokio::pin!(served);
    loop {
        let idle_for = if slot.served.load(Ordering::SeqCst) == 0 {
            shared.limits.header_timeout
        } else {
            shared.limits.idle_timeout
        };
        let since = slot.idle_since.load(Ordering::SeqCst);
        let due = if slot.busy.load(Ordering::SeqCst) > 0 {
            // A request in flight: look again later.
            Instant::now() + idle_for
        } else {
            shared.epoch + Duration::from_millis(since) + idle_for
        };
        tokio::select! {
            _ = &mut served => return,
            _ = slot.closed() => return,
            _ = tokio::time::sleep_until(due.into()) => {
                let quiet = slot.idle_since.load(Ordering::SeqCst) == since;
                if slot.busy.load(Ordering::SeqCst) == 0 && quiet {
                    return;
                }
            }
        }
    }
}

/// The client's socket, watched: bytes moving either way are the connection's progress, and
/// a write the client does not take for `send_timeout` fails (hyper, or the tunnel, then
/// closes the connection): a client that reads nothing holds its slot no longer than that,
/// and the gateway holds at most hyper's buffer of what it did not take.
struct Watched {
    inner: TcpStream,
    slot: Arc<Slot>,
    shared: Arc<Shared>,
    blocked: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Watched {
    fn new(inner: TcpStream, slot: Arc<Slot>, shared: Arc<Shared>) -> Watched {
        Watched {
            inner,
            slot,
            shared,
            blocked: None,
        }
    }

    fn moved(&self) {
        self.slot
            .progress
            .store(self.shared.now_ms(), Ordering::SeqCst);
    }

    fn written(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<std::io::Result<usize>>,
    ) -> Poll<std::io::Result<usize>> {
        match r {
            Poll::Ready(Ok(n)) => {
                self.blocked = None;
                if n > 0 {
                    self.moved();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending => {
                let limit = self.shared.limits.send_timeout;
                let timer = self
                    .blocked
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client took nothing of what was sent to it",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
            other => other,
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.moved();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.written(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.written(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

pub(crate) fn text(
    status: StatusCode,
    extra: &[(header::HeaderName, String)],
    body: String,
) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed());
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    // A refusal may quote the request's Origin: never read as anything but text.
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if status.is_client_error() || status.is_server_error() {
        // A refused client gets its connection back closed.
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    for (k, v) in extra {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(k.clone(), v);
        }
    }
    r
}

fn header_str(req: &Request<Incoming>, name: header::HeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn is_websocket(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Every request on every connection: the checks, then Fooocus.
async fn handle(conn: Arc<Conn>, mut req: Request<Incoming>) -> Response<Body> {
    let busy = Busy::new(&conn.held);
    let shared = conn.held.shared.clone();
    let peer = conn.held.slot.ip;
    let now = Instant::now();
    let norm = rules::normalise_path(req.uri().path());
    let ws = is_websocket(&req);
    let queue_join = ws && rules::is_queue_join(&norm);
    let host = header_str(&req, header::HOST).unwrap_or("").to_string();
    let origin = header_str(&req, header::ORIGIN).map(str::to_string);
    // The only origin an answer may name for CORS: one the user allowed.
    let allowed = origin
        .clone()
        .filter(|o| rules::origin_allowed(o, &shared.cfg.allowed_origins));

    if shared.cfg.token.is_none() {
        // Without a token, only a name of this machine: a DNS name rebound to this machine
        // makes another site's page "same origin" with Fooocus.
        let local = conn
            .local
            .map(|a| canonical(a.ip()))
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        if !rules::host_names_this_machine(&host, local, shared.machine.as_deref()) {
            return text(
                StatusCode::FORBIDDEN,
                &[],
                "Refused: this request names a host that is not this computer. Open Fooocus by this computer's IP address or name (or NAME.local); to use another name, set a gateway token.\n".into(),
            );
        }
    }
    // Another site's page (a fetch, a form, a WebSocket, an image or frame) may not read or
    // drive Fooocus unless the user allowed its origin; a link followed in a tab of its own
    // may open it. With a token too: a page on another port of this machine is same-site and
    // gets the SameSite=Strict cookie.
    let sec = |name: &'static str| header_str(&req, header::HeaderName::from_static(name));
    if allowed.is_none()
        && rules::from_another_site(origin.as_deref(), &host, sec("sec-fetch-site"))
        && !rules::is_top_navigation(
            req.method(),
            origin.as_deref(),
            sec("sec-fetch-mode"),
            sec("sec-fetch-dest"),
        )
    {
        let who = origin
            .as_deref()
            .map_or("a page of another site".to_string(), |o| {
                format!("a page of {o}")
            });
        return text(
            StatusCode::FORBIDDEN,
            &[],
            format!("Refused: {who} tried to use this Fooocus; only Fooocus's own page may. To let that site use it, add its origin to the gateway's allowed origins (gateway.allowed_origins).\n"),
        );
    }

    // A CORS preflight of an allowed origin's page: a browser never sends it a credential, so
    // it would get 401 and the real request would never be sent. Answered here, without
    // Fooocus; the request itself is checked as any other.
    if let (Some(o), true) = (
        allowed.as_deref(),
        req.method() == Method::OPTIONS
            && req
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD),
    ) {
        let mut r = text(StatusCode::NO_CONTENT, &[], String::new());
        let h = r.headers_mut();
        h.remove(header::CONTENT_TYPE);
        if let Ok(o) = HeaderValue::from_str(o) {
            allow_origin(h, o);
        }
        for (ask, allow) in [
            (
                header::ACCESS_CONTROL_REQUEST_METHOD,
                header::ACCESS_CONTROL_ALLOW_METHODS,
            ),
            (
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                header::ACCESS_CONTROL_ALLOW_HEADERS,
            ),
        ] {
            if let Some(v) = req.headers().get(ask) {
                h.insert(allow, v.clone());
            }
        }
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        return r;
    }

    if let Some(token) = shared.cfg.token.as_deref() {
        let query = req.uri().query().unwrap_or("");
        let (in_query, rest_query) = rules::token_in_query(query, token);
        let query_changed = rest_query != query;
        let presented = Presented::of(in_query, req.headers());
        let mut right = false;
        let values = presented.distinct();
        if values > MAX_VALUES {
            return text(
                StatusCode::BAD_REQUEST,
                &[],
                format!("This request brings {values} different tokens (in its query, Authorization and Cookie headers): bring one.\n"),
            );
        }
        if presented.any() {
            let key = shared.key_of(&presented);
            let wait = shared.limits.token_wait;
            match shared.gate.admit(peer, key, wait).await {
                Err(()) => {
                    return text(
                        StatusCode::TOO_MANY_REQUESTS,
                        &[(header::RETRY_AFTER, wait.as_secs().max(1).to_string())],
                        format!("Too many wrong tokens are being tried on this Fooocus; yours waited {} s and was not checked. Try again later.\n", wait.as_secs()),
                    );
                }
                Ok(Verdict::KnownWrong) => {}
                Ok(Verdict::Check { paid }) => {
                    right = presented.matches(token);
                    shared.gate.outcome(peer, key, right, values, paid);
                }
            }
        }
        // What the connection last showed (see `Slot::tier`).
        conn.held.slot.proven.store(right, Ordering::SeqCst);
        if !right {
            return text(
                StatusCode::UNAUTHORIZED,
                &[(header::WWW_AUTHENTICATE, "Bearer".into())],
                "This Fooocus is protected by Fooocus Guard. Open it with the link Fooocus Guard gives (\"Open Fooocus in the browser\"), or as http://<this address>/?token=<the token from Fooocus Guard's settings>.\n".into(),
            );
        }
        // The token never reaches Fooocus (or its logs), in the query either, whichever
        // credential brought it.
        if presented.query.is_some() || query_changed {
            let path = req.uri().path().to_string();
            let location = if rest_query.is_empty() {
                path.clone()
            } else {
                format!("{path}?{rest_query}")
            };
            if presented.query.is_some() && req.method() == Method::GET && !ws {
                // Once by link; from then on the browser sends the cookie.
                return text(
                    StatusCode::FOUND,
                    &[
                        (header::LOCATION, rules::same_site_location(&location)),
                        (
                            header::SET_COOKIE,
                            format!(
                                "{}={}; Path=/; HttpOnly; SameSite=Strict",
                                rules::COOKIE,
                                rules::cookie_value(token)
                            ),
                        ),
                    ],
                    String::new(),
                );
            }
            if let Ok(uri) = location.parse() {
                *req.uri_mut() = uri;
            }
        }
        rules::scrub_token(req.headers_mut(), token);
    }

    if let Some(rate) = shared.cfg.rate_per_minute {
        if queue_join || rules::is_api_generation(req.method(), &norm) {
            let mut st = shared.state.lock().unwrap();
            if let Err(wait) = count_in_minute(&mut st.joins, peer, rate, now) {
                return text(
                    StatusCode::TOO_MANY_REQUESTS,
                    &[(header::RETRY_AFTER, wait.to_string())],
                    format!("Too many generations from this computer: at most {rate} a minute. Try again in {wait} s.\n"),
                );
            }
        }
    }

    // Admitted: every rule above passed. The guard's own paths (the waking page's state,
    // script and style) are answered here; they are no visit and wake nothing.
    if let Some(r) = wake::own(&shared.wake, &norm, req.method()) {
        return r;
    }
    // A visit restarts the idle clock and wakes a sleeping Fooocus (told once: the gateway is
    // Waking from here on).
    if shared.wake.visit() {
        if let Some(tx) = &shared.state.lock().unwrap().sink {
            let _ = tx.send(QueueEvent::WakeRequested);
        }
    }
    let w = shared.wake.now();
    if w.upstream != Upstream::Awake {
        // A browser opening a page is shown the guard's waking page; anything else (an API
        // client, a tab's queue join or /config) waits for Fooocus, or gets 503 with the reason.
        let same_site = !rules::from_another_site(origin.as_deref(), &host, None);
        if wake::is_navigation(&req, same_site) {
            return wake::page(&w);
        }
        if let Some(r) = shared.wake.hold(peer, &shared.limits).await {
            return r;
        }
    }

    if queue_join {
        // Uncompressed, or the queue's messages could not be read on the side.
        req.headers_mut().remove(header::SEC_WEBSOCKET_EXTENSIONS);
    }
    let down_upgrade = ws.then(|| hyper::upgrade::on(&mut req));
    let stalled = Arc::new(AtomicBool::new(false));
    let limits = shared.limits.clone();
    let req = req.map(|b| Stalls::new(b, &limits, stalled.clone()).boxed());
    let mut resp = match send_upstream(&conn, &shared, req, ws).await {
        Ok(r) => r,
        Err(_) if stalled.load(Ordering::SeqCst) => {
            return text(
                StatusCode::REQUEST_TIMEOUT,
                &[(header::CONNECTION, "close".to_string())],
                format!(
                    "The request's body stopped arriving, or came slower than {} bytes a second: send it again.\n",
                    limits.min_body_rate
                ),
            )
        }
        Err(e) => {
            return text(
                StatusCode::BAD_GATEWAY,
                &[],
                format!("Fooocus is not answering yet ({e}): try again soon.\n"),
            )
        }
    };
    cors(
        resp.headers_mut(),
        allowed.as_deref(),
        !shared.cfg.allowed_origins.is_empty(),
    );
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(down) = down_upgrade {
            let up = hyper::upgrade::on(&mut resp);
            let tap = queue_join.then(Tap::default);
            let slot = conn.held.slot.clone();
            tokio::spawn(async move {
                let (Ok(d), Ok(u)) = tokio::join!(down, up) else {
                    return;
                };
                tunnel(TokioIo::new(d), TokioIo::new(u), tap, &shared, &slot).await;
                drop(busy);
            });
            return resp.map(|_| Empty::new().map_err(|e| match e {}).boxed());
        }
    }
    // The request stays in flight (the connection busy) until its answer is sent whole.
    resp.map(|b| {
        b.map_frame(move |f| {
            let _ = &busy;
            f
        })
        .map_err(BoxError::from)
        .boxed()
    })
}

/// Fooocus's CORS headers never reach the browser (Gradio answers `Access-Control-Allow-Origin:
/// *` to any page), except for an origin the user allowed: then the answer names that exact
/// origin, never `*`. `vary`: some origins are allowed, so answers differ by Origin.
fn cors(h: &mut http::HeaderMap, allowed: Option<&str>, vary: bool) {
    let names: Vec<header::HeaderName> = h
        .keys()
        .filter(|k| k.as_str().starts_with("access-control-"))
        .cloned()
        .collect();
    match allowed.and_then(|o| HeaderValue::from_str(o).ok()) {
        Some(o) => {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        }
        None => {
            for n in names {
                h.remove(n);
            }
        }
    }
    if vary {
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// No other site may show Fooocus in a frame (clickjacking): a browser marks neither `Origin`
/// nor `Sec-Fetch-Site` on a frame of a plain-http LAN address, so the request checks cannot
/// tell. Only this site and the allowed origins may frame it (`frame-ancestors`; `X-Frame-Options`
/// for browsers without it, which modern ones ignore when `frame-ancestors` is there). A policy
/// Fooocus sends is kept; it gets `frame-ancestors` only if it has none (a second policy would
/// be enforced too, but one header is what a reader expects).
fn frame_policy(h: &mut http::HeaderMap, allowed_origins: &[String]) {
    h.insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    );
    let mut ancestors = String::from("frame-ancestors 'self'");
    for o in allowed_origins {
        if rules::valid_origin(o).is_ok() {
            ancestors.push(' ');
            ancestors.push_str(o);
        }
    }
    let csp = header::CONTENT_SECURITY_POLICY;
    let theirs: Vec<HeaderValue> = h.get_all(&csp).iter().cloned().collect();
    if theirs.iter().any(|v| {
        String::from_utf8_lossy(v.as_bytes())
            .to_ascii_lowercase()
            .contains("frame-ancestors")
    }) {
        return;
    }
    let merged = match theirs.first() {
        Some(v) => format!(
            "{}; {ancestors}",
            String::from_utf8_lossy(v.as_bytes()).trim_end_matches([';', ' '])
        ),
        None => ancestors,
    };
    if let Ok(v) = HeaderValue::from_str(&merged) {
        h.insert(&csp, v);
        for v in theirs.into_iter().skip(1) {
            h.append(&csp, v);
        }
    }
}

/// An allowed origin's CORS headers on an answer the gateway makes itself: that exact origin,
/// with credentials (the cookie or `Authorization:`), and the headers that say why.
fn allow_origin(h: &mut http::HeaderMap, origin: HeaderValue) {
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Retry-After, WWW-Authenticate"),
    );
    h.append(header::VARY, HeaderValue::from_static("Origin"));
}

/// A request body that must keep arriving: nothing for `body_timeout`, or less than
/// `min_body_rate` bytes a second over the time waited for it once that passed `body_timeout`,
/// ends it with an error, which aborts the request to Fooocus (`stalled` tells the handler
/// why). Only time spent waiting for the client counts (not time Fooocus took to read).
struct Stalls {
    inner: Incoming,
    silence: Duration,
    rate: f64,
    timer: Pin<Box<tokio::time::Sleep>>,
    /// Since when the body is waited for (None: not waiting now).
    waiting: Option<tokio::time::Instant>,
    /// Time waited for the client before, and bytes it brought.
    waited: Duration,
    received: u64,
    stalled: Arc<AtomicBool>,
}

impl Stalls {
    fn new(inner: Incoming, limits: &Limits, stalled: Arc<AtomicBool>) -> Stalls {
        Stalls {
            inner,
            silence: limits.body_timeout,
            rate: limits.min_body_rate.max(1) as f64,
            timer: Box::pin(tokio::time::sleep(limits.body_timeout)),
            waiting: None,
            waited: Duration::ZERO,
            received: 0,
            stalled,
        }
    }

    /// When the wait that began at `since` becomes too long.
    fn deadline(&self, since: tokio::time::Instant) -> tokio::time::Instant {
        let allowed = self
            .silence
            .max(Duration::from_secs_f64(self.received as f64 / self.rate));
        since + self.silence.min(allowed.saturating_sub(self.waited))
    }
}

impl hyper::body::Body for Stalls {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(since) = this.waiting.take() {
                    this.waited += since.elapsed();
                }
                if let Some(Ok(f)) = &frame {
                    this.received += f.data_ref().map_or(0, |d| d.len() as u64);
                }
                Poll::Ready(frame.map(|f| f.map_err(BoxError::from)))
            }
            Poll::Pending => {
                if this.waiting.is_none() {
                    let since = tokio::time::Instant::now();
                    this.waiting = Some(since);
                    let due = this.deadline(since);
                    this.timer.as_mut().reset(due);
                }
                match this.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.stalled.store(true, Ordering::SeqCst);
                        Poll::Ready(Some(Err("the request body stopped arriving".into())))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Send `req` to Fooocus on this connection's upstream connection (a new one for an upgrade,
/// or when the last one sat idle long enough that Fooocus may be closing it).
async fn send_upstream(
    conn: &Conn,
    shared: &Shared,
    req: Request<Body>,
    upgrade: bool,
) -> Result<Response<Incoming>, String> {
    let mut slot = conn.upstream.lock().await;
    let reuse = slot
        .take()
        .filter(|(s, at)| !upgrade && !s.is_closed() && at.elapsed() < Duration::from_secs(2));
    let mut sender = match reuse {
        Some((s, _)) => s,
        None => connect(shared.cfg.upstream).await?,
    };
    sender.ready().await.map_err(|e| e.to_string())?;
    let resp = sender.send_request(req);
    let resp = resp.await.map_err(|e| e.to_string())?;
    if !upgrade {
        *slot = Some((sender, Instant::now()));
    }
    Ok(resp)
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Body>, String> {
    let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .map_err(|_| "no answer in 5 s".to_string())?
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    // What hyper reads ahead of Fooocus's answer is what the gateway holds when the client
    // does not take it: 16 KiB (hyper's default lets it grow to 400 KiB).
    let (sender, connection) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(16 * 1024)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });
    Ok(sender)
}

/// Both directions of an upgraded connection, bytes first; a queue join's frames are read on
/// the side. It ends when Fooocus's side ends (or a write to the client times out, see
/// `Watched`); a client that closes its side gets Fooocus's remaining answer. When `slot` is
/// given up, the tunnel ends too, through the same cleanup (a running call is marked
/// abandoned, the tap's bytes returned), which dropping the tunnel would skip; while its
/// generation runs, the slot is marked so (given up last).
async fn tunnel<C, U>(client: C, server: U, tap: Option<Tap>, shared: &Shared, slot: &Slot)
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let tap = tap.map(|t| Mutex::new((t, 0usize)));
    let watch = |from_client: bool, b: &[u8]| {
        let Some(t) = &tap else { return };
        let mut t = t.lock().unwrap();
        let events = if from_client {
            t.0.from_client(b)
        } else {
            t.0.from_server(b)
        };
        // What this tap holds, in the gateway's count.
        let held = t.0.held();
        let before = std::mem::replace(&mut t.1, held);
        shared.tap_bytes.fetch_add(held, Ordering::SeqCst);
        shared.tap_bytes.fetch_sub(before, Ordering::SeqCst);
        drop(t);
        for e in &events {
            match e {
                QueueEvent::Started { .. } => slot.running.store(true, Ordering::SeqCst),
                QueueEvent::Completed { .. } => slot.running.store(false, Ordering::SeqCst),
                _ => {}
            }
        }
        apply(&shared.state, events);
    };
    let (cr, cw) = tokio::io::split(client);
    let (sr, sw) = tokio::io::split(server);
    let up = pump(cr, sw, |b| watch(true, b));
    let down = pump(sr, cw, |b| watch(false, b));
    {
        let evicted = slot.closed();
        tokio::pin!(up, down, evicted);
        tokio::select! {
            _ = &mut down => {}
            _ = &mut evicted => {}
            _ = &mut up => tokio::select! {
                _ = &mut down => {}
                _ = &mut evicted => {}
            },
        }
    }
    if let Some(t) = tap {
        let (t, held) = t.into_inner().unwrap();
        shared.tap_bytes.fetch_sub(held, Ordering::SeqCst);
        if let Some((session, fn_index)) = t.session() {
            shared.state.lock().unwrap().closed(&session, fn_index);
        }
    }
}

/// Bytes one way. 8 KiB at a time: a tunnel holds at most that per direction.
async fn pump<R, W>(mut from: R, mut to: W, mut watch: impl FnMut(&[u8]))
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 8 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
                watch(&buf[..n]);
            }
        }
    }
    let _ = to.shutdown().await;
}

type Page = dyn Fn(&str) -> Option<String> + Send + Sync;

/// The guard's own pages: GET only, a few connections, each bounded in time.
pub(crate) async fn serve_pages(
    listener: TcpListener,
    page: Arc<Page>,
    content_type: &'static str,
    stop: Arc<tokio::sync::Notify>,
) {
    let open = Arc::new(tokio::sync::Semaphore::new(16));
    loop {
        let accepted = tokio::select! {
            _ = stop.notified() => return,
            a = listener.accept() => a,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            continue; // full: closed at once
        };
        let page = page.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let body = page(req.uri().path());
                async move {
                    let (status, body) = match body {
                        Some(b) => (StatusCode::OK, b),
                        None => (
                            StatusCode::NOT_FOUND,
                            "only /metrics is served here\n".into(),
                        ),
                    };
                    let mut r = Response::new(Full::new(Bytes::from(body)));
                    *r.status_mut() = status;
                    r.headers_mut()
                        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
                    Ok::<_, Infallible>(r)
                }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            // One request a connection, closed after its answer (as scrapers expect).
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .keep_alive(false)
                .max_buf_size(16 * 1024);
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A policy Fooocus sends keeps its directives and gains `frame-ancestors`; one that has
    /// its own `frame-ancestors` is left as it is.
    #[test]
    fn the_frame_policy_merges_with_fooocus_s() {
        let allowed = vec!["http://a.example:3000".to_string(), "no origin".to_string()];
        let mut h = http::HeaderMap::new();
        frame_policy(&mut h, &allowed);
        assert_eq!(
            h[header::CONTENT_SECURITY_POLICY],
            "frame-ancestors 'self' http://a.example:3000"
        );
        assert_eq!(h[header::X_FRAME_OPTIONS], "SAMEORIGIN");
        let mut h = http::HeaderMap::new();
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'self';"),
        );
        frame_policy(&mut h, &[]);
        let all: Vec<_> = h.get_all(header::CONTENT_SECURITY_POLICY).iter().collect();
        assert_eq!(all, ["default-src 'self'; frame-ancestors 'self'"]);
        let mut h = http::HeaderMap::new();
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("Frame-Ancestors *"),
        );
        frame_policy(&mut h, &[]);
        let all: Vec<_> = h.get_all(header::CONTENT_SECURITY_POLICY).iter().collect();
        assert_eq!(all, ["Frame-Ancestors *"]);
    }

    #[test]
    fn an_ipv6_network_is_one_client() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::7".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_of(a), client_of(b));
        assert_ne!(client_of(a), client_of(c));
        let mapped: IpAddr = "::ffff:192.168.1.5".parse().unwrap();
        assert_eq!(client_of(mapped), IpAddr::from([192, 168, 1, 5]));
    }
}
