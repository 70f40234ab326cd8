//! The supervisor loop: the effect code around the state machine (`machine.rs`). It owns the
//! OS side of a run (process, container, pipes, gateway), feeds the machine what happens, and
//! carries out the effects the machine returns.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use guard_contain::Containment;
use std::process::Stdio;

use super::io::{self, Spawner};
use super::machine::{Effect, ExitFacts, Input, LaunchError, Lifecycle, Machine, Settings};
use super::Actions;
use super::{
    Cmd, ExitInfo, GenerationProgress, GracefulStop, GuardOptions, Msg, Shared, Status, Target,
    Update,
};
use crate::config::Config;
use crate::console::{ConsoleLine, Stream, StreamReader};
use crate::events::{self, EventKind, LimitKind, StopHow};
use crate::generation::{
    Change, ClosedBy, Generation, Outcome, Phase, QueueSignal, Signal, Tracker,
};
use crate::install::{self, LaunchCommand};
use crate::policy::{self, Breach, LimitSet, Usage};
use crate::stop::{self, StopRoute};

/// The OS side of one run (the machine keeps its lifecycle).
pub(super) struct Run {
    pid: u32,
    /// Signals reach this very process or nothing (a pidfd where the kernel has them).
    process: guard_contain::process::ProcessHandle,
    container: Box<dyn Containment>,
    out: StreamReader,
    err: StreamReader,
    route: StopRoute,
    /// The gateway in front of this Fooocus (None: off, not possible, or it failed to start).
    gateway: Option<Arc<guard_gateway::Gateway>>,
    /// Why there is no gateway, when the user wanted one.
    gateway_note: Option<String>,
    /// Fooocus could not bind its port: (port, whether it is the user's own port).
    port_taken: Option<(u16, bool)>,
    /// When the console counts as quiet (no output since), to complete an open traceback.
    settle_at: Option<Instant>,
}

pub(super) struct Loop {
    cfg: Config,
    limits: LimitSet,
    target: Option<Target>,
    passthrough: bool,
    tx: Sender<Msg>,
    shared: Arc<Shared>,
    spawner: Spawner,
    machine: Machine<Run>,
    tracker: Tracker,
    /// The observed step time, for the grace of a graceful stop.
    step_clock: crate::policy::StepClock,
    next_run: u64,
    /// Shutting down: who to tell once Fooocus is gone.
    quit: Option<Sender<()>>,
    changes: Vec<Change>,
    last_status: Option<Status>,
    pending_console: Vec<ConsoleLine>,
    last_console_flush: Instant,
    store: Option<crate::store::HistoryWriter>,
    /// Bytes of Fooocus's output read but not yet handled by the loop (bounded).
    console_inflight: Arc<std::sync::atomic::AtomicUsize>,
    /// The history queue overflowed (said once).
    history_warned: bool,
    exit_when_done: bool,
    /// The last breach, for the summary of the stop it causes.
    last_breach: Option<EventKind>,
}

fn settings(cfg: &Config, limits: &LimitSet) -> Settings {
    Settings {
        restart: cfg.restart.clone(),
        startup: limits.startup,
        grace: limits.grace,
        can_terminate: guard_contain::process::CAN_TERMINATE,
    }
}

/// A stop route as the machine sees it: Ok when Fooocus can be asked, else why not.
fn route_result(route: &StopRoute) -> Result<(), String> {
    match route {
        StopRoute::Unavailable { why } => Err(why.clone()),
        _ => Ok(()),
    }
}

impl Loop {
    pub(super) fn new(
        opts: GuardOptions,
        tx: Sender<Msg>,
        shared: Arc<Shared>,
        spawner: Spawner,
    ) -> Loop {
        // The history database is opened and written on a thread of its own: a database held
        // by another process must not hold up the launch or any deadline.
        let mut opts = opts;
        let (store, next_id) = match opts.history.take() {
            Some((w, first)) => (Some(w), first),
            None => (None, 1),
        };
        let limits = LimitSet::from(&opts.config.limits);
        Loop {
            machine: Machine::new(settings(&opts.config, &limits)),
            limits,
            cfg: opts.config,
            target: opts.target,
            passthrough: opts.passthrough,
            tx,
            shared,
            spawner,
            tracker: Tracker::new(next_id),
            step_clock: Default::default(),
            next_run: 1,
            quit: None,
            changes: Vec::new(),
            last_status: None,
            pending_console: Vec::new(),
            last_console_flush: Instant::now(),
            store,
            console_inflight: Default::default(),
            history_warned: false,
            exit_when_done: opts.exit_when_done,
            last_breach: None,
        }
    }

    fn io(&self) -> Option<&Run> {
        self.machine.run().map(|r| &r.io)
    }

    /// Feed the machine and carry out what it decided.
    fn drive(&mut self, input: Input<Run>) {
        self.drive_at(input, Instant::now());
    }

