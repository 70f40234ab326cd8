//! Launching Fooocus: the command, the gateway in front of it, the container, the threads that
//! feed the loop; and where the user's browser goes.

use super::*;

/// What `launch_with_gateway` decided.
struct Launched {
    command: LaunchCommand,
    gateway: Option<Arc<guard_gateway::Gateway>>,
    /// Why there is no gateway, when the user wanted one.
    note: Option<String>,
    fooocus_port: Option<u16>,
    browse: Option<String>,
    gateway_run: Arc<std::sync::atomic::AtomicU64>,
}

/// The browser's URL for a server on `port` at the `listen` address of the settings.
fn browse_url(listen: Option<&str>, port: u16) -> String {
    match listen {
        None | Some("0.0.0.0") | Some("::") => format!("http://127.0.0.1:{port}"),
        Some(h) if h.contains(':') => format!("http://[{h}]:{port}"),
        Some(h) => format!("http://{h}:{port}"),
    }
}

/// Whether an error in a task kills Fooocus's worker thread (see `Tracker`): no `try` around
/// the task before 2.0.90 and in MRE; Fooocus-API's loop; anything unknown.
fn task_errors_kill_worker(install: Option<&guard_fooocus::install::Install>) -> bool {
    use guard_fooocus::install::Fork;
    match install {
        None => true,
        Some(i) => match i.fork {
            Fork::Mre | Fork::FooocusApi => true,
            Fork::Fooocus | Fork::Mashb1t => i
                .version
                .as_deref()
                .is_none_or(|v| install::version_le(v, "2.0.89")),
        },
    }
}

