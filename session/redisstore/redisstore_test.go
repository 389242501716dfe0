package redisstore_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/keyfort/keyfort/internal/metrictest"
	"github.com/keyfort/keyfort/internal/redistest"
	"github.com/keyfort/keyfort/internal/testpki"
	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/providers/memory"
	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/oidc"
	"github.com/keyfort/keyfort/session/oidc/oidctest"
	"github.com/keyfort/keyfort/session/redisstore"
	"github.com/keyfort/keyfort/session/sessiontest"
	"github.com/keyfort/keyfort/session/token"
)

func TestStoreContract(t *testing.T) {
	sessiontest.RunStoreTests(t, func(t *testing.T) session.Store {
		rdb, prefix := redistest.Client(t)
		s, err := redisstore.New(context.Background(), redisstore.Config{Client: rdb, Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestTwoReplicasAgree runs two Managers (two service instances) over one Redis and one key provider:
// a refresh rotated on one is spent on the other, reuse detected on one revokes on both, and a logout
// on one ends the session on the other.
func TestTwoReplicasAgree(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := redistest.Client(t)
	f := newReplicaFixture(t)
	iss := f.iss
	replica := func() *session.Manager {
		store, err := redisstore.New(ctx, redisstore.Config{Client: rdb, Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = store.Close() })
		return f.manager(t, store, func(c *session.Config) { c.RefreshGrace = -1 })
	}
	a, b := replica(), replica()
	start := func(sub string) session.Tokens {
		toks, err := a.StartSession(ctx, session.StartRequest{IdP: "google", ExternalToken: iss.Sign(t, "k1", iss.Claims(sub, "client-1"), nil)})
		if err != nil {
			t.Fatal(err)
		}
		return toks
	}

	t1 := start("alice")
	t2, err := b.RefreshSession(ctx, t1.RefreshToken)
	if err != nil {
		t.Fatalf("refresh on the other replica: %v", err)
	}
	if _, err := a.RefreshSession(ctx, t1.RefreshToken); !errors.Is(err, session.ErrRefreshReuse) {
		t.Fatalf("the spent token on the first replica: got %v, want ErrRefreshReuse", err)
	}
	if _, err := b.RefreshSession(ctx, t2.RefreshToken); !errors.Is(err, session.ErrUnauthenticated) {
		t.Errorf("theft detected on one replica must revoke on the other: got %v", err)
	}
	if _, err := b.VerifyAccess(ctx, t2.AccessToken); !errors.Is(err, session.ErrUnauthenticated) {
		t.Errorf("access on the other replica after theft: got %v", err)
	}

	bobID := iss.Sign(t, "k1", iss.Claims("bob", "client-1"), nil)
	u, err := a.StartSession(ctx, session.StartRequest{IdP: "google", ExternalToken: bobID})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Logout(ctx, u.AccessToken); err != nil {
		t.Fatal(err)
	}
	if _, err := a.VerifyAccess(ctx, u.AccessToken); !errors.Is(err, session.ErrUnauthenticated) {
		t.Errorf("logout on one replica, access on the other: got %v", err)
	}
	if _, err := a.StartSession(ctx, session.StartRequest{IdP: "google", ExternalToken: bobID}); !errors.Is(err, session.ErrUnauthenticated) {
		t.Errorf("logout on one replica, the same ID token starts a session on the other: got %v", err)
	}
}

// TestStoresShareTheHashKey: every Store on one Redis and prefix reads the key the first one made,
// even when many start at once; another prefix is another key.
func TestStoresShareTheHashKey(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := redistest.Client(t)
	const n = 8
	keys := make(chan string, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			s, err := redisstore.New(ctx, redisstore.Config{Client: rdb, Prefix: prefix})
			if err != nil {
				t.Error(err)
				return
			}
			keys <- string(s.HashKey())
			_ = s.Close()
		})
	}
	wg.Wait()
	close(keys)
	first := <-keys
	if len(first) < 32 {
		t.Fatalf("hash key of %d bytes", len(first))
	}
	for k := range keys {
		if k != first {
			t.Fatal("two Stores on one Redis and prefix hold different hash keys")
		}
	}
	other, err := redisstore.New(ctx, redisstore.Config{Client: rdb, Prefix: prefix + "other:"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Close() })
	if string(other.HashKey()) == first {
		t.Error("another prefix shares the hash key")
	}
	// A damaged key fails the start loudly, naming it.
	if err := rdb.Set(ctx, prefix+"bad:hash-key", "short", 0).Err(); err != nil {
		t.Fatal(err)
	}
	_, err = redisstore.New(ctx, redisstore.Config{Client: rdb, Prefix: prefix + "bad:"})
	if !errors.Is(err, provider.ErrInvalidConfig) || !strings.Contains(err.Error(), prefix+"bad:hash-key") {
		t.Errorf("a short hash key: got %v", err)
	}
}

func TestUnreachableRedisFailsLoudly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := redisstore.New(ctx, redisstore.Config{URL: "redis://127.0.0.1:1/0"})
	if !errors.Is(err, session.ErrStoreUnavailable) {
		t.Errorf("got %v, want ErrStoreUnavailable", err)
	}
}

// TestURLErrorsDoNotRepeatThePassword: net/url repeats a URL it cannot parse, password and all; the
// store's error says what is wrong and leaves the URL out.
func TestURLErrorsDoNotRepeatThePassword(t *testing.T) {
	for _, u := range []string{
		"redis://keyfort:s3cret-pw@ho st:6379/0",
		"redis://:s3cret-pw@127.0.0.1:port/0",
		"redis://:s3cret-pw@127.0.0.1:6379/x",
		"http://:s3cret-pw@127.0.0.1:6379",
	} {
		_, err := redisstore.New(context.Background(), redisstore.Config{URL: u})
		if err == nil {
			t.Fatalf("%d: no error", len(u))
		}
		if !errors.Is(err, provider.ErrInvalidConfig) {
			t.Errorf("got %v, want ErrInvalidConfig", err)
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("the error repeats the password: %v", err)
		}
		if !strings.Contains(err.Error(), "url") {
			t.Errorf("the error does not say it is about the URL: %v", err)
		}
	}
}

// TestCredentialsFromAProvider serves the Redis password from a secret provider: the store logs in
// with it, a rotation (new password in Redis and in the provider) reaches the connections opened
// after it without a new store, and a wrong or unavailable password fails closed with an error that
// does not repeat it.
func TestCredentialsFromAProvider(t *testing.T) {
	ctx := context.Background()
	admin, prefix := redistest.Client(t)
	mem, err := memory.New(ctx, memory.Config{Secrets: map[string]string{"redis": "first-Pa55word"}})
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	user := redistest.ACLUser(t, admin, prefix, prefix+"*", "first-Pa55word")
	creds := func(ctx context.Context) (string, string, error) {
		s, err := mem.Secret(ctx, "redis")
		if err != nil {
			return "", "", err
		}
		return user, s.Value.RevealString(), nil
	}
	addr := admin.Options().Addr
	st, err := redisstore.New(ctx, redisstore.Config{URL: "redis://" + addr + "/0", Prefix: prefix, Credentials: creds})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	fam := session.Family{ID: "f1", SessionID: "s1", Subject: "alice", Current: "r1", ExpiresAt: time.Now().Add(time.Hour)}
	if err := st.CreateFamily(ctx, fam); err != nil {
		t.Fatalf("as the ACL user: %v", err)
	}
	if list, err := admin.Do(ctx, "CLIENT", "LIST").Text(); err != nil || !strings.Contains(list, "user="+user) {
		t.Fatalf("the store is not connected as %s: %q, %v", user, list, err)
	}

	// Rotate: Redis first, then the provider; drop the user's connections so that the store opens new ones.
	if err := admin.Do(ctx, "ACL", "SETUSER", user, "resetpass", ">second-Pa55word").Err(); err != nil {
		t.Fatal(err)
	}
	mem.SetSecret("redis", []byte("second-Pa55word"))
	if err := admin.Do(ctx, "CLIENT", "KILL", "USER", user).Err(); err != nil {
		t.Fatal(err)
	}
	var got session.Family
	for range 3 { // a command on a connection killed under it fails once; the pool then redials
		if got, err = st.Family(ctx, "f1"); err == nil {
			break
		}
	}
	if err != nil || got.Subject != "alice" {
		t.Fatalf("after the rotation: %+v, %v", got, err)
	}

	// A wrong password and an unavailable secret both fail closed, naming no password.
	mem.SetSecret("redis", []byte("wrong-Pa55word"))
	_, err = redisstore.New(ctx, redisstore.Config{URL: "redis://" + addr + "/0", Prefix: prefix, Credentials: creds})
	if !errors.Is(err, session.ErrStoreUnavailable) {
		t.Errorf("wrong password: got %v, want ErrStoreUnavailable", err)
	}
	if err != nil && strings.Contains(err.Error(), "Pa55word") {
		t.Errorf("the error repeats a password: %v", err)
	}
	_, err = redisstore.New(ctx, redisstore.Config{URL: "redis://" + addr + "/0", Prefix: prefix,
		Credentials: func(context.Context) (string, string, error) {
			return "", "", provider.NewError(provider.ErrUnavailable, "redis", errors.New("backend down"))
		}})
	if !errors.Is(err, session.ErrStoreUnavailable) {
		t.Errorf("secret unavailable: got %v, want ErrStoreUnavailable", err)
	}
}

// TestTLS connects over TLS to a Redis server whose certificate comes from a private CA and which
// requires client certificates: without the CA the server is not trusted, without a client
// certificate it refuses the connection, with both the store works; the errors name files, not
// their content.
func TestTLS(t *testing.T) {
	ca := testpki.New(t)
	addr := redistest.StartTLS(t, ca, true)
	ctx := context.Background()
	url := "rediss://" + addr + "/0"
	clientCert, clientKey := ca.Client(t)

	_, err := redisstore.New(ctx, redisstore.Config{URL: url, TLS: redisstore.TLS{CertFile: clientCert, KeyFile: clientKey}})
	if !errors.Is(err, session.ErrStoreUnavailable) || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("without the private CA: got %v, want an untrusted certificate", err)
	}
	_, err = redisstore.New(ctx, redisstore.Config{URL: url, TLS: redisstore.TLS{CAFile: ca.CertFile}})
	if !errors.Is(err, session.ErrStoreUnavailable) {
		t.Errorf("without a client certificate: got %v, want ErrStoreUnavailable", err)
	}
	st, err := redisstore.New(ctx, redisstore.Config{URL: url, Prefix: "keyfort-tls-test:",
		TLS: redisstore.TLS{CAFile: ca.CertFile, CertFile: clientCert, KeyFile: clientKey}})
	if err != nil {
		t.Fatalf("with the CA and a client certificate: %v", err)
	}
	defer st.Close()
	fam := session.Family{ID: "f1", SessionID: "s1", Subject: "alice", Current: "r1", ExpiresAt: time.Now().Add(time.Hour)}
	if err := st.CreateFamily(ctx, fam); err != nil {
		t.Fatal(err)
	}
	if got, err := st.Family(ctx, "f1"); err != nil || got.Subject != "alice" {
		t.Errorf("over TLS: %+v, %v", got, err)
	}

	for _, tc := range []struct {
		name string
		url  string
		tls  redisstore.TLS
		want string
	}{
		{"plaintext URL", "redis://" + addr + "/0", redisstore.TLS{CAFile: ca.CertFile}, "rediss://"},
		{"missing CA file", url, redisstore.TLS{CAFile: ca.CertFile + ".missing"}, ".missing"},
		{"not a CA file", url, redisstore.TLS{CAFile: clientKey}, "no PEM certificate"},
		{"key without certificate", url, redisstore.TLS{CAFile: ca.CertFile, KeyFile: clientKey}, "go together"},
	} {
		_, err := redisstore.New(ctx, redisstore.Config{URL: tc.url, TLS: tc.tls})
		if !errors.Is(err, provider.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want ErrInvalidConfig mentioning %q", tc.name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "PRIVATE KEY") {
			t.Errorf("%s: the error quotes a key file: %v", tc.name, err)
		}
	}
}

// TestMetrics: with a Registerer the store counts its commands by name and times its round trips;
// two stores share one registry's collectors.
func TestMetrics(t *testing.T) {
	ctx := context.Background()
	_, prefix := redistest.Client(t)
	reg := prometheus.NewRegistry()
	open := func() *redisstore.Store {
		s, err := redisstore.New(ctx, redisstore.Config{URL: redistest.URL(), Prefix: prefix, Registerer: reg})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	s := open()
	open() // a second store on the registry shares its collectors
	before := commandCount(t, reg, "hgetall")
	_ = s.CreateFamily(ctx, session.Family{ID: "m1", Current: "a", ExpiresAt: time.Now().Add(time.Minute)})
	if _, err := s.Family(ctx, "m1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Family(ctx, "m2"); err != nil {
		t.Fatal(err)
	}
	if got := commandCount(t, reg, "hgetall") - before; got != 2 {
		t.Errorf("hgetall counted %v times, want 2", got)
	}
	if got := commandCount(t, reg, "evalsha"); got < 1 {
		t.Errorf("evalsha (in a pipeline) counted %v times", got)
	}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "keyfort_session_store_round_trip_seconds" && mf.GetMetric()[0].GetHistogram().GetSampleCount() < 3 {
			t.Errorf("round trips: %v", mf)
		}
	}

	// A command Redis refuses (an ACL user allowed the hash key only) is a counted error; a missing
	// family is not.
	rdb, _ := redistest.Client(t)
	user := redistest.ACLUser(t, rdb, prefix+"metrics", prefix+"hash-key", "metrics-pw")
	u, _ := url.Parse(redistest.URL())
	u.User = url.UserPassword(user, "metrics-pw")
	errReg := prometheus.NewRegistry()
	limited, err := redisstore.New(ctx, redisstore.Config{URL: u.String(), Prefix: prefix, Registerer: errReg})
	if err != nil {
		t.Fatal(err)
	}
	defer limited.Close()
	if _, err := limited.Family(ctx, "m1"); !errors.Is(err, session.ErrStoreUnavailable) {
		t.Fatalf("a family outside the user's keys: got %v", err)
	}
	if got := counterValue(t, errReg, "keyfort_session_store_command_errors_total", "hgetall"); got != 1 {
		t.Errorf("refused hgetall counted %v times as an error, want 1", got)
	}
	if got := counterValue(t, reg, "keyfort_session_store_command_errors_total", "hgetall"); got != 0 {
		t.Errorf("a missing family counted as an error (%v)", got)
	}
	for _, handshake := range []string{"hello", "client", "auth"} {
		if got := counterValue(t, errReg, "keyfort_session_store_commands_total", handshake); got != 0 {
			t.Errorf("the connection handshake's %s counted as the store's (%v)", handshake, got)
		}
	}
}

func commandCount(t *testing.T, reg *prometheus.Registry, command string) float64 {
	t.Helper()
	return counterValue(t, reg, "keyfort_session_store_commands_total", command)
}

// counterValue is the value of counter name with label command in reg (0 when absent).
func counterValue(t *testing.T, reg *prometheus.Registry, name, command string) float64 {
	t.Helper()
	return metrictest.Counter(t, reg, name, map[string]string{"command": command})
}

// replicaFixture is what replicas share besides their store: a memory provider serving the session
// key set and leased "db" credentials, and an OpenID issuer the Managers trust as "google".
type replicaFixture struct {
	keys   *provider.Client
	iss    *oidctest.Issuer
	google *oidc.Verifier
}

func newReplicaFixture(t *testing.T) *replicaFixture {
	t.Helper()
	ctx := context.Background()
	mem, err := memory.New(ctx, memory.Config{SigningKeys: map[string]memory.KeySetConfig{"session": {}},
		Credentials: map[string]memory.CredentialsConfig{"db": {TTL: "1h"}}})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := provider.NewClient(mem, provider.ClientConfig{Name: "memory"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = keys.Close() })
	iss := oidctest.New(t)
	google, err := oidc.New(ctx, oidc.Config{Issuer: iss.URL, Audience: "client-1"})
	if err != nil {
		t.Fatal(err)
	}
	return &replicaFixture{keys: keys, iss: iss, google: google}
}

// manager is a replica's Manager over store (no HashKey: the store's), with mut applied.
func (f *replicaFixture) manager(t *testing.T, store session.Store, mut func(*session.Config)) *session.Manager {
	t.Helper()
	cfg := session.Config{Issuer: "https://keyfort.test", Audience: "api", Store: store,
		Keys: token.KeySourceFunc(func(ctx context.Context) (provider.KeySet, error) { return f.keys.SigningKeys(ctx, "session") }),
		IdPs: map[string]*oidc.Verifier{"google": f.google}}
	if mut != nil {
		mut(&cfg)
	}
	m, err := session.NewManager(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestCreateFamilyAfterScriptFlush: a server that has lost its scripts (a restart, a failover to a
// node that never ran them) still gets the family and its subject's index entry in one call.
func TestCreateFamilyAfterScriptFlush(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := redistest.Client(t)
	s, err := redisstore.New(ctx, redisstore.Config{URL: redistest.URL(), Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	for _, id := range []string{"before", "after"} {
		if id == "after" {
			if err := rdb.ScriptFlush(ctx).Err(); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.CreateFamily(ctx, session.Family{ID: id, SessionID: "s-" + id, Subject: "flush", Current: "j", ExpiresAt: now.Add(time.Minute)}); err != nil {
			t.Fatalf("CreateFamily %s the flush: %v", id, err)
		}
		if ttl := rdb.PTTL(ctx, prefix+"fam:"+id).Val(); ttl <= 0 || ttl > time.Minute {
			t.Errorf("family %s: TTL %v, want its expiry", id, ttl)
		}
	}
	fams, err := s.SubjectFamilies(ctx, session.SubjectSelector{Subject: "flush"}, now)
	if err != nil || len(fams) != 2 {
		t.Errorf("the subject's families: %+v, %v, want both", fams, err)
	}
}

// TestPing: Ping answers while Redis does, and is ErrStoreUnavailable while it is down (SIGKILL),
// without the URL; it answers again when Redis is back.
func TestPing(t *testing.T) {
	ctx := context.Background()
	srv := redistest.StartServer(t)
	s, err := redisstore.New(ctx, redisstore.Config{URL: "redis://" + srv.Addr + "/0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if err := s.Ping(ctx); !errors.Is(err, session.ErrStoreUnavailable) {
		t.Errorf("Ping with Redis down: got %v, want ErrStoreUnavailable", err)
	}
	srv.Start(t)
	if err := s.Ping(ctx); err != nil {
		t.Errorf("Ping with Redis back: %v", err)
	}
}

// TestEvictingServerIsRefused: a Redis that may evict keys under memory pressure (a maxmemory and
// a policy other than noeviction: allkeys-lru, or volatile-lru, which takes the store's keys, all
// of which expire) is refused with ErrEvicting naming the policy and the way out, unless
// AllowEviction, which starts and says what it found; a limit with noeviction, or a policy with no
// limit, is fine. The refusal never repeats the URL's password.
func TestEvictingServerIsRefused(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		args   []string
		evicts bool
	}{
		{[]string{"--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"}, true},
		{[]string{"--maxmemory", "64mb", "--maxmemory-policy", "volatile-lru"}, true},
		{[]string{"--maxmemory", "64mb", "--maxmemory-policy", "noeviction"}, false},
		{[]string{"--maxmemory", "0", "--maxmemory-policy", "allkeys-lru"}, false},
	} {
		srv := redistest.StartServer(t, append(tc.args, "--requirepass", "evict-Pa55word")...)
		url := "redis://:evict-Pa55word@" + srv.Addr + "/0"
		s, err := redisstore.New(ctx, redisstore.Config{URL: url})
		if tc.evicts {
			if !errors.Is(err, redisstore.ErrEvicting) || !strings.Contains(err.Error(), tc.args[3]) ||
				!strings.Contains(err.Error(), "redis_allow_eviction") || strings.Contains(err.Error(), "evict-Pa55word") {
				t.Errorf("%v: got %v, want ErrEvicting naming the policy and the setting, without the password", tc.args, err)
			}
			if err == nil {
				_ = s.Close()
			}
			s, err = redisstore.New(ctx, redisstore.Config{URL: url, AllowEviction: true})
			if err != nil {
				t.Fatalf("%v with AllowEviction: %v", tc.args, err)
			}
			if !strings.Contains(s.Evicting(), tc.args[3]) {
				t.Errorf("%v with AllowEviction: Evicting() = %q", tc.args, s.Evicting())
			}
			_ = s.Close()
			continue
		}
		if err != nil {
			t.Errorf("%v: %v", tc.args, err)
			continue
		}
		if s.Evicting() != "" {
			t.Errorf("%v: Evicting() = %q, want nothing", tc.args, s.Evicting())
		}
		_ = s.Close()
	}
}

// TestHashKeyIsKept: after a FLUSHALL while replicas run, a replica writes its hash key back, so a
// replica started afterwards hashes tokens as it does (a logout by one is seen by the other);
// a key that is not the replica's is logged as an error and counted, once, until it is again.
func TestHashKeyIsKept(t *testing.T) {
	ctx := context.Background()
	srv := redistest.StartServer(t)
	url := "redis://" + srv.Addr + "/0"
	var logs syncBuffer
	reg := prometheus.NewRegistry()
	a, err := redisstore.New(ctx, redisstore.Config{URL: url, HashKeyCheck: 20 * time.Millisecond, Registerer: reg,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = admin.Close() })
	if err := admin.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the hash key written back", func() bool {
		got, _ := admin.Get(ctx, "keyfort:hash-key").Bytes()
		return string(got) == string(a.HashKey())
	})
	b, err := redisstore.New(ctx, redisstore.Config{URL: url, HashKeyCheck: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	if string(b.HashKey()) != string(a.HashKey()) {
		t.Fatal("a replica started after the FLUSHALL made another hash key")
	}
	if !strings.Contains(logs.String(), "hash key was gone") {
		t.Errorf("no warning of the key written back:\n%s", logs.String())
	}
	mismatch := func() float64 { return metrictest.Counter(t, reg, "keyfort_session_store_hash_key_mismatch", nil) }
	if err := admin.Set(ctx, "keyfort:hash-key", strings.Repeat("x", 32), 0).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the mismatch counted", func() bool { return mismatch() == 1 })
	if n := strings.Count(logs.String(), "is not this replica's"); n != 1 {
		t.Errorf("the mismatch was logged %d times, want once:\n%s", n, logs.String())
	}
	if err := admin.Set(ctx, "keyfort:hash-key", a.HashKey(), 0).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the mismatch over", func() bool { return mismatch() == 0 })
}

// waitFor polls cond for up to 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 500 {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// syncBuffer is a bytes.Buffer safe for a logger's goroutine and the test's.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }
