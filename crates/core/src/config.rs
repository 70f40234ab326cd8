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

pub const DEFAULT_PORT: u16 = 7865;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LaunchOptions {
    pub preset: Option<String>,
    /// One of Fooocus's VRAM modes without the leading dashes, e.g. "always-low-vram".
    pub vram_mode: Option<String>,
    pub port: u16,
    /// Address to listen on; None = loopback only. "0.0.0.0" exposes Fooocus to the LAN.
    pub listen: Option<String>,
    pub extra_args: Vec<String>,
    /// Start through entry_with_update.py, which hard-resets the Fooocus folder to upstream's
    /// newest code at every start; off: launch.py starts the version the user has.
    pub auto_update: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartMode {
    Never,
    OnFailure,
    Always,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
#[serde(default, deny_unknown_fields)]
pub struct Notifications {
    pub enabled: bool,
    pub on_ready: bool,
    /// Opt-in: a notification when a generation completes (Fooocus itself only plays a sound
    /// in its browser tab).
    pub on_finished: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Metrics {
    pub enabled: bool,
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    pub enabled: bool,
    pub token: Option<String>,
    pub rate_per_minute: Option<u32>,
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
        }
    }
}

impl Default for LaunchOptions {
    fn default() -> Self {
        LaunchOptions {
            preset: None,
            vram_mode: None,
            port: DEFAULT_PORT,
            listen: None,
            extra_args: Vec::new(),
            auto_update: false,
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
        }
    }
}

/// Fooocus's VRAM modes (args_parser.py), without the leading dashes.
pub const VRAM_MODES: [&str; 6] = [
    "always-gpu",
    "always-high-vram",
    "always-normal-vram",
    "always-low-vram",
    "always-no-vram",
    "always-cpu",
];

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

    /// The platform's config dir: ~/.config/fooocus-guard/config.toml on Linux,
    /// %APPDATA%\fooocus-guard\config\config.toml on Windows.
    pub fn default_location() -> Option<Self> {
        crate::paths::config_dir().map(|d| ConfigFile::new(d.join("config.toml")))
    }

    pub fn last_good_path(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".last-good");
        PathBuf::from(p)
    }

    /// Parse and validate one file.
    pub fn read(path: &Path) -> Result<Config, ConfigError> {
        let text = fs::read_to_string(path).map_err(|e| ConfigError::Broken {
            path: path.display().to_string(),
            message: format!("cannot be read ({e})"),
        })?;
        let config: Config = toml::from_str(&text).map_err(|e| ConfigError::Broken {
            path: path.display().to_string(),
            message: hide_secrets(
                &format!("is not valid: {}", e.to_string().trim_end()),
                &text,
            ),
        })?;
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

/// TOML's errors quote the offending line: a typo on the token's line would put the token in
/// the warning, the logs and the dashboard. Every value given to a `token` key is hidden.
fn hide_secrets(message: &str, source: &str) -> String {
    let mut out = message.to_string();
    for line in source.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if !key.trim().trim_matches('"').ends_with("token") {
            continue;
        }
        let value = value.trim();
        if value.len() >= 3 {
            out = out.replace(value, "(hidden)");
            // The value as TOML would show it without its quotes.
            let bare = value.trim_matches(|c| c == '"' || c == '\'');
            if bare.len() >= 3 {
                out = out.replace(bare, "(hidden)");
            }
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
        ] {
            fs::write(&file.path, text).unwrap();
            let w = ConfigFile::read(&file.path).unwrap_err().to_string();
            assert!(!w.contains("s3cret"), "{w}");
            assert!(w.contains("is not valid"), "{w}");
        }
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
