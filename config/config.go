package config

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/knadh/koanf/parsers/json"
	"github.com/knadh/koanf/parsers/toml/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"

	"github.com/keyfort/keyfort/provider"
)

// EnvPrefix is the prefix of environment variables that configure Keyfort.
const EnvPrefix = "KEYFORT_"

// SessionSigningKey is the logical key of the session token signing keys; it must resolve.
const SessionSigningKey = "session_signing"

// RedisPasswordKey is the logical key of the Redis store's password (optional). When bound, every new
// connection of the store logs in with the value it resolves to, in place of the password in
// identity.session.redis_url.
const RedisPasswordKey = "redis_password"

// PostgresPasswordKey is the logical key of the PostgreSQL store's password (optional). When bound,
// every new connection of the store logs in with the value it resolves to, in place of the password
// in identity.session.postgres_url.
const PostgresPasswordKey = "postgres_password"

// DefaultGoogleIssuer is identity.secrets.oidc.google.issuer when not set.
const DefaultGoogleIssuer = "https://accounts.google.com"

// BuiltinTypes are the provider types served by provider-host. A binding may name one without
// declaring it under providers; it then runs with empty settings.
var BuiltinTypes = []string{"aws", "env", "gcp", "memory", "vault"}

// Kind is what a binding resolves to.
type Kind string

// The kinds of material a logical key can be.
const (
	KindKeySet      Kind = "keyset"
	KindSecret      Kind = "secret"
	KindCredentials Kind = "credentials"
)

// Config is a loaded, validated configuration. It is immutable once loaded: a reconfiguration loads a
// new Config and swaps it whole.
type Config struct {
	// Production forbids the memory provider and the zero-configuration ephemeral key.
	Production bool
	// Providers are the provider instances, by name, including built-ins that bindings name implicitly.
	Providers map[string]Provider
	// Bindings are every bound logical key: secrets and key sets under identity.secrets and credentials
	// roles under identity.credentials, keyed by their full dotted path.
	Bindings map[string]Binding
	// Default serves identity.secrets keys that bind nothing; nil when not configured.
	Default *Binding
	// OIDC holds the literal (non-secret) settings of each identity provider under identity.secrets.oidc.
	OIDC map[string]OIDC
	// Session configures the session service (identity.session).
	Session SessionConfig
	// Policy is the guardrail rules (identity.policy.rules), evaluated in order.
	Policy []PolicyRule
	// Sources lists the files that were loaded and whether the environment contributed.
	Sources []string

	empty bool
}

// Provider is one provider instance.
type Provider struct {
	Name string
	// Type is the built-in adapter ("env", "memory", ...); empty for a custom plugin.
	Type string
	// Plugin is a custom plugin binary; Args are passed to it.
	Plugin string
	Args   []string
	// SHA256 pins the plugin binary (hex); empty: not pinned.
	SHA256 string
	// Settings are handed to the adapter's Configure call. They may hold secrets.
	Settings map[string]any
	// Timeout, CacheTTL, StaleBudget configure the provider.Client (zero: default, negative: off).
	Timeout, CacheTTL, StaleBudget time.Duration
	// ProbeTimeout and CloseTimeout configure the plugin process's supervision (zero: default; see
	// plugin.Config).
	ProbeTimeout, CloseTimeout time.Duration
	// MaxProcs is the plugin process's GOMAXPROCS (max_procs: a number, or "all" for -1: Go's
	// default); zero: 1 (see plugin.Config.MaxProcs).
	MaxProcs int
	// InheritEnv names the host's environment variables the plugin process receives beyond the
	// baseline (PATH, HOME, TZ, proxies, CA locations, Go runtime settings) and its type's own (see
	// docs/configuration.md): names, or prefixes ending in "*"; "*" alone passes the host's whole
	// environment.
	InheritEnv []string
	// Implicit is true for a built-in that a binding named without declaring it.
	Implicit bool
}

// Binding says where the material of one logical key lives.
type Binding struct {
	// Key is the full dotted path of the logical key ("identity.secrets.session_signing").
	Key      string
	Provider string
	Location string
	Kind     Kind
	// PerSession marks credentials issued only on a caller's behalf (with the caller's identity, e.g.
	// Vault JWT auth): start-up checks cannot issue them and report them unchecked.
	PerSession bool
}

// String renders the binding as "provider:location".
func (b Binding) String() string { return b.Provider + ":" + b.Location }

// DefaultIssuer is the iss of Keyfort's tokens when identity.session.issuer is not set.
const DefaultIssuer = "keyfort"

