//! The webview's Tauri commands, expanded from the one list (src/command_list.rs) for both
//! windows: the dashboard's process on Linux (src/dashboard/window.rs), where an [`Answer`]
//! forwards each call to the guard, and the one process on Windows (src/windows/), where the
//! guard's `Backend` answers it. The guard's commands are thin: typed arguments (Tauri reads them
//! camelCase, as the page sends them) into a `Command`, answered off the main thread, which
//! paints the window (the history database may wait up to 5 s for its lock).

use std::sync::Arc;

use fooocus_guard::command::{Answer, Command};
use fooocus_guard::updates::{self, Inbox};
use serde_json::Value;
use tauri::{Runtime, State};

/// The window's label: capabilities/default.json grants the commands to this window only.
pub const MAIN: &str = "main";

/// The app's context: tauri.conf.json, the capabilities (capabilities/, resolved by build.rs)
/// and the page (ui/dist). Generic so that the tests can run the app on Tauri's mock runtime.
pub fn context<R: Runtime>() -> tauri::Context<R> {
    tauri::generate_context!()
}

/// Who answers the guard's commands in this process, managed by Tauri.
pub type Answers = Arc<dyn Answer>;

/// Runs `f` on Tauri's blocking pool, off the main thread.
async fn off_main_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    tauri::async_runtime::spawn_blocking(f)
        .await
        .map_err(|e| format!("the window's worker failed: {e} (see the guard's log)"))
}

