//! Wrong tokens, rationed for all addresses together: every token the gateway cannot yet call
//! right or wrong waits for a check from one budget (`Limits::wrong_tokens_per_minute`), handed
//! out in turn to the addresses waiting, so many addresses guess no faster than one and a real
//! client among them waits its turn instead of being locked out. A right token costs nothing
//! (its check is given back) and marks its address: from then on that address's tokens are
//! checked at once, until it brings a wrong one, and so are its checks already waiting.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, Notify};

/// How long an address that brought the right token keeps being checked at once.
const PROVEN_FOR: Duration = Duration::from_secs(600);
/// How long a value is remembered as wrong (the same stale cookie on every request is one
/// wrong token, not one per request).
const WRONG_FOR: Duration = Duration::from_secs(60);
/// Entries of each memory (addresses, wrong values): a flood of them does not grow the guard.
const MAX_REMEMBERED: usize = 4096;

pub(crate) struct TokenGate {
    per_second: f64,
    burst: f64,
    state: Mutex<GateState>,
    wake: Notify,
}

struct GateState {
    credit: f64,
    updated: Instant,
    /// Waiting checks, per address, and the addresses in the order of their next turn.
    /// A waiter is sent `paid`: whether its check was taken from the budget.
    waiting: HashMap<IpAddr, VecDeque<oneshot::Sender<bool>>>,
    turns: VecDeque<IpAddr>,
    proven: HashMap<IpAddr, Instant>,
    wrong: HashMap<u64, Instant>,
}

/// Tokens one request may bring (query, each `Authorization:`, each `Cookie:` header), told
/// apart: more is refused unchecked, or one request would test many guesses.
pub(crate) const MAX_VALUES: usize = 3;

/// What the gate says about a presented token before it is compared.
pub(crate) enum Verdict {
    /// Already known wrong (seen in the last minute): answer 401 without comparing.
    KnownWrong,
    /// Compare it now; `paid`: one check was taken from the budget for it.
    Check { paid: bool },
}

impl TokenGate {
    pub(crate) fn new(per_minute: u32) -> TokenGate {
        let per_minute = per_minute.max(1) as f64;
        let burst = (per_minute / 30.0).max(1.0);
        TokenGate {
            per_second: per_minute / 60.0,
            burst,
            state: Mutex::new(GateState {
                credit: burst,
                updated: Instant::now(),
                waiting: HashMap::new(),
                turns: VecDeque::new(),
                proven: HashMap::new(),
                wrong: HashMap::new(),
            }),
            wake: Notify::new(),
        }
    }

