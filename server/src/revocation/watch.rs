//! WatchRevocations as domain code: each watcher gets the revocations in
//! force (or those after its cursor), a heartbeat saying it has caught up,
//! then every revocation this replica learns and a heartbeat every
//! `watch.heartbeat_ms`.
//!
//! Memory does not grow with a slow watcher: the revocations in flight are
//! the feed's one ring (`watch.buffer` entries, shared by every watcher), and
//! a stream is only advanced when its caller's HTTP/2 window has room. A
//! watcher that falls a whole ring behind is ended with
//! [`Error::WatcherTooSlow`]; it resumes from its cursor elsewhere or later.

use std::{
    fmt,
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures_util::{Stream, stream};
use tokio::{
    sync::{
        broadcast::{self, error::RecvError},
        watch,
    },
    time::{Instant, Interval, MissedTickBehavior},
};

use super::{CLOCK_SKEW_MS, Revocations, now_ms};
use crate::{config::WatchConfig, error::Error, store::Revocation};

/// Where a watcher resumes: the newest `at_ms` it has received. Opaque to
/// callers (a decimal string on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Cursor(i64);

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Cursor {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        text.parse::<i64>()
            .ok()
            .filter(|ms| *ms >= 0)
            .map(Cursor)
            .ok_or_else(|| Error::InvalidRequest {
                field: "cursor",
                problem: "not a cursor authd sent".to_owned(),
            })
    }
}

/// What a watcher is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A revocation in force.
    Revocation(Arc<Revocation>),
    /// Everything so far has been sent; the next heartbeat comes within
    /// `interval`.
    Heartbeat {
        /// `watch.heartbeat_ms`.
        interval: Duration,
    },
}

/// One message of a watch: the event, and the cursor to resume after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    /// What happened.
    pub event: WatchEvent,
    /// Where a new watch resumes after this message.
    pub cursor: Cursor,
}

/// The watchers of one replica, bounded by `watch.max_watchers`.
#[derive(Debug)]
pub struct Watchers {
    revocations: Arc<Revocations>,
    heartbeat: Duration,
    max_watchers: usize,
    active: Arc<AtomicUsize>,
    /// Set when the replica shuts down: every stream ends (its callers
    /// resume elsewhere) instead of holding the shutdown to its grace.
    closing: watch::Sender<bool>,
}

impl Watchers {
    /// Watchers of `revocations`; its feed's capacity is the buffer.
    pub fn new(revocations: Arc<Revocations>, config: &WatchConfig) -> Self {
        Watchers {
            revocations,
            heartbeat: config.heartbeat(),
            max_watchers: config.max_watchers,
            active: Arc::new(AtomicUsize::new(0)),
            closing: watch::channel(false).0,
        }
    }

    /// Ends every stream (with an OK status) and refuses none: new ones end
    /// at once too. Called when the replica starts shutting down.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// How many watchers are served now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// A new watch, from the start (`None`) or after `cursor`, less the
    /// clock-skew margin replicas also allow each other: a revocation made
    /// on a replica whose clock is a little behind is not skipped.
    pub fn watch(
        &self,
        cursor: Option<Cursor>,
    ) -> Result<impl Stream<Item = Result<Watched, Error>> + Send + 'static, Error> {
        let slot = Slot::take(&self.active, self.max_watchers)?;
        // Subscribe before reading the set: every revocation is then in the
        // replay, on the feed, or both (sent twice is harmless).
        let feed = self.revocations.subscribe();
        let after = cursor.map(|c| c.0.saturating_sub(CLOCK_SKEW_MS));
        let replay = self
            .revocations
            .in_force_after(after, now_ms().div_euclid(1000));
        let mut heartbeat =
            tokio::time::interval_at(Instant::now() + self.heartbeat, self.heartbeat);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let state = State {
            closing: self.closing.subscribe(),
            phase: Phase::Replay(replay.into_iter()),
            feed,
            heartbeat,
            interval: self.heartbeat,
            buffer: self.revocations.feed_capacity,
            cursor: cursor.unwrap_or_default(),
            _slot: slot,
        };
        Ok(stream::unfold(state, |mut state| async move {
            let next = state.next().await?;
            Some((next, state))
        }))
    }
}

