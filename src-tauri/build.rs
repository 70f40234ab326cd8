fn main() {
    speechless();
    // Only these commands exist for the webview, and capabilities/default.json grants them:
    // anything else (another plugin's command, a command not listed) is refused by Tauri.
    tauri_build::try_build(tauri_build::Attributes::new().app_manifest(
        tauri_build::AppManifest::new().commands(&[
            "get_status",
            "start_fooocus",
            "stop_fooocus",
            "restart_fooocus",
            "stop_generation",
            "sleep_fooocus",
            "wake_fooocus",
            "open_in_browser",
            "get_history",
            "get_console",
            "get_settings",
            "validate_settings",
            "settings_notes",
            "save_settings",
            "detect_installs",
            "check_install",
            "pick_folder",
            "get_generations",
            "get_breaches",
            "limit_stats",
            "export_history_csv",
            "mark_breaches_seen",
            "get_last_stop",
            "install_plan",
            "install_start",
            "install_cancel",
            "install_status",
            "install_discard",
            "take_updates",
            // Not granted to the webview: exists so a test can prove ungranted commands fail.
            "debug_forbidden",
        ]),
    ))
    .expect("tauri build script");
}

/// Linux: flite's stand-ins for the dashboard (speechless/flite.c, src/speechless.rs), one shared
/// library the guard carries inside it.
fn speechless() {
    println!("cargo:rerun-if-changed=speechless/flite.c");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let lib = out.join("libfooocus-guard-speechless.so");
    let status = cc::Build::new()
        .get_compiler()
        .to_command()
        .args([
            "-shared",
            "-fPIC",
            "-O2",
            "-s",
            "-Wl,-soname,libflite.so.1",
            "-o",
        ])
        .arg(&lib)
        .arg("speechless/flite.c")
        .status()
        .expect("the C compiler runs (apt install build-essential)");
    assert!(status.success(), "speechless/flite.c does not compile");
}
