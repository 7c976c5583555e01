package authd_test

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	authd "authd.dev/client"
	"authd.dev/client/httpauth"
	"authd.dev/client/internal/testenv"
	"google.golang.org/grpc/codes"
)

// Mutual TLS: the client's certificate gets it through the handshake, and
// its SPIFFE id, which [[callers]] grants WatchRevocations, turns the cache
// on without any token. A client without a certificate is refused.
func TestE2EMutualTLSAndACertificateThatMayWatch(t *testing.T) {
	const watcher = "spiffe://authd.test/ns/api/sa/orders"
	dir := t.TempDir()
	pki, err := testenv.NewPKI(dir, watcher)
	if err != nil {
		t.Fatal(err)
	}
	a := startAuthd(t,
		fastWatch+fmt.Sprintf("[[callers]]\nidentities = [%q]\nrpcs = [\"/auth.v1.AuthService/WatchRevocations\"]\n", watcher),
		fmt.Sprintf("[server.tls]\ncert_file = %q\nkey_file = %q\nclient_ca_file = %q\nclient_auth = \"require\"\n",
			pki.ServerCert, pki.ServerKey, pki.CAFile))

	c, err := authd.New(a.Addr, authd.WithTLS(&tls.Config{
		RootCAs: pki.Roots, Certificates: []tls.Certificate{pki.Client}, ServerName: "authd.test", MinVersion: tls.VersionTLS12,
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.VerifyToken(ctx(t), token(t, nil)); err != nil {
		t.Fatalf("over mutual TLS: %v", err)
	}
	waitFor(t, 10*time.Second, "the cache answering for a certificate [[callers]] lets watch",
		func() bool { return c.CacheState() == authd.CacheAnswering })

	anonymous, err := authd.New(a.Addr, authd.WithoutCache(), authd.WithTimeout(time.Second),
		authd.WithTLS(&tls.Config{RootCAs: pki.Roots, ServerName: "authd.test", MinVersion: tls.VersionTLS12}))
	if err != nil {
		t.Fatal(err)
	}
	defer anonymous.Close()
	_, err = anonymous.VerifyToken(ctx(t), token(t, nil))
	if code := authdCode(err); code != codes.Unavailable {
		t.Fatalf("without a client certificate: %v", err)
	}
}

func authdCode(err error) codes.Code {
	if e, ok := err.(*authd.AuthError); ok {
		return e.Code
	}
	return codes.OK
}

// The HTTP middleware passes the TLS client certificate of the request to
// authd: a certificate-bound token (RFC 8705) passes over a connection with
// that certificate only.
func TestE2EHTTPMiddlewarePassesTheClientCertificate(t *testing.T) {
	a := startAuthd(t, fastWatch, "")
	c := watching(t, a.Addr, authd.DefaultCacheConfig())
	pki, err := testenv.NewPKI(t.TempDir(), "spiffe://authd.test/ns/web/sa/app")
	if err != nil {
		t.Fatal(err)
	}
	other, err := testenv.NewPKI(t.TempDir(), "spiffe://authd.test/ns/web/sa/other")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(pki.Client.Certificate[0])
	bound := token(t, map[string]string{"claims": fmt.Sprintf(`{"cnf":{"x5t#S256":%q}}`, base64.RawURLEncoding.EncodeToString(sum[:]))})

	server := httptest.NewUnstartedServer(httpauth.New(c).Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, _ := authd.FromContext(r.Context())
		fmt.Fprint(w, v.Binding.X5TS256)
	})))
	server.TLS = &tls.Config{ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12}
	server.StartTLS()
	defer server.Close()

	get := func(cert *tls.Certificate) int {
		transport := server.Client().Transport.(*http.Transport).Clone()
		if cert != nil {
			transport.TLSClientConfig.Certificates = []tls.Certificate{*cert}
		}
		req, _ := http.NewRequest(http.MethodGet, server.URL+"/", nil)
		req.Header.Set("Authorization", "Bearer "+bound)
		res, err := (&http.Client{Transport: transport}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if got := get(&pki.Client); got != http.StatusOK {
		t.Fatalf("with the certificate the token is bound to: %d", got)
	}
	if got := get(&other.Client); got != http.StatusUnauthorized {
		t.Fatalf("with another certificate: %d", got)
	}
	if got := get(nil); got != http.StatusUnauthorized {
		t.Fatalf("without a certificate: %d", got)
	}
}
