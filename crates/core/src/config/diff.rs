//! One comparison of the saved settings with the ones in use: which settings changed, and for
//! each whether it is applied at once, when Fooocus restarts, or when Fooocus Guard restarts.
//! Every consumer (the supervisor, the sampler, the metrics page, autostart, the settings
//! panel's answer) reads its part from this one diff, so a setting cannot be saved and then
//! silently ignored.
//!
//! `ConfigDiff::between` names every field of `Config` and of its nested structs without `..`:
//! a new field does not compile until it is classified here.

use std::collections::BTreeSet;

use super::{
    Config, GatewayConfig, LaunchOptions, LimitsConfig, Metrics, Notifications, RestartConfig,
};

/// When a changed setting takes effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Effect {
    /// Applied as soon as it is saved.
    Live,
    /// The running Fooocus keeps the old value (its command line, its gateway, its container)
    /// until it restarts.
    FooocusRestart,
    /// Read once when Fooocus Guard starts.
    GuardRestart,
}

/// A setting as the user sees it in the settings panel. Several fields may make one setting
/// (all the limits are "limits"). The order here is the order the user reads them in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Setting {
    Limits,
    RestartPolicy,
    SamplingInterval,
    Notifications,
    OpenBrowser,
    StartWithSession,
    SleepAfterIdle,
    LogPrompts,
    Metrics,
    NvmlLibrary,
    LaunchOptions,
    Install,
    Gateway,
    Containment,
}

impl Setting {
    /// The words the settings panel shows. The older ones are matched by the UI's and the
    /// end-to-end tests: keep them as they are.
    pub fn label(self) -> &'static str {
        match self {
            Setting::Limits => "limits",
            Setting::RestartPolicy => "restart policy",
            Setting::SamplingInterval => "sampling interval",
            Setting::Notifications => "notifications",
            Setting::OpenBrowser => "open the browser when ready",
            Setting::StartWithSession => "start with the session",
            Setting::SleepAfterIdle => "sleep after idle",
            Setting::LogPrompts => "console in the log files",
            Setting::Metrics => "metrics",
            Setting::NvmlLibrary => "NVML library",
            Setting::LaunchOptions => "launch options",
            Setting::Install => "install",
            Setting::Gateway => "gateway",
            Setting::Containment => "containment backend",
        }
    }

    /// When a change of this setting takes effect, given what its consumer can do.
    pub fn effect(self) -> Effect {
        match self {
            // The supervisor reads these on every decision (LimitSet, RestartPolicy, the sleep
            // timer, each console line, the ready transition).
            Setting::Limits
            | Setting::RestartPolicy
            | Setting::SleepAfterIdle
            | Setting::LogPrompts
            | Setting::OpenBrowser => Effect::Live,
            // The sampler takes a new interval at its next tick and reloads the GPU library.
            Setting::SamplingInterval | Setting::NvmlLibrary => Effect::Live,
            // The notifier reads them at each event; autostart is one registry/file write;
            // the metrics page is rebound (metrics::Exporter).
            Setting::Notifications | Setting::StartWithSession | Setting::Metrics => Effect::Live,
            // Fixed for a run: Fooocus's command line, the gateway in front of it, its
            // container.
            Setting::LaunchOptions | Setting::Install | Setting::Gateway | Setting::Containment => {
                Effect::FooocusRestart
            }
        }
    }
}

/// What changed between two configs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigDiff {
    changed: BTreeSet<Setting>,
}

