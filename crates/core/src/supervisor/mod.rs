//! The supervisor: one thread that owns Fooocus's process, its container, its console, the
//! limit timers and the escalation, driven by messages from small helper threads.
//!
//! Threads:
//! * the supervisor loop (`run::Loop`, the effect code around the pure state machine in
//!   `machine`), which waits on its channel until the machine's next deadline (its own timers
//!   and the loop's, handed to it: the next limit, quiet period, grace period or restart), so
//!   limits are kept by one clock;
//! * the spawner, which lives as long as the guard: PR_SET_PDEATHSIG fires when the *thread*
//!   that spawned a child exits, so children are never spawned from short-lived threads;
//! * per run: a reader per output stream and a waiter;
//! * the sampler (see `sampling`), which reports usage to the loop.

use std::ffi::OsString;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use guard_contain::{BackendChoice, TreeProbe};
use serde::{Deserialize, Serialize};

use crate::config::diff::ConfigDiff;
use crate::config::Config;
use crate::console::{ConsoleBuffer, ConsoleLine, Stream};
use crate::events::GuardEvent;
use crate::policy::Usage;
use guard_fooocus::install::{self, Install, LaunchCommand};

mod io;
pub(crate) mod machine;
mod run;

/// What the guard runs.
#[derive(Clone, Debug)]
pub enum Target {
    Install(Install),
    /// Any command (`run -- COMMAND ARGS`), still contained and parsed.
    Command(LaunchCommand),
}

impl Target {
    fn command(&self, cfg: &Config) -> LaunchCommand {
        match self {
            Target::Install(i) => install::launch_command(i, &cfg.launch, cfg.launch.port),
            Target::Command(c) => c.clone(),
        }
    }
    fn install(&self) -> Option<&Install> {
        match self {
            Target::Install(i) => Some(i),
            Target::Command(_) => None,
        }
    }
}

pub struct GuardOptions {
    pub config: Config,
    pub target: Option<Target>,
    /// Copy Fooocus's output to this process's stdout (the CLI).
    pub passthrough: bool,
    pub demo: bool,
    /// Start Fooocus right away.
    pub autostart: bool,
    /// Console lines kept for the UI.
    pub console_lines: usize,
    /// Where finished generations and breaches go, and the first generation number (see
    /// `store::HistoryWriter::spawn`; None: not kept).
    pub history: Option<(crate::store::HistoryWriter, u64)>,
    /// End the supervisor when Fooocus has stopped for good (exited and not restarted, or
    /// given up): the headless CLI.
    pub exit_when_done: bool,
    /// Opens an address in the user's browser (the app's: guard-app's `browser::open`), for
    /// the `open_browser` setting. None: the setting has no effect (a library user, tests).
    pub browser: Option<Browser>,
}

/// Opens an address in the user's browser, outside Fooocus's tree.
pub type Browser = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

