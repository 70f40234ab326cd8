//! The channel between the guard and its dashboard (docs/ipc.md: the same commands and events the
//! webview sees, carried over a socket).
//!
//! A Unix socket in a folder only this user may enter (0700), the socket itself 0600; the guard
//! accepts a peer only if the kernel says it runs as the same user (SO_PEERCRED) and it presents
//! the token the guard wrote, readable by this user alone, at start. One JSON object a line.

use std::collections::HashMap;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
            .name("fooocus-guard-ipc".into())
            .spawn(move || {
                for conn in listener.incoming().flatten() {
                    let (handler, token, list) = (handler.clone(), token.clone(), list.clone());
                    let _ = std::thread::Builder::new()
                        .name("fooocus-guard-ipc-client".into())
                        .spawn(move || serve(conn, &token, handler, list));
                }
            })
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

fn serve(conn: UnixStream, token: &str, handler: Arc<dyn Handler>, clients: Clients) {
    // SAFETY: geteuid cannot fail.
    if peer_uid(&conn) != Some(unsafe { libc::geteuid() }) {
        return;
    }
    // The hello must come promptly; after it, a dashboard may stay quiet for as long as it likes.
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(read_half) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    match serde_json::from_str::<ToGuard>(&line) {
        Ok(ToGuard::Hello { token: t, protocol }) if same(&t, token) && protocol == PROTOCOL => {}
        _ => return,
    }
    let _ = conn.set_read_timeout(None);
    let (tx, rx) = bounded::<Arc<str>>(QUEUE);
    let mut writer = conn;
    let open = Arc::new(AtomicBool::new(true));
    let writer_open = open.clone();
    std::thread::spawn(move || {
        for line in rx {
            if writer.write_all(line.as_bytes()).is_err() {
                break;
            }
        }
        writer_open.store(false, Ordering::Relaxed);
        let _ = writer.shutdown(std::net::Shutdown::Both);
    });
    let _ = tx.send(encode(&FromGuard::Welcome { protocol: PROTOCOL }).into());
    clients.lock().unwrap().push(Conn {
        tx: tx.clone(),
        open: open.clone(),
    });
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let Ok(ToGuard::Call { id, cmd, args }) = serde_json::from_str::<ToGuard>(&line) else {
            continue;
        };
        // Each call on its own thread: one that waits for the history database must not hold
        // up the status the window asks for next.
        let (handler, tx) = (handler.clone(), tx.clone());
        let _ = std::thread::Builder::new()
            .name("fooocus-guard-ipc-call".into())
            .spawn(move || {
                let result = handler.call(&cmd, args);
                let _ = tx.send(encode(&FromGuard::Reply { id, result }).into());
            });
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
            .name("fooocus-guard-ipc-reader".into())
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

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;
    impl Handler for Echo {
        fn call(&self, cmd: &str, args: Value) -> Result<Value, String> {
            match cmd {
                "echo" => Ok(args),
                _ => Err(format!("no command {cmd}")),
            }
        }
    }

    fn server() -> (tempfile::TempDir, Server) {
        let d = tempfile::tempdir().unwrap();
        let s = Server::start(d.path(), Arc::new(Echo)).unwrap();
        (d, s)
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
        conn.write_all(
            encode(&ToGuard::Call {
                id: 1,
                cmd: "echo".into(),
                args: Value::Bool(true),
            })
            .as_bytes(),
        )
        .unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut got = String::new();
        // The guard closes the connection without a word.
        assert_eq!(conn.read_to_string(&mut got).unwrap_or(0), 0, "{got}");
    }
}
