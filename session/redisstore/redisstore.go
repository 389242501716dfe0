package redisstore

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/keyfort/keyfort/internal/redact"
	"github.com/keyfort/keyfort/internal/revfeed"
	"github.com/keyfort/keyfort/internal/storemetrics"
	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/session"
)

// Store is a session.Store in Redis.
type Store struct {
	rdb     redis.UniversalClient
	prefix  string
	owned   bool
	hashKey []byte
	// channel carries the revocation feed; publish is empty when the Redis user may not publish
	// on it (ACL), which turns the feed off rather than failing every revocation.
	channel, publish string
	// dropped counts feed events dropped for a subscriber that fell behind (nil: not counted).
	dropped prometheus.Counter
	// evicting describes the server's eviction settings when it may evict keys (AllowEviction).
	evicting string
	// the hash-key keeper (keepHashKey): its logger and metric, stopped by Close
	log      *slog.Logger
	mismatch prometheus.Gauge
	stop     context.Context // done when Close begins: ends the keeper, and its call in flight
	halt     context.CancelFunc
	kept     chan struct{}
	once     sync.Once
}

var (
	_ session.Store          = (*Store)(nil)
	_ session.HashKeyHolder  = (*Store)(nil)
	_ session.RevocationFeed = (*Store)(nil)
	_ session.SubjectRevoker = (*Store)(nil)
	_ session.SubjectLister  = (*Store)(nil)
	_ session.SubjectCutter  = (*Store)(nil)
	_ session.KeyRevoker     = (*Store)(nil)
	_ session.Pinger         = (*Store)(nil)
)

// Config configures a Store.
type Config struct {
	// URL is a redis:// or rediss:// URL (ignored when Client is set). With master_name in its
	// query it reaches the master through Redis Sentinel, following failovers: the host is a
	// Sentinel's, more are added with addr (redis://s1:26379/0?master_name=NAME&addr=s2:26379),
	// the URL's user and password are the Sentinels', and the username and password parameters
	// (or Credentials) the data nodes'. With cluster=true it reaches a Redis Cluster, from the URL's
	// node and those of addr (redis://n1:6379?cluster=true&addr=n2:6379). Errors about it never
	// repeat it: it may carry a password.
	URL string
	// Credentials, when set, gives the user name and password of every new connection in place of
	// the URL's: serve the password from a secret provider, and a rotation reaches the connections
	// opened after it without a restart. An error fails the connection (the store is then
	// unavailable, and sessions fail closed). Ignored when Client is set.
	Credentials func(ctx context.Context) (username, password string, err error)
	// TLS configures the connection of a rediss:// URL beyond the system's roots (a private CA, a
	// client certificate). Ignored when Client is set.
	TLS TLS
	// Client is an existing client; the Store does not close it.
	Client redis.UniversalClient
	// Prefix namespaces every key (default "keyfort:").
	Prefix string
	// AllowEviction starts the Store on a Redis server that may evict keys under memory pressure
	// (maxmemory set and a maxmemory-policy other than noeviction, as managed services often
	// default to). Off, New refuses such a server (ErrEvicting): an evicted tombstone or subject
	// cut would undo a logout, and an evicted family end a session. On, Evicting says what was
	// found, for a warning.
	AllowEviction bool
	// HashKeyCheck is how often the Store makes sure the shared token-hash key is still there and
	// still its own (default DefaultHashKeyCheck; negative: never). A key gone while replicas ran
	// (a FLUSHALL, a DEL by hand) is written back with this Store's, so that replicas started
	// afterwards hash tokens as the running ones do; a key that differs is logged as an error and
	// counted (keyfort_session_store_hash_key_mismatch): the replicas then do not see each other's
	// logouts until they are restarted.
	HashKeyCheck time.Duration
	// Logger receives the hash-key keeper's findings; nil: slog.Default().
	Logger *slog.Logger
	// Registerer, when set, receives the store's metrics: keyfort_session_store_commands_total and
	// command_errors_total by command, and round_trip_seconds (not when Client is set: a client
	// the Store does not own keeps its hooks); and keyfort_session_store_feed_dropped_total, the
	// revocation events dropped for a subscriber that fell behind.
	Registerer prometheus.Registerer
}

