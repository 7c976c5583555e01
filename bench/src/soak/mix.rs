//! The VerifyToken mix and the workers that send it.
//!
//! Out of every 100 calls: 70 repeat one of a few tokens (result-cache
//! hits), 20 send the next token of a large pool cycled in order (more
//! tokens than the result cache holds, so each is a miss), and 10 must be
//! refused: 3 expired, 3 for another audience, 2 garbage, 1 with a broken
//! signature, 1 asking for a scope the token lacks. The kinds are spread
//! evenly (call `k` is kind `SLOTS[(37 k) mod 100]`).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use authd_proto::pb::{VerifyTokenRequest, auth_service_client::AuthServiceClient};
use tonic::Code;

use super::{Expect, Family, Recorder, classify};
use crate::load::grpc::H2Connection;

/// The scope every good request requires (every minted token holds it).
pub const SCOPE: &str = "read:orders";
/// A scope no minted token holds.
pub const MISSING_SCOPE: &str = "admin:everything";
/// How many tokens of the file are the repeated ones.
pub const REPEATED: usize = 100;
/// How many tokens at the end of the file become broken-signature tokens.
const BROKEN: usize = 1000;

/// One kind of call in the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Repeated,
    Fresh,
    Expired,
    WrongAudience,
    Garbage,
    BadSignature,
    MissingScope,
}

impl Kind {
    const ALL: [Kind; 7] = [
        Kind::Repeated,
        Kind::Fresh,
        Kind::Expired,
        Kind::WrongAudience,
        Kind::Garbage,
        Kind::BadSignature,
        Kind::MissingScope,
    ];

    /// Calls out of 100.
    fn share(self) -> usize {
        match self {
            Kind::Repeated => 70,
            Kind::Fresh => 20,
            Kind::Expired | Kind::WrongAudience => 3,
            Kind::Garbage => 2,
            Kind::BadSignature | Kind::MissingScope => 1,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Repeated => "verify/repeated",
            Kind::Fresh => "verify/fresh",
            Kind::Expired => "verify/expired",
            Kind::WrongAudience => "verify/wrong-audience",
            Kind::Garbage => "verify/garbage",
            Kind::BadSignature => "verify/bad-signature",
            Kind::MissingScope => "verify/missing-scope",
        }
    }

    fn expect(self) -> Expect {
        use Code::{PermissionDenied, Unauthenticated};
        match self {
            Kind::Repeated | Kind::Fresh => Expect::Ok,
            Kind::Expired => Expect::Refused(Unauthenticated, "TOKEN_EXPIRED"),
            Kind::WrongAudience => Expect::Refused(Unauthenticated, "WRONG_AUDIENCE"),
            Kind::Garbage => Expect::Refused(Unauthenticated, "MALFORMED_TOKEN"),
            Kind::BadSignature => Expect::Refused(Unauthenticated, "BAD_SIGNATURE"),
            Kind::MissingScope => Expect::Refused(PermissionDenied, "INSUFFICIENT_SCOPE"),
        }
    }
}

/// The tokens the mix is built from.
#[derive(Debug)]
pub struct Tokens {
    /// Valid tokens: the first [`REPEATED`] repeat, the last 1,000 are
    /// broken, the rest are the fresh pool.
    pub valid: Vec<String>,
    /// Expired tokens, same issuer and key.
    pub expired: Vec<String>,
    /// Tokens for another audience, same issuer and key.
    pub wrong_audience: Vec<String>,
}

/// The pre-built requests, one list per kind, each cycled in order.
#[derive(Debug)]
pub struct Mix {
    slots: [Kind; 100],
    requests: Vec<Vec<VerifyTokenRequest>>,
    cursors: Vec<AtomicU64>,
}

fn request(token: String, scope: &str) -> VerifyTokenRequest {
    VerifyTokenRequest {
        token,
        required_scopes: vec![scope.to_owned()],
        audience: None,
        ..VerifyTokenRequest::default()
    }
}

/// `token` with one character of its signature changed.
fn break_signature(token: &str) -> String {
    let mut bytes = token.as_bytes().to_vec();
    let at = bytes.len().saturating_sub(20);
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap_or_default()
}

