// Package grpcauth protects a grpc-go server with authd: unary and stream
// server interceptors read the authorization metadata ("Bearer …", or
// "DPoP …" with the dpop metadata) and the client certificate, verify
// the token (from the client's revocation-aware cache when it can, else by
// asking authd) with the scopes the method requires, and either call the
// handler with the [authd.VerifiedToken] in its context (authd.FromContext)
// or answer the refusal: UNAUTHENTICATED (no token, or a bad one) and
// PERMISSION_DENIED (a required scope missing), both with authd's
// google.rpc.ErrorInfo, or UNAVAILABLE when authd cannot be asked (fail
// closed: never a pass-through).
//
//	authn := grpcauth.New(client,
//		grpcauth.DefaultScopes("read:orders"),
//		grpcauth.Require("/shop.v1.Orders/Cancel", "write:orders"),
//		grpcauth.Public("/grpc.health.v1.Health/"))
//	server := grpc.NewServer(
//		grpc.UnaryInterceptor(authn.Unary()),
//		grpc.StreamInterceptor(authn.Stream()))
package grpcauth

import (
	"context"
	"strings"

	authd "authd.dev/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// access is what a method needs: nothing (public) or a token with scopes.
type access struct {
	public bool
	scopes []string
}

// Option configures the [Interceptor].
type Option func(*Interceptor)

// DefaultScopes sets the scopes of every method without a rule of its own.
// Defaults to none: any verified token.
func DefaultScopes(scopes ...string) Option {
	return func(i *Interceptor) { i.fallback = access{scopes: scopes} }
}

// Require makes path need a token holding every one of scopes. path is a
// full method ("/pkg.Service/Method") or, ending with "/", every method of
// a service ("/pkg.Service/"). The exact rule wins, then the service's,
// then the default.
func Require(path string, scopes ...string) Option {
	return func(i *Interceptor) { i.paths[path] = access{scopes: scopes} }
}

// Public makes path (as in [Require]) need no token: its calls pass
// without asking authd (health checks, reflection).
func Public(path string) Option {
	return func(i *Interceptor) { i.paths[path] = access{public: true} }
}

// DPoPOrigin sets the scheme and authority clients address this server by
// ("https://api.example.com"): a DPoP proof's htu must name it with the
// method's path. Without it, calls with DPoP are refused: the call's own
// :authority is never trusted for this.
func DPoPOrigin(origin string) Option {
	return func(i *Interceptor) { i.origin = strings.TrimRight(origin, "/") }
}

// Interceptor verifies calls with an [authd.Client].
type Interceptor struct {
	client   *authd.Client
	fallback access
	paths    map[string]access
	origin   string
}

// New returns interceptors verifying with client.
func New(client *authd.Client, opts ...Option) *Interceptor {
	i := &Interceptor{client: client, paths: map[string]access{}}
	for _, opt := range opts {
		opt(i)
	}
	return i
}

func (i *Interceptor) access(method string) access {
	if a, ok := i.paths[method]; ok {
		return a
	}
	if slash := strings.LastIndexByte(method, '/'); slash >= 0 {
		if a, ok := i.paths[method[:slash+1]]; ok {
			return a
		}
	}
	return i.fallback
}

// authorize returns the context the handler runs with, or the refusal.
func (i *Interceptor) authorize(ctx context.Context, method string) (context.Context, error) {
	a := i.access(method)
	if a.public {
		return ctx, nil
	}
	req := authd.VerifyRequest{Scopes: a.scopes}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if values := md.Get("authorization"); len(values) > 0 {
			req.Token = values[0]
		}
		// Several DPoP values are joined for authd to refuse.
		req.DPoPProof = strings.Join(md.Get("dpop"), ",")
	}
	if scheme, _, _ := strings.Cut(strings.TrimSpace(req.Token), " "); req.DPoPProof != "" || strings.EqualFold(scheme, "dpop") {
		req.HTTPMethod = "POST"
		if i.origin != "" {
			req.HTTPURI = i.origin + method
		}
	}
	if p, ok := peer.FromContext(ctx); ok {
		if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(info.State.PeerCertificates) > 0 {
			req.ClientCertificate = info.State.PeerCertificates[0].Raw
		}
	}
	d := i.client.Authorize(ctx, req)
	switch d.Verdict {
	case authd.Allowed:
		return authd.NewContext(ctx, d.Token), nil
	case authd.Missing:
		return nil, (&authd.AuthError{
			Code: codes.Unauthenticated, Reason: authd.ReasonTokenMissing,
			Message: "no bearer token in the authorization metadata",
		}).GRPCStatus().Err()
	case authd.Invalid:
		return nil, refusal(codes.Unauthenticated, d.Err)
	case authd.Forbidden:
		return nil, refusal(codes.PermissionDenied, d.Err)
	default:
		// Connection details stay in the client's log.
		return nil, (&authd.AuthError{
			Code: codes.Unavailable, Reason: d.Err.Reason,
			Message: "the authorization service is unavailable",
		}).GRPCStatus().Err()
	}
}

// refusal is authd's refusal with code, carrying its ErrorInfo.
func refusal(code codes.Code, err *authd.AuthError) error {
	if err.Reason == "" {
		return status.Error(code, err.Message)
	}
	return (&authd.AuthError{Code: code, Reason: err.Reason, Message: err.Message, Metadata: err.Metadata}).GRPCStatus().Err()
}

// Unary returns the unary server interceptor.
func (i *Interceptor) Unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := i.authorize(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// Stream returns the stream server interceptor.
func (i *Interceptor) Stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := i.authorize(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		return handler(srv, &verifiedStream{ServerStream: ss, ctx: ctx})
	}
}

// verifiedStream is a stream whose context carries the verified token.
type verifiedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *verifiedStream) Context() context.Context { return s.ctx }