// SessionConfig configures sessions and Keyfort's own tokens. Zero durations mean the session
// library's defaults.
type SessionConfig struct {
	Issuer       string // iss of Keyfort's tokens (empty: DefaultIssuer; see TokenIssuer)
	Audience     string // aud of access tokens (default the issuer)
	AccessTTL    time.Duration
	RefreshTTL   time.Duration
	RefreshGrace time.Duration
	// SubjectCutTTL is how long ending every session of a subject keeps its older tokens ended
	// (session.Config.SubjectCutTTL; zero: a day).
	SubjectCutTTL time.Duration
	// Revalidate is how often a cached session is checked against the store (session.CacheConfig:
	// zero 15s, negative never).
	Revalidate time.Duration
	// RedisURL selects the Redis store shared by replicas; empty: in memory (one replica).
	RedisURL string
	// RedisTLS configures a rediss:// connection beyond the system's roots (identity.session.redis_tls).
	RedisTLS RedisTLS
	// RedisAllowEviction starts on a Redis that may evict keys under memory pressure
	// (identity.session.redis_allow_eviction; redisstore.Config.AllowEviction).
	RedisAllowEviction bool
	// PostgresURL selects the PostgreSQL store shared by replicas, in place of Redis.
	PostgresURL string
	// MaxSessionsPerSubject bounds the live sessions of a subject at an identity provider; a start
	// beyond it ends the oldest (identity.session.max_sessions_per_subject; 0: no bound).
	MaxSessionsPerSubject int
	// IntrospectionClients are the client certificate identities (URI SAN, else subject) allowed
	// the runtime's IntrospectIdentityToken (identity.session.introspection_clients).
	IntrospectionClients []string
	// UnboundRefresh is identity.session.bind_refresh_to_client set to false: refresh tokens are
	// not bound to the mutual-TLS client that started their session (identityrpc.Options.BindClients).
	UnboundRefresh bool
	// RateLimit is identity.session.rate_limit: each client's calls to the runtime service
	// (identityrpc.Options.RateLimit); zero: no bound.
	RateLimit RateLimit
	// BindAccess is identity.session.bind_access_to_client: access tokens are bound to the
	// mutual-TLS client that started their session, too (session.Config.BindAccessTokens).
	BindAccess bool
	// DPoP is identity.session.dpop: binding sessions to the DPoP keys their clients prove
	// (session/dpop; on by default).
	DPoP DPoP
	// PostgresNoMigrate is identity.session.postgres_migrate set to false: the store creates and
	// changes no tables (pgstore.Config.DisableMigration).
	PostgresNoMigrate bool
}

// TokenIssuer is the iss of Keyfort's tokens: Issuer, or DefaultIssuer.
func (s SessionConfig) TokenIssuer() string {
	if s.Issuer == "" {
		return DefaultIssuer
	}
	return s.Issuer
}

// RedisTLS names the files of the Redis store's TLS connection.
type RedisTLS struct {
	CAFile, ServerName, CertFile, KeyFile string
}

// PolicyRule is one guardrail rule; fields are globs, empty matches anything.
type PolicyRule struct {
	Subject, Tenant, Scope, Action string
	// ForSubject is the subject acted on (a token issued for, sessions listed or ended of).
	ForSubject string
	Effect     string // allow or deny
}

// OIDC holds an identity provider's literal settings.
type OIDC struct {
	Issuer string
}

// Empty reports whether no configuration was given at all (no file, no KEYFORT_ variable).
func (c *Config) Empty() bool { return c.empty }

// Source says where configuration comes from.
type Source struct {
	// Files are loaded in order; the format follows the extension (.yaml, .yml, .toml, .json).
	Files []string
	// Environ lists environment variables ("K=V"); nil: os.Environ().
	Environ []string
}

// Load reads the sources and validates the result, reporting every problem at once as a
// *[ValidationError].
func Load(src Source) (*Config, error) {
	k := koanf.New(".")
	var sources []string
	for _, f := range src.Files {
		parser, err := parserFor(f)
		if err != nil {
			return nil, &ValidationError{Problems: []Problem{{Key: f, Message: err.Error()}}}
		}
		if err := k.Load(file.Provider(f), parser); err != nil {
			return nil, &ValidationError{Problems: []Problem{{Key: f, Message: "cannot load: " + err.Error()}}}
		}
		sources = append(sources, f)
	}
	environ := src.Environ
	if environ == nil {
		environ = os.Environ()
	}
	envKeys := 0
	var misspelled []Problem
	err := k.Load(env.Provider(".", env.Opt{
		Prefix:      EnvPrefix,
		EnvironFunc: func() []string { return environ },
		TransformFunc: func(name, value string) (string, any) {
			key := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(name, EnvPrefix), "__", "."))
			// Only variables under a known top-level key configure Keyfort: KEYFORT_* variables that the
			// env provider serves as material must not trip the unknown-key check.
			top, _, nested := strings.Cut(key, ".")
			switch top {
			case "production", "providers", "identity":
				envKeys++
				return key, value
			}
			// A near miss of a top-level key is a typo, not material: left alone, it would leave
			// what it sets (a session store, say) silently unset. Material variables are rarely
			// named with "__", and only production is a top-level key without levels below it.
			tops := []string{"production"}
			if nested {
				tops = []string{"production", "providers", "identity"}
			}
			if s := suggest(top, tops); s != "" {
				misspelled = append(misspelled, Problem{Key: name, Message: fmt.Sprintf(
					"not read: %q is no top-level key: did you mean %q (%s%s)?", top, s, EnvPrefix, strings.ToUpper(s))})
			}
			return "", nil
		},
	}), nil)
	if err != nil {
		return nil, &ValidationError{Problems: []Problem{{Key: "environment", Message: err.Error()}}}
	}
	if envKeys > 0 {
		sources = append(sources, "environment ("+EnvPrefix+"*)")
	}
	cfg, err := parse(k.Raw(), sources)
	if len(misspelled) == 0 {
		return cfg, err
	}
	var verr *ValidationError
	if errors.As(err, &verr) {
		verr.Problems = append(verr.Problems, misspelled...)
		return nil, verr
	}
	if err != nil {
		return nil, err
	}
	return nil, &ValidationError{Problems: misspelled}
}

func parserFor(path string) (koanf.Parser, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".yaml", ".yml":
		return yaml.Parser(), nil
	case ".toml":
		return toml.Parser(), nil
	case ".json":
		return json.Parser(), nil
	}
	return nil, fmt.Errorf("unknown configuration format %q (want .yaml, .yml, .toml or .json)", filepath.Ext(path))
}

