package session

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"hash/maphash"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"
)

// neverInterval is the revalidation interval of a Cache told never to revalidate while it follows a
// revocation feed: only a Resync (which sets checked to forcedCheck) makes a session due.
const neverInterval = time.Duration(1 << 62)

// forcedCheck is the checked time of a session a Resync made due: far enough in the past that
// now-forcedCheck reaches any interval, neverInterval included, without overflowing.
const forcedCheck = math.MinInt64 / 2

// recentWindow is how long a revocation is remembered for sessions whose creation was under way
// when its event came (see Cache.revokedWhileCreated); later, revalidation is the backstop.
const recentWindow = time.Minute

// famShard is one shard of the index of sessions by family, and of the revocations received in the
// last recentWindow (families and tokens alike, sharded by their ID).
type famShard struct {
	mu sync.Mutex
	// m holds a session of each family, more the others of families with several (a session per
	// access token in use: a few at most). Two maps keep the common case at one pointer.
	m      map[string]*Session
	more   map[string][]*Session
	recent map[recentKey]int64 // unix nanoseconds of receipt
	order  []recentKey         // receipt order, for pruning
	_      [8]byte             // keeps shards on separate cache lines
}

// recentKey names a revoked family (token false) or token (token true, id the tombstone key).
type recentKey struct {
	id    string
	token bool
}

// remember records a revocation and forgets those older than recentWindow; callers hold sh.mu.
func (sh *famShard) remember(k recentKey, now int64) {
	if sh.recent == nil {
		sh.recent = map[recentKey]int64{}
	}
	for len(sh.order) > 0 {
		first := sh.order[0]
		if t, ok := sh.recent[first]; ok && now-t < int64(recentWindow) {
			break
		}
		delete(sh.recent, first)
		sh.order = sh.order[1:]
	}
	if _, ok := sh.recent[k]; !ok {
		sh.order = append(sh.order, k)
	}
	sh.recent[k] = now
}

// revokedRecently reports whether k was revoked within recentWindow; callers hold sh.mu.
func (sh *famShard) revokedRecently(k recentKey, now int64) bool {
	t, ok := sh.recent[k]
	return ok && now-t < int64(recentWindow)
}

// subscribe follows the store's revocation feed. A feed that cannot be subscribed to leaves the
// cache on revalidation alone, with a warning: a Redis user without the channel's permission must
// not stop a service that worked before the feed existed.
func (c *Cache) subscribe(feed RevocationFeed, timeout time.Duration) {
	c.famSeed = maphash.MakeSeed()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	stop, err := feed.SubscribeRevocations(ctx, c.onRevocation)
	if err != nil {
		c.metrics.feed.Set(0)
		c.log.Warn("keyfort: the session store's revocation feed is unavailable; revocations by other replicas take effect at revalidation only",
			slog.Duration("revalidate", c.revalidateForLog()), slog.String("error", err.Error()))
		if c.revalidate == neverInterval {
			c.recheck = false
		}
		return
	}
	c.feedStop = stop
	c.metrics.feed.Set(1)
}

func (c *Cache) revalidateForLog() time.Duration {
	if c.revalidate == neverInterval || !c.recheck {
		return -1
	}
	return c.revalidate
}

