//! The one config file (TOML): what it holds, how every field is validated, and how it is
//! written so that a broken file never replaces the last good one.
//!
//! The same struct travels to the webview as `Settings` (docs/ipc.md), so field names match.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

use crate::units;
pub use guard_fooocus::options::{LaunchOptions, DEFAULT_PORT, VRAM_MODES};

pub mod diff;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[cfg_attr(feature = "ts", ts(rename = "Settings"))]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Fooocus install: a portable root, a Fooocus folder, or "demo" for the simulator.
    pub install_path: Option<String>,
    /// An interpreter the user names instead of the detected one.
    pub python: Option<String>,
    pub launch: LaunchOptions,
    pub restart: RestartConfig,
    pub limits: LimitsConfig,
    pub sampling_interval_ms: u64,
    pub notifications: Notifications,
    pub metrics: Metrics,
    pub gateway: GatewayConfig,
    /// Opt-in: console lines (which contain prompts) may reach the log files.
    pub log_prompts: bool,
    pub start_with_session: bool,
    /// auto | cgroup-v2 | cgroup-v1 | fallback
    pub containment: String,
    /// Path of libnvidia-ml (nvml.dll on Windows) when it is not on the loader path.
    pub nvml_library: Option<String>,
    /// "Sleep after idle": with no generation and no visit through the gateway for this long,
    /// Fooocus is stopped to give its RAM and VRAM back, and the gateway wakes it on the next
    /// visit. None = off (the default; the app suggests 20 min on its first run).
    #[serde(deserialize_with = "de_secs")]
    pub sleep_after_s: Option<f64>,
    /// Open Fooocus in the user's browser once it is ready after a start the user asked for
    /// (not after the guard's restarts, nor a wake, which a browser asked for). The guard opens
    /// it from outside the contained tree; Fooocus itself never opens one (install.rs).
    pub open_browser: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "kebab-case")]
pub enum RestartMode {
    Never,
    OnFailure,
    Always,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(default, deny_unknown_fields)]
pub struct RestartConfig {
    pub policy: RestartMode,
    /// Give up after this many unexpected exits within `window_s`.
    pub max_restarts: u32,
    pub window_s: u64,
}

/// Every limit is optional (None = off). Sizes in bytes, times in seconds. In the TOML file a
/// user may also write "10m" or "12G".
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[cfg_attr(feature = "ts", ts(rename = "Limits"))]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    #[serde(deserialize_with = "de_secs")]
    pub timeout_s: Option<f64>,
    #[serde(deserialize_with = "de_secs")]
    pub stall_timeout_s: Option<f64>,
    #[serde(deserialize_with = "de_secs")]
    pub startup_timeout_s: Option<f64>,
    #[serde(deserialize_with = "de_bytes")]
    pub memory_bytes: Option<u64>,
    #[serde(deserialize_with = "de_bytes")]
    pub swap_bytes: Option<u64>,
    #[serde(deserialize_with = "de_bytes")]
    pub vram_bytes: Option<u64>,
    #[serde(deserialize_with = "de_percent")]
    pub cpu_percent: Option<u32>,
    /// How long a graceful stop may take before the tree is killed.
    #[serde(deserialize_with = "de_secs")]
    pub grace_s: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(default, deny_unknown_fields)]
pub struct Notifications {
    pub enabled: bool,
    pub on_ready: bool,
    /// Opt-in: a notification when a generation completes (Fooocus itself only plays a sound
    /// in its browser tab).
    pub on_finished: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(default, deny_unknown_fields)]
pub struct Metrics {
    pub enabled: bool,
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    pub enabled: bool,
    pub token: Option<String>,
    pub rate_per_minute: Option<u32>,
    /// Other sites whose pages may use Fooocus through the gateway (`http://host:port`, exact
    /// origins). Any other site's page is refused, so a page the user visits cannot read
    /// Fooocus's config, outputs or prompts from the user's own browser.
    pub allowed_origins: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            install_path: None,
            python: None,
            launch: LaunchOptions::default(),
            restart: RestartConfig::default(),
            limits: LimitsConfig::default(),
            sampling_interval_ms: 1000,
            notifications: Notifications::default(),
            metrics: Metrics::default(),
            gateway: GatewayConfig::default(),
            log_prompts: false,
            start_with_session: false,
            containment: "auto".into(),
            nvml_library: None,
            sleep_after_s: None,
            open_browser: false,
        }
    }
}

impl Default for RestartConfig {
    fn default() -> Self {
        RestartConfig {
            policy: RestartMode::OnFailure,
            max_restarts: 5,
            window_s: 600,
        }
    }
}

