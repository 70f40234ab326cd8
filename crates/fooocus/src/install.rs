//! Finding a Fooocus install and turning it into the exact argv that starts it.
//!
//! Layouts (see shared/fooocus.md): the Windows portable package (`python_embeded/python.exe`
//! beside `Fooocus/`), a Fooocus folder with a venv (`fooocus_env`, `venv`, `.venv`) or a conda
//! env named `fooocus`, Fooocus-API (`main.py` + `fooocus_api_version.py`), or any of these with
//! an interpreter the user names.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::options::LaunchOptions;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum InstallKind {
    Portable,
    Venv,
    Conda,
    Interpreter,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "kebab-case")]
pub enum Fork {
    Fooocus,
    Mashb1t,
    Mre,
    FooocusApi,
}

impl Fork {
    /// Whether the Gradio stop function stops any session's task (2.1.865 and older, MRE).
    pub fn global_stop(self, version: Option<&str>) -> bool {
        match self {
            Fork::Mre => true,
            Fork::FooocusApi => false,
            Fork::Fooocus | Fork::Mashb1t => {
                version.map(|v| version_le(v, "2.1.865")).unwrap_or(false)
            }
        }
    }
}

/// A detected install, as shown to the user (docs/ipc.md `InstallInfo`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[cfg_attr(feature = "ts", ts(rename = "InstallInfo"))]
pub struct Install {
    pub root: PathBuf,
    pub kind: InstallKind,
    pub python: PathBuf,
    pub fooocus_dir: PathBuf,
    /// The script the interpreter runs (entry_with_update.py, or main.py for Fooocus-API).
    pub entry: PathBuf,
    pub version: Option<String>,
    pub fork: Fork,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InstallError {
    #[error(
        "{0} does not exist: pick the folder that holds Fooocus (or the portable package's folder)"
    )]
    Missing(String),
    #[error("{path} is not a Fooocus install: {missing}. Pick the Fooocus folder (with entry_with_update.py) or the portable package's folder (with python_embeded and Fooocus)")]
    NotAnInstall { path: String, missing: String },
    #[error("found {what} at {path}, but no Python environment for it: expected fooocus_env, venv or .venv in that folder, or a conda env named fooocus. Create one, or name the interpreter (--python / the python setting)")]
    NoInterpreter { path: String, what: String },
    #[error("the interpreter {0} does not exist: fix the python setting or leave it unset to use the install's own")]
    BadInterpreter(String),
    #[error("{path} is {what}, which Fooocus Guard does not support: its options and its web UI's queue differ from Fooocus's. Pick a Fooocus, Fooocus-MRE or Fooocus-API install")]
    Unsupported { path: String, what: String },
}

/// A launch option the install's own argument parser does not have: Fooocus would exit with
/// code 2 before printing anything useful, so the guard refuses before launching.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{option}: {install} has no such option ({why}). {fix}")]
pub struct OptionError {
    /// The settings field, e.g. `launch.preset`.
    pub field: &'static str,
    /// The flag as Fooocus would have received it.
    pub option: String,
    pub install: String,
    pub why: String,
    pub fix: String,
}

fn exe(dir: &Path) -> PathBuf {
    if cfg!(windows) {
        dir.join("Scripts").join("python.exe")
    } else {
        dir.join("bin").join("python")
    }
}

fn conda_env_python_path(env: &Path) -> PathBuf {
    if cfg!(windows) {
        env.join("python.exe")
    } else {
        env.join("bin").join("python")
    }
}

fn conda_env_python(env: &Path) -> Option<PathBuf> {
    let py = conda_env_python_path(env);
    (env.join("conda-meta").is_dir() && py.exists()).then_some(py)
}

/// The absolute, resolved path, in the form users know: on Windows `canonicalize` answers
/// `\\?\C:\...`, which shows badly and which some Python tools refuse as a working directory.
pub fn canonical(path: &Path) -> PathBuf {
    let Ok(p) = fs::canonicalize(path) else {
        return path.to_path_buf();
    };
    #[cfg(windows)]
    {
        let s = p.to_string_lossy();
        if let Some(rest) = s.strip_prefix(r"\\?\") {
            // Only drive paths: `\\?\UNC\...` keeps its prefix.
            if rest.as_bytes().get(1) == Some(&b':') {
                return PathBuf::from(rest);
            }
        }
    }
    p
}

/// Conda envs named `name` in the usual places, and beside the install (`../envs/NAME`).
/// Fooocus's environment.yaml names its env `fooocus`, Fooocus-API's `fooocus-api`.
fn conda_candidates(fooocus_dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(parent) = fooocus_dir.parent() {
        v.push(parent.join("envs").join(name));
    }
    if let Some(p) = std::env::var_os("CONDA_PREFIX") {
        let p = PathBuf::from(p);
        v.push(p.join("envs").join(name));
        if p.file_name().is_some_and(|n| n == name) {
            v.push(p);
        }
    }
    if let Some(home) = directories::BaseDirs::new().map(|b| b.home_dir().to_path_buf()) {
        for base in [
            "miniconda3",
            "anaconda3",
            "miniforge3",
            "mambaforge",
            ".conda",
        ] {
            v.push(home.join(base).join("envs").join(name));
        }
    }
    v
}

/// Read `version = '2.5.5'` from fooocus_version.py (or fooocus_api_version.py).
pub fn read_version(file: &Path) -> Option<String> {
    let text = fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let l = l.trim();
        let rest = l
            .strip_prefix("version")?
            .trim_start()
            .strip_prefix('=')?
            .trim();
        let q = rest.chars().next().filter(|c| *c == '\'' || *c == '"')?;
        let inner = &rest[1..];
        Some(inner[..inner.find(q)?].to_string())
    })
}

fn fork_of(version_text: &str) -> Fork {
    if version_text.contains("MRE") {
        Fork::Mre
    } else if version_text.to_ascii_lowercase().contains("mashb1t") {
        Fork::Mashb1t
    } else {
        Fork::Fooocus
    }
}