impl ConfigDiff {
    pub fn between(old: &Config, new: &Config) -> ConfigDiff {
        let mut d = ConfigDiff::default();
        let mut mark = |changed: bool, s: Setting| {
            if changed {
                d.changed.insert(s);
            }
        };
        // No `..` in these patterns: a new field is a compile error until it is classified.
        let Config {
            install_path,
            python,
            launch,
            restart,
            limits,
            sampling_interval_ms,
            notifications,
            metrics,
            gateway,
            log_prompts,
            start_with_session,
            containment,
            nvml_library,
            sleep_after_s,
            open_browser,
        } = new;
        mark(*install_path != old.install_path, Setting::Install);
        mark(*python != old.python, Setting::Install);
        mark(
            *sampling_interval_ms != old.sampling_interval_ms,
            Setting::SamplingInterval,
        );
        mark(*log_prompts != old.log_prompts, Setting::LogPrompts);
        mark(
            *start_with_session != old.start_with_session,
            Setting::StartWithSession,
        );
        mark(*containment != old.containment, Setting::Containment);
        mark(*nvml_library != old.nvml_library, Setting::NvmlLibrary);
        mark(*sleep_after_s != old.sleep_after_s, Setting::SleepAfterIdle);
        mark(*open_browser != old.open_browser, Setting::OpenBrowser);

        // Each launch option on its own: one that could change live one day gets its own line.
        let LaunchOptions {
            preset,
            vram_mode,
            port,
            listen,
            extra_args,
            auto_update,
        } = launch;
        let o = &old.launch;
        mark(*preset != o.preset, Setting::LaunchOptions);
        mark(*vram_mode != o.vram_mode, Setting::LaunchOptions);
        // Where the gateway listens for Fooocus too: both are started with the run.
        mark(*port != o.port, Setting::LaunchOptions);
        mark(*listen != o.listen, Setting::LaunchOptions);
        mark(*extra_args != o.extra_args, Setting::LaunchOptions);
        mark(*auto_update != o.auto_update, Setting::LaunchOptions);

        let RestartConfig {
            policy,
            max_restarts,
            window_s,
        } = restart;
        let o = &old.restart;
        mark(*policy != o.policy, Setting::RestartPolicy);
        mark(*max_restarts != o.max_restarts, Setting::RestartPolicy);
        mark(*window_s != o.window_s, Setting::RestartPolicy);

        // All enforced from one LimitSet, rebuilt as a whole (caps on the live container too).
        let LimitsConfig {
            timeout_s,
            stall_timeout_s,
            startup_timeout_s,
            memory_bytes,
            swap_bytes,
            vram_bytes,
            cpu_percent,
            grace_s,
        } = limits;
        let o = &old.limits;
        mark(*timeout_s != o.timeout_s, Setting::Limits);
        mark(*stall_timeout_s != o.stall_timeout_s, Setting::Limits);
        mark(*startup_timeout_s != o.startup_timeout_s, Setting::Limits);
        mark(*memory_bytes != o.memory_bytes, Setting::Limits);
        mark(*swap_bytes != o.swap_bytes, Setting::Limits);
        mark(*vram_bytes != o.vram_bytes, Setting::Limits);
        mark(*cpu_percent != o.cpu_percent, Setting::Limits);
        mark(*grace_s != o.grace_s, Setting::Limits);

        let Notifications {
            enabled,
            on_ready,
            on_finished,
        } = notifications;
        let o = &old.notifications;
        mark(*enabled != o.enabled, Setting::Notifications);
        mark(*on_ready != o.on_ready, Setting::Notifications);
        mark(*on_finished != o.on_finished, Setting::Notifications);

        let Metrics { enabled, port } = metrics;
        let o = &old.metrics;
        mark(*enabled != o.enabled, Setting::Metrics);
        // A port of a page that is off changes nothing the user can see.
        mark(*port != o.port && *enabled, Setting::Metrics);

        // The gateway is made for a run, with its token, rate and origins.
        let GatewayConfig {
            enabled,
            token,
            rate_per_minute,
            allowed_origins,
        } = gateway;
        let o = &old.gateway;
        mark(*enabled != o.enabled, Setting::Gateway);
        mark(*token != o.token, Setting::Gateway);
        mark(*rate_per_minute != o.rate_per_minute, Setting::Gateway);
        mark(*allowed_origins != o.allowed_origins, Setting::Gateway);
        d
    }

    pub fn is_empty(&self) -> bool {
        self.changed.is_empty()
    }

    pub fn changed(&self, s: Setting) -> bool {
        self.changed.contains(&s)
    }

