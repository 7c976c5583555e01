//! The soak driver behind binary `soak`: a mix of calls against a running
//! authd, first as fast as it goes (capacity), then open-loop at a fixed
//! rate for a long time, with every answer checked against what it should
//! be and the server process sampled every second.
//!
//! - [`mix`]: the VerifyToken mix (repeated, fresh and refused tokens) and
//!   the workers that send it, closed-loop or paced.
//! - [`sessions`]: session lifecycles against the development issuer:
//!   device login or CreateSession, GetProfile, RefreshSession, RevokeSession.
//! - [`report`]: `/proc` samples, the per-second CSV and the JSON summary.
//!
//! Every call has an expected outcome ([`Expect`]). An answer that matches a
//! refusal the mix asked for is *intended*; anything else — an error where
//! success was due, another reason, or success where a refusal was due — is
//! *unexpected*, and a soak passes only with none.

pub mod mix;
pub mod report;
pub mod sessions;

use std::{
    collections::BTreeMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use tonic::{Code, Status};
use tonic_types::StatusExt as _;

/// What a call should answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Success.
    Ok,
    /// This gRPC code with this `ErrorInfo` reason.
    Refused(Code, &'static str),
}

/// How an answer compares with its [`Expect`].
#[derive(Debug)]
pub enum Outcome {
    /// Success, as expected.
    Ok,
    /// The refusal that was asked for (its reason).
    Intended(&'static str),
    /// Anything else: a short key to count by, and the message.
    Unexpected(String, String),
}

/// The `ErrorInfo` reason of an authd error, if it carries one.
pub fn reason(status: &Status) -> Option<String> {
    status.get_details_error_info().map(|info| info.reason)
}

/// Compares an answer with what was expected.
pub fn classify<T>(expect: Expect, result: &Result<T, Status>) -> Outcome {
    match (expect, result) {
        (Expect::Ok, Ok(_)) => Outcome::Ok,
        (Expect::Refused(code, want), Err(status))
            if status.code() == code && reason(status).as_deref() == Some(want) =>
        {
            Outcome::Intended(want)
        }
        (_, Err(status)) => Outcome::Unexpected(
            format!(
                "{:?}/{}",
                status.code(),
                reason(status).unwrap_or_else(|| "-".into())
            ),
            status.message().to_owned(),
        ),
        (Expect::Refused(_, want), Ok(_)) => {
            Outcome::Unexpected(format!("OK/{want}-was-due"), "the call succeeded".into())
        }
    }
}

/// Which latency histogram a call goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// VerifyToken calls of the mix.
    Verify,
    /// The calls of session lifecycles (their VerifyToken calls included).
    Session,
}

/// A schedule slip counted as late: the send started this long after its slot.
pub const LATE: Duration = Duration::from_millis(10);

fn histogram() -> Histogram<u64> {
    // 1 µs to 100 s, 3 significant digits; values in µs.
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("constant bounds are valid")
}

/// One second's counts (or a whole run's).
#[derive(Debug)]
pub struct Window {
    /// Latency of the mix's VerifyToken calls, µs.
    pub verify_us: Histogram<u64>,
    /// Latency of session-lifecycle calls, µs.
    pub session_us: Histogram<u64>,
    /// Calls answered.
    pub calls: u64,
    /// Successes.
    pub ok: u64,
    /// Intended refusals.
    pub intended: u64,
    /// Unexpected answers or failures.
    pub unexpected: u64,
    /// Session-lifecycle calls among `calls`.
    pub session_calls: u64,
    /// Paced sends that started [`LATE`] or more after their slot.
    pub late: u64,
}

impl Window {
    fn new() -> Window {
        Window {
            verify_us: histogram(),
            session_us: histogram(),
            calls: 0,
            ok: 0,
            intended: 0,
            unexpected: 0,
            session_calls: 0,
            late: 0,
        }
    }
}

/// Totals over the soak phase that the per-second rows do not keep.
#[derive(Debug, Default)]
pub struct Tally {
    /// Calls by kind (e.g. `verify/fresh`, `RefreshSession`).
    pub by_kind: BTreeMap<&'static str, u64>,
    /// Intended refusals by reason.
    pub intended: BTreeMap<&'static str, u64>,
    /// Unexpected answers by `kind code/reason`.
    pub unexpected: BTreeMap<String, u64>,
    /// The first message of each unexpected key.
    pub unexpected_messages: BTreeMap<String, String>,
}

#[derive(Debug)]
struct State {
    window: Window,
    total: Window,
    tally: Tally,
}

/// Where every worker records its answers; the sampler takes one [`Window`]
/// a second.
#[derive(Debug)]
pub struct Recorder {
    state: Mutex<State>,
    started: Instant,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            state: Mutex::new(State {
                window: Window::new(),
                total: Window::new(),
                tally: Tally::default(),
            }),
            started: Instant::now(),
        }
    }
}

impl Recorder {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one answered call of `kind` that took `latency` (`None`: no
    /// call was answered) and started `lag` after its slot.
    pub fn record(
        &self,
        family: Family,
        kind: &'static str,
        latency: Option<Duration>,
        lag: Duration,
        outcome: Outcome,
    ) {
        let us = latency.map(|l| (l.as_micros() as u64).max(1));
        let mut state = self.lock();
        let State {
            window,
            total,
            tally,
        } = &mut *state;
        for w in [&mut *window, &mut *total] {
            w.calls += 1;
            match (family, us) {
                (Family::Verify, Some(us)) => w.verify_us.saturating_record(us),
                (Family::Session, Some(us)) => w.session_us.saturating_record(us),
                (_, None) => {}
            }
            if family == Family::Session {
                w.session_calls += 1;
            }
            if lag >= LATE {
                w.late += 1;
            }
            match &outcome {
                Outcome::Ok => w.ok += 1,
                Outcome::Intended(_) => w.intended += 1,
                Outcome::Unexpected(..) => w.unexpected += 1,
            }
        }
        *tally.by_kind.entry(kind).or_default() += 1;
        match outcome {
            Outcome::Ok => {}
            Outcome::Intended(reason) => *tally.intended.entry(reason).or_default() += 1,
            Outcome::Unexpected(key, message) => {
                let key = format!("{kind} {key}");
                if !tally.unexpected_messages.contains_key(&key) {
                    eprintln!(
                        "soak: unexpected at {:.1}s: {key}: {message}",
                        self.started.elapsed().as_secs_f64()
                    );
                    tally.unexpected_messages.insert(key.clone(), message);
                }
                *tally.unexpected.entry(key).or_default() += 1;
            }
        }
    }

    /// A failure that is not a gRPC answer (the issuer's HTTP side, a
    /// missing field), counted as unexpected.
    pub fn failure(&self, kind: &'static str, detail: String) {
        self.record(
            Family::Session,
            kind,
            None,
            Duration::ZERO,
            Outcome::Unexpected("failure".into(), detail),
        );
    }

    /// This second's window, replaced by an empty one.
    pub fn take_window(&self) -> Window {
        std::mem::replace(&mut self.lock().window, Window::new())
    }

    /// Starts the totals again (the soak phase after the capacity phase).
    pub fn reset_totals(&self) {
        let mut state = self.lock();
        state.total = Window::new();
        state.tally = Tally::default();
    }

    /// The totals and tally since the last [`Recorder::reset_totals`].
    pub fn totals(&self) -> (Window, Tally) {
        let mut state = self.lock();
        (
            std::mem::replace(&mut state.total, Window::new()),
            std::mem::take(&mut state.tally),
        )
    }
}