/// Inspect one folder. `python` is an interpreter the user named (overrides detection).
pub fn inspect(path: &Path, python: Option<&Path>) -> Result<Install, InstallError> {
    if !path.exists() {
        return Err(InstallError::Missing(path.display().to_string()));
    }
    let root = canonical(path);
    if !root.is_dir() {
        return Err(InstallError::NotAnInstall {
            path: root.display().to_string(),
            missing: "it is a file, not a folder".into(),
        });
    }
    // Picked the Fooocus folder inside a portable package: use the package.
    if root.join("entry_with_update.py").is_file() {
        if let Some(parent) = root.parent() {
            if parent.join("python_embeded").join("python.exe").is_file() && python.is_none() {
                return inspect(parent, None);
            }
        }
    }

    let (kind, fooocus_dir, embedded) = if root.join("python_embeded").join("python.exe").is_file()
    {
        let fd = root.join("Fooocus");
        if !fd.join("entry_with_update.py").is_file() {
            return Err(InstallError::NotAnInstall {
                path: root.display().to_string(),
                missing: "it has python_embeded but no Fooocus/entry_with_update.py (the Fooocus folder is missing or incomplete)".into(),
            });
        }
        (
            InstallKind::Portable,
            fd,
            Some(root.join("python_embeded").join("python.exe")),
        )
    } else if root.join("entry_with_update.py").is_file()
        || root.join("fooocus_api_version.py").is_file()
    {
        (InstallKind::Venv, root.clone(), None)
    } else {
        let missing = if root.join("webui.py").is_file() {
            "it has webui.py but no entry_with_update.py (an incomplete or very old Fooocus)"
                .to_string()
        } else {
            "it has no entry_with_update.py and no python_embeded folder".to_string()
        };
        return Err(InstallError::NotAnInstall {
            path: root.display().to_string(),
            missing,
        });
    };

    let api = fooocus_dir.join("fooocus_api_version.py").is_file()
        && fooocus_dir.join("main.py").is_file();
    // RuinedFooocus has Fooocus's entry_with_update.py but its own version.py and argument
    // parser (--nobrowser, strict), and a Gradio whose queue the gateway cannot follow.
    if !api
        && !fooocus_dir.join("fooocus_version.py").is_file()
        && (fooocus_dir.join("version.py").is_file() || fooocus_dir.join("argparser.py").is_file())
    {
        let v = read_version(&fooocus_dir.join("version.py"));
        return Err(InstallError::Unsupported {
            path: root.display().to_string(),
            what: match v {
                Some(v) => format!("RuinedFooocus {v}"),
                None => "RuinedFooocus".into(),
            },
        });
    }
    let (version, fork) = if api {
        (
            read_version(&fooocus_dir.join("fooocus_api_version.py")),
            Fork::FooocusApi,
        )
    } else {
        let vf = fooocus_dir.join("fooocus_version.py");
        let text = fs::read_to_string(&vf).unwrap_or_default();
        (read_version(&vf), fork_of(&text))
    };
    let entry = if api {
        fooocus_dir.join("main.py")
    } else {
        fooocus_dir.join("entry_with_update.py")
    };
    let conda_name = if api { "fooocus-api" } else { "fooocus" };
    let what = match (&version, fork) {
        (Some(v), Fork::FooocusApi) => format!("Fooocus-API {v}"),
        (Some(v), _) => format!("Fooocus {v}"),
        (None, _) => "Fooocus".to_string(),
    };

    let (kind, python) = if let Some(p) = python {
        if !p.exists() {
            return Err(InstallError::BadInterpreter(p.display().to_string()));
        }
        (InstallKind::Interpreter, p.to_path_buf())
    } else if let Some(e) = embedded {
        (kind, e)
    } else if let Some(py) = ["fooocus_env", "venv", ".venv"]
        .iter()
        .map(|d| exe(&fooocus_dir.join(d)))
        .find(|p| p.exists())
    {
        (InstallKind::Venv, py)
    } else if let Some(py) = conda_candidates(&fooocus_dir, conda_name)
        .iter()
        .find_map(|e| conda_env_python(e))
    {
        (InstallKind::Conda, py)
    } else {
        return Err(InstallError::NoInterpreter {
            path: root.display().to_string(),
            what,
        });
    };

    Ok(Install {
        root,
        kind,
        python,
        fooocus_dir,
        entry,
        version,
        fork,
    })
}

/// Where installs usually are: the user's home, Downloads, Desktop, Documents (and drive roots
/// on Windows), one level deep, for folders whose name starts with "Fooocus".
pub fn usual_places() -> Vec<PathBuf> {
    let mut bases = Vec::new();
    if let Some(b) = directories::BaseDirs::new() {
        bases.push(b.home_dir().to_path_buf());
    }
    if let Some(u) = directories::UserDirs::new() {
        bases.extend(
            [u.download_dir(), u.desktop_dir(), u.document_dir()]
                .into_iter()
                .flatten()
                .map(Path::to_path_buf),
        );
    }
    if cfg!(windows) {
        for d in b'C'..=b'H' {
            bases.push(PathBuf::from(format!("{}:\\", d as char)));
        }
    }
    let mut out = Vec::new();
    for base in bases {
        let Ok(rd) = fs::read_dir(&base) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_ascii_lowercase();
            if name.starts_with("fooocus") && e.path().is_dir() {
                out.push(e.path());
            }
        }
    }
    out
}

/// Inspect each candidate (or the usual places when none is given); keep the installs.
pub fn detect(candidates: &[PathBuf]) -> Vec<Install> {
    let list = if candidates.is_empty() {
        usual_places()
    } else {
        candidates.to_vec()
    };
    let mut found: Vec<Install> = Vec::new();
    for c in list {
        if let Ok(i) = inspect(&c, None) {
            if !found.iter().any(|f| f.root == i.root) {
                found.push(i);
            }
        }
    }
    found
}

/// The exact command that starts an install: an argv array (never a shell), its working
/// directory and the environment Fooocus needs to print promptly and in UTF-8.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
}

impl LaunchCommand {
    pub fn argv_display(&self) -> Vec<String> {
        std::iter::once(self.program.display().to_string())
            .chain(self.args.iter().map(|a| a.to_string_lossy().into_owned()))
            .collect()
    }

    pub fn to_command(&self) -> std::process::Command {
        let mut c = std::process::Command::new(&self.program);
        c.args(&self.args).current_dir(&self.cwd);
        // Gradio's own settings of where to listen would put Fooocus's internal port on the
        // network past the gateway: Fooocus never inherits them.
        for (k, _) in std::env::vars_os() {
            let upper = k.to_string_lossy().to_ascii_uppercase();
            if GRADIO_LISTEN_VARS.iter().any(|p| upper.starts_with(p)) {
                c.env_remove(&k);
            }
        }
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// A plain command the user gave (`run -- COMMAND ARGS`).
    pub fn plain(program: impl Into<PathBuf>, args: Vec<OsString>) -> Self {
        let program: PathBuf = program.into();
        // A Python the user names runs Fooocus too: its browser stays out of the tree as well.
        let is_python = program
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.to_ascii_lowercase().starts_with("python"));
        let env = python_env(is_python.then_some(program.as_path()));
        LaunchCommand {
            program,
            args,
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            env,
        }
    }
}