// onRevocation ends the sessions an event concerns. It runs on the feed's goroutine (or the
// revoking caller's, for a MemoryStore) and does not block: the sessions' leases are revoked on the
// cache's deletion goroutines.
func (c *Cache) onRevocation(r Revocation) {
	if c.revokedKeys != nil && (r.Key != "" || r.Resync) {
		c.revokedKeys.onEvent(r) // first: a session created after the scan is checked against it
	}
	switch {
	case r.Resync:
		c.metrics.events.WithLabelValues("resync").Inc()
		c.resync()
	case r.Token != "":
		c.metrics.events.WithLabelValues("token").Inc()
		var k tokenKey
		// The length first: Decode writes as much as the input holds, and anyone who may publish
		// on the channel chooses the input.
		if base64.RawURLEncoding.DecodedLen(len(r.Token)) != len(k) {
			return
		}
		if n, err := base64.RawURLEncoding.Decode(k[:], []byte(r.Token)); err == nil && n == len(k) {
			sh := c.shardOf(r.Token)
			sh.mu.Lock()
			sh.remember(recentKey{r.Token, true}, time.Now().UnixNano())
			sh.mu.Unlock()
			c.endKey(k)
		}
	case r.Subject != "":
		c.metrics.events.WithLabelValues("subject").Inc()
		rc := recentCut{idp: r.SubjectIdP, before: r.SubjectBefore, at: time.Now().UnixNano()}
		// The length first: Decode writes as much as the input holds (see Token above).
		if len(r.Subject) != hex.EncodedLen(len(rc.sum)) {
			return
		}
		if _, err := hex.Decode(rc.sum[:], []byte(r.Subject)); err == nil {
			c.onCut(rc)
		}
	case r.Key != "":
		c.metrics.events.WithLabelValues("key").Inc()
		// Only sessions of Keyfort's own tokens: an identity provider's kid may be any string.
		if _, own := c.auth.(ownTokens); own {
			c.onCut(recentCut{kid: r.Key, at: time.Now().UnixNano()})
		}
	case r.Family != "":
		c.metrics.events.WithLabelValues("family").Inc()
		sh := c.shardOf(r.Family)
		sh.mu.Lock()
		sh.remember(recentKey{r.Family, false}, time.Now().UnixNano())
		var keys []tokenKey
		if s := sh.m[r.Family]; s != nil {
			keys = append(keys, s.key)
		}
		for _, s := range sh.more[r.Family] {
			keys = append(keys, s.key)
		}
		sh.mu.Unlock()
		for _, k := range keys {
			c.endKey(k)
		}
	}
}

// endKey ends the session of k as revoked: out of the hit path at once, then out of the cache
// (whose deletion callback revokes its leases).
func (c *Cache) endKey(k tokenKey) {
	if s := c.hotGet(k); s != nil {
		s.markRevoked()
		s.over.Store(true)
		c.hotDelete(k, s)
	}
	if e, ok := c.c.GetEntryQuietly(k); ok {
		e.Value.markRevoked()
	}
	c.c.Invalidate(k)
}

// recentCut is a subject cut, or a signing key's revocation, received on the feed, at (unix
// nanoseconds): sum is the SHA-256 of the cut's subject (SubjectHash, decoded); kid, when set, is
// the key revoked (and the rest unset).
type recentCut struct {
	sum    [sha256.Size]byte
	idp    string
	before time.Time
	kid    string
	at     int64
}

// covers reports whether the cut ends the session of p (its subject hashed only when the cheaper
// checks pass, and compared as bytes: no allocation per session scanned), or whether the revoked
// key signed its token (whatever its family).
func (rc *recentCut) covers(p *Principal) bool {
	if rc.kid != "" {
		kid, ok := kidOf(p.Identity)
		return ok && kid == rc.kid
	}
	return p.Family == "" && (rc.idp == "" || rc.idp == p.IdP) && p.IssuedAt.Before(rc.before) &&
		sha256.Sum256([]byte(p.Subject)) == rc.sum
}

// onCut remembers a subject cut for sessions being created (revokedWhileCreated) and has the cut
// scanner end the cached sessions it covers. The scan (of the whole cache: about half a second at a
// million sessions) runs on a goroutine of its own, so the feed's next events (a logout, a theft's
// revocation) are not held behind it; cuts that arrive while it runs are taken together in its
// next pass.
func (c *Cache) onCut(rc recentCut) {
	c.cutMu.Lock()
	c.cuts = slices.DeleteFunc(c.cuts, func(o recentCut) bool { return rc.at-o.at >= int64(recentWindow) })
	c.cuts = append(c.cuts, rc)
	c.pendingCuts = append(c.pendingCuts, rc)
	c.publishUnscanned()
	start := !c.scanning
	c.scanning = true
	c.cutMu.Unlock()
	if start {
		c.wg.Add(1)
		go c.scanCuts()
	}
}

// scanCuts ends the cached sessions the pending cuts cover, one pass over the cache for all the cuts
// pending when it starts, until none is left.
func (c *Cache) scanCuts() {
	defer c.wg.Done()
	for {
		c.cutMu.Lock()
		batch := c.pendingCuts
		c.pendingCuts, c.inflightCuts = nil, batch
		c.publishUnscanned()
		if len(batch) == 0 {
			c.scanning = false
			c.cutMu.Unlock()
			return
		}
		c.cutMu.Unlock()
		if cutScanHook != nil {
			cutScanHook()
		}
		var keys []tokenKey
		for k, s := range c.c.All() {
			for i := range batch {
				if batch[i].covers(&s.Principal) {
					keys = append(keys, k)
					break
				}
			}
		}
		for _, k := range keys {
			c.endKey(k)
		}
	}
}