/// One place among `watch.max_watchers`, given back when the watch ends.
#[derive(Debug)]
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(active: &Arc<AtomicUsize>, max: usize) -> Result<Slot, Error> {
        let taken = active.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(Arc::clone(active));
        if taken >= max {
            return Err(Error::TooManyWatchers { max_watchers: max });
        }
        metrics::gauge!("authd_watchers").set((taken + 1) as f64);
        Ok(slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let left = self.0.fetch_sub(1, Ordering::AcqRel).saturating_sub(1);
        metrics::gauge!("authd_watchers").set(left as f64);
    }
}

enum Phase {
    /// Sending the revocations in force.
    Replay(std::vec::IntoIter<Arc<Revocation>>),
    /// Caught up: the feed and heartbeats.
    Live,
    /// Ended.
    Done,
}

struct State {
    closing: watch::Receiver<bool>,
    phase: Phase,
    feed: broadcast::Receiver<Arc<Revocation>>,
    heartbeat: Interval,
    interval: Duration,
    buffer: usize,
    cursor: Cursor,
    _slot: Slot,
}

impl State {
    fn revocation(&mut self, r: Arc<Revocation>) -> Watched {
        self.cursor = self.cursor.max(Cursor(r.at_ms));
        Watched {
            event: WatchEvent::Revocation(r),
            cursor: self.cursor,
        }
    }

    fn heartbeat(&self) -> Watched {
        Watched {
            event: WatchEvent::Heartbeat {
                interval: self.interval,
            },
            cursor: self.cursor,
        }
    }

    async fn next(&mut self) -> Option<Result<Watched, Error>> {
        if *self.closing.borrow() {
            return None;
        }
        match &mut self.phase {
            Phase::Replay(replay) => {
                if let Some(r) = replay.next() {
                    return Some(Ok(self.revocation(r)));
                }
                self.phase = Phase::Live;
                self.heartbeat.reset();
                Some(Ok(self.heartbeat()))
            }
            Phase::Live => {
                tokio::select! {
                    biased;
                    received = self.feed.recv() => match received {
                        Ok(r) => Some(Ok(self.revocation(r))),
                        Err(RecvError::Lagged(missed)) => {
                            tracing::info!(missed, buffer = self.buffer, "ending a revocation watcher that fell behind");
                            metrics::counter!("authd_watchers_dropped_total").increment(1);
                            self.phase = Phase::Done;
                            Some(Err(Error::WatcherTooSlow { buffer: self.buffer }))
                        }
                        // The replica's revocations are gone: it is stopping.
                        Err(RecvError::Closed) => None,
                    },
                    _ = self.heartbeat.tick() => Some(Ok(self.heartbeat())),
                    _ = self.closing.changed() => None,
                }
            }
            Phase::Done => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;
    use crate::{revocation::revocation, store::RevocationKind};

    fn config(max_watchers: usize) -> WatchConfig {
        WatchConfig {
            heartbeat_ms: 50,
            max_watchers,
            ..WatchConfig::default()
        }
    }

    fn sid(value: &str, at_ms: i64) -> Revocation {
        Revocation {
            at_ms,
            ..revocation(
                RevocationKind::SessionId,
                "https://i/",
                value,
                now_ms() / 1000 + 600,
            )
        }
    }

    async fn take(
        watch: &mut (impl Stream<Item = Result<Watched, Error>> + Unpin),
        n: usize,
    ) -> Vec<Result<Watched, Error>> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(watch.next().await.expect("stream open"));
        }
        out
    }

    fn value(item: &Result<Watched, Error>) -> Option<&str> {
        match item {
            Ok(Watched {
                event: WatchEvent::Revocation(r),
                ..
            }) => Some(&r.value),
            _ => None,
        }
    }