    fn drive_at(&mut self, input: Input<Run>, now: Instant) {
        for effect in self.machine.step(input, now) {
            self.effect(effect);
        }
        // A kill closes the current generation: record it now.
        if !self.changes.is_empty() {
            self.apply_changes(now);
        }
    }

    fn effect(&mut self, effect: Effect) {
        match effect {
            Effect::Say(text) => self.guard_line(&text),
            Effect::Emit(kind) => self.emit(kind),
            Effect::Launch { attempt } => match self.start_run(attempt) {
                Ok((run, io)) => self.drive(Input::Launched { attempt, run, io }),
                Err(e) => self.drive(Input::LaunchFailed(e)),
            },
            Effect::Terminate => {
                // Gone already: its exit is on the way, and the kill timer stands regardless.
                if let Some(run) = self.io() {
                    let _ = run.process.terminate();
                }
            }
            Effect::KillTree(kill) => {
                let Some(run) = self.io() else { return };
                let began = Instant::now();
                let (took, result) = match run.container.kill_tree() {
                    Ok(r) => (r.elapsed, Ok(r.signalled)),
                    Err(e) => (began.elapsed(), Err(e.to_string())),
                };
                self.drive(Input::Killed { kill, took, result });
            }
            Effect::RequestStop => self.request_stop(),
            Effect::MarkLimit(limit) => self.tracker.mark_limit(limit),
            Effect::CloseGeneration { outcome, steps } => {
                if let Some(g) = self.tracker.current_mut() {
                    g.stop_how = Some(StopHow::Killed);
                    g.stop_steps = steps;
                }
                self.tracker.close(
                    ClosedBy::Limit,
                    Some(outcome),
                    SystemTime::now(),
                    &mut self.changes,
                );
            }
            // Handled where the generation is at hand (`generation_finished`).
            Effect::StoppedGracefully { .. } => {}
            Effect::AppendStopStep { generation, step } => {
                if let Some(store) = &self.store {
                    // A dropped step is said by the next overflow of a larger record.
                    let _ = store.append_stop_step(generation, &step);
                }
            }
        }
    }

    fn emit(&mut self, mut kind: EventKind) {
        if let EventKind::LimitBreached { .. } = kind {
            self.last_breach = Some(kind.clone());
        }
        crate::why::summarize(&mut kind, self.last_breach.as_ref(), &self.cfg);
        let ev = crate::events::GuardEvent::now(kind);
        events::trace(&ev);
        let kept = self.store.as_ref().is_none_or(|s| s.record_event(&ev));
        if let EventKind::LimitBreached { .. } = ev.kind {
            self.shared.status.lock().unwrap().unseen_breach = true;
        }
        self.shared.publish(Update::Event(ev));
        if !kept {
            self.history_overflowed();
        }
    }

    /// The disk or the database is too slow for the history queue: records were dropped.
    fn history_overflowed(&mut self) {
        if std::mem::replace(&mut self.history_warned, true) {
            return;
        }
        let msg = "the history database is not keeping up (held by another program, or a slow disk): some history records are dropped; supervision goes on".to_string();
        self.guard_line(&msg);
        self.emit(EventKind::Warning { message: msg });
    }

    fn guard_line(&mut self, text: &str) {
        let line = self
            .shared
            .console
            .lock()
            .unwrap()
            .push(Stream::Guard, text);
        self.pending_console.push(line);
        eprintln!("fooocus-guard: {text}");
    }

    pub(super) fn clean_stale(&mut self) {
        for group in guard_contain::clean_stale() {
            self.emit(EventKind::StaleCleaned { group });
        }
    }

    pub(super) fn autostart(&mut self) {
        self.effect(Effect::Launch { attempt: 0 });
    }

