package authd

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/grpc/codes"
)

// Verdict is how a protected service answers a request: the sorting the
// middleware in httpauth and grpcauth share.
type Verdict int

const (
	// Allowed: the token passed; the request goes on with it.
	Allowed Verdict = iota
	// Missing: no bearer token (HTTP 401 "Bearer"; gRPC UNAUTHENTICATED).
	Missing
	// Invalid: authd refused the token (401 invalid_token; UNAUTHENTICATED).
	Invalid
	// Forbidden: a required scope is missing (403 insufficient_scope;
	// PERMISSION_DENIED).
	Forbidden
	// Unavailable: authd could not be reached or could not decide: refuse
	// (503; UNAVAILABLE), never let the request through.
	Unavailable
)

// Decision is the outcome of [Client.Authorize].
type Decision struct {
	Verdict Verdict
	// Token is the verified token when Verdict is Allowed.
	Token *VerifiedToken
	// Err is authd's refusal (or the failure to ask it) otherwise; nil for
	// Missing.
	Err *AuthError
}

// Authorize decides a request carrying authorization (the header or
// metadata value, "Bearer …"; empty when absent) that needs scopes. A cache
// hit is decided without a call. It fails closed: any answer but a verified
// token, a refused token or a missing scope is Unavailable.
func (c *Client) Authorize(ctx context.Context, authorization string, scopes []string) Decision {
	token, ok := BearerToken(authorization)
	if !ok {
		return Decision{Verdict: Missing}
	}
	if hit := c.cached(token, scopes); hit != nil {
		return Decision{Verdict: Allowed, Token: hit}
	}
	verified, err := c.VerifyToken(ctx, token, scopes...)
	if err == nil {
		return Decision{Verdict: Allowed, Token: verified}
	}
	var authErr *AuthError
	if !errors.As(err, &authErr) {
		authErr = localError(codes.Unknown, "%v", err)
	}
	switch authErr.Code {
	case codes.Unauthenticated, codes.InvalidArgument:
		return Decision{Verdict: Invalid, Err: authErr}
	case codes.PermissionDenied:
		return Decision{Verdict: Forbidden, Err: authErr}
	default:
		c.cfg.logger.Warn("authd could not verify a token: refusing the request", "error", authErr.Error())
		return Decision{Verdict: Unavailable, Err: authErr}
	}
}

// BearerToken returns the token of an "authorization: Bearer …" value (the
// scheme in any case); false when there is none.
func BearerToken(authorization string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(authorization), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}
