package authd

import (
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"sync"
	"time"

	authv1 "authd.dev/client/gen/auth/v1"
)

// CacheConfig configures the cache of positive verifications, on by default.
//
// The guarantee: a cached answer is given only while the client's
// WatchRevocations stream has been heard from within MaxSilence and no
// revocation received on it names the token, so a revoked token stops
// passing from the cache no later than the stream delivers its revocation,
// and never more than MaxSilence after the stream falls silent.
//
// A goroutine holds the stream (reconnecting with back-off, resuming from
// its cursor: nothing is missed across a reconnection). Until a stream's
// first heartbeat (each new stream first replays what may have been
// missed), and whenever it has been silent longer than MaxSilence, every
// verification goes to authd. A revocation matches an entry by the token's
// sid, its subject and iat (issued at or before a subject's revocation), the
// SHA-256 of its signing input (header.payload), or the SHA-256 of the whole
// token (older authd). Entries also end with the token's exp and MaxTTL;
// refusals are never cached. Entries are keyed by the SHA-256 of the whole
// token and the scope set, so a forged token (another signature on the same
// payload) never hits a genuine entry. A caller authd does not allow to
// watch (PERMISSION_DENIED), or an authd without WatchRevocations, runs with
// no cache (logged once; the stream is asked for again every minute).
type CacheConfig struct {
	// MaxTTL is the longest an answer is reused. Defaults to 30 s.
	MaxTTL time.Duration
	// MaxEntries is the most answers kept; the oldest goes first. Defaults
	// to 10,000 ([WithoutCache] turns the cache off).
	MaxEntries int
	// MaxSilence is the longest the revocation stream may stay silent (no
	// revocation, no heartbeat) while the cache answers; at least three of
	// the heartbeat intervals authd announces. Defaults to 6 s (authd's
	// heartbeat is 2 s by default).
	MaxSilence time.Duration
}

// DefaultCacheConfig is 30 s, 10,000 entries, 6 s of silence.
func DefaultCacheConfig() CacheConfig {
	return CacheConfig{MaxTTL: 30 * time.Second, MaxEntries: 10_000, MaxSilence: 6 * time.Second}
}

// CacheState says whether the cache answers now.
type CacheState int

const (
	// CacheOff: turned off, or authd does not let this caller watch
	// revocations.
	CacheOff CacheState = iota
	// CacheSyncing: waiting for the revocation stream's first heartbeat;
	// every call goes to authd.
	CacheSyncing
	// CacheAnswering: the stream is live; repeated tokens are answered from
	// memory.
	CacheAnswering
	// CacheSilent: the stream has been silent longer than MaxSilence; every
	// call goes to authd until it speaks again.
	CacheSilent
)

func (s CacheState) String() string {
	return [...]string{"Off", "Syncing", "Answering", "Silent"}[s]
}

// cacheKey is the SHA-256 of the token and the required scope set: the
// cache never holds a token.
type cacheKey [32]byte

// keyBuffers hold the bytes keyOf hashes, so a hit allocates nothing for it.
var keyBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// keyOf hashes token and the set of scopes (order and repeats do not
// matter), each part length-prefixed so parts cannot run into each other.
func keyOf(token string, scopes []string) cacheKey {
	buf := keyBuffers.Get().(*[]byte)
	b := (*buf)[:0]
	part := func(s string) {
		b = binary.BigEndian.AppendUint64(b, uint64(len(s)))
		b = append(b, s...)
	}
	part(token)
	switch len(scopes) {
	case 0:
	case 1:
		part(scopes[0])
	default:
		sorted := slices.Clone(scopes)
		slices.Sort(sorted)
		for _, s := range slices.Compact(sorted) {
			part(s)
		}
	}
	key := cacheKey(sha256.Sum256(b))
	if cap(b) <= 64<<10 {
		*buf = b
		keyBuffers.Put(buf)
	}
	return key
}

type cacheEntry struct {
	token *VerifiedToken
	id    identity
	until time.Time
	seq   uint64 // insertion number: a stale place in order is recognised
	// checked is the revokedVersion the entry was last checked against: a
	// hit with no revocation since skips the check.
	checked uint64
}

type orderItem struct {
	key cacheKey
	seq uint64
}

// watchState is what the revocation stream has said.
type watchState struct {
	off       bool
	synced    bool // the first heartbeat came: every revocation in force is known
	lastHeard time.Time
	silence   time.Duration // MaxSilence, or three announced heartbeats if longer
}