/// Environment variables (by prefix) with which Gradio picks its address, port or a public link.
const GRADIO_LISTEN_VARS: [&str; 4] = [
    "GRADIO_SERVER_",
    "GRADIO_SHARE",
    "GRADIO_ROOT_PATH",
    "GRADIO_NODE_",
];

fn python_env(python: Option<&Path>) -> Vec<(String, String)> {
    let mut env = vec![
        ("PYTHONUNBUFFERED".into(), "1".into()),
        ("PYTHONIOENCODING".into(), "utf-8".into()),
    ];
    if let Some(b) = python.and_then(|p| no_browser(p, cfg!(windows))) {
        env.push(("BROWSER".into(), b));
    }
    env
}

/// The `BROWSER` Fooocus runs with, so that no browser is ever started inside its tree.
///
/// Fooocus 2.0.x to 2.1.825 and MRE always open a browser at start (Gradio's `inbrowser`, which
/// calls Python's `webbrowser`), and their parsers have no flag against it. A browser started so
/// is Fooocus's child: inside the contained tree, counted against the RAM cap, killed with
/// Fooocus. `webbrowser` runs the command in `BROWSER` first on every OS; it must succeed, or
/// `webbrowser` falls through to the system's browser. This one opens nothing: `python -I -c ""
/// URL`, with Fooocus's own interpreter, the one program sure to exist on every OS (it exits in
/// a few milliseconds). The user's browser is the guard's to open, from outside the tree.
///
/// `None` when the path holds the separator of `BROWSER`'s list (`;` on Windows, `:` elsewhere),
/// which no quoting escapes there.
pub fn no_browser(python: &Path, windows: bool) -> Option<String> {
    let path = python.to_str()?;
    if path.contains(if windows { ';' } else { ':' }) {
        return None;
    }
    // `webbrowser` splits a command holding %s as a POSIX shell would (shlex): inside single
    // quotes a Windows path's backslashes are kept; a quote closes, is escaped and reopens.
    let quoted = path.replace('\'', r"'\''");
    Some(format!("'{quoted}' -I -c '' %s"))
}

/// The port Fooocus itself listens on for `opts`, before any gateway moves it.
pub fn user_port(install: &Install, opts: &LaunchOptions) -> u16 {
    let _ = install;
    opts.port
}

/// Which argument parser an install has: the flags differ by version and fork, and every one
/// of these parsers is strict (an unknown flag exits with code 2). Read from upstream's own
/// parsers (shared/fooocus-fidelity.md, section C); tests/upstream runs each of them on the
/// argv built here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Flags {
    /// 2.0.0 to 2.1.29: webui.py's own parser: `--port`, `--share`, `--listen [IP]` only; the
    /// browser always opens.
    Webui,
    /// 2.1.30 to 2.1.825: the ComfyUI (fcbh) parser plus `--share`, `--preset` (2.1.57+): VRAM
    /// modes by ComfyUI's names; the browser is forced open.
    Comfy { preset: bool },
    /// 2.1.826 and later, mashb1t: ldm_patched's parser: `--disable-in-browser`, `--always-*`.
    Modern,
    /// Fooocus-MRE: ComfyUI's parser plus `--port`, `--share`, `--listen`; no preset.
    Mre,
    /// Fooocus-API: its own `--port`, `--host`, ... on top of the ldm_patched parser of the
    /// Fooocus it carries (fooocusapi/args.py), so the `--always-*` names and `--preset` too.
    Api,
}

impl Flags {
    pub fn of(fork: Fork, version: Option<&str>) -> Flags {
        match fork {
            Fork::Mre => Flags::Mre,
            Fork::FooocusApi => Flags::Api,
            Fork::Mashb1t => Flags::Modern,
            Fork::Fooocus => match version {
                // An unreadable version is most likely a recent one.
                None => Flags::Modern,
                Some(v) if !version_le("2.1.30", v) => Flags::Webui,
                Some(v) if version_le(v, "2.1.825") => Flags::Comfy {
                    preset: version_le("2.1.57", v),
                },
                Some(_) => Flags::Modern,
            },
        }
    }

    /// The flag for a VRAM mode of the settings (`always-low-vram`), if this parser has one.
    fn vram_flag(self, mode: &str) -> Option<&'static str> {
        let modern = [
            ("always-gpu", "--always-gpu"),
            ("always-high-vram", "--always-high-vram"),
            ("always-normal-vram", "--always-normal-vram"),
            ("always-low-vram", "--always-low-vram"),
            ("always-no-vram", "--always-no-vram"),
            ("always-cpu", "--always-cpu"),
        ];
        let comfy = [
            ("always-gpu", "--gpu-only"),
            ("always-high-vram", "--highvram"),
            ("always-normal-vram", "--normalvram"),
            ("always-low-vram", "--lowvram"),
            ("always-no-vram", "--novram"),
            ("always-cpu", "--cpu"),
        ];
        let table: &[(&str, &'static str)] = match self {
            Flags::Modern | Flags::Api => &modern,
            Flags::Comfy { .. } | Flags::Mre => &comfy,
            Flags::Webui => &[],
        };
        table.iter().find(|(m, _)| *m == mode).map(|(_, f)| *f)
    }

    /// Flags of this parser the guard sets itself; the user's extra flags and run.bat's may not
    /// repeat them (they would move Fooocus's port or address behind the guard's back).
    fn owned(self) -> &'static [&'static str] {
        match self {
            Flags::Api => &["--port", "--host"],
            _ => &[
                "--port",
                "--listen",
                "--share",
                "--disable-in-browser",
                "--in-browser",
            ],
        }
    }
}

impl Install {
    /// "Fooocus 2.1.679", "Fooocus-API 0.4.1.1", "Fooocus-MRE 2.0.78.5", as users know them.
    pub fn label(&self) -> String {
        let name = match self.fork {
            Fork::Fooocus | Fork::Mashb1t => "Fooocus",
            Fork::Mre => "Fooocus-MRE",
            Fork::FooocusApi => "Fooocus-API",
        };
        match &self.version {
            // MRE's own version string already says "MRE" ("2.0.78.5 MRE").
            Some(v) => format!("{name} {}", v.trim_end_matches(" MRE")),
            None => name.to_string(),
        }
    }

