package env

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"

	"github.com/keyfort/keyfort/provider"
)

// Config configures the env provider (the settings block of a provider with type: env).
type Config struct {
	// Prefix is prepended to every (normalised) location: prefix "APP_" turns "db_password" into
	// APP_DB_PASSWORD.
	Prefix string `json:"prefix" koanf:"prefix"`
	// LookupEnv reads a variable; nil: os.LookupEnv. Environ lists all variables; nil: os.Environ.
	LookupEnv func(string) (string, bool) `json:"-" koanf:"-"`
	Environ   func() []string             `json:"-" koanf:"-"`
}

// Provider reads material from environment variables. It is safe for concurrent use.
type Provider struct {
	prefix  string
	lookup  func(string) (string, bool)
	environ func() []string
	closed  atomic.Bool
}

var (
	_ provider.IdentitySecretMaterialProvider = (*Provider)(nil)
	_ provider.HealthChecker                  = (*Provider)(nil)
	_ provider.Factory                        = Factory
)

// Factory builds an env provider from Keyfort settings; provider-host lists it as the built-in "env".
func Factory(ctx context.Context, s provider.Settings) (provider.IdentitySecretMaterialProvider, error) {
	var cfg Config
	if err := s.Decode(&cfg); err != nil {
		return nil, err
	}
	return New(ctx, cfg)
}

// New creates an env provider.
func New(_ context.Context, cfg Config) (*Provider, error) {
	if cfg.Prefix != "" && Normalize(cfg.Prefix) != cfg.Prefix {
		return nil, provider.NewError(provider.ErrInvalidConfig, "prefix",
			fmt.Errorf("prefix %q is not an environment variable name prefix (want %q)", cfg.Prefix, Normalize(cfg.Prefix)))
	}
	p := &Provider{prefix: cfg.Prefix, lookup: cfg.LookupEnv, environ: cfg.Environ}
	if p.lookup == nil {
		p.lookup = os.LookupEnv
	}
	if p.environ == nil {
		p.environ = os.Environ
	}
	return p, nil
}

// Normalize turns a location into a variable name: '/', '.' and '-' become '_', letters are upper-cased.
func Normalize(location string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '/' || r == '.' || r == '-':
			return '_'
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		}
		return r
	}, location)
}

func (p *Provider) variable(location string) (string, error) {
	if p.closed.Load() {
		return "", provider.NewError(provider.ErrClosed, location, nil)
	}
	name := p.prefix + Normalize(location)
	if name == "" || strings.ContainsAny(name, "= \x00") {
		return "", provider.NewError(provider.ErrInvalidArgument, location, errors.New("not a valid environment variable name"))
	}
	return name, nil
}

// value reads variable name, decoding a "base64:" prefix. Errors name the variable, never its value.
func (p *Provider) value(name string) ([]byte, error) {
	v, ok := p.lookup(name)
	if !ok {
		return nil, provider.NewError(provider.ErrNotFound, name, errors.New("environment variable is not set"))
	}
	if v == "" {
		return nil, provider.NewError(provider.ErrNotFound, name, errors.New("environment variable is empty"))
	}
	return decode(name, v)
}

func decode(name, v string) ([]byte, error) {
	if rest, ok := strings.CutPrefix(v, "base64:"); ok {
		rest = strings.TrimSpace(rest)
		b, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			b, err = base64.RawStdEncoding.DecodeString(rest)
		}
		if err != nil {
			return nil, provider.NewError(provider.ErrInvalidConfig, name, errors.New("value has the base64: prefix but is not valid base64"))
		}
		return b, nil
	}
	return []byte(v), nil
}

// Secret returns the value of the location's variable.
func (p *Provider) Secret(ctx context.Context, location string) (provider.Secret, error) {
	if err := ctx.Err(); err != nil {
		return provider.Secret{}, provider.NewError(provider.ErrUnavailable, location, err)
	}
	name, err := p.variable(location)
	if err != nil {
		return provider.Secret{}, err
	}
	v, err := p.value(name)
	if err != nil {
		return provider.Secret{}, err
	}
	return provider.Secret{Name: name, Value: provider.NewSensitive(v)}, nil
}

