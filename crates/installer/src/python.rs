//! The Linux install's Python: a venv (`fooocus_env`, where the detector looks) made with
//! Python 3.10 or 3.11, torch from the index that matches the GPU, then Fooocus's pinned
//! requirements. pip's output goes to the install log and the progress channel line by line;
//! pip honours the usual `PIP_*` environment (an offline wheelhouse: `PIP_NO_INDEX=1`,
//! `PIP_FIND_LINKS=DIR`).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{InstallerError, Reporter};

/// Which torch build to install, from the GPU the sampler saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum TorchIndex {
    Cuda,
    Rocm,
    Cpu,
}

impl TorchIndex {
    /// From the sampler's GPU names: NVIDIA through NVML, AMD through amdgpu ("AMD GPU ...").
    pub fn from_gpu_names(names: &[String]) -> TorchIndex {
        if names.iter().any(|n| !n.starts_with("AMD GPU")) {
            TorchIndex::Cuda
        } else if !names.is_empty() {
            TorchIndex::Rocm
        } else {
            TorchIndex::Cpu
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            TorchIndex::Cuda => "CUDA (NVIDIA)",
            TorchIndex::Rocm => "ROCm (AMD)",
            TorchIndex::Cpu => "CPU only",
        }
    }

    pub fn url(self) -> String {
        // Fooocus's launch.py honours TORCH_INDEX_URL; so does the guard.
        if let Some(u) = std::env::var_os("TORCH_INDEX_URL") {
            return u.to_string_lossy().into_owned();
        }
        match self {
            TorchIndex::Cuda => "https://download.pytorch.org/whl/cu121",
            TorchIndex::Rocm => "https://download.pytorch.org/whl/rocm5.6",
            TorchIndex::Cpu => "https://download.pytorch.org/whl/cpu",
        }
        .to_string()
    }