impl Loop {
    /// Launch Fooocus: the run's id and its OS side, or why there is none (said already).
    pub(super) fn start_run(&mut self, attempt: u32) -> Result<(u64, Run), LaunchError> {
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
        let Launched {
            command: launch,
            gateway,
            note: gateway_note,
            fooocus_port,
            browse,
            gateway_run,
        } = self.launch_with_gateway(&target, run_id);
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
        self.tracker.expected_port = fooocus_port;
        self.tracker.task_errors_kill_worker = task_errors_kill_worker(target.install());
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
                out: StreamReader::for_stream(Stream::Stdout),
                err: StreamReader::for_stream(Stream::Stderr),
                route: StopRoute::Unavailable {
                    why: "Fooocus is starting".into(),
                },
                gateway,
                gateway_run,
                gateway_note,
                port_taken: None,
                fooocus_port,
                browse,
                settle_at: None,
            },
        ))
    }

    /// Hands what `from` yields to the supervisor as messages, on a thread of its own that ends
    /// with `from` (its last sender dropped with the run's container or gateway).
    pub(super) fn forward<T: Send + 'static>(
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

    /// A sender for the gateway's queue events, handed to the supervisor as `Msg::Queue` for
    /// the run `gateway_run` names when each arrives.
    pub(super) fn queue_events(
        &self,
        gateway_run: Arc<std::sync::atomic::AtomicU64>,
    ) -> std::sync::mpsc::Sender<guard_gateway::QueueEvent> {
        let (qtx, qrx) = std::sync::mpsc::channel();
        self.forward("queue-events", qrx, move |event| Msg::Queue {
            run: gateway_run.load(Ordering::Relaxed),
            event,
        });
        qtx
    }

    /// The command for `target`, and the gateway in front of it when the user wants one: then
    /// Fooocus listens on an internal loopback port and the gateway on the user's port. If the
    /// gateway cannot start, the reason is kept and Fooocus starts on the user's port, but only
    /// on loopback when the user shares it (a token, or a listen address beyond loopback): the
    /// LAN never reaches Fooocus without the gateway in front.
    fn launch_with_gateway(&mut self, target: &Target, run_id: u64) -> Launched {
        let gateway_run = Arc::new(std::sync::atomic::AtomicU64::new(run_id));
        let Target::Install(install) = target else {
            return Launched {
                command: target.command(&self.cfg),
                gateway: None,
                note: None,
                fooocus_port: None,
                browse: None,
                gateway_run,
            };
        };
        // Waking: Fooocus starts behind the gateway that kept the port, where it listened
        // before (the gateway relays there). Kept in `parked` until the launch worked, so a
        // failed wake still has it.
        if let Some(p) = &self.parked {
            p.gateway_run.store(run_id, Ordering::Relaxed);
            let mut loopback = self.cfg.launch.clone();
            loopback.listen = None;
            return Launched {
                command: install::launch_command(install, &loopback, p.port),
                gateway: Some(p.gateway.clone()),
                note: None,
                fooocus_port: Some(p.port),
                browse: p.browse.clone(),
                gateway_run: p.gateway_run.clone(),
            };
        }
        if !self.cfg.gateway.enabled {
            let note = "the gateway is turned off in the settings".to_string();
            return self.direct(target, note, gateway_run);
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
                allowed_origins: self.cfg.gateway.allowed_origins.clone(),
                events: Some(self.queue_events(gateway_run.clone())),
                limits: guard_gateway::Limits::default(),
            })
            .map(|g| (g, port))
            .map_err(|e| e.to_string())
        });
        // Fooocus itself only on loopback: behind the gateway, or alone when it cannot start.
        let mut loopback = self.cfg.launch.clone();
        loopback.listen = None;
        match started {
            Ok((gw, port)) => Launched {
                command: install::launch_command(install, &loopback, port),
                gateway: Some(Arc::new(gw)),
                note: None,
                fooocus_port: Some(port),
                browse: Some(browse_url(
                    self.cfg.launch.listen.as_deref(),
                    self.cfg.launch.port,
                )),
                gateway_run,
            },
            Err(why) if shared => {
                let msg = format!(
                    "graceful stop is unavailable and Fooocus is not shared on the network: {why}; Fooocus starts on this computer only (127.0.0.1:{port}), because without the gateway nothing would check the token or the rate; free the port and restart Fooocus to share it again",
                    port = self.cfg.launch.port
                );
                self.guard_line(&msg);
                self.emit(EventKind::Warning { message: msg });
                let note =
                    format!("{why}; Fooocus is on this computer only until the gateway can start");
                Launched {
                    command: install::launch_command(install, &loopback, self.cfg.launch.port),
                    gateway: None,
                    note: Some(note),
                    fooocus_port: Some(self.cfg.launch.port),
                    browse: Some(browse_url(None, self.cfg.launch.port)),
                    gateway_run,
                }
            }
            Err(why) => {
                let msg = format!(
                    "graceful stop is unavailable: {why}; Fooocus starts directly on port {}",
                    self.cfg.launch.port
                );
                self.guard_line(&msg);
                self.emit(EventKind::Warning { message: msg });
                self.direct(target, why, gateway_run)
            }
        }
    }

    /// Fooocus alone on the user's port, at the listen address of the settings.
    fn direct(
        &self,
        target: &Target,
        note: String,
        gateway_run: Arc<std::sync::atomic::AtomicU64>,
    ) -> Launched {
        Launched {
            gateway_run,
            command: target.command(&self.cfg),
            gateway: None,
            note: Some(note),
            fooocus_port: Some(self.cfg.launch.port),
            browse: Some(browse_url(
                self.cfg.launch.listen.as_deref(),
                self.cfg.launch.port,
            )),
        }
    }

    /// Where the user's browser should go: the address the guard launched Fooocus (or the
    /// gateway) on, never one read from the console; a plain command's printed URL.
    /// Opens `url` (the user's address: the gateway's, with its token once) in the user's
    /// browser, from the guard and so outside Fooocus's tree, on a thread of its own: starting
    /// the opener is not the loop's to wait for.
    pub(super) fn open_browser(&self, url: &str) {
        let Some(browser) = self.browser.clone() else {
            return;
        };
        let url = guard_gateway::url_with_token(url, self.cfg.gateway.token.as_deref());
        let tx = self.tx.clone();
        let _ = std::thread::Builder::new()
            .name("fooocus-open-browser".into())
            .spawn(move || {
                if let Err(e) = browser(&url) {
                    let _ = tx.send(Msg::Cmd(Cmd::Warn(format!(
                        "could not open the browser: {e}"
                    ))));
                }
            });
    }

    pub(super) fn user_url(&self, url: String) -> String {
        self.io().and_then(|run| run.browse.clone()).unwrap_or(url)
    }
}
