//! `fooocus-guard-cli` on Windows (CI: under Wine 8): what `doctor` reports, and `detect` on a
//! portable package and on a wrong folder.
#![cfg(windows)]

use std::process::Command;

fn cli(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fooocus-guard-cli"))
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn doctor_names_the_job_object_and_the_windows_folders() {
    let (ok, out) = cli(&["doctor"]);
    assert!(ok, "{out}");
    assert!(out.contains("containment: job-object"), "{out}");
    let appdata = std::env::var("APPDATA").unwrap();
    let local = std::env::var("LOCALAPPDATA").unwrap();
    assert!(
        out.contains(&format!(r"{appdata}\fooocus-guard\config\config.toml")),
        "{out}"
    );
    assert!(
        out.contains(&format!(r"{local}\fooocus-guard\data\logs")),
        "{out}"
    );
    assert!(out.contains("nvml.dll"), "{out}");
}

#[test]
fn detect_finds_the_portable_package_and_explains_a_wrong_folder() {
    let t = tempfile::tempdir().unwrap();
    let pkg = t.path().join("Fooocus_win64_2-5-0");
    let fooocus = pkg.join("Fooocus");
    std::fs::create_dir_all(pkg.join("python_embeded")).unwrap();
    std::fs::create_dir_all(fooocus.join("modules")).unwrap();
    std::fs::write(pkg.join("python_embeded").join("python.exe"), "").unwrap();
    for f in [
        "entry_with_update.py",
        "launch.py",
        "webui.py",
        r"modules\async_worker.py",
    ] {
        std::fs::write(fooocus.join(f), "").unwrap();
    }
    std::fs::write(fooocus.join("fooocus_version.py"), "version = '2.5.5'\n").unwrap();

    // The user may pick the package or the Fooocus folder inside it: the same install.
    for picked in [&pkg, &fooocus] {
        let (ok, out) = cli(&["detect", picked.to_str().unwrap()]);
        assert!(ok, "{out}");
        assert!(out.contains("Fooocus 2.5.5"), "{out}");
        assert!(out.contains(r"python_embeded\python.exe"), "{out}");
    }

    let (ok, out) = cli(&["detect", t.path().to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(out.contains("is not a Fooocus install"), "{out}");
    assert!(out.contains("Pick the Fooocus folder"), "{out}");
}