    /// An extra index: its local versions (`2.1.0+cpu`) rank above PyPI's for the same pin.
    pub(crate) fn pip_args(self) -> Vec<String> {
        vec!["--extra-index-url".into(), self.url()]
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PythonInfo {
    pub path: PathBuf,
    pub version: (u32, u32),
}

impl PythonInfo {
    pub(crate) fn note(&self) -> String {
        let (a, b) = self.version;
        let why = if self.version == (3, 10) {
            "the version Fooocus is made for"
        } else {
            "Fooocus is made for 3.10; 3.11 runs its pinned packages too"
        };
        format!("Python {a}.{b} ({}): {why}", self.path.display())
    }
}

fn probe(cmd: &Path) -> Option<PythonInfo> {
    let out = Command::new(cmd)
        .args([
            "-c",
            "import sys; print('%d %d' % sys.version_info[:2]); print(sys.executable)",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let mut v = lines.next()?.split(' ').map(|p| p.parse::<u32>().ok());
    let version = (v.next()??, v.next()??);
    let exe = lines
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| cmd.to_path_buf());
    Some(PythonInfo { path: exe, version })
}

/// Python 3.10, else 3.11 (Fooocus pins torch 2.1.0, which has no wheels for 3.12 and later).
pub fn find_python(chosen: Option<&Path>) -> Result<PythonInfo, InstallerError> {
    let candidates: Vec<PathBuf> = match chosen {
        Some(p) => vec![p.to_path_buf()],
        None => ["python3.10", "python3.11", "python3", "python"]
            .iter()
            .map(PathBuf::from)
            .collect(),
    };
    let mut seen = Vec::new();
    for c in &candidates {
        if let Some(info) = probe(c) {
            if matches!(info.version, (3, 10) | (3, 11)) {
                return Ok(info);
            }
            seen.push(format!(
                "{} is Python {}.{}",
                c.display(),
                info.version.0,
                info.version.1
            ));
        }
    }
    let found = if seen.is_empty() {
        "no Python 3 was found".to_string()
    } else {
        seen.join(", ")
    };
    Err(InstallerError::Python(format!(
        "Fooocus needs Python 3.10 or 3.11 ({found}; its torch 2.1.0 exists for no other). Install one -- Debian/Ubuntu: sudo apt install python3.11 python3.11-venv (or python3.10 python3.10-venv from the deadsnakes PPA on Ubuntu 24.04); Fedora: sudo dnf install python3.11 -- then Retry"
    )))
}

pub fn venv_python(venv: &Path) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts").join("python.exe")
    } else {
        venv.join("bin").join("python")
    }
}

pub(crate) fn make_venv(
    py: &PythonInfo,
    venv: &Path,
    rep: &mut Reporter,
) -> Result<(), InstallerError> {
    if venv.exists() {
        std::fs::remove_dir_all(venv).map_err(|e| InstallerError::io("clear", venv, e))?;
    }
    let mut child = Command::new(&py.path)
        .arg("-m")
        .arg("venv")
        .arg(venv)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| InstallerError::Python(format!("could not run {}: {e}", py.path.display())))?;
    // Polled so a cancel stops it (its output is a few lines: the pipes never fill).
    loop {
        if rep.is_cancelled() {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(venv);
            return Err(InstallerError::Cancelled);
        }
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => {
                return Err(InstallerError::Python(format!(
                    "{}: {e}",
                    py.path.display()
                )))
            }
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| InstallerError::Python(format!("{}: {e}", py.path.display())))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for l in text.lines() {
        rep.line(l);
    }
    if out.status.success() && venv_python(venv).exists() {
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(venv);
    let (a, b) = py.version;
    if text.contains("ensurepip") || text.contains("No module named venv") {
        return Err(InstallerError::Python(format!(
            "Python {a}.{b} cannot make a virtual environment: its venv module is missing. Install it (Debian/Ubuntu: sudo apt install python{a}.{b}-venv), then Retry"
        )));
    }
    Err(InstallerError::Python(format!(
        "Python {a}.{b} could not make the virtual environment in {}: {}. Check that the folder is writable, then Retry",
        venv.display(),
        text.lines().last().unwrap_or("no output")
    )))
}

/// What went wrong, from pip's last lines, in the user's words with the fix.
pub(crate) fn classify(tail: &[String]) -> String {
    let has = |needle: &str| tail.iter().any(|l| l.contains(needle));
    if has("No space left on device") {
        "the disk is full: free some space".into()
    } else if has("Failed to establish a new connection")
        || has("Temporary failure in name resolution")
        || has("Network is unreachable")
        || has("Read timed out")
        || has("ConnectionResetError")
    {
        "it could not reach the package index: check the internet connection (or PIP_INDEX_URL / a proxy)".into()
    } else if has("ResolutionImpossible")
        || has("conflicting dependencies")
        || has("versions have conflicting")
    {
        "two packages need versions of a third that cannot go together (a pip conflict): the pins of this Fooocus version do not install on this machine; try another version, or read the log".into()
    } else if has("No matching distribution found")
        || has("Could not find a version that satisfies")
    {
        let what = tail
            .iter()
            .rev()
            .find(|l| l.contains("No matching distribution found for"))
            .and_then(|l| l.split("found for").nth(1))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "a package".into());
        format!("{what} is not available for this Python and machine (or the index is unreachable): check the connection; with an offline wheelhouse (PIP_FIND_LINKS), add it there")
    } else if has("error: subprocess-exited-with-error") || has("Failed building wheel") {
        "a package had to be built from source and its build failed: install the build tools (Debian/Ubuntu: sudo apt install build-essential python3-dev)".into()
    } else {
        tail.iter()
            .rev()
            .find(|l| l.contains("ERROR") || l.contains("Error"))
            .cloned()
            .unwrap_or_else(|| "see the log".into())
    }
}