// SigningKeys returns the active key from the location's variable and verification keys from
// NAME_PREVIOUS.
func (p *Provider) SigningKeys(ctx context.Context, location string) (provider.KeySet, error) {
	if err := ctx.Err(); err != nil {
		return provider.KeySet{}, provider.NewError(provider.ErrUnavailable, location, err)
	}
	name, err := p.variable(location)
	if err != nil {
		return provider.KeySet{}, err
	}
	raw, err := p.value(name)
	if err != nil {
		return provider.KeySet{}, err
	}
	var alg provider.Algorithm
	if a, ok := p.lookup(name + "_ALG"); ok && a != "" {
		if alg, err = provider.ParseAlgorithm(a); err != nil {
			return provider.KeySet{}, provider.NewError(provider.ErrInvalidConfig, name+"_ALG", err)
		}
	}
	active, err := parseOne(name, alg, raw)
	if err != nil {
		return provider.KeySet{}, err
	}
	active.Version = "current"
	ks := provider.KeySet{Name: name, ActiveID: active.ID, Keys: []provider.Key{active}}
	if prevRaw, ok := p.lookup(name + "_PREVIOUS"); ok && strings.TrimSpace(prevRaw) != "" {
		prev, err := parseMany(name+"_PREVIOUS", active.Algorithm, prevRaw)
		if err != nil {
			return provider.KeySet{}, err
		}
		for _, k := range prev {
			if _, dup := ks.Lookup(k.ID); dup {
				continue
			}
			k.Version = "previous"
			ks.Keys = append(ks.Keys, k)
		}
	}
	return ks, nil
}

func parseOne(name string, alg provider.Algorithm, raw []byte) (provider.Key, error) {
	isPEM := bytes.HasPrefix(bytes.TrimSpace(raw), []byte("-----BEGIN"))
	if alg == "" && !isPEM {
		alg = provider.HS256
	}
	k, err := provider.ParseKey(alg, raw)
	if err != nil {
		return provider.Key{}, provider.NewError(provider.ErrInvalidConfig, name, err)
	}
	return k, nil
}

func parseMany(name string, alg provider.Algorithm, raw string) ([]provider.Key, error) {
	var keys []provider.Key
	if alg != provider.HS256 {
		rest := []byte(raw)
		for {
			block, r := pem.Decode(rest)
			if block == nil {
				break
			}
			k, err := parseOne(name, alg, pem.EncodeToMemory(block))
			if err != nil {
				return nil, err
			}
			keys = append(keys, k)
			rest = r
		}
		if len(bytes.TrimSpace(rest)) > 0 || len(keys) == 0 {
			return nil, provider.NewError(provider.ErrInvalidConfig, name, errors.New("want one or more PEM blocks"))
		}
		return keys, nil
	}
	for _, line := range strings.Split(raw, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		b, err := decode(name, line)
		if err != nil {
			return nil, err
		}
		k, err := parseOne(name, provider.HS256, b)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// Credentials returns static credentials from ROLE_USERNAME and ROLE_PASSWORD or ROLE_TOKEN.
func (p *Provider) Credentials(ctx context.Context, req provider.CredentialRequest) (provider.Credentials, error) {
	if err := ctx.Err(); err != nil {
		return provider.Credentials{}, provider.NewError(provider.ErrUnavailable, req.Role, err)
	}
	name, err := p.variable(req.Role)
	if err != nil {
		return provider.Credentials{}, err
	}
	c := provider.Credentials{Role: req.Role}
	prefix := name + "_"
	for _, kv := range p.environ() {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, prefix) || v == "" {
			continue
		}
		field := k[len(prefix):]
		b, err := decode(k, v)
		if err != nil {
			return provider.Credentials{}, err
		}
		switch field {
		case "USERNAME":
			c.Username = string(b)
		case "PASSWORD":
			c.Password = provider.NewSensitive(b)
		case "TOKEN":
			c.Token = provider.NewSensitive(b)
		default:
			if c.Extra == nil {
				c.Extra = map[string]provider.Sensitive{}
			}
			c.Extra[strings.ToLower(field)] = provider.NewSensitive(b)
		}
	}
	switch {
	case c.Username == "" && c.Token.IsZero():
		return provider.Credentials{}, provider.NewError(provider.ErrNotFound, prefix+"USERNAME",
			fmt.Errorf("credentials %q need %sUSERNAME with %sPASSWORD, or %sTOKEN", req.Role, prefix, prefix, prefix))
	case c.Username != "" && c.Password.IsZero():
		return provider.Credentials{}, provider.NewError(provider.ErrNotFound, prefix+"PASSWORD",
			fmt.Errorf("credentials %q have %sUSERNAME but no %sPASSWORD", req.Role, prefix, prefix))
	}
	return c, nil
}

// Renew returns static credentials' zero lease unchanged: the env provider issues no leases.
func (p *Provider) Renew(_ context.Context, l provider.Lease) (provider.Lease, error) {
	return provider.RenewStatic(l, p.closed.Load())
}

// Revoke does nothing: the env provider issues no leases.
func (p *Provider) Revoke(_ context.Context, l provider.Lease) error {
	return provider.RevokeStatic(l, p.closed.Load())
}

// Health is nil while the provider is open.
func (p *Provider) Health(context.Context) error {
	if p.closed.Load() {
		return provider.NewError(provider.ErrClosed, "", nil)
	}
	return nil
}

// Close makes later calls fail with provider.ErrClosed.
func (p *Provider) Close() error {
	p.closed.Store(true)
	return nil
}
