// The one list of the commands (src/command_list.rs): only its names are read here.
include!("src/command_list.rs");

macro_rules! command_names {
    (
        guard { $( $(#[$doc:meta])* $name:ident ( $( $arg:ident : $ty:ty $(as $argts:literal)? ),* )
                   -> $ret:ty $(as $retts:literal)? ; )* }
        window { $( $(#[$wdoc:meta])* $wname:ident () -> $wret:ty $(as $wts:literal)? ; )* }
        ungranted { $( $uname:ident () -> $uret:ty ; )* }
    ) => {
        &[$( stringify!($name), )* $( stringify!($wname), )* $( stringify!($uname) ),*]
    };
}

fn main() {
    speechless();
    println!("cargo:rerun-if-changed=src/command_list.rs");
    // Only these commands exist for the webview, and capabilities/default.json grants them (all
    // but the ungranted one, which exists so a test can prove ungranted commands fail): anything
    // else (another plugin's command, a command not listed) is refused by Tauri.
    let commands: &[&str] = for_each_command!(command_names);
    tauri_build::try_build(
        tauri_build::Attributes::new()
            .app_manifest(tauri_build::AppManifest::new().commands(commands)),
    )
    .expect("tauri build script");
}

/// Linux: flite's stand-ins for the dashboard (speechless/flite.c, src/guard/speechless.rs), one shared
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