// TLS names the files of a TLS connection to Redis. The zero value: the system's roots, the URL's
// host as the server name, no client certificate.
type TLS struct {
	// CAFile is a PEM bundle of the CAs that sign the server's certificate, in place of the
	// system's (managed Redis services often use a private CA).
	CAFile string
	// ServerName is the name the server's certificate must carry (default: the URL's host).
	ServerName string
	// CertFile and KeyFile are a client certificate and its key (PEM), for servers that require
	// one (Redis's tls-auth-clients).
	CertFile, KeyFile string
}

func (t TLS) isZero() bool { return t == TLS{} }

// config builds the client's TLS configuration; errors name the file, never its content.
func (t TLS) config(base *tls.Config) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if base != nil {
		c.ServerName = base.ServerName
	}
	if t.ServerName != "" {
		c.ServerName = t.ServerName
	}
	if t.CAFile != "" {
		data, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("TLS CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("TLS CA file %s: no PEM certificate in it", t.CAFile)
		}
		c.RootCAs = pool
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, errors.New("TLS client certificate: the certificate and key files go together")
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("TLS client certificate %s: %w", t.CertFile, err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// New connects (checking with PING), refuses a server that may evict the store's keys unless
// Config.AllowEviction (ErrEvicting), and returns a Store.
func New(ctx context.Context, cfg Config) (*Store, error) {
	s := &Store{rdb: cfg.Client, prefix: cfg.Prefix}
	if s.prefix == "" {
		s.prefix = "keyfort:"
	}
	if s.rdb == nil {
		c, err := newClient(cfg)
		if err != nil {
			return nil, err
		}
		s.rdb, s.owned = c, true
	}
	if cfg.Registerer != nil {
		c, err := storemetrics.New(cfg.Registerer)
		if err != nil {
			if s.owned {
				_ = s.rdb.Close()
			}
			return nil, fmt.Errorf("redisstore: metrics: %w", err)
		}
		if s.owned {
			s.rdb.AddHook(newMetricsHook(c))
		}
		s.dropped, s.mismatch = c.FeedDropped, c.HashKeyMismatch
	}
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		if s.owned {
			_ = s.rdb.Close()
		}
		return nil, fmt.Errorf("%w: redis: %v", session.ErrStoreUnavailable, err)
	}
	if e, evicts, err := s.checkEviction(ctx); err != nil {
		if s.owned {
			_ = s.rdb.Close()
		}
		return nil, fmt.Errorf("%w: redis: INFO memory: %v", session.ErrStoreUnavailable, err)
	} else if evicts {
		if !cfg.AllowEviction {
			if s.owned {
				_ = s.rdb.Close()
			}
			return nil, fmt.Errorf("%w (%s): an evicted tombstone would undo a logout; set maxmemory-policy noeviction (or no maxmemory) on the server, or allow it (identity.session.redis_allow_eviction)", ErrEvicting, e)
		}
		s.evicting = e.String()
	}
	if err := s.loadHashKey(ctx); err != nil {
		if s.owned {
			_ = s.rdb.Close()
		}
		return nil, err
	}
	if err := s.probeFeed(ctx); err != nil {
		if s.owned {
			_ = s.rdb.Close()
		}
		return nil, err
	}
	s.log = cfg.Logger
	if s.log == nil {
		s.log = slog.Default()
	}
	s.stop, s.halt = context.WithCancel(context.Background())
	s.kept = make(chan struct{})
	every := cfg.HashKeyCheck
	if every == 0 {
		every = DefaultHashKeyCheck
	}
	if every > 0 {
		go s.keepHashKey(every)
	} else {
		close(s.kept)
	}
	return s, nil
}

// DefaultHashKeyCheck is how often a Store checks the shared hash key by default: one command per
// replica and interval.
const DefaultHashKeyCheck = 10 * time.Second

// hashKeyScript writes the hash key back when it is gone (1), and reports whether it is the
// caller's (0) or another (2).
var hashKeyScript = redis.NewScript(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then return 0 end
return 2
`)

// keepHashKey checks the shared hash key every interval until Close (see Config.HashKeyCheck).
func (s *Store) keepHashKey(every time.Duration) {
	defer close(s.kept)
	t := time.NewTicker(every)
	defer t.Stop()
	key := s.prefix + "hash-key"
	differs := false
	for {
		select {
		case <-s.stop.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(s.stop, min(every, 5*time.Second))
		n, err := hashKeyScript.Run(ctx, s.rdb, []string{key}, s.hashKey).Int()
		cancel()
		if err != nil {
			continue // unreachable now: the next check, or the calls' own errors, will tell
		}
		switch {
		case n == 1:
			s.log.Warn("keyfort: the session store's hash key was gone (FLUSHALL, or deleted); written back with this replica's, so replicas started from now agree with it",
				slog.String("key", key))
		case n == 2 && !differs:
			s.log.Error("keyfort: the session store's hash key is not this replica's: replicas do not see each other's logouts; restart every replica",
				slog.String("key", key))
		case n == 0 && differs:
			s.log.Info("keyfort: the session store's hash key is this replica's again", slog.String("key", key))
		}
		differs = n == 2
		if s.mismatch != nil {
			if differs {
				s.mismatch.Set(1)
			} else {
				s.mismatch.Set(0)
			}
		}
	}
}

// IsSentinelURL reports whether url names a master through Redis Sentinel: a master_name in its
// query (go-redis's failover URL).
func IsSentinelURL(u string) bool {
	parsed, err := url.Parse(u)
	return err == nil && parsed.Query().Has("master_name")
}

// clusterURL reports whether u names a Redis Cluster (cluster=true in its query) and returns it
// without that parameter, which is Keyfort's and not go-redis's.
func clusterURL(u string) (string, bool) {
	parsed, err := url.Parse(u)
	if err != nil {
		return u, false
	}
	q := parsed.Query()
	if q.Get("cluster") != "true" {
		return u, false
	}
	q.Del("cluster")
	parsed.RawQuery = q.Encode()
	return parsed.String(), true
}

// RedactedURL is u fit to show: the password of its user and every query parameter whose name
// holds "password" (a Sentinel URL's data-node password) replaced by "xxxxx".
func RedactedURL(u string) string { return redact.URL(u, "redis") }

// newClient makes the client of cfg.URL: a failover client through Sentinel when the URL names a
// master (redis://SENTINEL:26379/0?master_name=NAME&addr=SENTINEL2:26379, the URL's user and
// password the Sentinels', username and password query parameters the data nodes'), a cluster
// client when it says cluster=true (redis://NODE:6379?cluster=true&addr=NODE2:6379, the nodes to
// start from; the others are discovered), else a client of the one server.
func newClient(cfg Config) (redis.UniversalClient, error) {
	invalid := func(err error) error {
		return fmt.Errorf("%w: redisstore: url (not shown: it may hold a password): %v", provider.ErrInvalidConfig, redactURLError(err))
	}
	var tlsConfig **tls.Config
	var build func() redis.UniversalClient
	if u, ok := clusterURL(cfg.URL); ok {
		opts, err := redis.ParseClusterURL(u)
		if err != nil {
			return nil, invalid(err)
		}
		if cfg.Credentials != nil {
			opts.CredentialsProviderContext = cfg.Credentials
		}
		tlsConfig, build = &opts.TLSConfig, func() redis.UniversalClient { return redis.NewClusterClient(opts) }
	} else if IsSentinelURL(cfg.URL) {
		opts, err := redis.ParseFailoverURL(cfg.URL)
		if err != nil {
			return nil, invalid(err)
		}
		if cfg.Credentials != nil {
			opts.CredentialsProviderContext = cfg.Credentials
		}
		tlsConfig, build = &opts.TLSConfig, func() redis.UniversalClient { return redis.NewFailoverClient(opts) }
	} else {
		opts, err := redis.ParseURL(cfg.URL)
		if err != nil {
			return nil, invalid(err)
		}
		if cfg.Credentials != nil {
			opts.CredentialsProviderContext = cfg.Credentials
		}
		tlsConfig, build = &opts.TLSConfig, func() redis.UniversalClient { return redis.NewClient(opts) }
	}
	if *tlsConfig != nil && (*tlsConfig).InsecureSkipVerify {
		// go-redis reads skip_verify=true from the URL; an unverified Redis would be handed every
		// refresh-token family and tombstone, so it is refused rather than obeyed.
		return nil, fmt.Errorf("%w: redisstore: url: skip_verify is refused (trust a private CA with identity.session.redis_tls ca_file instead)", provider.ErrInvalidConfig)
	}
	if !cfg.TLS.isZero() {
		if *tlsConfig == nil {
			return nil, fmt.Errorf("%w: redisstore: TLS settings need a rediss:// URL", provider.ErrInvalidConfig)
		}
		c, err := cfg.TLS.config(*tlsConfig)
		if err != nil {
			return nil, fmt.Errorf("%w: redisstore: %v", provider.ErrInvalidConfig, err)
		}
		*tlsConfig = c
	}
	return build(), nil
}

// hashKeySize is the size of the hash key the first Store creates.
const hashKeySize = 32

// loadHashKey reads the hash key every Store on this Redis (and prefix) shares, creating it on first
// use: the first replica's random key wins (SET NX), and every replica then reads that one.
func (s *Store) loadHashKey(ctx context.Context) error {
	fresh := make([]byte, hashKeySize)
	if _, err := rand.Read(fresh); err != nil {
		return err
	}
	key := s.prefix + "hash-key"
	if err := s.rdb.SetNX(ctx, key, fresh, 0).Err(); err != nil {
		return fmt.Errorf("%w: redis: creating %s: %v", session.ErrStoreUnavailable, key, err)
	}
	got, err := s.rdb.Get(ctx, key).Bytes()
	if err != nil {
		return fmt.Errorf("%w: redis: reading %s: %v", session.ErrStoreUnavailable, key, err)
	}
	if len(got) < hashKeySize {
		return fmt.Errorf("%w: redisstore: %s holds %d bytes, want at least %d (delete it to have a new one made; the tombstones made with it are then forgotten)",
			provider.ErrInvalidConfig, key, len(got), hashKeySize)
	}
	s.hashKey = got
	return nil
}

// HashKey implements session.HashKeyHolder: the key every Store on this Redis and prefix shares
// (the key "<prefix>hash-key", made by the first Store), so that Managers and Caches of every replica
// hash one token to one tombstone.
func (s *Store) HashKey() []byte { return s.hashKey }

// redactURLError drops the URL that net/url repeats in its errors, keeping what is wrong with it.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func (s *Store) familyKey(id string) string { return s.prefix + "fam:" + id }
func (s *Store) tombKey(k string) string    { return s.prefix + "tomb:" + k }

// subjectKey is the set of a subject's family IDs: <prefix>subj:<sha256 of the subject, hex>
// (a subject is not secret, but it is the identity provider's string, of any length and bytes).
func (s *Store) subjectKey(subject string) string {
	return s.prefix + "subj:" + session.SubjectHash(subject)
}

// cutKey is the hash of a subject's cuts, <prefix>cut:<sha256 of the subject, hex>: the Before of
// each, in unix milliseconds, by identity provider ("" for every one).
func (s *Store) cutKey(subject string) string {
	return s.prefix + "cut:" + session.SubjectHash(subject)
}

// revokedKeysKey is the hash of revoked signing keys, <prefix>revoked-keys: each kid's Until, in
// unix milliseconds.
func (s *Store) revokedKeysKey() string { return s.prefix + "revoked-keys" }

// subjectIndexScript adds a family ID to its subject's set and keeps the set until the last of its
// families expires (its time to live only ever grows; PTTL and PEXPIRE, not Redis 7's PEXPIRETIME).
var subjectIndexScript = redis.NewScript(`
redis.call('SADD', KEYS[1], ARGV[1])
local ttl = tonumber(ARGV[2])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
`)

func ms(t time.Time) int64 { return t.UnixMilli() }

// CreateFamily implements session.Store.
func (s *Store) CreateFamily(ctx context.Context, f session.Family) error {
	// One round trip: the subject's index entry, then the family with its expiry (one script of
	// one key each, so a Cluster takes them on their own nodes). The index comes first on the
	// connection, so that a RevokeSubject never misses a family that exists (an entry whose family
	// was never made is skipped).
	create := []any{f.ExpiresAt.UnixMilli(),
		"session", f.SessionID, "subject", f.Subject, "tenant", f.Tenant, "idp", f.IdP, "scope", f.Scope,
		"current", f.Current, "current_iat", ms(f.CurrentIssuedAt), "previous", f.Previous,
		"rotated", ms(f.RotatedAt), "revoked", boolStr(f.Revoked), "expires", ms(f.ExpiresAt),
		"origin", f.Origin, "origin_exp", ms(f.OriginExpiresAt)}
	run := func(sha bool) error {
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			call := func(sc *redis.Script, key string, args ...any) {
				if sha {
					sc.EvalSha(ctx, p, []string{key}, args...)
				} else {
					sc.Eval(ctx, p, []string{key}, args...)
				}
			}
			if f.Subject != "" {
				call(subjectIndexScript, s.subjectKey(f.Subject), f.ID, max(time.Until(f.ExpiresAt).Milliseconds(), 1))
			}
			call(createScript, s.familyKey(f.ID), create...)
			return nil
		})
		return err
	}
	err := run(true)
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		// A server that has not seen the scripts (a restart, a new node): send them whole. Both
		// scripts are idempotent, so one that did run before the other failed runs again harmlessly.
		err = run(false)
	}
	return wrap(err)
}

// createScript writes a family's fields (ARGV[2:]) and its expiry (ARGV[1], unix ms) at once.
var createScript = redis.NewScript(`
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return 1
`)

func boolStr(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// rotateScript is session's rotation rule (see session.MemoryStore) executed atomically in Redis.
var rotateScript = redis.NewScript(`
local f = redis.call('HGETALL', KEYS[1])
if #f == 0 then return {'revoked'} end
-- ARGV[5] is the feed's channel (empty: no feed), ARGV[6] the family's ID
local t = {}
for i = 1, #f, 2 do t[f[i]] = f[i+1] end
local presented, nxt, now, grace = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
if t['revoked'] == '1' or tonumber(t['expires']) <= now then return {'revoked'} end
local outcome
if presented == t['current'] then
  redis.call('HSET', KEYS[1], 'previous', t['current'], 'rotated', now, 'current', nxt, 'current_iat', now)
  outcome = 'rotated'
elseif grace > 0 and t['previous'] ~= '' and presented == t['previous'] and now - tonumber(t['rotated']) <= grace then
  outcome = 'grace'
else
  redis.call('HSET', KEYS[1], 'revoked', '1')
  if ARGV[5] ~= '' then redis.call('PUBLISH', ARGV[5], 'f:' .. ARGV[6]) end
  outcome = 'reuse'
end
local out = redis.call('HGETALL', KEYS[1])
table.insert(out, 1, outcome)
return out
`)

// Rotate implements session.Store.
func (s *Store) Rotate(ctx context.Context, id, presented, next string, now time.Time, grace time.Duration) (session.Family, session.RotateOutcome, error) {
	// Zero grace is none (the script checks grace > 0): in milliseconds, "now - rotated <= 0" would
	// let a reuse within the millisecond of the rotation pass as the grace case. A grace under a
	// millisecond is rounded up to one, so that it is a window here as in the in-memory store.
	graceMs := grace.Milliseconds()
	if grace > 0 && grace%time.Millisecond != 0 {
		graceMs++
	}
	res, err := rotateScript.Run(ctx, s.rdb, []string{s.familyKey(id)}, presented, next, ms(now), graceMs, s.publish, id).StringSlice()
	if err != nil {
		return session.Family{}, 0, wrap(err)
	}
	var outcome session.RotateOutcome
	switch res[0] {
	case "rotated":
		outcome = session.Rotated
	case "grace":
		outcome = session.Grace
	case "reuse":
		outcome = session.Reuse
	default:
		return session.Family{ID: id, Revoked: true}, session.Revoked, nil
	}
	fields := map[string]string{}
	for i := 1; i+1 < len(res); i += 2 {
		fields[res[i]] = res[i+1]
	}
	return decode(id, fields), outcome, nil
}

func decode(id string, m map[string]string) session.Family {
	at := func(k string) time.Time {
		n, _ := strconv.ParseInt(m[k], 10, 64)
		if n == 0 {
			return time.Time{}
		}
		return time.UnixMilli(n)
	}
	return session.Family{
		ID: id, SessionID: m["session"], Subject: m["subject"], Tenant: m["tenant"], IdP: m["idp"], Scope: m["scope"],
		Current: m["current"], CurrentIssuedAt: at("current_iat"), Previous: m["previous"], RotatedAt: at("rotated"),
		Revoked: m["revoked"] == "1", ExpiresAt: at("expires"),
		Origin: m["origin"], OriginExpiresAt: at("origin_exp"),
	}
}

// revokeScript revokes a family and announces it on the feed. HSET only on an existing family: a
// revocation must not resurrect an expired key without a TTL.
var revokeScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'revoked', '1')
if ARGV[1] ~= '' then redis.call('PUBLISH', ARGV[1], 'f:' .. ARGV[2]) end
return 1
`)

// RevokeFamily implements session.Store.
func (s *Store) RevokeFamily(ctx context.Context, id string) error {
	return wrap(revokeScript.Run(ctx, s.rdb, []string{s.familyKey(id)}, s.publish, id).Err())
}

// revokeBatch is how many of a subject's families RevokeSubject reads, and then revokes, per
// pipeline (two round trips per batch; a Cluster client splits a pipeline by slot).
const revokeBatch = 256

// subjectBatches reads the families the subject's set names, revokeBatch at a time (one pipelined
// round trip each), and calls fn with each batch's live families that sel selects and the IDs the
// set no longer needs (gone, revoked or expired).
func (s *Store) subjectBatches(ctx context.Context, sel session.SubjectSelector, now time.Time, fn func(live []session.Family, stale []any) error) error {
	ids, err := s.rdb.SMembers(ctx, s.subjectKey(sel.Subject)).Result()
	if err != nil {
		return wrap(err)
	}
	for len(ids) > 0 {
		batch := ids[:min(len(ids), revokeBatch)]
		ids = ids[len(batch):]
		reads := make([]*redis.MapStringStringCmd, len(batch))
		if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, id := range batch {
				reads[i] = p.HGetAll(ctx, s.familyKey(id))
			}
			return nil
		}); err != nil {
			return wrap(err)
		}
		var live []session.Family
		var stale []any
		for i, id := range batch {
			m := reads[i].Val()
			if len(m) == 0 {
				stale = append(stale, id)
				continue
			}
			f := decode(id, m)
			switch {
			case f.Subject != sel.Subject || f.Revoked || !now.Before(f.ExpiresAt):
				stale = append(stale, id)
			case sel.Selects(f):
				live = append(live, f)
			}
		}
		if err := fn(live, stale); err != nil {
			return err
		}
	}
	return nil
}