    /// Wait (at most `wait`) until `key` (a keyed hash of what `ip` presented) may be compared.
    /// Err: no turn came in time (answer 429).
    pub(crate) async fn admit(&self, ip: IpAddr, key: u64, wait: Duration) -> Result<Verdict, ()> {
        let rx = {
            let mut guard = self.state.lock().unwrap();
            let s = &mut *guard;
            let now = Instant::now();
            if s.wrong
                .get(&key)
                .is_some_and(|t| now.duration_since(*t) < WRONG_FOR)
            {
                return Ok(Verdict::KnownWrong);
            }
            if s.proven
                .get(&ip)
                .is_some_and(|t| now.duration_since(*t) < PROVEN_FOR)
            {
                return Ok(Verdict::Check { paid: false });
            }
            self.refill(s, now);
            if s.turns.is_empty() && s.credit >= 1.0 {
                s.credit -= 1.0;
                return Ok(Verdict::Check { paid: true });
            }
            let (tx, rx) = oneshot::channel();
            // An address is in `turns` exactly once while it has an entry in `waiting`: one
            // that gave up its checks and queued again keeps its place instead of taking
            // another turn (copies of it would crowd out everyone else's turns).
            if !s.waiting.contains_key(&ip) {
                s.turns.push_back(ip);
            }
            let q = s.waiting.entry(ip).or_default();
            // Checks that gave up waiting leave no trace (at most one per connection waits).
            q.retain(|t| !t.is_closed());
            q.push_back(tx);
            rx
        };
        self.wake.notify_one();
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(paid)) => Ok(Verdict::Check { paid }),
            _ => Err(()),
        }
    }

    /// The compare's outcome for `ip`: `values` tokens compared (each a guess), `paid` as
    /// `admit` said.
    pub(crate) fn outcome(&self, ip: IpAddr, key: u64, right: bool, values: usize, paid: bool) {
        let mut s = self.state.lock().unwrap();
        let now = Instant::now();
        if right {
            if paid {
                s.credit = (s.credit + 1.0).min(self.burst);
            }
            if s.proven.len() >= MAX_REMEMBERED {
                s.proven.retain(|_, t| now.duration_since(*t) < PROVEN_FOR);
            }
            if s.proven.len() < MAX_REMEMBERED {
                s.proven.insert(ip, now);
                // Its other requests still waiting (a browser sends several at once with the
                // same cookie) are checked now, free, instead of one turn each behind every
                // guessing address.
                if let Some(q) = s.waiting.remove(&ip) {
                    s.turns.retain(|a| *a != ip);
                    for tx in q {
                        let _ = tx.send(false);
                    }
                }
            }
        } else {
            s.proven.remove(&ip);
            // Every wrong value is a guess: the ones not paid for yet are paid now, all of
            // them (the budget goes below zero and the next turns wait until it is repaid; a
            // floor would forgive guesses). The debt is at most MAX_VALUES per connection let
            // in unpaid at once, so the wait has a ceiling.
            let owed = values.min(MAX_VALUES) - usize::from(paid);
            s.credit -= owed as f64;
            if s.wrong.len() >= MAX_REMEMBERED {
                s.wrong.retain(|_, t| now.duration_since(*t) < WRONG_FOR);
                if s.wrong.len() >= MAX_REMEMBERED {
                    s.wrong.clear();
                }
            }
            s.wrong.insert(key, now);
        }
    }

    fn refill(&self, s: &mut GateState, now: Instant) {
        let gained = now.duration_since(s.updated).as_secs_f64() * self.per_second;
        s.credit = (s.credit + gained).min(self.burst);
        s.updated = now;
    }

    /// Hands the budget out to the waiting checks, one address after the other; runs for the
    /// gateway's life on its thread.
    pub(crate) async fn dispatch(&self) {
        loop {
            let next = {
                let mut guard = self.state.lock().unwrap();
                let s = &mut *guard;
                self.refill(s, Instant::now());
                loop {
                    if s.turns.is_empty() {
                        break None;
                    }
                    if s.credit < 1.0 {
                        break Some(Duration::from_secs_f64((1.0 - s.credit) / self.per_second));
                    }
                    let ip = s.turns.pop_front().expect("not empty");
                    let Some(q) = s.waiting.get_mut(&ip) else {
                        continue;
                    };
                    // The first of its checks still waiting (one that gave up is skipped, free).
                    while let Some(tx) = q.pop_front() {
                        if tx.send(true).is_ok() {
                            s.credit -= 1.0;
                            break;
                        }
                    }
                    if q.is_empty() {
                        s.waiting.remove(&ip);
                    } else {
                        s.turns.push_back(ip);
                    }
                }
            };
            match next {
                None => self.wake.notified().await,
                Some(d) => {
                    // New waiters need no wake-up here: they wait for the same refill.
                    tokio::time::sleep(d).await
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spent(per_minute: u32) -> TokenGate {
        let g = TokenGate::new(per_minute);
        g.state.lock().unwrap().credit = 0.0;
        g
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    /// An address that queues a check, gives up and queues again keeps one turn.
    #[test]
    fn an_address_that_gives_up_and_queues_again_has_one_turn() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let g = spent(1);
        rt.block_on(async {
            for key in 0..200 {
                // Polled once (queued), then dropped: the connection closed.
                let _ = tokio::time::timeout(
                    Duration::from_millis(1),
                    g.admit(ip(1), key, Duration::from_secs(60)),
                )
                .await;
            }
        });
        let s = g.state.lock().unwrap();
        assert_eq!(s.turns, VecDeque::from([ip(1)]));
        assert_eq!(s.waiting[&ip(1)].len(), 1);
    }

    /// The user's requests sent together wait together; once one proves the token, the
    /// others are checked at once, free, however many addresses are guessing.
    #[test]
    fn a_right_token_releases_the_other_waiting_requests_of_its_address() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let g = std::sync::Arc::new(spent(1));
        rt.block_on(async {
            for n in 1..=60 {
                let g = g.clone();
                tokio::spawn(
                    async move { g.admit(ip(n), n as u64, Duration::from_secs(60)).await },
                );
            }
            let user: Vec<_> = (0..6)
                .map(|_| {
                    let g = g.clone();
                    tokio::spawn(async move { g.admit(ip(200), 7, Duration::from_secs(5)).await })
                })
                .collect();
            // Every request queued (the spawned tasks ran up to their wait).
            for _ in 0..1000 {
                if g.state
                    .lock()
                    .unwrap()
                    .waiting
                    .get(&ip(200))
                    .map(|q| q.len())
                    == Some(6)
                {
                    break;
                }
                tokio::task::yield_now().await;
            }
            assert_eq!(g.state.lock().unwrap().waiting[&ip(200)].len(), 6);
            // One of the user's requests had its turn and brought the right token.
            g.outcome(ip(200), 7, true, 1, true);
            for u in user {
                let v = u.await.unwrap();
                assert!(
                    matches!(v, Ok(Verdict::Check { paid: false })),
                    "429 or paid"
                );
            }
            let s = g.state.lock().unwrap();
            assert!(!s.turns.contains(&ip(200)));
            assert_eq!(s.turns.len(), 60);
        });
    }

    /// Wrong tokens let in unpaid at once (an address that had proven the token, its
    /// connections each bringing three) are all paid: no floor forgives them.
    #[test]
    fn every_wrong_token_is_paid_for() {
        let g = spent(60);
        for key in 0..4 {
            g.outcome(ip(1), key, false, 3, false);
        }
        let credit = g.state.lock().unwrap().credit;
        assert!(credit <= -12.0 + 1e-3, "{credit}");
    }
}
