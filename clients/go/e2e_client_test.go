package authd_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authd "authd.dev/client"
	"authd.dev/client/internal/testenv"
	"google.golang.org/grpc/codes"
)

func TestE2EVerifyTokenAnswersAndReasons(t *testing.T) {
	a := startAuthd(t, "", "")
	c := newClient(t, a.Addr, authd.WithoutCache())
	good := token(t, map[string]string{"scope": "read:orders", "sub": "svc-1@clients", "jti": "j-1"})

	v, err := c.VerifyToken(ctx(t), good, "read:orders")
	if err != nil {
		t.Fatal(err)
	}
	if v.Subject != "svc-1@clients" || v.Issuer != issuer(t).URL || v.TokenID != "j-1" ||
		!v.HasScope("read:orders") || v.ExpiresAt.Before(time.Now()) || v.IssuedAt.IsZero() {
		t.Fatalf("%+v", v)
	}
	if _, err := c.VerifyToken(ctx(t), "Bearer "+good); err != nil {
		t.Fatalf("a leading Bearer: %v", err)
	}

	for _, tc := range []struct {
		name   string
		token  string
		scopes []string
		code   codes.Code
		reason authd.Reason
		meta   string
	}{
		{"missing scope", good, []string{"write:orders"}, codes.PermissionDenied, authd.ReasonInsufficientScope, "missing"},
		{"expired", token(t, map[string]string{"expires_in": "-120"}), nil, codes.Unauthenticated, authd.ReasonTokenExpired, "expired_at"},
		{"wrong audience", token(t, map[string]string{"audience": "https://other.test"}), nil, codes.Unauthenticated, authd.ReasonWrongAudience, "expected"},
		{"malformed", "not-a-jwt", nil, codes.Unauthenticated, authd.ReasonMalformedToken, ""},
		{"empty", "", nil, codes.InvalidArgument, authd.ReasonTokenMissing, ""},
		{"forged signature", good[:strings.LastIndexByte(good, '.')+1] + "AAAA", nil, codes.Unauthenticated, authd.ReasonBadSignature, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.VerifyToken(ctx(t), tc.token, tc.scopes...)
			var authErr *authd.AuthError
			if !errors.As(fmt.Errorf("wrapped: %w", err), &authErr) {
				t.Fatalf("not an AuthError: %v", err)
			}
			if authErr.Code != tc.code || authErr.Reason != tc.reason {
				t.Fatalf("%v", authErr)
			}
			if _, ok := authErr.Metadata[tc.meta]; tc.meta != "" && !ok {
				t.Fatalf("no metadata %q: %v", tc.meta, authErr.Metadata)
			}
		})
	}
}

func TestE2ESessionsRefreshProfilesAndRevocation(t *testing.T) {
	a := startAuthd(t, "", "")
	c := newClient(t, a.Addr, authd.WithoutCache())
	s := session(t, c, "alice")
	if s.Session.UserID != "auth0|alice" || s.Handle == "" || s.AccessToken == "" || s.Profile == nil || s.Profile.Name != "Alice Example" {
		t.Fatalf("%+v %+v", s.Session, s.Profile)
	}
	v, err := c.VerifyToken(ctx(t), s.AccessToken.Reveal())
	if err != nil || v.SessionID == "" {
		t.Fatalf("%v %+v", err, v)
	}

	refreshed, err := c.RefreshSession(ctx(t), s.Handle)
	if err != nil || refreshed.AccessToken == "" || refreshed.ExpiresAt.Before(time.Now()) {
		t.Fatalf("%v %+v", err, refreshed)
	}
	profile, err := c.GetProfile(ctx(t), refreshed.AccessToken.Reveal())
	if err != nil || profile.UserID != "auth0|alice" || profile.Email == "" {
		t.Fatalf("%v %+v", err, profile)
	}
	_, err = c.GetProfileByID(ctx(t), "auth0|alice", "")
	if authd.ReasonOf(err) != authd.ReasonCallerNotTrusted {
		t.Fatalf("by id without a service token: %v", err)
	}
	trusted := authd.Secret(token(t, map[string]string{"permissions": "profiles:read sessions:revoke"}))
	if p, err := c.GetProfileByID(ctx(t), "auth0|alice", trusted); err != nil || p.Name != "Alice Example" {
		t.Fatalf("%v %+v", err, p)
	}

	n, err := c.RevokeSession(ctx(t), s.Handle)
	if err != nil || n != 1 {
		t.Fatalf("%v, %d revoked", err, n)
	}
	if _, err := c.VerifyToken(ctx(t), s.AccessToken.Reveal()); authd.ReasonOf(err) != authd.ReasonSessionRevoked {
		t.Fatalf("a revoked session's token: %v", err)
	}
	if _, err := c.RefreshSession(ctx(t), s.Handle); err == nil {
		t.Fatal("a revoked session refreshed")
	}

	// Every session of a user, by a trusted service.
	session(t, c, "bob")
	session(t, c, "bob")
	if n, err := c.RevokeUserSessions(ctx(t), "auth0|bob", trusted); err != nil || n != 2 {
		t.Fatalf("%v, %d revoked", err, n)
	}

	// A session from tokens the caller already holds.
	held := passwordLogin(t, "bob")
	fromTokens, err := c.CreateSession(ctx(t), authd.ExistingTokens{
		RefreshToken: authd.Secret(held["refresh_token"].(string)),
		IDToken:      authd.Secret(held["id_token"].(string)),
		AccessToken:  authd.Secret(held["access_token"].(string)),
	}, "")
	if err != nil || fromTokens.Session.UserID != "auth0|bob" || fromTokens.Handle == "" {
		t.Fatalf("%v %+v", err, fromTokens)
	}

	// A raw refresh token is forwarded and rotated.
	raw := passwordLogin(t, "alice")["refresh_token"].(string)
	rotated, err := c.RefreshToken(ctx(t), authd.Secret(raw), "")
	if err != nil || rotated.RefreshToken == "" || rotated.RefreshToken.Reveal() == raw {
		t.Fatalf("%v %+v", err, rotated)
	}
}