    pub fn flags(&self) -> Flags {
        Flags::of(self.fork, self.version.as_deref())
    }
}

/// Refuse the launch options this install's argument parser does not have, before launching:
/// Fooocus would otherwise exit with code 2 at once.
pub fn check_options(install: &Install, opts: &LaunchOptions) -> Result<(), OptionError> {
    let flags = install.flags();
    let refuse = |field, option: String, why: &str, fix: &str| OptionError {
        field,
        option,
        install: install.label(),
        why: why.into(),
        fix: fix.into(),
    };
    if let Some(p) = &opts.preset {
        let why = match flags {
            Flags::Webui => Some("presets arrived in Fooocus 2.1.57"),
            Flags::Comfy { preset: false } => Some("presets arrived in Fooocus 2.1.57"),
            Flags::Mre => Some("Fooocus-MRE has no presets"),
            _ => None,
        };
        if let Some(why) = why {
            return Err(refuse(
                "launch.preset",
                format!("--preset {p}"),
                why,
                "Clear the preset setting, or update Fooocus.",
            ));
        }
    }
    // The user's extra flags go to Fooocus as they are: one its parser lacks would make it
    // exit with code 2 before printing anything useful.
    if let Some(known) = known_options(install) {
        if let Some(bad) = opts
            .extra_args
            .iter()
            .find(|a| a.starts_with("--") && !parser_knows(&known, a))
        {
            return Err(refuse(
                "launch.extra_args",
                bad.clone(),
                "it would exit with code 2 at once",
                "Remove it from the extra flags, or update Fooocus.",
            ));
        }
    }
    if let Some(m) = &opts.vram_mode {
        if flags.vram_flag(m).is_none() {
            let why = match flags {
                Flags::Webui => "Fooocus before 2.1.30 chooses the VRAM mode itself",
                _ => "not a VRAM mode of this version",
            };
            return Err(refuse(
                "launch.vram_mode",
                format!("--{m}"),
                why,
                "Clear the VRAM mode setting, or update Fooocus.",
            ));
        }
    }
    Ok(())
}

/// Long options of each pinned upstream version's parser (see the file's header).
const UPSTREAM_FLAGS: &str = include_str!("upstream_flags.txt");

/// The options of the pinned upstream parser that tells whether `install` has an option: the
/// first pinned version of its fork at or after its own (an option a later version lacks did
/// not exist yet). None when the install is newer than every pinned version, or unknown.
fn known_options(install: &Install) -> Option<Vec<&'static str>> {
    let v = install.version.as_deref()?;
    let (prefix, bare) = match install.fork {
        Fork::Fooocus => ("", true),
        Fork::Mashb1t => ("mashb1t-", false),
        Fork::Mre => ("mre-", false),
        Fork::FooocusApi => ("api-", false),
    };
    UPSTREAM_FLAGS
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let key = words.next()?;
            let pinned = if bare {
                (key.starts_with(|c: char| c.is_ascii_digit())).then_some(key)?
            } else {
                key.strip_prefix(prefix)?
            };
            Some((pinned, words.collect::<Vec<_>>()))
        })
        .filter(|(pinned, _)| version_le(v.trim_end_matches(" MRE"), pinned))
        .min_by(|(a, _), (b, _)| {
            if version_le(a, b) {
                std::cmp::Ordering::Less
            } else {
                std::cmp::Ordering::Greater
            }
        })
        .map(|(_, flags)| flags)
}

/// Whether argparse takes `word` for one of `known`: the option itself, `--opt=value`, or an
/// unambiguous prefix of exactly one option (argparse's abbreviations).
fn parser_knows(known: &[&str], word: &str) -> bool {
    let name = word.split('=').next().unwrap_or(word);
    known.contains(&name) || known.iter().filter(|k| k.starts_with(name)).count() == 1
}

/// The flags after the script in the portable package's run.bat
/// (`.\python_embeded\python.exe -s Fooocus\entry_with_update.py --directml`): Fooocus's readme
/// tells AMD users to add `--directml` there, and many add a VRAM mode.
pub fn run_bat_flags(root: &Path) -> Vec<String> {
    let Ok(bytes) = fs::read(root.join("run.bat")) else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&bytes);
    for line in text.lines() {
        let words = split_bat_words(line);
        let Some(script) = words.iter().position(|w| {
            let w = w.to_ascii_lowercase();
            w.ends_with("entry_with_update.py") || w.ends_with("launch.py")
        }) else {
            continue;
        };
        if !words[..script]
            .iter()
            .any(|w| w.to_ascii_lowercase().ends_with("python.exe"))
        {
            continue;
        }
        return words[script + 1..].to_vec();
    }
    Vec::new()
}

/// cmd.exe's word splitting as far as a run.bat line needs it: blanks separate words, double
/// quotes group them and are removed.
fn split_bat_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    words.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        words.push(cur);
    }
    words
}

/// Drop the flags the guard owns (and their values) from `words`; say which were dropped.
fn without_owned(
    flags: Flags,
    words: Vec<String>,
    settings: &LaunchOptions,
) -> (Vec<String>, Vec<String>) {
    let mut keep = Vec::new();
    let mut dropped = Vec::new();
    let mut it = words.into_iter().peekable();
    while let Some(w) = it.next() {
        let name = w.split('=').next().unwrap_or(&w).to_string();
        let owned = flags.owned().contains(&name.as_str())
            || (name == "--preset" && settings.preset.is_some())
            || (settings.vram_mode.is_some() && is_vram_flag(&name));
        if owned {
            // The value that follows, if the flag takes one and it was not given with `=`.
            let takes_value = matches!(
                name.as_str(),
                "--port" | "--listen" | "--host" | "--preset" | "--always-cpu"
            );
            if takes_value && !w.contains('=') {
                if let Some(v) = it.peek() {
                    if !v.starts_with("--") {
                        it.next();
                    }
                }
            }
            dropped.push(name);
        } else {
            keep.push(w);
        }
    }
    (keep, dropped)
}

fn is_vram_flag(name: &str) -> bool {
    crate::options::VRAM_MODES
        .iter()
        .any(|m| name.strip_prefix("--") == Some(m))
        || matches!(
            name,
            "--gpu-only" | "--highvram" | "--normalvram" | "--lowvram" | "--novram" | "--cpu"
        )
}

