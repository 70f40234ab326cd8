//! The dashboard without flite's voices (Linux).
//!
//! libwebkit2gtk needs flite's thirteen libraries (the speech synthesizer behind the page's
//! `speechSynthesis`) and, bound at load (`-z now`), relocates their voice tables in each of its
//! three processes: about 15 MiB of the open dashboard (tests/app/footprint.sh: 199.1 -> 184.5
//! MiB PSS), for a page that never speaks. The guard starts the dashboard with a folder first on its
//! library path where each of those thirteen names leads to one small library of stand-ins
//! (speechless/flite.c, built by build.rs and carried in the guard), so the loader takes it and
//! not the voices. WebKit passes its environment to its own processes, which get the same.
//!
//! Another WebKitGTK may call a flite function the stand-ins lack: its loader would then refuse
//! to start the dashboard. So before the first use the guard starts the dashboard once with
//! `--check-libraries`, which returns as soon as its libraries are loaded; if that fails, the
//! dashboard gets the real flite. `FG_DASHBOARD_SPEECH=1` keeps the real flite (for diagnosis).

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The stand-ins, compiled by build.rs from speechless/flite.c.
const STAND_INS: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/libfooocus-guard-speechless.so"));
const STAND_INS_FILE: &str = "libfooocus-guard-speechless.so";

/// The names libwebkit2gtk-4.1 needs them by (`readelf -d`, Debian 12 and Ubuntu 22.04+).
pub const FLITE: [&str; 13] = [
    "libflite.so.1",
    "libflite_usenglish.so.1",
    "libflite_cmu_grapheme_lang.so.1",
    "libflite_cmu_grapheme_lex.so.1",
    "libflite_cmu_indic_lang.so.1",
    "libflite_cmu_indic_lex.so.1",
    "libflite_cmulex.so.1",
    "libflite_cmu_time_awb.so.1",
    "libflite_cmu_us_awb.so.1",
    "libflite_cmu_us_kal16.so.1",
    "libflite_cmu_us_kal.so.1",
    "libflite_cmu_us_rms.so.1",
    "libflite_cmu_us_slt.so.1",
];

/// The argument that makes the dashboard return at once with 0 (its libraries loaded).
pub const CHECK_ARG: &str = "--check-libraries";

/// Writes the stand-ins and their thirteen names into `dir` (made 0700), each name a link to the
/// one file: the loader, finding the same file again, loads it once.
pub fn prepare(dir: &Path) -> std::io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let file = dir.join(STAND_INS_FILE);
    if fs::read(&file).ok().as_deref() != Some(STAND_INS) {
        // Whole or not at all: a dashboard starting meanwhile must never load half a library.
        let tmp = dir.join(format!("{STAND_INS_FILE}.{}.tmp", std::process::id()));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(STAND_INS)?;
        f.sync_all()?;
        fs::rename(&tmp, &file)?;
    }
    for name in FLITE {
        let link = dir.join(name);
        if fs::read_link(&link).ok().as_deref() == Some(Path::new(STAND_INS_FILE)) {
            continue;
        }
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(STAND_INS_FILE, &link)?;
    }
    Ok(())
}

/// `dir` first, then whatever library path the guard itself was given.
pub fn library_path(dir: &Path, inherited: Option<OsString>) -> OsString {
    let mut p = dir.as_os_str().to_os_string();
    if let Some(rest) = inherited.filter(|r| !r.is_empty()) {
        p.push(":");
        p.push(rest);
    }
    p
}

/// The folder to put first on the dashboard's library path, or None when the dashboard is to
/// load the real flite (turned off, the folder not writable, or the stand-ins not enough for this
/// WebKitGTK). Says why on stderr when it falls back.
pub fn folder_for(dashboard: &Path, data_dir: &Path) -> Option<PathBuf> {
    if std::env::var_os("FG_DASHBOARD_SPEECH").is_some() {
        return None;
    }
    let dir = data_dir.join("speechless");
    if let Err(e) = prepare(&dir) {
        eprintln!(
            "fooocus-guard: the dashboard keeps flite's voices ({e} writing {}); it works, with about 15 MiB more",
            dir.display()
        );
        return None;
    }
    let checked = Command::new(dashboard)
        .arg(CHECK_ARG)
        .env(
            "LD_LIBRARY_PATH",
            library_path(&dir, std::env::var_os("LD_LIBRARY_PATH")),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    match checked {
        Ok(o) if o.status.success() => Some(dir),
        Ok(o) => {
            eprintln!(
                "fooocus-guard: the dashboard keeps flite's voices: this WebKitGTK needs more of flite than {} has ({})",
                dir.display(),
                String::from_utf8_lossy(&o.stderr).trim()
            );
            None
        }
        Err(e) => {
            eprintln!(
                "fooocus-guard: cannot start {} ({e}); reinstall Fooocus Guard",
                dashboard.display()
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_links_every_name_to_the_one_library_and_can_run_again() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("speechless");
        prepare(&dir).unwrap();
        // A stale copy (another build's) is replaced, a wrong link put right.
        fs::write(dir.join(STAND_INS_FILE), b"old").unwrap();
        fs::remove_file(dir.join(FLITE[3])).unwrap();
        std::os::unix::fs::symlink("/usr/lib/elsewhere.so", dir.join(FLITE[3])).unwrap();
        prepare(&dir).unwrap();
        assert_eq!(fs::read(dir.join(STAND_INS_FILE)).unwrap(), STAND_INS);
        for name in FLITE {
            assert_eq!(fs::read(dir.join(name)).unwrap(), STAND_INS, "{name}");
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    /// The system's WebKitGTK loads with the stand-ins first (every flite function it calls is
    /// there: a missing one fails the load) and maps none of flite's own libraries.
    #[test]
    fn webkitgtk_loads_with_the_stand_ins_and_without_the_voices() {
        let tmp = tempfile::tempdir().unwrap();
        prepare(tmp.path()).unwrap();
        let out = Command::new("python3")
            .args([
                "-c",
                "import ctypes, os; ctypes.CDLL('libwebkit2gtk-4.1.so.0', os.RTLD_NOW); \
                 print(open('/proc/self/maps').read())",
            ])
            .env("LD_LIBRARY_PATH", library_path(tmp.path(), None))
            .output()
            .expect("python3 runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "WebKitGTK did not load: {stderr}");
        let maps = String::from_utf8_lossy(&out.stdout);
        assert!(maps.contains("libwebkit2gtk-4.1.so"), "WebKitGTK is mapped");
        assert!(maps.contains(STAND_INS_FILE), "the stand-ins are mapped");
        let voices: Vec<&str> = maps.lines().filter(|l| l.contains("/libflite")).collect();
        assert!(
            voices.is_empty(),
            "flite's own libraries mapped: {voices:?}"
        );
    }

    #[test]
    fn the_library_path_puts_the_stand_ins_first() {
        let d = Path::new("/data/speechless");
        assert_eq!(library_path(d, None), "/data/speechless");
        assert_eq!(library_path(d, Some("".into())), "/data/speechless");
        assert_eq!(
            library_path(d, Some("/opt/lib".into())),
            "/data/speechless:/opt/lib"
        );
    }
}
