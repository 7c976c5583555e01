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
	// DPoP: the request presented DPoP (the scheme or a proof), so its
	// challenge is a DPoP one (RFC 9449 §7.1).
	DPoP bool
}

// Authorize decides a request: req.Token is its Authorization value
// ("Bearer …" or "DPoP …"; empty when absent), with the DPoP proof, method,
// URI and client certificate it presents. A cache hit is decided without a
// call. It fails closed: any answer but a verified token, a refused token or
// a missing scope is Unavailable.
func (c *Client) Authorize(ctx context.Context, req VerifyRequest) Decision {
	if _, ok := Credential(req.Token); !ok {
		return Decision{Verdict: Missing}
	}
	dpop := req.usesDPoP()
	if hit := c.cached(&req); hit != nil {
		return Decision{Verdict: Allowed, Token: hit}
	}
	verified, err := c.Verify(ctx, req)
	if err == nil {
		return Decision{Verdict: Allowed, Token: verified, DPoP: dpop}
	}
	var authErr *AuthError
	if !errors.As(err, &authErr) {
		authErr = localError(codes.Unknown, "%v", err)
	}
	switch authErr.Code {
	case codes.Unauthenticated, codes.InvalidArgument:
		return Decision{Verdict: Invalid, Err: authErr, DPoP: dpop}
	case codes.PermissionDenied:
		return Decision{Verdict: Forbidden, Err: authErr, DPoP: dpop}
	default:
		c.cfg.logger.Warn("authd could not verify a token: refusing the request", "error", authErr.Error())
		return Decision{Verdict: Unavailable, Err: authErr, DPoP: dpop}
	}
}

// Credential returns the token of an Authorization value whose scheme is
// Bearer or DPoP (any case); false when there is none.
func Credential(authorization string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(authorization), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") && !strings.EqualFold(scheme, "dpop") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}