// SubjectFamilies implements session.SubjectLister: the families the subject's set names, read in
// pipelined batches.
func (s *Store) SubjectFamilies(ctx context.Context, sel session.SubjectSelector, now time.Time) ([]session.Family, error) {
	var all []session.Family
	err := s.subjectBatches(ctx, sel, now, func(live []session.Family, _ []any) error {
		all = append(all, live...)
		return nil
	})
	return all, err
}

// RevokeSubject implements session.SubjectRevoker: each live family the subject's set names that sel
// selects is revoked and announced as RevokeFamily does, in pipelined batches, and the set
// forgets the ones it no longer needs.
func (s *Store) RevokeSubject(ctx context.Context, sel session.SubjectSelector, now time.Time) ([]session.Family, error) {
	key := s.subjectKey(sel.Subject)
	var ended []session.Family
	err := s.subjectBatches(ctx, sel, now, func(live []session.Family, stale []any) error {
		for _, f := range live {
			stale = append(stale, f.ID) // revoked now: the set need not name it again
		}
		if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, f := range live {
				// EVAL, not EVALSHA: a pipeline cannot fall back on NOSCRIPT.
				revokeScript.Eval(ctx, p, []string{s.familyKey(f.ID)}, s.publish, f.ID)
			}
			if len(stale) > 0 {
				p.SRem(ctx, key, stale...)
			}
			return nil
		}); err != nil {
			return wrap(err)
		}
		for _, f := range live {
			f.Revoked = true
			ended = append(ended, f)
		}
		return nil
	})
	return ended, err
}

