//! Envoy's external authorization, as HTTP decisions: which credential a
//! request carries, which policy its route asks for, and the RFC 6750 answer.
//! Free of protobuf types; `grpc::ext_authz` converts Envoy's `Check` to and
//! from this.
//!
//! A decision is one of three:
//! - [`Decision::Allow`]: headers the upstream can trust (set over any the
//!   client sent, the others of authd's names removed) and the identity as
//!   dynamic metadata;
//! - [`Decision::Deny`]: an HTTP answer for the client — 400, 401 or 403 with
//!   a `WWW-Authenticate` challenge, a small JSON body and `x-authd-reason`;
//! - [`Decision::Unavailable`]: authd cannot decide (no keys, issuer or store
//!   down). The handler sends it as `CheckResponse.error_response`, so that
//!   Envoy applies its `failure_mode_allow` as the operator chose.

mod http;

use std::{collections::HashMap, sync::Arc};

use serde_json::{Map, Value};

pub use self::http::{Credential, Policy, challenge, dpop_challenge};
use crate::{
    config::ExtAuthzConfig,
    error::{Error, Reason},
    verify::{VerifiedToken, Verifier, VerifyRequest},
};

/// The header that names authd's reason on every denied answer.
pub const REASON_HEADER: &str = "x-authd-reason";

/// What Envoy asks about one HTTP request.
#[derive(Debug, Clone, Copy)]
pub struct CheckInput<'a> {
    /// The request's headers, names lower-cased, repeated ones joined by `,`.
    pub headers: &'a HashMap<String, String>,
    /// The request target (path and query).
    pub path: &'a str,
    /// The route's `context_extensions`.
    pub context: &'a HashMap<String, String>,
    /// The request's method.
    pub method: &'a str,
    /// The request's scheme as Envoy received it (`https`, `http`).
    pub scheme: &'a str,
    /// The request's host (`:authority`).
    pub host: &'a str,
    /// The downstream client's certificate as Envoy forwards it (PEM,
    /// URL-encoded; `include_peer_certificate: true`), or empty.
    pub certificate: &'a str,
}

/// The answer to one check.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Let the request through.
    Allow {
        /// Headers to set upstream, overwriting any the client sent.
        set: Vec<(String, String)>,
        /// Headers to remove upstream (authd's names not set this time, and
        /// `authorization` when stripping).
        remove: Vec<String>,
        /// The verified identity for Envoy's dynamic metadata (empty for an
        /// anonymous request).
        metadata: Map<String, Value>,
    },
    /// Answer the client instead of the upstream.
    Deny(Denial),
    /// authd cannot decide; Envoy's `failure_mode_allow` applies.
    Unavailable(Denial),
}

/// An HTTP answer authd sends in place of the upstream's.
#[derive(Debug, Clone, PartialEq)]
pub struct Denial {
    /// The HTTP status: 400, 401, 403 or 503.
    pub status: u16,
    /// Response headers (`www-authenticate`, `content-type`, `x-authd-reason`).
    pub headers: Vec<(String, String)>,
    /// A small JSON object: `error` (RFC 6750, when there is one), `reason`,
    /// `message`.
    pub body: String,
    /// authd's reason.
    pub reason: Reason,
}

/// The Envoy adapter over the shared [`Verifier`] (its cache and revocations
/// included).
#[derive(Debug)]
pub struct ExtAuthz {
    verifier: Arc<Verifier>,
    config: ExtAuthzConfig,
    /// The proof algorithms of every issuer, for DPoP challenges.
    dpop_algs: String,
}

impl ExtAuthz {
    /// The adapter with the `[ext_authz]` settings.
    pub fn new(verifier: Arc<Verifier>, config: ExtAuthzConfig) -> Self {
        let mut algs: Vec<&str> = verifier
            .issuers()
            .flat_map(|issuer| issuer.dpop_algorithms().iter().map(|alg| alg.as_str()))
            .collect();
        algs.sort_unstable();
        algs.dedup();
        let dpop_algs = algs.join(" ");
        ExtAuthz {
            verifier,
            config,
            dpop_algs,
        }
    }