impl Mix {
    /// Builds the mix; fails when the file holds too few valid tokens.
    pub fn new(tokens: Tokens) -> anyhow::Result<Mix> {
        let Tokens {
            mut valid,
            expired,
            wrong_audience,
        } = tokens;
        anyhow::ensure!(
            valid.len() >= REPEATED + BROKEN + 1000,
            "the token file holds {} tokens; the mix needs at least {}",
            valid.len(),
            REPEATED + BROKEN + 1000
        );
        anyhow::ensure!(!expired.is_empty() && !wrong_audience.is_empty());
        let broken = valid.split_off(valid.len() - BROKEN);
        let fresh = valid.split_off(REPEATED);
        let repeated = valid;
        let garbage = (0..1000)
            .map(|n| match n % 2 {
                0 => format!("garbage-{n:06}-not-a-jwt"),
                _ => format!("eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24gJ{n:06}.c2lnbmF0dXJl"),
            })
            .collect::<Vec<_>>();
        let build = |kind: Kind| -> Vec<VerifyTokenRequest> {
            let scope = if kind == Kind::MissingScope {
                MISSING_SCOPE
            } else {
                SCOPE
            };
            let tokens: Vec<String> = match kind {
                Kind::Repeated | Kind::MissingScope => repeated.clone(),
                Kind::Fresh => fresh.clone(),
                Kind::Expired => expired.clone(),
                Kind::WrongAudience => wrong_audience.clone(),
                Kind::Garbage => garbage.clone(),
                Kind::BadSignature => broken.iter().map(|t| break_signature(t)).collect(),
            };
            tokens.into_iter().map(|t| request(t, scope)).collect()
        };
        let mut slots = [Kind::Repeated; 100];
        let mut at = 0;
        for kind in Kind::ALL {
            for _ in 0..kind.share() {
                slots[at] = kind;
                at += 1;
            }
        }
        Ok(Mix {
            slots,
            requests: Kind::ALL.into_iter().map(build).collect(),
            cursors: Kind::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
        })
    }

    /// How many fresh tokens the pool holds.
    pub fn fresh_pool(&self) -> usize {
        self.requests[1].len()
    }

    /// Call number `k`: its request, what it must answer, its label.
    fn pick(&self, k: u64) -> (VerifyTokenRequest, Expect, &'static str) {
        let kind = self.slots[(k.wrapping_mul(37) % 100) as usize];
        let i = kind as usize;
        let list = &self.requests[i];
        let n = self.cursors[i].fetch_add(1, Ordering::Relaxed) as usize % list.len();
        (list[n].clone(), kind.expect(), kind.label())
    }
}

/// When the workers send: as fast as answers come back, or paced.
#[derive(Debug)]
pub struct Pace {
    start: Instant,
    deadline: Instant,
    /// Calls per second; `None`: closed-loop.
    rate: Option<f64>,
    next: AtomicU64,
}

impl Pace {
    /// Closed-loop until `duration` has passed.
    pub fn closed(duration: Duration) -> Pace {
        let start = Instant::now();
        Pace {
            start,
            deadline: start + duration,
            rate: None,
            next: AtomicU64::new(0),
        }
    }

    /// Open-loop: call `k` is due at `k / rate` seconds, until `duration`.
    pub fn open(rate: f64, duration: Duration) -> Pace {
        Pace {
            rate: Some(rate),
            ..Pace::closed(duration)
        }
    }

    /// Calls handed out so far.
    pub fn issued(&self) -> u64 {
        self.next.load(Ordering::Relaxed)
    }
}

/// One worker: one call in flight at a time.
pub async fn worker(
    mut client: AuthServiceClient<H2Connection>,
    mix: Arc<Mix>,
    pace: Arc<Pace>,
    recorder: Arc<Recorder>,
) {
    loop {
        let k = pace.next.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let lag = match pace.rate {
            Some(rate) => {
                let slot = pace.start + Duration::from_secs_f64(k as f64 / rate);
                if slot >= pace.deadline {
                    return;
                }
                if slot > now {
                    tokio::time::sleep_until(slot.into()).await;
                }
                Instant::now().saturating_duration_since(slot)
            }
            None if now >= pace.deadline => return,
            None => Duration::ZERO,
        };
        let (request, expect, label) = mix.pick(k);
        let sent = Instant::now();
        let result = client.verify_token(request).await;
        let latency = sent.elapsed();
        recorder.record(
            Family::Verify,
            label,
            Some(latency),
            lag,
            classify(expect, &result),
        );
    }
}
