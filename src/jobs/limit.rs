//! The adaptive concurrency of a fleet run: how many tenants are worked on at once.
//!
//! A run starts at its configured concurrency. When the database server refuses a tenant's
//! connection because of a connection limit (too many connections, a user's
//! `max_user_connections` or a role's `CONNECTION LIMIT` reached, a pool that timed out
//! waiting), the run halves its limit (never below 1) and puts that tenant back in the queue:
//! a refusal is neither a failure nor a counted attempt of the tenant. While the server lets
//! tenants in, the limit grows back by one per window (as many admitted tenants as the
//! limit), eight times slower near a level the server refused before: additive increase,
//! multiplicative decrease, as TCP does.
//!
//! Tenants refused together saw the same congestion: only a refusal of a tenant that started
//! after the last decrease lowers the limit again, so 32 refusals at once halve it once.
//! Every change of the limit is logged once, at info level.
//!
//! A tenant refused forever (the server full of other clients' connections) still ends: it is
//! given up, and reported failed, once the limit is 1 and no tenant of the run has been let in
//! for the run's patience.

use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tracing::info;

/// How long a run with nothing let in keeps re-queueing refused tenants before it gives them
/// up, by default.
pub const DEFAULT_PATIENCE: Duration = Duration::from_secs(60);

/// Windows of admitted tenants needed to grow to (or past) a level the server refused.
const PROBE_WINDOWS: usize = 8;
/// Wait before a refused tenant is queued again: doubles per refusal of that tenant, with
/// jitter, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How many tenants a fleet run works on at once, lowered on refused connections and raised
/// back while the server accepts them.
#[derive(Debug)]
pub struct AdaptiveLimit {
    max: usize,
    patience: Duration,
    state: Mutex<State>,
    /// Signalled when a permit is returned or the limit grows.
    freed: Notify,
}

#[derive(Debug)]
struct State {
    limit: usize,
    in_flight: usize,
    /// Bumped at every decrease; a permit remembers the epoch it was taken in.
    epoch: u64,
    /// Tenants let in since the limit last changed.
    admitted: usize,
    /// The limit at which the server last refused, until the run has grown past it.
    ceiling: Option<usize>,
    /// When a tenant was last let in (or the run started).
    last_admitted: Instant,
}

/// A place in the run, taken by [`AdaptiveLimit::acquire`]. Dropping it frees the place
/// without telling the limit anything (the tenant was not tried).
#[derive(Debug)]
pub struct Permit<'a> {
    owner: &'a AdaptiveLimit,
    epoch: u64,
}

/// What the limit makes of a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Queue the tenant again (after a back-off).
    Requeue,
    /// Give the tenant up: the limit is 1 and nothing has been let in for this long.
    GiveUp { waited: Duration },
}

/// What one try at a tenant came to, as far as the limit is concerned.
#[derive(Debug)]
pub enum Attempt<T> {
    /// The server let the tenant in, whatever happened next.
    Admitted(T),
    /// The server refused the tenant's connection because of a connection limit; `reason`
    /// is the server's answer (for the log).
    Refused { value: T, reason: String },
    /// The tenant was not tried (the run is stopping).
    NotTried(T),
}

/// How a tenant's turn in the run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Finished<T> {
    /// Admitted or not tried; `refusals` counts the refused tries before.
    Done { value: T, refusals: u32 },
    /// Refused until the run gave it up; `value` is the last refusal's.
    GaveUp {
        value: T,
        refusals: u32,
        waited: Duration,
    },
}

impl AdaptiveLimit {
    /// A limit starting (and capped) at `max` (at least 1), giving refused tenants up after
    /// `patience` without any tenant let in.
    pub fn new(max: usize, patience: Duration) -> Self {
        let max = max.max(1);
        Self {
            max,
            patience,
            state: Mutex::new(State {
                limit: max,
                in_flight: 0,
                epoch: 0,
                admitted: 0,
                ceiling: None,
                last_admitted: Instant::now(),
            }),
            freed: Notify::new(),
        }
    }

    /// The current limit.
    pub fn current(&self) -> usize {
        self.lock().limit
    }

    /// The configured concurrency, which the limit never exceeds.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Pretends the last tenant was let in `ago` earlier than it was.
    #[cfg(test)]
    fn rewind(&self, ago: Duration) {
        let mut s = self.lock();
        s.last_admitted = s.last_admitted.checked_sub(ago).unwrap_or(s.last_admitted);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it; a poisoned state is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for a place under the current limit.
    pub async fn acquire(&self) -> Permit<'_> {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before looking, so a place freed in between still wakes us.
            freed.as_mut().enable();
            {
                let mut s = self.lock();
                if s.in_flight < s.limit {
                    s.in_flight += 1;
                    return Permit {
                        owner: self,
                        epoch: s.epoch,
                    };
                }
            }
            freed.await;
        }
    }

    /// Runs one tenant's turn: takes a place, tries, and on a refusal gives the place back,
    /// waits a little and queues again, until the tenant is let in (or not tried) or the run
    /// gives it up (see [`Verdict`]).
    pub async fn run<T, F, Fut>(&self, mut attempt: F) -> Finished<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Attempt<T>>,
    {
        let mut refusals = 0u32;
        loop {
            let permit = self.acquire().await;
            match attempt().await {
                Attempt::Admitted(value) => {
                    permit.admitted();
                    return Finished::Done { value, refusals };
                }
                Attempt::NotTried(value) => return Finished::Done { value, refusals },
                Attempt::Refused { value, reason } => {
                    refusals += 1;
                    match permit.refused(&reason) {
                        Verdict::GiveUp { waited } => {
                            return Finished::GaveUp {
                                value,
                                refusals,
                                waited,
                            };
                        }
                        Verdict::Requeue => tokio::time::sleep(backoff(refusals)).await,
                    }
                }
            }
        }
    }
}

