package redisstore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/keyfort/keyfort/internal/metrictest"
	"github.com/keyfort/keyfort/internal/redistest"
	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/redisstore"
	"github.com/keyfort/keyfort/session/sessiontest"
)

// storeURL is the test server's URL with the client name set (to find the store's connections in
// CLIENT LIST) and, when user is set, that user's credentials.
func storeURL(t *testing.T, name, user, pw string) string {
	t.Helper()
	u, err := url.Parse(redistest.URL())
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		u.User = url.UserPassword(user, pw)
	}
	q := u.Query()
	q.Set("client_name", name)
	u.RawQuery = q.Encode()
	return u.String()
}

func uniqueName(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// events subscribes to s's feed and returns the channel its events arrive on.
func events(t *testing.T, s *redisstore.Store) <-chan session.Revocation {
	t.Helper()
	ch := make(chan session.Revocation, 64)
	stop, err := s.SubscribeRevocations(context.Background(), func(r session.Revocation) { ch <- r })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return ch
}

func nextEvent(t *testing.T, ch <-chan session.Revocation, what string) session.Revocation {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(15 * time.Second):
		t.Fatalf("no event: %s", what)
		return session.Revocation{}
	}
}

// TestFeedAcrossStores: a revocation through one Store (its own client and connections, as on
// another replica) reaches the subscribers of another Store on the same Redis and prefix, and not
// those of another prefix.
func TestFeedAcrossStores(t *testing.T) {
	ctx := context.Background()
	_, prefix := redistest.Client(t)
	open := func(prefix string) *redisstore.Store {
		s, err := redisstore.New(ctx, redisstore.Config{URL: redistest.URL(), Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	a, b, other := open(prefix), open(prefix), open(prefix+"other:")
	onB, onOther := events(t, b), events(t, other)
	if err := a.CreateFamily(ctx, session.Family{ID: "fam-1", Current: "j1", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := a.RevokeFamily(ctx, "fam-1"); err != nil {
		t.Fatal(err)
	}
	if r := nextEvent(t, onB, "RevokeFamily on another store"); r != (session.Revocation{Family: "fam-1"}) {
		t.Errorf("got %+v", r)
	}
	if err := a.Tombstone(ctx, "tomb-1", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if r := nextEvent(t, onB, "Tombstone on another store"); r != (session.Revocation{Token: "tomb-1"}) {
		t.Errorf("got %+v", r)
	}
	// The tombstone is also there (the script wrote it, with its expiry).
	if ok, err := b.Tombstoned(ctx, "tomb-1"); err != nil || !ok {
		t.Errorf("tombstone: %v, %v", ok, err)
	}
	select {
	case r := <-onOther:
		t.Errorf("a store of another prefix heard %+v", r)
	default:
	}
}

// TestFeedResyncsAfterADroppedConnection: when Redis drops the subscription's connection (a
// restart, a failover, CLIENT KILL), go-redis makes it again and the subscriber gets a Resync (what
// was published meanwhile is lost); the feed then works again.
func TestFeedResyncsAfterADroppedConnection(t *testing.T) {
	ctx := context.Background()
	admin, prefix := redistest.Client(t)
	name := uniqueName("keyfort-feed-test-")
	s, err := redisstore.New(ctx, redisstore.Config{URL: storeURL(t, name, "", ""), Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ch := events(t, s)
	killed := killPubSub(t, admin, name)
	if killed == 0 {
		t.Fatal("the subscription's connection was not found in CLIENT LIST")
	}
	if r := nextEvent(t, ch, "Resync after the connection was killed"); r != (session.Revocation{Resync: true}) {
		t.Fatalf("got %+v, want a Resync", r)
	}
	if err := s.Tombstone(ctx, "after", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if r := nextEvent(t, ch, "an event after the reconnection"); r != (session.Revocation{Token: "after"}) {
		t.Errorf("got %+v", r)
	}
}

// TestFeedResyncsWhenTheSubscriberFallsBehind: a subscriber that falls behind by more events than
// the feed queues loses the excess, and knows it: it gets a Resync once it catches up, and the
// store counts the drops. (go-redis alone would hold each event for a minute on a full channel,
// then drop it with a log line the subscriber never sees.) The feed works as before afterwards.
func TestFeedResyncsWhenTheSubscriberFallsBehind(t *testing.T) {
	ctx := context.Background()
	admin, prefix := redistest.Client(t)
	reg := prometheus.NewRegistry()
	s, err := redisstore.New(ctx, redisstore.Config{URL: redistest.URL(), Prefix: prefix, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	gate := make(chan struct{})
	ch := make(chan session.Revocation, 1<<16)
	stop, err := s.SubscribeRevocations(ctx, func(r session.Revocation) {
		<-gate
		ch <- r
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	// Far more events than both queues hold (1024 each), published while the subscriber is stuck.
	const n = 8192
	pipe := admin.Pipeline()
	for i := range n {
		pipe.Publish(ctx, prefix+"revocations", fmt.Sprintf("t:k%d", i))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	// Wait until the store has dropped some: a subscriber let go earlier might keep up and
	// prove nothing.
	deadline := time.After(15 * time.Second)
	for metrictest.Counter(t, reg, "keyfort_session_store_feed_dropped_total", nil) == 0 {
		select {
		case <-deadline:
			t.Fatal("no event was dropped for a stuck subscriber")
		case <-time.After(10 * time.Millisecond):
		}
	}
	close(gate)
	seen := map[string]bool{}
	for resync := false; !resync; {
		r := nextEvent(t, ch, fmt.Sprintf("a Resync (after %d events)", len(seen)))
		resync = r.Resync
		if r.Token != "" {
			if seen[r.Token] {
				t.Fatalf("%s delivered twice", r.Token)
			}
			seen[r.Token] = true
		}
	}
	if len(seen) >= n {
		t.Errorf("all %d events delivered, yet some were counted as dropped", len(seen))
	}
	// The feed works again once the backlog is gone (an event published while it is not may be
	// dropped too: publish until one comes through).
	for i := 0; ; i++ {
		after := fmt.Sprintf("after-%d", i)
		if err := s.Tombstone(ctx, after, time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		r := nextEvent(t, ch, "an event after the subscriber caught up")
		for r.Token != after && waiting(ch, &r) {
		}
		if r.Token == after {
			break
		}
		if i == 50 {
			t.Fatal("the feed delivers nothing new after a subscriber caught up")
		}
	}
}

// waiting sets *r to the next event on ch and reports whether one came within a short while.
func waiting(ch <-chan session.Revocation, r *session.Revocation) bool {
	select {
	case *r = <-ch:
		return true
	case <-time.After(200 * time.Millisecond):
		return false
	}
}

// killPubSub kills the pub/sub connections of the client named name and returns how many.
func killPubSub(t *testing.T, admin *redis.Client, name string) int {
	t.Helper()
	ctx := context.Background()
	list, err := admin.Do(ctx, "CLIENT", "LIST", "TYPE", "pubsub").Text()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(list, "\n") {
		var id string
		named := false
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "id="); ok {
				id = v
			}
			if f == "name="+name {
				named = true
			}
		}
		if named && id != "" {
			if err := admin.Do(ctx, "CLIENT", "KILL", "ID", id).Err(); err != nil {
				t.Fatal(err)
			}
			n++
		}
	}
	return n
}

// TestFeedNeedsTheChannelPermission: a Redis user allowed the store's keys but not its channel (the
// Redis 7 default for a new ACL user) keeps a working store without the feed: revocations succeed,
// and subscribing fails naming the channel and the ACL rule to add. With the rule, the feed works.
func TestFeedNeedsTheChannelPermission(t *testing.T) {
	ctx := context.Background()
	admin, prefix := redistest.Client(t)
	const pw = "feed-test-password"
	user := redistest.ACLUser(t, admin, prefix+"nochan", prefix+"*", pw)
	s, err := redisstore.New(ctx, redisstore.Config{URL: storeURL(t, uniqueName("kf-"), user, pw), Prefix: prefix})
	if err != nil {
		t.Fatalf("a user without the channel: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.CreateFamily(ctx, session.Family{ID: "f", Current: "j1", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeFamily(ctx, "f"); err != nil {
		t.Errorf("RevokeFamily without the channel: %v", err)
	}
	if err := s.CutSubject(ctx, session.SubjectCut{Subject: "alice", Before: time.Now(), Until: time.Now().Add(time.Minute)}); err != nil {
		t.Errorf("CutSubject without the channel: %v", err)
	}
	if dead, err := s.TokenEnded(ctx, session.TokenRef{Key: "k", Subject: "alice", IssuedAt: time.Now().Add(-time.Minute)}); err != nil || !dead {
		t.Errorf("TokenEnded as a user of the prefix's keys: %v, %v", dead, err)
	}
	if _, out, err := s.Rotate(ctx, "f", "j1", "j2", time.Now(), 0); err != nil || out != session.Revoked {
		t.Errorf("Rotate of the revoked family: %v, %v", out, err)
	}
	if err := s.Tombstone(ctx, "k", time.Now().Add(time.Minute)); err != nil {
		t.Errorf("Tombstone without the channel: %v", err)
	}
	_, err = s.SubscribeRevocations(ctx, func(session.Revocation) {})
	if !errors.Is(err, session.ErrStoreUnavailable) || !strings.Contains(err.Error(), "&"+prefix+"revocations") {
		t.Errorf("subscribing without the channel: got %v", err)
	}

	allowed := redistest.ACLUser(t, admin, prefix+"chan", prefix+"*", pw, "&"+prefix+"revocations")
	s2, err := redisstore.New(ctx, redisstore.Config{URL: storeURL(t, uniqueName("kf-"), allowed, pw), Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s2.Close() })
	ch := events(t, s2)
	if err := s2.Tombstone(ctx, "k2", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if r := nextEvent(t, ch, "with the channel allowed"); r != (session.Revocation{Token: "k2"}) {
		t.Errorf("got %+v", r)
	}
}

// TestLogoutEndsSessionsOnOtherReplicasAtOnce: two replicas (a Manager and a Cache each, each with
// its own Store and connections) over one Redis; a session cached on replica B, with a lease,
// ends when replica A logs it out, though B's revalidation is an hour away and no call comes, and
// its lease is revoked.
func TestLogoutEndsSessionsOnOtherReplicasAtOnce(t *testing.T) {
	ctx := context.Background()
	_, prefix := redistest.Client(t)
	f := newReplicaFixture(t)
	keys, iss := f.keys, f.iss
	type replica struct {
		m *session.Manager
		c *session.Cache
	}
	newReplica := func() replica {
		store, err := redisstore.New(ctx, redisstore.Config{URL: redistest.URL(), Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = store.Close() })
		m := f.manager(t, store, nil)
		c, err := session.NewCache(session.CacheConfig{Authenticator: m, Store: store, Revalidate: time.Hour,
			Credentials: session.CredentialsFunc(func(ctx context.Context, role string, id provider.Sensitive) (provider.Credentials, session.Leaser, error) {
				cr, err := keys.Credentials(ctx, provider.CredentialRequest{Role: role, Identity: id})
				return cr, keys, err
			})})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return replica{m, c}
	}
	a, b := newReplica(), newReplica()
	toks, err := a.m.StartSession(ctx, session.StartRequest{IdP: "google", ExternalToken: iss.Sign(t, "k1", iss.Claims("alice", "client-1"), nil)})
	if err != nil {
		t.Fatal(err)
	}
	s, err := b.c.Get(ctx, toks.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	cr, err := s.Credentials(ctx, "db")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.m.Logout(ctx, toks.RefreshToken); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Done():
	case <-time.After(15 * time.Second):
		t.Fatal("the session on the other replica did not end")
	}
	for range 500 {
		if _, err := keys.Renew(ctx, cr.Lease); errors.Is(err, provider.ErrNotFound) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the session's lease was not revoked")
}

// TestSubjectCutEndsSessionsOnOtherReplicasAtOnce: replica A ends every session of a subject;
// replica B (its own Store and connections), a guarded service that accepts the identity
// provider's ID tokens directly, ends its cached session of one at once, with its lease, and
// refuses an ID token of the subject issued before, never seen; another subject's session stands.
func TestSubjectCutEndsSessionsOnOtherReplicasAtOnce(t *testing.T) {
	ctx := context.Background()
	_, prefix := redistest.Client(t)
	f := newReplicaFixture(t)
	open := func() *redisstore.Store {
		store, err := redisstore.New(ctx, redisstore.Config{URL: redistest.URL(), Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = store.Close() })
		return store
	}
	a := f.manager(t, open(), nil)
	b, err := session.NewCache(session.CacheConfig{Authenticator: session.IDTokens{IdP: "google", Verifier: f.google},
		Store: open(), Revalidate: time.Hour,
		Credentials: session.CredentialsFunc(func(ctx context.Context, role string, id provider.Sensitive) (provider.Credentials, session.Leaser, error) {
			cr, err := f.keys.Credentials(ctx, provider.CredentialRequest{Role: role, Identity: id})
			return cr, f.keys, err
		})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	subject, other := uniqueName("alice-"), uniqueName("bob-")
	id := func(sub, nonce string) string {
		claims := f.iss.Claims(sub, "client-1")
		claims["nonce"] = nonce
		return f.iss.Sign(t, "k1", claims, nil)
	}
	inUse, spare, others := id(subject, "in-use"), id(subject, "spare"), id(other, "in-use")
	s, err := b.Get(ctx, inUse)
	if err != nil {
		t.Fatal(err)
	}
	cr, err := s.Credentials(ctx, "db")
	if err != nil {
		t.Fatal(err)
	}
	sOther, err := b.Get(ctx, others)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.EndSubjectSessions(ctx, session.SubjectSelector{Subject: subject}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Done():
	case <-time.After(15 * time.Second):
		t.Fatal("the session of the cut subject on the other replica did not end")
	}
	if _, err := b.Get(ctx, spare); !errors.Is(err, session.ErrUnauthenticated) {
		t.Errorf("an ID token of the cut subject, never seen: got %v, want ErrUnauthenticated", err)
	}
	if got, err := b.Get(ctx, others); err != nil || got != sOther {
		t.Errorf("another subject's session: %v (the same: %v)", err, got == sOther)
	}
	for range 500 {
		if _, err := f.keys.Renew(ctx, cr.Lease); errors.Is(err, provider.ErrNotFound) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the session's lease was not revoked")
}

// TestUserWithoutINFOStarts: a Redis user denied INFO (a narrow ACL) starts a Store: the eviction
// check is skipped, not failed.
func TestUserWithoutINFOStarts(t *testing.T) {
	ctx := context.Background()
	admin, prefix := redistest.Client(t)
	const pw = "noinfo-test-password"
	user := redistest.ACLUser(t, admin, prefix+"noinfo", prefix+"*", pw, "-info")
	s, err := redisstore.New(ctx, redisstore.Config{URL: storeURL(t, uniqueName("kf-"), user, pw), Prefix: prefix})
	if err != nil {
		t.Fatalf("a user without INFO: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if s.Evicting() != "" {
		t.Errorf("Evicting() = %q with INFO denied", s.Evicting())
	}
	if err := s.CreateFamily(ctx, session.Family{ID: "f", Current: "j1", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Errorf("the store of a user without INFO: %v", err)
	}
}

// TestFeedStaysInItsDatabase: Redis publishes to every subscriber of the server, whatever database
// it selected, so two deployments sharing a server in databases of their own (same prefix) would
// take each other's revocations — a subject cut names its subject by an unkeyed hash, so one
// deployment's cut would end the other's sessions of that subject. The channel carries the
// database's number (other than 0): a revocation reaches the stores of its database only.
func TestFeedStaysInItsDatabase(t *testing.T) {
	ctx := context.Background()
	base, err := redis.ParseURL(redistest.URL())
	if err != nil {
		t.Fatal(err)
	}
	redistest.Client(t) // skips without Redis (fails in CI)
	prefix := uniqueName("kt:") + ":"
	open := func(db int) *redisstore.Store {
		opts := *base
		opts.DB = db
		c := redis.NewClient(&opts)
		t.Cleanup(func() {
			keys, _ := c.Keys(context.Background(), prefix+"*").Result()
			if len(keys) > 0 {
				_ = c.Del(context.Background(), keys...).Err()
			}
			_ = c.Close()
		})
		s, err := redisstore.New(ctx, redisstore.Config{Client: c, Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	sessiontest.RunFeedIsolation(t, open(1), open(1), open(2))
}
