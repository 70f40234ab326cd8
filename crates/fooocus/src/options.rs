//! How Fooocus is started: the options the user picks (the config's `[launch]` section) and
//! the values Fooocus's own argument parser accepts for them.

use serde::{Deserialize, Serialize};

pub const DEFAULT_PORT: u16 = 7865;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
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

/// Fooocus's VRAM modes (args_parser.py), without the leading dashes.
pub const VRAM_MODES: [&str; 6] = [
    "always-gpu",
    "always-high-vram",
    "always-normal-vram",
    "always-low-vram",
    "always-no-vram",
    "always-cpu",
];