impl Default for Notifications {
    fn default() -> Self {
        Notifications {
            enabled: true,
            on_ready: false,
            on_finished: false,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            enabled: false,
            port: 9465,
        }
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            enabled: true,
            token: None,
            rate_per_minute: None,
            allowed_origins: Vec::new(),
        }
    }
}

/// A flag in `extra_args` that would override where Fooocus listens (Python's argparse also
/// takes any unambiguous prefix, `--lis` for `--listen`): the flag and what to use instead.
fn guarded_flag(arg: &str) -> Option<(&'static str, &'static str)> {
    let name = arg.strip_prefix("--")?.split('=').next().unwrap_or("");
    if name.is_empty() {
        return None;
    }
    [
        ("--listen", "set launch.listen (Fooocus on the network, through the gateway)"),
        ("--host", "set launch.listen (Fooocus on the network, through the gateway)"),
        ("--port", "set launch.port"),
        ("--share", "share Fooocus on the network with launch.listen and gateway.token instead of a public Gradio link"),
    ]
    .into_iter()
    .find(|(flag, _)| flag[2..].starts_with(name))
}

/// One invalid field: the dotted field path, the value as the user gave it, and a message that
/// names the accepted range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct FieldError {
    pub field: String,
    pub value: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} = {}: {}", self.field, self.value, self.message)
    }
}