macro_rules! tauri_commands {
    (
        guard { $( $(#[$doc:meta])* $name:ident ( $( $arg:ident : $ty:ty $(as $argts:literal)? ),* )
                   -> $ret:ty $(as $retts:literal)? ; )* }
        window { $( $(#[$wdoc:meta])* $wname:ident () -> $wret:ty $(as $wts:literal)? ; )* }
        ungranted { $( $uname:ident () -> $uret:ty ; )* }
    ) => {
        $(
            $(#[$doc])*
            #[tauri::command]
            async fn $name(guard: State<'_, Answers> $(, $arg: $ty)*) -> Result<Value, String> {
                let guard = Arc::clone(&guard);
                off_main_thread(move || guard.answer(Command::$name { $( $arg ),* })).await?
            }
        )*

        /// Every command of the list, for `Builder::invoke_handler`; the window's own are below.
        /// Generic over the runtime: the app's is Wry, its tests' Tauri's mock runtime.
        /// (The commands are private: Tauri `#[macro_export]`s the helpers of a public one, which
        /// a macro's expansion may not.)
        pub fn handler<R: Runtime>(
        ) -> impl Fn(tauri::ipc::Invoke<R>) -> bool + Send + Sync + 'static {
            tauri::generate_handler![$( $name, )* $( $wname, )* $( $uname ),*]
        }
    };
}

fooocus_guard::for_each_command!(tauri_commands);

/// The folder picker is the window's own (a dialog belongs to it).
#[tauri::command]
async fn pick_folder<R: Runtime>(app: tauri::AppHandle<R>) -> Option<String> {
    use tauri_plugin_dialog::DialogExt;
    let (tx, rx) = crossbeam_channel::bounded(1);
    app.dialog()
        .file()
        .set_title("Choose the Fooocus folder")
        .pick_folder(move |f| {
            let _ = tx.send(f.map(|p| p.to_string()));
        });
    rx.recv().ok().flatten()
}

/// The guard's updates since the page last asked, once there are any (docs/ipc.md).
#[tauri::command]
async fn take_updates(inbox: State<'_, Arc<Inbox>>) -> Result<updates::Batch, String> {
    let inbox = Arc::clone(&inbox);
    off_main_thread(move || inbox.take(updates::IDLE)).await
}

/// Registered but granted to no window: the tests below (and tests/app) call it and must be
/// refused.
#[tauri::command]
fn debug_forbidden() -> &'static str {
    "this must never be reachable from the webview"
}

/// The shell on Tauri's mock runtime (tauri's `test` feature, enabled for tests only): the app's
/// real context (`context()`: its capability, capabilities/default.json, as build.rs resolved
/// it), its real handler list, and a test double answering for the guard; every command goes
/// through the webview's IPC as the page's `invoke` does, past the ACL and the argument
/// decoding of `#[tauri::command]`.
#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use fooocus_guard::command::{GRANTED, GUARD_COMMANDS, UNGRANTED};
    use serde_json::json;
    use tauri::ipc::{CallbackFn, InvokeBody};
    use tauri::test::{get_ipc_response, mock_builder, MockRuntime, INVOKE_KEY};
    use tauri::webview::InvokeRequest;
    use tauri::{WebviewUrl, WebviewWindow, WebviewWindowBuilder};

    use super::*;

    /// Stands in for the guard: records each command it is asked (its name and arguments as the
    /// socket would carry them) and answers with `reply`.
    struct Double {
        asked: Mutex<Vec<(String, Value)>>,
        reply: Result<Value, String>,
    }

    impl Answer for Double {
        fn answer(&self, c: Command) -> Result<Value, String> {
            let args = c.args()?;
            self.asked
                .lock()
                .unwrap()
                .push((c.name().to_string(), args));
            self.reply.clone()
        }
    }

    impl Double {
        fn asked(&self) -> Vec<(String, Value)> {
            self.asked.lock().unwrap().clone()
        }
    }

    struct Shell {
        window: WebviewWindow<MockRuntime>,
        guard: Arc<Double>,
        inbox: Arc<Inbox>,
        _app: tauri::App<MockRuntime>,
    }

    /// The app as the dashboard's process builds it (src/dashboard/window.rs), on the mock
    /// runtime, with a window labelled `label`.
    fn shell(label: &str, reply: Result<Value, String>) -> Shell {
        let guard = Arc::new(Double {
            asked: Mutex::default(),
            reply,
        });
        let answers: Answers = guard.clone();
        let inbox = Arc::new(Inbox::new());
        let app = mock_builder()
            .manage(answers)
            .manage(inbox.clone())
            .invoke_handler(handler())
            .build(context())
            .expect("the app builds on the mock runtime");
        let window = WebviewWindowBuilder::new(&app, label, WebviewUrl::App("index.html".into()))
            .build()
            .expect("a window on the mock runtime");
        Shell {
            window,
            guard,
            inbox,
            _app: app,
        }
    }

    /// What the page's `invoke(cmd, args)` gets: the reply, or the error.
    fn invoke(w: &WebviewWindow<MockRuntime>, cmd: &str, args: Value) -> Result<Value, Value> {
        let url = if cfg!(windows) {
            "http://tauri.localhost"
        } else {
            "tauri://localhost"
        };
        get_ipc_response(
            w,
            InvokeRequest {
                cmd: cmd.into(),
                callback: CallbackFn(0),
                error: CallbackFn(1),
                url: url.parse().unwrap(),
                body: InvokeBody::Json(args),
                headers: Default::default(),
                invoke_key: INVOKE_KEY.to_string(),
            },
        )
        .map(|b| b.deserialize::<Value>().expect("a JSON reply"))
    }

    fn refused_by_acl(r: &Result<Value, Value>) -> bool {
        matches!(r, Err(Value::String(e)) if e.contains("not allowed"))
    }

    #[test]
    fn a_granted_command_reaches_the_guard_with_its_typed_arguments() {
        let s = shell(MAIN, Ok(json!({"answered": "get_history"})));
        // The page sends camelCase keys; the guard gets the typed arguments by their Rust names.
        let r = invoke(&s.window, "get_history", json!({"rangeS": 600}));
        assert_eq!(r, Ok(json!({"answered": "get_history"})));
        let r = invoke(
            &s.window,
            "get_console",
            json!({"after": 7, "query": "error"}),
        );
        assert!(r.is_ok(), "{r:?}");
        // An optional argument may be left out.
        let r = invoke(&s.window, "install_plan", json!({"path": "/opt/Fooocus"}));
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(
            s.guard.asked(),
            vec![
                ("get_history".to_string(), json!({"range_s": 600})),
                (
                    "get_console".to_string(),
                    json!({"after": 7, "query": "error"})
                ),
                (
                    "install_plan".to_string(),
                    json!({"path": "/opt/Fooocus", "source": null})
                ),
            ]
        );
    }

    #[test]
    fn the_guards_error_reaches_the_page() {
        let s = shell(MAIN, Err("Fooocus is not configured".into()));
        let r = invoke(&s.window, "start_fooocus", json!({}));
        assert_eq!(r, Err(json!("Fooocus is not configured")));
        assert_eq!(s.guard.asked(), vec![("start_fooocus".into(), json!({}))]);
    }

    /// The capability grants every command of the list to the window: none is refused by the
    /// ACL (some are refused for their missing arguments, past the ACL).
    #[test]
    fn every_granted_command_passes_the_acl() {
        let s = shell(MAIN, Ok(Value::Null));
        // pick_folder opens a dialog, which needs its plugin and a desktop: not called here.
        for cmd in GRANTED.iter().filter(|c| **c != "pick_folder") {
            // take_updates would wait for an update (2 s when there is none).
            if *cmd == "take_updates" {
                s.inbox.push("open-why", Value::Null);
            }
            let r = invoke(&s.window, cmd, json!({}));
            assert!(!refused_by_acl(&r), "{cmd}: {r:?}");
        }
        // Those without arguments reached the guard.
        let asked: Vec<String> = s.guard.asked().into_iter().map(|a| a.0).collect();
        for cmd in [
            "get_status",
            "start_fooocus",
            "get_settings",
            "get_last_stop",
        ] {
            assert!(asked.iter().any(|a| a == cmd), "{cmd} not asked: {asked:?}");
        }
        assert!(asked.iter().all(|a| GUARD_COMMANDS.contains(&a.as_str())));
    }

    #[test]
    fn the_ungranted_command_is_refused() {
        let s = shell(MAIN, Ok(Value::Null));
        assert_eq!(UNGRANTED, ["debug_forbidden"]);
        let r = invoke(&s.window, "debug_forbidden", json!({}));
        assert!(refused_by_acl(&r), "{r:?}");
        // Nor does a command the app does not have reach anything.
        let r = invoke(&s.window, "format_disk", json!({}));
        assert!(refused_by_acl(&r), "{r:?}");
        assert_eq!(s.guard.asked(), vec![]);
    }

    /// The capability names its window: a webview of another label is granted nothing.
    #[test]
    fn another_window_is_granted_nothing() {
        let s = shell("elsewhere", Ok(Value::Null));
        let r = invoke(&s.window, "get_status", json!({}));
        assert!(refused_by_acl(&r), "{r:?}");
        // By the app's own capability file (its identifier), not for want of any.
        let Err(Value::String(e)) = r else {
            unreachable!()
        };
        assert!(e.contains("capability: default"), "{e}");
        assert_eq!(s.guard.asked(), vec![]);
    }

    #[test]
    fn arguments_of_the_wrong_type_are_refused() {
        let s = shell(MAIN, Ok(Value::Null));
        for (cmd, args, key) in [
            ("get_history", json!({"rangeS": "soon"}), "rangeS"),
            ("get_history", json!({"rangeS": -1}), "rangeS"),
            ("get_breaches", json!({"limit": 1.5}), "limit"),
            ("check_install", json!({"path": 42}), "path"),
            (
                "save_settings",
                json!({"settings": "all of them"}),
                "settings",
            ),
            // Missing, or under the Rust name rather than camelCase.
            ("get_breaches", json!({}), "limit"),
            ("get_history", json!({"range_s": 600}), "rangeS"),
        ] {
            let r = invoke(&s.window, cmd, args.clone());
            match &r {
                Err(Value::String(e)) => assert!(
                    e.contains(key) && e.contains(cmd) && !e.contains("not allowed"),
                    "{cmd} {args}: {e}"
                ),
                _ => panic!("{cmd} {args}: {r:?}"),
            }
        }
        assert_eq!(s.guard.asked(), vec![]);
    }

    /// The window's own command: the guard's updates, held in this process's inbox.
    #[test]
    fn take_updates_answers_from_the_inbox() {
        let s = shell(MAIN, Ok(Value::Null));
        s.inbox.push("status", json!({"state": "ready"}));
        s.inbox.push("guard-event", json!({"kind": "ready"}));
        let r = invoke(&s.window, "take_updates", json!({})).expect("a batch");
        assert_eq!(r["status"], json!({"state": "ready"}));
        assert_eq!(r["events"], json!([{"kind": "ready"}]));
        assert_eq!(s.guard.asked(), vec![]);
    }
}