// Problem is one thing wrong with a configuration.
type Problem struct {
	Key      string // the configuration key, dotted
	Provider string // the provider concerned, if any
	Location string // the location concerned, if any
	Message  string
}

// String renders the problem as "key (provider "p", location "l"): message".
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.Key)
	if p.Provider != "" {
		fmt.Fprintf(&b, " (provider %q", p.Provider)
		if p.Location != "" {
			fmt.Fprintf(&b, ", location %q", p.Location)
		}
		b.WriteString(")")
	}
	b.WriteString(": ")
	b.WriteString(p.Message)
	return b.String()
}

// ValidationError lists every problem found in a configuration. It satisfies
// errors.Is(err, provider.ErrInvalidConfig).
type ValidationError struct {
	Problems []Problem
}

// Error counts the problems and lists each on its own line.
func (e *ValidationError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "keyfort: invalid configuration (%d problem", len(e.Problems))
	if len(e.Problems) != 1 {
		b.WriteString("s")
	}
	b.WriteString("):")
	for _, p := range e.Problems {
		b.WriteString("\n  - ")
		b.WriteString(p.String())
	}
	return b.String()
}

// Is makes errors.Is(err, provider.ErrInvalidConfig) true.
func (e *ValidationError) Is(target error) bool { return target == provider.ErrInvalidConfig }

var providerName = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

// envPattern is an inherit_env entry: a variable name, a prefix ending in "*", or "*".
var envPattern = regexp.MustCompile(`^(\*|[A-Za-z_][A-Za-z0-9_]*\*?)$`)

type parser struct {
	problems []Problem
	cfg      *Config
	// dpopShared: identity.session.dpop.shared was set to true (it needs a shared store)
	dpopShared bool
}

func (p *parser) add(key, prov, loc, format string, args ...any) {
	p.problems = append(p.problems, Problem{Key: key, Provider: prov, Location: loc, Message: fmt.Sprintf(format, args...)})
}

func parse(raw map[string]any, sources []string) (*Config, error) {
	p := &parser{cfg: &Config{
		Providers: map[string]Provider{}, Bindings: map[string]Binding{}, OIDC: map[string]OIDC{},
		Sources: sources, empty: len(raw) == 0 && len(sources) == 0,
	}}
	for _, key := range slices.Sorted(maps.Keys(raw)) {
		v := raw[key]
		switch key {
		case "production":
			b, ok := asBool(v)
			if !ok {
				p.add(key, "", "", "want true or false")
			}
			p.cfg.Production = b
		case "providers":
			m, ok := v.(map[string]any)
			if !ok {
				p.add(key, "", "", "want a map of provider names to provider settings")
				continue
			}
			for _, name := range slices.Sorted(maps.Keys(m)) {
				p.provider(name, m[name])
			}
		case "identity":
			p.identity(v)
		default:
			p.unknown(key, "", "", "production", "providers", "identity")
		}
	}
	p.resolveProviders()
	if !p.cfg.empty {
		if _, err := p.cfg.Resolve(SessionSigningKey); err != nil {
			p.add("identity.secrets."+SessionSigningKey, "", "",
				"not configured: bind it (e.g. \"vault:kv/identity/session-signing\") or set identity.secrets.default")
		}
	}
	if _, ok := p.cfg.Bindings["identity.secrets."+RedisPasswordKey]; ok && p.cfg.Session.RedisURL == "" {
		p.add("identity.secrets."+RedisPasswordKey, "", "", "bound, but identity.session.redis_url is not set: nothing would use it")
	}
	if _, ok := p.cfg.Bindings["identity.secrets."+PostgresPasswordKey]; ok && p.cfg.Session.PostgresURL == "" {
		p.add("identity.secrets."+PostgresPasswordKey, "", "", "bound, but identity.session.postgres_url is not set: nothing would use it")
	}
	if p.cfg.Production && len(p.cfg.Bindings) == 0 && p.cfg.Default == nil {
		p.add("production", "", "", "production is true but nothing is configured; the ephemeral signing key is forbidden in production")
	}
	if len(p.problems) > 0 {
		sort.SliceStable(p.problems, func(i, j int) bool { return p.problems[i].Key < p.problems[j].Key })
		return nil, &ValidationError{Problems: p.problems}
	}
	return p.cfg, nil
}