/// Run `python -m pip ARGS` in `cwd`, streaming its output; killed on cancel.
pub(crate) fn pip(
    python: &Path,
    cwd: &Path,
    args: &[String],
    what: &str,
    env: &[(String, String)],
    log: &Path,
    rep: &mut Reporter,
) -> Result<(), InstallerError> {
    let mut cmd = Command::new(python);
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd.arg("-m").arg("pip");
    cmd.args(args);
    if args.first().map(String::as_str) == Some("install") {
        cmd.args(["--progress-bar", "off"]);
    }
    cmd.arg("--disable-pip-version-check")
        .current_dir(cwd)
        .env("PYTHONUNBUFFERED", "1")
        .env("PIP_NO_INPUT", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    rep.line(&format!("$ python -m pip {}", args.join(" ")));
    let mut child = cmd
        .spawn()
        .map_err(|e| InstallerError::Python(format!("could not run {}: {e}", python.display())))?;
    let (tx, rx) = crossbeam_channel::bounded::<String>(256);
    let pump = |r: Box<dyn Read + Send>, tx: crossbeam_channel::Sender<String>| {
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        })
    };
    let t1 = pump(Box::new(child.stdout.take().expect("piped")), tx.clone());
    let t2 = pump(Box::new(child.stderr.take().expect("piped")), tx);
    let mut tail: VecDeque<String> = VecDeque::new();
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                rep.line(&line);
                if tail.len() == 40 {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
        }
        if rep.is_cancelled() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(InstallerError::Cancelled);
        }
    }
    let _ = (t1.join(), t2.join());
    let status = child
        .wait()
        .map_err(|e| InstallerError::Python(format!("pip: {e}")))?;
    if status.success() {
        return Ok(());
    }
    let tail: Vec<String> = tail.into();
    Err(InstallerError::Pip {
        what: what.to_string(),
        code: status
            .code()
            .map(|c| c.to_string())
            .unwrap_or_else(|| "by a signal".into()),
        why: classify(&tail),
        log: log.display().to_string(),
    })
}

/// After the venv moved from `from` to `to` (the install is made in staging, then renamed into
/// place): its scripts still name `from` (pip's and the other entry points' `#!` lines, the
/// activate scripts, pyvenv.cfg), so `fooocus_env/bin/pip` would run a python that is gone.
/// Rewrites those text files; binaries are left alone. Returns how many files it rewrote.
pub fn relocate_venv(from: &Path, to: &Path) -> std::io::Result<usize> {
    let (old, new) = (from.to_string_lossy(), to.to_string_lossy());
    let mut files: Vec<PathBuf> = vec![to.join("pyvenv.cfg")];
    for dir in ["bin", "Scripts"] {
        if let Ok(entries) = std::fs::read_dir(to.join(dir)) {
            files.extend(entries.flatten().map(|e| e.path()));
        }
    }
    let mut rewritten = 0;
    for f in files {
        let Ok(meta) = std::fs::symlink_metadata(&f) else {
            continue;
        };
        // Scripts are small; a large file here is a binary (a copied interpreter).
        if !meta.is_file() || meta.len() > 1 << 20 {
            continue;
        }
        let bytes = std::fs::read(&f)?;
        let script = bytes.starts_with(b"#!")
            || f.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("activate") || n == "pyvenv.cfg");
        let Ok(text) = String::from_utf8(bytes) else {
            continue;
        };
        if script && text.contains(old.as_ref()) {
            let tmp = f.with_extension("relocating");
            // Made fresh: never written through a link of that name.
            std::io::Write::write_all(
                &mut super::safety::create_fresh(&tmp)?,
                text.replace(old.as_ref(), new.as_ref()).as_bytes(),
            )?;
            std::fs::set_permissions(&tmp, meta.permissions())?;
            std::fs::rename(&tmp, &f)?;
            rewritten += 1;
        }
    }
    Ok(rewritten)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_torch_build_follows_the_gpu() {
        assert_eq!(TorchIndex::from_gpu_names(&[]), TorchIndex::Cpu);
        assert_eq!(
            TorchIndex::from_gpu_names(&["AMD GPU (card0)".into()]),
            TorchIndex::Rocm
        );
        assert_eq!(
            TorchIndex::from_gpu_names(&["NVIDIA GeForce RTX 3060".into()]),
            TorchIndex::Cuda
        );
    }

    #[test]
    fn pip_failures_name_the_fix() {
        let t = |s: &str| classify(&s.lines().map(String::from).collect::<Vec<_>>());
        assert!(t("ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device").contains("disk is full"));
        assert!(
            t("WARNING: Retrying ... Failed to establish a new connection: [Errno 111]")
                .contains("internet connection")
        );
        assert!(t("ERROR: Cannot install a and b because these package versions have conflicting dependencies.\nERROR: ResolutionImpossible").contains("conflict"));
        let m = t("ERROR: Could not find a version that satisfies the requirement torch==2.1.0\nERROR: No matching distribution found for torch==2.1.0");
        assert!(
            m.contains("torch==2.1.0") && m.contains("PIP_FIND_LINKS"),
            "{m}"
        );
    }
}