func (w *watchState) state(now time.Time) CacheState {
	switch {
	case w.off:
		return CacheOff
	case !w.synced:
		return CacheSyncing
	case !w.lastHeard.IsZero() && now.Sub(w.lastHeard) <= w.silence:
		return CacheAnswering
	default:
		return CacheSilent
	}
}

// verifyCache is the cache; one per Client, safe for concurrent use.
type verifyCache struct {
	cfg CacheConfig
	now func() time.Time // time.Now; tests move it

	mu             sync.Mutex
	entries        map[cacheKey]*cacheEntry
	order          []orderItem // insertion order, for eviction when full
	nextSeq        uint64
	revoked        revoked
	revokedVersion uint64 // counts revocations added (pruning only removes)
	watch          watchState
}

func newVerifyCache(cfg CacheConfig) *verifyCache {
	return &verifyCache{
		cfg:     cfg,
		now:     time.Now,
		entries: map[cacheKey]*cacheEntry{},
		revoked: newRevoked(),
		watch:   watchState{off: cfg.MaxEntries <= 0, silence: cfg.MaxSilence},
	}
}

func (c *verifyCache) state() CacheState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.watch.state(c.now())
}

// get returns a copy of the cached answer for key, while the stream is live
// and no revocation names it.
func (c *verifyCache) get(key cacheKey) *VerifiedToken {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.watch.state(now) != CacheAnswering {
		return nil
	}
	e, ok := c.entries[key]
	if !ok {
		return nil
	}
	if now.Before(e.until) && (e.checked == c.revokedVersion || !c.revoked.refuses(&e.id)) {
		e.checked = c.revokedVersion
		hit := *e.token
		return &hit
	}
	delete(c.entries, key)
	return nil
}

// insert keeps authd's answer for token (without "Bearer "), unless a
// revocation already names it.
func (c *verifyCache) insert(key cacheKey, token string, v *VerifiedToken) {
	now := c.now()
	ttl := min(v.ExpiresAt.Sub(now), c.cfg.MaxTTL)
	if ttl <= 0 || c.cfg.MaxEntries <= 0 {
		return
	}
	id := identityOf(token, v)
	stored := *v
	c.mu.Lock()
	defer c.mu.Unlock()
	// An answer authd gave before a revocation reached it may come back
	// after the revocation reached this client.
	if c.watch.off || c.revoked.refuses(&id) {
		return
	}
	for len(c.entries) >= c.cfg.MaxEntries && len(c.order) > 0 {
		old := c.order[0]
		c.order = c.order[1:]
		if e, ok := c.entries[old.key]; ok && e.seq == old.seq {
			delete(c.entries, old.key)
		}
	}
	seq := c.nextSeq
	c.nextSeq++
	c.order = append(c.order, orderItem{key, seq})
	// order may hold places of entries removed on expiry or revocation;
	// keep it from outgrowing the map (and its array from growing forever).
	if len(c.order) > 2*c.cfg.MaxEntries {
		c.order = slices.DeleteFunc(slices.Clone(c.order), func(o orderItem) bool {
			e, ok := c.entries[o.key]
			return !ok || e.seq != o.seq
		})
	}
	c.entries[key] = &cacheEntry{token: &stored, id: id, until: now.Add(ttl), seq: seq, checked: c.revokedVersion}
}

// === what the revocation stream says ===

// revocation arrived: from now on no entry it names is answered. false when
// it could not be matched (the cache was emptied to stay correct).
func (c *verifyCache) revocation(r *authv1.Revocation) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.revokedVersion++
	understood := c.revoked.add(r)
	if !understood {
		clear(c.entries)
		c.order = nil
	}
	c.watch.lastHeard = c.now()
	return understood
}

// streamOpened: a new stream replays what this client may have missed, so
// nothing is answered before its first heartbeat. A cache turned off
// because authd refused the stream is on again.
func (c *verifyCache) streamOpened() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.watch.synced = false
	c.watch.off = c.cfg.MaxEntries <= 0
}

// heartbeat arrived: every revocation so far is known.
func (c *verifyCache) heartbeat(interval time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	c.watch.synced = true
	c.watch.lastHeard = now
	c.watch.silence = max(c.cfg.MaxSilence, 3*interval)
	c.revoked.prune(now)
}

// turnOff: authd will not stream revocations to this caller. true when it
// was on.
func (c *verifyCache) turnOff() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	wasOn := !c.watch.off
	c.watch.off = true
	clear(c.entries)
	c.order = nil
	return wasOn
}

// silence is the silence allowed now.
func (c *verifyCache) silence() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.watch.silence
}

func (c *verifyCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
