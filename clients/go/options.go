package authd

import (
	"crypto/tls"
	"log/slog"
	"time"

	"google.golang.org/grpc"
)

// Option configures a [Client].
type Option func(*config)

type config struct {
	tls         *tls.Config
	insecure    bool
	timeout     time.Duration
	retry       RetryPolicy
	cache       *CacheConfig
	watchToken  func() string
	dialOptions []grpc.DialOption
	logger      *slog.Logger
}

func defaultConfig() config {
	cache := DefaultCacheConfig()
	return config{
		timeout: 2 * time.Second,
		retry:   DefaultRetryPolicy(),
		cache:   &cache,
		logger:  slog.Default(),
	}
}

// WithTLS connects to authd over TLS with cfg: its RootCAs for authd's
// certificate, ServerName when the target's host is not the certificate's
// name, and Certificates (or GetClientCertificate, to follow a rotating
// workload certificate) for mutual TLS. Without WithTLS or [WithInsecure]
// the client uses TLS with the system roots.
func WithTLS(cfg *tls.Config) Option {
	return func(c *config) { c.tls = cfg.Clone(); c.insecure = false }
}

// WithInsecure connects in plaintext: for authd on loopback, or behind a
// mesh that encrypts.
func WithInsecure() Option {
	return func(c *config) { c.insecure = true; c.tls = nil }
}

// WithTimeout sets the deadline of each attempt of each call (sent as
// grpc-timeout); a shorter deadline on the caller's context wins. Zero
// waits for the caller's context alone. Defaults to 2 s.
func WithTimeout(d time.Duration) Option {
	return func(c *config) { c.timeout = d }
}

// WithRetry sets the retries on UNAVAILABLE. Defaults to
// [DefaultRetryPolicy].
func WithRetry(p RetryPolicy) Option {
	return func(c *config) { c.retry = p }
}

// WithCache configures the revocation-aware cache of positive
// verifications, on by default with [DefaultCacheConfig]; a zero field
// takes its default. Read [CacheConfig] for its guarantee.
func WithCache(cfg CacheConfig) Option {
	def := DefaultCacheConfig()
	if cfg.MaxTTL <= 0 {
		cfg.MaxTTL = def.MaxTTL
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = def.MaxEntries
	}
	if cfg.MaxSilence <= 0 {
		cfg.MaxSilence = def.MaxSilence
	}
	return func(c *config) { c.cache = &cfg }
}

// WithoutCache turns the verification cache off: every verification asks
// authd, and no WatchRevocations stream is opened.
func WithoutCache() Option {
	return func(c *config) { c.cache = nil }
}

// WithWatchToken sets where the service access token sent on the cache's
// WatchRevocations stream comes from (authorization: Bearer), for a caller
// without a client certificate that authd's [[callers]] policy names.
// source is asked at every (re)connection, so a token renewed elsewhere
// keeps the cache on. authd's default grants the stream to tokens holding
// the revocations:watch permission. Without one the stream is asked for
// anonymously; refused, the client runs without a cache (logged once) and
// asks again every minute.
func WithWatchToken(source func() string) Option {
	return func(c *config) { c.watchToken = source }
}

// WithDialOptions adds grpc-go dial options (interceptors, keepalive, a
// custom dialer). Transport credentials set here replace WithTLS.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(c *config) { c.dialOptions = append(c.dialOptions, opts...) }
}

// WithLogger sets where the client logs (the cache turning off, a refused
// request). Defaults to slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.logger = l }
}

// RetryPolicy is how calls that failed with UNAVAILABLE are retried, with
// exponential backoff and jitter. No other code is ever retried (an
// UNAUTHENTICATED token stays bad), and only idempotent calls are:
// VerifyToken, GetProfile, RevokeSession, PollDeviceLogin — never
// CreateSession, RefreshSession or StartDeviceLogin, where a retry after a
// lost answer could rotate a refresh token twice.
type RetryPolicy struct {
	// MaxAttempts counts attempts in all, the first included; 1 disables
	// retries. Defaults to 3.
	MaxAttempts int
	// InitialBackoff is the wait before the first retry, doubled each time.
	// Defaults to 50 ms.
	InitialBackoff time.Duration
	// MaxBackoff is the longest wait between attempts. Defaults to 1 s.
	MaxBackoff time.Duration
}

// DefaultRetryPolicy is 3 attempts, 50 ms doubled up to 1 s.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{MaxAttempts: 3, InitialBackoff: 50 * time.Millisecond, MaxBackoff: time.Second}
}

// NoRetry makes one attempt only.
func NoRetry() RetryPolicy {
	p := DefaultRetryPolicy()
	p.MaxAttempts = 1
	return p
}

// backoff is the wait before retry number retry (1-based): exponential,
// capped, then jittered into its upper half so clients do not retry in step.
func (p RetryPolicy) backoff(retry int, random func() float64) time.Duration {
	wait := p.InitialBackoff
	for i := 1; i < retry && wait < p.MaxBackoff; i++ {
		wait *= 2
	}
	wait = min(wait, p.MaxBackoff)
	return wait/2 + time.Duration(float64(wait/2)*random())
}
