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

/// How many recent steps the step-time estimate looks at (a fixed ring: no allocation on the
/// supervisor's hot path).
const RECENT_STEPS: usize = 16;
/// The least a step is taken to last: a burst of redraws must not make the estimate tiny.
pub const STEP_FLOOR: Duration = Duration::from_secs(1);

/// How long one sampler step takes, from the progress bars: Fooocus looks at its Stop flag only
/// between steps, so a graceful stop needs at least one step's time (10 s and more on a slow
/// GPU) before a kill is fair. Steps vary (real Fooocus on CPU: 2-7 s, and one 6.6 s step was
/// followed by a longer one), so the estimate is the slowest recent step, at least twice the
/// median, at least `STEP_FLOOR`: never the one last step.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepClock {
    last: Option<(u32, u32, Instant)>,
    /// Seconds per step of the recent steps of the current generation (a ring).
    recent: [f64; RECENT_STEPS],
    seen: usize,
}

impl StepClock {
    pub fn on_progress(&mut self, step: u32, total: u32, now: Instant) {
        if let Some((s, t, at)) = self.last {
            if t == total && step > s {
                let per = now.duration_since(at).as_secs_f64() / f64::from(step - s);
                self.recent[self.seen % RECENT_STEPS] = per;
                self.seen += 1;
            }
        }
        self.last = Some((step, total, now));
    }

    /// A new generation: its steps may be of another size.
    pub fn reset(&mut self) {
        *self = StepClock::default();
    }

    /// Whether a step of the current generation was seen (its bar drew at least once).
    pub fn stepping(&self) -> bool {
        self.last.is_some()
    }

    pub fn step_seconds(&self) -> Option<f64> {
        let n = self.seen.min(RECENT_STEPS);
        if n == 0 {
            return None;
        }
        let mut sorted = self.recent;
        let sorted = &mut sorted[..n];
        sorted.sort_by(f64::total_cmp);
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        let slowest = sorted[n - 1];
        Some(slowest.max(median * 2.0).max(STEP_FLOOR.as_secs_f64()))
    }
}

/// What Fooocus was doing when a stop was asked, for the grace: its phase, the step time, and
/// how long that phase took in past generations.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Pace {
    pub phase: Option<fooocus_console::Phase>,
    /// The step-time estimate (`StepClock::step_seconds`).
    pub step_seconds: Option<f64>,
    /// The longest recent time of this phase in past generations (history), in seconds.
    pub phase_history_s: Option<f64>,
}

/// The grace a graceful stop gets, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Grace {
    pub duration: Duration,
    /// "configured", "one step" (the step estimate was longer than the setting), "until the
    /// first step" (Fooocus was loading or preparing: it looks at Stop only at its first step),
    /// or "until the next step or the end" (decoding or saving).
    pub reason: &'static str,
    /// The grace lasts until a step is seen; then one step's grace is left (see
    /// `grace_after_step`).
    pub until_step: bool,
}

/// Default bound of the grace before the first step, without history (real Fooocus on a
/// 2-core CPU: preparation 16-113 s).
pub const PREPARATION_GRACE: Duration = Duration::from_secs(180);
/// Default bound of the grace while decoding or saving, without history (VAE decode on CPU
/// about 10 s).
pub const DECODE_GRACE: Duration = Duration::from_secs(60);
/// No grace is ever longer than this.
pub const GRACE_CEILING: Duration = Duration::from_secs(600);

/// The grace for a stop asked while Fooocus is in `pace.phase`: Fooocus honours a Stop only
/// at a sampling step, so before the first step (model load, preparation) and while decoding
/// or saving, the stop is given until the next step, bounded by what history says that phase
/// takes (x1.5) or a default; while sampling, one step (robust estimate x1.5) or the
/// configured grace, whichever is longer.
pub fn grace_for(configured: Duration, pace: &Pace) -> Grace {
    use fooocus_console::Phase as P;
    let step = step_grace(configured, pace.step_seconds);
    let (default, reason) = match pace.phase {
        Some(P::ModelLoad | P::Preparation) => (PREPARATION_GRACE, "until the first step"),
        Some(P::Decode | P::Saving) => (DECODE_GRACE, "until the next step or the end"),
        Some(P::Sampling) | None => return step,
    };
    let bound = pace
        .phase_history_s
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(default, |s| Duration::from_secs_f64((s * 1.5).min(3600.0)))
        .min(GRACE_CEILING);
    if bound <= step.duration {
        return step;
    }
    Grace {
        duration: bound,
        reason,
        until_step: true,
    }
}

/// The grace left once the step a phase grace waited for is seen: one step (or the setting).
pub fn grace_after_step(configured: Duration, step_seconds: Option<f64>) -> Grace {
    step_grace(configured, step_seconds)
}

