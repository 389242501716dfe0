package memory

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/keyfort/keyfort/provider"
)

// Config configures the memory provider. In Keyfort's configuration it is the settings block of a
// provider with type: memory.
type Config struct {
	// SigningKeys lists key sets to generate at start, by name.
	SigningKeys map[string]KeySetConfig `json:"signing_keys" koanf:"signing_keys"`
	// GenerateAlgorithm, when set, makes SigningKeys generate a key set with this algorithm for any name
	// on first use instead of answering not found.
	GenerateAlgorithm string `json:"generate_algorithm" koanf:"generate_algorithm"`
	// Secrets are opaque values by name (development only: the values sit in configuration).
	Secrets map[string]string `json:"secrets" koanf:"secrets"`
	// Credentials lists the roles the provider issues credentials for.
	Credentials map[string]CredentialsConfig `json:"credentials" koanf:"credentials"`
	// Now is the clock; nil: time.Now.
	Now func() time.Time `json:"-" koanf:"-"`
}

// KeySetConfig describes a generated key set.
type KeySetConfig struct {
	// Algorithm of the keys: EdDSA (default), ES256, RS256 or HS256.
	Algorithm string `json:"algorithm" koanf:"algorithm"`
}

// CredentialsConfig describes a credentials role.
type CredentialsConfig struct {
	// Static credentials have this username and password and no lease. Leave both empty for dynamic
	// credentials: a fresh username and random password per call, with a lease.
	Username string `json:"username" koanf:"username"`
	Password string `json:"password" koanf:"password"`
	// TTL of dynamic credentials' leases (Go duration, default "1h").
	TTL string `json:"ttl" koanf:"ttl"`
	// Extra fields returned with the credentials (host, port, database ...).
	Extra map[string]string `json:"extra" koanf:"extra"`
}

// Provider is the in-memory provider. It is safe for concurrent use.
type Provider struct {
	mu          sync.Mutex
	cfg         Config
	now         func() time.Time
	generateAlg provider.Algorithm
	keySets     map[string]*provider.KeySet
	secrets     map[string]provider.Secret
	roles       map[string]role
	leases      map[string]lease
	// sweepAt is the number of leases at which Credentials next drops the expired ones.
	sweepAt int
	closed  bool
	// changes tells watchers of rotations and new secret versions.
	changes provider.Changes
}

// minSweep is the fewest leases at which expired ones are swept.
const minSweep = 1024

type role struct {
	static   bool
	username string
	password string
	ttl      time.Duration
	extra    map[string]string
}

type lease struct {
	role     string
	issuedAt time.Time
	ttl      time.Duration
}

var (
	_ provider.IdentitySecretMaterialProvider = (*Provider)(nil)
	_ provider.KeyRotator                     = (*Provider)(nil)
	_ provider.HealthChecker                  = (*Provider)(nil)
	_ provider.Watcher                        = (*Provider)(nil)
	_ provider.Factory                        = Factory
)

// Factory builds a memory provider from Keyfort settings; provider-host lists it as the built-in "memory".
func Factory(ctx context.Context, s provider.Settings) (provider.IdentitySecretMaterialProvider, error) {
	var cfg Config
	if err := s.Decode(&cfg); err != nil {
		return nil, err
	}
	return New(ctx, cfg)
}