    pub(super) fn run(&mut self, rx: Receiver<Msg>) {
        loop {
            let wake = self.next_wake();
            let msg = match wake {
                Some(at) => rx.recv_deadline(at),
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match msg {
                Ok(m) => self.handle(m),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.on_time(Instant::now());
            self.flush_console(false);
            self.publish_status();
            // Leave only once the waiter has reaped the main process (or it is hopeless).
            if self.quit.is_some() && self.machine.quit_done(Instant::now()) {
                self.flush_console(true);
                self.publish_status();
                let done = self.quit.take().expect("quit");
                self.emit(EventKind::Stopped);
                let _ = done.send(());
                break;
            }
            let idle = matches!(self.machine.lifecycle, Lifecycle::Idle | Lifecycle::GaveUp);
            if idle && self.exit_when_idle() {
                break;
            }
        }
    }

    /// The CLI running a plain command with restarts off ends when the command ends.
    fn exit_when_idle(&self) -> bool {
        self.exit_when_done && self.next_run > 1
    }

    fn next_wake(&self) -> Option<Instant> {
        let mut at: Option<Instant> = None;
        let mut take = |t: Option<Instant>| {
            if let Some(t) = t {
                at = Some(at.map_or(t, |a: Instant| a.min(t)));
            }
        };
        take(self.machine.next_deadline());
        if let Some(run) = self.machine.run() {
            if self.machine.esc.is_none() {
                take(
                    policy::next_time_limit(&self.limits, &self.tracker, Some(run.started))
                        .map(|(t, _)| t),
                );
            }
            take(self.tracker.quiet_deadline());
            take(run.io.settle_at);
        }
        if !self.pending_console.is_empty() {
            take(Some(self.last_console_flush + Duration::from_millis(100)));
        }
        at
    }

    fn handle(&mut self, m: Msg) {
        match m {
            Msg::Cmd(c) => self.command(c),
            Msg::Output { run, stream, bytes } => {
                self.output(run, stream, Some(&bytes));
                self.console_inflight
                    .fetch_sub(bytes.len(), Ordering::Relaxed);
            }
            Msg::Eof { run, stream } => self.output(run, stream, None),
            Msg::Exited { run, exit } => self.exited(run, exit),
            Msg::Usage(u) => self.usage(u),
            Msg::Container { run, event } => self.container_event(run, event),
            Msg::Queue { run, event } => self.queue_event(run, event),
            Msg::StopSent { run, result } => {
                if let Err(why) = result {
                    self.drive(Input::StopFailed { run, why });
                }
            }
        }
    }

    fn command(&mut self, c: Cmd) {
        match c {
            Cmd::Start => self.drive(Input::Start),
            Cmd::Stop => self.drive(Input::Stop),
            Cmd::Restart => self.drive(Input::Restart),
            Cmd::StopGeneration => {
                let Some(run) = self.io() else { return };
                let input = Input::StopGeneration {
                    generation: self.tracker.current().map(|g| g.id),
                    route: route_result(&run.route),
                    step_seconds: self.step_clock.step_seconds(),
                };
                self.drive(input);
            }
            Cmd::SetTarget(t) => {
                let install = t.install().cloned();
                self.target = Some(*t);
                self.shared.status.lock().unwrap().install = install;
            }
            Cmd::Warn(message) => {
                self.guard_line(&message);
                self.emit(EventKind::Warning { message });
            }
            Cmd::SetConfig(cfg, reply) => {
                let needs = self.set_config(*cfg);
                let _ = reply.send(needs);
            }
            Cmd::Shutdown(done) => {
                self.quit = Some(done);
                self.drive(Input::Shutdown);
            }
        }
    }

    fn set_config(&mut self, cfg: Config) -> Vec<String> {
        let mut needs = Vec::new();
        if cfg.launch != self.cfg.launch {
            needs.push("launch options".to_string());
        }
        if cfg.install_path != self.cfg.install_path || cfg.python != self.cfg.python {
            needs.push("install".to_string());
        }
        if cfg.gateway != self.cfg.gateway {
            needs.push("gateway".to_string());
        }
        if cfg.containment != self.cfg.containment {
            needs.push("containment backend".to_string());
        }
        self.limits = LimitSet::from(&cfg.limits);
        self.machine.set_settings(settings(&cfg, &self.limits));
        if let Some(run) = self.io() {
            if let Err(e) = run.container.set_limits(&self.limits.containment()) {
                let msg = format!("could not apply the new RAM/CPU caps: {e}");
                self.guard_line(&msg);
                self.emit(EventKind::Warning { message: msg });
            }
        }
        self.cfg = cfg;
        needs
    }

    /// Launch Fooocus: the run's id and its OS side, or why there is none (said already).
    fn start_run(&mut self, attempt: u32) -> Result<(u64, Run), LaunchError> {
        let Some(target) = self.target.clone() else {
            self.guard_line("no Fooocus install is configured: pick one in the settings");
            return Err(LaunchError::NoTarget);
        };
        if let Some(install) = target.install() {
            // Fooocus's parser would exit with code 2 on an option it lacks: say so instead.
            if let Err(e) = install::check_options(install, &self.cfg.launch) {
                let msg = format!("cannot start Fooocus: {e}");
                self.guard_line(&msg);
                self.emit(EventKind::Warning { message: msg });
                return Err(LaunchError::Fatal);
            }
            for note in install::launch(install, &self.cfg.launch, self.cfg.launch.port).notes {
                self.guard_line(&note);
            }
        }
        let run_id = self.next_run;
        self.next_run += 1;
        let (launch, gateway, gateway_note) = self.launch_with_gateway(&target, run_id);
        let container = match guard_contain::create(self.cfg.containment_preference(), "fooocus") {
            Ok(c) => c,
            Err(e) => {
                let msg = format!("cannot contain Fooocus: {e}");
                self.guard_line(&msg);
                self.emit(EventKind::Warning { message: msg });
                return Err(LaunchError::Fatal);
            }
        };
        if let Err(e) = container.set_limits(&self.limits.containment()) {
            let msg = format!("cannot apply the RAM/CPU caps: {e}");
            self.guard_line(&msg);
            self.emit(EventKind::Warning { message: msg });
        }
        let mut cmd = launch.to_command();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Err(e) = container.prepare(&mut cmd) {
            let msg = format!("cannot prepare the container: {e}");
            self.guard_line(&msg);
            self.emit(EventKind::Warning { message: msg });
            return Err(LaunchError::Fatal);
        }
        let mut child = match self.spawner.spawn(cmd) {
            Ok(c) => c,
            Err(e) => {
                let msg = format!("cannot start {}: {e}", launch.program.display());
                self.guard_line(&msg);
                self.emit(EventKind::Warning { message: msg });
                return Err(LaunchError::Spawn);
            }
        };
        if let Err(e) = container.adopt(&child) {
            let _ = child.kill();
            let msg = format!("cannot put Fooocus in its container: {e}");
            self.guard_line(&msg);
            self.emit(EventKind::Warning { message: msg });
            return Err(LaunchError::Fatal);
        }
        if let Some(events) = container.take_events() {
            self.forward("container-events", events, move |event| Msg::Container {
                run: run_id,
                event,
            });
        }
        let pid = child.id();
        // Before the waiter owns (and may reap) the child.
        let process = guard_contain::process::ProcessHandle::new(&child);
        let choice = container.choice().clone();
        *self.shared.tree.lock().unwrap() = Some((container.probe(), pid));
        io::spawn_io(
            &self.tx,
            self.passthrough,
            &self.console_inflight,
            run_id,
            child,
        );
        self.tracker.restart();
        self.shared.status.lock().unwrap().backend = Some(choice.clone());
        let line = format!(
            "started {} (pid {pid}) in {}",
            launch.argv_display().join(" "),
            choice.kind.as_str()
        );
        self.guard_line(&line);
        self.emit(EventKind::Started {
            pid,
            backend: choice.kind.as_str().into(),
            backend_reason: choice.reason.clone(),
            version: target.install().and_then(|i| i.version.clone()),
            attempt,
        });
        Ok((
            run_id,
            Run {
                pid,
                process,
                container,
                out: StreamReader::new(),
                err: StreamReader::new(),
                route: StopRoute::Unavailable {
                    why: "Fooocus is starting".into(),
                },
                gateway,
                gateway_note,
                port_taken: None,
                settle_at: None,
            },
        ))
    }

    /// Hands what `from` yields to the supervisor as messages, on a thread of its own that ends
    /// with `from` (its last sender dropped with the run's container or gateway).
    fn forward<T: Send + 'static>(
        &self,
        name: &str,
        from: impl IntoIterator<Item = T> + Send + 'static,
        wrap: impl Fn(T) -> Msg + Send + 'static,
    ) {
        let tx = self.tx.clone();
        let _ = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                for item in from {
                    if tx.send(wrap(item)).is_err() {
                        break;
                    }
                }
            });
    }

    /// A sender for the gateway's queue events, handed to the supervisor as `Msg::Queue`.
    fn queue_events(&self, run_id: u64) -> std::sync::mpsc::Sender<guard_gateway::QueueEvent> {
        let (qtx, qrx) = std::sync::mpsc::channel();
        self.forward("queue-events", qrx, move |event| Msg::Queue {
            run: run_id,
            event,
        });
        qtx
    }

    /// The command for `target`, and the gateway in front of it when the user wants one: then
    /// Fooocus listens on an internal loopback port and the gateway on the user's port. If the
    /// gateway cannot start, the reason is kept and Fooocus starts on the user's port, but only
    /// on loopback when the user shares it (a token, or a listen address beyond loopback): the
    /// LAN never reaches Fooocus without the gateway in front.
    fn launch_with_gateway(
        &mut self,
        target: &Target,
        run_id: u64,
    ) -> (
        LaunchCommand,
        Option<Arc<guard_gateway::Gateway>>,
        Option<String>,
    ) {
        let Target::Install(install) = target else {
            return (target.command(&self.cfg), None, None);
        };
        if !self.cfg.gateway.enabled {
            let note = "the gateway is turned off in the settings".to_string();
            return (target.command(&self.cfg), None, Some(note));
        }
        let internal = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port());
        let listen_ip: std::net::IpAddr = self
            .cfg
            .launch
            .listen
            .as_deref()
            .and_then(|l| l.parse().ok())
            .unwrap_or([127, 0, 0, 1].into());
        let shared = self.cfg.gateway.token.is_some() || !listen_ip.is_loopback();
        let started = internal.map_err(|e| e.to_string()).and_then(|port| {
            guard_gateway::Gateway::start(guard_gateway::GatewayConfig {
                listen: std::net::SocketAddr::new(listen_ip, self.cfg.launch.port),
                upstream: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                token: self.cfg.gateway.token.clone(),
                rate_per_minute: self.cfg.gateway.rate_per_minute,
                events: Some(self.queue_events(run_id)),
                limits: guard_gateway::Limits::default(),
            })
            .map(|g| (g, port))
            .map_err(|e| e.to_string())
        });
        // Fooocus itself only on loopback: behind the gateway, or alone when it cannot start.
        let mut loopback = self.cfg.launch.clone();
        loopback.listen = None;
        match started {
            Ok((gw, port)) => {
                let cmd = install::launch_command(install, &loopback, port);
                (cmd, Some(Arc::new(gw)), None)
            }
            Err(why) if shared => {
                let msg = format!(
                    "graceful stop is unavailable and Fooocus is not shared on the network: {why}; Fooocus starts on this computer only (127.0.0.1:{port}), because without the gateway nothing would check the token or the rate; free the port and restart Fooocus to share it again",
                    port = self.cfg.launch.port
                );
                self.guard_line(&msg);
                self.emit(EventKind::Warning { message: msg });
                let cmd = install::launch_command(install, &loopback, self.cfg.launch.port);
                let note =
                    format!("{why}; Fooocus is on this computer only until the gateway can start");
                (cmd, None, Some(note))
            }
            Err(why) => {
                let msg = format!(
                    "graceful stop is unavailable: {why}; Fooocus starts directly on port {}",
                    self.cfg.launch.port
                );
                self.guard_line(&msg);
                self.emit(EventKind::Warning { message: msg });
                (target.command(&self.cfg), None, Some(why))
            }
        }
    }

    /// Where the user's browser should go: the gateway's address when there is one.
    fn user_url(&self, url: String) -> String {
        match self.io() {
            Some(run) if run.gateway.is_some() => {
                let host = match self.cfg.launch.listen.as_deref() {
                    None | Some("0.0.0.0") | Some("::") => "127.0.0.1",
                    Some(h) => h,
                };
                format!("http://{host}:{}", self.cfg.launch.port)
            }
            _ => url,
        }
    }

    /// Fooocus printed `bytes` on `stream` (None: the stream closed, flush what is partial).
    fn output(&mut self, run_id: u64, stream: Stream, bytes: Option<&[u8]>) {
        let Some(run) = self.machine.run_mut().filter(|r| r.id == run_id) else {
            return;
        };
        let run = &mut run.io;
        let now = Instant::now();
        let wall = SystemTime::now();
        run.settle_at = Some(now + CONSOLE_SETTLE);
        let reader = if stream == Stream::Stdout {
            &mut run.out
        } else {
            &mut run.err
        };
        let mut console = self.shared.console.lock().unwrap();
        let pending = &mut self.pending_console;
        let tracker = &mut self.tracker;
        let changes = &mut self.changes;
        // Fooocus's console holds prompts: it reaches the log files only if the user opted in.
        let log_console = self.cfg.log_prompts;
        let on_line = |line: &str| {
            if log_console {
                tracing::info!(target: "fooocus_guard::console", stream = ?stream, line);
            }
            pending.push(console.push(stream, line))
        };
        let step_clock = &mut self.step_clock;
        let on_signal = |sig| {
            match &sig {
                Signal::TaskStart => step_clock.reset(),
                Signal::Progress { step, total } => step_clock.on_progress(*step, *total, now),
                _ => {}
            }
            tracker.on_signal(sig, now, wall, changes)
        };
        match bytes {
            Some(b) => reader.feed(b, on_line, on_signal),
            None => reader.finish(on_line, on_signal),
        }
        drop(console);
        self.apply_changes(now);
    }

    /// Act on what the tracker saw.
    fn apply_changes(&mut self, now: Instant) {
        let changes = std::mem::take(&mut self.changes);
        for c in changes {
            match c {
                Change::Listening(url) => {
                    let url = self.user_url(url);
                    self.shared.status.lock().unwrap().url = Some(url);
                    self.update_route();
                }
                Change::Version(_) => self.update_route(),
                Change::Ready(url) => {
                    let startup_s = match self.machine.run() {
                        Some(r) => now.duration_since(r.started).as_secs_f64(),
                        None => 0.0,
                    };
                    let url = self.user_url(url);
                    self.shared.status.lock().unwrap().url = Some(url.clone());
                    self.update_route();
                    self.emit(EventKind::Ready { url, startup_s });
                    self.drive_at(Input::Ready, now);
                }
                Change::Unhealthy(reason) => {
                    self.guard_line(&format!(
                        "Fooocus is up but cannot generate: {reason}; restarting it"
                    ));
                    self.emit(EventKind::Unhealthy { reason });
                    self.drive_at(Input::Unhealthy, now);
                }
                Change::Started(id) => {
                    self.shared.generating.store(true, Ordering::Relaxed);
                    self.emit(EventKind::GenerationStarted { generation_id: id });
                }
                Change::Progress => {}
                Change::Error { exception, message } => {
                    if let Some(port) = taken_port(&message) {
                        self.port_taken(port);
                    }
                    self.emit(EventKind::FooocusError { exception, message });
                }
                Change::Oom(message) => self.emit(EventKind::OutOfMemory { message }),
                Change::Finished(g) => self.generation_finished(*g, now),
            }
        }
    }

    fn update_route(&mut self) {
        let Some(run) = self.machine.run_mut() else {
            return;
        };
        let run = &mut run.io;
        let install = self.target.as_ref().and_then(|t| t.install());
        let url = self
            .shared
            .status
            .lock()
            .unwrap()
            .url
            .clone()
            .or_else(|| self.tracker.listening.clone());
        // The status URL is the gateway's when there is one, which asks callers for the token:
        // the guard's own stop goes to Fooocus directly, on its internal loopback port.
        let url = match &run.gateway {
            Some(gw) if url.is_some() => Some(format!("http://{}", gw.upstream())),
            _ => url,
        };
        let version = self
            .tracker
            .version
            .clone()
            .or_else(|| install.and_then(|i| i.version.clone()));
        // A develop build between 2.1.865 and 2.2.0 still says 2.1.865 but already stops per
        // session; its worker's "Started worker with PID" line gives it away.
        let version = if self.tracker.per_session_stop {
            None
        } else {
            version
        };
        let creds = install
            .map(|i| stop::Credentials::for_install(&i.fooocus_dir, &self.cfg.launch.extra_args))
            .unwrap_or_default();
        run.route = StopRoute::for_fooocus(
            install.map(|i| i.fork),
            version.as_deref(),
            url.as_deref(),
            run.gateway.is_some(),
            &creds,
        );
        if let (StopRoute::Unavailable { why }, Some(note)) = (&mut run.route, &run.gateway_note) {
            why.push_str(&format!(" ({note})"));
        }
    }

    fn record_finished(&mut self, g: Generation) {
        self.emit(EventKind::GenerationFinished {
            generation_id: g.id,
            outcome: g.outcome.as_str().into(),
            seconds: g.duration_s().unwrap_or(0.0),
            closed_by: g.closed_by.map(|c| c.as_str()).unwrap_or("").into(),
            images_done: g.images_done,
            images_total: g.images_total,
            peak_ram_bytes: g.peaks.ram_bytes,
            peak_vram_bytes: g.peaks.vram_bytes,
            peak_cpu_percent: g.peaks.cpu_percent,
        });
        if !self.store.as_ref().is_none_or(|s| s.save_generation(&g)) {
            self.history_overflowed();
        }
    }

    fn queue_event(&mut self, run_id: u64, event: guard_gateway::QueueEvent) {
        use guard_gateway::QueueEvent;
        if self.machine.current(run_id).is_none() {
            return;
        }
        let signal = match event {
            QueueEvent::Generating {
                session_hash,
                fn_index,
            } => QueueSignal::Generating {
                session_hash,
                fn_index,
            },
            QueueEvent::Completed {
                session_hash,
                fn_index,
            } => QueueSignal::Completed {
                session_hash,
                fn_index,
            },
            QueueEvent::Joined { .. } | QueueEvent::Started { .. } => return,
        };
        let now = Instant::now();
        self.tracker
            .on_queue(signal, now, SystemTime::now(), &mut self.changes);
        self.apply_changes(now);
    }

    fn container_event(&mut self, run_id: u64, event: guard_contain::ContainerEvent) {
        use guard_contain::ContainerEvent;
        let Some(run) = self.machine.current(run_id) else {
            return;
        };
        let run = &run.io;
        match event {
            // Windows does not kill at the job's memory limit: the allocation that crossed it
            // failed, and Fooocus is left in whatever state its error handling leaves. Treat it
            // as the RAM cap's breach: stop, kill, restart.
            ContainerEvent::MemoryLimitHit => {
                let Some(cap) = self.limits.memory else {
                    return;
                };
                let observed = run
                    .container
                    .native_usage()
                    .map(|u| u.peak_memory_bytes.max(cap))
                    .unwrap_or(cap);
                self.breach(
                    Breach {
                        limit: LimitKind::Memory,
                        configured: cap as f64,
                        observed: observed as f64,
                        due: None,
                        source: None,
                    },
                    Instant::now(),
                );
            }
            ContainerEvent::ProcessExited {
                pid,
                code,
                abnormal: true,
            } if pid != run.pid => {
                let code = code.map_or("unknown".into(), |c| format!("{c:#x}"));
                self.guard_line(&format!(
                    "a process of Fooocus's tree (pid {pid}) crashed (exit code {code})"
                ));
            }
            ContainerEvent::NewProcess { .. }
            | ContainerEvent::ProcessExited { .. }
            | ContainerEvent::Empty => {}
        }
    }

    /// Gradio was given `--port P` and P is taken: it tries only that port and exits
    /// (networking.py: "Cannot find empty port in range: P-P"). Behind the gateway P is the
    /// guard's internal port, and the restart picks another; the user's own port stays taken
    /// until they act, so restarting cannot help.
    fn port_taken(&mut self, port: u16) {
        let Some(run) = self.machine.run_mut() else {
            return;
        };
        let run = &mut run.io;
        let users = run.gateway.is_none() && port == self.cfg.launch.port;
        run.port_taken = Some((port, users));
        let msg = if users {
            format!("port {port} is taken by another program (another Fooocus?): close it, or pick another port in the settings")
        } else {
            format!("Fooocus's internal port {port} was taken just before it started; the restart uses another")
        };
        self.guard_line(&msg);
        self.emit(EventKind::Warning { message: msg });
    }

    fn flush_console(&mut self, force: bool) {
        if self.pending_console.is_empty() {
            return;
        }
        let now = Instant::now();
        if force || now.duration_since(self.last_console_flush) >= Duration::from_millis(100) {
            let lines = std::mem::take(&mut self.pending_console);
            self.last_console_flush = now;
            self.shared.publish(Update::Console(lines));
        }
    }

    fn publish_status(&mut self) {
        let now = Instant::now();
        let mut st = self.shared.status.lock().unwrap();
        // The one place the state is derived: the tray and the dashboard render it as it is.
        st.state = self.machine.state(
            self.target.is_some(),
            matches!(self.tracker.phase, Phase::Ready { .. }),
            self.tracker.current().is_some(),
        );
        st.restarts = self.machine.restarts;
        let run = self.machine.run().map(|r| &r.io);
        st.pid = run.map(|r| r.pid);
        if run.is_none() {
            st.url = None;
        }
        st.graceful_stop = match run {
            Some(r) => match &r.route {
                StopRoute::Unavailable { why } => GracefulStop {
                    available: false,
                    why: why.clone(),
                },
                _ => GracefulStop {
                    available: true,
                    why: "Fooocus can be asked to stop a generation".into(),
                },
            },
            _ => GracefulStop {
                available: false,
                why: "Fooocus is not running".into(),
            },
        };
        st.actions = Actions::for_state(st.state, st.url.is_some());
        st.download = (st.state == super::FooocusState::Starting)
            .then(|| self.tracker.download.clone())
            .flatten();
        st.generation = self.tracker.current().map(|g| GenerationProgress {
            id: g.id,
            started_ms: g.started_ms,
            image_index: g.image_index,
            image_total: g.images_total,
            step: g.last_step,
            step_total: g.steps_total,
            elapsed_s: g.elapsed(now).as_secs_f64(),
            timeout_s: self.limits.timeout.map(|d| d.as_secs_f64()),
        });
        // Elapsed time alone is no reason to publish: the UI counts it up itself.
        let mut key = st.clone();
        if let Some(g) = key.generation.as_mut() {
            g.elapsed_s = 0.0;
        }
        let changed = self.last_status.as_ref() != Some(&key);
        let snapshot = st.clone();
        drop(st);
        if changed {
            self.last_status = Some(key);
            self.shared.publish(Update::Status(Box::new(snapshot)));
        }
    }
    fn generation_finished(&mut self, g: Generation, now: Instant) {
        self.shared.generating.store(false, Ordering::Relaxed);
        // The console ended the task: a closed tab's call the gateway still held was it.
        if let Some(gw) = self.io().and_then(|r| r.gateway.as_ref()) {
            gw.task_ended();
        }
        let mut g = g;
        let effects = self
            .machine
            .step(Input::GenerationFinished { id: g.id }, now);
        for effect in effects {
            match effect {
                // A graceful stop ended it.
                Effect::StoppedGracefully { steps, by_user } => {
                    g.stop_how = Some(StopHow::Graceful);
                    g.stop_steps = steps;
                    if by_user {
                        g.outcome = Outcome::Stopped;
                    }
                }
                other => self.effect(other),
            }
        }
        self.record_finished(g);
    }

    fn usage(&mut self, u: Usage) {
        if !self.machine.running() {
            return;
        }
        if let Some(g) = self.tracker.current_mut() {
            g.peaks.observe(
                u.ram_bytes,
                u.swap_bytes,
                u.tree_vram_bytes.or(u.device_vram_bytes),
                u.cpu_percent,
            );
        }
        if self.machine.esc.is_some() {
            return;
        }
        let watchdog = self.io().is_some_and(|r| {
            r.container
                .choice()
                .unenforced
                .iter()
                .any(|s| s == "memory")
        });
        let generating = self.tracker.current().is_some();
        if let Some(b) = policy::check_usage(&self.limits, &u, generating, watchdog) {
            self.breach(b, Instant::now());
        }
    }

    fn on_time(&mut self, now: Instant) {
        let wall = SystemTime::now();
        if let Some(run) = self.machine.run_mut() {
            let run = &mut run.io;
            if run.settle_at.is_some_and(|at| now >= at) {
                run.settle_at = None;
                let (tracker, changes) = (&mut self.tracker, &mut self.changes);
                for reader in [&mut run.out, &mut run.err] {
                    reader.settle(|sig| tracker.on_signal(sig, now, wall, changes));
                }
            }
        }
        // The machine's timers: grace, kill, restart deadline, backoff.
        self.drive_at(Input::Tick, now);
        // Stopping on purpose: no limit applies any more.
        let Some(run) = self.machine.run().filter(|r| r.end.is_none()) else {
            return;
        };
        let started = run.started;
        if self.machine.esc.is_none() {
            if let Some(b) = policy::check_time(&self.limits, &self.tracker, Some(started), now) {
                self.breach(b, now);
            }
        }
        self.tracker.on_tick(now, wall, &mut self.changes);
        self.apply_changes(now);
    }

    /// A limit fired: the machine decides between a graceful stop and a kill.
    fn breach(&mut self, breach: Breach, now: Instant) {
        let route = self.io().map_or(Err("Fooocus is not running".into()), |r| {
            route_result(&r.route)
        });
        let input = Input::Breach {
            breach,
            generation: self.tracker.current().map(|g| g.id),
            route,
            step_seconds: self.step_clock.step_seconds(),
        };
        self.drive_at(input, now);
    }

    /// Ask Fooocus to stop the current generation, on a thread (the answer is `StopSent`).
    fn request_stop(&self) {
        let Some(run) = self.machine.run() else {
            return;
        };
        let route = run.io.route.clone();
        let gateway = run.io.gateway.clone();
        let run_id = run.id;
        let tx = self.tx.clone();
        let shared = self.shared.clone();
        let _ = std::thread::Builder::new()
            .name("fooocus-stop".into())
            .spawn(move || {
                let result = match (&route, gateway) {
                    // The tab's own Stop, through the gateway that saw its session.
                    (StopRoute::Gateway, Some(gw)) => {
                        gw.request_stop().map(|_| ()).map_err(|e| e.to_string())
                    }
                    _ => {
                        let still = || shared.generating.load(Ordering::Relaxed);
                        stop::request_stop(&route, &still).map(|_| ())
                    }
                };
                let _ = tx.send(Msg::StopSent {
                    run: run_id,
                    result,
                });
            });
    }

    fn exited(&mut self, run_id: u64, exit: ExitInfo) {
        let Some(run) = self.machine.current(run_id) else {
            return;
        };
        let end = run.end;
        let run = &run.io;
        // Whatever the main process left behind goes with it.
        let _ = run.container.kill_tree();
        let oom_kills = run.container.oom_kills();
        let (code, signal) = exit.parts();
        // Linux: the kernel SIGKILLed it in the cgroup. Windows: the job refused memory.
        let oom = oom_kills > 0 && (signal == Some(9) || cfg!(windows));
        *self.shared.last_exit.lock().unwrap() = Some((code, signal));
        let pid = run.pid;
        let port_taken = run.port_taken.or_else(|| {
            let port = self.tracker.port_taken?;
            Some((port, run.gateway.is_none() && port == self.cfg.launch.port))
        });
        let now = Instant::now();
        *self.shared.tree.lock().unwrap() = None;
        self.shared.generating.store(false, Ordering::Relaxed);
        // The next run's gateway binds the same port: close this one now, even if a stop
        // request in flight still holds it.
        if let Some(gw) = &run.gateway {
            gw.close();
        }
        let peak_ram = self.tracker.current().and_then(|g| g.peaks.ram_bytes);
        self.tracker
            .on_exit(oom, SystemTime::now(), &mut self.changes);
        self.apply_changes(now);
        self.emit(EventKind::Exited {
            pid,
            code,
            signal,
            oom,
            expected: end.is_some(),
        });
        if oom {
            let cap = self.limits.memory.unwrap_or(0);
            self.guard_line(&format!(
                "Fooocus was killed by the kernel: the tree reached its RAM cap of {}",
                crate::units::format_size(cap)
            ));
            self.emit(EventKind::LimitBreached {
                limit: LimitKind::Memory,
                configured: cap as f64,
                observed: peak_ram.unwrap_or(cap) as f64,
                action: "killed_by_kernel".into(),
                generation_id: None,
                source: None,
            });
        }
        let facts = ExitFacts {
            code,
            signal,
            oom,
            port_taken,
        };
        self.drive_at(Input::Exited { run: run_id, facts }, now);
    }
}

/// Quiet this long, the console's open traceback is complete (see `Parser::settle`).
const CONSOLE_SETTLE: Duration = Duration::from_millis(300);

/// The port in Gradio's "Cannot find empty port in range: P-P" (its networking.py, 3.39/3.41).
fn taken_port(message: &str) -> Option<u16> {
    let rest = message.split("Cannot find empty port in range:").nth(1)?;
    let first = rest.trim_start().split('-').next()?;
    first.trim().parse().ok()
}

#[cfg(test)]
mod port_tests {
    #[test]
    fn the_taken_port_is_read_from_gradios_message() {
        let m = "Cannot find empty port in range: 7865-7865. You can specify a different port by setting the GRADIO_SERVER_PORT environment variable or passing the `server_port` parameter to `launch()`.";
        assert_eq!(super::taken_port(m), Some(7865));
        assert_eq!(super::taken_port("CUDA out of memory"), None);
    }
}