func (p *parser) provider(name string, v any) {
	key := "providers." + name
	if !providerName.MatchString(name) {
		p.add(key, name, "", "provider names are lower case letters, digits, '_' and '-', starting with a letter")
	}
	m, ok := v.(map[string]any)
	if !ok {
		if v == nil || v == "" {
			m = map[string]any{}
		} else {
			p.add(key, name, "", "want a map of provider settings")
			return
		}
	}
	pr := Provider{Name: name}
	for _, field := range slices.Sorted(maps.Keys(m)) {
		fv := m[field]
		fkey := key + "." + field
		switch field {
		case "type":
			pr.Type, _ = fv.(string)
		case "plugin":
			pr.Plugin, _ = fv.(string)
		case "args":
			switch a := fv.(type) {
			case []any:
				for _, x := range a {
					pr.Args = append(pr.Args, fmt.Sprint(x))
				}
			case string:
				pr.Args = strings.Fields(a)
			default:
				p.add(fkey, name, "", "want a list of strings")
			}
		case "inherit_env":
			var list []string
			switch a := fv.(type) {
			case []any:
				for _, x := range a {
					xs, ok := x.(string)
					if !ok {
						p.add(fkey, name, "", "want a list of variable names or prefixes ending in *")
						break
					}
					list = append(list, xs)
				}
			case string: // from the environment: names separated by spaces or commas
				list = strings.FieldsFunc(a, func(r rune) bool { return r == ' ' || r == ',' })
			default:
				p.add(fkey, name, "", "want a list of variable names or prefixes ending in *")
			}
			for _, pat := range list {
				if !envPattern.MatchString(pat) {
					p.add(fkey, name, "", "%q is not a variable name, a prefix ending in *, or *", pat)
				}
			}
			pr.InheritEnv = list
		case "sha256":
			pr.SHA256 = strings.ToLower(fmt.Sprint(fv))
			if len(pr.SHA256) != 64 || strings.Trim(pr.SHA256, "0123456789abcdef") != "" {
				p.add(fkey, name, "", "want 64 hex digits (sha256sum of the plugin binary)")
			}
		case "settings":
			sm, ok := fv.(map[string]any)
			if !ok {
				p.add(fkey, name, "", "want a map (the adapter's settings)")
				continue
			}
			pr.Settings = sm
		case "timeout", "cache_ttl", "stale_budget":
			d, err := asDuration(fv)
			if err != nil {
				p.add(fkey, name, "", "%v", err)
			}
			switch field {
			case "timeout":
				pr.Timeout = d
			case "cache_ttl":
				pr.CacheTTL = d
			default:
				pr.StaleBudget = d
			}
		case "probe_timeout", "close_timeout":
			d, err := asDuration(fv)
			if err == nil && d < 0 {
				err = errors.New("want a positive duration")
			}
			if err != nil {
				p.add(fkey, name, "", "%v", err)
			}
			if field == "probe_timeout" {
				pr.ProbeTimeout = d
			} else {
				pr.CloseTimeout = d
			}
		case "max_procs":
			switch v := fv.(type) {
			case string:
				if n, err := strconv.Atoi(v); err == nil && n >= 1 {
					pr.MaxProcs = n
				} else if v == "all" {
					pr.MaxProcs = -1
				} else {
					p.add(fkey, name, "", "want a number of CPUs (1 or more) or \"all\"")
				}
			case int, int64, float64:
				n, _ := strconv.Atoi(fmt.Sprint(v))
				if n < 1 {
					p.add(fkey, name, "", "want a number of CPUs (1 or more) or \"all\"")
				}
				pr.MaxProcs = n
			default:
				p.add(fkey, name, "", "want a number of CPUs (1 or more) or \"all\"")
			}
		default:
			p.unknown(fkey, name, "", "type", "plugin", "args", "sha256", "settings", "timeout", "cache_ttl", "stale_budget", "max_procs", "probe_timeout", "close_timeout", "inherit_env")
		}
	}
	switch {
	case pr.Type != "" && pr.Plugin != "":
		p.add(key, name, "", "set either type (a built-in adapter) or plugin (a custom plugin binary), not both")
	case pr.Type == "" && pr.Plugin == "":
		if isBuiltin(name) {
			pr.Type = name
		} else {
			p.add(key, name, "", "set type (one of %v) or plugin (a custom plugin binary)", BuiltinTypes)
		}
	case pr.Type != "" && !isBuiltin(pr.Type):
		if s := suggest(pr.Type, BuiltinTypes); s != "" {
			p.add(key+".type", name, "", "unknown built-in type %q: did you mean %q? (built-in: %v; a custom adapter is a plugin: path)", pr.Type, s, BuiltinTypes)
		} else {
			p.add(key+".type", name, "", "unknown built-in type %q (built-in: %v; a custom adapter is a plugin: path)", pr.Type, BuiltinTypes)
		}
	case pr.Plugin != "":
		if st, err := os.Stat(pr.Plugin); err != nil {
			p.add(key+".plugin", name, pr.Plugin, "plugin binary not found")
		} else if st.IsDir() || st.Mode()&0o111 == 0 {
			p.add(key+".plugin", name, pr.Plugin, "plugin binary is not an executable file")
		}
	}
	if pr.SHA256 != "" && pr.Plugin == "" {
		p.add(key+".sha256", name, "", "sha256 pins a custom plugin binary; built-ins run inside provider-host")
	}
	p.cfg.Providers[name] = pr
}

func isBuiltin(t string) bool {
	for _, b := range BuiltinTypes {
		if b == t {
			return true
		}
	}
	return false
}

func (p *parser) identity(v any) {
	m, ok := v.(map[string]any)
	if !ok {
		p.add("identity", "", "", "want a map with secrets and credentials")
		return
	}
	for _, key := range slices.Sorted(maps.Keys(m)) {
		switch key {
		case "secrets":
			sm, ok := m[key].(map[string]any)
			if !ok {
				p.add("identity.secrets", "", "", "want a map of logical keys to bindings")
				continue
			}
			p.secrets("identity.secrets", sm)
		case "credentials":
			cm, ok := m[key].(map[string]any)
			if !ok {
				p.add("identity.credentials", "", "", "want a map of roles to bindings")
				continue
			}
			for _, role := range slices.Sorted(maps.Keys(cm)) {
				p.binding("identity.credentials."+role, cm[role], KindCredentials)
			}
		case "session":
			p.sessionConfig(m[key])
		case "policy":
			p.policy(m[key])
		default:
			p.unknown("identity."+key, "", "", "secrets", "credentials", "session", "policy")
		}
	}
	for idp := range p.cfg.OIDC {
		if p.cfg.OIDC[idp].Issuer == "" && idp == "google" {
			p.cfg.OIDC[idp] = OIDC{Issuer: DefaultGoogleIssuer}
		}
	}
}

