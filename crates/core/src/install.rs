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

use crate::config::LaunchOptions;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstallKind {
    Portable,
    Venv,
    Conda,
    Interpreter,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

/// Conda envs named `fooocus` in the usual places, and beside the install (`../envs/fooocus`).
fn conda_candidates(fooocus_dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(parent) = fooocus_dir.parent() {
        v.push(parent.join("envs").join("fooocus"));
    }
    if let Some(p) = std::env::var_os("CONDA_PREFIX") {
        let p = PathBuf::from(p);
        v.push(p.join("envs").join("fooocus"));
        if p.file_name().is_some_and(|n| n == "fooocus") {
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
            v.push(home.join(base).join("envs").join("fooocus"));
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
    } else if let Some(py) = conda_candidates(&fooocus_dir)
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
        LaunchCommand {
            program: program.into(),
            args,
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            env: python_env(),
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

fn python_env() -> Vec<(String, String)> {
    vec![
        ("PYTHONUNBUFFERED".into(), "1".into()),
        ("PYTHONIOENCODING".into(), "utf-8".into()),
    ]
}

/// The port Fooocus itself listens on for `opts`, before any gateway moves it.
pub fn user_port(install: &Install, opts: &LaunchOptions) -> u16 {
    let _ = install;
    opts.port
}

/// Build the argv for `install` with the user's launch options. `port` is where Fooocus must
/// listen (the user's port, or an internal one behind the gateway).
pub fn launch_command(install: &Install, opts: &LaunchOptions, port: u16) -> LaunchCommand {
    let mut args: Vec<OsString> = Vec::new();
    if install.kind == InstallKind::Portable {
        args.push("-s".into()); // as run.bat does: ignore the user's site-packages
    }
    args.push(install.entry.clone().into_os_string());
    if install.fork == Fork::FooocusApi {
        args.push("--port".into());
        args.push(port.to_string().into());
        if let Some(l) = &opts.listen {
            args.push("--host".into());
            args.push(l.into());
        }
    } else {
        // Fooocus opens a browser itself otherwise; the guard opens it when the user asks.
        args.push("--disable-in-browser".into());
        args.push("--port".into());
        args.push(port.to_string().into());
        if let Some(p) = &opts.preset {
            args.push("--preset".into());
            args.push(p.into());
        }
        if let Some(m) = &opts.vram_mode {
            args.push(format!("--{m}").into());
        }
        if let Some(l) = &opts.listen {
            args.push("--listen".into());
            args.push(l.into());
        }
    }
    args.extend(opts.extra_args.iter().map(OsString::from));
    let cwd = if install.kind == InstallKind::Portable {
        install.root.clone()
    } else {
        install.fooocus_dir.clone()
    };
    LaunchCommand {
        program: install.python.clone(),
        args,
        cwd,
        env: python_env(),
    }
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
        assert!(argv[1].ends_with("entry_with_update.py"));
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

    #[test]
    fn versions_compare() {
        assert!(version_le("2.1.865", "2.1.865"));
        assert!(version_le("2.1.60", "2.1.865"));
        assert!(!version_le("2.2.0", "2.1.865"));
        assert!(!version_le("2.5.5", "2.1.865"));
    }
}
