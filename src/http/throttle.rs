//! Bounds on `POST /auth/login`, whose argon2id check costs 19 MiB and tens of milliseconds of
//! CPU: a per-client-address rate (429), a growing back-off per client address after repeated
//! failures (429), and a bound on password checks running at once, with a short wait queue
//! (503 beyond it). Each refusal carries `Retry-After`. Each check slot owns its argon2
//! working memory, reused from check to check, so the memory of logins is bounded by the slot
//! count whatever the flood. State is per process, in memory, and bounded in size; the
//! per-account back-off lives in the catalog (see `handlers::auth`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::password::{CheckMemory, verify_password_in};
use crate::config::LoginSettings;

/// Failures from one address without back-off; the next one starts it.
pub const CLIENT_FREE_FAILURES: u32 = 4;
/// Longest back-off of one client address.
pub const CLIENT_MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);
/// Failures of one account without back-off; the next one starts it.
pub const ACCOUNT_FREE_FAILURES: i64 = 4;
/// Longest back-off of one account: short, so that a stranger who knows an admin's e-mail
/// can delay that admin's login by this much at most, never lock it.
pub const ACCOUNT_MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a login waits for a free password check before 503.
const QUEUE_WAIT: Duration = Duration::from_secs(2);
/// Addresses remembered at most (older entries are dropped first when full).
const MAX_CLIENTS: usize = 100_000;

/// Back-off after `failures` failures: none up to `free`, then 1 s, doubling with each further
/// failure, up to `max`.
pub fn backoff(failures: u64, free: u64, max: Duration) -> Option<Duration> {
    let over = failures.checked_sub(free)?.checked_sub(1)?;
    let secs = 1u64.checked_shl(over.min(32) as u32).unwrap_or(u64::MAX);
    Some(Duration::from_secs(secs).min(max))
}

/// Why a login was refused before its password was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too many attempts or failures from this address (429).
    Client { retry_after: Duration },
    /// Every password check slot is busy (503).
    Busy { retry_after: Duration },
}

#[derive(Debug, Clone, Copy)]
struct ClientFailures {
    count: u32,
    until: Option<Instant>,
    last: Instant,
}

/// An admitted login: holds one check slot and that slot's working memory.
pub struct LoginPermit {
    _slot: OwnedSemaphorePermit,
    memory: Option<CheckMemory>,
    spare: std::sync::Arc<Mutex<Vec<CheckMemory>>>,
}

impl LoginPermit {
    /// Checks `password` against `hash` on the blocking pool, in this slot's memory; `took`
    /// is told how long it ran.
    pub async fn check(&mut self, password: String, hash: String, took: &LoginThrottle) -> bool {
        let started = Instant::now();
        let mut memory = self
            .memory
            .take()
            .unwrap_or_else(CheckMemory::for_default_params);
        let done = tokio::task::spawn_blocking(move || {
            let ok = verify_password_in(&password, &hash, &mut memory);
            (ok, memory)
        })
        .await;
        took.checked_in(started.elapsed());
        match done {
            Ok((ok, memory)) => {
                self.memory = Some(memory);
                ok
            }
            Err(_) => false,
        }
    }
}

impl Drop for LoginPermit {
    fn drop(&mut self) {
        if let Some(m) = self.memory.take() {
            self.spare
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(m);
        }
    }
}

/// The login guard of one service process.
pub struct LoginThrottle {
    checks: std::sync::Arc<Semaphore>,
    /// Working memory of slots not in use (at most one per slot ever exists).
    spare: std::sync::Arc<Mutex<Vec<CheckMemory>>>,
    waiting: AtomicUsize,
    max_waiting: usize,
    rate: Option<DefaultKeyedRateLimiter<IpAddr>>,
    failures: Mutex<HashMap<IpAddr, ClientFailures>>,
    /// Duration of the latest password check, in microseconds: a refusal that checks no
    /// password waits as long, so timing tells nothing about the account.
    last_check_us: AtomicU64,
}

