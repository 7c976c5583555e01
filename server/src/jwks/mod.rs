//! Issuers' key sets: fetched at start-up, refreshed in the background,
//! refetched once (single-flight, rate-limited) when an unknown `kid` shows
//! up, and kept serving for a bounded time while the issuer is unreachable.
//!
//! The hot path ([`IssuerKeys::get`]) is a lock-free load of the current set.

mod fetch;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, Weak},
    time::Duration,
};
use tracing::Instrument as _;

use arc_swap::ArcSwapOption;
use tokio::{sync::watch, time::Instant};

pub use authd_jose::key::{Algorithm, Jwk, KeyError, VerifyingKey};
pub use fetch::{BoxFuture, FetchError, FetchKeys, StaticKeys};

use crate::{config::JwksConfig, error::Error};

/// Unknown `kid`s remembered per issuer at most; a flood of junk beyond this
/// only clears the memory, it never causes fetches (those are rate-limited).
const MAX_UNKNOWN_KIDS: usize = 4096;

/// A key set as fetched at one moment.
#[derive(Debug)]
struct KeySet {
    keys: HashMap<String, Arc<VerifyingKey>>,
    fetched_at: Instant,
}

#[derive(Debug, Default)]
struct FetchState {
    last_attempt: Option<Instant>,
    last_ok: bool,
    /// The fetch under way, if any: every caller waits on the same one.
    inflight: Option<watch::Receiver<Option<bool>>>,
    unknown_kids: HashMap<String, Instant>,
    /// Why the last fetch failed, for health and logs.
    last_error: Option<String>,
}

/// What an issuer's key set looks like now, for metrics and readiness.
#[derive(Debug, Clone)]
pub struct KeySetStatus {
    /// Keys held (0 when no set was ever fetched).
    pub keys: usize,
    /// How old the held set is; `None`: no set fetched yet.
    pub age: Option<Duration>,
    /// Whether a fetch has completed (successfully or not).
    pub attempted: bool,
    /// Whether the last fetch failed while an older set is still used.
    pub serving_stale: bool,
    /// Whether the held set is past `max_stale_seconds`, so unused.
    pub expired: bool,
    /// Why the last fetch failed, if it did.
    pub last_error: Option<String>,
}

/// What waiting on a fetch gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// A fetch made or joined by this call installed a fresh set.
    Fresh,
    /// No fetch was made: the last one, less than `min_refetch_interval` ago,
    /// succeeded.
    Recent,
    /// The fetch (or the most recent one) failed.
    Failed,
    /// The fetch did not finish within the wait bound; it goes on.
    Pending,
}

/// The keys of one issuer.
pub struct IssuerKeys {
    issuer: Arc<str>,
    algorithms: Vec<Algorithm>,
    fetcher: Box<dyn FetchKeys>,
    config: JwksConfig,
    current: ArcSwapOption<KeySet>,
    state: Mutex<FetchState>,
    counters: Counters,
}

/// The issuer's key set counters, registered (at 0) when it is made.
#[derive(Debug)]
struct Counters {
    fetch_ok: metrics::Counter,
    fetch_error: metrics::Counter,
    fetch_timeout: metrics::Counter,
    unknown_kid_refetches: metrics::Counter,
    unknown_kid_refused: metrics::Counter,
}

impl Counters {
    fn new(issuer: &Arc<str>) -> Self {
        let fetches = |outcome: &'static str| metrics::counter!("authd_jwks_fetches_total", "issuer" => issuer.clone(), "outcome" => outcome);
        Counters {
            fetch_ok: fetches("ok"),
            fetch_error: fetches("error"),
            fetch_timeout: fetches("timeout"),
            unknown_kid_refetches: metrics::counter!(
                "authd_jwks_unknown_kid_refetches_total",
                "issuer" => issuer.clone()
            ),
            unknown_kid_refused: metrics::counter!(
                "authd_jwks_unknown_kid_refused_total",
                "issuer" => issuer.clone()
            ),
        }
    }
}

impl std::fmt::Debug for IssuerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerKeys")
            .field("issuer", &self.issuer)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

