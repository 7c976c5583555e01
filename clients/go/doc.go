// Package authd is the Go client of authd (auth.v1), module
// authd.dev/client.
//
//   - [Client] (client.go, options.go, sessions.go, device.go): every auth.v1 method over
//     grpc-go, TLS and client certificates, deadlines, retries on
//     UNAVAILABLE only, and [Client.AwaitDeviceLogin], the RFC 8628 poll loop.
//   - [AuthError] (errors.go, reasons.go): the gRPC code and authd's
//     [Reason] from google.rpc.ErrorInfo, with its metadata; take it with
//     errors.As. reasons.go is generated from the proto's ErrorReason enum.
//   - The revocation-aware cache (cache.go, revoked.go, watch.go): on by
//     default, it answers repeated tokens from memory while the client's
//     WatchRevocations stream is live and no revocation names the token;
//     read [CacheConfig] for the guarantee.
//   - [Client.Authorize] (decide.go): the decision the middleware shares;
//     [NewContext] and [FromContext] carry the verified token.
//   - Subpackages httpauth (net/http middleware) and grpcauth (gRPC server
//     interceptors) protect a service in a few lines; both fail closed.
//   - gen/auth/v1: the generated protobuf and gRPC code, never edited.
//
// A minimal service:
//
//	client, err := authd.New("authd.internal:50051", authd.WithTLS(tlsConfig),
//		authd.WithWatchToken(serviceToken))
//	if err != nil { … }
//	defer client.Close()
//	authn := httpauth.New(client)
//	mux.Handle("GET /orders", authn.Require("read:orders")(orders))
//
// and in the handler:
//
//	token, _ := authd.FromContext(r.Context())
package authd
