package authd

import (
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"testing"
	"time"

	authv1 "authd.dev/client/gen/auth/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const heartbeatEvery = 2 * time.Second

// clock is a time tests move by hand.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func verified(sub, sid string, iat int64, lifetime time.Duration, now time.Time) *VerifiedToken {
	return &VerifiedToken{
		Issuer: "https://i/", Subject: sub, SessionID: sid,
		IssuedAt: time.Unix(iat, 0), ExpiresAt: now.Add(lifetime),
	}
}

func revocation(kind authv1.RevocationKind, value string, at int64, now time.Time) *authv1.Revocation {
	return &authv1.Revocation{
		Kind: kind, Issuer: "https://i/", Value: value,
		RevokedAt: &timestamppb.Timestamp{Seconds: at},
		ExpiresAt: timestamppb.New(now.Add(10 * time.Minute)),
	}
}

func sha(s string) string { d := sha256.Sum256([]byte(s)); return hex.EncodeToString(d[:]) }

func newTestCache(maxTTL time.Duration, maxEntries int) (*verifyCache, *clock) {
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	c := newVerifyCache(CacheConfig{MaxTTL: maxTTL, MaxEntries: maxEntries, MaxSilence: 6 * time.Second})
	c.now = clk.Now
	c.heartbeat(heartbeatEvery)
	return c, clk
}

func TestKeyDependsOnTokenAndScopeSetNotOrder(t *testing.T) {
	a := keyOf("t", []string{"read", "write"})
	if a != keyOf("t", []string{"write", "read", "write"}) {
		t.Error("order or repeats changed the key")
	}
	if a == keyOf("t", []string{"read"}) || a == keyOf("u", []string{"read", "write"}) {
		t.Error("a different scope set or token has the same key")
	}
	if keyOf("t", []string{"read"}) == keyOf("t\x00read", nil) {
		t.Error("parts run into each other")
	}
}

func TestForgedSignatureMissesTheGenuineEntry(t *testing.T) {
	c, clk := newTestCache(time.Minute, 10)
	c.insert(keyOf("h.p.genuine", nil), "h.p.genuine", verified("alice", "s", 1, time.Hour, clk.Now()))
	if c.get(keyOf("h.p.forged", nil)) != nil {
		t.Fatal("a token with the same payload and another signature hit the entry")
	}
}

func TestEntryLivesNoLongerThanMaxTTLNorTheToken(t *testing.T) {
	c, clk := newTestCache(30*time.Second, 10)
	long, short := keyOf("long", nil), keyOf("short", nil)
	c.insert(long, "long", verified("a", "", 1, time.Hour, clk.Now()))
	c.insert(short, "short", verified("a", "", 1, 10*time.Second, clk.Now()))
	clk.advance(9 * time.Second)
	c.heartbeat(heartbeatEvery)
	if c.get(short) == nil || c.get(long) == nil {
		t.Fatal("live entries missed")
	}
	clk.advance(2 * time.Second)
	c.heartbeat(heartbeatEvery)
	if c.get(short) != nil {
		t.Error("answered past the token's exp")
	}
	clk.advance(20 * time.Second)
	c.heartbeat(heartbeatEvery)
	if c.get(long) != nil {
		t.Error("answered past MaxTTL")
	}
}

func TestExpiredTokenIsNotCached(t *testing.T) {
	c, clk := newTestCache(time.Minute, 10)
	c.insert(keyOf("t", nil), "t", verified("a", "", 1, -5*time.Second, clk.Now()))
	if c.len() != 0 {
		t.Fatal("an expired token was cached")
	}
}

func TestOldestEntryGoesWhenFull(t *testing.T) {
	c, clk := newTestCache(time.Minute, 3)
	a, b, cc, d := keyOf("a", nil), keyOf("b", nil), keyOf("c", nil), keyOf("d", nil)
	live := verified("u", "", 1, time.Minute, clk.Now())
	c.insert(a, "t", live)
	c.insert(b, "t", live)
	c.insert(a, "t", live) // a again: its first place is stale
	c.insert(cc, "t", live)
	c.insert(d, "t", live)
	if c.len() != 3 {
		t.Fatalf("%d entries, bound 3", c.len())
	}
	if c.get(b) != nil {
		t.Error("b was the oldest live entry")
	}
	for _, k := range []cacheKey{a, cc, d} {
		if c.get(k) == nil {
			t.Error("a newer entry was evicted")
		}
	}
}