func (p *parser) sessionConfig(v any) {
	m, ok := v.(map[string]any)
	if !ok {
		p.add("identity.session", "", "", "want a map")
		return
	}
	sc := &p.cfg.Session
	for _, k := range slices.Sorted(maps.Keys(m)) {
		key := "identity.session." + k
		switch k {
		case "postgres_url":
			s, ok := m[k].(string)
			if !ok {
				p.add(key, "", "", "want a string")
				break
			}
			sc.PostgresURL = s
			if s == "" {
				break
			}
			if !strings.HasPrefix(s, "postgres://") && !strings.HasPrefix(s, "postgresql://") {
				p.add(key, "", "", "want a postgres:// or postgresql:// URL")
			} else if _, err := url.Parse(s); err != nil {
				var ue *url.Error
				if errors.As(err, &ue) {
					err = ue.Err
				}
				p.add(key, "", "", "not a URL: %v", err)
			}
		case "issuer", "audience", "redis_url":
			s, ok := m[k].(string)
			if !ok {
				p.add(key, "", "", "want a string")
			}
			switch k {
			case "issuer":
				sc.Issuer = s
			case "audience":
				sc.Audience = s
			default:
				sc.RedisURL = s
				if s == "" {
					break
				}
				if !strings.HasPrefix(s, "redis://") && !strings.HasPrefix(s, "rediss://") {
					p.add(key, "", "", "want a redis:// or rediss:// URL")
				} else if _, err := url.Parse(s); err != nil {
					// net/url's error repeats the URL, which may hold a password: keep only what is wrong.
					var ue *url.Error
					if errors.As(err, &ue) {
						err = ue.Err
					}
					p.add(key, "", "", "not a URL: %v", err)
				}
			}
		case "redis_tls":
			p.redisTLS(key, m[k])
		case "rate_limit":
			p.rateLimit(key, m[k])
		case "dpop":
			p.dpop(key, m[k])
		case "max_sessions_per_subject":
			n, err := strconv.Atoi(fmt.Sprint(m[k]))
			if err != nil || n < 0 {
				p.add(key, "", "", "want a number of sessions (0: no bound)")
			}
			sc.MaxSessionsPerSubject = max(n, 0)
		case "introspection_clients":
			switch a := m[k].(type) {
			case []any:
				for _, x := range a {
					xs, ok := x.(string)
					if !ok || xs == "" {
						p.add(key, "", "", "want a list of client certificate identities (a URI SAN such as a SPIFFE ID, or a subject)")
						break
					}
					sc.IntrospectionClients = append(sc.IntrospectionClients, xs)
				}
			case string: // from the environment: identities separated by spaces or commas
				sc.IntrospectionClients = strings.FieldsFunc(a, func(r rune) bool { return r == ' ' || r == ',' })
			default:
				p.add(key, "", "", "want a list of client certificate identities (a URI SAN such as a SPIFFE ID, or a subject)")
			}
		case "bind_refresh_to_client":
			b, ok := asBool(m[k])
			if !ok {
				p.add(key, "", "", "want true or false")
			}
			sc.UnboundRefresh = ok && !b
		case "bind_access_to_client":
			b, ok := asBool(m[k])
			if !ok {
				p.add(key, "", "", "want true or false")
			}
			sc.BindAccess = ok && b
		case "redis_allow_eviction":
			b, ok := asBool(m[k])
			if !ok {
				p.add(key, "", "", "want true or false")
			}
			sc.RedisAllowEviction = ok && b
		case "postgres_migrate":
			b, ok := asBool(m[k])
			if !ok {
				p.add(key, "", "", "want true or false")
			}
			sc.PostgresNoMigrate = ok && !b
		case "access_ttl", "refresh_ttl", "refresh_grace", "revalidate", "subject_cut_ttl":
			d, err := asDuration(m[k])
			if err != nil {
				p.add(key, "", "", "%v", err)
			}
			switch k {
			case "access_ttl":
				sc.AccessTTL = d
			case "refresh_ttl":
				sc.RefreshTTL = d
			case "revalidate":
				sc.Revalidate = d
			case "subject_cut_ttl":
				if d < 0 {
					p.add(key, "", "", "must not be negative")
				}
				sc.SubjectCutTTL = d
			default:
				sc.RefreshGrace = d
			}
		default:
			p.unknown(key, "", "", "issuer", "audience", "access_ttl", "refresh_ttl", "refresh_grace", "revalidate", "subject_cut_ttl", "max_sessions_per_subject", "bind_refresh_to_client", "bind_access_to_client", "dpop", "introspection_clients", "rate_limit", "redis_url", "redis_tls", "redis_allow_eviction", "postgres_url", "postgres_migrate")
		}
	}
	if sc.RedisURL != "" && sc.PostgresURL != "" {
		p.add("identity.session.postgres_url", "", "", "set together with identity.session.redis_url: choose one shared store")
	}
	if _, set := m["redis_allow_eviction"]; set && sc.RedisURL == "" {
		p.add("identity.session.redis_allow_eviction", "", "", "set, but identity.session.redis_url is not")
	}
	if sc.BindAccess && sc.UnboundRefresh {
		p.add("identity.session.bind_access_to_client", "", "", "set, but identity.session.bind_refresh_to_client is false: a refresh token any client may use would mint access tokens for it")
	}
	if _, set := m["postgres_migrate"]; set && sc.PostgresURL == "" {
		p.add("identity.session.postgres_migrate", "", "", "set, but identity.session.postgres_url is not")
	}
	if p.dpopShared && sc.RedisURL == "" && sc.PostgresURL == "" {
		p.add("identity.session.dpop.shared", "", "", "set, but no shared session store (identity.session.redis_url or postgres_url) holds the proofs")
	}
	if sc.RateLimit.Shared && sc.RedisURL == "" && sc.PostgresURL == "" {
		p.add("identity.session.rate_limit.shared", "", "", "set, but no shared session store (identity.session.redis_url or postgres_url) holds the buckets")
	}
	if sc.RedisTLS != (RedisTLS{}) && !strings.HasPrefix(sc.RedisURL, "rediss://") {
		p.add("identity.session.redis_tls", "", "", "set, but identity.session.redis_url is not a rediss:// URL")
	}
}