// Family implements session.Store.
func (s *Store) Family(ctx context.Context, id string) (session.Family, error) {
	m, err := s.rdb.HGetAll(ctx, s.familyKey(id)).Result()
	if err != nil {
		return session.Family{}, wrap(err)
	}
	if len(m) == 0 {
		return session.Family{ID: id, Revoked: true}, nil
	}
	return decode(id, m), nil
}

// tombstoneScript writes a tombstone and announces it on the feed, in one round trip.
var tombstoneScript = redis.NewScript(`
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
if ARGV[2] ~= '' then redis.call('PUBLISH', ARGV[2], 't:' .. ARGV[3]) end
return 1
`)

// Tombstone implements session.Store.
func (s *Store) Tombstone(ctx context.Context, key string, until time.Time) error {
	ttl := time.Until(until)
	if ttl <= 0 {
		return nil
	}
	ttlMs := max(ttl.Milliseconds(), 1)
	return wrap(tombstoneScript.Run(ctx, s.rdb, []string{s.tombKey(key)}, ttlMs, s.publish, key).Err())
}

// Tombstoned implements session.Store.
func (s *Store) Tombstoned(ctx context.Context, key string) (bool, error) {
	n, err := s.rdb.Exists(ctx, s.tombKey(key)).Result()
	if err != nil {
		return false, wrap(err)
	}
	return n == 1, nil
}

