#![cfg(unix)]
// Unix only: the Linux path runs python3 and pip, and the fixtures are read from this machine's
// paths; the Windows suite (Wine) has neither. The Windows package path is still covered here.
//! The installer against a loopback HTTP server this test runs, serving archives made from the
//! pinned upstream snapshot (../shared/upstream, or FOOOCUS_UPSTREAM): range requests, a wrong
//! checksum, a truncated body, a dropped connection, a silent one, cancel and resume; then a
//! real venv and pip install from a wheelhouse of tiny stand-ins (no network).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver};
use guard_core::install::{self, InstallKind};
use guard_core::installer::{
    self, DownloadOptions, InstallerError, Phase, Platform, Progress, Request, RunOptions, Source,
    TorchIndex,
};

fn snapshots() -> PathBuf {
    if let Some(p) = std::env::var_os("FOOOCUS_UPSTREAM") {
        return PathBuf::from(p);
    }
    let mut d = Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf();
    while let Some(parent) = d.parent() {
        let s = parent.join("shared").join("upstream");
        if s.is_dir() {
            return s;
        }
        d = parent.to_path_buf();
    }
    panic!("the upstream snapshots (shared/upstream) are missing: set FOOOCUS_UPSTREAM to their folder")
}

fn snapshot_255() -> Vec<u8> {
    std::fs::read(snapshots().join("fooocus-2.5.5.tar.gz")).expect("fooocus-2.5.5.tar.gz")
}

/// How the server treats the first request for a path (later ones are served properly).
#[derive(Clone, Copy, PartialEq)]
enum First {
    Fine,
    /// Half the body, then the connection closes (Content-Length promised all of it).
    Truncate,
    /// The connection closes before any answer.
    Drop,
    /// Half the body, then silence until the test ends.
    Silent,
    /// Half the body, then waits for the gate.
    Gate,
}

struct Served {
    body: Vec<u8>,
    first: First,
    ranges: bool,
}

#[derive(Default)]
struct Log {
    /// Path and Range header of every request, in order.
    requests: Vec<(String, Option<String>)>,
}

struct Server {
    base: String,
    log: Arc<Mutex<Log>>,
    gate: crossbeam_channel::Sender<()>,
}

impl Server {
    fn start(files: HashMap<String, Served>) -> Server {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        let log = Arc::new(Mutex::new(Log::default()));
        let files = Arc::new(files);
        let (gate, gate_rx) = bounded::<()>(1);
        let (log2, files2) = (log.clone(), files.clone());
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let (log, files, gate_rx) = (log2.clone(), files2.clone(), gate_rx.clone());
                std::thread::spawn(move || serve(s, &files, &log, &gate_rx));
            }
        });
        Server { base, log, gate }
    }
    fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path)
    }
    fn requests(&self, path: &str) -> Vec<Option<String>> {
        let p = format!("/{path}");
        self.log
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|(q, _)| *q == p)
            .map(|(_, r)| r.clone())
            .collect()
    }
}

