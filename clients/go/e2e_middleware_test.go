package authd_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	authd "authd.dev/client"
	"authd.dev/client/grpcauth"
	"authd.dev/client/httpauth"
	"authd.dev/client/internal/testenv"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// === net/http ===

// protectedAPI serves GET /orders (read:orders) and GET /me (any verified
// token) answering the verified subject, and GET /healthz unprotected.
func protectedAPI(t *testing.T, c *authd.Client) *httptest.Server {
	t.Helper()
	authn := httpauth.New(c, httpauth.WithRealm("orders"))
	mux := http.NewServeMux()
	subject := func(prefix string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			v, ok := authd.FromContext(r.Context())
			if !ok {
				http.Error(w, "no token in the context", http.StatusInternalServerError)
				return
			}
			fmt.Fprintf(w, "%s%s", prefix, v.Subject)
		})
	}
	mux.Handle("GET /orders", authn.Require("read:orders")(subject("orders of ")))
	mux.Handle("GET /me", authn.Require()(subject("")))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	server := httptest.NewServer(mux)
	t.Cleanup(server.Close)
	return server
}

type answer struct {
	status    int
	challenge string
	body      string
}

func get(t *testing.T, url, authorization string) answer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return answer{res.StatusCode, res.Header.Get("WWW-Authenticate"), strings.TrimSpace(string(body))}
}

func TestE2EHTTPMiddlewareEveryAnswer(t *testing.T) {
	a := startAuthd(t, fastWatch, "")
	c := watching(t, a.Addr, authd.DefaultCacheConfig())
	api := protectedAPI(t, c)
	good := token(t, map[string]string{"scope": "read:orders", "sub": "svc@clients"})

	for _, tc := range []struct {
		name          string
		authorization string
		status        int
		challenge     string // a prefix
		body          string
	}{
		{"verified", "Bearer " + good, 200, "", "orders of svc@clients"},
		{"verified from the cache", "bearer " + good, 200, "", "orders of svc@clients"},
		{"no token", "", 401, `Bearer realm="orders"`, ""},
		{"another scheme", "Basic dXNlcjpwdw==", 401, `Bearer realm="orders"`, ""},
		{"malformed token", "Bearer nope", 401, `Bearer realm="orders", error="invalid_token", error_description="`, ""},
		{"expired token", "Bearer " + token(t, map[string]string{"scope": "read:orders", "expires_in": "-60"}), 401,
			`Bearer realm="orders", error="invalid_token", error_description="`, ""},
		{"missing scope", "Bearer " + token(t, map[string]string{"scope": "write:orders"}), 403,
			`Bearer realm="orders", error="insufficient_scope", error_description="`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := get(t, api.URL+"/orders", tc.authorization)
			if got.status != tc.status || !strings.HasPrefix(got.challenge, tc.challenge) || (tc.challenge == "" && got.challenge != "") {
				t.Fatalf("%+v", got)
			}
			if tc.body != "" && got.body != tc.body {
				t.Fatalf("body %q", got.body)
			}
		})
	}
	if got := get(t, api.URL+"/orders", "Bearer "+token(t, map[string]string{"scope": "write:orders"})); !strings.HasSuffix(got.challenge, `scope="read:orders"`) {
		t.Fatalf("the 403 names the scope needed: %q", got.challenge)
	}
	if got := get(t, api.URL+"/healthz", ""); got.status != 200 {
		t.Fatalf("an unprotected route: %+v", got)
	}
}

func TestE2EHTTPMiddlewareAnswers503WhenAuthdIsDown(t *testing.T) {
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, fmt.Sprintf("127.0.0.1:%d", port), authd.WithoutCache(), authd.WithTimeout(300*time.Millisecond))
	api := protectedAPI(t, c)
	got := get(t, api.URL+"/orders", "Bearer "+token(t, map[string]string{"scope": "read:orders"}))
	if got.status != http.StatusServiceUnavailable || got.challenge != "" {
		t.Fatalf("authd down: %+v (never a pass-through)", got)
	}
}

