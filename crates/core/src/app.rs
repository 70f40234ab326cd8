//! The application service both shells stand on: the tray app's commands and the CLI are thin
//! layers over this. It owns the settings file, the supervisor, the sampler and the history.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::config::{Config, ConfigFile, FieldError};
use crate::sampling::Sampling;
use crate::store::{HistoryReader, HistoryWriter};
use crate::supervisor::{Guard, GuardOptions, Status, Target};
use guard_fooocus::install::{self, Install};

pub use crate::store::{BreachRecord, GenerationRecord, HistoryPoint, LimitStats};

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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SaveResult {
    pub saved: bool,
    pub errors: Vec<FieldError>,
    pub applied_live: Vec<String>,
    pub needs_restart: Vec<String>,
}

pub struct App {
    guard: Guard,
    file: Option<ConfigFile>,
    config: Mutex<Config>,
    history: Option<HistoryReader>,
    sampling: Sampling,
    metrics: Option<std::net::SocketAddr>,
    demo: Option<crate::demo::Demo>,
    _instance: crate::instance::InstanceLock,
    _log: Option<tracing_appender::non_blocking::WorkerGuard>,
}

impl App {
    pub fn start(opts: AppOptions) -> Result<App, String> {
        let data_dir = opts.data_dir.clone().or_else(crate::paths::data_dir);
        let log = data_dir
            .as_ref()
            .and_then(|d| crate::logging::init(&d.join("logs")).ok());
        let file = match opts.settings {
            Some(_) => None,
            None => opts
                .config
                .clone()
                .map(ConfigFile::new)
                .or_else(ConfigFile::default_location),
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
        gopts.demo = opts.demo;
        gopts.history = history;
        gopts.passthrough = opts.passthrough;
        gopts.exit_when_done = opts.exit_when_done;
        gopts.autostart = !opts.start_later;
        let guard = Guard::start(gopts).map_err(|e| format!("cannot start the supervisor: {e}"))?;
        if let Some(w) = warning {
            guard.warn(&w);
        }
        let sampling = crate::sampling::spawn(&guard, &config);
        let mut metrics = None;
        if config.metrics.enabled {
            match crate::metrics::start(&guard, config.metrics.port) {
                Ok(addr) => metrics = Some(addr),
                Err(e) => guard.warn(&e),
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
            metrics,
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
        self.metrics
    }

    fn store(&self) -> Option<Arc<crate::store::Store>> {
        self.history.as_ref().and_then(|h| h.get())
    }

    pub fn status(&self) -> Status {
        self.guard.status()
    }

    pub fn subscribe(&self) -> crossbeam_channel::Receiver<crate::Update> {
        self.guard.subscribe()
    }

    pub fn settings(&self) -> Config {
        self.config.lock().unwrap().clone()
    }

    /// Validate, write atomically, apply what can change live, and say what needs a restart.
    pub fn save_settings(&self, new: Config) -> SaveResult {
        let errors = new.validate();
        if !errors.is_empty() {
            return SaveResult {
                saved: false,
                errors,
                applied_live: Vec::new(),
                needs_restart: Vec::new(),
            };
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
                    return SaveResult {
                        saved: false,
                        errors: vec![e],
                        applied_live: Vec::new(),
                        needs_restart: Vec::new(),
                    };
                }
            }
        }
        if self.demo.is_none() {
            if let Some(f) = &self.file {
                if let Err(e) = f.save(&new) {
                    return SaveResult {
                        saved: false,
                        errors: vec![FieldError {
                            field: "(file)".into(),
                            value: f.path.display().to_string(),
                            message: e.to_string(),
                        }],
                        applied_live: Vec::new(),
                        needs_restart: Vec::new(),
                    };
                }
            }
        }
        let old = std::mem::replace(&mut *self.config.lock().unwrap(), new.clone());
        let mut applied = Vec::new();
        if old.limits != new.limits {
            applied.push("limits".to_string());
        }
        if old.restart != new.restart {
            applied.push("restart policy".to_string());
        }
        if old.sampling_interval_ms != new.sampling_interval_ms {
            applied.push("sampling interval".to_string());
            self.sampling.set_interval_ms(new.sampling_interval_ms);
        }
        if old.notifications != new.notifications {
            applied.push("notifications".to_string());
        }
        if old.open_browser != new.open_browser {
            applied.push("open the browser when ready".to_string());
        }
        if old.start_with_session != new.start_with_session {
            match crate::autostart::set(new.start_with_session) {
                Ok(()) => applied.push("start with the session".to_string()),
                Err(e) => self.guard.warn(&e),
            }
        }
        let install_changed = old.install_path != new.install_path || old.python != new.python;
        if install_changed && self.demo.is_none() {
            if let Some(p) = &new.install_path {
                if let Ok(i) = install::inspect(Path::new(p), new.python.as_deref().map(Path::new))
                {
                    self.guard.set_target(Target::Install(i));
                }
            }
        }
        let mut needs = self.guard.set_config(new);
        // Nothing is running yet: the new install simply starts next time.
        if matches!(
            self.status().state,
            crate::supervisor::FooocusState::Stopped
                | crate::supervisor::FooocusState::NotConfigured
        ) {
            needs.clear();
        }
        SaveResult {
            saved: true,
            errors: Vec::new(),
            applied_live: applied,
            needs_restart: needs,
        }
    }

    /// Start Fooocus, or say why not.
    pub fn start_fooocus(&self) -> Result<(), String> {
        if self.status().state == crate::supervisor::FooocusState::NotConfigured {
            return Err("no Fooocus install is configured: pick one in the settings".into());
        }
        self.guard.start_fooocus();
        Ok(())
    }

    pub fn open_in_browser(&self) -> Result<(), String> {
        let url = self.status().url.ok_or("Fooocus is not listening yet")?;
        // With a gateway token, the link carries it once; the gateway then sets its cookie.
        let token = self.settings().gateway.token;
        crate::browser::open(&guard_gateway::url_with_token(&url, token.as_deref()))
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