impl Permit<'_> {
    /// The tenant got its connection: the server has room; the limit may grow.
    pub fn admitted(self) {
        let owner = self.owner;
        let raised = {
            let mut s = owner.lock();
            s.last_admitted = Instant::now();
            s.admitted += 1;
            let probing = s.ceiling.is_some_and(|c| s.limit + 1 >= c);
            let window = if probing {
                s.limit * PROBE_WINDOWS
            } else {
                s.limit
            };
            if s.limit < owner.max && s.admitted >= window {
                let from = s.limit;
                s.limit += 1;
                s.admitted = 0;
                if s.ceiling.is_some_and(|c| s.limit > c) {
                    s.ceiling = None;
                }
                Some((from, s.limit))
            } else {
                None
            }
        };
        // Dropping `self` frees the place; a raised limit frees one more.
        drop(self);
        if let Some((from, to)) = raised {
            metrics::gauge!("tenant_migrator_fleet_concurrency").set(to as f64);
            info!(from, to, "fleet concurrency raised");
            owner.freed.notify_waiters();
        }
    }

    /// The server refused the tenant's connection because of a connection limit: halves the
    /// limit (once per congestion) and says whether to queue the tenant again.
    pub fn refused(self, reason: &str) -> Verdict {
        let owner = self.owner;
        metrics::counter!("tenant_migrator_connection_refusals_total").increment(1);
        let (lowered, verdict) = {
            let mut s = owner.lock();
            let lowered = if self.epoch == s.epoch && s.limit > 1 {
                let from = s.limit;
                s.limit = (from / 2).max(1);
                s.epoch += 1;
                s.admitted = 0;
                s.ceiling = Some(from);
                Some((from, s.limit))
            } else {
                None
            };
            let waited = s.last_admitted.elapsed();
            let verdict = if s.limit == 1 && waited >= owner.patience {
                Verdict::GiveUp { waited }
            } else {
                Verdict::Requeue
            };
            (lowered, verdict)
        };
        drop(self);
        if let Some((from, to)) = lowered {
            metrics::gauge!("tenant_migrator_fleet_concurrency").set(to as f64);
            info!(from, to, reason, "fleet concurrency lowered");
        }
        verdict
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        {
            let mut s = self.owner.lock();
            s.in_flight = s.in_flight.saturating_sub(1);
        }
        self.owner.freed.notify_waiters();
    }
}

