//! Limit policy: given the limits, what Fooocus is doing and what the tree uses, is a limit
//! breached, and when is the next time one could be? Pure; the supervisor keeps the timer.

use std::time::{Duration, Instant};

use crate::config::LimitsConfig;
use crate::events::LimitKind;
use crate::generation::{Phase, Tracker};

/// The limits in the form the policy works with.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LimitSet {
    pub timeout: Option<Duration>,
    pub stall: Option<Duration>,
    pub startup: Option<Duration>,
    pub memory: Option<u64>,
    pub swap: Option<u64>,
    pub vram: Option<u64>,
    pub cpu_percent: Option<u32>,
    /// How long a graceful stop may take before the tree is killed.
    pub grace: Duration,
}

pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

impl From<&LimitsConfig> for LimitSet {
    fn from(c: &LimitsConfig) -> Self {
        // Validation keeps limits in range; an absurd value that slipped through is no limit,
        // never a panic.
        let d = |v: Option<f64>| {
            v.filter(|v| *v > 0.0)
                .and_then(|v| Duration::try_from_secs_f64(v).ok())
        };
        LimitSet {
            timeout: d(c.timeout_s),
            stall: d(c.stall_timeout_s),
            startup: d(c.startup_timeout_s),
            memory: c.memory_bytes,
            swap: c.swap_bytes,
            vram: c.vram_bytes,
            cpu_percent: c.cpu_percent,
            grace: d(c.grace_s).unwrap_or(DEFAULT_GRACE),
        }
    }
}

impl LimitSet {
    pub fn containment(&self) -> guard_contain::Limits {
        guard_contain::Limits {
            memory_bytes: self.memory,
            swap_bytes: self.swap,
            cpu_percent: self.cpu_percent,
        }
    }
}

/// How long one sampler step takes, from the progress bars: Fooocus looks at its Stop flag only
/// between steps, so a graceful stop needs at least one step's time (10 s and more on a slow
/// GPU) before a kill is fair.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepClock {
    last: Option<(u32, u32, Instant)>,
    /// The slowest step seen in the current generation, in seconds.
    slowest: Option<f64>,
}

impl StepClock {
    pub fn on_progress(&mut self, step: u32, total: u32, now: Instant) {
        if let Some((s, t, at)) = self.last {
            if t == total && step > s {
                let per = now.duration_since(at).as_secs_f64() / f64::from(step - s);
                self.slowest = Some(self.slowest.unwrap_or(0.0).max(per));
            }
        }
        self.last = Some((step, total, now));
    }

    /// A new generation: its steps may be of another size.
    pub fn reset(&mut self) {
        *self = StepClock::default();
    }

    pub fn step_seconds(&self) -> Option<f64> {
        self.slowest
    }
}

/// The grace a graceful stop gets, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Grace {
    pub duration: Duration,
    /// "configured" or "one step" (the observed step time was longer than the setting).
    pub reason: &'static str,
}

