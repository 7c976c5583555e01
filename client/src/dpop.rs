//! Sender-constrained tokens at the caller: what a request presents beside
//! its token (the `DPoP` proof, the method and URI, the client certificate),
//! and the checks a cached verdict of a bound token needs before it is used
//! again — the same checks authd makes (`authd-jose`), with a replay cache
//! of this client's own, so a proof is good once here too.

use std::time::{SystemTime, UNIX_EPOCH};

use authd_jose::{
    binding::{self, Confirmation, Scheme},
    dpop::{self, ProofPolicy, ProofRequest},
    key::Algorithm,
    replay::{Admission, ReplayCache},
};
use tonic::Code;

use crate::{AuthError, ErrorReason};

/// What a request presents, as the protected service received it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Presented<'a> {
    /// The `Authorization` value (`Bearer …`, `DPoP …`) or the bare token.
    pub authorization: &'a str,
    /// The `DPoP` header, when there was one (several joined by `,`).
    pub dpop_proof: Option<&'a str>,
    /// The request's method (`POST` for a gRPC call).
    pub http_method: &'a str,
    /// The request's URI as its client addressed it (for gRPC
    /// `https://HOST/package.Service/Method`).
    pub http_uri: &'a str,
    /// The client certificate (DER) of the request's TLS connection.
    pub client_certificate: Option<&'a [u8]>,
}

impl<'a> Presented<'a> {
    /// A bare token (or `Bearer …` value) and nothing else.
    pub fn token(authorization: &'a str) -> Presented<'a> {
        Presented {
            authorization,
            ..Presented::default()
        }
    }

    /// The scheme and the token without it.
    pub(crate) fn split(&self) -> (Scheme, &'a str) {
        binding::split_authorization(self.authorization)
    }

    fn proof(&self) -> Option<&'a str> {
        self.dpop_proof.map(str::trim).filter(|p| !p.is_empty())
    }
}

/// How this client checks DPoP proofs on cached verdicts. Keep it equal to
/// authd's `[dpop]` and `[[issuers]] dpop_algorithms` (the defaults are
/// the same).
#[derive(Debug, Clone)]
pub struct DpopPolicy {
    algorithms: Vec<Algorithm>,
    max_age_seconds: u64,
    leeway_seconds: u64,
    replay_max_entries: usize,
    replay_max_per_key: usize,
}

impl Default for DpopPolicy {
    fn default() -> Self {
        DpopPolicy {
            algorithms: dpop::DEFAULT_ALGORITHMS.to_vec(),
            max_age_seconds: 60,
            leeway_seconds: 5,
            // authd's `replay_cache_max_entries` and `_max_per_key`; memory
            // is taken as proofs arrive (about 60 bytes each).
            replay_max_entries: 2_000_000,
            replay_max_per_key: 200_000,
        }
    }
}

impl DpopPolicy {
    /// The proof algorithms accepted (authd's `dpop_algorithms`).
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// How old a proof may be and the clock skew allowed (authd's
    /// `dpop.max_age_seconds`, `dpop.leeway_seconds`).
    pub fn window(mut self, max_age_seconds: u64, leeway_seconds: u64) -> Self {
        self.max_age_seconds = max_age_seconds;
        self.leeway_seconds = leeway_seconds;
        self
    }

    /// The bounds of this client's replay cache: proofs in all, proofs of
    /// one key.
    pub fn replay_bounds(mut self, max_entries: usize, max_per_key: usize) -> Self {
        self.replay_max_entries = max_entries.max(1);
        self.replay_max_per_key = max_per_key.max(1);
        self
    }
}

/// The client's proof checks and replay memory, shared by its clones.
#[derive(Debug)]
pub(crate) struct LocalProofs {
    policy: DpopPolicy,
    replay: ReplayCache,
}

/// What a cached verdict allows for one request.
pub(crate) enum HitCheck {
    /// The request proves the binding (or the token has none): use it.
    Use,
    /// Only authd can decide (the proof carries a server nonce).
    Ask,
    /// Refused here, as authd would.
    Refuse(AuthError),
}

impl LocalProofs {
    pub(crate) fn new(policy: DpopPolicy) -> LocalProofs {
        let replay = ReplayCache::new(policy.replay_max_entries, policy.replay_max_per_key);
        LocalProofs { policy, replay }
    }

