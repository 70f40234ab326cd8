//! The channel between the guard and its dashboard (docs/ipc.md: the same commands and events the
//! webview sees, carried over a socket).
//!
//! A Unix socket in a folder only this user may enter (0700), the socket itself 0600; the guard
//! accepts a peer only if the kernel says it runs as the same user (SO_PEERCRED) and it presents
//! the token the guard wrote, readable by this user alone, at start. One JSON object a line.

use std::collections::{HashMap, VecDeque};
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Both programs come from one build; a mismatch (an update installed while the guard runs) is
/// refused with a message rather than misread.
pub const PROTOCOL: u32 = 1;

/// From the dashboard to the guard.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ToGuard {
    Hello { token: String, protocol: u32 },
    Call { id: u64, cmd: String, args: Value },
}

/// From the guard to the dashboard.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FromGuard {
    Welcome {
        protocol: u32,
    },
    Reply {
        id: u64,
        result: Result<Value, String>,
    },
    Event {
        name: String,
        payload: Value,
    },
}

pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("ipc")
}

pub fn socket_path(data_dir: &Path) -> PathBuf {
    dir(data_dir).join("guard.sock")
}

fn token_path(data_dir: &Path) -> PathBuf {
    dir(data_dir).join("token")
}

/// What the guard answers calls with.
pub trait Handler: Send + Sync + 'static {
    fn call(&self, cmd: &str, args: Value) -> Result<Value, String>;
}

/// Lines waiting for one client; events beyond this are dropped for that client (a stuck
/// dashboard must not hold the guard up), replies never are.
const QUEUE: usize = 1024;

/// A connected dashboard: where its lines go, and whether it is still there.
struct Conn {
    tx: Sender<Arc<str>>,
    open: Arc<AtomicBool>,
}

type Clients = Arc<Mutex<Vec<Conn>>>;

pub struct Server {
    clients: Clients,
    path: PathBuf,
}