func TestNothingIsAnsweredBeforeTheFirstHeartbeat(t *testing.T) {
	c := newVerifyCache(DefaultCacheConfig())
	k := keyOf("t", nil)
	c.insert(k, "t", verified("a", "", 1, time.Minute, time.Now()))
	if c.state() != CacheSyncing || c.get(k) != nil {
		t.Fatal("answered before the first heartbeat")
	}
	c.heartbeat(heartbeatEvery)
	if c.state() != CacheAnswering || c.get(k) == nil {
		t.Fatal("not answering after the heartbeat")
	}
}

func TestASilentStreamStopsAnswersUntilItSpeaksAgain(t *testing.T) {
	c, clk := newTestCache(time.Hour, 10)
	k := keyOf("t", nil)
	c.insert(k, "t", verified("a", "", 1, time.Hour, clk.Now()))
	clk.advance(6 * time.Second)
	if c.get(k) == nil {
		t.Fatal("silent for MaxSilence: still live")
	}
	clk.advance(time.Millisecond)
	if c.state() != CacheSilent || c.get(k) != nil {
		t.Fatal("answered past MaxSilence")
	}
	c.heartbeat(heartbeatEvery)
	if c.get(k) == nil {
		t.Fatal("the entry was not kept")
	}
}

func TestALongerAnnouncedHeartbeatStretchesTheSilenceAllowed(t *testing.T) {
	c, clk := newTestCache(time.Hour, 10)
	c.heartbeat(5 * time.Second)
	clk.advance(14 * time.Second)
	if c.state() != CacheAnswering {
		t.Fatal(c.state())
	}
	clk.advance(2 * time.Second)
	if c.state() != CacheSilent {
		t.Fatal(c.state())
	}
}

func TestARevocationReceivedRefusesTheEntriesItNames(t *testing.T) {
	const iat = 1_700_000_000
	now := time.Unix(iat+100, 0)
	for _, r := range []*authv1.Revocation{
		revocation(authv1.RevocationKind_REVOCATION_KIND_SESSION_ID, "sid-1", iat+100, now),
		revocation(authv1.RevocationKind_REVOCATION_KIND_SUBJECT, "auth0|alice", iat+100, now),
		revocation(authv1.RevocationKind_REVOCATION_KIND_SIGNED_DIGEST, sha("h.p"), iat+100, now),
		revocation(authv1.RevocationKind_REVOCATION_KIND_TOKEN_HASH, sha("h.p.s"), iat+100, now),
	} {
		t.Run(r.GetKind().String(), func(t *testing.T) {
			c, clk := newTestCache(time.Hour, 10)
			alice, bob := keyOf("h.p.s", nil), keyOf("x.y.z", nil)
			c.insert(alice, "h.p.s", verified("auth0|alice", "sid-1", iat, time.Minute, clk.Now()))
			c.insert(bob, "x.y.z", verified("auth0|bob", "sid-2", iat, time.Minute, clk.Now()))
			if !c.revocation(r) {
				t.Fatal("not understood")
			}
			if c.get(alice) != nil {
				t.Error("the revoked token was answered")
			}
			if c.get(bob) == nil {
				t.Error("it names alice's token only")
			}
			// An answer authd gave before it learned the revocation.
			c.insert(alice, "h.p.s", verified("auth0|alice", "sid-1", iat, time.Minute, clk.Now()))
			if c.get(alice) != nil {
				t.Error("cached again")
			}
		})
	}
}

func TestASubjectRevocationRefusesTokensIssuedAtOrBeforeIt(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	r := newRevoked()
	r.add(revocation(authv1.RevocationKind_REVOCATION_KIND_SUBJECT, "alice", now.Unix(), now))
	for _, tc := range []struct {
		iat     int64
		refused bool
	}{{now.Unix() - 5, true}, {now.Unix(), true}, {now.Unix() + 1, false}} {
		id := identityOf("h.p.s", verified("alice", "", tc.iat, time.Hour, now))
		if r.refuses(&id) != tc.refused {
			t.Errorf("iat %d: refused %v", tc.iat, !tc.refused)
		}
	}
	noIAT := verified("alice", "", 0, time.Hour, now)
	noIAT.IssuedAt = time.Time{}
	if id := identityOf("h.p.s", noIAT); !r.refuses(&id) {
		t.Error("a token without iat cannot prove it is newer")
	}
	if id := identityOf("h.p.s", verified("bob", "", 1, time.Hour, now)); r.refuses(&id) {
		t.Error("bob refused")
	}
}