// DPoP configures DPoP proofs (identity.session.dpop).
type DPoP struct {
	// Disabled is enabled set to false: proofs are ignored and no session is bound to a key.
	Disabled bool
	// MaxAge is how old a proof may be (max_age; zero: dpop.DefaultMaxAge).
	MaxAge time.Duration
	// Origins are the public origins proofs may name in place of the runtime's own (origins:
	// "https://identity.example.com"), behind a proxy that rewrites the authority.
	Origins []string
	// Unshared is shared set to false: with a shared session store, proofs are remembered by each
	// replica alone (dpop.Config.Shared unset), saving a store round trip per DPoP call.
	Unshared bool
	// Nonce makes every proof carry a nonce the server issued (nonce: true; RFC 9449 §8, §9), so
	// that a key held for a moment cannot sign proofs for later; replicas sharing a session store
	// issue and accept the same nonces. NoncePeriod is how often the nonce changes (nonce_period;
	// zero: dpop.DefaultNoncePeriod).
	Nonce       bool
	NoncePeriod time.Duration
}

// RateLimit bounds each client's calls to the identity runtime (identity.session.rate_limit).
type RateLimit struct {
	// PerSecond is the sustained rate of a client's calls; Burst how many it may make at once
	// (default: PerSecond, at least 1).
	PerSecond float64
	Burst     int
	// Shared keeps the buckets in the shared session store (identity.session.redis_url or
	// postgres_url), so that the bound holds across every replica together instead of per replica.
	Shared bool
}

func (p *parser) rateLimit(key string, v any) {
	m, ok := v.(map[string]any)
	if !ok {
		p.add(key, "", "", "want a map (per_second, burst)")
		return
	}
	rl := &p.cfg.Session.RateLimit
	for _, f := range slices.Sorted(maps.Keys(m)) {
		switch f {
		case "per_second":
			n, err := strconv.ParseFloat(fmt.Sprint(m[f]), 64)
			if err != nil || n <= 0 || math.IsInf(n, 0) {
				p.add(key+"."+f, "", "", "want a positive number of calls per second")
				continue
			}
			rl.PerSecond = n
		case "burst":
			n, err := strconv.Atoi(fmt.Sprint(m[f]))
			if err != nil || n < 1 {
				p.add(key+"."+f, "", "", "want a positive whole number of calls")
				continue
			}
			rl.Burst = n
		case "shared":
			b, ok := p.flag(key+"."+f, m[f])
			if !ok {
				continue
			}
			rl.Shared = b
		default:
			p.unknown(key+"."+f, "", "", "burst", "per_second", "shared")
		}
	}
	if rl.PerSecond == 0 {
		p.add(key, "", "", "per_second is required")
	}
}

// flag reads the boolean at key, reporting it when it is not one.
func (p *parser) flag(key string, v any) (b, ok bool) {
	if b, ok = asBool(v); !ok {
		p.add(key, "", "", "want true or false")
	}
	return b, ok
}

func (p *parser) dpop(key string, v any) {
	m, ok := v.(map[string]any)
	if !ok {
		p.add(key, "", "", "want a map (enabled, max_age, origins, shared, nonce, nonce_period)")
		return
	}
	d := &p.cfg.Session.DPoP
	for _, f := range slices.Sorted(maps.Keys(m)) {
		switch f {
		case "enabled":
			b, ok := p.flag(key+"."+f, m[f])
			if !ok {
				continue
			}
			d.Disabled = !b
		case "max_age":
			age, err := asDuration(m[f])
			if err != nil || age <= 0 || age > 10*time.Minute {
				p.add(key+"."+f, "", "", "want a duration above zero and at most 10m (a proof is fresh for each call)")
				continue
			}
			d.MaxAge = age
		case "origins":
			var list []string
			switch a := m[f].(type) {
			case []any:
				for _, x := range a {
					xs, _ := x.(string)
					list = append(list, xs)
				}
			case string: // from the environment: origins separated by spaces or commas
				list = strings.FieldsFunc(a, func(r rune) bool { return r == ' ' || r == ',' })
			}
			if len(list) == 0 {
				p.add(key+"."+f, "", "", "want a list of origins (https://host[:port])")
				continue
			}
			for _, o := range list {
				u, err := url.Parse(o)
				if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
					p.add(key+"."+f, "", "", "%q is not an origin (https://host[:port])", o)
				}
			}
			d.Origins = list
		case "shared":
			b, ok := p.flag(key+"."+f, m[f])
			if !ok {
				continue
			}
			d.Unshared = !b
			p.dpopShared = b
		case "nonce":
			b, ok := p.flag(key+"."+f, m[f])
			if !ok {
				continue
			}
			d.Nonce = b
		case "nonce_period":
			period, err := asDuration(m[f])
			if err != nil || period < 10*time.Second || period > time.Hour {
				p.add(key+"."+f, "", "", "want a duration from 10s to 1h (a nonce is accepted for two periods)")
				continue
			}
			d.NoncePeriod = period
		default:
			p.unknown(key+"."+f, "", "", "enabled", "max_age", "nonce", "nonce_period", "origins", "shared")
		}
	}
	if d.NoncePeriod != 0 && !d.Nonce {
		p.add(key+".nonce_period", "", "", "set, but nonce is not true: proofs carry no nonce")
	}
}

