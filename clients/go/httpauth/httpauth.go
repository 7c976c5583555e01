// Package httpauth protects net/http handlers with authd: it reads the
// Authorization: Bearer header, verifies the token (from the client's
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
			d := m.client.Authorize(r.Context(), r.Header.Get("Authorization"), scopes)
			if d.Verdict == authd.Allowed {
				next.ServeHTTP(w, r.WithContext(authd.NewContext(r.Context(), d.Token)))
				return
			}
			m.refuse(w, d, scopes)
		})
	}
}

func (m *Middleware) refuse(w http.ResponseWriter, d authd.Decision, scopes []string) {
	var params []string
	if m.realm != "" {
		params = append(params, `realm="`+quoted(m.realm)+`"`)
	}
	status := http.StatusUnauthorized
	switch d.Verdict {
	case authd.Invalid:
		params = append(params, `error="invalid_token"`, `error_description="`+quoted(d.Err.Message)+`"`)
	case authd.Forbidden:
		status = http.StatusForbidden
		params = append(params, `error="insufficient_scope"`, `error_description="`+quoted(d.Err.Message)+`"`,
			`scope="`+quoted(strings.Join(scopes, " "))+`"`)
	case authd.Unavailable:
		status = http.StatusServiceUnavailable
	}
	h := w.Header()
	if status != http.StatusServiceUnavailable {
		challenge := "Bearer"
		if len(params) > 0 {
			challenge += " " + strings.Join(params, ", ")
		}
		h.Set("WWW-Authenticate", challenge)
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