// publishUnscanned gives the hit path the cuts whose scan has not finished (cutUnscanned); callers
// hold cutMu.
func (c *Cache) publishUnscanned() {
	if len(c.inflightCuts)+len(c.pendingCuts) == 0 {
		c.unscanned.Store(nil)
		return
	}
	u := slices.Concat(c.inflightCuts, c.pendingCuts)
	c.unscanned.Store(&u)
}

// cutUnscanned reports whether a cut the scanner has not reached yet covers s: a hit is refused as
// soon as the cut's event arrives, not when the scan gets to its session. One atomic load when no
// cut is being scanned.
func (c *Cache) cutUnscanned(s *Session) bool {
	u := c.unscanned.Load()
	if u == nil {
		return false
	}
	for i := range *u {
		if (*u)[i].covers(&s.Principal) {
			return true
		}
	}
	return false
}

// cutScanHook, when set (by tests), runs at the start of each pass of the cut scanner.
var cutScanHook func()

// cutWhileCreated reports whether a subject cut or key revocation received within recentWindow
// covers s.
func (c *Cache) cutWhileCreated(s *Session, now int64) bool {
	c.cutMu.Lock()
	defer c.cutMu.Unlock()
	for i := range c.cuts {
		if rc := &c.cuts[i]; now-rc.at < int64(recentWindow) && rc.covers(&s.Principal) {
			return true
		}
	}
	return false
}

// revokedWhileCreated reports whether an event revoked s (its family, its token or its subject)
// while it was being created: after its store checks, before it was in the cache and the family
// index, where the event's handler would not find it. It is called once s is in both, so an event
// received later finds it there: between the two, no revocation is missed.
func (c *Cache) revokedWhileCreated(s *Session) bool {
	if c.feedStop == nil {
		return false
	}
	now := time.Now().UnixNano()
	if c.cutWhileCreated(s, now) {
		return true
	}
	if f := s.Principal.Family; f != "" {
		sh := c.shardOf(f)
		sh.mu.Lock()
		hit := sh.revokedRecently(recentKey{f, false}, now)
		sh.mu.Unlock()
		if hit {
			return true
		}
	}
	tk := s.key.String()
	sh := c.shardOf(tk)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.revokedRecently(recentKey{tk, true}, now)
}

// resync makes every cached session due for revalidation at its next call: events were lost.
func (c *Cache) resync() {
	if !c.recheck {
		return
	}
	for i := range c.hot {
		sh := &c.hot[i]
		sh.mu.RLock()
		for _, s := range sh.m {
			s.checked.Store(forcedCheck)
		}
		sh.mu.RUnlock()
	}
}

func (c *Cache) shardOf(family string) *famShard {
	return &c.fams[maphash.String(c.famSeed, family)%hotShards]
}

// familyShard locks and returns the index shard of s's family, or nil when s is not indexed (no
// family, or no feed to follow).
func (c *Cache) familyShard(s *Session) *famShard {
	if c.feedStop == nil || s.Principal.Family == "" {
		return nil
	}
	sh := c.shardOf(s.Principal.Family)
	sh.mu.Lock()
	return sh
}

// indexFamily records s under its family, while the cache follows a feed.
func (c *Cache) indexFamily(s *Session) {
	sh := c.familyShard(s)
	if sh == nil {
		return
	}
	defer sh.mu.Unlock()
	f := s.Principal.Family
	if sh.m == nil {
		sh.m, sh.more = map[string]*Session{}, map[string][]*Session{}
	}
	if _, ok := sh.m[f]; ok {
		sh.more[f] = append(sh.more[f], s)
	} else {
		sh.m[f] = s
	}
}

// unindexFamily forgets s when it leaves the cache.
func (c *Cache) unindexFamily(s *Session) {
	sh := c.familyShard(s)
	if sh == nil {
		return
	}
	defer sh.mu.Unlock()
	f := s.Principal.Family
	rest := sh.more[f]
	if sh.m[f] == s {
		if len(rest) == 0 {
			delete(sh.m, f)
			return
		}
		sh.m[f], rest = rest[len(rest)-1], rest[:len(rest)-1]
	} else {
		rest = slices.DeleteFunc(rest, func(o *Session) bool { return o == s })
	}
	if len(rest) == 0 {
		delete(sh.more, f)
	} else {
		sh.more[f] = rest
	}
}

// markRevoked records that a revocation ends s, for the reason its end is counted under.
func (s *Session) markRevoked() {
	s.mu.Lock()
	s.revoked = true
	s.mu.Unlock()
}
