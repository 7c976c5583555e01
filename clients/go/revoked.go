package authd

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"strings"
	"time"

	authv1 "authd.dev/client/gen/auth/v1"
)

// digest is a SHA-256.
type digest [32]byte

// identity is what a revocation can name in a verified token: its issuer,
// subject, sid, iat, and the SHA-256 of its signing input (header.payload,
// what the issuer signed) and of the whole compact token.
type identity struct {
	issuer    string
	subject   string
	sessionID string // "": none
	issuedAt  int64  // unix seconds
	hasIAT    bool
	signed    digest
	whole     digest
}

// identityOf is the identity of token (without "Bearer "), as authd verified it.
func identityOf(token string, v *VerifiedToken) identity {
	signingInput := token
	if i := strings.LastIndexByte(token, '.'); i >= 0 {
		signingInput = token[:i]
	}
	return identity{
		issuer:    v.Issuer,
		subject:   v.Subject,
		sessionID: v.SessionID,
		issuedAt:  v.IssuedAt.Unix(),
		hasIAT:    !v.IssuedAt.IsZero(),
		signed:    sha256.Sum256([]byte(signingInput)),
		whole:     sha256.Sum256([]byte(token)),
	}
}

type issuerValue struct{ issuer, value string }

type subjectRevocation struct{ revokedAt, expiresAt int64 }

// revoked holds the revocations in force, as authd sent them; each is kept
// until it expires.
type revoked struct {
	sessions map[issuerValue]int64 // (issuer, sid) → expires_at
	subjects map[issuerValue]subjectRevocation
	signed   map[digest]int64 // SHA-256 of a signing input → expires_at
	whole    map[digest]int64 // SHA-256 of a whole token → expires_at (older authd)
}

func newRevoked() revoked {
	return revoked{
		sessions: map[issuerValue]int64{},
		subjects: map[issuerValue]subjectRevocation{},
		signed:   map[digest]int64{},
		whole:    map[digest]int64{},
	}
}

func parseDigest(text string) (digest, bool) {
	var d digest
	if len(text) != 64 {
		return d, false
	}
	if _, err := hex.Decode(d[:], []byte(text)); err != nil {
		return d, false
	}
	return d, true
}

func keepLongest[K comparable](m map[K]int64, k K, expiresAt int64) {
	if old, ok := m[k]; !ok || expiresAt > old {
		m[k] = expiresAt
	}
}

// add records one revocation; false when it names nothing this client can
// match (an unknown kind, a digest that is not hex).
func (r *revoked) add(rev *authv1.Revocation) bool {
	expiresAt := int64(math.MaxInt64)
	if rev.GetExpiresAt() != nil {
		expiresAt = rev.GetExpiresAt().GetSeconds()
	}
	key := issuerValue{rev.GetIssuer(), rev.GetValue()}
	switch rev.GetKind() {
	case authv1.RevocationKind_REVOCATION_KIND_SESSION_ID:
		keepLongest(r.sessions, key, expiresAt)
	case authv1.RevocationKind_REVOCATION_KIND_SUBJECT:
		at := int64(math.MaxInt64)
		if rev.GetRevokedAt() != nil {
			at = rev.GetRevokedAt().GetSeconds()
		}
		old, ok := r.subjects[key]
		if ok {
			at, expiresAt = max(at, old.revokedAt), max(expiresAt, old.expiresAt)
		}
		r.subjects[key] = subjectRevocation{revokedAt: at, expiresAt: expiresAt}
	case authv1.RevocationKind_REVOCATION_KIND_SIGNED_DIGEST, authv1.RevocationKind_REVOCATION_KIND_TOKEN_HASH:
		d, ok := parseDigest(rev.GetValue())
		if !ok {
			return false
		}
		if rev.GetKind() == authv1.RevocationKind_REVOCATION_KIND_SIGNED_DIGEST {
			keepLongest(r.signed, d, expiresAt)
		} else {
			keepLongest(r.whole, d, expiresAt)
		}
	default:
		return false
	}
	return true
}

// refuses reports whether a revocation names the token id describes.
func (r *revoked) refuses(id *identity) bool {
	if id.sessionID != "" {
		if _, ok := r.sessions[issuerValue{id.issuer, id.sessionID}]; ok {
			return true
		}
	}
	// A token without iat cannot prove it is newer than the revocation.
	if s, ok := r.subjects[issuerValue{id.issuer, id.subject}]; ok && (!id.hasIAT || id.issuedAt <= s.revokedAt) {
		return true
	}
	if _, ok := r.signed[id.signed]; ok {
		return true
	}
	_, ok := r.whole[id.whole]
	return ok
}

// prune forgets the revocations that expired: no token they name is valid.
func (r *revoked) prune(now time.Time) {
	unix := now.Unix()
	for k, e := range r.sessions {
		if e <= unix {
			delete(r.sessions, k)
		}
	}
	for k, s := range r.subjects {
		if s.expiresAt <= unix {
			delete(r.subjects, k)
		}
	}
	for k, e := range r.signed {
		if e <= unix {
			delete(r.signed, k)
		}
	}
	for k, e := range r.whole {
		if e <= unix {
			delete(r.whole, k)
		}
	}
}

func (r *revoked) len() int {
	return len(r.sessions) + len(r.subjects) + len(r.signed) + len(r.whole)
}