// cutScript records a cut (the later Before of the one kept and this), keeps the hash until its
// latest cut's Until (its time to live only ever grows), and announces the cut on the feed.
var cutScript = redis.NewScript(`
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) > cur then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
local ttl = tonumber(ARGV[3])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
return 1
`)

// CutSubject implements session.SubjectCutter: one script on the subject's cut hash.
func (s *Store) CutSubject(ctx context.Context, cut session.SubjectCut) error {
	if cut.Subject == "" {
		return errors.New("redisstore: a subject cut needs a subject")
	}
	ttl := time.Until(cut.Until)
	if ttl <= 0 {
		return nil
	}
	return wrap(cutScript.Run(ctx, s.rdb, []string{s.cutKey(cut.Subject)}, cut.IdP, ms(cut.Before), max(ttl.Milliseconds(), 1),
		s.publish, revfeed.Cut(cut)).Err())
}

// TokenEnded implements session.SubjectCutter: the token's tombstone and the subject's cuts (for
// every identity provider and for the token's) in one pipeline.
func (s *Store) TokenEnded(ctx context.Context, t session.TokenRef) (bool, error) {
	var tomb *redis.IntCmd
	var cuts *redis.SliceCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		tomb = p.Exists(ctx, s.tombKey(t.Key))
		cuts = p.HMGet(ctx, s.cutKey(t.Subject), "", t.IdP)
		return nil
	})
	if err != nil {
		return false, wrap(err)
	}
	if tomb.Val() == 1 {
		return true, nil
	}
	issued := int64(math.MinInt64) // unknown: before any cut
	if !t.IssuedAt.IsZero() {
		issued = ms(t.IssuedAt)
	}
	for _, v := range cuts.Val() {
		str, ok := v.(string)
		if !ok {
			continue // no cut
		}
		before, err := strconv.ParseInt(str, 10, 64)
		if err != nil {
			return false, fmt.Errorf("%w: redis: malformed cut of a subject", session.ErrStoreUnavailable)
		}
		if issued < before {
			return true, nil
		}
	}
	return false, nil
}

