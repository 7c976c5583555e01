package authd

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	authv1 "authd.dev/client/gen/auth/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// scripted is a fake authd whose answers the test scripts: each call takes
// the next code (OK past the end), or sleeps delay first.
type scripted struct {
	authv1.UnimplementedAuthServiceServer
	codes []codes.Code
	delay time.Duration
	calls atomic.Int32
}

func (s *scripted) next(ctx context.Context) error {
	n := int(s.calls.Add(1)) - 1
	if s.delay > 0 {
		select {
		case <-time.After(s.delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if n < len(s.codes) && s.codes[n] != codes.OK {
		return status.Error(s.codes[n], "scripted")
	}
	return nil
}

func (s *scripted) VerifyToken(ctx context.Context, _ *authv1.VerifyTokenRequest) (*authv1.VerifyTokenResponse, error) {
	if err := s.next(ctx); err != nil {
		return nil, err
	}
	return &authv1.VerifyTokenResponse{Subject: "u", ExpiresAt: timestamppb.New(time.Now().Add(time.Hour))}, nil
}

func (s *scripted) CreateSession(ctx context.Context, _ *authv1.CreateSessionRequest) (*authv1.CreateSessionResponse, error) {
	return nil, s.next(ctx)
}

func fakeClient(t *testing.T, fake *scripted, opts ...Option) *Client {
	t.Helper()
	listener := bufconn.Listen(1 << 20)
	server := grpc.NewServer()
	authv1.RegisterAuthServiceServer(server, fake)
	go func() { _ = server.Serve(listener) }()
	t.Cleanup(server.Stop)
	dial := grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return listener.DialContext(ctx) })
	opts = append([]Option{WithInsecure(), WithoutCache(), WithDialOptions(dial),
		WithRetry(RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond})}, opts...)
	c, err := New("passthrough:///fake", opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestUnavailableIsRetriedUpToMaxAttempts(t *testing.T) {
	fake := &scripted{codes: []codes.Code{codes.Unavailable, codes.Unavailable}}
	if _, err := fakeClient(t, fake).VerifyToken(context.Background(), "t"); err != nil {
		t.Fatal(err)
	}
	if n := fake.calls.Load(); n != 3 {
		t.Fatalf("%d calls, want 3", n)
	}
	fake = &scripted{codes: []codes.Code{codes.Unavailable, codes.Unavailable, codes.Unavailable, codes.OK}}
	_, err := fakeClient(t, fake).VerifyToken(context.Background(), "t")
	if status.Code(err) != codes.Unavailable || fake.calls.Load() != 3 {
		t.Fatalf("%v after %d calls", err, fake.calls.Load())
	}
}

func TestOtherCodesAndNonIdempotentCallsAreNotRetried(t *testing.T) {
	for _, code := range []codes.Code{codes.Unauthenticated, codes.ResourceExhausted, codes.Internal, codes.DeadlineExceeded} {
		fake := &scripted{codes: []codes.Code{code}}
		_, err := fakeClient(t, fake).VerifyToken(context.Background(), "t")
		if status.Code(err) != code || fake.calls.Load() != 1 {
			t.Errorf("%v: %v after %d calls", code, err, fake.calls.Load())
		}
	}
	fake := &scripted{codes: []codes.Code{codes.Unavailable}}
	_, err := fakeClient(t, fake).CreateSession(context.Background(), AuthorizationCode{Code: "c"}, "")
	if status.Code(err) != codes.Unavailable || fake.calls.Load() != 1 {
		t.Fatalf("CreateSession: %v after %d calls", err, fake.calls.Load())
	}
}

func TestEachAttemptHasTheDeadline(t *testing.T) {
	fake := &scripted{delay: time.Second}
	started := time.Now()
	_, err := fakeClient(t, fake, WithTimeout(100*time.Millisecond)).VerifyToken(context.Background(), "t")
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("%v", err)
	}
	if took := time.Since(started); took > 800*time.Millisecond {
		t.Fatalf("took %v", took)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	started = time.Now()
	_, err = fakeClient(t, fake, WithTimeout(5*time.Second)).VerifyToken(ctx, "t")
	if status.Code(err) != codes.DeadlineExceeded || time.Since(started) > 800*time.Millisecond {
		t.Fatalf("the caller's shorter deadline did not win: %v", err)
	}
}