func passwordLogin(t *testing.T, user string) map[string]any {
	t.Helper()
	res, err := http.PostForm(issuer(t).URL+"oauth/token", url.Values{
		"grant_type": {"password"}, "client_id": {testenv.ClientID}, "client_secret": {testenv.ClientSecret},
		"username": {user}, "password": {user + "-password"}, "scope": {"openid profile email offline_access"},
		"audience": {testenv.Audience},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	out := map[string]any{}
	if err := json.Unmarshal(body, &out); err != nil || res.StatusCode != 200 {
		t.Fatalf("%s: %s", res.Status, body)
	}
	return out
}

func TestE2EDeviceLoginPollLoop(t *testing.T) {
	a := startAuthd(t, "", "")
	c := newClient(t, a.Addr, authd.WithoutCache())
	if _, err := issuer(t).Control("device-config", map[string]any{"interval": 1}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = issuer(t).Control("device-config", map[string]any{"interval": 5}) })

	for _, tc := range []struct {
		action string
		want   error
	}{{"approve", nil}, {"deny", authd.ErrDeviceLoginDenied}} {
		t.Run(tc.action, func(t *testing.T) {
			login, err := c.StartDeviceLogin(ctx(t), authd.DeviceLoginRequest{Scopes: []string{"read:orders"}})
			if err != nil || login.UserCode == "" || login.VerificationURI == "" || login.Interval != time.Second {
				t.Fatalf("%v %+v", err, login)
			}
			// The user answers once the app has polled at least once.
			first, err := c.PollDeviceLogin(ctx(t), login.DeviceCode, login.Interval, "")
			if err != nil || (first.State != authd.DevicePending && first.State != authd.DeviceSlowDown) {
				t.Fatalf("%v %+v", err, first)
			}
			if _, err := issuer(t).Control("device/"+login.UserCode, map[string]any{"action": tc.action, "user": "alice"}); err != nil {
				t.Fatal(err)
			}
			s, err := c.AwaitDeviceLogin(ctx(t), login, "")
			if !errors.Is(err, tc.want) {
				t.Fatalf("%v, want %v", err, tc.want)
			}
			if tc.want == nil && (s.Session.UserID != "auth0|alice" || s.Handle == "") {
				t.Fatalf("%+v", s)
			}
		})
	}
}

func TestE2ERawWatchRevocationsStream(t *testing.T) {
	a := startAuthd(t, fastWatch, "")
	c := newClient(t, a.Addr, authd.WithoutCache())
	watcher := authd.Secret(token(t, map[string]string{"permissions": "revocations:watch"}))
	stream, err := c.WatchRevocations(ctx(t), "", watcher)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := stream.Recv()
	if err != nil || msg.GetHeartbeat() == nil || msg.GetCursor() == "" {
		t.Fatalf("%v %v", err, msg)
	}
	anonymous, err := c.WatchRevocations(ctx(t), "", "")
	if err == nil {
		_, err = anonymous.Recv()
	}
	if authd.ReasonOf(err) != authd.ReasonCallerNotTrusted {
		t.Fatalf("an anonymous watcher: %v", err)
	}
}

func TestE2ECacheIsOffForACallerNotAllowedToWatch(t *testing.T) {
	a := startAuthd(t, fastWatch, "")
	c := newClient(t, a.Addr) // the cache is on by default; no watch token
	waitFor(t, 10*time.Second, "the cache off", func() bool { return c.CacheState() == authd.CacheOff })
	if _, err := c.VerifyToken(ctx(t), token(t, nil)); err != nil {
		t.Fatalf("a client without a cache still verifies: %v", err)
	}
}

// A refused watcher asks again (every minute; here sooner), with the token
// its source gives at that moment: the cache comes on once it may watch.
func TestE2EARefusedWatcherAsksAgainWithAFreshToken(t *testing.T) {
	authd.SetRefusedRetry(100 * time.Millisecond)
	t.Cleanup(func() { authd.SetRefusedRetry(time.Minute) })
	a := startAuthd(t, fastWatch, "")
	watcher := token(t, map[string]string{"permissions": "revocations:watch"})
	var granted atomic.Bool
	c := newClient(t, a.Addr, authd.WithWatchToken(func() string {
		if granted.Load() {
			return watcher
		}
		return ""
	}))
	waitFor(t, 10*time.Second, "the cache off", func() bool { return c.CacheState() == authd.CacheOff })
	granted.Store(true)
	waitFor(t, 10*time.Second, "the cache answering", func() bool { return c.CacheState() == authd.CacheAnswering })
}