/// The exact command that starts an install, with notes for the user about what of the
/// install's own launcher was left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    pub command: LaunchCommand,
    pub notes: Vec<String>,
}

/// Build the argv for `install` with the user's launch options. `port` is where Fooocus must
/// listen (the user's port, or an internal one behind the gateway). Options the install's
/// parser lacks are left out here; `check_options` refuses them before this is reached.
pub fn launch_command(install: &Install, opts: &LaunchOptions, port: u16) -> LaunchCommand {
    launch(install, opts, port).command
}

/// `launch_command` with its notes.
pub fn launch(install: &Install, opts: &LaunchOptions, port: u16) -> Launch {
    let flags = install.flags();
    let mut notes = Vec::new();
    let mut args: Vec<OsString> = Vec::new();
    if install.kind == InstallKind::Portable {
        args.push("-s".into()); // as run.bat does: ignore the user's site-packages
    }
    // entry_with_update.py hard-resets the Fooocus folder to upstream's head at every start;
    // launch.py starts the version the user has. Fooocus-API has only main.py.
    let launch_py = install.fooocus_dir.join("launch.py");
    let script = if install.fork != Fork::FooocusApi && !opts.auto_update && launch_py.is_file() {
        launch_py
    } else {
        install.entry.clone()
    };
    args.push(script.into_os_string());
    match flags {
        Flags::Api => {
            args.push("--port".into());
            args.push(port.to_string().into());
            if let Some(p) = &opts.preset {
                args.push("--preset".into());
                args.push(p.into());
            }
            if let Some(f) = opts.vram_mode.as_deref().and_then(|m| flags.vram_flag(m)) {
                args.push(f.into());
            }
            if let Some(l) = &opts.listen {
                args.push("--host".into());
                args.push(l.into());
            }
        }
        _ => {
            // Fooocus opens a browser itself otherwise; the guard opens it when the user asks.
            // Older parsers have no such flag (their browser always opens).
            if flags == Flags::Modern {
                args.push("--disable-in-browser".into());
            }
            args.push("--port".into());
            args.push(port.to_string().into());
            if let Some(p) = &opts.preset {
                if matches!(flags, Flags::Modern | Flags::Comfy { preset: true }) {
                    args.push("--preset".into());
                    args.push(p.into());
                }
            }
            if let Some(f) = opts.vram_mode.as_deref().and_then(|m| flags.vram_flag(m)) {
                args.push(f.into());
            }
            if let Some(l) = &opts.listen {
                args.push("--listen".into());
                args.push(l.into());
            }
        }
    }
    if install.kind == InstallKind::Portable {
        let (kept, dropped) = without_owned(flags, run_bat_flags(&install.root), opts);
        if !kept.is_empty() {
            notes.push(format!("run.bat's flags are kept: {}", kept.join(" ")));
        }
        if !dropped.is_empty() {
            notes.push(format!(
                "run.bat's {} left out: the guard's settings decide {}",
                dropped.join(" "),
                if dropped.len() == 1 { "it" } else { "them" }
            ));
        }
        args.extend(kept.into_iter().map(OsString::from));
    }
    args.extend(opts.extra_args.iter().map(OsString::from));
    // launch.py before 2.1.x does not change to its own folder (entry_with_update.py does).
    let cwd = if install.kind == InstallKind::Portable && script_is_entry(&args, install) {
        install.root.clone()
    } else {
        install.fooocus_dir.clone()
    };
    Launch {
        command: LaunchCommand {
            program: install.python.clone(),
            args,
            cwd,
            env: python_env(Some(&install.python)),
        },
        notes,
    }
}

fn script_is_entry(args: &[OsString], install: &Install) -> bool {
    args.iter().any(|a| Path::new(a) == install.entry)
}