// New creates a memory provider and generates its configured key sets.
func New(_ context.Context, cfg Config) (*Provider, error) {
	p := &Provider{
		cfg: cfg, now: cfg.Now,
		keySets: map[string]*provider.KeySet{}, secrets: map[string]provider.Secret{},
		roles: map[string]role{}, leases: map[string]lease{},
	}
	if p.now == nil {
		p.now = time.Now
	}
	var problems []error
	if cfg.GenerateAlgorithm != "" {
		alg, err := provider.ParseAlgorithm(cfg.GenerateAlgorithm)
		if err != nil {
			problems = append(problems, fmt.Errorf("generate_algorithm: %w", err))
		}
		p.generateAlg = alg
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.SigningKeys)) {
		algName := cfg.SigningKeys[name].Algorithm
		if algName == "" {
			algName = string(provider.EdDSA)
		}
		alg, err := provider.ParseAlgorithm(algName)
		if err != nil {
			problems = append(problems, fmt.Errorf("signing_keys.%s.algorithm: %w", name, err))
			continue
		}
		if _, err := p.generate(name, alg); err != nil {
			problems = append(problems, fmt.Errorf("signing_keys.%s: %w", name, err))
		}
	}
	for name, v := range cfg.Secrets {
		p.secrets[name] = provider.Secret{Name: name, Version: "1", Value: provider.SensitiveString(v), CreatedAt: p.now()}
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.Credentials)) {
		rc := cfg.Credentials[name]
		r := role{username: rc.Username, password: rc.Password, ttl: time.Hour, extra: rc.Extra}
		if (rc.Username == "") != (rc.Password == "") {
			problems = append(problems, fmt.Errorf("credentials.%s: set both username and password (static) or neither (dynamic)", name))
			continue
		}
		r.static = rc.Username != ""
		if rc.TTL != "" {
			d, err := time.ParseDuration(rc.TTL)
			if err != nil || d <= 0 {
				problems = append(problems, fmt.Errorf("credentials.%s.ttl: want a positive duration like \"1h\"", name))
				continue
			}
			r.ttl = d
		}
		p.roles[name] = r
	}
	if len(problems) > 0 {
		return nil, provider.NewError(provider.ErrInvalidConfig, "", errors.Join(problems...))
	}
	return p, nil
}

// generate adds a fresh key to set name (creating it) and makes it active. Callers hold p.mu or own p.
func (p *Provider) generate(name string, alg provider.Algorithm) (provider.KeySet, error) {
	k, err := provider.GenerateKey(alg, nil)
	if err != nil {
		return provider.KeySet{}, err
	}
	ks := p.keySets[name]
	if ks == nil {
		ks = &provider.KeySet{Name: name}
		p.keySets[name] = ks
	}
	k.Version = fmt.Sprint(len(ks.Keys) + 1)
	k.NotBefore = p.now().Truncate(time.Second)
	// Newest first; copy so that sets handed out earlier stay unchanged.
	keys := make([]provider.Key, 0, len(ks.Keys)+1)
	keys = append(keys, k)
	keys = append(keys, ks.Keys...)
	ks.Keys = keys
	ks.ActiveID = k.ID
	return *ks, nil
}

func (p *Provider) checkOpen(location string) error {
	if p.closed {
		return provider.NewError(provider.ErrClosed, location, nil)
	}
	return nil
}