// revokeKeyScript records a key revocation (the later Until of the one kept and this), forgets
// those past their Until, keeps the hash until its latest Until, and announces the revocation (with
// the Until kept) on the feed.
var revokeKeyScript = redis.NewScript(`
local now = tonumber(ARGV[3])
local all = redis.call('HGETALL', KEYS[1])
local last = 0
for i = 1, #all, 2 do
  local u = tonumber(all[i + 1]) or 0
  if u <= now then redis.call('HDEL', KEYS[1], all[i]) elseif u > last then last = u end
end
local keep = tonumber(ARGV[2])
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if cur > keep then keep = cur end
redis.call('HSET', KEYS[1], ARGV[1], keep)
if keep > last then last = keep end
redis.call('PEXPIREAT', KEYS[1], last)
if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[4], 'k:' .. keep .. ':' .. ARGV[1]) end
return keep
`)

// RevokeKey implements session.KeyRevoker: one script on the revoked-keys hash.
func (s *Store) RevokeKey(ctx context.Context, r session.KeyRevocation) error {
	if r.KeyID == "" {
		return errors.New("redisstore: a key revocation needs a key ID")
	}
	if !r.Until.After(time.Now()) {
		return nil
	}
	return wrap(revokeKeyScript.Run(ctx, s.rdb, []string{s.revokedKeysKey()}, r.KeyID, ms(r.Until), ms(time.Now()), s.publish).Err())
}

