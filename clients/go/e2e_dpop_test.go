package authd_test

import (
	"net/http"
	"strings"
	"testing"

	authd "authd.dev/client"
	"authd.dev/client/grpcauth"
	"authd.dev/client/httpauth"
	"authd.dev/client/internal/testenv"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"net"
)

const origin = "https://api.authd.test"

func dpopRequest(t *testing.T, url, authorization string, proofs ...string) answer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", authorization)
	for _, p := range proofs {
		req.Header.Add("DPoP", p)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return answer{status: res.StatusCode, challenge: res.Header.Get("WWW-Authenticate")}
}

// The middleware passes the DPoP header, the method and the URI (from the
// configured origin) to authd: a DPoP-bound token passes with a fresh
// proof for that request only, and never from the cache.
func TestE2EHTTPMiddlewarePassesDPoPThrough(t *testing.T) {
	a := startAuthd(t, fastWatch, "")
	c := watching(t, a.Addr, authd.DefaultCacheConfig())
	key, err := testenv.NewDPoPKey()
	if err != nil {
		t.Fatal(err)
	}
	tok := token(t, map[string]string{"scope": "read:orders", "claims": key.CnfClaims()})
	authn := httpauth.New(c, httpauth.WithDPoPOrigin(origin))
	var bound string
	mux := http.NewServeMux()
	mux.Handle("GET /orders", authn.Require("read:orders")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, _ := authd.FromContext(r.Context())
		bound = v.Binding.JKT
	})))
	api := newHTTPServer(t, mux)

	proof := func(uri string) string {
		p, err := key.Proof("GET", uri, tok)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	first := proof(origin + "/orders")
	if got := dpopRequest(t, api+"/orders", "DPoP "+tok, first); got.status != 200 || bound != key.Thumbprint() {
		t.Fatalf("a fresh proof: %+v, bound to %q", got, bound)
	}
	if got := dpopRequest(t, api+"/orders", "DPoP "+tok, proof(origin+"/orders")); got.status != 200 {
		t.Fatalf("another fresh proof: %+v", got)
	}
	for _, tc := range []struct {
		name, authorization string
		proofs              []string
		challenge           string
	}{
		{"the proof again", "DPoP " + tok, []string{first}, `DPoP error="invalid_dpop_proof"`},
		{"a proof for another URI", "DPoP " + tok, []string{proof(origin + "/other")}, `DPoP error="invalid_dpop_proof"`},
		{"no proof", "DPoP " + tok, nil, `DPoP error="invalid_token"`},
		{"the Bearer scheme", "Bearer " + tok, nil, `Bearer error="invalid_token"`},
		{"two proofs", "DPoP " + tok, []string{proof(origin + "/orders"), proof(origin + "/orders")}, `DPoP error="invalid_dpop_proof"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := dpopRequest(t, api+"/orders", tc.authorization, tc.proofs...)
			if got.status != http.StatusUnauthorized || !strings.HasPrefix(got.challenge, tc.challenge) {
				t.Fatalf("%+v", got)
			}
		})
	}
}

func newHTTPServer(t *testing.T, h http.Handler) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := &http.Server{Handler: h}
	go func() { _ = server.Serve(l) }()
	t.Cleanup(func() { _ = server.Close() })
	return "http://" + l.Addr().String()
}

func TestE2EGRPCInterceptorsPassDPoPThrough(t *testing.T) {
	a := startAuthd(t, fastWatch, "")
	c := watching(t, a.Addr, authd.DefaultCacheConfig())
	key, err := testenv.NewDPoPKey()
	if err != nil {
		t.Fatal(err)
	}
	tok := token(t, map[string]string{"scope": "read:orders", "claims": key.CnfClaims()})
	authn := grpcauth.New(c, grpcauth.DefaultScopes("read:orders"), grpcauth.DPoPOrigin(origin))
	server := grpc.NewServer(grpc.UnaryInterceptor(authn.Unary()))
	healthpb.RegisterHealthServer(server, whoami{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = server.Serve(l) }()
	t.Cleanup(server.Stop)
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)

	proof, err := key.Proof("POST", origin+"/grpc.health.v1.Health/Check", tok)
	if err != nil {
		t.Fatal(err)
	}
	call := func(md ...string) error {
		_, err := health.Check(metadata.AppendToOutgoingContext(ctx(t), md...), &healthpb.HealthCheckRequest{})
		return err
	}
	if err := call("authorization", "DPoP "+tok, "dpop", proof); err != nil {
		t.Fatalf("a fresh proof: %v", err)
	}
	if err := call("authorization", "DPoP "+tok, "dpop", proof); status.Code(err) != codes.Unauthenticated || reasonOf(err) != string(authd.ReasonDpopProofReplayed) {
		t.Fatalf("the proof again: %v", err)
	}
	if err := call("authorization", "Bearer "+tok); reasonOf(err) != string(authd.ReasonTokenBindingMismatch) {
		t.Fatalf("a bound token as a bearer token: %v", err)
	}
}
