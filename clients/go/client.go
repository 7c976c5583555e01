package authd

import (
	"context"
	"crypto/tls"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	authv1 "authd.dev/client/gen/auth/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// Client is a client of auth.v1.AuthService. It is safe for concurrent use;
// make one per process and Close it when done (that also ends the cache's
// WatchRevocations stream).
type Client struct {
	conn   *grpc.ClientConn
	rpc    authv1.AuthServiceClient
	cfg    config
	cache  *verifyCache // nil: no cache
	status watchStatus

	stopWatch context.CancelFunc
	watchDone chan struct{}
	closeOnce sync.Once
}

// New returns a client of authd at target ("authd.internal:50051",
// "dns:///authd.internal:50051", any grpc-go target). It connects on first
// use and reconnects as needed, so it is made even while authd is down.
// With the cache on (the default) it starts watching revocations at once.
func New(target string, opts ...Option) (*Client, error) {
	cfg := defaultConfig()
	for _, opt := range opts {
		opt(&cfg)
	}
	if target == "" {
		return nil, localError(codes.InvalidArgument, "no authd target")
	}
	var creds credentials.TransportCredentials
	switch {
	case cfg.insecure:
		creds = insecure.NewCredentials()
	case cfg.tls != nil:
		creds = credentials.NewTLS(cfg.tls)
	default:
		creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
	}
	dial := append([]grpc.DialOption{grpc.WithTransportCredentials(creds)}, cfg.dialOptions...)
	conn, err := grpc.NewClient(target, dial...)
	if err != nil {
		return nil, localError(codes.InvalidArgument, "%s: %v", target, err)
	}
	c := &Client{conn: conn, rpc: authv1.NewAuthServiceClient(conn), cfg: cfg}
	if cfg.cache != nil && cfg.cache.MaxEntries > 0 {
		c.cache = newVerifyCache(*cfg.cache)
		ctx, cancel := context.WithCancel(context.Background())
		c.stopWatch, c.watchDone = cancel, make(chan struct{})
		go func() {
			defer close(c.watchDone)
			c.watch(ctx)
		}()
	}
	return c, nil
}

// Close ends the revocation stream and the connection.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		if c.stopWatch != nil {
			c.stopWatch()
			<-c.watchDone
		}
		err = c.conn.Close()
	})
	return err
}

// Raw returns the generated client, for what the typed methods do not cover.
func (c *Client) Raw() authv1.AuthServiceClient { return c.rpc }

// CacheState reports whether the verification cache answers now.
func (c *Client) CacheState() CacheState {
	if c.cache == nil {
		return CacheOff
	}
	return c.cache.state()
}

// VerifyRequest is a VerifyToken call with every option: what a protected
// service's request presents.
type VerifyRequest struct {
	// Token is the access token, or the request's whole Authorization
	// value: a leading "Bearer " or "DPoP " scheme is accepted.
	Token string
	// Scopes must all be held by the token (scope, scp or permissions).
	Scopes []string
	// Audience, when set, must be in the token's aud and be one of the
	// issuer's configured audiences. A request with an Audience is not
	// answered from the cache.
	Audience string
	// DPoPProof is the request's DPoP header, verbatim (RFC 9449); empty
	// when it had none. With it, HTTPMethod and HTTPURI are required.
	DPoPProof string
	// HTTPMethod is the request's method ("POST" for a gRPC call).
	HTTPMethod string
	// HTTPURI is the request's URI as its client addressed it
	// ("https://api.example.com/orders"; for gRPC
	// "https://HOST/package.Service/Method"), never taken from the request's
	// own Host header.
	HTTPURI string
	// ClientCertificate is the DER certificate the service's TLS received
	// from its client, for certificate-bound tokens (RFC 8705).
	ClientCertificate []byte
}

// usesDPoP reports whether the request presents DPoP (a proof, or the DPoP
// scheme).
func (r *VerifyRequest) usesDPoP() bool {
	scheme, _, _ := strings.Cut(strings.TrimSpace(r.Token), " ")
	return r.DPoPProof != "" || strings.EqualFold(scheme, "dpop")
}

