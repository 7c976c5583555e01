package authd_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	authd "authd.dev/client"
	"authd.dev/client/internal/testenv"
)

// The end-to-end tests run against the real authd binary and the real test
// issuer; one issuer serves every test of the package.

var (
	issuerOnce sync.Once
	issuerErr  error
	theIssuer  *testenv.Issuer
)

func TestMain(m *testing.M) {
	code := m.Run()
	if theIssuer != nil {
		theIssuer.Stop()
	}
	os.Exit(code)
}

func issuer(t *testing.T) *testenv.Issuer {
	t.Helper()
	issuerOnce.Do(func() { theIssuer, issuerErr = testenv.StartIssuer() })
	if issuerErr != nil {
		t.Fatal(issuerErr)
	}
	return theIssuer
}

// fastWatch makes authd heartbeat every 200 ms.
const fastWatch = "[watch]\nheartbeat_ms = 200\n"

// startAuthd starts the real binary with the issuer's sessions config plus
// extra; it is killed when the test ends.
func startAuthd(t *testing.T, extra, serverExtra string) *testenv.Authd {
	t.Helper()
	a, err := testenv.StartAuthd(t.TempDir(), issuer(t).SessionsConfig(extra), serverExtra)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Kill)
	return a
}

func newClient(t *testing.T, target string, opts ...authd.Option) *authd.Client {
	t.Helper()
	c, err := authd.New(target, append([]authd.Option{authd.WithInsecure()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// watching is a client whose cache watches with a revocations:watch token.
func watching(t *testing.T, target string, cache authd.CacheConfig, opts ...authd.Option) *authd.Client {
	t.Helper()
	watcher := token(t, map[string]string{"permissions": "revocations:watch"})
	c := newClient(t, target, append([]authd.Option{authd.WithCache(cache),
		authd.WithWatchToken(func() string { return watcher })}, opts...)...)
	waitFor(t, 10*time.Second, "the cache answering", func() bool { return c.CacheState() == authd.CacheAnswering })
	return c
}

func token(t *testing.T, extra map[string]string) string {
	t.Helper()
	tok, err := issuer(t).Token(extra)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// session signs user in through the issuer and creates an authd session.
func session(t *testing.T, c *authd.Client, user string) *authd.NewSession {
	t.Helper()
	nonce := fmt.Sprintf("n-%d", time.Now().UnixNano())
	code, verifier, err := issuer(t).Authorize(user, nonce)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.CreateSession(context.Background(), authd.AuthorizationCode{
		Code: authd.Secret(code), RedirectURI: testenv.RedirectURI, CodeVerifier: authd.Secret(verifier), Nonce: nonce,
	}, "")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// waitFor polls cond every 10 ms for at most within.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	started := time.Now()
	for !cond() {
		if time.Since(started) > within {
			t.Fatalf("no %s within %v", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(started)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}