impl Config {
    /// Check every field; an empty list means the config is valid.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let mut push = |field: &str, value: String, message: String| {
            errs.push(FieldError {
                field: field.into(),
                value,
                message,
            })
        };

        if let Some(p) = &self.install_path {
            if p.trim().is_empty() {
                push(
                    "install_path",
                    p.clone(),
                    "is empty: pick the Fooocus folder, or leave it unset".into(),
                );
            }
        }
        if self.launch.port == 0 {
            push(
                "launch.port",
                "0".into(),
                "must be between 1 and 65535 (Fooocus uses 7865)".into(),
            );
        }
        if let Some(m) = &self.launch.vram_mode {
            if !VRAM_MODES.contains(&m.as_str()) {
                push(
                    "launch.vram_mode",
                    m.clone(),
                    format!("must be one of {}", VRAM_MODES.join(", ")),
                );
            }
        }
        if let Some(p) = &self.launch.preset {
            if p.is_empty()
                || !p
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                push(
                    "launch.preset",
                    p.clone(),
                    "must be a preset name like default, anime or realistic (letters, digits, - and _)".into(),
                );
            }
        }
        if let Some(l) = &self.launch.listen {
            if l.parse::<IpAddr>().is_err() {
                push(
                    "launch.listen",
                    l.clone(),
                    "must be an IP address such as 127.0.0.1 or 0.0.0.0".into(),
                );
            }
        }
        for (i, a) in self.launch.extra_args.iter().enumerate() {
            if a.contains('\0') {
                push(
                    &format!("launch.extra_args[{i}]"),
                    a.escape_debug().to_string(),
                    "contains a NUL byte".into(),
                );
            } else if let Some((flag, fix)) = guarded_flag(a) {
                push(
                    &format!("launch.extra_args[{i}]"),
                    a.clone(),
                    format!("{flag} is set by Fooocus Guard (it keeps Fooocus behind the gateway): remove it and {fix}"),
                );
            }
        }
        if self.restart.max_restarts > 100 {
            push(
                "restart.max_restarts",
                self.restart.max_restarts.to_string(),
                "must be between 0 and 100".into(),
            );
        }
        if !(10..=86_400).contains(&self.restart.window_s) {
            push(
                "restart.window_s",
                self.restart.window_s.to_string(),
                "must be between 10 and 86400 seconds (10 s to 24 h)".into(),
            );
        }
        let l = &self.limits;
        let secs = |field: &str,
                    v: Option<f64>,
                    min: f64,
                    max: f64,
                    push: &mut dyn FnMut(&str, String, String)| {
            if let Some(v) = v {
                if !(v.is_finite() && v >= min && v <= max) {
                    push(
                        field,
                        v.to_string(),
                        format!(
                            "must be between {} and {} (or off)",
                            units::format_duration(std::time::Duration::from_secs_f64(min)),
                            units::format_duration(std::time::Duration::from_secs_f64(max))
                        ),
                    );
                }
            }
        };
        secs(
            "limits.timeout_s",
            l.timeout_s,
            1.0,
            7.0 * 86_400.0,
            &mut push,
        );
        secs(
            "limits.stall_timeout_s",
            l.stall_timeout_s,
            1.0,
            86_400.0,
            &mut push,
        );
        secs(
            "limits.startup_timeout_s",
            l.startup_timeout_s,
            1.0,
            86_400.0,
            &mut push,
        );
        secs("limits.grace_s", l.grace_s, 0.5, 600.0, &mut push);
        let bytes =
            |field: &str, v: Option<u64>, min: u64, push: &mut dyn FnMut(&str, String, String)| {
                if let Some(v) = v {
                    if v < min || v > (1u64 << 50) {
                        push(
                            field,
                            units::format_size(v),
                            format!(
                                "must be at least {} and at most 1 PiB (or off)",
                                units::format_size(min)
                            ),
                        );
                    }
                }
            };
        bytes("limits.memory_bytes", l.memory_bytes, 64 << 20, &mut push);
        bytes("limits.vram_bytes", l.vram_bytes, 64 << 20, &mut push);
        if let Some(v) = l.swap_bytes {
            if v > (1u64 << 50) {
                push(
                    "limits.swap_bytes",
                    units::format_size(v),
                    "must be at most 1 PiB (or off)".into(),
                );
            }
        }
        if let Some(c) = l.cpu_percent {
            if !(5..=100 * 1024).contains(&c) {
                push(
                    "limits.cpu_percent",
                    c.to_string(),
                    "must be between 5 and 102400 percent of one core (100 = one core)".into(),
                );
            }
        }
        if !(100..=60_000).contains(&self.sampling_interval_ms) {
            push(
                "sampling_interval_ms",
                self.sampling_interval_ms.to_string(),
                "must be between 100 and 60000 ms (0.1 s to 1 min)".into(),
            );
        }
        if self.metrics.port < 1024 {
            push(
                "metrics.port",
                self.metrics.port.to_string(),
                "must be between 1024 and 65535".into(),
            );
        } else if self.metrics.enabled && self.metrics.port == self.launch.port {
            push(
                "metrics.port",
                self.metrics.port.to_string(),
                "is the port Fooocus uses: pick another (9465 is the default)".into(),
            );
        }
        if let Some(r) = self.gateway.rate_per_minute {
            if !(1..=10_000).contains(&r) {
                push(
                    "gateway.rate_per_minute",
                    r.to_string(),
                    "must be between 1 and 10000 (or unset)".into(),
                );
            }
        }
        for origin in &self.gateway.allowed_origins {
            if let Err(why) = guard_gateway::rules::valid_origin(origin) {
                push("gateway.allowed_origins", origin.clone(), why);
            }
        }
        if self.gateway.allowed_origins.len() > 64 {
            push(
                "gateway.allowed_origins",
                self.gateway.allowed_origins.len().to_string(),
                "at most 64 origins: list only the sites that really use Fooocus".into(),
            );
        }
        if let Some(t) = &self.gateway.token {
            if t.len() < 8 {
                push(
                    "gateway.token",
                    "(hidden)".into(),
                    "must be at least 8 characters long".into(),
                );
            } else if !self.gateway.enabled {
                push(
                    "gateway.token",
                    "(hidden)".into(),
                    "only the gateway checks the token, and it is turned off: turn the gateway on (gateway.enabled = true), or remove the token".into(),
                );
            }
        }
        if let Some(v) = self.sleep_after_s {
            if !(v.is_finite() && (1.0..=7.0 * 86_400.0).contains(&v)) {
                push(
                    "sleep_after_s",
                    v.to_string(),
                    "must be between 1 s and 7 d (20 min suits most), or off".into(),
                );
            } else if !self.gateway.enabled {
                push(
                    "sleep_after_s",
                    units::format_duration(std::time::Duration::from_secs_f64(v)),
                    "a sleeping Fooocus is woken by the gateway when you open it, and the gateway is off: turn the gateway on (gateway.enabled = true; in the CLI drop --no-gateway), or turn sleep off".into(),
                );
            }
        }
        if self
            .containment
            .parse::<guard_contain::Preference>()
            .is_err()
        {
            push(
                "containment",
                self.containment.clone(),
                "must be one of auto, cgroup-v2, cgroup-v1, fallback".into(),
            );
        }
        errs
    }

    pub fn containment_preference(&self) -> guard_contain::Preference {
        self.containment.parse().unwrap_or_default()
    }
}

// --- human-friendly values in the TOML file ------------------------------------------------

#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrText {
    Num(f64),
    Text(String),
}

fn de_secs<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    match Option::<NumOrText>::deserialize(d)? {
        None => Ok(None),
        Some(NumOrText::Num(0.0)) => Ok(None),
        Some(NumOrText::Num(v)) => Ok(Some(v)),
        Some(NumOrText::Text(t)) => units::parse_duration(&t)
            .map(|d| d.map(|d| d.as_secs_f64()))
            .map_err(serde::de::Error::custom),
    }
}

