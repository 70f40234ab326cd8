//! The dashboard's process (Unix): one window, its commands forwarded to the guard
//! (src/shell/webview.rs), the guard's events held for the page until it asks for them
//! (src/updates.rs), and WebKit set up to hold as little memory as a page of graphs needs.

use std::sync::{Arc, OnceLock};

use fooocus_guard::command::{Answer, Command, Control};
use fooocus_guard::ipc;
use fooocus_guard::updates::Inbox;
use serde_json::Value;
use tauri::{Manager, WebviewUrl, WebviewWindowBuilder};

use crate::shell::webview::{self, MAIN};

/// The link to the guard: every guard command of the page goes over it, same name, same
/// arguments (src/shell/webview.rs calls it off the main thread).
struct Link(Arc<ipc::Client>);

impl Answer for Link {
    fn answer(&self, c: Command) -> Result<Value, String> {
        self.0.call(c.name(), c.args()?)
    }
}

pub fn run() {
    tune_webkit_env();
    // Opened from a limit's notification: at the "why it stopped" card.
    let page = if std::env::args().any(|a| a == "--why") {
        "index.html#why"
    } else {
        "index.html"
    };
    let Some(data_dir) = guard_app::paths::data_dir() else {
        eprintln!(
            "fooocus-guard-dashboard: no data folder (HOME is not set): set FOOOCUS_GUARD_DATA_DIR"
        );
        std::process::exit(2);
    };
    static HANDLE: OnceLock<tauri::AppHandle> = OnceLock::new();
    let inbox = Arc::new(Inbox::new());
    let for_page = inbox.clone();
    let client = ipc::Client::connect(
        &data_dir,
        move |name, payload| match name.as_str() {
            "show" => {
                let Some(app) = HANDLE.get() else { return };
                if let Some(w) = app.get_webview_window(MAIN) {
                    let _ = w.unminimize();
                    let _ = w.show();
                    let _ = w.set_focus();
                }
                if payload == Value::Bool(true) {
                    for_page.push("open-why", Value::Null);
                }
            }
            "quit" => {
                if let Some(app) = HANDLE.get() {
                    app.exit(0);
                }
            }
            _ => for_page.push(&name, payload),
        },
        // Without its guard the window can do nothing: it goes too.
        || match HANDLE.get() {
            Some(app) => app.exit(0),
            None => std::process::exit(0),
        },
    );
    let client = match client {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fooocus-guard-dashboard: {e}");
            std::process::exit(2);
        }
    };

    let guard: webview::Answers = Arc::new(Link(client.clone()));
    let app = tauri::Builder::default()
        .plugin(tauri_plugin_dialog::init())
        .manage(guard)
        .manage(inbox)
        .invoke_handler(webview::handler())
        .on_window_event(move |_, e| {
            if let tauri::WindowEvent::CloseRequested { .. } = e {
                // Before the window goes: the guard starts a new dashboard for the next open
                // rather than waiting for this process to end.
                client.tell(Control::DashboardClosing.name());
            }
        })
        .setup(move |app| {
            let _ = HANDLE.set(app.handle().clone());
            let w = WebviewWindowBuilder::new(app, MAIN, WebviewUrl::App(page.into()))
                .title("Fooocus Guard")
                .inner_size(1180.0, 800.0)
                .min_inner_size(760.0, 520.0)
                .build()?;
            tune_webview(&w);
            Ok(())
        })
        .build(webview::context())
        .expect("the dashboard starts");
    // Closing the window ends this process (Tauri's default once no window is left).
    app.run(|_, _| {});
}

