//! The guard's side of the dashboard's commands, expanded from the one list (src/command_list.rs):
//! [`Command`], what the guard's socket decodes a call into; [`Guard`], one typed method per
//! command, so a command added to the list does not compile until the guard answers it and the
//! reply has the type the list says; [`dispatch`] between them. [`Backend`] is the guard's
//! answer (the guard's process on Linux, the one process on Windows). No Tauri here: the guard
//! links this library and stays free of WebKit.

use std::path::Path;
use std::sync::{Arc, Mutex};

use guard_app::App;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::LastStop;

macro_rules! guard_surface {
    (
        guard { $( $(#[$doc:meta])* $name:ident ( $( $arg:ident : $ty:ty $(as $argts:literal)? ),* )
                   -> $ret:ty $(as $retts:literal)? ; )* }
        window { $( $(#[$wdoc:meta])* $wname:ident () -> $wret:ty $(as $wts:literal)? ; )* }
        ungranted { $( $uname:ident () -> $uret:ty ; )* }
    ) => {
        /// A call of one of the guard's commands with its arguments. Variants are named as on
        /// the wire (`{"cmd":"get_history","args":{"range_s":600}}`), so serde needs no renames.
        #[allow(non_camel_case_types)]
        #[derive(Debug, Serialize, Deserialize)]
        #[serde(tag = "cmd", content = "args")]
        pub enum Command {
            $( $name { $( $arg: $ty ),* }, )*
        }

        /// What answers the guard's commands, each with the reply type of the list (errors are
        /// strings the page shows).
        pub trait Guard {
            $( $(#[$doc])* fn $name(&self $(, $arg: $ty)*) -> Result<$ret, String>; )*
        }

        /// Calls the method of `c` on `g`; its reply as JSON.
        pub fn dispatch(g: &impl Guard, c: Command) -> Result<Value, String> {
            match c {
                $( Command::$name { $( $arg ),* } => reply(g.$name($( $arg ),*)?), )*
            }
        }

        impl Command {
            /// The command's name on the wire.
            pub fn name(&self) -> &'static str {
                match self {
                    $( Command::$name { .. } => stringify!($name), )*
                }
            }
        }

        /// The commands the guard answers.
        pub const GUARD_COMMANDS: &[&str] = &[$( stringify!($name) ),*];
        /// The commands the webview is granted (capabilities/default.json): the guard's and the
        /// window's own.
        pub const GRANTED: &[&str] = &[$( stringify!($name), )* $( stringify!($wname) ),*];
        /// Registered but granted to no window.
        pub const UNGRANTED: &[&str] = &[$( stringify!($uname) ),*];
    };
}

crate::for_each_command!(guard_surface);

fn reply<T: Serialize>(v: T) -> Result<Value, String> {
    serde_json::to_value(v).map_err(|e| format!("cannot encode the answer: {e}"))
}

impl Command {
    /// A call as the socket carries it (docs/ipc.md): the name, the arguments by their Rust names.
    pub fn from_call(cmd: &str, args: Value) -> Result<Command, String> {
        if !GUARD_COMMANDS.contains(&cmd) {
            return Err(format!(
                "the guard has no command '{cmd}': the dashboard comes from another version; quit Fooocus Guard from its tray icon and start it again"
            ));
        }
        // A command without arguments may come with none at all.
        let args = if args.is_null() {
            Value::Object(Default::default())
        } else {
            args
        };
        serde_json::from_value(serde_json::json!({ "cmd": cmd, "args": args }))
            .map_err(|e| format!("the dashboard sent bad arguments for '{cmd}': {e}"))
    }

    /// The arguments as the socket carries them (the other half of [`Command::from_call`]).
    pub fn args(&self) -> Result<Value, String> {
        let mut v = reply(self)?;
        Ok(v.get_mut("args").map(Value::take).unwrap_or(Value::Null))
    }
}

/// The calls the app's processes make of the guard themselves, beside the page's commands.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Control {
    /// The dashboard's window is closing: the next open starts a new dashboard.
    DashboardClosing,
    /// A second launch of the guard asks for the window.
    OpenDashboard,
}

impl Control {
    /// The name on the wire; the page's commands never use it.
    pub fn name(self) -> &'static str {
        match self {
            Control::DashboardClosing => "dashboard_closing",
            Control::OpenDashboard => "open_dashboard",
        }
    }

    pub fn from_name(cmd: &str) -> Option<Control> {
        serde_json::from_value(Value::String(cmd.into())).ok()
    }
}

/// Whoever answers a [`Command`] for the webview: [`Backend`] in the guard's process, the link to
/// the guard in the dashboard's (src/dashboard/window.rs).
pub trait Answer: Send + Sync + 'static {
    fn answer(&self, c: Command) -> Result<Value, String>;
}

/// The guard's answers: each a line or two over `guard_app::App`.
pub struct Backend {
    pub core: Arc<App>,
    pub last_stop: Arc<Mutex<LastStop>>,
    /// Installs run in the guard: closing the dashboard does not end one.
    pub installs: Arc<guard_installer::Jobs>,
}

impl Answer for Backend {
    fn answer(&self, c: Command) -> Result<Value, String> {
        dispatch(self, c)
    }
}

impl Guard for Backend {
    fn get_status(&self) -> Result<guard_core::Status, String> {
        Ok(self.core.status())
    }
    fn start_fooocus(&self) -> Result<(), String> {
        self.core.start_fooocus()
    }
    fn stop_fooocus(&self) -> Result<(), String> {
        self.core.guard().stop_fooocus();
        Ok(())
    }
    fn restart_fooocus(&self) -> Result<(), String> {
        self.core.guard().restart_fooocus();
        Ok(())
    }
    fn stop_generation(&self) -> Result<(), String> {
        self.core.guard().stop_generation();
        Ok(())
    }
    fn sleep_fooocus(&self) -> Result<(), String> {
        self.core.guard().sleep_fooocus();
        Ok(())
    }
    fn wake_fooocus(&self) -> Result<(), String> {
        self.core.guard().wake_fooocus();
        Ok(())
    }
    fn open_in_browser(&self) -> Result<(), String> {
        self.core.open_in_browser()
    }
    fn get_history(&self, range_s: u64) -> Result<Vec<guard_app::HistoryPoint>, String> {
        Ok(self.core.history(range_s))
    }
    fn get_console(
        &self,
        after: Option<u64>,
        query: Option<String>,
    ) -> Result<Vec<guard_core::console::ConsoleLine>, String> {
        Ok(self.core.guard().console(after, query.as_deref(), 2000))
    }
    fn get_settings(&self) -> Result<guard_core::config::Config, String> {
        Ok(self.core.settings())
    }
    fn validate_settings(
        &self,
        settings: guard_core::config::Config,
    ) -> Result<Vec<guard_core::config::FieldError>, String> {
        Ok(settings.validate())
    }
    fn settings_notes(
        &self,
        settings: guard_core::config::Config,
    ) -> Result<Vec<guard_core::commit::SettingsNote>, String> {
        Ok(guard_core::commit::notes(
            &settings,
            guard_app::paths::data_dir().as_deref(),
        ))
    }
    fn save_settings(
        &self,
        settings: guard_core::config::Config,
    ) -> Result<guard_app::SaveResult, String> {
        Ok(self.core.save_settings(settings))
    }
    fn detect_installs(&self) -> Result<Vec<guard_fooocus::install::Install>, String> {
        Ok(self.core.detect_installs())
    }
    fn check_install(&self, path: String) -> Result<guard_fooocus::install::Install, String> {
        guard_fooocus::install::inspect(Path::new(&path), None).map_err(|e| e.to_string())
    }
    fn get_generations(
        &self,
        outcome: Option<String>,
        limit: u32,
    ) -> Result<Vec<guard_app::GenerationRecord>, String> {
        Ok(self.core.generations(outcome.as_deref(), limit))
    }
    fn get_breaches(&self, limit: u32) -> Result<Vec<guard_app::BreachRecord>, String> {
        Ok(self.core.breaches(limit))
    }
    fn limit_stats(
        &self,
        limit: String,
        value: Option<f64>,
    ) -> Result<guard_app::LimitStats, String> {
        self.core.limit_stats(&limit, value)
    }
    fn export_history_csv(&self) -> Result<String, String> {
        Ok(self.core.export_csv())
    }
    fn mark_breaches_seen(&self) -> Result<(), String> {
        self.core.guard().mark_breaches_seen();
        Ok(())
    }
    fn get_last_stop(&self) -> Result<LastStop, String> {
        Ok(self.last_stop.lock().unwrap().clone())
    }
    fn install_plan(
        &self,
        path: Option<String>,
        source: Option<String>,
    ) -> Result<guard_installer::PlanView, String> {
        self.installs
            .plan(path.as_deref().map(Path::new), source.as_deref())
    }
    fn install_start(&self, path: String, source: Option<String>) -> Result<(), String> {
        self.installs
            .start_here(Path::new(&path), source.as_deref())
    }
    fn install_cancel(&self) -> Result<(), String> {
        self.installs.cancel();
        Ok(())
    }
    fn install_status(&self) -> Result<guard_installer::JobStatus, String> {
        Ok(self.installs.status())
    }
    fn install_discard(&self, path: String) -> Result<(), String> {
        self.installs.discard(Path::new(&path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::{BTreeMap, BTreeSet, HashSet};

    #[test]
    fn a_call_decodes_into_its_command_and_back() {
        let c = Command::from_call("get_console", json!({"after": 7, "query": null})).unwrap();
        assert!(matches!(
            c,
            Command::get_console {
                after: Some(7),
                query: None
            }
        ));
        assert_eq!(c.name(), "get_console");
        assert_eq!(c.args().unwrap(), json!({"after": 7, "query": null}));
        // What the dashboard forwards is what the guard decodes.
        let c = Command::install_start {
            path: "/x".into(),
            source: None,
        };
        let back = Command::from_call(c.name(), c.args().unwrap()).unwrap();
        assert!(matches!(back, Command::install_start { path, source: None } if path == "/x"));
        // No arguments: an empty object, or nothing.
        assert!(matches!(
            Command::from_call("get_status", Value::Null),
            Ok(Command::get_status {})
        ));
        assert!(matches!(
            Command::from_call("get_status", json!({})),
            Ok(Command::get_status {})
        ));
    }

    #[test]
    fn a_bad_call_is_answered_with_what_is_wrong() {
        let e = Command::from_call("format_disk", json!({})).unwrap_err();
        assert!(e.contains("no command 'format_disk'"), "{e}");
        let e = Command::from_call("get_history", json!({"range_s": "soon"})).unwrap_err();
        assert!(e.contains("bad arguments for 'get_history'"), "{e}");
        let e = Command::from_call("get_breaches", json!({})).unwrap_err();
        assert!(e.contains("limit"), "{e}");
        // The window's own commands never reach the guard.
        assert!(Command::from_call("pick_folder", Value::Null).is_err());
    }

    #[test]
    fn the_processes_own_calls_are_no_command() {
        for c in [Control::DashboardClosing, Control::OpenDashboard] {
            assert_eq!(Control::from_name(c.name()), Some(c));
            assert!(!GRANTED.contains(&c.name()) && !UNGRANTED.contains(&c.name()));
        }
        assert_eq!(Control::from_name("get_status"), None);
    }

    #[test]
    fn every_command_is_named_once() {
        let all: Vec<_> = GRANTED.iter().chain(UNGRANTED).collect();
        let set: BTreeSet<_> = all.iter().collect();
        assert_eq!(set.len(), all.len(), "a command is listed twice");
    }

    /// The capability grants exactly the listed commands (the permissions themselves are
    /// generated by build.rs from the same list).
    #[test]
    fn the_capability_grants_the_listed_commands() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("capabilities/default.json");
        let cap: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let have: BTreeSet<String> = cap["permissions"]
            .as_array()
            .expect("capabilities/default.json: permissions")
            .iter()
            .map(|p| p.as_str().expect("a permission's name").to_string())
            .collect();
        let want: BTreeSet<String> = GRANTED
            .iter()
            .map(|c| format!("allow-{}", c.replace('_', "-")))
            .collect();
        let missing: Vec<_> = want.difference(&have).collect();
        let extra: Vec<_> = have.difference(&want).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "capabilities/default.json differs from src/command_list.rs: add {missing:?}, remove {extra:?}"
        );
    }

    /// docs/ipc.md's table of commands says what each does: every granted command has its row.
    #[test]
    fn the_docs_table_names_every_command() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/ipc.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let section = doc
            .split("\n## Commands")
            .nth(1)
            .expect("docs/ipc.md: ## Commands");
        let section = section.split("\n## ").next().unwrap();
        // The first cell of a row: "`start_fooocus` / `stop_fooocus`".
        let have: BTreeSet<String> = section
            .lines()
            .filter(|l| l.starts_with("| `"))
            .flat_map(|l| {
                let first = l[1..].split(" |").next().unwrap_or("");
                first
                    .split('`')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect();
        let want: BTreeSet<String> = GRANTED.iter().map(|s| s.to_string()).collect();
        let missing: Vec<_> = want.difference(&have).collect();
        let extra: Vec<_> = have.difference(&want).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "docs/ipc.md's table of commands differs from src/command_list.rs: add {missing:?}, remove {extra:?}"
        );
    }

    // ---- ui/src/generated/commands.ts ------------------------------------------------------

    /// A Rust name as Tauri expects it from the page (its commands take camelCase keys).
    fn camel(s: &str) -> String {
        let mut out = String::new();
        for (i, part) in s.split('_').enumerate() {
            let mut c = part.chars();
            match c.next() {
                Some(f) if i > 0 => out.extend(f.to_uppercase().chain(c)),
                _ => out.push_str(part),
            }
        }
        out
    }

    struct Cmd {
        name: &'static str,
        doc: Vec<String>,
        args: Vec<(&'static str, String)>,
        ret: String,
        granted: bool,
    }

    /// The text of `doc = r" ..."`, as `stringify!` writes a doc comment.
    fn docs(attrs: &[&str]) -> Vec<String> {
        attrs
            .iter()
            .filter_map(|a| {
                let s = a
                    .trim()
                    .strip_prefix("doc")?
                    .trim_start()
                    .strip_prefix('=')?;
                let raw = s.trim_start().starts_with('r');
                let text = &s[s.find('"')? + 1..s.rfind('"')?];
                let text = if raw {
                    text.to_string()
                } else {
                    serde_json::from_str(&format!("\"{text}\"")).ok()?
                };
                Some(text.trim().to_string())
            })
            .collect()
    }

    macro_rules! ts_commands {
        (
            guard { $( $(#[$doc:meta])* $name:ident ( $( $arg:ident : $ty:ty ),* ) -> $ret:ty ; )* }
            window { $( $(#[$wdoc:meta])* $wname:ident () -> $wret:ty ; )* }
            ungranted { $( $uname:ident () -> $uret:ty ; )* }
        ) => {
            fn commands(cfg: &ts_rs::Config) -> Vec<Cmd> {
                use ts_rs::TS;
                vec![
                    $( Cmd {
                        name: stringify!($name),
                        doc: docs(&[$( stringify!($doc) ),*]),
                        args: vec![$( (stringify!($arg), <$ty>::name(cfg)) ),*],
                        ret: <$ret>::name(cfg),
                        granted: true,
                    }, )*
                    $( Cmd {
                        name: stringify!($wname),
                        doc: docs(&[$( stringify!($wdoc) ),*]),
                        args: vec![],
                        ret: <$wret>::name(cfg),
                        granted: true,
                    }, )*
                    $( Cmd {
                        name: stringify!($uname),
                        doc: vec![],
                        args: vec![],
                        ret: <$uret>::name(cfg),
                        granted: false,
                    }, )*
                ]
            }

            /// Every type the granted commands take and return.
            fn visit_command_types(v: &mut Types) {
                use ts_rs::TypeVisitor;
                $( $( v.visit::<$ty>(); )* v.visit::<$ret>(); )*
                $( v.visit::<$wret>(); )*
            }
        };
    }
    crate::for_each_command!(ts_commands);

    /// The declarations of the types the commands carry, by their TypeScript names, found by
    /// following each command's types down to their fields (ts-rs's `visit_dependencies`).
    struct Types {
        cfg: ts_rs::Config,
        seen: HashSet<std::any::TypeId>,
        decls: BTreeMap<String, String>,
    }

    impl ts_rs::TypeVisitor for Types {
        fn visit<T: ts_rs::TS + 'static + ?Sized>(&mut self) {
            if !self.seen.insert(std::any::TypeId::of::<T>()) {
                return;
            }
            // A type of its own (derived), not a std one (`Vec<T>`, `Option<T>`, a number).
            if T::output_path().is_some() {
                let name = T::ident(&self.cfg);
                let decl = format!(
                    "{}export {}",
                    T::docs().unwrap_or_default(),
                    T::decl(&self.cfg)
                );
                // Each type is visited once: a name taken is another type's.
                let had = self.decls.insert(name.clone(), decl);
                assert!(
                    had.is_none(),
                    "two Rust types are both `{name}` in TypeScript: give one a #[ts(rename)]"
                );
            }
            T::visit_dependencies(self);
            T::visit_generics(self);
        }
    }

    /// The config both files are generated with.
    fn ts_config() -> ts_rs::Config {
        // Every number the app sends is far below 2^53: plain numbers, as serde_json writes them.
        ts_rs::Config::new().with_large_int("number")
    }

    /// `ui/src/generated/types.ts`: the data types of the commands and of the guard's updates.
    fn typescript_types() -> String {
        use ts_rs::TypeVisitor;
        let mut types = Types {
            cfg: ts_config(),
            seen: HashSet::new(),
            decls: BTreeMap::new(),
        };
        visit_command_types(&mut types);
        // What `take_updates`'s batch and `LastStop` hold as the guard's JSON, typed by name
        // (their `#[ts(type)]`s in src/updates.rs and src/lib.rs).
        types.visit::<guard_core::Status>();
        types.visit::<guard_core::events::GuardEvent>();
        types.visit::<guard_core::console::ConsoleLine>();
        types.visit::<guard_sample::Sample>();
        let mut s = String::from(
            "// Generated by src-tauri/src/command.rs from the Rust types (ts-rs): do not edit.\n\
             // (UPDATE_IPC=1 cargo test -p fooocus-guard --lib rewrites it; the test fails while it is stale.)\n\
             // The data of the commands in ./commands.ts and of the guard's updates.\n",
        );
        for decl in types.decls.values() {
            let lines: Vec<_> = decl.lines().map(str::trim_end).collect();
            s.push('\n');
            s.push_str(&lines.join("\n"));
            s.push('\n');
        }
        s
    }

    fn typescript() -> String {
        let cfg = ts_config();
        let cmds = commands(&cfg);
        // The types the calls name: the capitalised words of their arguments and replies.
        let mut used = BTreeSet::new();
        let texts = cmds
            .iter()
            .filter(|c| c.granted)
            .flat_map(|c| std::iter::once(&c.ret).chain(c.args.iter().map(|a| &a.1)));
        for t in texts {
            for w in t.split(|c: char| !c.is_alphanumeric() && c != '_') {
                if w.starts_with(|c: char| c.is_ascii_uppercase()) && w != "Array" {
                    used.insert(w.to_string());
                }
            }
        }

        let mut s = String::from(
            "// Generated from src-tauri/src/command_list.rs by src-tauri/src/command.rs: do not edit.\n\
             // (UPDATE_IPC=1 cargo test -p fooocus-guard --lib rewrites it; the test fails while it is stale.)\n\
             import { invoke } from \"@tauri-apps/api/core\";\n",
        );
        s.push_str(&format!(
            "import type {{ {} }} from \"./types\";\n\n",
            used.into_iter().collect::<Vec<_>>().join(", ")
        ));
        let names = |granted: bool| {
            cmds.iter()
                .filter(|c| c.granted == granted)
                .map(|c| format!("\"{}\"", c.name))
                .collect::<Vec<_>>()
        };
        s.push_str(&format!(
            "/** The commands the webview may call (capabilities/default.json). */\n\
             export type Granted =\n  | {};\n\n",
            names(true).join("\n  | ")
        ));
        s.push_str("/** Each command's call: its arguments by their Rust names, its reply. */\nexport const commands = {\n");
        for c in cmds.iter().filter(|c| c.granted) {
            if !c.doc.is_empty() {
                s.push_str(&format!("  /** {} */\n", c.doc.join(" ")));
            }
            let params: Vec<_> = c.args.iter().map(|(n, t)| format!("{n}: {t}")).collect();
            let keys: Vec<_> = c
                .args
                .iter()
                .map(|(n, _)| match camel(n) {
                    k if k == *n => k,
                    k => format!("{k}: {n}"),
                })
                .collect();
            let body = if keys.is_empty() {
                format!("invoke<{}>(\"{}\")", c.ret, c.name)
            } else {
                format!(
                    "invoke<{}>(\"{}\", {{ {} }})",
                    c.ret,
                    c.name,
                    keys.join(", ")
                )
            };
            s.push_str(&format!(
                "  {}: ({}) => {body},\n",
                c.name,
                params.join(", ")
            ));
        }
        s.push_str("};\n");
        s
    }

    /// Writes `file` (under ui/src/generated) with UPDATE_IPC set; fails while it differs.
    fn generated(file: &str, want: &str) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../ui/src/generated")
            .join(file);
        if std::env::var_os("UPDATE_IPC").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "ui/src/generated/{file} is stale: run `UPDATE_IPC=1 cargo test -p fooocus-guard --lib` and commit it"
        );
    }

    #[test]
    fn the_pages_commands_are_generated_from_the_list() {
        generated("commands.ts", &typescript());
    }

    #[test]
    fn the_pages_types_are_generated_from_rust() {
        generated("types.ts", &typescript_types());
    }

    /// Every state, in the order the table lists them.
    fn all_states() -> Vec<guard_core::supervisor::FooocusState> {
        use guard_core::supervisor::FooocusState::*;
        let all = vec![
            NotConfigured,
            Stopped,
            Starting,
            Ready,
            Generating,
            Stopping,
            Restarting,
            GaveUp,
            Asleep,
        ];
        // A new state fails to compile here until it is listed above.
        for s in &all {
            match s {
                NotConfigured | Stopped | Starting | Ready | Generating | Stopping | Restarting
                | GaveUp | Asleep => {}
            }
        }
        all
    }

    /// `ui/src/generated/actions.ts`: `Actions::for_state` as a table, for the page's own
    /// reasoning (ui/src/logic.ts) and the mock backend.
    fn typescript_actions() -> String {
        use guard_core::supervisor::Actions;
        let mut s = String::from(
            "// Generated by src-tauri/src/command.rs from Actions::for_state: do not edit.\n\
             // (UPDATE_IPC=1 cargo test -p fooocus-guard --lib rewrites it; the test fails while it is stale.)\n\
             import type { Actions, FooocusState } from \"./types\";\n\n\
             /** What each state allows, [without, with] an address to open. */\n\
             export const ACTIONS: Record<FooocusState, [Actions, Actions]> = {\n",
        );
        for state in all_states() {
            let name = serde_json::to_value(state).unwrap();
            let a = |url| serde_json::to_string(&Actions::for_state(state, url)).unwrap();
            s.push_str(&format!(
                "  {}: [{}, {}],\n",
                name.as_str().unwrap(),
                a(false),
                a(true)
            ));
        }
        s.push_str("};\n");
        s
    }

    #[test]
    fn the_pages_actions_table_is_generated_from_rust() {
        generated("actions.ts", &typescript_actions());
    }

    #[test]
    fn arguments_go_camel_case_as_tauri_takes_them() {
        assert_eq!(camel("range_s"), "rangeS");
        assert_eq!(camel("after"), "after");
    }
}