fn de_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Option::<NumOrText>::deserialize(d)? {
        None => Ok(None),
        Some(NumOrText::Num(0.0)) => Ok(None),
        Some(NumOrText::Num(v)) if v > 0.0 && v.fract() == 0.0 => Ok(Some(v as u64)),
        Some(NumOrText::Num(v)) => Err(serde::de::Error::custom(format!(
            "{v} is not a size in bytes: write a whole number or a size like \"12G\""
        ))),
        Some(NumOrText::Text(t)) => units::parse_size(&t).map_err(serde::de::Error::custom),
    }
}

fn de_percent<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    match Option::<NumOrText>::deserialize(d)? {
        None => Ok(None),
        Some(NumOrText::Num(0.0)) => Ok(None),
        Some(NumOrText::Num(v)) if v > 0.0 && v.fract() == 0.0 && v <= u32::MAX as f64 => {
            Ok(Some(v as u32))
        }
        Some(NumOrText::Num(v)) => Err(serde::de::Error::custom(format!(
            "{v} is not a CPU percentage: write a whole number, 100 = one core"
        ))),
        Some(NumOrText::Text(t)) => units::parse_percent(&t).map_err(serde::de::Error::custom),
    }
}

// --- the file on disk ---------------------------------------------------------------------

/// Where the config lives and how it is read and written.
#[derive(Clone, Debug)]
pub struct ConfigFile {
    pub path: PathBuf,
}

/// What loading gave: the settings to use, and a warning for the user when they are not the
/// ones in the file.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub config: Config,
    pub warning: Option<String>,
    /// The file did not exist; defaults are in use.
    pub defaults: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {message}")]
    Broken { path: String, message: String },
    #[error("{path}: invalid settings:\n  {}", .errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n  "))]
    Invalid {
        path: String,
        errors: Vec<FieldError>,
    },
    #[error("could not write {path}: {source}. Check that the folder exists and is writable.")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl ConfigFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ConfigFile { path: path.into() }
    }

    pub fn last_good_path(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".last-good");
        PathBuf::from(p)
    }

    /// Parse and validate one file.
    pub fn read(path: &Path) -> Result<Config, ConfigError> {
        let broken = |message: String| ConfigError::Broken {
            path: path.display().to_string(),
            message,
        };
        let bytes = read_small_file(path, MAX_CONFIG_BYTES, "a settings file").map_err(broken)?;
        let text = String::from_utf8(bytes).map_err(|e| {
            broken(format!(
                "is not UTF-8 text (byte {} is not): save it as UTF-8",
                e.utf8_error().valid_up_to()
            ))
        })?;
        let config: Config = toml::from_str(&text)
            .map_err(|e| broken(format!("is not valid: {}", toml_error(&e, &text))))?;
        let errors = config.validate();
        if !errors.is_empty() {
            return Err(ConfigError::Invalid {
                path: path.display().to_string(),
                errors,
            });
        }
        Ok(config)
    }

    /// Load the settings. A missing file gives the defaults. A broken or invalid file is left
    /// untouched for the user to fix, and the last good settings are used instead, with a
    /// warning that says so.
    pub fn load(&self) -> Result<Loaded, ConfigError> {
        if !self.path.exists() {
            return Ok(Loaded {
                config: Config::default(),
                warning: None,
                defaults: true,
            });
        }
        match Self::read(&self.path) {
            Ok(config) => {
                // Keep a copy of what worked; failure to do so only costs the fallback.
                let _ = write_atomic(&self.last_good_path(), &to_toml(&config));
                Ok(Loaded {
                    config,
                    warning: None,
                    defaults: false,
                })
            }
            Err(err) => {
                let last = self.last_good_path();
                match Self::read(&last) {
                    Ok(config) => Ok(Loaded {
                        config,
                        warning: Some(format!(
                            "{err}\nStarted with the last good settings (saved in {}). Fix the file, or save the settings again to replace it.",
                            last.display()
                        )),
                        defaults: false,
                    }),
                    Err(_) => Err(err),
                }
            }
        }
    }

    /// Validate, then write atomically (temporary file, fsync, rename). An invalid config is
    /// never written.
    pub fn save(&self, config: &Config) -> Result<(), ConfigError> {
        let errors = config.validate();
        if !errors.is_empty() {
            return Err(ConfigError::Invalid {
                path: self.path.display().to_string(),
                errors,
            });
        }
        let text = to_toml(config);
        write_atomic(&self.path, &text).map_err(|source| ConfigError::Write {
            path: self.path.display().to_string(),
            source,
        })?;
        let _ = write_atomic(&self.last_good_path(), &text);
        Ok(())
    }
}

