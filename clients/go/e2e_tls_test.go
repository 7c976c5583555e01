package authd_test

import (
	"crypto/tls"
	"fmt"
	"testing"
	"time"

	authd "authd.dev/client"
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
