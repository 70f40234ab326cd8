//! What Fooocus does, turned into the machine's inputs: its console, Gradio's queue, the
//! container's events, the sampler's usage, its exit.

use super::*;

/// Quiet this long, the console's open traceback is complete (see `Parser::settle`).
const CONSOLE_SETTLE: Duration = Duration::from_millis(300);

impl Loop {
    /// Fooocus printed `bytes` on `stream` (None: the stream closed, flush what is partial).
    pub(super) fn output(&mut self, run_id: u64, stream: Stream, bytes: Option<&[u8]>) {
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
                Signal::Event(fooocus_console::EventKind::TaskStart) => step_clock.reset(),
                Signal::Event(fooocus_console::EventKind::Progress { step, total }) => {
                    step_clock.on_progress(*step, *total, now)
                }
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
    pub(super) fn apply_changes(&mut self, now: Instant) {
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
                    if std::mem::take(&mut self.open_browser_at_ready) && self.cfg.open_browser {
                        self.open_browser(&url);
                    }
                    self.emit(EventKind::Ready { url, startup_s });
                    if self.startups.len() == STARTUPS_KEPT {
                        self.startups.pop_front();
                    }
                    self.startups.push_back(startup_s);
                    self.idle_since = Some(now);
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
                Change::Phase(phase, generation_id) => {
                    if phase == fooocus_console::Phase::Sampling {
                        // The step a graceful stop may be waiting for.
                        let step_seconds = self.step_clock.step_seconds();
                        self.drive_at(Input::Step { step_seconds }, now);
                    }
                    self.emit(EventKind::Phase {
                        phase,
                        generation_id,
                    });
                }
                Change::KnownFailure(failure) => {
                    let advice = failure.advice();
                    self.guard_line(advice);
                    self.emit(EventKind::KnownFailure {
                        failure,
                        advice: advice.to_string(),
                    });
                }
                Change::WrongPort(url) => {
                    let msg = format!(
                        "Fooocus says it listens on {url}, not on the port the guard gave it ({}): ignored",
                        self.tracker.expected_port.unwrap_or(0)
                    );
                    self.guard_line(&msg);
                    self.emit(EventKind::Warning { message: msg });
                }
                Change::Error { exception, message } => {
                    // Gradio's launch() fails before anything else runs: only while starting.
                    if let Some(port) = fooocus_console::taken_port(&message)
                        .filter(|_| matches!(self.tracker.phase, Phase::Starting))
                    {
                        self.port_taken(port);
                    }
                    self.emit(EventKind::FooocusError { exception, message });
                }
                Change::Oom(message) => self.emit(EventKind::OutOfMemory { message }),
                Change::Finished(g) => self.generation_finished(*g, now),
            }
        }
    }

    pub(super) fn update_route(&mut self) {
        let Some(run) = self.machine.run_mut() else {
            return;
        };
        let run = &mut run.io;
        let install = self.target.as_ref().and_then(|t| t.install());
        // The guard's own stop goes to Fooocus directly, on the loopback port the guard gave it
        // (behind the gateway its internal one: the gateway asks callers for the token), once
        // Fooocus has said it listens. Never to a URL from the console.
        let listening =
            self.tracker.listening.is_some() || matches!(self.tracker.phase, Phase::Ready { .. });
        let port = run.fooocus_port.filter(|_| listening);
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
            port,
            run.gateway.is_some(),
            &creds,
        );
        if let (StopRoute::Unavailable { why }, Some(note)) = (&mut run.route, &run.gateway_note) {
            why.push_str(&format!(" ({note})"));
        }
    }

    pub(super) fn queue_event(&mut self, run_id: u64, event: guard_gateway::QueueEvent) {
        use guard_gateway::QueueEvent;
        // Sent by the gateway kept through the sleep, whatever run it served last.
        if let QueueEvent::WakeRequested = event {
            self.drive(Input::Wake(WakeBy::Visit));
            return;
        }
        if self.machine.current(run_id).is_none() {
            return;
        }
        let now = Instant::now();
        self.tracker
            .on_queue(event, now, SystemTime::now(), &mut self.changes);
        self.apply_changes(now);
    }

    pub(super) fn container_event(&mut self, run_id: u64, event: guard_contain::ContainerEvent) {
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
    pub(super) fn port_taken(&mut self, port: u16) {
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

    pub(super) fn generation_finished(&mut self, g: Generation, now: Instant) {
        self.shared.generating.store(false, Ordering::Relaxed);
        self.recent_phases.push(g.phases);
        // A finished generation restarts the sleep's idle clock.
        self.idle_since = Some(now);
        // The console ended the task: a closed tab's call the gateway still held was it.
        if let Some(gw) = self.io().and_then(|r| r.gateway.as_ref()) {
            gw.task_ended();
        }
        let id = g.id;
        // In hand while the machine hears of it: a graceful stop may have ended it.
        self.finished = Some(g);
        let effects = self.machine.step(Input::GenerationFinished { id }, now);
        self.carry_out(effects);
        if let Some(g) = self.finished.take() {
            self.record_finished(g);
        }
    }

    /// One sample: the GPU's status, the sleep's memory figures, the limits; then the graphs
    /// get it. The loop is the only writer of the status, so the sampler only sends.
    pub(super) fn sampled(&mut self, s: Sampled) {
        let Sampled {
            sample,
            usage,
            memory,
            gpu_status,
        } = s;
        if let Some(g) = gpu_status {
            self.shared.status.lock().unwrap().gpu_status = g;
            self.publish_status();
        }
        self.last_memory = Some(memory);
        // The first sample begun after the tree was gone measures what it gave back.
        if self
            .asleep_pending
            .is_some_and(|(gone, _)| memory.taken >= gone && memory.tree_ram_bytes.is_none())
        {
            self.finish_asleep(Some(memory));
        }
        if let Some(u) = usage {
            self.usage(u);
        }
        self.shared.publish(Update::Sample(sample));
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
        if self.machine.watched().is_none() {
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

    pub(super) fn exited(&mut self, run_id: u64, exit: ExitInfo) {
        let Some(run) = self.machine.current(run_id) else {
            return;
        };
        let expected = self.machine.live().is_some_and(|l| l.ending());
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
        // Falling asleep (or a wake that failed): the gateway keeps the user's port, and the
        // woken Fooocus listens where this one did.
        let park = self.machine.sleeps_after_exit(run_id);
        if park {
            if let (Some(gateway), Some(port)) = (run.gateway.clone(), run.fooocus_port) {
                self.parked = Some(Parked {
                    gateway,
                    gateway_run: run.gateway_run.clone(),
                    port,
                    browse: run.browse.clone(),
                });
            }
        } else if let Some(gw) = &run.gateway {
            // The next run's gateway binds the same port: close this one now, even if a stop
            // request in flight still holds it.
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
            expected,
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
                action: events::BreachAction::KilledByKernel,
                generation_id: None,
                source: None,
                // A cap below what loading needs is met during the load.
                phase: self
                    .tracker
                    .current()
                    .and_then(|g| g.phase)
                    .or(self.tracker.idle_phase),
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