impl IssuerKeys {
    /// Keys for `issuer`, accepted for `algorithms`, fetched by `fetcher`.
    /// Nothing is fetched until [`IssuerKeys::refresh_now`] or a lookup.
    pub fn new(
        issuer: Arc<str>,
        algorithms: Vec<Algorithm>,
        fetcher: Box<dyn FetchKeys>,
        config: JwksConfig,
    ) -> Arc<Self> {
        Arc::new(IssuerKeys {
            counters: Counters::new(&issuer),
            issuer,
            algorithms,
            fetcher,
            config,
            current: ArcSwapOption::empty(),
            state: Mutex::new(FetchState::default()),
        })
    }

    /// The issuer these keys belong to.
    pub fn issuer(&self) -> &Arc<str> {
        &self.issuer
    }

    /// The key with `kid`, fetching the key set again when `kid` is new.
    pub async fn get(self: &Arc<Self>, kid: &str) -> Result<Arc<VerifyingKey>, Error> {
        if let Some(key) = self.lookup(kid) {
            return Ok(key);
        }
        if self.recently_unknown(kid) {
            self.counters.unknown_kid_refused.increment(1);
            return Err(self.unknown(kid));
        }
        self.counters.unknown_kid_refetches.increment(1);
        let outcome = self.refresh(self.config.request_wait()).await;
        if let Some(key) = self.lookup(kid) {
            return Ok(key);
        }
        match outcome {
            // Only a set fetched after `kid` showed up proves it unknown; a
            // rate-limited miss may be a key rotated in since the last fetch.
            Outcome::Fresh => {
                self.remember_unknown(kid);
                Err(self.unknown(kid))
            }
            Outcome::Recent => Err(self.unknown(kid)),
            // The issuer could not say whether `kid` is genuine.
            Outcome::Failed | Outcome::Pending => Err(Error::KeysUnavailable {
                issuer: self.issuer.clone(),
            }),
        }
    }

    /// Whether a key set is held and still within its staleness bound.
    pub fn has_usable_keys(&self) -> bool {
        self.current
            .load()
            .as_ref()
            .is_some_and(|set| set.fetched_at.elapsed() <= self.config.max_stale())
    }

    /// The key set's state now.
    pub fn status(&self) -> KeySetStatus {
        let current = self.current.load();
        let (last_ok, last_error) = {
            let state = self.lock();
            (state.last_ok, state.last_error.clone())
        };
        // A finished fetch either installed a set or left its error.
        let attempted = current.is_some() || last_error.is_some();
        let age = current.as_ref().map(|set| set.fetched_at.elapsed());
        let expired = age.is_some_and(|age| age > self.config.max_stale());
        KeySetStatus {
            keys: current.as_ref().map_or(0, |set| set.keys.len()),
            age,
            attempted,
            serving_stale: current.is_some() && !last_ok && last_error.is_some() && !expired,
            expired,
            last_error,
        }
    }

    /// Fetches now unless a fetch is under way (then joins it) or one was
    /// attempted less than `min_refetch_interval` ago. Waits at most `wait`;
    /// returns whether a fresh key set is installed.
    pub async fn refresh_now(self: &Arc<Self>, wait: Duration) -> bool {
        matches!(self.refresh(wait).await, Outcome::Fresh | Outcome::Recent)
    }