impl LoginThrottle {
    pub fn new(settings: &LoginSettings) -> Self {
        let rate = NonZeroU32::new(settings.rate_per_minute).map(|per_minute| {
            let burst = NonZeroU32::new((per_minute.get() / 5).max(5)).unwrap_or(per_minute);
            RateLimiter::dashmap(Quota::per_minute(per_minute).allow_burst(burst))
        });
        let slots = settings.max_concurrent_hashes.max(1);
        Self {
            checks: std::sync::Arc::new(Semaphore::new(slots)),
            spare: std::sync::Arc::default(),
            waiting: AtomicUsize::new(0),
            max_waiting: slots * 2,
            rate,
            failures: Mutex::default(),
            last_check_us: AtomicU64::new(50_000),
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, ClientFailures>> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Admits an attempt from `client` (rate and back-off), then waits for a password-check
    /// slot. The returned permit is held while the password is checked.
    pub async fn admit(&self, client: IpAddr) -> Result<LoginPermit, Refusal> {
        let slot = self.slot(client).await?;
        let memory = self
            .spare
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        Ok(LoginPermit {
            _slot: slot,
            memory,
            spare: self.spare.clone(),
        })
    }

    async fn slot(&self, client: IpAddr) -> Result<OwnedSemaphorePermit, Refusal> {
        if let Some(rate) = &self.rate {
            if let Err(not_until) = rate.check_key(&client) {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                return Err(Refusal::Client {
                    retry_after: wait.max(Duration::from_secs(1)),
                });
            }
            if rate.len() > MAX_CLIENTS {
                rate.retain_recent();
            }
        }
        let now = Instant::now();
        if let Some(until) = self.failures().get(&client).and_then(|f| f.until)
            && until > now
        {
            return Err(Refusal::Client {
                retry_after: until - now,
            });
        }
        if let Ok(permit) = self.checks.clone().try_acquire_owned() {
            return Ok(permit);
        }
        // A short queue absorbs bursts; beyond it, answer at once instead of piling up.
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(Refusal::Busy {
                retry_after: Duration::from_secs(1),
            });
        }
        let got = tokio::time::timeout(QUEUE_WAIT, self.checks.clone().acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        match got {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Refusal::Busy {
                retry_after: Duration::from_secs(1),
            }),
        }
    }

    /// Counts a failed attempt from `client`; past [`CLIENT_FREE_FAILURES`], the address waits 1 s, 2 s, 4 s… up to [`CLIENT_MAX_BACKOFF`] before its next attempt.
    pub fn failed(&self, client: IpAddr) {
        let now = Instant::now();
        let mut map = self.failures();
        if map.len() >= MAX_CLIENTS && !map.contains_key(&client) {
            map.retain(|_, f| f.until.is_some_and(|u| u > now));
            if map.len() >= MAX_CLIENTS {
                let oldest = map.iter().min_by_key(|(_, f)| f.last).map(|(ip, _)| *ip);
                if let Some(ip) = oldest {
                    map.remove(&ip);
                }
            }
        }
        let entry = map.entry(client).or_insert(ClientFailures {
            count: 0,
            until: None,
            last: now,
        });
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
        entry.until = backoff(
            u64::from(entry.count),
            u64::from(CLIENT_FREE_FAILURES),
            CLIENT_MAX_BACKOFF,
        )
        .map(|d| now + d);
    }

    /// Remembers how long a password check took.
    pub fn checked_in(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.last_check_us.store(us, Ordering::Relaxed);
    }

    /// How long a password check takes now (the latest one's duration).
    pub fn check_duration(&self) -> Duration {
        Duration::from_micros(self.last_check_us.load(Ordering::Relaxed))
    }

    /// A successful login from `client` clears its failures.
    pub fn succeeded(&self, client: IpAddr) {
        self.failures().remove(&client);
    }
}

/// The client's address: the peer of the connection (set by the accept loop; unspecified
/// when a request did not come through it), or, when that peer is a trusted proxy, the
/// nearest address in `X-Forwarded-For` that is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    /// The client of a request from `peer` with `forwarded_for` headers, given the proxies
    /// trusted to name it.
    pub fn resolve<'a>(
        peer: IpAddr,
        forwarded_for: impl Iterator<Item = &'a str>,
        trusted: &[ipnet::IpNet],
    ) -> Self {
        let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
        if !is_trusted(&peer) {
            return ClientIp(peer);
        }
        // Right to left: each trusted hop appended the address it saw; the first one not
        // trusted is the client (anything further left could be forged by it).
        let hops: Vec<&str> = forwarded_for.flat_map(|h| h.split(',')).collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    client = ip;
                    if !is_trusted(&ip) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        ClientIp(client)
    }
}

impl axum::extract::FromRequestParts<super::AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &super::AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok());
        Ok(ClientIp::resolve(peer, forwarded, &state.trusted_proxies))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_behind_trusted_proxies_is_found() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let resolve =
            |peer: &str, xff: &[&str]| ClientIp::resolve(ip(peer), xff.iter().copied(), &trusted).0;
        // An untrusted peer's header is ignored (it could name anyone).
        assert_eq!(resolve("203.0.113.9", &["198.51.100.1"]), ip("203.0.113.9"));
        // Through one trusted proxy.
        assert_eq!(resolve("10.0.0.2", &["198.51.100.1"]), ip("198.51.100.1"));
        // A forged entry left of the real client does not count.
        assert_eq!(
            resolve("10.0.0.2", &["1.2.3.4, 198.51.100.1, 10.0.0.7"]),
            ip("198.51.100.1")
        );
        assert_eq!(
            resolve("10.0.0.2", &["1.2.3.4", "198.51.100.1"]),
            ip("198.51.100.1")
        );
        // Garbage stops the walk at the last good hop; no header: the proxy itself.
        assert_eq!(resolve("10.0.0.2", &["nonsense"]), ip("10.0.0.2"));
        assert_eq!(resolve("10.0.0.2", &[]), ip("10.0.0.2"));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let max = Duration::from_secs(30);
        assert_eq!(backoff(0, 4, max), None);
        assert_eq!(backoff(4, 4, max), None);
        assert_eq!(backoff(5, 4, max), Some(Duration::from_secs(1)));
        assert_eq!(backoff(6, 4, max), Some(Duration::from_secs(2)));
        assert_eq!(backoff(10, 4, max), Some(Duration::from_secs(30)));
        assert_eq!(backoff(u64::MAX, 4, max), Some(max));
    }

    #[tokio::test]
    async fn client_backoff_starts_after_free_failures() {
        let t = LoginThrottle::new(&LoginSettings {
            max_concurrent_hashes: 1,
            rate_per_minute: 0,
        });
        let ip: IpAddr = [192, 0, 2, 1].into();
        let other: IpAddr = [192, 0, 2, 2].into();
        for _ in 0..CLIENT_FREE_FAILURES {
            t.failed(ip);
            drop(t.admit(ip).await.expect("still admitted"));
        }
        t.failed(ip);
        assert!(matches!(t.admit(ip).await, Err(Refusal::Client { .. })));
        drop(
            t.admit(other)
                .await
                .expect("another address is not affected"),
        );
        t.succeeded(ip);
        drop(t.admit(ip).await.expect("a success clears the address"));
    }
}
