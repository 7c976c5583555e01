package authd

import (
	"context"
	"io"
	"sync"
	"time"

	authv1 "authd.dev/client/gen/auth/v1"
	"google.golang.org/grpc"
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

// WatchRevocations opens a raw WatchRevocations stream from cursor (empty:
// every revocation in force), with serviceToken as authorization (empty:
// none). The cache holds its own stream; this is for callers that keep
// their own revocation state.
func (c *Client) WatchRevocations(ctx context.Context, cursor string, serviceToken Secret) (*RevocationStream, error) {
	stream, err := c.rpc.WatchRevocations(withAuthorization(ctx, serviceToken.Reveal()), &authv1.WatchRevocationsRequest{Cursor: cursor})
	if err != nil {
		return nil, fromStatus(err)
	}
	return &RevocationStream{stream: stream}, nil
}

// RevocationStream is a WatchRevocations stream whose errors are
// [*AuthError]s.
type RevocationStream struct {
	stream grpc.ServerStreamingClient[authv1.WatchRevocationsResponse]
}

// Recv returns the next message: a revocation or a heartbeat, each with the
// cursor to resume from. io.EOF when authd ended the stream.
func (s *RevocationStream) Recv() (*authv1.WatchRevocationsResponse, error) {
	msg, err := s.stream.Recv()
	if err != nil && err != io.EOF {
		return nil, fromStatus(err)
	}
	return msg, err
}