    /// Refreshes the key set every `refresh_interval`, retrying sooner (with
    /// doubling back-off) after a failure, until `self` is dropped.
    pub fn spawn_refresher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Self> = Arc::downgrade(self);
        let interval = self.config.refresh_interval();
        let first_retry = self
            .config
            .min_refetch_interval()
            .max(Duration::from_secs(1));
        let wait = self.config.fetch_timeout() * 3;
        tokio::spawn(async move {
            let mut delay = interval;
            loop {
                tokio::time::sleep(delay).await;
                let Some(this) = weak.upgrade() else { return };
                delay = if matches!(this.refresh(wait).await, Outcome::Fresh | Outcome::Recent) {
                    interval
                } else if delay >= interval {
                    first_retry
                } else {
                    (delay * 2).min(interval)
                };
            }
        })
    }

    fn lookup(&self, kid: &str) -> Option<Arc<VerifyingKey>> {
        let guard = self.current.load();
        let set = guard.as_ref()?;
        if set.fetched_at.elapsed() > self.config.max_stale() {
            return None;
        }
        set.keys.get(kid).cloned()
    }

    fn unknown(&self, kid: &str) -> Error {
        Error::UnknownKey {
            issuer: self.issuer.clone(),
            kid: crate::error::truncate(kid, 128),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FetchState> {
        // The state stays consistent even if a holder panicked: recover it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn recently_unknown(&self, kid: &str) -> bool {
        let ttl = self.config.unknown_kid_ttl();
        self.lock()
            .unknown_kids
            .get(kid)
            .is_some_and(|seen| seen.elapsed() < ttl)
    }

    fn remember_unknown(&self, kid: &str) {
        let ttl = self.config.unknown_kid_ttl();
        let mut state = self.lock();
        if state.unknown_kids.len() >= MAX_UNKNOWN_KIDS {
            state.unknown_kids.retain(|_, seen| seen.elapsed() < ttl);
            if state.unknown_kids.len() >= MAX_UNKNOWN_KIDS {
                state.unknown_kids.clear();
            }
        }
        state
            .unknown_kids
            .insert(crate::error::truncate(kid, 128), Instant::now());
    }

    async fn refresh(self: &Arc<Self>, wait: Duration) -> Outcome {
        let mut receiver = {
            let mut state = self.lock();
            match &state.inflight {
                Some(receiver) => receiver.clone(),
                None => {
                    if let Some(last) = state.last_attempt
                        && last.elapsed() < self.config.min_refetch_interval()
                    {
                        return if state.last_ok {
                            Outcome::Recent
                        } else {
                            Outcome::Failed
                        };
                    }
                    let (sender, receiver) = watch::channel(None);
                    state.inflight = Some(receiver.clone());
                    state.last_attempt = Some(Instant::now());
                    // The fetch runs on its own task so that a caller giving up
                    // (timeout, cancelled request) does not abandon it; it stays
                    // in that caller's span, so its trace shows the fetch.
                    let this = Arc::clone(self);
                    tokio::spawn(
                        async move {
                            let ok = this.fetch_and_install().await;
                            {
                                let mut state = this.lock();
                                state.inflight = None;
                                state.last_ok = ok.is_ok();
                                state.last_error = ok.as_ref().err().cloned();
                            }
                            let ok = ok.is_ok();
                            let _ = sender.send(Some(ok));
                        }
                        .in_current_span(),
                    );
                    receiver
                }
            }
        };
        match tokio::time::timeout(wait, receiver.wait_for(Option::is_some)).await {
            Ok(Ok(done)) if *done == Some(true) => Outcome::Fresh,
            Ok(_) => Outcome::Failed,
            Err(_) => Outcome::Pending,
        }
    }

    /// Fetches and installs the key set; why not, when it fails.
    async fn fetch_and_install(&self) -> Result<(), String> {
        let fetched = tokio::time::timeout(self.config.fetch_timeout(), self.fetcher.fetch()).await;
        let jwks = match fetched_result(fetched) {
            Ok(jwks) => jwks,
            Err((timed_out, error)) => {
                if timed_out {
                    self.counters.fetch_timeout.increment(1);
                } else {
                    self.counters.fetch_error.increment(1);
                }
                tracing::warn!(issuer = %self.issuer, %error, "key set fetch failed; keeping the last good keys");
                return Err(error);
            }
        };
        self.counters.fetch_ok.increment(1);
        let mut keys = HashMap::with_capacity(jwks.len());
        for jwk in &jwks {
            match VerifyingKey::from_jwk(jwk, &self.algorithms) {
                Ok(key) => {
                    keys.insert(key.kid().to_owned(), Arc::new(key));
                }
                Err(error) => {
                    tracing::debug!(issuer = %self.issuer, kid = ?jwk.kid, %error, "skipping key");
                }
            }
        }
        if keys.is_empty() {
            tracing::warn!(issuer = %self.issuer, published = jwks.len(), "key set holds no key usable with the configured algorithms");
        } else {
            tracing::info!(issuer = %self.issuer, keys = keys.len(), "key set installed");
        }
        self.current.store(Some(Arc::new(KeySet {
            keys,
            fetched_at: Instant::now(),
        })));
        Ok(())
    }
}

/// A fetch's key set, or whether it timed out and why it failed.
fn fetched_result(
    fetched: Result<Result<Vec<Jwk>, FetchError>, tokio::time::error::Elapsed>,
) -> Result<Vec<Jwk>, (bool, String)> {
    match fetched {
        Ok(Ok(jwks)) => Ok(jwks),
        Ok(Err(error)) => Err((false, error.to_string())),
        Err(_) => Err((true, "no answer within jwks.fetch_timeout_ms".to_owned())),
    }
}

#[cfg(test)]
pub(crate) mod tests;