    /// The changed settings, in the panel's order.
    pub fn settings(&self) -> impl Iterator<Item = Setting> + '_ {
        self.changed.iter().copied()
    }

    /// The labels of the changed settings that take effect `when`.
    pub fn labels(&self, when: Effect) -> Vec<String> {
        self.settings()
            .filter(|s| s.effect() == when)
            .map(|s| s.label().to_string())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diff(change: impl FnOnce(&mut Config)) -> ConfigDiff {
        let old = Config::default();
        let mut new = old.clone();
        change(&mut new);
        ConfigDiff::between(&old, &new)
    }

    #[test]
    fn no_change_is_an_empty_diff() {
        let d = ConfigDiff::between(&Config::default(), &Config::default());
        assert!(d.is_empty());
        for when in [Effect::Live, Effect::FooocusRestart, Effect::GuardRestart] {
            assert!(d.labels(when).is_empty());
        }
    }

    #[test]
    fn live_changes_keep_their_labels() {
        let d = diff(|c| {
            c.limits.timeout_s = Some(60.0);
            c.restart.max_restarts = 2;
            c.sampling_interval_ms = 500;
            c.notifications.on_finished = true;
            c.open_browser = true;
            c.start_with_session = true;
        });
        assert_eq!(
            d.labels(Effect::Live),
            [
                "limits",
                "restart policy",
                "sampling interval",
                "notifications",
                "open the browser when ready",
                "start with the session"
            ]
        );
        assert!(d.labels(Effect::FooocusRestart).is_empty());
        assert!(d.labels(Effect::GuardRestart).is_empty());
    }

    #[test]
    fn what_fooocus_runs_with_needs_a_fooocus_restart() {
        let d = diff(|c| {
            c.launch.vram_mode = Some("always-low-vram".into());
            c.python = Some("/usr/bin/python3".into());
            c.gateway.rate_per_minute = Some(60);
            c.containment = "fallback".into();
        });
        assert_eq!(
            d.labels(Effect::FooocusRestart),
            [
                "launch options",
                "install",
                "gateway",
                "containment backend"
            ]
        );
        assert!(d.labels(Effect::Live).is_empty());
    }

    #[test]
    fn every_launch_option_is_a_launch_option() {
        let changes: [fn(&mut Config); 6] = [
            |c| c.launch.preset = Some("anime".into()),
            |c| c.launch.vram_mode = Some("always-cpu".into()),
            |c| c.launch.port = 7000,
            |c| c.launch.listen = Some("0.0.0.0".into()),
            |c| c.launch.extra_args = vec!["--disable-xformers".into()],
            |c| c.launch.auto_update = true,
        ];
        for change in changes {
            let d = diff(change);
            assert_eq!(d.settings().collect::<Vec<_>>(), [Setting::LaunchOptions]);
            assert_eq!(d.labels(Effect::FooocusRestart), ["launch options"]);
        }
    }

    /// These were saved but neither applied nor reported before the one diff.
    #[test]
    fn metrics_nvml_sleep_and_log_prompts_are_reported() {
        let d = diff(|c| c.metrics.enabled = true);
        assert_eq!(d.labels(Effect::Live), ["metrics"]);
        let d = diff(|c| {
            c.metrics.enabled = true;
            c.metrics.port = 9999;
        });
        assert_eq!(d.labels(Effect::Live), ["metrics"]);
        let d = diff(|c| c.nvml_library = Some("/opt/nvidia/libnvidia-ml.so.1".into()));
        assert_eq!(d.labels(Effect::Live), ["NVML library"]);
        let d = diff(|c| c.sleep_after_s = Some(1200.0));
        assert_eq!(d.labels(Effect::Live), ["sleep after idle"]);
        let d = diff(|c| c.log_prompts = true);
        assert_eq!(d.labels(Effect::Live), ["console in the log files"]);
    }

    #[test]
    fn the_port_of_metrics_that_are_off_changes_nothing() {
        assert!(diff(|c| c.metrics.port = 9999).is_empty());
    }

    #[test]
    fn a_setting_is_listed_once_however_many_of_its_fields_change() {
        let d = diff(|c| {
            c.limits.memory_bytes = Some(8 << 30);
            c.limits.cpu_percent = Some(200);
            c.install_path = Some("/x".into());
            c.python = Some("/y".into());
        });
        assert_eq!(d.labels(Effect::Live), ["limits"]);
        assert_eq!(d.labels(Effect::FooocusRestart), ["install"]);
    }

    /// Each label names one setting: the panel's list never shows two with the same words.
    #[test]
    fn labels_are_distinct() {
        let all = [
            Setting::Limits,
            Setting::RestartPolicy,
            Setting::SamplingInterval,
            Setting::Notifications,
            Setting::OpenBrowser,
            Setting::StartWithSession,
            Setting::SleepAfterIdle,
            Setting::LogPrompts,
            Setting::Metrics,
            Setting::NvmlLibrary,
            Setting::LaunchOptions,
            Setting::Install,
            Setting::Gateway,
            Setting::Containment,
        ];
        let labels: BTreeSet<_> = all.iter().map(|s| s.label()).collect();
        assert_eq!(labels.len(), all.len());
    }
}
