//! When to restart Fooocus after it exited on its own: exponential backoff, and giving up
//! after too many failures in a window. A stop the user asked for is never restarted.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::{RestartConfig, RestartMode};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// Exit code 0 without the guard asking.
    Clean,
    /// Non-zero code, a signal, an OOM kill.
    Failure,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    Restart { attempt: u32, delay: Duration },
    GiveUp { failures: u32 },
    Stay,
}

#[derive(Debug)]
pub struct RestartPolicy {
    cfg: RestartConfig,
    failures: VecDeque<Instant>,
    attempt: u32,
    pub base: Duration,
    pub max_delay: Duration,
}

impl RestartPolicy {
    pub fn new(cfg: RestartConfig) -> Self {
        RestartPolicy {
            cfg,
            failures: VecDeque::new(),
            attempt: 0,
            base: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
        }
    }

    pub fn set_config(&mut self, cfg: RestartConfig) {
        self.cfg = cfg;
    }

    /// Fooocus reached ready: the next failure starts the backoff again.
    pub fn on_ready(&mut self) {
        self.attempt = 0;
    }

    /// The user started or stopped Fooocus: forget past failures.
    pub fn reset(&mut self) {
        self.attempt = 0;
        self.failures.clear();
    }

    pub fn on_exit(&mut self, kind: ExitKind, now: Instant) -> Decision {
        let restart = !matches!(
            (self.cfg.policy, kind),
            (RestartMode::Never, _) | (RestartMode::OnFailure, ExitKind::Clean)
        );
        if !restart {
            return Decision::Stay;
        }
        let failures = self.count_failure(now);
        if failures > self.cfg.max_restarts {
            return Decision::GiveUp { failures };
        }
        let delay = self
            .base
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.max_delay);
        self.attempt += 1;
        Decision::Restart {
            attempt: failures,
            delay,
        }
    }
}

impl RestartPolicy {
    /// Count a failure at `now`; the failures within the window, this one included.
    fn count_failure(&mut self, now: Instant) -> u32 {
        let window = Duration::from_secs(self.cfg.window_s);
        self.failures.push_back(now);
        while self
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            self.failures.pop_front();
        }
        self.failures.len() as u32
    }

    /// The guard killed Fooocus for a limit. The restart is part of the breach's action, so it
    /// happens under `on-failure` and `always` (under `never` the supervisor does not ask), but
    /// each such kill counts as a failure: a generation that
    /// breaches every time (a cap below what Fooocus needs once loaded) backs off, then gives
    /// up after `max_restarts` in the window instead of looping for ever.
    pub fn on_limit_kill(&mut self, now: Instant) -> Decision {
        let failures = self.count_failure(now);
        if failures > self.cfg.max_restarts {
            return Decision::GiveUp { failures };
        }
        // The first kill in the window restarts at once; Fooocus reaches ready between kills,
        // so the backoff follows the failures in the window, not the attempts since ready.
        let delay = if failures <= 1 {
            Duration::ZERO
        } else {
            self.base
                .saturating_mul(1u32 << (failures - 2).min(16))
                .min(self.max_delay)
        };
        Decision::Restart {
            attempt: failures,
            delay,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(policy: RestartMode, max: u32) -> RestartConfig {
        RestartConfig {
            policy,
            max_restarts: max,
            window_s: 60,
        }
    }

    #[test]
    fn backoff_doubles_then_gives_up() {
        let mut p = RestartPolicy::new(cfg(RestartMode::OnFailure, 3));
        let t = Instant::now();
        let delays: Vec<_> = (0..3)
            .map(
                |i| match p.on_exit(ExitKind::Failure, t + Duration::from_secs(i)) {
                    Decision::Restart { delay, .. } => delay.as_secs(),
                    d => panic!("{d:?}"),
                },
            )
            .collect();
        assert_eq!(delays, [1, 2, 4]);
        assert_eq!(
            p.on_exit(ExitKind::Failure, t + Duration::from_secs(4)),
            Decision::GiveUp { failures: 4 }
        );
    }

    #[test]
    fn old_failures_leave_the_window() {
        let mut p = RestartPolicy::new(cfg(RestartMode::OnFailure, 1));
        let t = Instant::now();
        assert!(matches!(
            p.on_exit(ExitKind::Failure, t),
            Decision::Restart { .. }
        ));
        p.on_ready();
        let d = p.on_exit(ExitKind::Failure, t + Duration::from_secs(120));
        assert_eq!(
            d,
            Decision::Restart {
                attempt: 1,
                delay: Duration::from_secs(1)
            }
        );
    }

    #[test]
    fn clean_exit_and_never() {
        let mut p = RestartPolicy::new(cfg(RestartMode::OnFailure, 3));
        assert_eq!(p.on_exit(ExitKind::Clean, Instant::now()), Decision::Stay);
        let mut p = RestartPolicy::new(cfg(RestartMode::Never, 3));
        assert_eq!(p.on_exit(ExitKind::Failure, Instant::now()), Decision::Stay);
        let mut p = RestartPolicy::new(cfg(RestartMode::Always, 3));
        assert!(matches!(
            p.on_exit(ExitKind::Clean, Instant::now()),
            Decision::Restart { .. }
        ));
    }

    #[test]
    fn delay_is_capped() {
        let mut p = RestartPolicy::new(cfg(RestartMode::Always, 100));
        let t = Instant::now();
        let mut last = Duration::ZERO;
        for i in 0..20 {
            if let Decision::Restart { delay, .. } =
                p.on_exit(ExitKind::Failure, t + Duration::from_millis(i))
            {
                last = delay;
            }
        }
        assert_eq!(last, Duration::from_secs(60));
    }

    #[test]
    fn limit_kills_back_off_and_give_up_even_with_restart_never() {
        let mut p = RestartPolicy::new(cfg(RestartMode::Never, 3));
        let t = Instant::now();
        let d: Vec<_> = (0..4)
            .map(|i| p.on_limit_kill(t + Duration::from_secs(i * 5)))
            .collect();
        assert_eq!(
            d,
            [
                Decision::Restart {
                    attempt: 1,
                    delay: Duration::ZERO
                },
                Decision::Restart {
                    attempt: 2,
                    delay: Duration::from_secs(1)
                },
                Decision::Restart {
                    attempt: 3,
                    delay: Duration::from_secs(2)
                },
                Decision::GiveUp { failures: 4 },
            ]
        );
        // Outside the window they are forgotten.
        let mut p = RestartPolicy::new(cfg(RestartMode::OnFailure, 1));
        assert!(matches!(p.on_limit_kill(t), Decision::Restart { .. }));
        assert!(matches!(
            p.on_limit_kill(t + Duration::from_secs(61)),
            Decision::Restart { attempt: 1, .. }
        ));
    }
}
