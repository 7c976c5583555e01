//! Sender-constrained tokens on the verify path: whether a request proves
//! the binding its token carries (`cnf`), with the checks of `authd-jose`
//! and the state they need here — the replica's replay cache and its server
//! nonces.
//!
//! A bound token is never a bearer token: DPoP-bound (`cnf.jkt`) needs a
//! fresh proof by that key for this request; certificate-bound
//! (`cnf["x5t#S256"]`) needs that certificate as the protected service's TLS
//! received it.

mod nonce;

use authd_jose::{
    binding::{self, Confirmation, Scheme},
    dpop::{self, ProofPolicy, ProofRequest},
    key::Algorithm,
    replay::{Admission, ReplayCache},
};

use crate::{config::DpopConfig, error::Error};

/// What a request presents beside the token, as the protected service
/// received it.
#[derive(Debug, Clone, Copy)]
pub struct Presentation<'a> {
    /// The `Authorization` scheme the token came with.
    pub scheme: Scheme,
    /// The token, without its scheme.
    pub token: &'a str,
    /// The `DPoP` header, when there was one.
    pub proof: Option<&'a str>,
    /// The request's method.
    pub method: &'a str,
    /// The request's URI.
    pub uri: &'a str,
    /// The client certificate (DER) of the protected service's TLS peer.
    pub client_certificate: Option<&'a [u8]>,
}

/// The replica's DPoP state: proof window, replay cache, nonces.
#[derive(Debug)]
pub struct DpopGuard {
    max_age_seconds: u64,
    leeway_seconds: u64,
    replay: ReplayCache,
    require_nonce: bool,
    nonces: nonce::Nonces,
}

impl DpopGuard {
    /// The guard `config` describes, its nonces under `nonce_secret` (or a
    /// key drawn now).
    pub fn new(config: &DpopConfig, nonce_secret: Option<&[u8]>) -> DpopGuard {
        DpopGuard {
            max_age_seconds: config.max_age_seconds,
            leeway_seconds: config.leeway_seconds,
            replay: ReplayCache::new(
                config.replay_cache_max_entries,
                config.replay_cache_max_per_key,
            ),
            require_nonce: config.require_nonce,
            nonces: nonce::Nonces::new(nonce_secret, config.nonce_window_seconds),
        }
    }

    /// Proofs remembered by the replay cache now.
    pub fn remembered_proofs(&self) -> usize {
        self.replay.len()
    }

    /// The nonce to hand out now, when nonces are required.
    pub fn current_nonce(&self, now: i64) -> Option<String> {
        self.require_nonce.then(|| self.nonces.current(now))
    }

    /// Checks that `presented` proves `confirmation` (the token's `cnf`, or
    /// `None` for a bearer token), with proofs signed by one of
    /// `algorithms`, as of `now` (unix seconds, fractional). A proof that
    /// passes is remembered, and refused from then on.
    pub fn check(
        &self,
        confirmation: Option<&Confirmation>,
        presented: &Presentation<'_>,
        algorithms: &[Algorithm],
        now: f64,
    ) -> Result<(), Error> {
        let proof = presented.proof.map(str::trim).filter(|p| !p.is_empty());
        binding::check_presentation(
            confirmation,
            presented.scheme,
            proof.is_some(),
            presented.client_certificate,
        )
        .map_err(Error::from)?;
        let (Some(confirmation), Some(proof)) = (confirmation, proof) else {
            return Ok(());
        };
        if confirmation.jkt.is_none() {
            // A certificate-bound token presented with a proof: the proof
            // proves nothing the token asks for (check_presentation refused
            // the DPoP scheme already).
            return Ok(());
        }
        for (field, value) in [
            ("http_method", presented.method),
            ("http_uri", presented.uri),
        ] {
            if value.is_empty() {
                return Err(Error::InvalidRequest {
                    field,
                    problem: "required with a DPoP proof".to_owned(),
                });
            }
        }
        let policy = ProofPolicy {
            algorithms,
            max_age_seconds: self.max_age_seconds,
            leeway_seconds: self.leeway_seconds,
        };
        let request = ProofRequest {
            method: presented.method,
            uri: presented.uri,
            access_token: presented.token,
        };
        let checked = dpop::check_proof(proof, &request, &policy, now)?;
        let now_seconds = now.floor() as i64;
        if self.require_nonce
            && !checked
                .nonce
                .as_deref()
                .is_some_and(|nonce| self.nonces.accepts(nonce, now_seconds))
        {
            return Err(Error::DpopNonceRequired {
                nonce: self.nonces.current(now_seconds),
            });
        }
        binding::check_thumbprint(confirmation, &checked.thumbprint)?;
        match self.replay.admit(
            &checked.thumbprint,
            &checked.jti,
            policy.accepted_until(checked.issued_at),
            now_seconds,
        ) {
            Admission::Fresh => Ok(()),
            Admission::Replayed => Err(Error::DpopProofReplayed),
            Admission::KeyShareFull | Admission::Full => Err(Error::RateLimited {
                retry_after_seconds: self.max_age_seconds.saturating_add(self.leeway_seconds),
            }),
        }
    }
}

impl From<binding::BindingMismatch> for Error {
    fn from(mismatch: binding::BindingMismatch) -> Error {
        Error::TokenBindingMismatch {
            binding: mismatch.binding,
            problem: mismatch.problem,
        }
    }
}

impl From<dpop::ProofError> for Error {
    fn from(error: dpop::ProofError) -> Error {
        Error::DpopProofInvalid {
            problem: error.problem,
            detail: error.detail,
        }
    }
}