impl Server {
    /// Listen beside `data_dir`'s instance lock: the caller holds that lock, so a socket left
    /// there belongs to a guard that is gone.
    pub fn start(data_dir: &Path, handler: Arc<dyn Handler>) -> Result<Server, String> {
        let d = dir(data_dir);
        private_dir(&d)?;
        let path = socket_path(data_dir);
        let _ = fs::remove_file(&path);
        let listener = UnixListener::bind(&path).map_err(|e| {
            format!(
                "cannot listen on {} for the dashboard: {e} (is the data folder on a file system without sockets? set FOOOCUS_GUARD_DATA_DIR to a local folder)",
                path.display()
            )
        })?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("cannot restrict {}: {e}", path.display()))?;
        let token = new_token()?;
        let tp = token_path(data_dir);
        let _ = fs::remove_file(&tp);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tp)
            .map_err(|e| format!("cannot write {}: {e}", tp.display()))?;
        f.write_all(token.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", tp.display()))?;
        let clients: Clients = Arc::default();
        let list = clients.clone();
        std::thread::Builder::new()
            .name("fg-ipc-accept".into())
            .spawn(move || accept_loop(listener, token, handler, list))
            .map_err(|e| format!("cannot start the dashboard's listener: {e}"))?;
        Ok(Server { clients, path })
    }

    /// An event to every dashboard connected.
    pub fn broadcast(&self, name: &str, payload: &impl Serialize) {
        let Ok(payload) = serde_json::to_value(payload) else {
            return;
        };
        let line: Arc<str> = encode(&FromGuard::Event {
            name: name.into(),
            payload,
        })
        .into();
        self.clients.lock().unwrap().retain(|c| {
            c.open.load(Ordering::Relaxed)
                && !matches!(
                    c.tx.try_send(line.clone()),
                    Err(TrySendError::Disconnected(_))
                )
        });
    }

    /// How many dashboards are connected now.
    pub fn clients(&self) -> usize {
        let mut c = self.clients.lock().unwrap();
        c.retain(|c| c.open.load(Ordering::Relaxed));
        c.len()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn encode<T: Serialize>(m: &T) -> String {
    let mut s = serde_json::to_string(m).expect("messages serialize");
    s.push('\n');
    s
}

/// Create `d` for this user alone, or check that an existing one is.
fn private_dir(d: &Path) -> Result<(), String> {
    match DirBuilder::new().recursive(true).mode(0o700).create(d) {
        Ok(()) => {}
        Err(e) => return Err(format!("cannot create {}: {e}", d.display())),
    }
    let m = fs::metadata(d).map_err(|e| format!("cannot read {}: {e}", d.display()))?;
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    if m.uid() != me {
        return Err(format!(
            "{} belongs to another user (uid {}): remove it, or set FOOOCUS_GUARD_DATA_DIR to a folder of your own",
            d.display(),
            m.uid()
        ));
    }
    fs::set_permissions(d, fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("cannot restrict {}: {e}", d.display()))
}

fn new_token() -> Result<String, String> {
    let mut b = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| format!("cannot read /dev/urandom for the dashboard's token: {e}"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// The uid of the process at the other end of `s`, as the kernel saw it connect.
fn peer_uid(s: &UnixStream) -> Option<u32> {
    #[cfg(target_os = "linux")]
    {
        let mut cred = libc::ucred {
            pid: 0,
            uid: 0,
            gid: 0,
        };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: cred and len are valid for the call and sized for SO_PEERCRED.
        let rc = unsafe {
            libc::getsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&mut cred as *mut libc::ucred).cast(),
                &mut len,
            )
        };
        (rc == 0).then_some(cred.uid)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let (mut uid, mut gid) = (0, 0);
        // SAFETY: out-pointers valid for the call.
        let rc = unsafe { libc::getpeereid(s.as_raw_fd(), &mut uid, &mut gid) };
        (rc == 0).then_some(uid)
    }
}

/// Constant time, so the token cannot be guessed a byte at a time.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// Dashboards served at once. One is the norm; a few more cover a window reopened while the old
/// one is still closing.
const MAX_DASHBOARDS: usize = 8;

/// Connections that have not said hello yet. A dashboard says it the moment it connects; a peer
/// that stays silent holds one of these until `HELLO_TIMEOUT`, or until a newer connection needs
/// its place (the oldest gives way). Each is one thread: silent peers cannot make more.
const MAX_HANDSHAKES: usize = 8;

/// How long a connection may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a new connection waits for a handshake to give way before it is closed.
const ADMIT_WAIT: Duration = Duration::from_secs(1);

/// A dashboard that stops reading for this long is dropped (its events would only pile up).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Out of descriptors (EMFILE/ENFILE), memory or threads, the next accept waits this long: it
/// would fail again at once, and peers that keep connecting kept a loop without a pause at 58 %
/// of a core here (70-86 % in the measurement).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Who is connected, so the accept loop can keep the number of connections (and threads) bounded.
#[derive(Default)]
struct Admission {
    state: Mutex<AdmitState>,
    changed: Condvar,
}

#[derive(Default)]
struct AdmitState {
    /// Handshakes in progress, oldest first, each with a handle to end it early.
    waiting: VecDeque<(u64, UnixStream)>,
    /// Threads still in their handshake, those told to give way included until they have.
    handshaking: usize,
    dashboards: usize,
    next: u64,
}

impl Admission {
    /// A place for a new connection's handshake (the connection is closed without one).
    fn enter(self: &Arc<Self>, conn: &UnixStream) -> Result<Handshake, Refused> {
        let deadline = Instant::now() + ADMIT_WAIT;
        let mut st = self.state.lock().unwrap();
        while st.handshaking >= MAX_HANDSHAKES {
            // The oldest silent peer gives way: its thread sees the end of its stream at once.
            if let Some((_, old)) = st.waiting.pop_front() {
                let _ = old.shutdown(std::net::Shutdown::Both);
            }
            let left = deadline
                .checked_duration_since(Instant::now())
                .ok_or(Refused::Busy)?;
            st = self.changed.wait_timeout(st, left).unwrap().0;
        }
        let handle = conn.try_clone().map_err(|_| Refused::Exhausted)?;
        st.handshaking += 1;
        st.next += 1;
        let id = st.next;
        st.waiting.push_back((id, handle));
        Ok(Handshake {
            adm: self.clone(),
            id,
            done: false,
        })
    }
}

enum Refused {
    /// Every handshake place stayed taken.
    Busy,
    /// No descriptor (or thread) for it: the process is at its limits.
    Exhausted,
}

/// One connection's place while it says hello; given back when dropped.
struct Handshake {
    adm: Arc<Admission>,
    id: u64,
    done: bool,
}

impl Handshake {
    /// The hello was right: become one of the dashboards, if there is room.
    fn admit(mut self) -> Result<Dashboard, String> {
        let mut st = self.leave();
        if st.dashboards >= MAX_DASHBOARDS {
            return Err(format!(
                "the guard already serves {MAX_DASHBOARDS} dashboards: close one of them, then open this one again"
            ));
        }
        st.dashboards += 1;
        drop(st);
        Ok(Dashboard(self.adm.clone()))
    }

    fn leave(&mut self) -> std::sync::MutexGuard<'_, AdmitState> {
        let mut st = self.adm.state.lock().unwrap();
        if !self.done {
            self.done = true;
            st.waiting.retain(|(i, _)| *i != self.id);
            st.handshaking -= 1;
            self.adm.changed.notify_all();
        }
        st
    }
}