func (p *parser) redisTLS(key string, v any) {
	m, ok := v.(map[string]any)
	if !ok {
		p.add(key, "", "", "want a map (ca_file, server_name, cert_file, key_file)")
		return
	}
	t := &p.cfg.Session.RedisTLS
	p.stringFields(key, m, map[string]*string{
		"ca_file": &t.CAFile, "server_name": &t.ServerName, "cert_file": &t.CertFile, "key_file": &t.KeyFile,
	})
	if (t.CertFile == "") != (t.KeyFile == "") {
		p.add(key, "", "", "cert_file and key_file go together")
	}
}

// stringFields reads the members of m (the map at key) into fields, by name. A member fields does not
// name, or whose value is not a string, is a problem: a number or a boolean written without quotes
// is refused rather than read as an empty string.
func (p *parser) stringFields(key string, m map[string]any, fields map[string]*string) {
	for _, f := range slices.Sorted(maps.Keys(m)) {
		dst, ok := fields[f]
		if !ok {
			p.unknown(key+"."+f, "", "", slices.Sorted(maps.Keys(fields))...)
			continue
		}
		s, ok := m[f].(string)
		if !ok {
			p.add(key+"."+f, "", "", "want a string (quote numbers and booleans)")
			continue
		}
		*dst = s
	}
}

func (p *parser) policy(v any) {
	m, ok := v.(map[string]any)
	if !ok {
		p.add("identity.policy", "", "", "want a map with rules")
		return
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if k != "rules" {
			p.unknown("identity.policy."+k, "", "", "rules")
			continue
		}
		rules, ok := m[k].([]any)
		if !ok {
			p.add("identity.policy.rules", "", "", "want a list of rules")
			continue
		}
		for i, r := range rules {
			key := fmt.Sprintf("identity.policy.rules.%d", i)
			rm, ok := r.(map[string]any)
			if !ok {
				p.add(key, "", "", "want a map with subject, tenant, scope, action, for_subject, effect")
				continue
			}
			var rule PolicyRule
			// An empty field matches anything: a value that is not a string must be refused, not
			// read as empty (an unquoted numeric subject would have allowed every subject).
			p.stringFields(key, rm, map[string]*string{
				"subject": &rule.Subject, "tenant": &rule.Tenant, "scope": &rule.Scope,
				"action": &rule.Action, "for_subject": &rule.ForSubject, "effect": &rule.Effect,
			})
			if rule.Effect != "allow" && rule.Effect != "deny" {
				p.add(key+".effect", "", "", "want allow or deny")
			}
			p.cfg.Policy = append(p.cfg.Policy, rule)
		}
	}
}

func (p *parser) secrets(prefix string, m map[string]any) {
	for _, key := range slices.Sorted(maps.Keys(m)) {
		full := prefix + "." + key
		v := m[key]
		switch {
		case prefix == "identity.secrets" && key == "default":
			s, ok := v.(string)
			if !ok {
				p.add(full, "", "", "want \"provider\" or \"provider:location-prefix\"")
				continue
			}
			prov, loc, _ := strings.Cut(s, ":")
			p.cfg.Default = &Binding{Key: full, Provider: prov, Location: strings.TrimSuffix(loc, "/")}
			if prov == "" {
				p.add(full, "", "", "want \"provider\" or \"provider:location-prefix\"")
			}
		case strings.HasPrefix(full, "identity.secrets.oidc.") && strings.Count(full, ".") == 4 && key == "issuer":
			idp := strings.Split(full, ".")[3]
			s, _ := v.(string)
			if !strings.HasPrefix(s, "https://") && !strings.HasPrefix(s, "http://127.0.0.1") && !strings.HasPrefix(s, "http://localhost") {
				p.add(full, "", "", "want an https:// issuer URL")
			}
			o := p.cfg.OIDC[idp]
			o.Issuer = s
			p.cfg.OIDC[idp] = o
		default:
			if sub, ok := v.(map[string]any); ok && !isLongBinding(sub) {
				if strings.HasPrefix(full, "identity.secrets.oidc.") && strings.Count(full, ".") == 3 {
					if _, ok := p.cfg.OIDC[key]; !ok {
						p.cfg.OIDC[key] = OIDC{}
					}
				}
				p.secrets(full, sub)
				continue
			}
			kind := KindSecret
			if strings.HasSuffix(key, "signing") || strings.HasSuffix(key, "signing_keys") {
				kind = KindKeySet
			}
			p.binding(full, v, kind)
		}
	}
}

func isLongBinding(m map[string]any) bool {
	_, ok := m["provider"]
	return ok
}