// RevokedKeys implements session.KeyRevoker: the revoked-keys hash, whole.
func (s *Store) RevokedKeys(ctx context.Context, now time.Time) ([]session.KeyRevocation, error) {
	all, err := s.rdb.HGetAll(ctx, s.revokedKeysKey()).Result()
	if err != nil {
		return nil, wrap(err)
	}
	var out []session.KeyRevocation
	for kid, v := range all {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: redis: malformed revocation of signing key %q", session.ErrStoreUnavailable, kid)
		}
		if until := time.UnixMilli(n); until.After(now) {
			out = append(out, session.KeyRevocation{KeyID: kid, Until: until})
		}
	}
	return out, nil
}

// rateScript is GCRA on one key holding the bucket's theoretical arrival time (microseconds, on
// the Redis server's clock, so replicas' clocks do not matter): a call is allowed when, after it,
// the arrival time is at most burst emission intervals ahead of now. A refused call changes
// nothing. The key lives as long as the bucket is not full.
var rateScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local nexttat = tat + interval
if nexttat - now > burst * interval then return 0 end
redis.call('SET', KEYS[1], string.format('%.0f', nexttat), 'PX', math.ceil((nexttat - now) / 1000) + 1)
return 1
`)

// Allow implements identityrpc.SharedRateLimiter: one script on the client's bucket,
// <prefix>rate:<sha256 of key, hex>.
func (s *Store) Allow(ctx context.Context, key string, perSecond float64, burst int) (bool, error) {
	if perSecond <= 0 || burst < 1 {
		return false, errors.New("redisstore: a rate limit needs a positive rate and burst")
	}
	interval := math.Max(1, math.Round(1e6/perSecond)) // microseconds per call
	n, err := rateScript.Run(ctx, s.rdb, []string{s.prefix + "rate:" + session.SubjectHash(key)}, interval, burst).Int()
	if err != nil {
		return false, wrap(err)
	}
	return n == 1, nil
}

// FirstUse implements dpop.SharedReplay: SET <prefix>dpop:<key> NX, expiring at until (at least a
// second from now), so that a DPoP proof is accepted by one replica only.
func (s *Store) FirstUse(ctx context.Context, key string, until time.Time) (bool, error) {
	first, err := s.rdb.SetNX(ctx, s.prefix+"dpop:"+key, 1, max(time.Until(until), time.Second)).Result()
	if err != nil {
		return false, wrap(err)
	}
	return first, nil
}

// Ping implements session.Pinger: a PING on a connection of the pool (on a Cluster, to one node).
func (s *Store) Ping(ctx context.Context) error {
	return wrap(s.rdb.Ping(ctx).Err())
}

// Close stops the hash-key keeper and closes the client when the Store created it. It is
// idempotent.
func (s *Store) Close() error {
	var err error
	s.once.Do(func() {
		s.halt()
		<-s.kept
		if s.owned {
			err = s.rdb.Close()
		}
	})
	return err
}

func wrap(err error) error {
	if err == nil || errors.Is(err, redis.Nil) {
		return nil
	}
	return fmt.Errorf("%w: redis: %v", session.ErrStoreUnavailable, err)
}