/// The largest settings file read. The guard's settings take a few KiB: a file near this size is
/// not one, and reading it whole (a link to /dev/zero never ends) would only cost memory.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Read a small file the guard keeps its settings or figures in: a regular file of at most
/// `max` bytes, `what` naming it in the errors. The type is checked on the opened file, not on
/// the path before opening it (no window for a swap), and the open does not block: a FIFO
/// would otherwise wait for a writer forever.
pub fn read_small_file(path: &Path, max: u64, what: &str) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut opts = fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let file = opts
        .open(path)
        .map_err(|e| format!("cannot be read ({e})"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot be read ({e})"))?;
    if !meta.is_file() {
        return Err(format!(
            "is not a regular file but {}: {what} is read only from a regular file; replace it with one, or remove it",
            file_kind(&meta)
        ));
    }
    let too_big = || {
        format!(
            "is larger than the {} {what} may be: this is not the file Fooocus Guard wrote; move it away, or point to the right file",
            crate::units::format_size(max)
        )
    };
    if meta.len() > max {
        return Err(too_big());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // The size can change after the check (a file still being written): the read has its own cap.
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot be read ({e})"))?;
    if bytes.len() as u64 > max {
        return Err(too_big());
    }
    Ok(bytes)
}

fn file_kind(meta: &fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "a folder";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    "a special file"
}

/// A TOML error without the secrets of the file. toml's own message quotes the offending line,
/// and a typo on a line holding a token (`gateway = { token = "...", enabld = true }`) would put
/// the token in the warning, the logs and the dashboard. This one gives the position, the line
/// with every token's value hidden, and toml's message with those values hidden too.
fn toml_error(e: &toml::de::Error, text: &str) -> String {
    let secrets = secret_values(text);
    let hide = |line_start: usize, line: &str| -> String {
        // Replace each secret that overlaps this line, from the right so offsets stay valid.
        let end = line_start + line.len();
        let mut out = line.to_string();
        for r in secrets.iter().rev() {
            if r.start < end && r.end > line_start {
                let a = r.start.max(line_start) - line_start;
                let b = r.end.min(end) - line_start;
                out.replace_range(a..b, "(hidden)");
            }
        }
        out
    };
    let mut message = e.message().trim_end().to_string();
    for r in &secrets {
        let raw = &text[r.clone()];
        let bare = raw.trim_matches(|c| c == '"' || c == '\'');
        for v in [raw, bare] {
            // Short values would match ordinary words; validation refuses tokens under 8.
            if v.len() >= 3 {
                message = message.replace(v, "(hidden)");
            }
        }
    }
    let Some(span) = e.span() else {
        return message;
    };
    let at = span.start.min(text.len());
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    let line_no = text[..at].matches('\n').count() + 1;
    let column = text[line_start..at].chars().count() + 1;
    let line = hide(
        line_start,
        text[line_start..line_end].trim_end_matches('\r'),
    );
    format!("line {line_no}, column {column}: {message}\n  {line_no} | {line}")
}

/// Byte ranges of the values given to keys whose name ends in `token` (`token = "..."`,
/// `gateway.token = ...`, `gateway = { token = ... }`, `"token" = ...`), found by a scan that
/// does not need the file to parse: it is broken when this runs.
fn secret_values(text: &str) -> Vec<std::ops::Range<usize>> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut word = (0, 0);
    let mut i = 0;
    // The end of a string starting at `i` (its closing quote included; the line's end if open).
    let string_end = |i: usize| -> usize {
        let q = b[i];
        if b[i..].starts_with(&[q, q, q]) {
            let close = [q, q, q];
            return b[i + 3..]
                .windows(3)
                .position(|w| w == close)
                .map_or(b.len(), |p| i + 3 + p + 3);
        }
        let mut j = i + 1;
        while j < b.len() && b[j] != q && b[j] != b'\n' {
            if q == b'"' && b[j] == b'\\' {
                j += 1;
            }
            j += 1;
        }
        (j + 1).min(b.len())
    };
    while i < b.len() {
        match b[i] {
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' | b'\'' => {
                let end = string_end(i);
                word = (i, end);
                i = end;
            }
            b'=' => {
                let key = text[word.0..word.1].trim_matches(|c| c == '"' || c == '\'');
                i += 1;
                // A quoted key with an escape may spell `token` (`"tok\u0065n"`): it is taken
                // for one rather than unescaped here.
                let escaped = text[word.0..word.1].starts_with('"') && key.contains('\\');
                if !escaped && !key.to_ascii_lowercase().ends_with("token") {
                    continue;
                }
                while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
                    i += 1;
                }
                let start = i;
                let end = match b.get(i) {
                    Some(b'"' | b'\'') => string_end(i),
                    // Not a plain value: hide it up to its closing bracket, over lines (an
                    // array may span several), or to the end of the file when it has none.
                    Some(b'{' | b'[') => {
                        let mut depth = 0usize;
                        let mut j = i;
                        loop {
                            match b.get(j) {
                                None => break b.len(),
                                Some(b'{' | b'[') => {
                                    depth += 1;
                                    j += 1;
                                }
                                Some(b'}' | b']') => {
                                    depth -= 1;
                                    j += 1;
                                    if depth == 0 {
                                        break j;
                                    }
                                }
                                Some(b'"' | b'\'') => j = string_end(j),
                                Some(b'#') => {
                                    while j < b.len() && b[j] != b'\n' {
                                        j += 1;
                                    }
                                }
                                Some(_) => j += 1,
                            }
                        }
                    }
                    _ => {
                        let mut j = i;
                        while j < b.len() && !b",}]# \t\r\n".contains(&b[j]) {
                            j += 1;
                        }
                        j
                    }
                };
                if end > start {
                    out.push(start..end);
                }
                i = end;
            }
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'-')
                {
                    i += 1;
                }
                word = (start, i);
            }
            _ => i += 1,
        }
    }
    out
}