/// The configured grace, stretched to one observed step and a half when steps are slower.
pub fn grace_for(configured: Duration, step_seconds: Option<f64>) -> Grace {
    let step = step_seconds
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(|s| Duration::from_secs_f64((s * 1.5).min(3600.0)));
    match step {
        Some(step) if step > configured => Grace {
            duration: step,
            reason: "one step",
        },
        _ => Grace {
            duration: configured,
            reason: "configured",
        },
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Breach {
    pub limit: LimitKind,
    /// The limit, in seconds / bytes / percent.
    pub configured: f64,
    /// What was seen when it fired.
    pub observed: f64,
    /// For time limits: the instant the limit was due (to measure how late the guard acted).
    pub due: Option<Instant>,
    /// For VRAM: "tree" or "device".
    pub source: Option<&'static str>,
}

/// The next instant a time limit falls due, and which. None while Fooocus is idle (a limit
/// never fires then) or while a stop is already under way.
pub fn next_time_limit(
    limits: &LimitSet,
    tracker: &Tracker,
    run_started: Option<Instant>,
) -> Option<(Instant, LimitKind)> {
    let mut best: Option<(Instant, LimitKind)> = None;
    let mut consider = |at: Instant, kind: LimitKind| {
        if best.is_none_or(|(b, _)| at < b) {
            best = Some((at, kind));
        }
    };
    if let (Phase::Starting, Some(d), Some(start)) = (&tracker.phase, limits.startup, run_started) {
        // A model download (GBs at the first start) is progress: the limit counts from its
        // last sign of life, so only a download that stops moving runs into it.
        let from = tracker.startup_activity.map_or(start, |a| a.max(start));
        consider(from + d, LimitKind::Startup);
    }
    if let Some(g) = tracker.current() {
        if g.limit.is_none() && !g.finishing() {
            if let Some(d) = limits.timeout {
                consider(g.started_at() + d, LimitKind::Timeout);
            }
            if let Some(d) = limits.stall {
                consider(g.last_activity() + d, LimitKind::Stall);
            }
        }
    }
    best
}

/// A time limit that is due at `now`, if any.
pub fn check_time(
    limits: &LimitSet,
    tracker: &Tracker,
    run_started: Option<Instant>,
    now: Instant,
) -> Option<Breach> {
    let (due, kind) = next_time_limit(limits, tracker, run_started)?;
    if now < due {
        return None;
    }
    let (configured, observed) = match kind {
        LimitKind::Startup => (
            limits.startup?,
            now.duration_since(
                tracker
                    .startup_activity
                    .map_or(run_started?, |a| a.max(run_started.unwrap_or(a))),
            ),
        ),
        LimitKind::Timeout => (limits.timeout?, tracker.current()?.elapsed(now)),
        LimitKind::Stall => (
            limits.stall?,
            now.duration_since(tracker.current()?.last_activity()),
        ),
        _ => return None,
    };
    Some(Breach {
        limit: kind,
        configured: configured.as_secs_f64(),
        observed: observed.as_secs_f64(),
        due: Some(due),
        source: None,
    })
}

/// What the sampler saw of the tree, in the form the policy needs.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    pub ram_bytes: u64,
    pub swap_bytes: u64,
    /// The tree's VRAM where per-process figures exist.
    pub tree_vram_bytes: Option<u64>,
    /// All VRAM in use on the devices (when per-process figures are unsupported).
    pub device_vram_bytes: Option<u64>,
    pub cpu_percent: f64,
}

/// A resource limit the guard itself must enforce from samples: VRAM always (no OS enforces
/// it), RAM and swap only when the container cannot (`watchdog`). VRAM counts only while a
/// generation runs: a model held in VRAM while idle is Fooocus working as designed.
pub fn check_usage(
    limits: &LimitSet,
    usage: &Usage,
    generating: bool,
    watchdog: bool,
) -> Option<Breach> {
    if watchdog {
        if let Some(cap) = limits.memory {
            if usage.ram_bytes > cap {
                return Some(Breach {
                    limit: LimitKind::Memory,
                    configured: cap as f64,
                    observed: usage.ram_bytes as f64,
                    due: None,
                    source: None,
                });
            }
        }
        if let Some(cap) = limits.swap {
            if usage.swap_bytes > cap {
                return Some(Breach {
                    limit: LimitKind::Swap,
                    configured: cap as f64,
                    observed: usage.swap_bytes as f64,
                    due: None,
                    source: None,
                });
            }
        }
    }
    if generating {
        if let Some(cap) = limits.vram {
            let (seen, source) = match (usage.tree_vram_bytes, usage.device_vram_bytes) {
                (Some(v), _) => (v, "tree"),
                (None, Some(v)) => (v, "device"),
                (None, None) => return None,
            };
            if seen > cap {
                return Some(Breach {
                    limit: LimitKind::Vram,
                    configured: cap as f64,
                    observed: seen as f64,
                    due: None,
                    source: Some(source),
                });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generation::Signal;
    use std::time::SystemTime;

    fn tracker_with_task(t0: Instant) -> Tracker {
        let mut t = Tracker::new(1);
        let mut out = Vec::new();
        t.on_signal(
            Signal::Ready { url: "u".into() },
            t0,
            SystemTime::now(),
            &mut out,
        );
        t.on_signal(Signal::TaskStart, t0, SystemTime::now(), &mut out);
        t
    }

    #[test]
    fn no_limit_fires_while_idle() {
        let limits = LimitSet {
            timeout: Some(Duration::from_secs(1)),
            stall: Some(Duration::from_secs(1)),
            vram: Some(1),
            ..Default::default()
        };
        let mut t = Tracker::new(1);
        let t0 = Instant::now();
        let mut out = Vec::new();
        t.on_signal(
            Signal::Ready { url: "u".into() },
            t0,
            SystemTime::now(),
            &mut out,
        );
        assert_eq!(next_time_limit(&limits, &t, Some(t0)), None);
        assert_eq!(
            check_time(&limits, &t, Some(t0), t0 + Duration::from_secs(3600)),
            None
        );
        let u = Usage {
            tree_vram_bytes: Some(10 << 30),
            ..Default::default()
        };
        assert_eq!(check_usage(&limits, &u, false, false), None);
    }

    #[test]
    fn timeout_and_stall_deadlines() {
        let t0 = Instant::now();
        let limits = LimitSet {
            timeout: Some(Duration::from_secs(300)),
            stall: Some(Duration::from_secs(60)),
            ..Default::default()
        };
        let mut t = tracker_with_task(t0);
        assert_eq!(
            next_time_limit(&limits, &t, Some(t0)),
            Some((t0 + Duration::from_secs(60), LimitKind::Stall))
        );
        // Progress pushes the stall deadline; the timeout stays.
        let mut out = Vec::new();
        for s in 1..=9u64 {
            t.on_signal(
                Signal::Progress {
                    step: s as u32,
                    total: 30,
                },
                t0 + Duration::from_secs(s * 30),
                SystemTime::now(),
                &mut out,
            );
        }
        assert_eq!(
            next_time_limit(&limits, &t, Some(t0)),
            Some((t0 + Duration::from_secs(300), LimitKind::Timeout))
        );
        let b = check_time(&limits, &t, Some(t0), t0 + Duration::from_millis(300_020)).unwrap();
        assert_eq!(b.limit, LimitKind::Timeout);
        assert_eq!(b.configured, 300.0);
        assert!((b.observed - 300.02).abs() < 1e-6);
        // Once marked, the generation's limits are the escalation's business.
        t.mark_limit(LimitKind::Timeout);
        assert_eq!(next_time_limit(&limits, &t, Some(t0)), None);
    }

    #[test]
    fn startup_limit_only_before_ready() {
        let t0 = Instant::now();
        let limits = LimitSet {
            startup: Some(Duration::from_secs(120)),
            ..Default::default()
        };
        let t = Tracker::new(1);
        let b = check_time(&limits, &t, Some(t0), t0 + Duration::from_secs(121)).unwrap();
        assert_eq!(b.limit, LimitKind::Startup);
        let t = tracker_with_task(t0);
        assert_eq!(
            check_time(&limits, &t, Some(t0), t0 + Duration::from_secs(121)),
            None
        );
    }

    #[test]
    fn vram_source_and_watchdog() {
        let limits = LimitSet {
            vram: Some(4 << 30),
            memory: Some(8 << 30),
            ..Default::default()
        };
        let u = Usage {
            ram_bytes: 9 << 30,
            device_vram_bytes: Some(5 << 30),
            ..Default::default()
        };
        let b = check_usage(&limits, &u, true, false).unwrap();
        assert_eq!((b.limit, b.source), (LimitKind::Vram, Some("device")));
        let b = check_usage(&limits, &u, false, true).unwrap();
        assert_eq!(b.limit, LimitKind::Memory);
        let u = Usage {
            tree_vram_bytes: Some(3 << 30),
            device_vram_bytes: Some(7 << 30),
            ..Default::default()
        };
        assert_eq!(check_usage(&limits, &u, true, false), None);
    }

    #[test]
    fn grace_covers_one_observed_step() {
        let t0 = Instant::now();
        let mut c = StepClock::default();
        c.on_progress(1, 30, t0);
        c.on_progress(2, 30, t0 + Duration::from_secs(2));
        c.on_progress(3, 30, t0 + Duration::from_secs(16)); // a slow step: 14 s
        assert_eq!(c.step_seconds(), Some(14.0));
        let g = grace_for(Duration::from_secs(10), c.step_seconds());
        assert_eq!(
            (g.duration, g.reason),
            (Duration::from_secs(21), "one step")
        );
        // Fast steps: the setting stands.
        let g = grace_for(Duration::from_secs(10), Some(0.5));
        assert_eq!(
            (g.duration, g.reason),
            (Duration::from_secs(10), "configured")
        );
        assert_eq!(
            grace_for(Duration::from_secs(10), None).reason,
            "configured"
        );
        // A new image's bar (another total) or a reset measures nothing across it.
        c.reset();
        c.on_progress(5, 30, t0);
        c.on_progress(1, 20, t0 + Duration::from_secs(100));
        assert_eq!(c.step_seconds(), None);
    }

    /// The first start downloads GBs of models before Fooocus is ready: the start-up limit
    /// counts from the download's last bar, and the download shows as progress.
    #[test]
    fn a_first_start_model_download_keeps_the_startup_limit_quiet() {
        use crate::console::StreamReader;
        use crate::generation::ModelDownload;
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let limits = LimitSet {
            startup: Some(s(60)),
            stall: Some(s(30)),
            ..Default::default()
        };
        let mut t = Tracker::new(1);
        let mut out = Vec::new();
        // torch.hub's download line and tqdm bar, as Fooocus 2.5 prints them (stderr).
        let mut stderr = StreamReader::new();
        let mut feed = |t: &mut Tracker, text: &str, at: Instant| {
            stderr.feed(
                text.as_bytes(),
                |_| {},
                |sig| t.on_signal(sig, at, SystemTime::now(), &mut out),
            )
        };
        feed(
            &mut t,
            "Downloading: \"https://huggingface.co/lllyasviel/fav_models/resolve/main/fav/juggernautXL_v8Rundiffusion.safetensors\" to /home/me/Fooocus/models/checkpoints/juggernautXL_v8Rundiffusion.safetensors\n\n",
            t0 + s(10),
        );
        for i in 1..=10u64 {
            let done = 0.662 * i as f64;
            feed(
                &mut t,
                &format!(
                    "{:>3}%|#####     | {done:.2}G/6.62G [00:50<00:50, 13.2MB/s]\r",
                    i * 10
                ),
                t0 + s(10 + 50 * i),
            );
        }
        let last = t0 + s(510);
        assert_eq!(
            next_time_limit(&limits, &t, Some(t0)),
            Some((last + s(60), LimitKind::Startup))
        );
        assert_eq!(check_time(&limits, &t, Some(t0), last + s(59)), None);
        assert_eq!(
            t.download,
            Some(ModelDownload {
                file: Some("juggernautXL_v8Rundiffusion.safetensors".into()),
                percent: Some(100),
                size: Some("6.62G/6.62G".into()),
            })
        );
        // A download that stops moving runs into the limit, from its last bar.
        let b = check_time(&limits, &t, Some(t0), last + s(61)).expect("startup breach");
        assert_eq!(b.limit, LimitKind::Startup);
        assert!((b.observed - 61.0).abs() < 0.01, "{b:?}");
        // Ready: the download is over.
        t.on_signal(
            Signal::Ready { url: "u".into() },
            last + s(70),
            SystemTime::now(),
            &mut Vec::new(),
        );
        assert_eq!(t.download, None);
        assert_eq!(next_time_limit(&limits, &t, Some(t0)), None);
    }

    #[test]
    fn model_download_lines_are_read() {
        use crate::generation::ModelDownload;
        let d = ModelDownload::from_line(" 45%|####5     | 2.91G/6.46G [01:23<01:40, 35.2MB/s]")
            .unwrap();
        assert_eq!(
            (d.percent, d.size.as_deref()),
            (Some(45), Some("2.91G/6.46G"))
        );
        let d = ModelDownload::from_line(
            "Downloading: \"https://x/y/model.pth\" to C:\\Fooocus\\models\\model.pth",
        )
        .unwrap();
        assert_eq!(d.file.as_deref(), Some("model.pth"));
        assert_eq!(
            ModelDownload::from_line("[Fooocus] Downloading upscale models ..."),
            None
        );
    }
}
