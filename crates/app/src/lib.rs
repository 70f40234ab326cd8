//! guard-app: the application service both shells stand on (the tray app's commands and the
//! CLI are thin layers over [`App`]), and the app's plumbing: the settings file in use, the
//! rotating logs, start with the session, one guard per install, the `/metrics` page and the
//! demo mode's simulator. The supervisor it runs is guard-core's.

pub mod autostart;
pub mod browser;
pub mod demo;
pub mod instance;
pub mod logging;
pub mod metrics;
pub mod paths;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use guard_core::config::diff::{ConfigDiff, Effect, Setting};
use guard_core::config::{Config, ConfigFile, FieldError};
use guard_core::sampling::Sampling;
use guard_core::store::{HistoryReader, HistoryWriter};
use guard_core::supervisor::{Guard, GuardOptions, Status, Target};
use guard_fooocus::install::{self, Install};

pub use guard_core::store::{BreachRecord, GenerationRecord, HistoryPoint, LimitStats};

#[derive(Clone, Debug, Default)]
pub struct AppOptions {
    /// Supervise the Fooocus simulator instead of the configured install.
    pub demo: bool,
    /// Settings file (default: the platform's config dir).
    pub config: Option<PathBuf>,
    /// Data dir for history and logs (default: the platform's data dir).
    pub data_dir: Option<PathBuf>,
    /// Settings already loaded (the CLI: the file with the command line on top); the file is
    /// then neither read nor written.
    pub settings: Option<Config>,
    /// What to supervise instead of the settings' install (the CLI's --install or command).
    pub target: Option<Target>,
    /// Copy Fooocus's output to stdout (the CLI).
    pub passthrough: bool,
    /// End the supervisor once Fooocus stopped for good (the CLI).
    pub exit_when_done: bool,
    /// Do not start Fooocus until asked (the CLI subscribes first, so it misses no event).
    pub start_later: bool,
}

/// The answer to a save: the errors, or what changed and when each change takes effect (in
/// the settings panel's words, from one [`ConfigDiff`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SaveResult {
    pub saved: bool,
    pub errors: Vec<FieldError>,
    /// In effect already.
    pub applied_live: Vec<String>,
    /// Takes effect when Fooocus restarts (empty while nothing runs: it simply starts with
    /// them).
    pub needs_restart: Vec<String>,
    /// Takes effect when Fooocus Guard itself restarts.
    pub needs_guard_restart: Vec<String>,
}

impl SaveResult {
    fn refused(errors: Vec<FieldError>) -> SaveResult {
        SaveResult {
            saved: false,
            errors,
            ..SaveResult::default()
        }
    }
}

pub struct App {
    guard: Guard,
    file: Option<ConfigFile>,
    config: Mutex<Config>,
    history: Option<HistoryReader>,
    sampling: Sampling,
    metrics: Mutex<crate::metrics::Exporter>,
    demo: Option<crate::demo::Demo>,
    _instance: crate::instance::InstanceLock,
    _log: Option<tracing_appender::non_blocking::WorkerGuard>,
}