fn serve(s: TcpStream, files: &HashMap<String, Served>, log: &Mutex<Log>, gate: &Receiver<()>) {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    if r.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split(' ').nth(1).unwrap_or("/").to_string();
    let mut range = None;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_string());
            }
        }
    }
    let nth = {
        let mut l = log.lock().unwrap();
        l.requests.push((path.clone(), range.clone()));
        l.requests.iter().filter(|(p, _)| *p == path).count()
    };
    let mut s = s;
    let Some(f) = files.get(path.trim_start_matches('/')) else {
        let _ = s
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    let first = if nth == 1 { f.first } else { First::Fine };
    if first == First::Drop {
        return;
    }
    let len = f.body.len();
    let start = range.filter(|_| f.ranges).and_then(|r| {
        r.strip_prefix("bytes=")?
            .strip_suffix('-')?
            .parse::<usize>()
            .ok()
    });
    let head = match start {
        Some(st) if st >= len => {
            let _ = write!(s, "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            return;
        }
        Some(st) => format!("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {st}-{}/{len}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", len - 1, len - st),
        None => format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"),
    };
    let body = &f.body[start.unwrap_or(0)..];
    if s.write_all(head.as_bytes()).is_err() {
        return;
    }
    match first {
        First::Fine | First::Drop => {
            let _ = s.write_all(body);
        }
        First::Truncate => {
            let _ = s.write_all(&body[..body.len() / 2]);
        }
        First::Silent => {
            let _ = s.write_all(&body[..body.len() / 2]);
            let _ = gate.recv(); // until the server is dropped
        }
        First::Gate => {
            let _ = s.write_all(&body[..body.len() / 2]);
            let _ = s.flush();
            if gate.recv().is_ok() {
                let _ = s.write_all(&body[body.len() / 2..]);
            }
        }
    }
}

fn sha256(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// Everything the installer reported, once it is done.
fn drain(rx: &Receiver<Progress>) -> Vec<Progress> {
    rx.try_iter().collect()
}

struct Case {
    _dir: tempfile::TempDir,
    target: PathBuf,
}

fn case() -> Case {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("Fooocus");
    Case { _dir: dir, target }
}

fn request(c: &Case, platform: Platform, source: &str, sha: Option<String>) -> Request {
    Request {
        target: c.target.clone(),
        version: None,
        source: Some(Source::parse(source)),
        sha256: sha,
        platform: Some(platform),
    }
}

fn quick() -> DownloadOptions {
    DownloadOptions {
        connect_timeout: Duration::from_secs(5),
        body_budget: Duration::from_millis(800),
        attempts: 3,
    }
}

/// A Windows portable package made from the snapshot: python_embeded, Fooocus, run.bat.
fn portable_7z(dir: &Path) -> Vec<u8> {
    let src = dir.join("pkg").join("Fooocus_win64_2-5-0");
    let fooocus = src.join("Fooocus");
    std::fs::create_dir_all(src.join("python_embeded")).unwrap();
    std::fs::write(
        src.join("python_embeded").join("python.exe"),
        b"MZ stand-in",
    )
    .unwrap();
    std::fs::write(
        src.join("run.bat"),
        ".\\python_embeded\\python.exe -s Fooocus\\entry_with_update.py\r\npause\r\n",
    )
    .unwrap();
    let gz = flate2::read::GzDecoder::new(std::io::Cursor::new(snapshot_255()));
    let mut tar = tar::Archive::new(gz);
    for e in tar.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().into_owned();
        let rel: PathBuf = p.components().skip(1).collect();
        // Enough of Fooocus for the detector; the whole tree would make the 7z slow to build.
        let keep = [
            "entry_with_update.py",
            "launch.py",
            "fooocus_version.py",
            "webui.py",
            "args_manager.py",
        ];
        if keep.iter().any(|k| rel == Path::new(k)) || rel.starts_with("modules") {
            let out = fooocus.join(&rel);
            std::fs::create_dir_all(out.parent().unwrap()).unwrap();
            if e.header().entry_type().is_file() {
                e.unpack(&out).unwrap();
            }
        }
    }
    let out = dir.join("pkg.7z");
    // The package's own top folder is inside the archive, as upstream's is.
    sevenz_rust::compress_to_path(dir.join("pkg"), &out).unwrap();
    std::fs::read(out).unwrap()
}

#[test]
fn a_windows_package_is_downloaded_resumed_after_a_truncated_body_checked_and_detected() {
    let c = case();
    let work = tempfile::tempdir().unwrap();
    let body = portable_7z(work.path());
    let sha = sha256(&body);
    let mut files = HashMap::new();
    files.insert(
        "pkg.7z".to_string(),
        Served {
            body,
            first: First::Truncate,
            ranges: true,
        },
    );
    let srv = Server::start(files);
    let p = installer::plan(&request(
        &c,
        Platform::WindowsPortable,
        &srv.url("pkg.7z"),
        Some(sha),
    ))
    .unwrap();
    let (tx, rx) = bounded(1024);
    let opts = RunOptions {
        download: quick(),
        ..RunOptions::default()
    };
    let i = installer::run(&p, &opts, &tx, &AtomicBool::new(false)).unwrap();
    assert_eq!(i.kind, InstallKind::Portable);
    assert_eq!(i.version.as_deref(), Some("2.5.5"));
    assert_eq!(i.root, install::canonical(&c.target));
    // The second request asked for the rest only.
    let reqs = srv.requests("pkg.7z");
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert!(
        reqs[1]
            .as_deref()
            .is_some_and(|r| r.starts_with("bytes=") && r != "bytes=0-"),
        "{reqs:?}"
    );
    assert!(!p.staging.exists(), "the staging folder is removed");
    let ev = drain(&rx);
    assert!(ev.iter().any(|e| matches!(
        e,
        Progress::Phase {
            phase: Phase::Unpack,
            ..
        }
    )));
    assert!(ev.iter().any(|e| matches!(
        e,
        Progress::Bytes {
            phase: Phase::Download,
            total: Some(_),
            ..
        }
    )));
}

#[test]
fn a_wrong_checksum_is_refused_nothing_is_installed_and_retry_downloads_again() {
    let c = case();
    let body = snapshot_255();
    let mut files = HashMap::new();
    files.insert(
        "f.tar.gz".to_string(),
        Served {
            body: body.clone(),
            first: First::Fine,
            ranges: true,
        },
    );
    let srv = Server::start(files);
    let wrong = "0".repeat(64);
    let p = installer::plan(&request(
        &c,
        Platform::LinuxSource,
        &srv.url("f.tar.gz"),
        Some(wrong),
    ))
    .unwrap();
    let (tx, _rx) = bounded(1024);
    let opts = RunOptions {
        download: quick(),
        ..RunOptions::default()
    };
    let e = installer::run(&p, &opts, &tx, &AtomicBool::new(false)).unwrap_err();
    assert!(matches!(e, InstallerError::Checksum { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("Retry") && msg.contains(&sha256(&body)),
        "{msg}"
    );
    assert!(!c.target.exists());
    assert!(install::detect(&[c.target.clone(), p.staging.clone()]).is_empty());
    // The bad file is gone: a retry starts the download over.
    assert!(!installer::finished_phases(&p).contains(&Phase::Download));
}

#[test]
fn a_dropped_connection_and_a_server_without_ranges_still_download() {
    let c = case();
    let body = snapshot_255();
    let sha = sha256(&body);
    let mut files = HashMap::new();
    files.insert(
        "f.tar.gz".to_string(),
        Served {
            body,
            first: First::Drop,
            ranges: false,
        },
    );
    let srv = Server::start(files);
    let p = installer::plan(&request(
        &c,
        Platform::LinuxSource,
        &srv.url("f.tar.gz"),
        Some(sha),
    ))
    .unwrap();
    let opts = RunOptions {
        download: quick(),
        ..RunOptions::default()
    };
    // Stop before the Python phases: this test is about the download.
    let e = run_until(&p, &opts, Phase::Environment);
    assert!(matches!(e, InstallerError::Cancelled), "{e}");
    assert!(installer::finished_phases(&p).contains(&Phase::Unpack));
    assert_eq!(srv.requests("f.tar.gz").len(), 2);
}

/// Run on a thread, calling `on` with each report; returns the outcome and every report.
fn run_with(
    p: &installer::Plan,
    opts: &RunOptions,
    cancel: &AtomicBool,
    mut on: impl FnMut(&Progress),
) -> (Result<install::Install, InstallerError>, Vec<Progress>) {
    let (tx, rx) = bounded(64);
    std::thread::scope(|s| {
        let h = s.spawn(move || installer::run(p, opts, &tx, cancel));
        let mut seen = Vec::new();
        for ev in rx.iter() {
            on(&ev);
            seen.push(ev);
        }
        (h.join().unwrap(), seen)
    })
}

/// Run until `phase` begins, then cancel.
fn run_until(p: &installer::Plan, opts: &RunOptions, phase: Phase) -> InstallerError {
    let cancel = AtomicBool::new(false);
    run_with(p, opts, &cancel, |ev| {
        if matches!(ev, Progress::Phase { phase: q, .. } if *q == phase) {
            cancel.store(true, Ordering::SeqCst);
        }
    })
    .0
    .map(|_| ())
    .unwrap_err()
}

#[test]
fn a_silent_connection_is_resumed_after_the_body_budget() {
    let c = case();
    let body = snapshot_255();
    let sha = sha256(&body);
    let mut files = HashMap::new();
    files.insert(
        "f.tar.gz".to_string(),
        Served {
            body,
            first: First::Silent,
            ranges: true,
        },
    );
    let srv = Server::start(files);
    let p = installer::plan(&request(
        &c,
        Platform::LinuxSource,
        &srv.url("f.tar.gz"),
        Some(sha),
    ))
    .unwrap();
    let opts = RunOptions {
        download: quick(),
        ..RunOptions::default()
    };
    let e = run_until(&p, &opts, Phase::Unpack);
    assert!(matches!(e, InstallerError::Cancelled), "{e}");
    assert!(installer::finished_phases(&p).contains(&Phase::Verify));
    let reqs = srv.requests("f.tar.gz");
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert!(reqs[1].is_some());
}

#[test]
fn cancel_mid_download_leaves_no_install_and_the_retry_resumes_from_the_last_byte() {
    let c = case();
    let body = snapshot_255();
    let sha = sha256(&body);
    let mut files = HashMap::new();
    files.insert(
        "f.tar.gz".to_string(),
        Served {
            body,
            first: First::Gate,
            ranges: true,
        },
    );
    let srv = Server::start(files);
    let p = installer::plan(&request(
        &c,
        Platform::LinuxSource,
        &srv.url("f.tar.gz"),
        Some(sha),
    ))
    .unwrap();
    let opts = RunOptions {
        download: DownloadOptions {
            body_budget: Duration::from_secs(60),
            ..quick()
        },
        ..RunOptions::default()
    };
    let cancel = AtomicBool::new(false);
    let mut fired = false;
    let (r, _) = run_with(&p, &opts, &cancel, |ev| {
        if !fired
            && matches!(
                ev,
                Progress::Bytes {
                    phase: Phase::Download,
                    ..
                }
            )
        {
            // Cancel while the server holds the second half back, then let it come: the
            // installer stops at its next read.
            fired = true;
            cancel.store(true, Ordering::SeqCst);
            srv.gate.send(()).unwrap();
        }
    });
    let e = r.unwrap_err();
    assert!(matches!(e, InstallerError::Cancelled), "{e}");
    assert!(e.to_string().contains("resumes"), "{e}");
    assert!(!c.target.exists(), "nothing at the target");
    // Neither the target nor anything beside it is taken for an install.
    let parent = c.target.parent().unwrap();
    let beside: Vec<PathBuf> = std::fs::read_dir(parent)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(install::detect(&beside).is_empty(), "{beside:?}");
    let part = std::fs::read_dir(p.staging.join("download"))
        .unwrap()
        .flatten()
        .next()
        .unwrap();
    let have = part.metadata().unwrap().len();
    assert!(have > 0);

    // Retry: the rest only, then unpacked (cancelled before Python).
    let e = run_until(&p, &opts, Phase::Environment);
    assert!(matches!(e, InstallerError::Cancelled), "{e}");
    let reqs = srv.requests("f.tar.gz");
    assert_eq!(
        reqs.last().unwrap().as_deref(),
        Some(format!("bytes={have}-").as_str()),
        "{reqs:?}"
    );
    assert!(installer::finished_phases(&p).contains(&Phase::Unpack));
    installer::discard(&p).unwrap();
    assert!(!p.staging.exists());
}

fn tx_dummy() -> crossbeam_channel::Sender<Progress> {
    bounded(1).0
}

#[test]
fn an_http_error_and_no_space_name_the_fix() {
    let c = case();
    let srv = Server::start(HashMap::new());
    let p = installer::plan(&request(
        &c,
        Platform::LinuxSource,
        &srv.url("nope.tar.gz"),
        None,
    ))
    .unwrap();
    let e = installer::run(
        &p,
        &RunOptions {
            download: quick(),
            ..RunOptions::default()
        },
        &tx_dummy(),
        &AtomicBool::new(false),
    )
    .unwrap_err();
    let m = e.to_string();
    assert!(m.contains("404") && m.contains("check the address"), "{m}");

    let mut p = p;
    p.disk_needed_bytes = u64::MAX / 2;
    let m = installer::preflight(&p).unwrap_err().to_string();
    assert!(
        m.contains("not enough free space") && m.contains("another disk"),
        "{m}"
    );

    std::fs::create_dir_all(c.target.join("something")).unwrap();
    let m = installer::preflight(&p).unwrap_err().to_string();
    assert!(m.contains("not empty"), "{m}");
}

#[test]
fn no_network_names_the_fix() {
    let c = case();
    // A port nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = installer::plan(&request(
        &c,
        Platform::LinuxSource,
        &format!("http://127.0.0.1:{port}/f.tar.gz"),
        None,
    ))
    .unwrap();
    let e = installer::run(
        &p,
        &RunOptions {
            download: quick(),
            ..RunOptions::default()
        },
        &tx_dummy(),
        &AtomicBool::new(false),
    )
    .unwrap_err();
    let m = e.to_string();
    assert!(
        matches!(e, InstallerError::Network { .. }) && m.contains("internet connection"),
        "{m}"
    );
}

/// The whole Linux path: download, unpack, a real venv, torch and the requirements from a
/// wheelhouse of stand-ins, renamed into place, detected as a venv install; a pip failure on
/// the way, and the retry that resumes from it.
#[test]
fn a_linux_install_makes_a_venv_and_installs_the_requirements_offline() {
    let c = case();
    let body = snapshot_255();
    let sha = sha256(&body);
    let mut files = HashMap::new();
    files.insert(
        "fooocus-2.5.5.tar.gz".to_string(),
        Served {
            body,
            first: First::Fine,
            ranges: true,
        },
    );
    let srv = Server::start(files);
    let wheels = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let gz = flate2::read::GzDecoder::new(std::io::Cursor::new(snapshot_255()));
    tar::Archive::new(gz).unpack(work.path()).unwrap();
    let reqs = work
        .path()
        .join("fooocus-2.5.5")
        .join("requirements_versions.txt");
    let maker =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/install/make_wheelhouse.py");
    let st = std::process::Command::new("python3")
        .arg(&maker)
        .arg(wheels.path())
        .arg(&reqs)
        .args(["torch==2.1.0", "torchvision==0.16.0"])
        .status()
        .unwrap();
    assert!(st.success());
    let p = installer::plan(&request(
        &c,
        Platform::LinuxSource,
        &srv.url("fooocus-2.5.5.tar.gz"),
        Some(sha),
    ))
    .unwrap();

    // First without the packages: pip fails, naming the package and the retry.
    let empty = tempfile::tempdir().unwrap();
    let offline = |dir: &Path| RunOptions {
        download: quick(),
        torch_index: TorchIndex::Cpu,
        python: None,
        pip_env: vec![
            ("PIP_NO_INDEX".into(), "1".into()),
            ("PIP_FIND_LINKS".into(), dir.display().to_string()),
        ],
    };
    let (r, _) = run_with(&p, &offline(empty.path()), &AtomicBool::new(false), |_| {});
    let e = r.unwrap_err();
    let m = e.to_string();
    assert!(matches!(e, InstallerError::Pip { .. }), "{m}");
    assert!(
        m.contains("torch==2.1.0") && m.contains("Retry") && m.contains("install.log"),
        "{m}"
    );
    assert!(!c.target.exists());
    let done = installer::finished_phases(&p);
    assert!(
        done.contains(&Phase::Environment) && !done.contains(&Phase::Torch),
        "{done:?}"
    );

    // The retry resumes at pip: the archive is not fetched again, the venv not made again.
    let opts = RunOptions {
        download: quick(),
        torch_index: TorchIndex::Cpu,
        python: None,
        pip_env: vec![
            ("PIP_NO_INDEX".into(), "1".into()),
            ("PIP_FIND_LINKS".into(), wheels.path().display().to_string()),
        ],
    };
    let (i, events) = run_with(&p, &opts, &AtomicBool::new(false), |_| {});
    let i = i.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(i.kind, InstallKind::Venv);
    assert_eq!(i.version.as_deref(), Some("2.5.5"));
    assert!(i
        .python
        .starts_with(install::canonical(&c.target).join("fooocus_env")));
    // pip saw the wheelhouse, and its output reached the channel and the log.
    let logs: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Progress::Log { line } => Some(line.as_str()),
            _ => None,
        })
        .collect();
    assert!(
        logs.iter()
            .any(|l| l.contains("Successfully installed") && l.contains("gradio-3.41.2")),
        "{logs:?}"
    );
    assert!(logs.iter().any(|l| l.contains("torch-2.1.0")), "{logs:?}");
    let log = std::fs::read_to_string(c.target.join("fooocus-guard-install.log")).unwrap();
    assert!(log.contains("Successfully installed"));
    // The moved venv works: its python runs and sees what pip installed.
    let out = std::process::Command::new(&i.python)
        .args(["-m", "pip", "show", "gradio"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("Version: 3.41.2"));
    let phases: Vec<Phase> = events
        .iter()
        .filter_map(|e| match e {
            Progress::Phase { phase, .. } => Some(*phase),
            _ => None,
        })
        .collect();
    assert_eq!(
        phases,
        vec![Phase::Torch, Phase::Requirements, Phase::Finish]
    );
    assert_eq!(srv.requests("fooocus-2.5.5.tar.gz").len(), 1);
}