// SigningKeys returns key set name, generating it on first use when GenerateAlgorithm is set.
func (p *Provider) SigningKeys(ctx context.Context, name string) (provider.KeySet, error) {
	if err := ctx.Err(); err != nil {
		return provider.KeySet{}, provider.NewError(provider.ErrUnavailable, name, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.checkOpen(name); err != nil {
		return provider.KeySet{}, err
	}
	if ks, ok := p.keySets[name]; ok {
		return *ks, nil
	}
	if p.generateAlg != "" {
		ks, err := p.generate(name, p.generateAlg)
		if err != nil {
			return provider.KeySet{}, provider.NewError(provider.ErrInternal, name, err)
		}
		return ks, nil
	}
	return provider.KeySet{}, provider.NewError(provider.ErrNotFound, name, errors.New("no such key set in memory"))
}

// RotateSigningKey adds a new active key to set name; earlier keys stay for verification.
func (p *Provider) RotateSigningKey(ctx context.Context, name string) (provider.KeySet, error) {
	if err := ctx.Err(); err != nil {
		return provider.KeySet{}, provider.NewError(provider.ErrUnavailable, name, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.checkOpen(name); err != nil {
		return provider.KeySet{}, err
	}
	ks, ok := p.keySets[name]
	if !ok {
		return provider.KeySet{}, provider.NewError(provider.ErrNotFound, name, errors.New("no such key set in memory"))
	}
	active, _ := ks.Active()
	out, err := p.generate(name, active.Algorithm)
	if err != nil {
		return provider.KeySet{}, provider.NewError(provider.ErrInternal, name, err)
	}
	p.changes.Notify(name)
	return out, nil
}

// Watch implements provider.Watcher: rotations and new secret versions are announced at once.
func (p *Provider) Watch(ctx context.Context, fn func(provider.Change)) error {
	return p.changes.Watch(ctx, fn)
}

// SetSecret sets (or replaces, as a new version) secret name.
func (p *Provider) SetSecret(name string, value []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	version := 1
	if old, ok := p.secrets[name]; ok {
		fmt.Sscan(old.Version, &version)
		version++
	}
	p.secrets[name] = provider.Secret{Name: name, Version: fmt.Sprint(version),
		Value: provider.NewSensitive(append([]byte(nil), value...)), CreatedAt: p.now()}
	p.changes.Notify(name)
}

// Secret returns secret name.
func (p *Provider) Secret(ctx context.Context, name string) (provider.Secret, error) {
	if err := ctx.Err(); err != nil {
		return provider.Secret{}, provider.NewError(provider.ErrUnavailable, name, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.checkOpen(name); err != nil {
		return provider.Secret{}, err
	}
	s, ok := p.secrets[name]
	if !ok {
		return provider.Secret{}, provider.NewError(provider.ErrNotFound, name, errors.New("no such secret in memory"))
	}
	return s, nil
}

// Credentials issues credentials for a configured role: static ones as configured, dynamic ones with a
// fresh username, a random password and a lease.
func (p *Provider) Credentials(ctx context.Context, req provider.CredentialRequest) (provider.Credentials, error) {
	if err := ctx.Err(); err != nil {
		return provider.Credentials{}, provider.NewError(provider.ErrUnavailable, req.Role, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.checkOpen(req.Role); err != nil {
		return provider.Credentials{}, err
	}
	r, ok := p.roles[req.Role]
	if !ok {
		return provider.Credentials{}, provider.NewError(provider.ErrNotFound, req.Role, errors.New("no such credentials role in memory"))
	}
	c := provider.Credentials{Role: req.Role}
	if len(r.extra) > 0 {
		c.Extra = make(map[string]provider.Sensitive, len(r.extra))
		for k, v := range r.extra {
			c.Extra[k] = provider.SensitiveString(v)
		}
	}
	if r.static {
		c.Username, c.Password = r.username, provider.SensitiveString(r.password)
		return c, nil
	}
	c.Username = "v-" + req.Role + "-" + randomString(6)
	c.Password = provider.SensitiveString(randomString(24))
	now := p.now()
	id := "memory/" + req.Role + "/" + randomString(12)
	p.leases[id] = lease{role: req.Role, issuedAt: now, ttl: r.ttl}
	p.sweepExpired(now)
	c.Lease = provider.Lease{ID: id, TTL: r.ttl, IssuedAt: now, Renewable: true}
	return c, nil
}

// sweepExpired drops expired leases once their number has doubled since the last sweep: callers
// that never revoke (a long-running development process) do not make the map grow without bound,
// at an amortised constant cost per issued lease.
func (p *Provider) sweepExpired(now time.Time) {
	if len(p.leases) < max(p.sweepAt, minSweep) {
		return
	}
	for id, l := range p.leases {
		if !now.Before(l.issuedAt.Add(l.ttl)) {
			delete(p.leases, id)
		}
	}
	p.sweepAt = 2 * len(p.leases)
}

// Renew restarts a live lease's TTL from now.
func (p *Provider) Renew(ctx context.Context, l provider.Lease) (provider.Lease, error) {
	if err := ctx.Err(); err != nil {
		return provider.Lease{}, provider.NewError(provider.ErrUnavailable, l.ID, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.checkOpen(l.ID); err != nil {
		return provider.Lease{}, err
	}
	if l.IsZero() {
		return l, nil
	}
	cur, ok := p.leases[l.ID]
	now := p.now()
	if !ok || !now.Before(cur.issuedAt.Add(cur.ttl)) {
		delete(p.leases, l.ID)
		return provider.Lease{}, provider.NewError(provider.ErrNotFound, l.ID, errors.New("lease expired or revoked"))
	}
	cur.issuedAt = now
	p.leases[l.ID] = cur
	return provider.Lease{ID: l.ID, TTL: cur.ttl, IssuedAt: now, Renewable: true}, nil
}

// Revoke ends a lease; unknown leases are ignored.
func (p *Provider) Revoke(ctx context.Context, l provider.Lease) error {
	if err := ctx.Err(); err != nil {
		return provider.NewError(provider.ErrUnavailable, l.ID, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.checkOpen(l.ID); err != nil {
		return err
	}
	delete(p.leases, l.ID)
	return nil
}

// Health is always nil while the provider is open.
func (p *Provider) Health(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.checkOpen("")
}

// Close drops every key, secret and lease.
func (p *Provider) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.keySets, p.secrets, p.leases = nil, nil, nil
	p.changes.Close()
	return nil
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)[:n]
}
