//! The relay: hyper's HTTP/1 server towards the browser, hyper's client towards Fooocus, one
//! tokio thread for all connections. Each connection holds a slot; slots are bounded in total
//! and per client, and an idle slot (no request in flight) is closed after a deadline or taken
//! by a newcomer when the gateway is full.

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
use crate::{apply, count_in_minute, GatewayConfig, Limits, State, Tap};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = BoxBody<Bytes, BoxError>;

pub(crate) struct Shared {
    cfg: GatewayConfig,
    limits: Limits,
    state: Arc<Mutex<State>>,
    slots: Mutex<HashMap<u64, Arc<Slot>>>,
    next_id: AtomicU64,
    epoch: Instant,
    machine: Option<String>,
    hasher: std::collections::hash_map::RandomState,
}

impl Shared {
    pub(crate) fn new(cfg: GatewayConfig, state: Arc<Mutex<State>>) -> Arc<Shared> {
        let mut limits = cfg.limits.clone();
        limits.max_connections = limits.max_connections.min(fd_budget()).max(8);
        limits.max_per_client = limits.max_per_client.min(limits.max_connections);
        Arc::new(Shared {
            cfg,
            limits,
            state,
            slots: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            epoch: Instant::now(),
            machine: rules::machine_name(),
            hasher: Default::default(),
        })
    }