impl GuardOptions {
    pub fn new(config: Config, target: Option<Target>) -> Self {
        GuardOptions {
            config,
            target,
            passthrough: false,
            demo: false,
            autostart: true,
            console_lines: 5000,
            history: None,
            exit_when_done: false,
            browser: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum FooocusState {
    NotConfigured,
    Stopped,
    Starting,
    Ready,
    Generating,
    Stopping,
    Restarting,
    GaveUp,
    /// Stopped while idle to give its memory back; the gateway wakes it on the first visit.
    Asleep,
}

/// What the user may do in a state: derived here once, and rendered as it is by the tray's menu
/// and the dashboard's buttons (which used to decide each on their own, and disagreed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Actions {
    pub start: bool,
    pub stop: bool,
    pub restart: bool,
    pub open_browser: bool,
    pub stop_generation: bool,
    /// "Sleep now": only where a visit can wake Fooocus again (behind the gateway); the loop
    /// sets it, since the state alone does not say whether the gateway is there.
    #[serde(default)]
    pub sleep: bool,
    #[serde(default)]
    pub wake: bool,
}

impl Actions {
    pub fn for_state(state: FooocusState, has_url: bool) -> Actions {
        use FooocusState::*;
        let running = matches!(state, Starting | Ready | Generating | Restarting);
        Actions {
            // Asleep, Wake is the start (and Stop ends the sleep: the port is let go).
            start: !running && !matches!(state, NotConfigured | Stopping | Asleep),
            stop: running || state == Asleep,
            restart: running,
            // Asleep, opening Fooocus is how it wakes (the gateway keeps the address).
            open_browser: has_url && matches!(state, Ready | Generating | Asleep),
            stop_generation: state == Generating,
            sleep: false,
            wake: state == Asleep,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct GenerationProgress {
    pub id: u64,
    pub started_ms: i64,
    pub image_index: Option<u32>,
    pub image_total: Option<u32>,
    pub step: Option<u32>,
    pub step_total: Option<u32>,
    pub elapsed_s: f64,
    pub timeout_s: Option<f64>,
    /// The phase Fooocus is in (None: none seen yet).
    #[serde(default)]
    pub phase: Option<fooocus_console::Phase>,
    /// When the timeout counts from (epoch ms): the start, moved on by finished model loads,
    /// which it does not count in the first generation after Fooocus started
    /// (`loads_left_out`); during such a load (`phase` model_load) it does not count at all.
    #[serde(default)]
    pub timeout_from_ms: i64,
    /// The timeout leaves this generation's model loads out (the first after a start).
    #[serde(default)]
    pub loads_left_out: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct GracefulStop {
    pub available: bool,
    pub why: String,
}

/// What the UI shows (docs/ipc.md `Status`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Status {
    pub state: FooocusState,
    pub url: Option<String>,
    pub install: Option<Install>,
    pub backend: Option<BackendChoice>,
    pub gpu_status: String,
    pub generation: Option<GenerationProgress>,
    pub unseen_breach: bool,
    pub graceful_stop: GracefulStop,
    pub demo: bool,
    pub restarts: u32,
    pub pid: Option<u32>,
    /// What the user may do now (see `Actions::for_state`).
    pub actions: Actions,
    /// A model download while Fooocus starts (the first start downloads GBs).
    #[serde(default)]
    pub download: Option<crate::generation::ModelDownload>,
    /// The current (or last) sleep: what it gave back. Set while asleep and waking.
    #[serde(default)]
    pub sleep: Option<SleepInfo>,
    /// This session's last sleeps, oldest first, for the graphs' sleeping spans.
    #[serde(default)]
    pub sleep_spans: Vec<SleepSpan>,
}

/// When Fooocus slept (ms since the epoch); `woke_ms` None while it sleeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SleepSpan {
    pub asleep_ms: i64,
    pub woke_ms: Option<i64>,
}

/// A sleep as the views show it: "Asleep: wakes when you open Fooocus", and the memory given
/// back. Memory figures are the sampler's: the machine's RAM in use and the GPUs' VRAM in use
/// at the last sample before the stop and the first after the tree was gone (None: not
/// measured, e.g. no GPU figures); `held_ram_bytes` is what Fooocus's tree itself held.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SleepInfo {
    /// When Fooocus fell asleep (ms since the epoch).
    pub since_ms: i64,
    /// How long it had been idle (0 for the user's "Sleep now").
    pub idle_s: f64,
    pub held_ram_bytes: Option<u64>,
    pub ram_before_bytes: Option<u64>,
    pub ram_after_bytes: Option<u64>,
    pub vram_before_bytes: Option<u64>,
    pub vram_after_bytes: Option<u64>,
    /// About how long a wake takes (the last start-ups).
    pub wake_estimate_s: f64,
    /// Waking: the launch started and Fooocus is not ready yet.
    pub waking: bool,
    /// The last wake failed: why (it sleeps on; the next visit tries again).
    pub wake_failed: Option<String>,
}

/// What subscribers receive.
#[derive(Clone, Debug)]
pub enum Update {
    Event(GuardEvent),
    Status(Box<Status>),
    Console(Vec<ConsoleLine>),
    Sample(Arc<guard_sample::Sample>),
}

#[derive(Debug)]
enum Cmd {
    Start,
    Stop,
    Restart,
    StopGeneration,
    /// "Sleep now".
    Sleep,
    /// "Wake".
    Wake,
    /// New settings and what changed; the reply says they are in effect.
    SetConfig(Box<(Config, ConfigDiff)>, Sender<()>),
    SetTarget(Box<Target>),
    Warn(String),
    /// The user saw the last breach (the dashboard showed it); the reply says the status has it.
    BreachesSeen(Sender<()>),
    Shutdown(Sender<()>),
}

use guard_contain::process::ExitInfo;

enum Msg {
    Cmd(Cmd),
    Output {
        run: u64,
        stream: Stream,
        bytes: Vec<u8>,
    },
    Eof {
        run: u64,
        stream: Stream,
    },
    Exited {
        run: u64,
        exit: ExitInfo,
    },
    /// One sample from the sampler: the loop alone acts on it and publishes it.
    Sampled(Box<Sampled>),
    /// Gradio's queue as the gateway relays it.
    Queue {
        run: u64,
        event: guard_gateway::QueueEvent,
    },
    /// Something the container saw itself (Windows job messages).
    Container {
        run: u64,
        event: guard_contain::ContainerEvent,
    },
    StopSent {
        run: u64,
        result: Result<(), String>,
    },
}

/// What the sampler sends the loop at each sample, in one message (bottom's shape: collecting
/// apart from what is done with it). The loop checks the limits, keeps the sleep's memory
/// figures, writes the status and publishes the sample: it is the status's only writer.
pub struct Sampled {
    pub sample: Arc<guard_sample::Sample>,
    /// The tree's usage, for the limits (None: no tree is watched).
    pub usage: Option<Usage>,
    /// The machine's memory in use (the sleep's before and after).
    pub memory: MachineMemory,
    /// The GPU's status, when it changed since the last sample.
    pub gpu_status: Option<String>,
}

impl SleepInfo {
    /// RAM given back: the machine's drop across the sleep when measured (and positive), else
    /// what the tree held.
    pub fn ram_freed_bytes(&self) -> Option<u64> {
        match (self.ram_before_bytes, self.ram_after_bytes) {
            (Some(b), Some(a)) if b > a => Some(b - a),
            _ => self.held_ram_bytes,
        }
    }

    /// VRAM given back: the GPUs' drop across the sleep, when both samples had figures.
    pub fn vram_freed_bytes(&self) -> Option<u64> {
        match (self.vram_before_bytes, self.vram_after_bytes) {
            (Some(b), Some(a)) => Some(b.saturating_sub(a)),
            _ => None,
        }
    }

    /// The line the tray and the dashboard show.
    pub fn summary(&self) -> String {
        use crate::units::format_size;
        if self.waking {
            return format!(
                "Waking Fooocus up, about {:.0} s",
                self.wake_estimate_s.max(1.0)
            );
        }
        let mut line = "Asleep: wakes when you open Fooocus".to_string();
        let freed: Vec<String> = [
            self.ram_freed_bytes()
                .map(|b| format!("{} RAM", format_size(b))),
            self.vram_freed_bytes()
                .map(|b| format!("{} VRAM", format_size(b))),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !freed.is_empty() {
            line.push_str(&format!(" ({} given back)", freed.join(", ")));
        }
        if let Some(why) = &self.wake_failed {
            line.push_str(&format!("; the last wake failed: {why}"));
        }
        line
    }
}

/// The machine's memory in use at one sample.
#[derive(Clone, Copy, Debug)]
pub struct MachineMemory {
    /// When the sample began (a sample begun before the tree was gone is no "after").
    pub taken: std::time::Instant,
    pub ram_used_bytes: u64,
    pub vram_used_bytes: Option<u64>,
    /// Fooocus's tree (None: no tree).
    pub tree_ram_bytes: Option<u64>,
}

/// Shared with the handle and the sampler.
pub(crate) struct Shared {
    pub status: Mutex<Status>,
    pub console: Mutex<ConsoleBuffer>,
    subscribers: Mutex<Vec<Sender<Update>>>,
    /// The current tree, for the sampler: (probe, root pid).
    pub tree: Mutex<Option<(TreeProbe, u32)>>,
    pub generating: AtomicBool,
    /// How the last Fooocus process ended: (code, signal).
    pub last_exit: Mutex<Option<(Option<i32>, Option<i32>)>>,
}

impl Shared {
    pub(crate) fn publish(&self, u: Update) {
        let mut subs = self.subscribers.lock().unwrap();
        subs.retain(|s| match s.try_send(u.clone()) {
            Ok(()) => true,
            // A slow subscriber loses updates rather than stalling the supervisor.
            Err(crossbeam_channel::TrySendError::Full(_)) => true,
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => false,
        });
    }
}

/// A running guard. Cheap to clone; dropping the last clone does not stop it: call
/// [`Guard::shutdown`].
#[derive(Clone)]
pub struct Guard {
    tx: Sender<Msg>,
    shared: Arc<Shared>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl Guard {
    pub fn start(opts: GuardOptions) -> std::io::Result<Guard> {
        let (tx, rx) = unbounded();
        let state = if opts.target.is_some() {
            FooocusState::Stopped
        } else {
            FooocusState::NotConfigured
        };
        let shared = Arc::new(Shared {
            status: Mutex::new(Status {
                state,
                url: None,
                install: opts.target.as_ref().and_then(|t| t.install().cloned()),
                backend: None,
                gpu_status: "not sampled yet".into(),
                generation: None,
                unseen_breach: false,
                graceful_stop: GracefulStop {
                    available: false,
                    why: "Fooocus is not running".into(),
                },
                demo: opts.demo,
                restarts: 0,
                pid: None,
                actions: Actions::for_state(state, false),
                download: None,
                sleep: None,
                sleep_spans: Vec::new(),
            }),
            console: Mutex::new(ConsoleBuffer::new(opts.console_lines)),
            subscribers: Mutex::new(Vec::new()),
            tree: Mutex::new(None),
            generating: AtomicBool::new(false),
            last_exit: Mutex::new(None),
        });
        let spawner = io::Spawner::start()?;
        let autostart = opts.autostart && opts.target.is_some();
        let mut lp = run::Loop::new(opts, tx.clone(), shared.clone(), spawner);
        let thread = std::thread::Builder::new()
            .name("fooocus-guard-supervisor".into())
            .spawn(move || {
                lp.clean_stale();
                if autostart {
                    lp.autostart();
                }
                lp.run(rx);
            })?;
        Ok(Guard {
            tx,
            shared,
            thread: Arc::new(Mutex::new(Some(thread))),
        })
    }

    pub fn start_fooocus(&self) {
        let _ = self.tx.send(Msg::Cmd(Cmd::Start));
    }
    pub fn stop_fooocus(&self) {
        let _ = self.tx.send(Msg::Cmd(Cmd::Stop));
    }
    pub fn restart_fooocus(&self) {
        let _ = self.tx.send(Msg::Cmd(Cmd::Restart));
    }
    pub fn stop_generation(&self) {
        let _ = self.tx.send(Msg::Cmd(Cmd::StopGeneration));
    }
    /// "Sleep now": stop Fooocus the clean way and let the gateway wake it on a visit.
    pub fn sleep_fooocus(&self) {
        let _ = self.tx.send(Msg::Cmd(Cmd::Sleep));
    }
    /// "Wake": start Fooocus again after a sleep.
    pub fn wake_fooocus(&self) {
        let _ = self.tx.send(Msg::Cmd(Cmd::Wake));
    }

    /// Supervise another install from the next start on.
    pub fn set_target(&self, target: Target) {
        let _ = self.tx.send(Msg::Cmd(Cmd::SetTarget(Box::new(target))));
    }

    /// Tell the user something about the guard itself (console line, event, log).
    pub fn warn(&self, message: &str) {
        let _ = self.tx.send(Msg::Cmd(Cmd::Warn(message.to_string())));
    }

    /// Apply the supervisor's part of new settings (the limits, the restart policy; the rest
    /// it reads when it needs it, and what the run was started with waits for a restart, as
    /// `diff` tells the user). Returns once they are in effect.
    pub fn set_config(&self, config: Config, diff: &ConfigDiff) {
        let (rtx, rrx) = bounded(1);
        let cmd = Cmd::SetConfig(Box::new((config, diff.clone())), rtx);
        if self.tx.send(Msg::Cmd(cmd)).is_ok() {
            let _ = rrx.recv_timeout(Duration::from_secs(10));
        }
    }

    pub fn status(&self) -> Status {
        self.shared.status.lock().unwrap().clone()
    }

    /// The dashboard showed the last breach. Returns once the status says so.
    pub fn mark_breaches_seen(&self) {
        let (rtx, rrx) = bounded(1);
        if self.tx.send(Msg::Cmd(Cmd::BreachesSeen(rtx))).is_ok() {
            let _ = rrx.recv_timeout(Duration::from_secs(10));
        }
    }

    pub fn console(&self, after: Option<u64>, query: Option<&str>, max: usize) -> Vec<ConsoleLine> {
        self.shared.console.lock().unwrap().query(after, query, max)
    }

    /// Updates from now on. Bounded: a subscriber that does not keep up loses updates.
    pub fn subscribe(&self) -> Receiver<Update> {
        let (tx, rx) = bounded(4096);
        self.shared.subscribers.lock().unwrap().push(tx);
        rx
    }

    /// Report resource usage of the tree (from the sampler) to the limit policy.
    /// A sample, from the sampler (see [`Sampled`]).
    pub fn sampled(&self, s: Sampled) {
        let _ = self.tx.send(Msg::Sampled(Box::new(s)));
    }

    /// The tree the sampler should watch, and whether a generation runs (sample faster).
    pub fn tree(&self) -> (Option<(TreeProbe, u32)>, bool) {
        (
            self.shared.tree.lock().unwrap().clone(),
            self.shared
                .generating
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// Let every subscriber's channel end (after the supervisor stopped), so their threads
    /// drain what is left and finish.
    pub fn close_subscribers(&self) {
        self.shared.subscribers.lock().unwrap().clear();
    }

    /// Stop Fooocus cleanly, then end the supervisor. Every process of the tree is gone when
    /// this returns.
    pub fn shutdown(&self) {
        let (rtx, rrx) = bounded(1);
        if self.tx.send(Msg::Cmd(Cmd::Shutdown(rtx))).is_ok() {
            let _ = rrx.recv_timeout(Duration::from_secs(60));
        }
        if let Some(t) = self.thread.lock().unwrap().take() {
            let _ = t.join();
        }
    }

    /// Wait until the supervisor ends by itself (the CLI: gave up, or a command that exited
    /// with restarts off).
    pub fn wait(&self) {
        if let Some(t) = self.thread.lock().unwrap().take() {
            let _ = t.join();
        }
    }

    /// How the last Fooocus process ended: (exit code, signal).
    pub fn last_exit(&self) -> Option<(Option<i32>, Option<i32>)> {
        *self.shared.last_exit.lock().unwrap()
    }
}

/// Argv helper for the CLI: OsString from &str.
pub fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

#[cfg(test)]
mod actions_tests {
    use super::*;

    #[test]
    fn each_state_allows_its_actions() {
        use FooocusState::*;
        let a = |s, url| Actions::for_state(s, url);
        assert!(a(Stopped, false).start && !a(Stopped, false).stop);
        assert!(!a(NotConfigured, false).start, "nothing to start");
        assert!(
            !a(Stopping, true).start && !a(Stopping, true).stop,
            "wait for the stop"
        );
        assert!(a(GaveUp, false).start, "start again after fixing the cause");
        let g = a(Generating, true);
        assert!(g.stop && g.restart && g.open_browser && g.stop_generation && !g.start);
        assert!(
            !a(Starting, true).open_browser,
            "not before Fooocus is ready"
        );
        assert!(!a(Ready, false).open_browser, "no address yet");
        assert!(!a(Ready, true).stop_generation);
        let asleep = a(Asleep, false);
        assert!(
            asleep.wake && asleep.stop && !asleep.start && !asleep.restart,
            "asleep: Wake starts it, Stop lets the port go"
        );
        assert!(
            !a(Ready, true).wake && !a(Ready, true).sleep,
            "the loop decides sleep"
        );
        assert!(a(Asleep, true).open_browser, "opening Fooocus wakes it");
    }

    #[test]
    fn the_asleep_line_says_what_was_given_back_as_measured() {
        let gib = 1u64 << 30;
        let mut s = SleepInfo {
            held_ram_bytes: Some(9 * gib),
            ram_before_bytes: Some(20 * gib),
            ram_after_bytes: Some(12 * gib),
            vram_before_bytes: Some(7 * gib),
            vram_after_bytes: Some(gib),
            wake_estimate_s: 24.6,
            ..Default::default()
        };
        assert_eq!(
            s.summary(),
            "Asleep: wakes when you open Fooocus (8 GiB RAM, 6 GiB VRAM given back)"
        );
        // Other programs grew meanwhile: what the tree held is what it gave back.
        s.ram_after_bytes = Some(21 * gib);
        assert_eq!(s.ram_freed_bytes(), Some(9 * gib));
        s.waking = true;
        assert_eq!(s.summary(), "Waking Fooocus up, about 25 s");
        let bare = SleepInfo::default();
        assert_eq!(bare.summary(), "Asleep: wakes when you open Fooocus");
    }
}

#[cfg(all(test, unix))]
mod sleep_tests {
    use super::*;
    use crate::events::EventKind;

    /// What "Sleep now" answers while a plain command runs: nothing could wake it on a visit.
    #[test]
    fn sleep_now_without_the_gateway_is_refused_saying_why() {
        let cmd = LaunchCommand::plain("sh", os(&["-c", "sleep 30"]));
        let mut opts = GuardOptions::new(Config::default(), Some(Target::Command(cmd)));
        opts.autostart = false;
        opts.console_lines = 100;
        let guard = Guard::start(opts).unwrap();
        let updates = guard.subscribe();
        guard.start_fooocus();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let next_event = |want: &dyn Fn(&EventKind) -> bool| loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match updates.recv_timeout(left) {
                Ok(Update::Event(e)) if want(&e.kind) => return e.kind,
                Ok(_) => {}
                Err(e) => panic!("no such event within 60 s: {e}"),
            }
        };
        next_event(&|k| matches!(k, EventKind::Started { .. }));
        guard.sleep_fooocus();
        let EventKind::Warning { message } =
            next_event(&|k| matches!(k, EventKind::Warning { .. }))
        else {
            unreachable!()
        };
        assert!(
            message.starts_with("cannot sleep: only the gateway can wake Fooocus"),
            "{message}"
        );
        assert_eq!(
            guard.status().state,
            FooocusState::Starting,
            "still running"
        );
        guard.shutdown();
    }
}
