//! The revocations this client has heard from authd's WatchRevocations
//! stream, and what a cached answer must carry to be checked against them:
//! the token's issuer, subject, `sid`, `iat`, the SHA-256 of its signing
//! input (`header.payload`, what the issuer signed) and of the whole token.

use std::{
    collections::HashMap,
    time::{SystemTime, UNIX_EPOCH},
};

use authd_proto::pb;
use aws_lc_rs::digest;

use crate::VerifiedToken;

/// A SHA-256 digest.
pub(crate) type Digest = [u8; 32];

pub(crate) fn sha256(bytes: &[u8]) -> Digest {
    let mut out = [0; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    out
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// What a revocation can name in a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    issuer: String,
    subject: String,
    session_id: Option<String>,
    /// `iat`, unix seconds.
    issued_at: Option<i64>,
    /// SHA-256 of the signing input `header.payload`.
    signed: Digest,
    /// SHA-256 of the whole compact token.
    whole: Digest,
}

impl Identity {
    /// The identity of `token` (without any `Bearer ` prefix), as authd
    /// verified it.
    pub(crate) fn of(token: &str, verified: &VerifiedToken) -> Identity {
        let signing_input = token.rsplit_once('.').map_or(token, |(input, _)| input);
        Identity {
            issuer: verified.issuer.clone(),
            subject: verified.subject.clone(),
            session_id: verified.session_id.clone(),
            issued_at: verified.issued_at.map(|t| {
                t.duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64)
            }),
            signed: sha256(signing_input.as_bytes()),
            whole: sha256(token.as_bytes()),
        }
    }
}

/// Revocations in force, as authd sent them; each kept until it expires.
#[derive(Debug, Default)]
pub(crate) struct Revoked {
    /// issuer → sid → expires_at
    sessions: HashMap<String, HashMap<String, i64>>,
    /// issuer → subject → (revoked at, unix seconds; expires_at)
    subjects: HashMap<String, HashMap<String, (i64, i64)>>,
    /// SHA-256 of a signing input → expires_at
    signed: HashMap<Digest, i64>,
    /// SHA-256 of a whole token → expires_at (older authd versions)
    whole: HashMap<Digest, i64>,
}

fn parse_hex(text: &str) -> Option<Digest> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

impl Revoked {
    /// Adds one revocation; `false` when it names nothing this client can
    /// match (an unknown kind, a digest that is not hex).
    pub(crate) fn add(&mut self, r: &pb::Revocation) -> bool {
        let expires_at = r.expires_at.as_ref().map_or(i64::MAX, |t| t.seconds);
        let keep_longest = |slot: &mut i64| *slot = (*slot).max(expires_at);
        match pb::RevocationKind::try_from(r.kind) {
            Ok(pb::RevocationKind::SessionId) => {
                keep_longest(
                    self.sessions
                        .entry(r.issuer.clone())
                        .or_default()
                        .entry(r.value.clone())
                        .or_insert(expires_at),
                );
            }
            Ok(pb::RevocationKind::Subject) => {
                let at = r.revoked_at.as_ref().map_or(i64::MAX, |t| t.seconds);
                let entry = self
                    .subjects
                    .entry(r.issuer.clone())
                    .or_default()
                    .entry(r.value.clone())
                    .or_insert((at, expires_at));
                *entry = (entry.0.max(at), entry.1.max(expires_at));
            }
            Ok(kind @ (pb::RevocationKind::SignedDigest | pb::RevocationKind::TokenHash)) => {
                let Some(digest) = parse_hex(&r.value) else {
                    return false;
                };
                let map = if kind == pb::RevocationKind::SignedDigest {
                    &mut self.signed
                } else {
                    &mut self.whole
                };
                keep_longest(map.entry(digest).or_insert(expires_at));
            }
            Ok(pb::RevocationKind::Unspecified) | Err(_) => return false,
        }
        true
    }

    /// Whether a revocation refuses the token `id` names.
    pub(crate) fn refuses(&self, id: &Identity) -> bool {
        if let Some(sid) = &id.session_id
            && self
                .sessions
                .get(&id.issuer)
                .is_some_and(|m| m.contains_key(sid))
        {
            return true;
        }
        if let Some((at, _)) = self.subjects.get(&id.issuer).and_then(|m| m.get(&id.subject))
            // A token without iat cannot prove it is newer.
            && id.issued_at.is_none_or(|iat| iat <= *at)
        {
            return true;
        }
        self.signed.contains_key(&id.signed) || self.whole.contains_key(&id.whole)
    }

