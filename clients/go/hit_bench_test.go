package authd

import (
	"context"
	"strings"
	"testing"
	"time"
)

// BenchmarkAuthorizeCacheHit is the middleware's path for a repeated token.
func BenchmarkAuthorizeCacheHit(b *testing.B) {
	c, err := New("passthrough:///nowhere", WithInsecure())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	token := "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0." + strings.Repeat("x", 600) + ".sig" + strings.Repeat("s", 340)
	c.cache.heartbeat(time.Hour)
	c.cache.insert(keyOf(token, []string{"read:orders"}), token, &VerifiedToken{Subject: "u", Issuer: "i", ExpiresAt: time.Now().Add(time.Hour)})
	req := VerifyRequest{Token: "Bearer " + token, Scopes: []string{"read:orders"}}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if d := c.Authorize(ctx, req); d.Verdict != Allowed {
			b.Fatal(d.Verdict)
		}
	}
}