    /// Decides one request.
    pub async fn check(&self, input: CheckInput<'_>) -> Decision {
        let policy = match Policy::of_route(&self.config, input.context) {
            Ok(policy) => policy,
            Err(error) => return self.refuse(&error, &[], false),
        };
        let proof = input.headers.get("dpop").map(String::as_str);
        let authorization = match http::credential(input.headers, input.path) {
            Ok(Credential::Bearer(token)) => format!("Bearer {token}"),
            Ok(Credential::Dpop(token)) => format!("DPoP {token}"),
            Ok(Credential::None) if policy.allow_anonymous && proof.is_none() => {
                return self.allow(None);
            }
            Ok(Credential::None) => return self.refuse(&Error::TokenMissing, &[], proof.is_some()),
            Err(error) => return self.refuse(&error, &[], proof.is_some()),
        };
        let dpop = proof.is_some() || authorization.starts_with("DPoP ");
        match self.verify(&input, &policy, authorization, proof).await {
            Ok(verified) => self.allow(Some(&verified)),
            Err(error) => self.refuse(&error, &policy.required_scopes, dpop),
        }
    }

    /// Verifies the request's credential with what proves its binding: the
    /// DPoP proof for the request's method and URI, the client certificate.
    async fn verify(
        &self,
        input: &CheckInput<'_>,
        policy: &Policy,
        authorization: String,
        proof: Option<&str>,
    ) -> Result<Arc<VerifiedToken>, Error> {
        let client_certificate = http::peer_certificate(input.certificate)?;
        let http_uri = match proof {
            Some(_) => http::dpop_target(input.scheme, input.host, input.path, &policy.dpop_hosts)?,
            None => String::new(),
        };
        let request = VerifyRequest {
            token: authorization,
            required_scopes: policy.required_scopes.clone(),
            audience: policy.audience.clone(),
            dpop_proof: proof.map(str::to_owned),
            http_method: input.method.to_owned(),
            http_uri,
            client_certificate,
        };
        self.verifier.verify(&request).await
    }

    fn allow(&self, verified: Option<&VerifiedToken>) -> Decision {
        let names = self.names();
        let mut set = Vec::new();
        let mut metadata = Map::new();
        if let Some(token) = verified {
            set.push((names.subject.clone(), token.subject.clone()));
            set.push((names.issuer.clone(), token.issuer.clone()));
            set.push((names.scopes.clone(), token.scopes.join(" ")));
            set.push((names.permissions.clone(), token.permissions.join(" ")));
            if let Some(sid) = &token.session_id {
                set.push((names.session.clone(), sid.clone()));
            }
            let claims = http::claims_json(token);
            if self.config.forward_claims {
                set.push((names.claims.clone(), http::base64url_json(&claims)));
            }
            metadata = http::identity_metadata(token);
        }
        let mut remove: Vec<String> = names
            .all()
            .filter(|name| !set.iter().any(|(set_name, _)| set_name == *name))
            .cloned()
            .collect();
        if self.config.strip_authorization {
            remove.push("authorization".to_owned());
        }
        Decision::Allow {
            set,
            remove,
            metadata,
        }
    }

    fn refuse(&self, error: &Error, required_scopes: &[String], dpop: bool) -> Decision {
        let denial = http::denial(
            &self.config.realm,
            error,
            required_scopes,
            dpop.then_some(self.dpop_algs.as_str()),
        );
        if denial.status >= 500 {
            Decision::Unavailable(denial)
        } else {
            Decision::Deny(denial)
        }
    }

    fn names(&self) -> Names<'_> {
        Names {
            subject: &self.config.subject_header,
            issuer: &self.config.issuer_header,
            scopes: &self.config.scopes_header,
            permissions: &self.config.permissions_header,
            session: &self.config.session_header,
            claims: &self.config.claims_header,
        }
    }
}

/// The configured names of the trusted headers.
struct Names<'a> {
    subject: &'a String,
    issuer: &'a String,
    scopes: &'a String,
    permissions: &'a String,
    session: &'a String,
    claims: &'a String,
}

impl<'a> Names<'a> {
    fn all(&self) -> impl Iterator<Item = &'a String> {
        [
            self.subject,
            self.issuer,
            self.scopes,
            self.permissions,
            self.session,
            self.claims,
        ]
        .into_iter()
    }
}