/// `a <= b` for dotted versions ("2.1.865" <= "2.1.865"); non-numeric parts compare as 0.
pub fn version_le(a: &str, b: &str) -> bool {
    let parse = |s: &str| -> Vec<u64> {
        s.split(|c: char| !c.is_ascii_digit())
            .filter(|p| !p.is_empty())
            .map(|p| p.parse().unwrap_or(0))
            .collect()
    };
    let (a, b) = (parse(a), parse(b));
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (
            a.get(i).copied().unwrap_or(0),
            b.get(i).copied().unwrap_or(0),
        );
        if x != y {
            return x < y;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn gradio_listen_settings_are_not_inherited() {
        // Only this test sets these names.
        std::env::set_var("GRADIO_SERVER_NAME", "0.0.0.0");
        std::env::set_var("GRADIO_SHARE", "True");
        let out = LaunchCommand::plain("/usr/bin/env", vec![])
            .to_command()
            .output()
            .unwrap();
        let env = String::from_utf8_lossy(&out.stdout);
        assert!(env.contains("PYTHONUNBUFFERED=1"), "{env}");
        assert!(
            !env.contains("GRADIO_SERVER_NAME") && !env.contains("GRADIO_SHARE"),
            "{env}"
        );
    }

    fn touch(p: &Path, text: &str) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    fn fooocus_folder(dir: &Path, version_line: &str) {
        for f in [
            "entry_with_update.py",
            "launch.py",
            "webui.py",
            "modules/async_worker.py",
        ] {
            touch(&dir.join(f), "");
        }
        touch(&dir.join("fooocus_version.py"), version_line);
    }

    #[test]
    fn venv_install_with_version_and_argv() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("Fooocus");
        fooocus_folder(&d, "version = '2.5.5'\n");
        touch(&exe(&d.join("fooocus_env")), "");
        let i = inspect(&d, None).unwrap();
        assert_eq!(i.kind, InstallKind::Venv);
        assert_eq!(i.version.as_deref(), Some("2.5.5"));
        assert_eq!(i.fork, Fork::Fooocus);
        let opts = LaunchOptions {
            preset: Some("anime".into()),
            vram_mode: Some("always-low-vram".into()),
            listen: Some("0.0.0.0".into()),
            ..Default::default()
        };
        let cmd = launch_command(&i, &opts, 7865);
        let argv = cmd.argv_display();
        // launch.py: entry_with_update.py would reset the folder to upstream's head.
        assert!(argv[1].ends_with("launch.py"), "{argv:?}");
        assert_eq!(cmd.cwd, i.fooocus_dir);
        assert_eq!(
            &argv[2..],
            [
                "--disable-in-browser",
                "--port",
                "7865",
                "--preset",
                "anime",
                "--always-low-vram",
                "--listen",
                "0.0.0.0"
            ]
        );
        assert!(cmd.env.contains(&("PYTHONUNBUFFERED".into(), "1".into())));
        assert!(cmd
            .env
            .contains(&("PYTHONIOENCODING".into(), "utf-8".into())));
    }

    #[test]
    fn portable_package_even_when_the_inner_folder_is_picked() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("Fooocus_win64_2-5-0");
        touch(&root.join("python_embeded/python.exe"), "");
        fooocus_folder(&root.join("Fooocus"), "version = '2.5.0'\n");
        for pick in [root.clone(), root.join("Fooocus")] {
            let i = inspect(&pick, None).unwrap();
            assert_eq!(i.kind, InstallKind::Portable);
            assert!(i.python.ends_with("python_embeded/python.exe"));
            let cmd = launch_command(&i, &LaunchOptions::default(), 7865);
            assert_eq!(cmd.args[0], "-s");
            assert!(Path::new(&cmd.args[1]).ends_with("Fooocus/launch.py"));
            assert_eq!(cmd.cwd, canonical(&root).join("Fooocus"));
            // As run.bat runs it, when the user wants Fooocus to update itself.
            let opts = LaunchOptions {
                auto_update: true,
                ..Default::default()
            };
            let cmd = launch_command(&i, &opts, 7865);
            assert!(Path::new(&cmd.args[1]).ends_with("Fooocus/entry_with_update.py"));
            assert_eq!(cmd.cwd, canonical(&root));
        }
    }

    #[test]
    fn forks_and_stop_capability() {
        let t = tempfile::tempdir().unwrap();
        let mre = t.path().join("mre");
        fooocus_folder(&mre, "version = '2.0.78.5 MRE'\n");
        touch(&exe(&mre.join("venv")), "");
        assert_eq!(inspect(&mre, None).unwrap().fork, Fork::Mre);
        let m = t.path().join("m");
        fooocus_folder(&m, "version = '2.5.5 (mashb1t)'\n");
        touch(&exe(&m.join(".venv")), "");
        assert_eq!(inspect(&m, None).unwrap().fork, Fork::Mashb1t);
        assert!(Fork::Fooocus.global_stop(Some("2.1.865")));
        assert!(!Fork::Fooocus.global_stop(Some("2.2.0")));
        assert!(Fork::Mre.global_stop(Some("2.0.78.5 MRE")));
    }

    #[test]
    fn api_install() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("Fooocus-API");
        touch(&d.join("main.py"), "");
        touch(&d.join("fooocus_api_version.py"), "version = \"0.4.1.1\"\n");
        touch(&exe(&d.join("venv")), "");
        let i = inspect(&d, None).unwrap();
        assert_eq!(i.fork, Fork::FooocusApi);
        assert!(i.entry.ends_with("main.py"));
        let argv = launch_command(&i, &LaunchOptions::default(), 8888).argv_display();
        assert!(!argv.iter().any(|a| a == "--disable-in-browser"));
    }

    #[test]
    fn refusals_say_what_is_missing() {
        let t = tempfile::tempdir().unwrap();
        let e = inspect(&t.path().join("nope"), None).unwrap_err();
        assert!(e.to_string().contains("does not exist"));
        let e = inspect(t.path(), None).unwrap_err().to_string();
        assert!(
            e.contains("no entry_with_update.py") && e.contains("python_embeded"),
            "{e}"
        );
        let d = t.path().join("Fooocus");
        fooocus_folder(&d, "version = '2.5.5'\n");
        let e = inspect(&d, None).unwrap_err().to_string();
        assert!(
            e.contains("Fooocus 2.5.5") && e.contains("fooocus_env"),
            "{e}"
        );
        let e = inspect(&d, Some(Path::new("/no/python")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/no/python"), "{e}");
        let broken = t.path().join("broken");
        touch(&broken.join("python_embeded/python.exe"), "");
        let e = inspect(&broken, None).unwrap_err().to_string();
        assert!(e.contains("Fooocus/entry_with_update.py"), "{e}");
    }

    #[test]
    fn conda_env_beside_the_install() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("Fooocus");
        fooocus_folder(&d, "version = '2.3.1'\n");
        let env = t.path().join("envs/fooocus");
        fs::create_dir_all(env.join("conda-meta")).unwrap();
        // A conda env's interpreter: python.exe at its top on Windows, bin/python elsewhere.
        touch(&conda_env_python_path(&env), "");
        let i = inspect(&d, None).unwrap();
        assert_eq!(i.kind, InstallKind::Conda);
    }

    fn install_of(version_line: &str) -> (tempfile::TempDir, Install) {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("Fooocus");
        fooocus_folder(&d, version_line);
        touch(&exe(&d.join("venv")), "");
        let i = inspect(&d, None).unwrap();
        (t, i)
    }

    fn flags_after_script(i: &Install, opts: &LaunchOptions) -> Vec<String> {
        launch_command(i, opts, 7865).argv_display()[2..].to_vec()
    }

    fn all_options() -> LaunchOptions {
        LaunchOptions {
            vram_mode: Some("always-low-vram".into()),
            listen: Some("0.0.0.0".into()),
            ..Default::default()
        }
    }

    /// Each version's own parser (shared/fooocus-fidelity.md, section C; tests/upstream runs
    /// them): flags it lacks would make Fooocus exit with code 2.
    #[test]
    fn argv_per_version() {
        let (_t, i) = install_of("version = '2.0.78'\n");
        assert_eq!(i.flags(), Flags::Webui);
        assert_eq!(
            flags_after_script(
                &i,
                &LaunchOptions {
                    listen: Some("0.0.0.0".into()),
                    ..Default::default()
                }
            ),
            ["--port", "7865", "--listen", "0.0.0.0"]
        );
        let (_t, i) = install_of("version = '2.1.679'\n");
        assert_eq!(i.flags(), Flags::Comfy { preset: true });
        let mut o = all_options();
        o.preset = Some("anime".into());
        assert_eq!(
            flags_after_script(&i, &o),
            [
                "--port",
                "7865",
                "--preset",
                "anime",
                "--lowvram",
                "--listen",
                "0.0.0.0"
            ]
        );
        let (_t, i) = install_of("version = '2.1.865'\n");
        assert_eq!(i.flags(), Flags::Modern);
        assert_eq!(
            flags_after_script(&i, &all_options()),
            [
                "--disable-in-browser",
                "--port",
                "7865",
                "--always-low-vram",
                "--listen",
                "0.0.0.0"
            ]
        );
        let (_t, i) = install_of("version = '2.1.825'\n");
        assert_eq!(i.flags(), Flags::Comfy { preset: true });
        let (_t, i) = install_of("version = '2.1.826'\n");
        assert_eq!(i.flags(), Flags::Modern);
        let (_t, i) = install_of("version = '2.0.78.5 MRE'\n");
        assert_eq!(i.flags(), Flags::Mre);
        let mut o = all_options();
        o.vram_mode = Some("always-gpu".into());
        assert_eq!(
            flags_after_script(&i, &o),
            ["--port", "7865", "--gpu-only", "--listen", "0.0.0.0"]
        );
        let (_t, i) = install_of("version = '2.6.5 (mashb1t)'\n");
        assert_eq!(i.flags(), Flags::Modern);
        let (_t, i) = install_of("");
        assert_eq!(
            i.flags(),
            Flags::Modern,
            "an unreadable version is taken as recent"
        );
    }

    #[test]
    fn options_a_version_lacks_are_refused_before_launch() {
        let preset = LaunchOptions {
            preset: Some("anime".into()),
            ..Default::default()
        };
        let vram = LaunchOptions {
            vram_mode: Some("always-low-vram".into()),
            ..Default::default()
        };
        for (line, opts, field, words) in [
            (
                "version = '2.0.78'\n",
                &preset,
                "launch.preset",
                ["--preset anime", "Fooocus 2.0.78", "2.1.57"],
            ),
            (
                "version = '2.1.40'\n",
                &preset,
                "launch.preset",
                ["--preset anime", "Fooocus 2.1.40", "2.1.57"],
            ),
            (
                "version = '2.0.78.5 MRE'\n",
                &preset,
                "launch.preset",
                ["--preset", "Fooocus-MRE 2.0.78.5 has", "no presets"],
            ),
            (
                "version = '2.0.78'\n",
                &vram,
                "launch.vram_mode",
                ["--always-low-vram", "Fooocus 2.0.78", "VRAM mode"],
            ),
        ] {
            let (_t, i) = install_of(line);
            let e = check_options(&i, opts).unwrap_err();
            assert_eq!(e.field, field);
            let text = e.to_string();
            for w in words {
                assert!(text.contains(w), "{text:?} lacks {w:?}");
            }
            assert!(text.contains("Clear the"), "{text}");
        }
        for line in ["version = '2.1.57'\n", "version = '2.5.5'\n"] {
            let (_t, i) = install_of(line);
            check_options(&i, &preset).unwrap();
            check_options(&i, &vram).unwrap();
        }
    }

    #[test]
    fn extra_flags_a_version_lacks_are_refused_by_name() {
        let extra = |a: &[&str]| LaunchOptions {
            extra_args: a.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let (_t, i) = install_of("version = '2.1.679'\n");
        let e = check_options(&i, &extra(&["--always-low-vram"])).unwrap_err();
        assert_eq!(e.field, "launch.extra_args");
        let text = e.to_string();
        assert!(
            text.contains("--always-low-vram") && text.contains("Fooocus 2.1.679"),
            "{text}"
        );
        // Its own flags, with values and abbreviations, pass.
        check_options(
            &i,
            &extra(&["--lowvram", "--output-directory", "/x", "--directml"]),
        )
        .unwrap();
        let (_t, i) = install_of("version = '2.0.78'\n");
        assert!(check_options(&i, &extra(&["--directml"])).is_err());
        let (_t, i) = install_of("version = '2.5.5'\n");
        check_options(
            &i,
            &extra(&["--disable-image-log", "--always-low-vram", "--theme=dark"]),
        )
        .unwrap();
        assert!(check_options(&i, &extra(&["--no-such-flag"])).is_err());
        // Between two pinned versions, the later one decides; past the last, nothing is known.
        let (_t, i) = install_of("version = '2.4.0'\n");
        check_options(&i, &extra(&["--disable-image-log"])).ok();
        let (_t, i) = install_of("version = '2.9.0'\n");
        check_options(&i, &extra(&["--a-flag-of-the-future"])).unwrap();
        let (_t, i) = install_of("version = '2.0.78.5 MRE'\n");
        assert!(check_options(&i, &extra(&["--always-low-vram"])).is_err());
        check_options(&i, &extra(&["--lowvram"])).unwrap();
    }

    /// The embedded table is the one the simulator's tests keep equal to the snapshots.
    #[test]
    fn the_embedded_flags_match_the_upstream_table() {
        let json: serde_json::Value = serde_json::from_str(
            &fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/sim/upstream_flags.json"),
            )
            .unwrap(),
        )
        .unwrap();
        let mut lines = Vec::new();
        for (k, v) in json.as_object().unwrap() {
            let mut flags: Vec<&str> = v["actions"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|a| a["flags"].as_array().unwrap())
                .filter_map(|f| f.as_str())
                .filter(|f| f.starts_with("--"))
                .collect();
            flags.sort();
            flags.dedup();
            lines.push(format!("{k} {}", flags.join(" ")));
        }
        let ours: Vec<&str> = UPSTREAM_FLAGS
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect();
        assert_eq!(
            ours, lines,
            "regenerate crates/fooocus/src/upstream_flags.txt"
        );
    }

    #[test]
    fn run_bat_flags_are_kept_and_the_guards_own_left_out() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("Fooocus_win64_2-5-0");
        touch(&root.join("python_embeded/python.exe"), "");
        fooocus_folder(&root.join("Fooocus"), "version = '2.5.0'\n");
        touch(
            &root.join("run.bat"),
            ".\\python_embeded\\python.exe -s Fooocus\\entry_with_update.py --directml --always-low-vram --listen 0.0.0.0 --port 9000\r\npause\r\n",
        );
        let i = inspect(&root, None).unwrap();
        let l = launch(&i, &LaunchOptions::default(), 7865);
        let argv = l.command.argv_display();
        assert_eq!(
            &argv[3..],
            [
                "--disable-in-browser",
                "--port",
                "7865",
                "--directml",
                "--always-low-vram"
            ]
        );
        assert!(
            l.notes
                .iter()
                .any(|n| n.contains("--directml --always-low-vram")),
            "{:?}",
            l.notes
        );
        assert!(
            l.notes.iter().any(|n| n.contains("--listen --port")),
            "{:?}",
            l.notes
        );
        // A VRAM mode in the settings wins over run.bat's.
        let opts = LaunchOptions {
            vram_mode: Some("always-high-vram".into()),
            ..Default::default()
        };
        let argv = launch_command(&i, &opts, 7865).argv_display();
        assert_eq!(
            &argv[3..],
            [
                "--disable-in-browser",
                "--port",
                "7865",
                "--always-high-vram",
                "--directml"
            ]
        );
        assert_eq!(split_bat_words(r#"a "b c" d"#), ["a", "b c", "d"]);
    }

    #[test]
    fn ruined_fooocus_is_refused_by_name() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("RuinedFooocus");
        touch(&d.join("entry_with_update.py"), "");
        touch(&d.join("argparser.py"), "");
        touch(&d.join("version.py"), "version = \"26.06.27\"\n");
        touch(&exe(&d.join("venv")), "");
        let e = inspect(&d, None).unwrap_err().to_string();
        assert!(
            e.contains("RuinedFooocus 26.06.27") && e.contains("does not support"),
            "{e}"
        );
    }

    #[test]
    fn fooocus_api_conda_env_is_named_fooocus_api() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("Fooocus-API");
        touch(&d.join("main.py"), "");
        touch(&d.join("fooocus_api_version.py"), "version = '0.4.1.1'\n");
        let env = t.path().join("envs/fooocus-api");
        fs::create_dir_all(env.join("conda-meta")).unwrap();
        touch(&conda_env_python_path(&env), "");
        let i = inspect(&d, None).unwrap();
        assert_eq!(i.kind, InstallKind::Conda);
        assert!(i.python.starts_with(&env));
    }

    #[test]
    fn versions_compare() {
        assert!(version_le("2.1.865", "2.1.865"));
        assert!(version_le("2.1.60", "2.1.865"));
        assert!(!version_le("2.2.0", "2.1.865"));
        assert!(!version_le("2.5.5", "2.1.865"));
    }

    /// Python's own `webbrowser.open`, as Gradio's `inbrowser` calls it, under `browser_var`
    /// (None: unset), with a display and browsers on PATH, so that a fall-through to the system's
    /// browser would be seen. Returns what `open` returned and the argv of every program it
    /// started with the URL (its `subprocess.Popen`, recorded; Python also asks `xdg-settings`
    /// for the default browser as it lists them, which opens nothing).
    #[cfg(unix)]
    fn python_opens(browser_var: Option<&str>) -> (bool, Vec<Vec<String>>) {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let bin = t.path().join("bin");
        for name in ["xdg-open", "x-www-browser", "www-browser", "firefox"] {
            let p = bin.join(name);
            touch(&p, "#!/bin/sh\nexit 0\n");
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        }
        let script = "import json, subprocess, webbrowser\n\
            started = []\n\
            class Recorded(subprocess.Popen):\n\
            \x20   def __init__(self, args, *a, **k):\n\
            \x20       started.append(list(args))\n\
            \x20       super().__init__(args, *a, **k)\n\
            subprocess.Popen = Recorded\n\
            ok = webbrowser.open('http://127.0.0.1:7865/')\n\
            print(json.dumps([ok, started]))\n";
        let python = ["/usr/bin/python3", "/usr/local/bin/python3"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .expect("python3 (the upstream tests need it too)");
        let mut c = std::process::Command::new(python);
        c.args(["-c", script])
            .env("PATH", format!("{}:/bin", bin.display()))
            .env("DISPLAY", ":0")
            .env_remove("BROWSER");
        if let Some(b) = browser_var {
            c.env("BROWSER", b);
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let (ok, started): (bool, Vec<Vec<String>>) = serde_json::from_slice(&out.stdout).unwrap();
        let with_url = started
            .into_iter()
            .filter(|a| a.iter().any(|x| x.contains("7865")));
        (ok, with_url.collect())
    }

    #[cfg(unix)]
    #[test]
    fn fooocus_opening_a_browser_opens_none_in_its_tree() {
        // The check can fail: without the guard's BROWSER, Python starts the system's browser.
        let (ok, started) = python_opens(None);
        assert!(ok && !started.is_empty(), "{started:?}");
        // The guard's command, in both of its forms, with a path holding a space and a quote: it
        // is the one program started, it succeeds, so webbrowser tries no browser after it.
        let t = tempfile::tempdir().unwrap();
        let python = t.path().join("Fooocus o'neil/python_embeded/python");
        touch(&python, "#!/bin/sh\nexec python3 \"$@\"\n");
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&python, fs::Permissions::from_mode(0o755)).unwrap();
        let want = vec![vec![
            python.display().to_string(),
            "-I".into(),
            "-c".into(),
            "".into(),
            "http://127.0.0.1:7865/".into(),
        ]];
        for windows in [false, true] {
            let var = no_browser(&python, windows).unwrap();
            assert_eq!(python_opens(Some(&var)), (true, want.clone()), "{var}");
        }
    }

    #[test]
    fn the_browser_command_keeps_windows_paths_and_refuses_the_list_separator() {
        assert_eq!(
            no_browser(Path::new(r"C:\Fooocus\python_embeded\python.exe"), true).unwrap(),
            r"'C:\Fooocus\python_embeded\python.exe' -I -c '' %s"
        );
        assert_eq!(no_browser(Path::new(r"C:\a;b\python.exe"), true), None);
        assert_eq!(no_browser(Path::new("/a:b/python"), false), None);
        // Every launch carries it, for the install's own Python.
        let (_t, i) = install_of("2.1.679");
        let cmd = launch_command(&i, &LaunchOptions::default(), 7865);
        let want = no_browser(&i.python, cfg!(windows)).unwrap();
        assert!(cmd.env.contains(&("BROWSER".into(), want)), "{:?}", cmd.env);
    }

    /// A command the user gives runs Fooocus too when it is a Python: its browser stays out of
    /// the tree as well. Another program gets no BROWSER (no Python is known to run it with).
    #[test]
    fn a_plain_python_command_carries_the_browser_command_too() {
        let py = LaunchCommand::plain("/opt/fooocus/python3.10", vec!["launch.py".into()]);
        let want = no_browser(Path::new("/opt/fooocus/python3.10"), cfg!(windows)).unwrap();
        assert!(py.env.contains(&("BROWSER".into(), want)), "{:?}", py.env);
        let sh = LaunchCommand::plain("/bin/sh", vec![]);
        assert!(!sh.env.iter().any(|(k, _)| k == "BROWSER"), "{:?}", sh.env);
    }
}