// VerifyToken verifies token (a leading "Bearer " is accepted), requiring
// every scope in scopes. It is answered from the cache when the cache holds
// this token with these scopes and its revocation stream is live. A
// sender-constrained token (DPoP or certificate-bound) is refused this way:
// pass what proves its binding with [Client.Verify].
func (c *Client) VerifyToken(ctx context.Context, token string, scopes ...string) (*VerifiedToken, error) {
	return c.Verify(ctx, VerifyRequest{Token: token, Scopes: scopes})
}

// Verify is VerifyToken with every option of [VerifyRequest]. Only plain
// bearer tokens are answered from the cache: a request presenting DPoP,
// or a token bound to a key or a certificate, always asks authd, which
// checks the proof (and its replay) or the certificate.
func (c *Client) Verify(ctx context.Context, req VerifyRequest) (*VerifiedToken, error) {
	token := bare(req.Token)
	cacheable := c.cache != nil && req.Audience == "" && !req.usesDPoP()
	var key cacheKey
	if cacheable {
		key = keyOf(token, req.Scopes)
		if hit := c.cache.get(key); hit != nil {
			return hit, nil
		}
	}
	msg := &authv1.VerifyTokenRequest{
		Token: req.Token, RequiredScopes: req.Scopes,
		DpopProof: req.DPoPProof, HttpMethod: req.HTTPMethod, HttpUri: req.HTTPURI,
		ClientCertificate: req.ClientCertificate,
	}
	if req.Audience != "" {
		msg.Audience = &req.Audience
	}
	res, err := unary(ctx, c, true, "", msg, c.rpc.VerifyToken)
	if err != nil {
		return nil, err
	}
	verified := verifiedFromProto(res)
	if cacheable && verified.Binding == nil {
		c.cache.insert(key, token, verified)
	}
	return verified, nil
}

// cached returns the cache's answer for req, if it gives one now: what the
// middleware decides without a call.
func (c *Client) cached(req *VerifyRequest) *VerifiedToken {
	if c.cache == nil || req.usesDPoP() {
		return nil
	}
	return c.cache.get(keyOf(bare(req.Token), req.Scopes))
}

func withAuthorization(ctx context.Context, token string) context.Context {
	if token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// unary makes one call: a deadline per attempt, authorization metadata when
// given, retries on UNAVAILABLE when the call is idempotent.
func unary[Req, Res any](
	ctx context.Context, c *Client, idempotent bool, authz string, req Req,
	rpc func(context.Context, Req, ...grpc.CallOption) (Res, error),
) (Res, error) {
	ctx = withAuthorization(ctx, authz)
	attempts := 1
	if idempotent {
		attempts = max(c.cfg.retry.MaxAttempts, 1)
	}
	for attempt := 1; ; attempt++ {
		callCtx, cancel := ctx, context.CancelFunc(func() {})
		if c.cfg.timeout > 0 {
			callCtx, cancel = context.WithTimeout(ctx, c.cfg.timeout)
		}
		res, err := rpc(callCtx, req)
		cancel()
		if err == nil {
			return res, nil
		}
		authErr := fromStatus(err)
		if authErr.Code != codes.Unavailable || attempt >= attempts {
			return res, authErr
		}
		wait := time.NewTimer(c.cfg.retry.backoff(attempt, rand.Float64))
		select {
		case <-ctx.Done():
			wait.Stop()
			return res, authErr
		case <-wait.C:
		}
	}
}

// bare is token without a leading "Bearer" or "DPoP" scheme (any case)
// and surrounding white space, as authd reads it: the compact JWT a
// revocation may name.
func bare(token string) string {
	token = strings.TrimSpace(token)
	for _, scheme := range []string{"bearer", "dpop"} {
		n := len(scheme)
		if len(token) >= n && strings.EqualFold(token[:n], scheme) &&
			(len(token) == n || token[n] == ' ' || token[n] == '\t') {
			return strings.TrimLeft(token[n:], " \t")
		}
	}
	return token
}

// ErrDeviceLoginDenied is returned by AwaitDeviceLogin when the user refused.
var ErrDeviceLoginDenied = errors.New("authd: the user denied the device login")

// ErrDeviceLoginExpired is returned by AwaitDeviceLogin when the device code
// expired before the user answered.
var ErrDeviceLoginExpired = errors.New("authd: the device code expired")
