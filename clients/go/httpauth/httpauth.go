// Package httpauth protects net/http handlers with authd: it reads the
// Authorization header (Bearer, or DPoP with its proof), verifies the token (from the client's
// revocation-aware cache when it can, else by asking authd), and either
// calls the next handler with the [authd.VerifiedToken] in the request's
// context (authd.FromContext) or answers the refusal itself, as RFC 6750
// asks:
//
//	no bearer token             401  WWW-Authenticate: Bearer realm="…"
//	authd refused the token     401  WWW-Authenticate: Bearer realm="…", error="invalid_token", error_description="…"
//	a required scope is missing 403  WWW-Authenticate: Bearer realm="…", error="insufficient_scope", error_description="…", scope="…"
//	authd unreachable/undecided 503  (fail closed: never a pass-through)
//
// A request that used DPoP gets RFC 9449's DPoP challenges instead
// (invalid_dpop_proof, use_dpop_nonce with the nonce in DPoP-Nonce); an
// INVALID_REQUEST refusal is 400 invalid_request.
//
//	authn := httpauth.New(client)
//	mux.Handle("GET /orders", authn.Require("read:orders")(orders))
//	mux.Handle("POST /orders", authn.Require("write:orders")(create))
package httpauth

import (
	"net/http"
	"strings"

	authd "authd.dev/client"
)

// Option configures the [Middleware].
type Option func(*Middleware)

// WithRealm sets the realm of the WWW-Authenticate challenges. Defaults to
// no realm.
func WithRealm(realm string) Option {
	return func(m *Middleware) { m.realm = realm }
}

// WithDPoPOrigin sets the scheme and authority clients address this
// service by ("https://api.example.com"), which a DPoP proof's htu must name
// with the request's path. Without it, requests with DPoP are refused: the
// request's own Host (or X-Forwarded-*) is never trusted for this.
func WithDPoPOrigin(origin string) Option {
	return func(m *Middleware) { m.origin = strings.TrimRight(origin, "/") }
}

// WithScopes sets the scopes [Middleware.Handler] requires. Defaults to
// none: any verified token.
func WithScopes(scopes ...string) Option {
	return func(m *Middleware) { m.scopes = scopes }
}

// Middleware verifies requests with an [authd.Client].
type Middleware struct {
	client *authd.Client
	realm  string
	scopes []string
	origin string
}

// New returns middleware verifying with client.
func New(client *authd.Client, opts ...Option) *Middleware {
	m := &Middleware{client: client}
	for _, opt := range opts {
		opt(m)
	}
	return m
}

// Handler protects next with the scopes of [WithScopes].
func (m *Middleware) Handler(next http.Handler) http.Handler {
	return m.Require(m.scopes...)(next)
}

// Require returns middleware requiring a token holding every one of scopes.
func (m *Middleware) Require(scopes ...string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			d := m.client.Authorize(r.Context(), m.presented(r, scopes))
			if d.Verdict == authd.Allowed {
				next.ServeHTTP(w, r.WithContext(authd.NewContext(r.Context(), d.Token)))
				return
			}
			m.refuse(w, d, scopes)
		})
	}
}

// presented is what r presents: its Authorization value, its DPoP proof
// (several DPoP headers joined by "," for authd to refuse), its method and
// URI, and the client certificate its TLS connection carried.
func (m *Middleware) presented(r *http.Request, scopes []string) authd.VerifyRequest {
	req := authd.VerifyRequest{Token: r.Header.Get("Authorization"), Scopes: scopes}
	if proofs := r.Header.Values("DPoP"); len(proofs) > 0 {
		req.DPoPProof = strings.Join(proofs, ",")
	}
	if req.DPoPProof != "" || hasScheme(req.Token, "dpop") {
		req.HTTPMethod = r.Method
		if m.origin != "" {
			req.HTTPURI = m.origin + r.URL.EscapedPath()
		}
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		req.ClientCertificate = r.TLS.PeerCertificates[0].Raw
	}
	return req
}

// hasScheme reports whether authorization starts with scheme and a space
// (any case), without copying the token.
func hasScheme(authorization, scheme string) bool {
	authorization = strings.TrimLeft(authorization, " ")
	return len(authorization) > len(scheme) && authorization[len(scheme)] == ' ' &&
		strings.EqualFold(authorization[:len(scheme)], scheme)
}

func (m *Middleware) refuse(w http.ResponseWriter, d authd.Decision, scopes []string) {
	var params []string
	if m.realm != "" {
		params = append(params, `realm="`+quoted(m.realm)+`"`)
	}
	status, scheme, nonce := http.StatusUnauthorized, "Bearer", ""
	if d.DPoP {
		scheme = "DPoP"
	}
	switch d.Verdict {
	case authd.Invalid:
		code := "invalid_token"
		switch d.Err.Reason {
		case authd.ReasonDpopProofInvalid, authd.ReasonDpopProofReplayed:
			code, scheme = "invalid_dpop_proof", "DPoP"
		case authd.ReasonDpopNonceRequired:
			code, scheme, nonce = "use_dpop_nonce", "DPoP", d.Err.Metadata["nonce"]
		case authd.ReasonInvalidRequest:
			code, status = "invalid_request", http.StatusBadRequest
		}
		params = append(params, `error="`+code+`"`, `error_description="`+quoted(d.Err.Message)+`"`)
	case authd.Forbidden:
		status = http.StatusForbidden
		params = append(params, `error="insufficient_scope"`, `error_description="`+quoted(d.Err.Message)+`"`,
			`scope="`+quoted(strings.Join(scopes, " "))+`"`)
	case authd.Unavailable:
		status = http.StatusServiceUnavailable
	}
	h := w.Header()
	if status != http.StatusServiceUnavailable {
		challenge := scheme
		if len(params) > 0 {
			challenge += " " + strings.Join(params, ", ")
		}
		h.Set("WWW-Authenticate", challenge)
	}
	if nonce != "" {
		h.Set("DPoP-Nonce", nonce)
	}
	h.Set("Cache-Control", "no-store")
	http.Error(w, http.StatusText(status), status)
}

// quoted keeps only what RFC 6750 allows in a quoted attribute (printable
// ASCII without '"' and '\').
func quoted(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '"':
			return '\''
		case r == '\\':
			return '/'
		case r >= ' ' && r <= '~':
			return r
		}
		return '?'
	}, s)
}