impl App {
    pub fn start(opts: AppOptions) -> Result<App, String> {
        let data_dir = opts.data_dir.clone().or_else(paths::data_dir);
        let log = data_dir
            .as_ref()
            .and_then(|d| crate::logging::init(&d.join("logs")).ok());
        let file = match opts.settings {
            Some(_) => None,
            None => opts
                .config
                .clone()
                .map(ConfigFile::new)
                .or_else(paths::config_file),
        };
        let mut warning = None;
        let mut config = match &file {
            _ if opts.settings.is_some() => opts.settings.clone().expect("settings"),
            Some(f) => match f.load() {
                Ok(l) => {
                    warning = l.warning;
                    l.config
                }
                Err(e) => {
                    warning = Some(format!(
                        "{e}\nStarted with the default settings; your file is left as it is."
                    ));
                    Config::default()
                }
            },
            None => Config::default(),
        };
        let demo = if opts.demo {
            let dir = data_dir
                .clone()
                .unwrap_or_else(std::env::temp_dir)
                .join("demo");
            let d = crate::demo::Demo::prepare(&dir)?;
            config = d.config(&config);
            Some(d)
        } else {
            None
        };
        let target = match (&demo, &opts.target) {
            (Some(d), _) => Some(Target::Install(d.install.clone())),
            (None, Some(t)) => Some(t.clone()),
            (None, None) => config.install_path.as_deref().and_then(|p| {
                install::inspect(Path::new(p), config.python.as_deref().map(Path::new))
                    .ok()
                    .map(Target::Install)
            }),
        };
        // One guard per data folder and per install (the demo's is the guard's own).
        let instance = crate::instance::InstanceLock::acquire(
            data_dir.as_deref(),
            match (&demo, &target) {
                (None, Some(Target::Install(i))) => Some(i.root.as_path()),
                _ => None,
            },
        )?;
        // The one place the history database is opened: on the writer's thread, whose store
        // also answers the UI's reads.
        let history = data_dir.as_ref().map(|d| {
            HistoryWriter::spawn(
                d.join("history.sqlite3"),
                std::time::Duration::from_millis(300),
            )
        });
        let reader = history.as_ref().map(|(w, _)| w.reader());
        let mut gopts = GuardOptions::new(config.clone(), target);
        gopts.browser = Some(Arc::new(browser::open));
        gopts.demo = opts.demo;
        gopts.history = history;
        gopts.passthrough = opts.passthrough;
        gopts.exit_when_done = opts.exit_when_done;
        gopts.autostart = !opts.start_later;
        let guard = Guard::start(gopts).map_err(|e| format!("cannot start the supervisor: {e}"))?;
        if let Some(w) = warning {
            guard.warn(&w);
        }
        let sampling = guard_core::sampling::spawn(&guard, &config, data_dir.clone());
        let mut metrics = crate::metrics::Exporter::new(&guard);
        if config.metrics.enabled {
            if let Err(e) = metrics.serve_on(Some(config.metrics.port)) {
                guard.warn(&e);
            }
        }
        if let Some(d) = &demo {
            d.drive(&guard);
        }
        Ok(App {
            guard,
            file,
            config: Mutex::new(config),
            history: reader,
            sampling,
            metrics: Mutex::new(metrics),
            demo,
            _instance: instance,
            _log: log,
        })
    }

    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// Where the Prometheus figures are served, when they are on.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics.lock().unwrap().addr()
    }

    fn store(&self) -> Option<Arc<guard_core::store::Store>> {
        self.history.as_ref().and_then(|h| h.get())
    }

    pub fn status(&self) -> Status {
        self.guard.status()
    }

    pub fn subscribe(&self) -> crossbeam_channel::Receiver<guard_core::Update> {
        self.guard.subscribe()
    }

    pub fn settings(&self) -> Config {
        self.config.lock().unwrap().clone()
    }

    /// Validate, write atomically, hand each consumer its part of what changed, and say what
    /// took effect and what waits for a restart of Fooocus or of the guard.
    pub fn save_settings(&self, new: Config) -> SaveResult {
        let errors = new.validate();
        if !errors.is_empty() {
            return SaveResult::refused(errors);
        }
        // The install must be real before it is saved.
        if let Some(p) = &new.install_path {
            if self.demo.is_none() {
                let error =
                    match install::inspect(Path::new(p), new.python.as_deref().map(Path::new)) {
                        Err(e) => Some(FieldError {
                            field: "install_path".into(),
                            value: p.clone(),
                            message: e.to_string(),
                        }),
                        // An option this install's Fooocus lacks would stop it at once (exit 2).
                        Ok(i) => {
                            install::check_options(&i, &new.launch)
                                .err()
                                .map(|e| FieldError {
                                    field: e.field.into(),
                                    value: e.option.clone(),
                                    message: e.to_string(),
                                })
                        }
                    };
                if let Some(e) = error {
                    return SaveResult::refused(vec![e]);
                }
            }
        }
        if self.demo.is_none() {
            if let Some(f) = &self.file {
                if let Err(e) = f.save(&new) {
                    return SaveResult::refused(vec![FieldError {
                        field: "(file)".into(),
                        value: f.path.display().to_string(),
                        message: e.to_string(),
                    }]);
                }
            }
        }
        let old = std::mem::replace(&mut *self.config.lock().unwrap(), new.clone());
        let diff = ConfigDiff::between(&old, &new);
        // What a consumer could not apply is left out of "applied now" (it warned why).
        let mut not_applied = Vec::new();

        // The notifier and the supervisor's sleep timer, console logging and browser opening
        // read the settings when they use them: nothing to hand them but the new config.
        self.sampling.apply(&new, &diff);
        if diff.changed(Setting::Metrics) {
            let port = new.metrics.enabled.then_some(new.metrics.port);
            if let Err(e) = self.metrics.lock().unwrap().serve_on(port) {
                self.guard.warn(&e);
                not_applied.push(Setting::Metrics);
            }
        }
        if diff.changed(Setting::StartWithSession) {
            if let Err(e) = crate::autostart::set(new.start_with_session) {
                self.guard.warn(&e);
                not_applied.push(Setting::StartWithSession);
            }
        }
        // The next start uses the new install (and the current run, until then, the old one).
        if diff.changed(Setting::Install) && self.demo.is_none() {
            if let Some(p) = &new.install_path {
                if let Ok(i) = install::inspect(Path::new(p), new.python.as_deref().map(Path::new))
                {
                    self.guard.set_target(Target::Install(i));
                }
            }
        }
        self.guard.set_config(new, &diff);

        let labels = |when: Effect| -> Vec<String> {
            diff.settings()
                .filter(|s| s.effect() == when && !not_applied.contains(s))
                .map(|s| s.label().to_string())
                .collect()
        };
        let mut needs_restart = labels(Effect::FooocusRestart);
        // Nothing is running yet: the new install simply starts next time.
        if matches!(
            self.status().state,
            guard_core::supervisor::FooocusState::Stopped
                | guard_core::supervisor::FooocusState::NotConfigured
        ) {
            needs_restart.clear();
        }
        SaveResult {
            saved: true,
            errors: Vec::new(),
            applied_live: labels(Effect::Live),
            needs_restart,
            needs_guard_restart: labels(Effect::GuardRestart),
        }
    }

    /// Start Fooocus, or say why not.
    pub fn start_fooocus(&self) -> Result<(), String> {
        if self.status().state == guard_core::supervisor::FooocusState::NotConfigured {
            return Err("no Fooocus install is configured: pick one in the settings".into());
        }
        self.guard.start_fooocus();
        Ok(())
    }

    pub fn open_in_browser(&self) -> Result<(), String> {
        let url = self.status().url.ok_or("Fooocus is not listening yet")?;
        // With a gateway token, the link carries it once; the gateway then sets its cookie.
        let token = self.settings().gateway.token;
        browser::open(&guard_gateway::url_with_token(&url, token.as_deref()))
    }

    pub fn detect_installs(&self) -> Vec<Install> {
        install::detect(&[])
    }

    pub fn history(&self, range_s: u64) -> Vec<HistoryPoint> {
        self.sampling.history(range_s.clamp(60, 86_400))
    }

    pub fn generations(&self, outcome: Option<&str>, limit: u32) -> Vec<GenerationRecord> {
        self.store()
            .map(|s| s.generations(outcome, limit))
            .unwrap_or_default()
    }

    pub fn breaches(&self, limit: u32) -> Vec<BreachRecord> {
        self.store().map(|s| s.breaches(limit)).unwrap_or_default()
    }

    pub fn limit_stats(&self, limit: &str, value: Option<f64>) -> Result<LimitStats, String> {
        match self.store() {
            Some(s) => s.limit_stats(limit, value),
            None => Err("the history store is not available".into()),
        }
    }

    pub fn export_csv(&self) -> String {
        self.store().map(|s| s.export_csv()).unwrap_or_default()
    }

    /// Wait until the supervisor ends by itself (`exit_when_done`), then stop the sampler.
    pub fn wait(&self) {
        self.guard.wait();
        self.sampling.stop();
    }

    /// Stop Fooocus cleanly and end everything.
    pub fn shutdown(&self) {
        self.guard.shutdown();
        self.sampling.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::time::Duration;

    /// A guard with nothing to supervise yet, its settings in memory only.
    fn app(dir: &Path) -> App {
        App::start(AppOptions {
            settings: Some(Config::default()),
            data_dir: Some(dir.to_path_buf()),
            start_later: true,
            ..AppOptions::default()
        })
        .unwrap()
    }

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// The body of GET /metrics, or None when nothing listens.
    fn scrape(addr: SocketAddr) -> Option<String> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    }

    #[test]
    fn metrics_are_turned_on_moved_and_off_without_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path());
        assert_eq!(app.metrics_addr(), None);

        let mut c = app.settings();
        c.metrics.enabled = true;
        c.metrics.port = free_port();
        let r = app.save_settings(c.clone());
        assert!(r.saved, "{r:?}");
        assert_eq!(r.applied_live, ["metrics"]);
        assert!(r.needs_restart.is_empty() && r.needs_guard_restart.is_empty());
        let first = app.metrics_addr().expect("metrics on");
        assert_eq!(first.port(), c.metrics.port);
        let body = scrape(first).expect("served");
        assert!(body.contains("fooocus_guard_restarts_total"), "{body}");

        c.metrics.port = free_port();
        assert_eq!(app.save_settings(c.clone()).applied_live, ["metrics"]);
        let second = app.metrics_addr().expect("metrics on");
        assert_eq!(second.port(), c.metrics.port);
        assert!(scrape(second).is_some());
        assert!(scrape(first).is_none(), "the old port is given back");

        c.metrics.enabled = false;
        assert_eq!(app.save_settings(c).applied_live, ["metrics"]);
        assert_eq!(app.metrics_addr(), None);
        assert!(scrape(second).is_none(), "off means nothing listens");
        app.shutdown();
    }

    #[test]
    fn a_taken_metrics_port_is_not_reported_as_applied() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path());
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = app.settings();
        c.metrics.enabled = true;
        c.metrics.port = taken.local_addr().unwrap().port();
        let r = app.save_settings(c);
        assert!(r.saved && r.applied_live.is_empty(), "{r:?}");
        assert_eq!(app.metrics_addr(), None);
        app.shutdown();
    }

    #[test]
    fn the_nvml_library_is_reloaded_and_sampling_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path());
        let updates = app.subscribe();
        let mut c = app.settings();
        c.nvml_library = Some(dir.path().join("libnvidia-ml.so.1").display().to_string());
        c.sampling_interval_ms = 100;
        let r = app.save_settings(c);
        assert!(r.saved, "{r:?}");
        assert_eq!(r.applied_live, ["sampling interval", "NVML library"]);
        assert!(r.needs_restart.is_empty() && r.needs_guard_restart.is_empty());
        // The new sampler keeps publishing.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut samples = 0;
        while samples < 3 && std::time::Instant::now() < deadline {
            if let Ok(guard_core::Update::Sample(_)) = updates.recv_timeout(Duration::from_secs(1))
            {
                samples += 1;
            }
        }
        assert_eq!(samples, 3, "samples after the reload");
        app.shutdown();
    }

    #[test]
    fn a_save_that_changes_nothing_reports_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path());
        let r = app.save_settings(app.settings());
        assert_eq!(
            r,
            SaveResult {
                saved: true,
                ..SaveResult::default()
            }
        );
        app.shutdown();
    }

    /// With nothing running, what waits for a Fooocus restart simply starts with the next run.
    #[test]
    fn nothing_running_clears_the_fooocus_restart_list() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path());
        let mut c = app.settings();
        c.launch.preset = Some("anime".into());
        c.limits.timeout_s = Some(600.0);
        let r = app.save_settings(c);
        assert!(r.saved, "{r:?}");
        assert_eq!(r.applied_live, ["limits"]);
        assert!(r.needs_restart.is_empty(), "{r:?}");
        app.shutdown();
    }
}