func TestARevocationFromAnotherIssuerDoesNotMatch(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	r := newRevoked()
	rev := revocation(authv1.RevocationKind_REVOCATION_KIND_SESSION_ID, "s1", now.Unix(), now)
	rev.Issuer = "https://other/"
	r.add(rev)
	if id := identityOf("h.p.s", verified("u", "s1", 1, time.Hour, now)); r.refuses(&id) {
		t.Fatal("a sid of another issuer matched")
	}
}

func TestANewStreamMustCatchUpBeforeTheCacheAnswersAgain(t *testing.T) {
	c, clk := newTestCache(time.Hour, 10)
	k := keyOf("h.p.s", nil)
	c.insert(k, "h.p.s", verified("a", "", 1, time.Minute, clk.Now()))
	c.streamOpened()
	c.revocation(revocation(authv1.RevocationKind_REVOCATION_KIND_SESSION_ID, "other", 0, clk.Now()))
	if c.state() != CacheSyncing || c.get(k) != nil {
		t.Fatal("answered during the replay")
	}
	c.heartbeat(heartbeatEvery)
	if c.get(k) == nil {
		t.Fatal("not answering after catching up")
	}
}

func TestWhatCannotBeMatchedEmptiesTheCacheAndExpiredOnesAreForgotten(t *testing.T) {
	c, clk := newTestCache(time.Hour, 10)
	k := keyOf("t", nil)
	c.insert(k, "t", verified("a", "", 1, time.Minute, clk.Now()))
	if c.revocation(revocation(authv1.RevocationKind_REVOCATION_KIND_SIGNED_DIGEST, "not-hex", 0, clk.Now())) {
		t.Fatal("a digest that is not hex was understood")
	}
	if c.get(k) != nil {
		t.Fatal("the cache was not emptied")
	}
	if c.revocation(revocation(authv1.RevocationKind_REVOCATION_KIND_UNSPECIFIED, "x", 0, clk.Now())) {
		t.Fatal("an unknown kind was understood")
	}
	expired := revocation(authv1.RevocationKind_REVOCATION_KIND_SESSION_ID, "s1", 0, clk.Now())
	expired.ExpiresAt = timestamppb.New(clk.Now().Add(-time.Second))
	c.revocation(expired)
	c.revocation(revocation(authv1.RevocationKind_REVOCATION_KIND_SESSION_ID, "s2", 0, clk.Now()))
	c.heartbeat(heartbeatEvery)
	if n := c.revoked.len(); n != 1 {
		t.Fatalf("%d revocations kept, want 1", n)
	}
}

func TestTurnedOffItNeitherKeepsNorAnswers(t *testing.T) {
	c, clk := newTestCache(time.Hour, 10)
	k := keyOf("t", nil)
	c.insert(k, "t", verified("a", "", 1, time.Minute, clk.Now()))
	c.turnOff()
	c.heartbeat(heartbeatEvery)
	if c.state() != CacheOff || c.get(k) != nil {
		t.Fatal("answers while off")
	}
	c.insert(k, "t", verified("a", "", 1, time.Minute, clk.Now()))
	if c.len() != 0 {
		t.Fatal("kept while off")
	}
	c.streamOpened()
	c.heartbeat(heartbeatEvery)
	if c.state() != CacheAnswering {
		t.Fatal("not on again once a stream caught up")
	}
}

func TestConcurrentUseIsSafe(t *testing.T) {
	c, clk := newTestCache(time.Hour, 50)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				tok := string(rune('a'+g)) + "." + string(rune('a'+i%64)) + ".s"
				k := keyOf(tok, []string{"read"})
				c.insert(k, tok, verified("u", "sid", 1, time.Minute, clk.Now()))
				c.get(k)
				switch i % 500 {
				case 0:
					c.revocation(revocation(authv1.RevocationKind_REVOCATION_KIND_SESSION_ID, "other", 0, clk.Now()))
				case 250:
					c.heartbeat(heartbeatEvery)
				}
			}
		}()
	}
	wg.Wait()
	if c.len() > 50 {
		t.Fatalf("%d entries, bound 50", c.len())
	}
}
