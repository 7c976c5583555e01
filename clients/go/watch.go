package authd

import (
	"context"
	"sync"
	"time"

	authv1 "authd.dev/client/gen/auth/v1"
	"google.golang.org/grpc/codes"
)

// The goroutine that keeps the cache's WatchRevocations stream open: it
// reconnects with back-off, resumes from the last cursor received, and hands
// every revocation and heartbeat to the cache. While authd refuses this
// caller the stream (PERMISSION_DENIED, or an authd without it) the cache
// is off and it asks again every minute.

const (
	firstBackoff = 100 * time.Millisecond
	maxBackoff   = 5 * time.Second
)

// refusedRetry is how often a refused caller asks again (a variable for tests).
var refusedRetry = time.Minute

// watchStatus is what the watch goroutine has done, for tests.
type watchStatus struct {
	mu      sync.Mutex
	cursor  string   // the last cursor taken
	resumed []string // the cursor each stream was opened with
}

func (c *Client) watch(ctx context.Context) {
	cursor := ""
	backoff := firstBackoff
	for ctx.Err() == nil {
		code, heard := c.watchOnce(ctx, &cursor)
		if heard {
			backoff = firstBackoff
		}
		if ctx.Err() != nil {
			return
		}
		wait := backoff
		if code == codes.PermissionDenied || code == codes.Unimplemented {
			if c.cache.turnOff() {
				c.cfg.logger.Warn("authd does not stream revocations to this client: running without the verification cache",
					"code", code.String())
			}
			wait = refusedRetry
		} else {
			backoff = min(2*backoff, maxBackoff)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// watchOnce holds one stream until it ends; it answers the stream's final
// code and whether any message came.
func (c *Client) watchOnce(ctx context.Context, cursor *string) (codes.Code, bool) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	token := ""
	if c.cfg.watchToken != nil {
		token = c.cfg.watchToken()
	}
	c.status.mu.Lock()
	c.status.resumed = append(c.status.resumed, *cursor)
	c.status.mu.Unlock()
	stream, err := c.rpc.WatchRevocations(withAuthorization(ctx, token), &authv1.WatchRevocationsRequest{Cursor: *cursor})
	if err != nil {
		return fromStatus(err).Code, false
	}
	// The headers say authd accepted the stream; a refusal has none.
	if md, err := stream.Header(); err == nil && md != nil {
		c.cache.streamOpened()
	}
	// A stream silent past twice the bound (a peer gone without a word) is
	// given up and opened again; the cache stopped answering long before.
	dog := time.AfterFunc(2*c.cache.silence(), cancel)
	defer dog.Stop()
	heard := false
	for {
		msg, err := stream.Recv()
		if err != nil {
			return fromStatus(err).Code, heard
		}
		heard = true
		dog.Reset(2 * c.cache.silence())
		var understood bool
		switch event := msg.GetEvent().(type) {
		case *authv1.WatchRevocationsResponse_Revocation:
			if !c.cache.revocation(event.Revocation) {
				c.cfg.logger.Warn("authd sent a revocation this client cannot match; emptying the cache",
					"kind", event.Revocation.GetKind().String())
			}
			understood = true
		case *authv1.WatchRevocationsResponse_Heartbeat:
			c.cache.heartbeat(time.Duration(event.Heartbeat.GetIntervalMs()) * time.Millisecond)
			understood = true
		}
		if understood && msg.GetCursor() != "" {
			*cursor = msg.GetCursor()
			c.status.mu.Lock()
			c.status.cursor = *cursor
			c.status.mu.Unlock()
		}
	}
}