    /// Forgets revocations that expired (no token they name is valid).
    pub(crate) fn prune(&mut self) {
        let now = unix_now();
        for m in self.sessions.values_mut() {
            m.retain(|_, e| *e > now);
        }
        for m in self.subjects.values_mut() {
            m.retain(|_, (_, e)| *e > now);
        }
        self.sessions.retain(|_, m| !m.is_empty());
        self.subjects.retain(|_, m| !m.is_empty());
        self.signed.retain(|_, e| *e > now);
        self.whole.retain(|_, e| *e > now);
    }

    /// How many revocations are held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.sessions.values().map(HashMap::len).sum::<usize>()
            + self.subjects.values().map(HashMap::len).sum::<usize>()
            + self.signed.len()
            + self.whole.len()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use super::*;

    pub(crate) fn revocation(kind: pb::RevocationKind, value: &str, at: i64) -> pb::Revocation {
        pb::Revocation {
            kind: kind.into(),
            issuer: "https://i/".to_owned(),
            value: value.to_owned(),
            revoked_at: Some(prost_types::Timestamp {
                seconds: at,
                nanos: 0,
            }),
            expires_at: Some(prost_types::Timestamp {
                seconds: unix_now() + 600,
                nanos: 0,
            }),
        }
    }

    pub(crate) fn verified(sub: &str, sid: Option<&str>, iat: i64) -> VerifiedToken {
        let mut token = VerifiedToken::from(pb::VerifyTokenResponse::default());
        token.issuer = "https://i/".to_owned();
        token.subject = sub.to_owned();
        token.session_id = sid.map(str::to_owned);
        token.issued_at = Some(UNIX_EPOCH + Duration::from_secs(iat as u64));
        token.expires_at = SystemTime::now() + Duration::from_secs(3600);
        token
    }

    fn hex(d: &Digest) -> String {
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn a_session_revocation_refuses_tokens_of_that_sid_only() {
        let mut revoked = Revoked::default();
        let now = unix_now();
        assert!(revoked.add(&revocation(pb::RevocationKind::SessionId, "s1", now)));
        let of = |sid| Identity::of("h.p.s", &verified("u", sid, now));
        assert!(revoked.refuses(&of(Some("s1"))));
        assert!(!revoked.refuses(&of(Some("s2"))));
        assert!(!revoked.refuses(&of(None)));
    }

    #[test]
    fn a_subject_revocation_refuses_tokens_issued_at_or_before_it() {
        let mut revoked = Revoked::default();
        let now = unix_now();
        revoked.add(&revocation(pb::RevocationKind::Subject, "alice", now));
        for (iat, refused) in [(now - 5, true), (now, true), (now + 1, false)] {
            let id = Identity::of("h.p.s", &verified("alice", None, iat));
            assert_eq!(revoked.refuses(&id), refused, "iat {iat}");
        }
        assert!(!revoked.refuses(&Identity::of("h.p.s", &verified("bob", None, now))));
    }

    #[test]
    fn a_signed_digest_refuses_every_encoding_of_the_signature() {
        let mut revoked = Revoked::default();
        let now = unix_now();
        let digest = hex(&sha256(b"hdr.claims"));
        revoked.add(&revocation(pb::RevocationKind::SignedDigest, &digest, now));
        for twin in ["hdr.claims.sig-1", "hdr.claims.other-sig"] {
            assert!(revoked.refuses(&Identity::of(twin, &verified("u", None, now))));
        }
        assert!(!revoked.refuses(&Identity::of("hdr.claimz.sig-1", &verified("u", None, now))));
    }

    #[test]
    fn a_legacy_whole_token_hash_refuses_that_token() {
        let mut revoked = Revoked::default();
        let now = unix_now();
        let digest = hex(&sha256(b"old.token.sig"));
        revoked.add(&revocation(pb::RevocationKind::TokenHash, &digest, now));
        assert!(revoked.refuses(&Identity::of("old.token.sig", &verified("u", None, now))));
        assert!(!revoked.refuses(&Identity::of("old.token.sig2", &verified("u", None, now))));
    }

    #[test]
    fn what_cannot_be_matched_is_refused_and_expired_ones_are_forgotten() {
        let mut revoked = Revoked::default();
        let now = unix_now();
        assert!(!revoked.add(&revocation(pb::RevocationKind::SignedDigest, "zz", now)));
        assert!(!revoked.add(&revocation(pb::RevocationKind::Unspecified, "x", now)));
        let mut expired = revocation(pb::RevocationKind::SessionId, "s1", now);
        expired.expires_at = Some(prost_types::Timestamp {
            seconds: now - 1,
            nanos: 0,
        });
        revoked.add(&expired);
        revoked.add(&revocation(pb::RevocationKind::SessionId, "s2", now));
        revoked.prune();
        assert_eq!(revoked.len(), 1);
    }
}