/// Before GTK starts: WebKit reads these once.
fn tune_webkit_env() {
    #[cfg(target_os = "linux")]
    for (k, v) in [
        // Software rendering without the compositor's layers and buffers: a page of graphs does
        // not need them, and they cost tens of MiB per web process.
        ("WEBKIT_DISABLE_COMPOSITING_MODE", "1"),
        ("WEBKIT_DISABLE_DMABUF_RENDERER", "1"),
        // JavaScriptCore's interpreter only, no JIT tiers: the page's script is small and runs
        // once a second, and the JIT's code and profiling data cost the web process about
        // 10 MiB of PSS (tests/app/footprint.sh, debug build: 116 -> 106 MiB).
        ("JSC_useJIT", "0"),
        // No cache of compiled scripts: Tauri delivers every event as a script of its own (the
        // payload written into it), and JavaScriptCore kept the code of up to 2,000 of them,
        // none ever run twice. Web process after 260 s open: 113.3 -> 111.6 MiB PSS
        // (tests/app/footprint.sh --hold 260, dist build).
        ("JSC_useCodeCache", "0"),
        // glibc's malloc in WebKit's processes (this one has started already): return freed
        // memory to the system past 64 KiB at the top of the heap, and serve blocks of 64 KiB
        // and more from their own mappings, instead of thresholds that grow with the largest
        // block freed. The page frees as much as it allocates each second; the web process
        // held about 3 MiB of it (tests/app/footprint.sh: 109 -> 106 MiB).
        (
            "GLIBC_TUNABLES",
            "glibc.malloc.mmap_threshold=65536:glibc.malloc.trim_threshold=65536",
        ),
    ] {
        if std::env::var_os(k).is_none() {
            std::env::set_var(k, v);
        }
    }
    #[cfg(target_os = "linux")]
    no_egl_in_this_process();
}

/// This process draws the page's bitmaps with cairo (no compositing, no DMA-BUF renderer), so it
/// has no use for EGL; yet WebKit opens an EGL display in it, and with Mesa that loads the
/// driver and libLLVM (17 MiB of PSS under llvmpipe, tests/app/footprint.sh --mappings). glvnd
/// reads its list of EGL vendors once, at the first EGL call: make that call with the list
/// pointing nowhere, then put the environment back, so the web process WebKit starts later
/// (which does draw with EGL) finds the vendors as usual. Runs before any other thread exists.
#[cfg(target_os = "linux")]
fn no_egl_in_this_process() {
    const KEY: &str = "__EGL_VENDOR_LIBRARY_FILENAMES";
    if std::env::var_os("FG_DASHBOARD_EGL").is_some() {
        return; // kept for diagnosis: the UI process with EGL, as WebKit would have it
    }
    let before = std::env::var_os(KEY);
    std::env::set_var(KEY, "/nonexistent/fooocus-guard-no-egl.json");
    // SAFETY: dlopen/dlsym of the system's libEGL (already a dependency of WebKitGTK) and one
    // call of eglQueryString(EGL_NO_DISPLAY, EGL_EXTENSIONS), which only reads.
    unsafe {
        let lib = libc::dlopen(c"libEGL.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL);
        if !lib.is_null() {
            let f = libc::dlsym(lib, c"eglQueryString".as_ptr());
            if !f.is_null() {
                let query: extern "C" fn(*mut libc::c_void, i32) -> *const libc::c_char =
                    std::mem::transmute(f);
                const EGL_EXTENSIONS: i32 = 0x3055;
                query(std::ptr::null_mut(), EGL_EXTENSIONS);
            }
        }
    }
    match before {
        Some(v) => std::env::set_var(KEY, v),
        None => std::env::remove_var(KEY),
    }
}

/// The web process's cache and memory settings: a single page, never navigated away from.
fn tune_webview(w: &tauri::WebviewWindow) {
    #[cfg(target_os = "linux")]
    {
        let _ = w.with_webview(|wv| {
            use webkit2gtk::{CacheModel, SettingsExt, WebContextExt, WebViewExt};
            let view = wv.inner();
            if let Some(ctx) = view.context() {
                ctx.set_cache_model(CacheModel::DocumentViewer);
            }
            if let Some(s) = WebViewExt::settings(&view) {
                s.set_enable_page_cache(false);
                s.set_hardware_acceleration_policy(webkit2gtk::HardwareAccelerationPolicy::Never);
            }
        });
    }
    #[cfg(not(target_os = "linux"))]
    let _ = w;
}
