package authd_test

import (
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	authd "authd.dev/client"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// A revoked session's token is refused through a warm cache, by the
// net/http middleware and by the gRPC interceptors, as soon as the stream
// delivers the revocation: well within the bound.
func TestE2ERevokedSessionIsRefusedThroughAWarmCache(t *testing.T) {
	a := startAuthd(t, fastWatch, "")
	bound := 2 * time.Second // heartbeats every 200 ms; slack for a loaded machine
	c := watching(t, a.Addr, authd.CacheConfig{MaxTTL: time.Minute, MaxEntries: 100, MaxSilence: bound})
	api := protectedAPI(t, c)
	server := protectedServer(t, c, []string{}...) // any verified token
	revoker := newClient(t, a.Addr, authd.WithoutCache())
	alice, bob := session(t, revoker, "alice"), session(t, revoker, "bob")
	passes := func(s *authd.NewSession) (httpOK, grpcOK bool) {
		_, err := server.Check(bearer(ctx(t), s.AccessToken.Reveal()), &healthpb.HealthCheckRequest{})
		return get(t, api.URL+"/me", "Bearer "+s.AccessToken.Reveal()).status == http.StatusOK, err == nil
	}
	for _, s := range []*authd.NewSession{alice, bob} {
		if h, g := passes(s); !h || !g {
			t.Fatalf("a live session: http %v, grpc %v", h, g)
		}
	}
	// Warm: with authd paused, both pass from memory.
	if err := a.Pause(); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*authd.NewSession{alice, bob} {
		if h, g := passes(s); !h || !g {
			t.Fatalf("not from the cache: http %v, grpc %v", h, g)
		}
	}
	_ = a.Signal(syscall.SIGCONT)
	waitFor(t, 5*time.Second, "the cache answering", func() bool { return c.CacheState() == authd.CacheAnswering })

	if _, err := revoker.RevokeSession(ctx(t), alice.Handle); err != nil {
		t.Fatal(err)
	}
	took := waitFor(t, bound, "refusal of the revoked session", func() bool {
		h, g := passes(alice)
		return !h && !g
	})
	t.Logf("revocation to refusal through the cache: %v", took)
	got := get(t, api.URL+"/me", "Bearer "+alice.AccessToken.Reveal())
	if got.status != http.StatusUnauthorized || !strings.Contains(got.challenge, `error="invalid_token"`) {
		t.Fatalf("http: %+v", got)
	}
	_, err := server.Check(bearer(ctx(t), alice.AccessToken.Reveal()), &healthpb.HealthCheckRequest{})
	if status.Code(err) != codes.Unauthenticated || reasonOf(err) != string(authd.ReasonSessionRevoked) {
		t.Fatalf("grpc: %v", err)
	}
	if h, g := passes(bob); !h || !g {
		t.Fatalf("bob's session was not revoked: http %v, grpc %v", h, g)
	}
}

// While authd is paused the cache answers what it holds (the fallback)
// until the stream has been silent past its bound; then the middleware
// answers 503. After SIGCONT it answers from the cache again.
func TestE2EPausedAuthdFallbackThen503(t *testing.T) {
	a := startAuthd(t, fastWatch, "")
	bound := 2 * time.Second // heartbeats every 200 ms; slack for a loaded machine
	c := watching(t, a.Addr, authd.CacheConfig{MaxTTL: time.Minute, MaxEntries: 100, MaxSilence: bound},
		authd.WithTimeout(300*time.Millisecond))
	api := protectedAPI(t, c)
	server := protectedServer(t, c)
	cachedToken := token(t, map[string]string{"scope": "read:orders", "sub": "cached@clients"})
	cached, fresh := "Bearer "+cachedToken, "Bearer "+token(t, map[string]string{"scope": "read:orders"})
	check := func(authorization string) codes.Code {
		_, err := server.Check(bearer(ctx(t), strings.TrimPrefix(authorization, "Bearer ")), &healthpb.HealthCheckRequest{})
		return status.Code(err)
	}
	if got := get(t, api.URL+"/orders", cached); got.status != http.StatusOK || check(cached) != codes.OK {
		t.Fatalf("%+v", got)
	}

	if err := a.Pause(); err != nil {
		t.Fatal(err)
	}
	defer a.Signal(syscall.SIGCONT)
	paused := time.Now()
	if got := get(t, api.URL+"/orders", cached); got.status != http.StatusOK || check(cached) != codes.OK {
		t.Fatalf("fallback: a cached token while authd is paused: %+v", got)
	}
	if got := get(t, api.URL+"/orders", fresh); got.status != http.StatusServiceUnavailable || check(fresh) != codes.Unavailable {
		t.Fatalf("a token authd never saw: %+v", got)
	}
	waitFor(t, 3*bound, "the cache silent", func() bool { return c.CacheState() == authd.CacheSilent })
	if silent := time.Since(paused); silent > bound+500*time.Millisecond {
		t.Fatalf("the cache answered %v after the stream fell silent, bound %v", silent, bound)
	}
	if got := get(t, api.URL+"/orders", cached); got.status != http.StatusServiceUnavailable || got.challenge != "" {
		t.Fatalf("past the bound, authd paused: %+v", got)
	}
	if code := check(cached); code != codes.Unavailable {
		t.Fatalf("grpc past the bound, authd paused: %v", code)
	}

	if err := a.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the cache answering again", func() bool { return c.CacheState() == authd.CacheAnswering })
	if got := get(t, api.URL+"/orders", cached); got.status != http.StatusOK || check(cached) != codes.OK {
		t.Fatalf("after SIGCONT: %+v", got)
	}
}

// authd restarts (same store): the stream reconnects with the cursor it
// last took, the cache answers again once caught up, and a revocation made
// after the restart is refused through it.
func TestE2EAuthdRestartResumesTheStreamFromItsCursor(t *testing.T) {
	a := startAuthd(t, fastWatch, "")
	c := watching(t, a.Addr, authd.CacheConfig{MaxTTL: time.Minute, MaxEntries: 100, MaxSilence: time.Second})
	revoker := newClient(t, a.Addr, authd.WithoutCache())
	before, after := session(t, revoker, "alice"), session(t, revoker, "bob")
	for _, s := range []*authd.NewSession{before, after} {
		if _, err := c.VerifyToken(ctx(t), s.AccessToken.Reveal()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := revoker.RevokeSession(ctx(t), before.Handle); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "the revocation heard", func() bool {
		_, err := c.VerifyToken(ctx(t), before.AccessToken.Reveal())
		return authd.ReasonOf(err) == authd.ReasonSessionRevoked
	})
	cursor := authd.WatchCursor(c)
	streams := len(authd.WatchResumedWith(c))

	a.Kill()
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "a new stream caught up", func() bool {
		return len(authd.WatchResumedWith(c)) > streams && c.CacheState() == authd.CacheAnswering
	})
	// Every stream opened since the kill asked from a cursor the client had
	// taken (the one read above, or a heartbeat's after it), never from
	// the start.
	resumed := authd.WatchResumedWith(c)[streams:]
	for _, r := range resumed {
		if r == "" {
			t.Fatalf("a stream after the restart started from nothing: %q (cursor before: %q)", resumed, cursor)
		}
	}

	if _, err := revoker.RevokeSession(ctx(t), after.Handle); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "refusal of a session revoked after the restart", func() bool {
		_, err := c.VerifyToken(ctx(t), after.AccessToken.Reveal())
		return authd.ReasonOf(err) == authd.ReasonSessionRevoked
	})
	if _, err := c.VerifyToken(ctx(t), before.AccessToken.Reveal()); authd.ReasonOf(err) != authd.ReasonSessionRevoked {
		t.Fatalf("the earlier revocation: %v", err)
	}
}