impl Drop for Handshake {
    fn drop(&mut self) {
        drop(self.leave());
    }
}

/// A dashboard's place, given back when its connection ends.
struct Dashboard(Arc<Admission>);

impl Drop for Dashboard {
    fn drop(&mut self) {
        self.0.state.lock().unwrap().dashboards -= 1;
    }
}

fn accept_loop(listener: UnixListener, token: String, handler: Arc<dyn Handler>, list: Clients) {
    let adm = Arc::new(Admission::default());
    loop {
        let conn = match listener.accept() {
            Ok((conn, _)) => conn,
            Err(e) => {
                if !matches!(
                    e.kind(),
                    std::io::ErrorKind::Interrupted | std::io::ErrorKind::ConnectionAborted
                ) {
                    std::thread::sleep(ACCEPT_BACKOFF);
                }
                continue;
            }
        };
        // Another user's connection is closed before it costs a thread.
        // SAFETY: geteuid cannot fail.
        if peer_uid(&conn) != Some(unsafe { libc::geteuid() }) {
            continue;
        }
        // Every descriptor a connection needs is taken here: one short of the limit, accepting
        // and closing at once would spin as surely as a failing accept.
        let admitted = conn
            .try_clone()
            .map_err(|_| Refused::Exhausted)
            .and_then(|read_half| Ok((read_half, adm.enter(&conn)?)));
        let (read_half, place) = match admitted {
            Ok(a) => a,
            Err(Refused::Busy) => continue,
            Err(Refused::Exhausted) => {
                drop(conn);
                std::thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
        };
        let (handler, token, list) = (handler.clone(), token.clone(), list.clone());
        // A failed spawn drops the closure, and with it the connection and its place.
        let spawned = std::thread::Builder::new()
            .name("fg-ipc-conn".into())
            .spawn(move || serve(conn, read_half, place, &token, handler, list));
        if spawned.is_err() {
            std::thread::sleep(ACCEPT_BACKOFF);
        }
    }
}

fn serve(
    conn: UnixStream,
    read_half: UnixStream,
    place: Handshake,
    token: &str,
    handler: Arc<dyn Handler>,
    clients: Clients,
) {
    // The hello must come promptly; after it, a dashboard may stay quiet for as long as it likes.
    let _ = conn.set_read_timeout(Some(HELLO_TIMEOUT));
    let mut reader = BufReader::new(read_half);
    let mut line = String::new();
    if read_capped(&mut reader, &mut line).unwrap_or(0) == 0 {
        return;
    }
    match serde_json::from_str::<ToGuard>(&line) {
        Ok(ToGuard::Hello { token: t, protocol }) if same(&t, token) && protocol == PROTOCOL => {}
        _ => return,
    }
    // Held by each call thread too: a connection's place is free only once its calls have
    // ended, so connecting, sending calls and leaving cannot pile up threads.
    let place = match place.admit() {
        Ok(p) => Arc::new(p),
        Err(why) => {
            let mut conn = conn;
            let _ = conn.set_write_timeout(Some(HELLO_TIMEOUT));
            let refusal = FromGuard::Reply {
                id: 0,
                result: Err(why),
            };
            let _ = conn.write_all(encode(&refusal).as_bytes());
            return;
        }
    };
    let _ = conn.set_read_timeout(None);
    let _ = conn.set_write_timeout(Some(WRITE_TIMEOUT));
    let (tx, rx) = bounded::<Arc<str>>(QUEUE);
    let mut writer = conn;
    let open = Arc::new(AtomicBool::new(true));
    let writer_open = open.clone();
    let spawned = std::thread::Builder::new()
        .name("fg-ipc-write".into())
        .spawn(move || {
            for line in rx {
                if writer.write_all(line.as_bytes()).is_err() {
                    break;
                }
            }
            writer_open.store(false, Ordering::Relaxed);
            let _ = writer.shutdown(std::net::Shutdown::Both);
        });
    if spawned.is_err() {
        return;
    }
    let _ = tx.send(encode(&FromGuard::Welcome { protocol: PROTOCOL }).into());
    clients.lock().unwrap().push(Conn {
        tx: tx.clone(),
        open: open.clone(),
    });
    let running = Arc::new(AtomicUsize::new(0));
    loop {
        line.clear();
        match read_capped(&mut reader, &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let Ok(ToGuard::Call { id, cmd, args }) = serde_json::from_str::<ToGuard>(&line) else {
            continue;
        };
        if running.fetch_add(1, Ordering::SeqCst) >= MAX_CALLS {
            running.fetch_sub(1, Ordering::SeqCst);
            let busy = Err(format!(
                "the guard is still answering {MAX_CALLS} requests from this window: try again in a moment"
            ));
            let _ = tx.send(encode(&FromGuard::Reply { id, result: busy }).into());
            continue;
        }
        // Each call on its own thread: one that waits for the history database must not hold
        // up the status the window asks for next.
        let (handler, tx, done) = (handler.clone(), tx.clone(), running.clone());
        let place = place.clone();
        let spawned = std::thread::Builder::new()
            .name("fg-ipc-call".into())
            .spawn(move || {
                let _place = place;
                let result = handler.call(&cmd, args);
                done.fetch_sub(1, Ordering::SeqCst);
                let _ = tx.send(encode(&FromGuard::Reply { id, result }).into());
            });
        if spawned.is_err() {
            running.fetch_sub(1, Ordering::SeqCst);
        }
    }
    // The list forgets it now; the writer ends once the calls still running have answered.
    open.store(false, Ordering::Relaxed);
    clients
        .lock()
        .unwrap()
        .retain(|c| c.open.load(Ordering::Relaxed));
}

type Pending = Arc<Mutex<HashMap<u64, Sender<Result<Value, String>>>>>;

/// The dashboard's end.
pub struct Client {
    writer: Mutex<UnixStream>,
    pending: Pending,
    next: AtomicU64,
}

impl Client {
    /// Connect to the guard of `data_dir`. `on_event` gets each event; `on_close` runs once when
    /// the guard goes away (every call still waiting then fails).
    pub fn connect(
        data_dir: &Path,
        on_event: impl Fn(String, Value) + Send + 'static,
        on_close: impl FnOnce() + Send + 'static,
    ) -> Result<Arc<Client>, String> {
        let path = socket_path(data_dir);
        let conn = UnixStream::connect(&path).map_err(|e| {
            format!(
                "Fooocus Guard is not running for {} ({e} on {}): start Fooocus Guard, then open the dashboard from its tray icon",
                data_dir.display(),
                path.display()
            )
        })?;
        let tp = token_path(data_dir);
        let token = fs::read_to_string(&tp)
            .map_err(|e| format!("cannot read the guard's token {}: {e}", tp.display()))?;
        let mut w = conn
            .try_clone()
            .map_err(|e| format!("cannot use the guard's socket: {e}"))?;
        w.write_all(
            encode(&ToGuard::Hello {
                token: token.trim().into(),
                protocol: PROTOCOL,
            })
            .as_bytes(),
        )
        .map_err(|e| format!("cannot talk to the guard: {e}"))?;
        let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
        let mut reader = BufReader::new(conn);
        let mut line = String::new();
        let welcome = reader
            .read_line(&mut line)
            .map(|_| serde_json::from_str::<FromGuard>(&line));
        match welcome {
            Ok(Ok(FromGuard::Welcome { protocol })) if protocol == PROTOCOL => {}
            Ok(Ok(FromGuard::Welcome { protocol })) => {
                return Err(format!(
                    "the running guard speaks protocol {protocol}, this dashboard {PROTOCOL}: quit Fooocus Guard from its tray icon and start it again"
                ))
            }
            // The guard said why it will not serve this dashboard (too many open).
            Ok(Ok(FromGuard::Reply {
                id: 0,
                result: Err(why),
            })) => return Err(why),
            _ => {
                return Err(format!(
                    "the guard refused this dashboard (its token in {} did not match, or another user's guard owns {}): quit Fooocus Guard and start it again",
                    tp.display(),
                    path.display()
                ))
            }
        }
        let _ = reader.get_ref().set_read_timeout(None);
        let pending: Pending = Arc::default();
        let client = Arc::new(Client {
            writer: Mutex::new(w),
            pending: pending.clone(),
            next: AtomicU64::new(1),
        });
        std::thread::Builder::new()
            .name("fg-ipc-reader".into())
            .spawn(move || {
                loop {
                    line.clear();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    match serde_json::from_str::<FromGuard>(&line) {
                        Ok(FromGuard::Reply { id, result }) => {
                            if let Some(tx) = pending.lock().unwrap().remove(&id) {
                                let _ = tx.send(result);
                            }
                        }
                        Ok(FromGuard::Event { name, payload }) => on_event(name, payload),
                        _ => {}
                    }
                }
                for (_, tx) in pending.lock().unwrap().drain() {
                    let _ = tx.send(Err(GONE.into()));
                }
                on_close();
            })
            .map_err(|e| format!("cannot start the dashboard's reader: {e}"))?;
        Ok(client)
    }

    /// Call a command of the guard and wait for its answer.
    pub fn call(&self, cmd: &str, args: Value) -> Result<Value, String> {
        let rx = self.send(cmd, args)?;
        rx.recv().unwrap_or_else(|_| Err(GONE.into()))
    }

    /// Tell the guard something without waiting for its answer (the dashboard is closing).
    pub fn tell(&self, cmd: &str) {
        let _ = self.send(cmd, Value::Null);
    }

    fn send(&self, cmd: &str, args: Value) -> Result<Receiver<Result<Value, String>>, String> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = bounded(1);
        self.pending.lock().unwrap().insert(id, tx);
        let line = encode(&ToGuard::Call {
            id,
            cmd: cmd.into(),
            args,
        });
        if self
            .writer
            .lock()
            .unwrap()
            .write_all(line.as_bytes())
            .is_err()
        {
            self.pending.lock().unwrap().remove(&id);
            return Err(GONE.into());
        }
        Ok(rx)
    }
}

const GONE: &str = "the guard has gone away: start Fooocus Guard again";

/// The longest line the guard reads from a dashboard (a call's arguments are settings at most).
/// A peer that sends more is dropped instead of being buffered without end.
const MAX_LINE: u64 = 1 << 20;

/// Calls one dashboard may have running at once (each on its own thread); more are answered
/// "busy" at once instead of starting threads without end.
const MAX_CALLS: usize = 32;

/// One line of at most `MAX_LINE` bytes; a longer one is an error (the connection ends).
fn read_capped(r: &mut impl BufRead, line: &mut String) -> std::io::Result<usize> {
    let n = r.by_ref().take(MAX_LINE).read_line(line)?;
    if n as u64 == MAX_LINE && !line.ends_with('\n') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "a line longer than the guard reads",
        ));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "echo" answers its arguments; "wait" answers once the test drops the gate.
    struct Echo(Receiver<()>);
    impl Handler for Echo {
        fn call(&self, cmd: &str, args: Value) -> Result<Value, String> {
            match cmd {
                "echo" => Ok(args),
                "wait" => {
                    let _ = self.0.recv();
                    Ok(Value::Null)
                }
                _ => Err(format!("no command {cmd}")),
            }
        }
    }

    fn server() -> (tempfile::TempDir, Server) {
        let (d, s, _gate) = gated_server();
        (d, s)
    }

    fn gated_server() -> (tempfile::TempDir, Server, Sender<()>) {
        let d = tempfile::tempdir().unwrap();
        let (gate, rx) = bounded(0);
        let s = Server::start(d.path(), Arc::new(Echo(rx))).unwrap();
        (d, s, gate)
    }

    /// A connection that said hello with the right token, and its reader.
    fn hello(d: &Path) -> (UnixStream, BufReader<UnixStream>) {
        let mut conn = UnixStream::connect(socket_path(d)).unwrap();
        let token = fs::read_to_string(token_path(d)).unwrap();
        conn.write_all(
            encode(&ToGuard::Hello {
                token,
                protocol: PROTOCOL,
            })
            .as_bytes(),
        )
        .unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut r = BufReader::new(conn.try_clone().unwrap());
        let mut welcome = String::new();
        r.read_line(&mut welcome).unwrap();
        assert!(welcome.contains("welcome"), "{welcome}");
        (conn, r)
    }

    #[test]
    fn a_line_longer_than_the_guard_reads_ends_the_connection() {
        let (d, _s) = server();
        let (mut conn, mut r) = hello(d.path());
        let long = vec![b'x'; (MAX_LINE as usize) + 4096];
        // The guard stops reading at the cap: the rest of the write may fail, as it should.
        let _ = conn.write_all(&long);
        let mut rest = String::new();
        // Closed by the guard (EOF, or a reset: it closed with our bytes unread), not a timeout.
        match r.read_to_string(&mut rest) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("the connection is still open: {other:?} {rest}"),
        }
    }

    #[test]
    fn calls_beyond_the_running_limit_are_answered_busy_at_once() {
        let (d, _s, gate) = gated_server();
        let (mut conn, mut r) = hello(d.path());
        let n = MAX_CALLS + 8;
        for id in 0..n as u64 {
            let call = ToGuard::Call {
                id,
                cmd: "wait".into(),
                args: Value::Null,
            };
            conn.write_all(encode(&call).as_bytes()).unwrap();
        }
        let reply = |r: &mut BufReader<UnixStream>| {
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
            match serde_json::from_str::<FromGuard>(&l).unwrap() {
                FromGuard::Reply { result, .. } => result,
                other => panic!("{other:?}"),
            }
        };
        // While MAX_CALLS wait at the gate, the other 8 are answered: busy.
        for _ in 0..8 {
            let e = reply(&mut r).unwrap_err();
            assert!(e.contains("try again"), "{e}");
        }
        drop(gate);
        for _ in 0..MAX_CALLS {
            assert_eq!(reply(&mut r), Ok(Value::Null));
        }
    }

    #[test]
    fn calls_and_events_reach_the_dashboard() {
        let (d, s) = server();
        let (etx, erx) = bounded(8);
        let c = Client::connect(d.path(), move |n, p| etx.send((n, p)).unwrap(), || {}).unwrap();
        assert_eq!(
            c.call("echo", serde_json::json!({"a": 1})).unwrap(),
            serde_json::json!({"a": 1})
        );
        assert_eq!(c.call("nope", Value::Null).unwrap_err(), "no command nope");
        assert_eq!(s.clients(), 1);
        s.broadcast("status", &serde_json::json!({"state": "ready"}));
        let (n, p) = erx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!((n.as_str(), p["state"].as_str()), ("status", Some("ready")));
    }

    #[test]
    fn only_this_user_may_reach_the_socket_and_token() {
        let (d, _s) = server();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir(d.path())), 0o700);
        assert_eq!(mode(&socket_path(d.path())), 0o600);
        assert_eq!(mode(&token_path(d.path())), 0o600);
    }

    /// Threads of this process now.
    #[cfg(target_os = "linux")]
    fn threads() -> usize {
        fs::read_dir("/proc/self/task").unwrap().count()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn silent_connections_do_not_cost_a_thread_each() {
        // This test holds the client ends itself: make room for them.
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: valid out-pointer, then a valid rlimit.
        unsafe {
            assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
        let n = 3000.min(lim.rlim_cur.saturating_sub(1000) as usize);
        assert!(n >= 1000, "only {} descriptors allowed here", lim.rlim_cur);
        let (d, _s) = server();
        let before = threads();
        let mut peak = before;
        let mut held = Vec::with_capacity(n);
        for i in 0..n {
            held.push(UnixStream::connect(socket_path(d.path())).unwrap());
            if i % 25 == 0 {
                peak = peak.max(threads());
            }
        }
        peak = peak.max(threads());
        // Other tests run beside this one and have threads of their own: the bound is loose,
        // but a thread per connection would be thousands.
        assert!(
            peak.saturating_sub(before) < 100,
            "{n} silent connections: {before} threads before, {peak} at the peak"
        );
        // A dashboard still gets in while they hold on: the oldest silent one gives way.
        let c = Client::connect(d.path(), |_, _| {}, || {}).unwrap();
        assert_eq!(
            c.call("echo", serde_json::json!(7)).unwrap(),
            serde_json::json!(7)
        );
        drop(held);
    }

    #[test]
    fn a_dashboard_that_leaves_with_calls_running_keeps_its_place_until_they_end() {
        let (d, _s, gate) = gated_server();
        let busy = |r: &mut BufReader<UnixStream>| {
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
            l
        };
        for _ in 0..MAX_DASHBOARDS {
            let (mut conn, mut r) = hello(d.path());
            for id in 0..=MAX_CALLS as u64 {
                let call = ToGuard::Call {
                    id,
                    cmd: "wait".into(),
                    args: Value::Null,
                };
                conn.write_all(encode(&call).as_bytes()).unwrap();
            }
            // The last is answered busy: all MAX_CALLS are running.
            assert!(busy(&mut r).contains("try again"));
            conn.shutdown(std::net::Shutdown::Both).unwrap();
        }
        // Those calls still run: no new dashboard (and no new threads) until they end.
        let e = Client::connect(d.path(), |_, _| {}, || {})
            .err()
            .expect("refused while the calls of those that left still run");
        assert!(e.contains("close one"), "{e}");
        drop(gate);
    }

    #[test]
    fn dashboards_beyond_the_limit_are_told_why() {
        let (d, _s) = server();
        let open: Vec<_> = (0..MAX_DASHBOARDS)
            .map(|_| Client::connect(d.path(), |_, _| {}, || {}).unwrap())
            .collect();
        let e = Client::connect(d.path(), |_, _| {}, || {})
            .err()
            .expect("one dashboard too many is refused");
        assert!(e.contains("close one"), "{e}");
        drop(open);
    }

    /// The child of `out_of_descriptors_the_accept_loop_waits`: it lowers its own file limit.
    #[cfg(target_os = "linux")]
    #[test]
    fn accept_loop_without_descriptors_child() {
        use std::io::Seek;
        if std::env::var_os("FG_IPC_EMFILE_CHILD").is_none() {
            return;
        }
        let (d, _s) = server();
        let path = socket_path(d.path());
        // Another process connects, again and again (this one has no descriptor left to accept
        // with). On this kernel (6.18) a failed accept takes the queued connection with it, so
        // only a peer that keeps connecting keeps the loop busy -- as the 3,000 of the attack did.
        let script = format!(
            "import socket,sys,threading\n\
             sys.stdin.readline()\n\
             stop=threading.Event()\n\
             threading.Thread(target=lambda:(sys.stdin.readline(),stop.set()),daemon=True).start()\n\
             first=True\n\
             while not stop.is_set():\n\
             \x20 s=socket.socket(socket.AF_UNIX)\n\
             \x20 s.settimeout(0.05)\n\
             \x20 try: s.connect({:?})\n\
             \x20 except OSError: pass\n\
             \x20 s.close()\n\
             \x20 if first: print('connecting',flush=True); first=False\n",
            path.to_str().unwrap()
        );
        let mut child = std::process::Command::new("python3")
            .args(["-c", &script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut to_child = child.stdin.take().unwrap();
        let mut from_child = BufReader::new(child.stdout.take().unwrap());
        // A dashboard served shows the accept thread has started (and named itself).
        let _dashboard = hello(d.path());
        let mut stat = fs::read_dir("/proc/self/task")
            .unwrap()
            .flatten()
            .find(|t| {
                fs::read_to_string(t.path().join("comm"))
                    .unwrap_or_default()
                    .trim()
                    == "fg-ipc-accept"
            })
            .map(|t| fs::File::open(t.path().join("stat")).unwrap())
            .expect("the accept thread");
        let mut ticks = || {
            let mut text = String::new();
            stat.rewind().unwrap();
            stat.read_to_string(&mut text).unwrap();
            let f: Vec<&str> = text[text.rfind(')').unwrap() + 2..]
                .split_whitespace()
                .collect();
            f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
        };
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: valid out-pointer.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        // Every descriptor is in use (the listing's own is closed again): accept has none.
        let open = fs::read_dir("/proc/self/fd").unwrap().count() as u64 - 1;
        let low = libc::rlimit {
            rlim_cur: open,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: a valid rlimit.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) }, 0);
        // Whatever the count missed is taken too: not one descriptor is left.
        let mut fillers = Vec::new();
        loop {
            // SAFETY: dup of stdin; each is closed below.
            let fd = unsafe { libc::dup(0) };
            if fd < 0 {
                break;
            }
            fillers.push(fd);
        }
        writeln!(to_child, "go").unwrap();
        let mut line = String::new();
        from_child.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "connecting");
        // A measuring window, not a wait for anything: a spinning loop would burn it all.
        let before = ticks();
        std::thread::sleep(Duration::from_secs(2));
        let burnt = ticks() - before;
        for fd in fillers {
            // SAFETY: our own descriptors from dup.
            unsafe { libc::close(fd) };
        }
        // SAFETY: a valid rlimit.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
        let _ = writeln!(to_child, "done");
        let _ = child.wait();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        assert!(
            burnt * 5 < hz,
            "the accept loop used {burnt} ticks of CPU in 2 s ({hz} a second) while out of descriptors: it spins"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn out_of_descriptors_the_accept_loop_waits() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "ipc::tests::accept_loop_without_descriptors_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("FG_IPC_EMFILE_CHILD", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("1 passed"), "the child ran the test: {text}");
    }

    #[test]
    fn a_wrong_token_is_refused() {
        let (d, _s) = server();
        let mut conn = UnixStream::connect(socket_path(d.path())).unwrap();
        conn.write_all(
            encode(&ToGuard::Hello {
                token: "0".repeat(64),
                protocol: PROTOCOL,
            })
            .as_bytes(),
        )
        .unwrap();
        // The guard may already have closed the connection on the wrong hello (what this test
        // is about): then this write fails with a broken pipe, and the read below still sees
        // the close.
        let _ = conn.write_all(
            encode(&ToGuard::Call {
                id: 1,
                cmd: "echo".into(),
                args: Value::Bool(true),
            })
            .as_bytes(),
        );
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut got = String::new();
        // The guard closes the connection without a word.
        assert_eq!(conn.read_to_string(&mut got).unwrap_or(0), 0, "{got}");
    }
}