// binding parses "provider:location" or {provider, location, kind}.
func (p *parser) binding(key string, v any, kind Kind) {
	var prov, loc string
	perSession := false
	switch b := v.(type) {
	case string:
		var ok bool
		prov, loc, ok = strings.Cut(b, ":")
		if !ok {
			p.add(key, "", "", "want \"provider:location\" (e.g. \"env:GOOGLE_CLIENT_ID\")")
			return
		}
	case map[string]any:
		for _, f := range slices.Sorted(maps.Keys(b)) {
			switch f {
			case "provider":
				prov, _ = b[f].(string)
			case "location":
				loc, _ = b[f].(string)
			case "per_session":
				ps, ok := asBool(b[f])
				if !ok {
					p.add(key+".per_session", prov, loc, "want true or false")
				} else if kind != KindCredentials {
					p.add(key+".per_session", prov, loc, "per_session applies to credentials under identity.credentials")
				}
				perSession = ps
			case "kind":
				k, _ := b[f].(string)
				switch Kind(k) {
				case KindKeySet, KindSecret:
					if kind == KindCredentials {
						p.add(key+".kind", prov, loc, "credentials bindings have kind credentials")
					} else {
						kind = Kind(k)
					}
				case KindCredentials:
					if kind != KindCredentials {
						p.add(key+".kind", prov, loc, "credentials belong under identity.credentials")
					}
				default:
					p.add(key+".kind", prov, loc, "want keyset or secret")
				}
			default:
				p.unknown(key+"."+f, prov, loc, "provider", "location", "kind", "per_session")
			}
		}
	default:
		p.add(key, "", "", "want \"provider:location\" or a map with provider and location")
		return
	}
	if prov == "" {
		p.add(key, "", loc, "binding names no provider")
	}
	if loc == "" {
		p.add(key, prov, "", "binding names no location")
	}
	p.cfg.Bindings[key] = Binding{Key: key, Provider: prov, Location: loc, Kind: kind, PerSession: perSession}
}

// resolveProviders checks that every binding names a provider, declaring built-ins implicitly, and
// applies the production rules.
func (p *parser) resolveProviders() {
	check := func(b Binding) {
		if b.Provider == "" {
			return
		}
		if _, ok := p.cfg.Providers[b.Provider]; ok {
			return
		}
		if isBuiltin(b.Provider) {
			p.cfg.Providers[b.Provider] = Provider{Name: b.Provider, Type: b.Provider, Implicit: true}
			return
		}
		names := append(slices.Sorted(maps.Keys(p.cfg.Providers)), BuiltinTypes...)
		if s := suggest(b.Provider, names); s != "" {
			p.add(b.Key, b.Provider, b.Location, "unknown provider %q: did you mean %q? (declare it under providers; built-in types: %v)", b.Provider, s, BuiltinTypes)
			return
		}
		p.add(b.Key, b.Provider, b.Location, "unknown provider %q: declare it under providers (built-in types: %v)", b.Provider, BuiltinTypes)
	}
	for _, key := range slices.Sorted(maps.Keys(p.cfg.Bindings)) {
		check(p.cfg.Bindings[key])
	}
	if p.cfg.Default != nil {
		check(*p.cfg.Default)
	}
	if p.cfg.Production {
		for _, name := range slices.Sorted(maps.Keys(p.cfg.Providers)) {
			if p.cfg.Providers[name].Type == "memory" {
				p.add("providers."+name, name, "", "the memory provider is forbidden when production is true")
			}
		}
	}
}

// Resolve returns the binding of a logical key under identity.secrets ("session_signing",
// "oidc.google.client_id" or "oidc/google/client_id"; the "identity.secrets." prefix is optional) or of
// a credentials role ("identity.credentials.orders"). Keys that bind nothing resolve through the default
// binding: its provider, at its location prefix joined with the key's path ("oidc/google/client_id").
func (c *Config) Resolve(key string) (Binding, error) {
	full := normalizeKey(key)
	if b, ok := c.Bindings[full]; ok {
		return b, nil
	}
	if strings.HasPrefix(full, "identity.secrets.") && c.Default != nil {
		rel := strings.ReplaceAll(strings.TrimPrefix(full, "identity.secrets."), ".", "/")
		loc := rel
		if c.Default.Location != "" {
			loc = c.Default.Location + "/" + rel
		}
		kind := KindSecret
		if strings.HasSuffix(full, "signing") {
			kind = KindKeySet
		}
		return Binding{Key: full, Provider: c.Default.Provider, Location: loc, Kind: kind}, nil
	}
	return Binding{}, provider.NewError(provider.ErrNotFound, full, errors.New("not configured and no identity.secrets.default"))
}

func normalizeKey(key string) string {
	key = strings.ReplaceAll(key, "/", ".")
	if strings.HasPrefix(key, "identity.") {
		return key
	}
	return "identity.secrets." + key
}

// Keys returns every bound key, sorted, plus identity.secrets.session_signing when it resolves only
// through the default binding.
func (c *Config) Keys() []string {
	keys := slices.Sorted(maps.Keys(c.Bindings))
	if _, ok := c.Bindings["identity.secrets."+SessionSigningKey]; !ok && c.Default != nil {
		keys = append([]string{"identity.secrets." + SessionSigningKey}, keys...)
	}
	return keys
}

func asBool(v any) (bool, bool) {
	switch b := v.(type) {
	case bool:
		return b, true
	case string:
		r, err := strconv.ParseBool(b)
		return r, err == nil
	}
	return false, false
}

func asDuration(v any) (time.Duration, error) {
	switch d := v.(type) {
	case string:
		r, err := time.ParseDuration(d)
		if err != nil {
			return 0, fmt.Errorf("want a duration like \"30s\" or \"-1s\" (off)")
		}
		return r, nil
	case int, int64, float64:
		return 0, fmt.Errorf("want a duration with a unit, like \"30s\"")
	}
	return 0, fmt.Errorf("want a duration like \"30s\"")
}