/// The configured grace, stretched to one estimated step and a half when steps are slower.
fn step_grace(configured: Duration, step_seconds: Option<f64>) -> Grace {
    let step = step_seconds
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(|s| Duration::from_secs_f64((s * 1.5).min(3600.0)).min(GRACE_CEILING));
    match step {
        Some(step) if step > configured => Grace {
            duration: step,
            reason: "one step",
            until_step: false,
        },
        _ => Grace {
            duration: configured,
            reason: "configured",
            until_step: false,
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
                // Model-load time is not counted (see `Generation::timeout_from`).
                consider(g.timeout_from() + d, LimitKind::Timeout);
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
        LimitKind::Timeout => (limits.timeout?, tracker.current()?.timed(now)),
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
    use fooocus_console::EventKind;
    use std::time::SystemTime;

    fn tracker_with_task(t0: Instant) -> Tracker {
        let mut t = Tracker::new(1);
        let mut out = Vec::new();
        t.on_signal(
            EventKind::Ready { url: "u".into() },
            t0,
            SystemTime::now(),
            &mut out,
        );
        t.on_signal(EventKind::TaskStart, t0, SystemTime::now(), &mut out);
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
            EventKind::Ready { url: "u".into() },
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
                EventKind::Progress {
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
        let none = Pace::default();
        let step = |s: Option<f64>| Pace {
            step_seconds: s,
            ..Pace::default()
        };
        let mut c = StepClock::default();
        c.on_progress(1, 30, t0);
        c.on_progress(2, 30, t0 + Duration::from_secs(2));
        c.on_progress(3, 30, t0 + Duration::from_secs(16)); // a slow step: 14 s
                                                            // The slowest (14 s) is under twice the median (2 x 8 s).
        assert_eq!(c.step_seconds(), Some(16.0));
        let g = grace_for(Duration::from_secs(10), &step(c.step_seconds()));
        assert_eq!(
            (g.duration, g.reason),
            (Duration::from_secs(24), "one step")
        );
        // Fast steps: the setting stands.
        let g = grace_for(Duration::from_secs(10), &step(Some(0.5)));
        assert_eq!(
            (g.duration, g.reason),
            (Duration::from_secs(10), "configured")
        );
        assert_eq!(
            grace_for(Duration::from_secs(10), &none).reason,
            "configured"
        );
        // A new image's bar (another total) or a reset measures nothing across it.
        c.reset();
        c.on_progress(5, 30, t0);
        c.on_progress(1, 20, t0 + Duration::from_secs(100));
        assert_eq!(c.step_seconds(), None);
    }

    /// Issue 26, finding 2: on real Fooocus (CPU) one 6.6 s step left the grace at the 10 s
    /// setting (6.6 x 1.5), the next step ran longer, and Fooocus was killed at step 1 of 200.
    #[test]
    fn one_observed_step_does_not_make_a_thin_grace() {
        let t0 = Instant::now();
        let mut c = StepClock::default();
        c.on_progress(0, 200, t0);
        c.on_progress(1, 200, t0 + Duration::from_secs_f64(6.6));
        let g = grace_for(
            Duration::from_secs(10),
            &Pace {
                step_seconds: c.step_seconds(),
                ..Pace::default()
            },
        );
        // The next step takes 12 s (under twice the first): the grace covers it.
        assert!(g.duration >= Duration::from_secs(12), "{g:?}");
        assert_eq!(g.reason, "one step");
        // Many steady steps and one slow one: the slowest counts, not the last.
        let mut c = StepClock::default();
        for i in 0..10 {
            c.on_progress(i, 200, t0 + Duration::from_secs(u64::from(i) * 3));
        }
        c.on_progress(10, 200, t0 + Duration::from_secs(27 + 9));
        c.on_progress(11, 200, t0 + Duration::from_secs(36 + 3));
        assert_eq!(c.step_seconds(), Some(9.0));
        // Tiny steps are taken as at least the floor.
        let mut c = StepClock::default();
        c.on_progress(1, 30, t0);
        c.on_progress(2, 30, t0 + Duration::from_millis(10));
        assert_eq!(c.step_seconds(), Some(STEP_FLOOR.as_secs_f64()));
    }

    /// Issue 26, finding 1: Fooocus looks at Stop only at a sampling step, so a stop before the
    /// first step (model load, preparation) or while decoding or saving is given until the
    /// next step, bounded by history, with a ceiling.
    #[test]
    fn the_grace_covers_the_phase_fooocus_is_in() {
        use fooocus_console::Phase as P;
        let ten = Duration::from_secs(10);
        let pace = |phase, hist| Pace {
            phase: Some(phase),
            step_seconds: None,
            phase_history_s: hist,
        };
        let g = grace_for(ten, &pace(P::Preparation, None));
        assert_eq!(
            (g.duration, g.reason, g.until_step),
            (PREPARATION_GRACE, "until the first step", true)
        );
        let g = grace_for(ten, &pace(P::ModelLoad, Some(100.0)));
        assert_eq!(g.duration, Duration::from_secs(150));
        assert_eq!(g.reason, "until the first step");
        let g = grace_for(ten, &pace(P::Preparation, Some(10_000.0)));
        assert_eq!(g.duration, GRACE_CEILING);
        let g = grace_for(ten, &pace(P::Decode, None));
        assert_eq!(
            (g.duration, g.reason),
            (DECODE_GRACE, "until the next step or the end")
        );
        let g = grace_for(ten, &pace(P::Saving, Some(8.0)));
        assert_eq!(g.duration, Duration::from_secs(12));
        // A phase history shorter than one step: the step's grace.
        let g = grace_for(
            ten,
            &Pace {
                phase: Some(P::Decode),
                step_seconds: Some(20.0),
                phase_history_s: Some(2.0),
            },
        );
        assert_eq!(
            (g.duration, g.reason),
            (Duration::from_secs(30), "one step")
        );
        // Sampling: the step's grace, as before.
        let g = grace_for(ten, &pace(P::Sampling, Some(500.0)));
        assert_eq!((g.duration, g.reason), (ten, "configured"));
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
            EventKind::Ready { url: "u".into() },
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