    fn proof_policy(&self) -> ProofPolicy<'_> {
        ProofPolicy {
            algorithms: &self.policy.algorithms,
            max_age_seconds: self.policy.max_age_seconds,
            leeway_seconds: self.policy.leeway_seconds,
        }
    }

    /// Whether `presented` may use a cached verdict whose token is bound by
    /// `binding`: the scheme, the certificate, and for a DPoP-bound token a
    /// valid proof by its key, never seen before by this client.
    pub(crate) fn check_hit(
        &self,
        binding: Option<&Confirmation>,
        presented: &Presented<'_>,
    ) -> HitCheck {
        let (scheme, token) = presented.split();
        let proof = presented.proof();
        if let Err(mismatch) = binding::check_presentation(
            binding,
            scheme,
            proof.is_some(),
            presented.client_certificate,
        ) {
            return HitCheck::Refuse(mismatch_error(mismatch));
        }
        let (Some(binding), Some(proof)) = (binding, proof) else {
            return HitCheck::Use;
        };
        if binding.jkt.is_none() {
            return HitCheck::Use;
        }
        for (field, value) in [
            ("http_method", presented.http_method),
            ("http_uri", presented.http_uri),
        ] {
            if value.is_empty() {
                return HitCheck::Refuse(AuthError::refused(
                    Code::InvalidArgument,
                    ErrorReason::InvalidRequest,
                    format!("invalid {field}: required with a DPoP proof"),
                    &[("field", field)],
                ));
            }
        }
        let now = unix_now();
        let request = ProofRequest {
            method: presented.http_method,
            uri: presented.http_uri,
            access_token: token,
        };
        let policy = self.proof_policy();
        let checked = match dpop::check_proof(proof, &request, &policy, now) {
            Ok(checked) => checked,
            Err(error) => return HitCheck::Refuse(proof_error(error)),
        };
        if checked.nonce.is_some() {
            return HitCheck::Ask;
        }
        if let Err(mismatch) = binding::check_thumbprint(binding, &checked.thumbprint) {
            return HitCheck::Refuse(mismatch_error(mismatch));
        }
        match self.replay.admit(
            &checked.thumbprint,
            &checked.jti,
            policy.accepted_until(checked.issued_at),
            now.floor() as i64,
        ) {
            Admission::Fresh => HitCheck::Use,
            Admission::Replayed => HitCheck::Refuse(AuthError::refused(
                Code::Unauthenticated,
                ErrorReason::DpopProofReplayed,
                "the DPoP proof was used before; every request needs a fresh proof",
                &[],
            )),
            Admission::KeyShareFull | Admission::Full => HitCheck::Refuse(AuthError::refused(
                Code::ResourceExhausted,
                ErrorReason::RateLimited,
                "too many DPoP proofs of this key are remembered; retry later",
                &[],
            )),
        }
    }

    /// After authd accepted `presented` for a token bound by `binding`:
    /// remembers its proof here too, so that it is refused on a cached
    /// verdict. Returns whether the verdict may be cached (a proof with a
    /// server nonce is for authd alone to check, so its token is not).
    pub(crate) fn remember(
        &self,
        binding: Option<&Confirmation>,
        presented: &Presented<'_>,
    ) -> bool {
        let (Some(proof), Some(_)) = (presented.proof(), binding.and_then(|b| b.jkt.as_deref()))
        else {
            return true;
        };
        let (_, token) = presented.split();
        let request = ProofRequest {
            method: presented.http_method,
            uri: presented.http_uri,
            access_token: token,
        };
        let policy = self.proof_policy();
        let now = unix_now();
        match dpop::check_proof(proof, &request, &policy, now) {
            Ok(checked) if checked.nonce.is_none() => {
                self.replay.admit(
                    &checked.thumbprint,
                    &checked.jti,
                    policy.accepted_until(checked.issued_at),
                    now.floor() as i64,
                );
                true
            }
            // A nonce, or a policy narrower than authd's: not cached.
            _ => false,
        }
    }
}

fn mismatch_error(mismatch: binding::BindingMismatch) -> AuthError {
    AuthError::refused(
        Code::Unauthenticated,
        ErrorReason::TokenBindingMismatch,
        format!("the token is bound to a key or certificate the call does not prove: {mismatch}"),
        &[("binding", mismatch.binding), ("problem", mismatch.problem)],
    )
}

fn proof_error(error: dpop::ProofError) -> AuthError {
    AuthError::refused(
        Code::Unauthenticated,
        ErrorReason::DpopProofInvalid,
        format!("invalid DPoP proof: {}", error.detail),
        &[("problem", error.problem)],
    )
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