    /// A keyed hash of the wrong tokens a request brought (the throttle keeps no token).
    fn key_of(&self, p: &Presented) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one((&p.query, &p.bearer, &p.cookie)) | 1
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// A slot for a new connection from `ip`; when full, the longest-idle connection (of that
    /// client when it is the client that is over its share) gives its slot up. None: every slot
    /// is busy with a request, the newcomer is refused.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Held> {
        let mut slots = self.slots.lock().unwrap();
        let mine = slots.values().filter(|s| s.ip == ip).count();
        let over_client = mine >= self.limits.max_per_client;
        if over_client || slots.len() >= self.limits.max_connections {
            let victim = slots
                .values()
                .filter(|s| s.busy.load(Ordering::SeqCst) == 0 && (!over_client || s.ip == ip))
                .min_by_key(|s| s.idle_since.load(Ordering::SeqCst))
                .cloned()?;
            slots.remove(&victim.id);
            victim.close.notify_one();
        }
        let slot = Arc::new(Slot {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            ip,
            busy: AtomicUsize::new(0),
            served: AtomicUsize::new(0),
            idle_since: AtomicU64::new(self.now_ms()),
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
    /// When the connection last became idle (ms since the gateway started).
    idle_since: AtomicU64,
    close: tokio::sync::Notify,
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
    loop {
        let accepted = tokio::select! {
            _ = stop.notified() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let Some(held) = shared.admit(canonical(peer.ip())) else {
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
    let conn = Arc::new(Conn {
        held: held.clone(),
        local,
        upstream: tokio::sync::Mutex::new(None),
    });
    drop(held);
    let svc = hyper::service::service_fn(move |req| {
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(handle(conn, req).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(shared.limits.header_timeout)
        .max_buf_size(shared.limits.max_header_bytes.max(8192))
        .max_header_size(shared.limits.max_header_bytes);
    let served = builder
        .serve_connection(TokioIo::new(stream), svc)
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
            _ = slot.close.notified() => return,
            _ = tokio::time::sleep_until(due.into()) => {
                let quiet = slot.idle_since.load(Ordering::SeqCst) == since;
                if slot.busy.load(Ordering::SeqCst) == 0 && quiet {
                    return;
                }
            }
        }
    }
}

fn text(
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

    if let Some(token) = shared.cfg.token.as_deref() {
        let (in_query, rest_query) = rules::token_in_query(req.uri().query().unwrap_or(""));
        let (in_cookie, rest_cookie) = req
            .headers()
            .get(header::COOKIE)
            .map(|c| rules::token_in_cookie(c.as_bytes()))
            .unwrap_or_default();
        let presented = Presented {
            query: in_query,
            bearer: req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| rules::bearer(v.as_bytes())),
            cookie: in_cookie,
        };
        if presented.any() {
            let limit = shared.limits.failed_tokens_per_minute;
            let mut st = shared.state.lock().unwrap();
            if let Err(wait) = count_in_minute(&mut st.failures, peer, limit, None, now) {
                return text(
                    StatusCode::TOO_MANY_REQUESTS,
                    &[(header::RETRY_AFTER, wait.to_string())],
                    format!("Too many wrong tokens from this computer. Try again in {wait} s.\n"),
                );
            }
            if !presented.matches(token) {
                let key = shared.key_of(&presented);
                let _ = count_in_minute(&mut st.failures, peer, limit, Some(key), now);
            }
        }
        if !presented.matches(token) {
            return text(
                StatusCode::UNAUTHORIZED,
                &[(header::WWW_AUTHENTICATE, "Bearer".into())],
                "This Fooocus is protected by Fooocus Guard. Open it with the link Fooocus Guard gives (\"Open Fooocus in the browser\"), or as http://<this address>/?token=<the token from Fooocus Guard's settings>.\n".into(),
            );
        }
        // The token never reaches Fooocus (or its logs).
        if presented.query.is_some() {
            let path = req.uri().path().to_string();
            let location = if rest_query.is_empty() {
                path.clone()
            } else {
                format!("{path}?{rest_query}")
            };
            if req.method() == Method::GET && !ws {
                // Once by link; from then on the browser sends the cookie.
                return text(
                    StatusCode::FOUND,
                    &[
                        (header::LOCATION, location),
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
        if presented.cookie.is_some() {
            match HeaderValue::from_str(&rest_cookie) {
                Ok(v) if !rest_cookie.is_empty() => {
                    req.headers_mut().insert(header::COOKIE, v);
                }
                _ => {
                    req.headers_mut().remove(header::COOKIE);
                }
            }
        }
        if presented.bearer.is_some() {
            req.headers_mut().remove(header::AUTHORIZATION);
        }
    } else if ws || !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        // Without a token, only pages of this very Fooocus, on a name of this machine, may
        // drive it: another site's page (or a rebound DNS name) is refused.
        let host = header_str(&req, header::HOST).unwrap_or("");
        let local = conn
            .local
            .map(|a| canonical(a.ip()))
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        if !rules::host_names_this_machine(host, local, shared.machine.as_deref()) {
            return text(
                StatusCode::FORBIDDEN,
                &[],
                "Refused: this request names a host that is not this computer. Open Fooocus by this computer's IP address or name (or NAME.local); to use another name, set a gateway token.\n".into(),
            );
        }
        if !rules::same_origin(header_str(&req, header::ORIGIN), host) {
            return text(
                StatusCode::FORBIDDEN,
                &[],
                "Refused: a page of another site tried to use this Fooocus.\n".into(),
            );
        }
    }

    if let Some(rate) = shared.cfg.rate_per_minute {
        if queue_join || rules::is_api_generation(req.method(), &norm) {
            let mut st = shared.state.lock().unwrap();
            if let Err(wait) = count_in_minute(&mut st.joins, peer, rate, Some(0), now) {
                return text(
                    StatusCode::TOO_MANY_REQUESTS,
                    &[(header::RETRY_AFTER, wait.to_string())],
                    format!("Too many generations from this computer: at most {rate} a minute. Try again in {wait} s.\n"),
                );
            }
        }
    }

    if queue_join {
        // Uncompressed, or the queue's messages could not be read on the side.
        req.headers_mut().remove(header::SEC_WEBSOCKET_EXTENSIONS);
    }
    let down_upgrade = ws.then(|| hyper::upgrade::on(&mut req));
    let stalled = Arc::new(AtomicBool::new(false));
    let limit = shared.limits.body_timeout;
    let req = req.map(|b| Stalls::new(b, limit, stalled.clone()).boxed());
    let mut resp = match send_upstream(&conn, &shared, req, ws).await {
        Ok(r) => r,
        Err(_) if stalled.load(Ordering::SeqCst) => {
            return text(
                StatusCode::REQUEST_TIMEOUT,
                &[(header::CONNECTION, "close".to_string())],
                format!(
                    "The request's body stopped arriving for {} s: send it again.\n",
                    limit.as_secs()
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
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(down) = down_upgrade {
            let up = hyper::upgrade::on(&mut resp);
            let tap = queue_join.then(Tap::default);
            let state = shared.state.clone();
            tokio::spawn(async move {
                let (Ok(d), Ok(u)) = tokio::join!(down, up) else {
                    return;
                };
                tunnel(TokioIo::new(d), TokioIo::new(u), tap, state).await;
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

/// A request body that must keep arriving: nothing for `limit` ends it with an error, which
/// aborts the request to Fooocus (`stalled` tells the handler why).
struct Stalls {
    inner: Incoming,
    limit: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    /// The clock starts when the relay first asks for the body (after Fooocus's connection is
    /// ready), not when the request arrived.
    started: bool,
    stalled: Arc<AtomicBool>,
}

impl Stalls {
    fn new(inner: Incoming, limit: Duration, stalled: Arc<AtomicBool>) -> Stalls {
        Stalls {
            inner,
            limit,
            timer: Box::pin(tokio::time::sleep(limit)),
            started: false,
            stalled,
        }
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
        if !this.started {
            this.started = true;
            let first = tokio::time::Instant::now() + this.limit;
            this.timer.as_mut().reset(first);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let next = tokio::time::Instant::now() + this.limit;
                this.timer.as_mut().reset(next);
                Poll::Ready(frame.map(|f| f.map_err(BoxError::from)))
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.stalled.store(true, Ordering::SeqCst);
                    Poll::Ready(Some(Err("the request body stopped arriving".into())))
                }
                Poll::Pending => Poll::Pending,
            },
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
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });
    Ok(sender)
}

/// Both directions of an upgraded connection, bytes first; a queue join's frames are read on
/// the side.
async fn tunnel<C, U>(client: C, server: U, tap: Option<Tap>, state: Arc<Mutex<State>>)
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let tap = tap.map(Mutex::new);
    let (cr, cw) = tokio::io::split(client);
    let (sr, sw) = tokio::io::split(server);
    let up = pump(cr, sw, |b| {
        if let Some(t) = &tap {
            let events = t.lock().unwrap().from_client(b);
            apply(&state, events);
        }
    });
    let down = pump(sr, cw, |b| {
        if let Some(t) = &tap {
            let events = t.lock().unwrap().from_server(b);
            apply(&state, events);
        }
    });
    tokio::join!(up, down);
    if let Some(t) = tap {
        if let Some((session, fn_index)) = t.into_inner().unwrap().session() {
            state.lock().unwrap().closed(&session, fn_index);
        }
    }
}

async fn pump<R, W>(mut from: R, mut to: W, mut watch: impl FnMut(&[u8]))
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
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

/// One request of the guard's own to Fooocus (the Stop), its status and whole body.
pub(crate) async fn fetch(
    upstream: SocketAddr,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<(u16, Bytes), String> {
    let mut sender = connect(upstream).await?;
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, upstream.to_string())
        .header(header::CONTENT_TYPE, "application/json")
        .body(
            Full::new(Bytes::from(body.unwrap_or_default()))
                .map_err(|e| match e {})
                .boxed(),
        )
        .map_err(|e| e.to_string())?;
    let work = async {
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .map_err(|_| "no answer in 10 s".to_string())?
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