// === gRPC server ===

// whoami is a health service whose Check answers SERVING only with a
// verified token in its context, and whose Watch sends one message.
type whoami struct {
	healthpb.UnimplementedHealthServer
}

func (whoami) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if _, ok := authd.FromContext(ctx); !ok {
		return nil, status.Error(codes.Internal, "no token in the context")
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func (whoami) Watch(_ *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	if _, ok := authd.FromContext(stream.Context()); !ok {
		return status.Error(codes.Internal, "no token in the context")
	}
	return stream.Send(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING})
}

// protectedServer serves whoami behind the interceptors: scopes (default
// read:orders) for every method, List public.
func protectedServer(t *testing.T, c *authd.Client, scopes ...string) healthpb.HealthClient {
	t.Helper()
	if scopes == nil {
		scopes = []string{"read:orders"}
	}
	authn := grpcauth.New(c, grpcauth.DefaultScopes(scopes...), grpcauth.Public("/grpc.health.v1.Health/List"))
	server := grpc.NewServer(grpc.UnaryInterceptor(authn.Unary()), grpc.StreamInterceptor(authn.Stream()))
	healthpb.RegisterHealthServer(server, whoami{})
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = server.Serve(listener) }()
	t.Cleanup(server.Stop)
	conn, err := grpc.NewClient(listener.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return healthpb.NewHealthClient(conn)
}

func bearer(ctx context.Context, token string) context.Context {
	if token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

func reasonOf(err error) string {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == "authd" {
			return info.GetReason()
		}
	}
	return ""
}

func TestE2EGRPCInterceptorsEveryAnswer(t *testing.T) {
	a := startAuthd(t, fastWatch, "")
	c := watching(t, a.Addr, authd.DefaultCacheConfig())
	server := protectedServer(t, c)
	good := token(t, map[string]string{"scope": "read:orders"})

	for _, tc := range []struct {
		name   string
		token  string
		code   codes.Code
		reason authd.Reason
	}{
		{"verified", good, codes.OK, ""},
		{"verified from the cache", good, codes.OK, ""},
		{"no token", "", codes.Unauthenticated, authd.ReasonTokenMissing},
		{"malformed token", "nope", codes.Unauthenticated, authd.ReasonMalformedToken},
		{"expired token", token(t, map[string]string{"scope": "read:orders", "expires_in": "-60"}), codes.Unauthenticated, authd.ReasonTokenExpired},
		{"missing scope", token(t, map[string]string{"scope": "write:orders"}), codes.PermissionDenied, authd.ReasonInsufficientScope},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := server.Check(bearer(ctx(t), tc.token), &healthpb.HealthCheckRequest{})
			if status.Code(err) != tc.code || reasonOf(err) != string(tc.reason) {
				t.Fatalf("unary: %v (reason %q)", err, reasonOf(err))
			}
			stream, err := server.Watch(bearer(ctx(t), tc.token), &healthpb.HealthCheckRequest{})
			if err == nil {
				_, err = stream.Recv()
			}
			if status.Code(err) != tc.code || reasonOf(err) != string(tc.reason) {
				t.Fatalf("stream: %v (reason %q)", err, reasonOf(err))
			}
		})
	}
	// A public method passes without a token (and is unimplemented here).
	if _, err := server.List(ctx(t), &healthpb.HealthListRequest{}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("public: %v", err)
	}
}

func TestE2EGRPCInterceptorsAnswerUnavailableWhenAuthdIsDown(t *testing.T) {
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, fmt.Sprintf("127.0.0.1:%d", port), authd.WithoutCache(), authd.WithTimeout(300*time.Millisecond))
	server := protectedServer(t, c)
	_, err = server.Check(bearer(ctx(t), token(t, map[string]string{"scope": "read:orders"})), &healthpb.HealthCheckRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("authd down: %v (never a pass-through)", err)
	}
}