pub fn to_toml(config: &Config) -> String {
    let body = toml::to_string_pretty(config).expect("config serialises");
    format!("# Fooocus Guard settings. Sizes in bytes (or \"12G\"), times in seconds (or \"10m\").\n{body}")
}

/// Write `text` to `path` so that readers see either the old file or the whole new one.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        let _ = fs::remove_file(&tmp);
        // The settings may hold a gateway token: a new file is the user's alone, and a file
        // the user made keeps the mode they gave it.
        #[cfg(unix)]
        let mode = {
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            let mode = fs::metadata(path)
                .map(|m| m.permissions().mode() & 0o7777)
                .unwrap_or(0o600);
            opts.mode(mode);
            mode
        };
        let mut f = opts.open(&tmp)?;
        // The umask may have narrowed the mode further than the user's file had it.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    #[cfg(unix)]
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_after_idle_is_off_by_default_read_as_a_duration_and_needs_the_gateway() {
        assert_eq!(Config::default().sleep_after_s, None);
        let c: Config = toml::from_str("sleep_after_s = \"20m\"\n").unwrap();
        assert_eq!(c.sleep_after_s, Some(1200.0));
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        let off: Config = toml::from_str("sleep_after_s = 0\n").unwrap();
        assert_eq!(off.sleep_after_s, None, "0 is off");
        let mut c = c;
        c.sleep_after_s = Some(30.0 * 86_400.0);
        let errs = c.validate();
        assert!(
            errs.len() == 1 && errs[0].field == "sleep_after_s" && errs[0].message.contains("7 d"),
            "{errs:?}"
        );
        c.sleep_after_s = Some(1200.0);
        c.gateway.enabled = false;
        let errs = c.validate();
        assert!(
            errs.len() == 1
                && errs[0].field == "sleep_after_s"
                && errs[0].message.contains("turn the gateway on")
                && errs[0].message.contains("--no-gateway"),
            "{errs:?}"
        );
    }

    #[test]
    fn allowed_origins_must_be_exact_origins() {
        let mut c = Config::default();
        c.gateway.allowed_origins = vec![
            "http://192.168.1.5:3000".into(),
            "https://example.org".into(),
        ];
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        for bad in [
            "*",
            "http://*.example.org",
            "example.org",
            "http://a.b/path",
            "null",
        ] {
            c.gateway.allowed_origins = vec![bad.into()];
            let errs = c.validate();
            assert!(
                errs.len() == 1
                    && errs[0].field == "gateway.allowed_origins"
                    && errs[0].message.contains("scheme://host:port"),
                "{bad}: {errs:?}"
            );
        }
        let text = "[gateway]\nallowed_origins = [\"http://localhost:3000\"]\n";
        let c: Config = toml::from_str(text).unwrap();
        assert_eq!(c.gateway.allowed_origins, ["http://localhost:3000"]);
    }

    /// The example in the README is what users copy: it must load as it is.
    #[test]
    fn flags_that_move_fooocus_and_a_token_without_gateway_are_refused() {
        let mut c = Config::default();
        c.launch.extra_args = [
            "--always-high-vram",
            "--listen",
            "--port=7000",
            "--sha",
            "--preset",
            "x",
        ]
        .map(String::from)
        .to_vec();
        let errs = c.validate();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "launch.extra_args[1]",
                "launch.extra_args[2]",
                "launch.extra_args[3]"
            ],
            "{errs:?}"
        );
        assert!(errs[0].message.contains("--listen") && errs[0].message.contains("launch.listen"));
        assert!(errs[2].message.contains("--share"));
        let mut c = Config::default();
        c.gateway.token = Some("long-enough-token".into());
        assert!(c.validate().is_empty());
        c.gateway.enabled = false;
        let errs = c.validate();
        assert!(
            errs.len() == 1
                && errs[0].field == "gateway.token"
                && errs[0].value == "(hidden)"
                && errs[0].message.contains("gateway.enabled"),
            "{errs:?}"
        );
    }

    #[test]
    fn the_readme_example_is_a_valid_config() {
        let readme = include_str!("../../../README.md");
        let block = readme
            .split("```toml\n")
            .nth(1)
            .and_then(|b| b.split("```").next())
            .expect("a toml block in the README");
        let c: Config = toml::from_str(block).unwrap_or_else(|e| panic!("{e}"));
        // The example's install path is the reader's to fill in.
        let errors: Vec<_> = c
            .validate()
            .into_iter()
            .filter(|e| e.field != "install_path")
            .collect();
        assert!(errors.is_empty(), "{errors:?}");
        assert!(c.gateway.enabled && !c.metrics.enabled && !c.log_prompts);
    }

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let c = Config::default();
        assert!(c.validate().is_empty());
        let back: Config = toml::from_str(&to_toml(&c)).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn human_units_in_the_file() {
        let c: Config = toml::from_str(
            "[limits]\ntimeout_s = \"5m\"\nmemory_bytes = \"12G\"\ncpu_percent = \"150%\"\nstall_timeout_s = 90\n",
        )
        .unwrap();
        assert_eq!(c.limits.timeout_s, Some(300.0));
        assert_eq!(c.limits.memory_bytes, Some(12 << 30));
        assert_eq!(c.limits.cpu_percent, Some(150));
        assert_eq!(c.limits.stall_timeout_s, Some(90.0));
    }

    #[test]
    fn errors_name_field_value_and_range() {
        let mut c = Config::default();
        c.limits.memory_bytes = Some(1 << 20);
        c.launch.port = 0;
        c.launch.vram_mode = Some("turbo".into());
        c.sampling_interval_ms = 5;
        let errs = c.validate();
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "launch.port",
                "launch.vram_mode",
                "limits.memory_bytes",
                "sampling_interval_ms"
            ]
        );
        assert!(errs[2].message.contains("64 MiB"), "{}", errs[2]);
        assert_eq!(errs[2].value, "1 MiB");
        assert!(errs[1].message.contains("always-low-vram"));
    }

    #[test]
    fn broken_file_keeps_last_good() {
        let dir = tempfile::tempdir().unwrap();
        let file = ConfigFile::new(dir.path().join("config.toml"));
        let mut good = Config::default();
        good.limits.timeout_s = Some(600.0);
        file.save(&good).unwrap();

        // The user breaks the file by hand.
        fs::write(&file.path, "limits = [oops").unwrap();
        let loaded = file.load().unwrap();
        assert_eq!(loaded.config, good);
        let w = loaded.warning.unwrap();
        assert!(
            w.contains("is not valid") && w.contains("last good settings"),
            "{w}"
        );
        // The broken file is still there for the user to fix; the last good one is intact.
        assert_eq!(fs::read_to_string(&file.path).unwrap(), "limits = [oops");
        assert_eq!(ConfigFile::read(&file.last_good_path()).unwrap(), good);

        // An invalid value is handled the same way and named.
        fs::write(&file.path, "[limits]\nmemory_bytes = \"1K\"\n").unwrap();
        let loaded = file.load().unwrap();
        assert!(loaded.warning.unwrap().contains("limits.memory_bytes"));

        // Absurd durations, as text or as numbers: named, never a crash.
        for text in ["timeout_s = \"1e30\"", "timeout_s = 1e30"] {
            fs::write(&file.path, format!("[limits]\n{text}\n")).unwrap();
            let loaded = file.load().unwrap();
            assert_eq!(loaded.config, good, "{text}");
            let w = loaded.warning.unwrap();
            assert!(w.contains("timeout_s"), "{text}: {w}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn config_files_are_private_and_keep_the_users_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = ConfigFile::new(dir.path().join("config.toml"));
        file.save(&Config::default()).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&file.path), 0o600);
        fs::set_permissions(&file.path, fs::Permissions::from_mode(0o640)).unwrap();
        file.save(&Config::default()).unwrap();
        assert_eq!(mode(&file.path), 0o640, "the user's mode is kept");
    }

    #[test]
    fn a_typo_on_the_token_line_never_shows_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let file = ConfigFile::new(dir.path().join("config.toml"));
        for text in [
            "[gateway]\ntoken = \"s3cret-token-value\n",
            "[gateway]\ntoken = s3cret-token-value\n",
            "[gateway]\ntoken = \"s3cret-token-value\" x\n",
            // Inline tables: a typo anywhere on the line quotes the whole line.
            "gateway = { token = \"s3cret-token-value\", enabld = true }\n",
            "gateway = { token = \"s3cret-token-value\" enabled = true }\n",
            "gateway = { enabled = true, token = 's3cret-token-value' \n",
            "gateway = {token=\"s3cret-token-value\",rate_per_minute=\"x\"}\n",
            "gateway.token = \"s3cret-token-value\"\ngateway.enabld = 1\n",
            "[gateway]\n\"token\" = \"\"\"s3cret-token-value\nmore\"\"\" oops\n",
            // A value of the wrong type is echoed by toml's message itself.
            "gateway = { token = 3141592653589 }\n",
            "gateway = { token = [\"s3cret-token-value\"] }\n",
            // A key spelt with an escape, and an array over lines.
            "gateway = { \"tok\\u0065n\" = \"s3cret-token-value\", enabld = true }\n",
            "[gateway]\ntoken = [\n\"s3cret-token-value\" x\n",
            "[gateway]\ntoken = [ # the token\n 's3cret-token-value', [\n\"s3cret2\" x ]]\n",
        ] {
            fs::write(&file.path, text).unwrap();
            let w = ConfigFile::read(&file.path).unwrap_err().to_string();
            assert!(
                !w.contains("s3cret") && !w.contains("3141592"),
                "{text}: {w}"
            );
            assert!(
                w.contains("is not valid") && w.contains("line "),
                "{text}: {w}"
            );
        }
        // The rest of the message still says what is wrong, and where.
        fs::write(
            &file.path,
            "gateway = { token = \"s3cret-token-value\", enabld = true }\n",
        )
        .unwrap();
        let w = ConfigFile::read(&file.path).unwrap_err().to_string();
        assert!(w.contains("enabld") && w.contains("line 1"), "{w}");
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_or_a_device_is_refused_at_once_and_a_huge_file_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("config.toml");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Without a writer, a blocking open of the FIFO would never return: run the read on a
        // thread and give it a deadline.
        let (tx, rx) = crossbeam_channel::bounded(1);
        let f = fifo.clone();
        std::thread::spawn(move || {
            let _ = tx.send(ConfigFile::read(&f).map(|_| ()).map_err(|e| e.to_string()));
        });
        let e = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("reading a FIFO as the config returns")
            .unwrap_err();
        assert!(e.contains("FIFO") && e.contains("regular file"), "{e}");

        let zero = dir.path().join("zero.toml");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let e = ConfigFile::read(&zero).unwrap_err().to_string();
        assert!(e.contains("a device") && e.contains("regular file"), "{e}");

        let big = dir.path().join("big.toml");
        let f = fs::File::create(&big).unwrap();
        f.set_len(2 << 30).unwrap(); // sparse: 2 GiB of nothing
        let e = ConfigFile::read(&big).unwrap_err().to_string();
        assert!(e.contains("larger than the 1 MiB"), "{e}");
        // load() gives the same answer (and keeps going with the last good settings, if any).
        let e = ConfigFile::new(&big).load().unwrap_err().to_string();
        assert!(e.contains("larger than"), "{e}");
    }

    #[test]
    fn invalid_config_is_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let file = ConfigFile::new(dir.path().join("config.toml"));
        file.save(&Config::default()).unwrap();
        let before = fs::read_to_string(&file.path).unwrap();
        let mut bad = Config::default();
        bad.limits.cpu_percent = Some(1);
        assert!(matches!(file.save(&bad), Err(ConfigError::Invalid { .. })));
        assert_eq!(fs::read_to_string(&file.path).unwrap(), before);
    }

    #[test]
    fn unknown_keys_are_reported() {
        let e = toml::from_str::<Config>("[limits]\ntimout_s = 5\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("timout_s"), "{e}");
    }

    #[test]
    fn missing_file_gives_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = ConfigFile::new(dir.path().join("none.toml"))
            .load()
            .unwrap();
        assert!(loaded.defaults && loaded.warning.is_none());
    }
}