    #[tokio::test]
    async fn replays_in_force_then_heartbeat_then_new_ones() {
        let revocations = Revocations::new();
        let now = now_ms();
        revocations.apply(&[sid("a", now - 10), sid("b", now - 5)]);
        let watchers = Watchers::new(Arc::clone(&revocations), &config(4));
        let mut watch = Box::pin(watchers.watch(None).expect("watch"));
        let first = take(&mut watch, 3).await;
        assert_eq!(value(&first[0]), Some("a"));
        assert_eq!(value(&first[1]), Some("b"));
        let Ok(Watched {
            event: WatchEvent::Heartbeat { .. },
            cursor,
        }) = &first[2]
        else {
            panic!("caught-up heartbeat expected: {first:?}");
        };
        assert_eq!(*cursor, Cursor(now - 5));
        revocations.apply(&[sid("c", now)]);
        assert_eq!(value(&take(&mut watch, 1).await[0]), Some("c"));
        // Nothing new: a heartbeat comes.
        assert!(matches!(
            take(&mut watch, 1).await[0],
            Ok(Watched {
                event: WatchEvent::Heartbeat { .. },
                ..
            })
        ));
    }

    #[tokio::test]
    async fn a_cursor_skips_what_is_older_than_its_margin() {
        let revocations = Revocations::new();
        let now = now_ms();
        revocations.apply(&[
            sid("old", now - 2 * CLOCK_SKEW_MS),
            sid("within-margin", now - CLOCK_SKEW_MS / 2),
        ]);
        let watchers = Watchers::new(Arc::clone(&revocations), &config(4));
        let cursor: Cursor = now.to_string().parse().expect("cursor");
        let mut watch = Box::pin(watchers.watch(Some(cursor)).expect("watch"));
        let got = take(&mut watch, 2).await;
        assert_eq!(value(&got[0]), Some("within-margin"));
        assert!(value(&got[1]).is_none(), "then the heartbeat");
        assert_eq!(got[1].as_ref().map(|w| w.cursor), Ok(cursor));
    }

    #[tokio::test]
    async fn a_watcher_a_whole_buffer_behind_is_ended() {
        let revocations = Revocations::with_feed_capacity(4);
        let watchers = Watchers::new(Arc::clone(&revocations), &config(4));
        let mut watch = Box::pin(watchers.watch(None).expect("watch"));
        take(&mut watch, 1).await; // caught up
        let now = now_ms();
        for i in 0..10 {
            revocations.apply(&[sid(&format!("s{i}"), now + i)]);
        }
        let ended = watch.next().await.expect("an error");
        assert_eq!(ended, Err(Error::WatcherTooSlow { buffer: 4 }));
        assert!(watch.next().await.is_none());
    }

    #[tokio::test]
    async fn watchers_are_bounded_and_their_places_come_back() {
        let watchers = Watchers::new(Revocations::new(), &config(2));
        let one = watchers.watch(None).expect("one");
        let two = watchers.watch(None).expect("two");
        assert!(matches!(
            watchers.watch(None).map(|_| ()),
            Err(Error::TooManyWatchers { max_watchers: 2 })
        ));
        drop(one);
        assert_eq!(watchers.active(), 1);
        let _three = watchers.watch(None).expect("a place came back");
        drop(two);
    }

    #[tokio::test]
    async fn closing_ends_every_stream() {
        let watchers = Watchers::new(Revocations::new(), &config(4));
        let mut watch = Box::pin(watchers.watch(None).expect("watch"));
        take(&mut watch, 1).await; // caught up
        watchers.close();
        assert!(watch.next().await.is_none());
        let mut late = Box::pin(watchers.watch(None).expect("watch"));
        assert!(late.next().await.is_none());
    }

    #[test]
    fn a_cursor_is_what_authd_sent() {
        assert_eq!(
            "1700000000000".parse::<Cursor>(),
            Ok(Cursor(1_700_000_000_000))
        );
        for bad in ["", "-5", "abc", "1.5"] {
            assert!(bad.parse::<Cursor>().is_err(), "{bad}");
        }
    }
}