/// The wait before the `refusals`-th re-queue of a tenant: exponential, capped, with jitter
/// (between half and all of it) so refused tenants do not come back all at once.
pub(crate) fn backoff(refusals: u32) -> Duration {
    let doubled = FIRST_BACKOFF.saturating_mul(1u32 << refusals.saturating_sub(1).min(16));
    let full = doubled.min(MAX_BACKOFF);
    let half = full / 2;
    let jitter_ms = rand::random_range(0..=half.as_millis() as u64);
    half + Duration::from_millis(jitter_ms)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures_util::FutureExt;

    use super::*;

    fn refused<T>(value: T) -> Attempt<T> {
        Attempt::Refused {
            value,
            reason: "1040: Too many connections".into(),
        }
    }

    #[tokio::test]
    async fn a_refusal_halves_the_limit_once_per_congestion() {
        let limit = AdaptiveLimit::new(32, DEFAULT_PATIENCE);
        let permits: Vec<_> =
            futures_util::future::join_all((0..32).map(|_| limit.acquire())).await;
        // All 32 were refused together: one halving, not 32.
        for p in permits {
            assert_eq!(p.refused("refused"), Verdict::Requeue);
        }
        assert_eq!(limit.current(), 16);
        // A tenant started after the decrease and refused too: halves again.
        let p = limit.acquire().await;
        p.refused("refused");
        assert_eq!(limit.current(), 8);
    }

    #[tokio::test]
    async fn the_limit_never_drops_below_one() {
        let limit = AdaptiveLimit::new(3, DEFAULT_PATIENCE);
        for _ in 0..5 {
            limit.acquire().await.refused("refused");
        }
        assert_eq!(limit.current(), 1);
        // One place is still there.
        let p = limit.acquire().await;
        p.admitted();
    }

    #[tokio::test]
    async fn places_beyond_the_limit_wait_for_one_to_be_freed() {
        let limit = AdaptiveLimit::new(2, DEFAULT_PATIENCE);
        let a = limit.acquire().await;
        let _b = limit.acquire().await;
        let mut third = Box::pin(limit.acquire());
        assert!(third.as_mut().now_or_never().is_none());
        drop(a);
        let _c = third.await;
    }

    #[tokio::test]
    async fn a_lowered_limit_admits_fewer_and_grows_back_slowly() {
        let limit = AdaptiveLimit::new(8, DEFAULT_PATIENCE);
        limit.acquire().await.refused("refused");
        assert_eq!(limit.current(), 4);
        // Only 4 places now.
        let held: Vec<_> = futures_util::future::join_all((0..4).map(|_| limit.acquire())).await;
        let mut fifth = Box::pin(limit.acquire());
        assert!(fifth.as_mut().now_or_never().is_none());
        drop(held);
        drop(fifth);
        // Growing to the refused level (8) again: 4 → 5 → 6 → 7 take a window each (the
        // limit's size), 7 → 8 takes eight windows.
        let mut admitted = 0;
        while limit.current() < 7 {
            limit.acquire().await.admitted();
            admitted += 1;
        }
        assert_eq!(admitted, 4 + 5 + 6);
        for _ in 0..7 * PROBE_WINDOWS - 1 {
            limit.acquire().await.admitted();
        }
        assert_eq!(limit.current(), 7);
        limit.acquire().await.admitted();
        assert_eq!(limit.current(), 8);
        // Never above the configured concurrency.
        for _ in 0..100 {
            limit.acquire().await.admitted();
        }
        assert_eq!(limit.current(), 8);
    }

    #[tokio::test]
    async fn a_refused_tenant_is_queued_again_until_let_in() {
        let limit = AdaptiveLimit::new(4, DEFAULT_PATIENCE);
        let tries = AtomicUsize::new(0);
        let finished = limit
            .run(|| async {
                if tries.fetch_add(1, Ordering::SeqCst) < 3 {
                    refused("no")
                } else {
                    Attempt::Admitted("yes")
                }
            })
            .await;
        assert_eq!(
            finished,
            Finished::Done {
                value: "yes",
                refusals: 3
            }
        );
        assert_eq!(limit.current(), 1);
    }

    #[tokio::test]
    async fn a_tenant_refused_forever_is_given_up() {
        let patience = Duration::from_millis(100);
        let limit = AdaptiveLimit::new(32, patience);
        let finished = limit.run(|| async { refused(()) }).await;
        // 32 → 16 → 8 → 4 → 2 → 1: the fifth refusal reaches 1, after back-offs longer than
        // the patience (25 + 50 + 100 + 200 ms at least), so nothing is left to try.
        let Finished::GaveUp {
            refusals, waited, ..
        } = finished
        else {
            panic!("not given up: {finished:?}");
        };
        assert_eq!(refusals, 5);
        assert!(waited >= patience, "{waited:?}");
        assert_eq!(limit.current(), 1);
    }

    #[tokio::test]
    async fn only_a_run_with_nothing_let_in_for_the_patience_gives_up() {
        let patience = Duration::from_secs(10);
        let limit = AdaptiveLimit::new(1, patience);
        limit.rewind(Duration::from_secs(8));
        assert_eq!(limit.acquire().await.refused("full"), Verdict::Requeue);
        // Another tenant got in: the run is making progress, refused tenants wait their turn.
        limit.acquire().await.admitted();
        limit.rewind(Duration::from_secs(8));
        assert_eq!(limit.acquire().await.refused("full"), Verdict::Requeue);
        // Nothing let in for longer than the patience, at a limit of 1: given up.
        limit.rewind(Duration::from_secs(3));
        assert!(matches!(
            limit.acquire().await.refused("full"),
            Verdict::GiveUp { waited } if waited >= Duration::from_secs(11)
        ));
    }

    #[tokio::test]
    async fn a_run_above_one_halves_before_giving_up() {
        let limit = AdaptiveLimit::new(4, Duration::from_secs(1));
        limit.rewind(Duration::from_secs(5));
        // Still room to lower the limit: no tenant is given up yet.
        assert_eq!(limit.acquire().await.refused("full"), Verdict::Requeue);
        assert_eq!(limit.current(), 2);
        assert!(matches!(
            limit.acquire().await.refused("full"),
            Verdict::GiveUp { waited } if waited >= Duration::from_secs(5)
        ));
        assert_eq!(limit.current(), 1);
    }

    #[tokio::test]
    async fn a_tenant_not_tried_tells_the_limit_nothing() {
        let limit = AdaptiveLimit::new(2, DEFAULT_PATIENCE);
        let finished = limit.run(|| async { Attempt::NotTried(7) }).await;
        assert_eq!(
            finished,
            Finished::Done {
                value: 7,
                refusals: 0
            }
        );
        assert_eq!(limit.current(), 2);
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_its_cap() {
        for n in 1..40 {
            let full = FIRST_BACKOFF
                .saturating_mul(1 << (n - 1).min(16))
                .min(MAX_BACKOFF);
            let b = backoff(n);
            assert!(b >= full / 2 && b <= full, "refusal {n}: {b:?} vs {full:?}");
        }
    }
}
