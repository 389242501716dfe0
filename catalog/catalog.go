package catalog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/keyfort/keyfort/config"
	"github.com/keyfort/keyfort/internal/harden"
	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/provider/plugin"
)

// HostBinaryEnv names the environment variable that points at the provider-host binary.
const HostBinaryEnv = "KEYFORT_PROVIDER_HOST"

// EphemeralProvider is the name of the zero-configuration provider.
const EphemeralProvider = "ephemeral"

// Options configure [Open].
type Options struct {
	// HostBinary is the provider-host binary that serves built-in types. Empty: $KEYFORT_PROVIDER_HOST,
	// then "provider-host" on PATH.
	HostBinary string
	// InProcess lists built-in types to serve inside this process over the plugin transport instead of
	// starting provider-host (provider-host itself does this for nothing; tests and embedders may).
	InProcess map[string]provider.Factory
	// Verify resolves every configured key after start and fails Open, naming each key whose material
	// is missing or unreachable.
	Verify bool
	// KeepGoing opens the catalog even when providers fail to start: the keys bound to such a
	// provider then resolve to its start error (see StartErrors), so that a report such as
	// provider-host check names every key and every failure at once. Without it, Open fails.
	KeepGoing bool
	// Logger: nil means slog.Default(). Metrics: nil means unregistered collectors.
	Logger  *slog.Logger
	Metrics *provider.Metrics
	// Now is the clock of the providers' caches; nil: time.Now.
	Now func() time.Time
	// TracerProvider receives the providers' spans (provider.ClientConfig.TracerProvider); nil: none.
	TracerProvider trace.TracerProvider
}

// Catalog holds the running providers of one configuration. It is safe for concurrent use.
type Catalog struct {
	cfg       *config.Config
	clients   map[string]*provider.Client
	startErrs map[string]*StartError // with Options.KeepGoing: providers that did not start
	log       *slog.Logger

	closeOnce sync.Once
	closeErr  error
}

// Open starts every provider of cfg. On any failure it stops what it started and returns one error
// naming every provider that failed.
func Open(ctx context.Context, cfg *config.Config, opts Options) (*Catalog, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	c := &Catalog{cfg: cfg, clients: map[string]*provider.Client{}, log: log}
	if cfg.Empty() {
		if cfg.Production {
			return nil, provider.NewError(provider.ErrInvalidConfig, "production", errors.New("no configuration; the ephemeral key is forbidden in production"))
		}
		log.Warn("KEYFORT HAS NO CONFIGURATION: session tokens are signed with an EPHEMERAL in-memory key that is " +
			"lost on restart and differs between replicas. This is for first runs and tests only; configure " +
			"identity.secrets.session_signing (see docs/configuration.md) before anything else.")
		cl, err := provider.NewClient(newEphemeral(), provider.ClientConfig{
			Name: EphemeralProvider, Metrics: opts.Metrics, Logger: log, Now: opts.Now, CacheTTL: -1, TracerProvider: opts.TracerProvider,
		})
		if err != nil {
			return nil, err
		}
		c.clients[EphemeralProvider] = cl
		return c, nil
	}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(cfg.Providers)) {
		pc := cfg.Providers[name]
		driver, err := start(ctx, cfg, pc, opts, log)
		if err != nil {
			errs = append(errs, fmt.Errorf("provider %q: %w", name, err))
			c.failedToStart(name, err)
			continue
		}
		cl, err := provider.NewClient(driver, provider.ClientConfig{
			Name: name, Timeout: pc.Timeout, CacheTTL: pc.CacheTTL, StaleBudget: pc.StaleBudget,
			Metrics: opts.Metrics, Logger: log, Now: opts.Now, TracerProvider: opts.TracerProvider,
		})
		if err != nil {
			_ = driver.Close()
			errs = append(errs, err)
			c.failedToStart(name, err)
			continue
		}
		c.clients[name] = cl
	}
	if len(errs) > 0 && !opts.KeepGoing {
		_ = c.Close()
		return nil, fmt.Errorf("keyfort: cannot start providers: %w", errors.Join(errs...))
	}
	if opts.Verify {
		var failed []string
		for _, r := range c.Check(ctx) {
			if r.Err != nil {
				failed = append(failed, r.String())
			}
		}
		if len(failed) > 0 {
			_ = c.Close()
			return nil, &MissingError{Lines: failed}
		}
	}
	return c, nil
}

// MissingError reports configured keys whose material could not be resolved at start-up.
type MissingError struct {
	Lines []string
}

// Error lists every missing key, one per line, with its provider and location.
func (e *MissingError) Error() string {
	return "keyfort: configured material is missing or unreachable:\n  " + strings.Join(e.Lines, "\n  ")
}

// Is makes errors.Is(err, provider.ErrNotFound) true.
func (e *MissingError) Is(target error) bool { return target == provider.ErrNotFound }

func start(ctx context.Context, cfg *config.Config, pc config.Provider, opts Options, log *slog.Logger) (provider.IdentitySecretMaterialProvider, error) {
	settings, err := provider.SettingsFromMap(pc.Name, pc.Settings)
	if err != nil {
		return nil, err
	}
	onRestart := func(reason string) { opts.Metrics.Restarted(pc.Name, reason) }
	environ := pluginEnviron(cfg, pc)
	if environ == nil && !slices.Contains(pc.InheritEnv, "*") {
		log.Warn("keyfort: an env provider serves identity.secrets.default with no location and no prefix, so its plugin "+
			"process receives the host's whole environment; give the default a location (env:app/secrets) or the provider a prefix",
			slog.String("provider", pc.Name))
	}
	if pc.Plugin != "" {
		if err := checkReplaceable(cfg, pc.Name, pc.Plugin, log); err != nil {
			return nil, err
		}
		return plugin.Launch(ctx, plugin.Config{
			Name: pc.Name, Path: pc.Plugin, Args: pc.Args, SHA256: pc.SHA256, Settings: settings, Logger: log, MaxProcs: pc.MaxProcs,
			Environ:   environ,
			OnRestart: onRestart, ProbeTimeout: pc.ProbeTimeout, CloseTimeout: pc.CloseTimeout,
		})
	}
	if f, ok := opts.InProcess[pc.Type]; ok {
		return plugin.ServeInProcess(ctx, plugin.InProcessConfig{Name: pc.Name, Factory: f, Settings: settings, Logger: log, TracerProvider: opts.TracerProvider})
	}
	bin, err := hostBinary(opts.HostBinary)
	if err != nil {
		return nil, err
	}
	if err := checkReplaceable(cfg, pc.Name, bin, log); err != nil {
		return nil, err
	}
	return plugin.Launch(ctx, plugin.Config{
		Name: pc.Name, Path: bin, Args: []string{"plugin", pc.Type}, Settings: settings, Logger: log, MaxProcs: pc.MaxProcs,
		Environ:   environ,
		OnRestart: onRestart, ProbeTimeout: pc.ProbeTimeout, CloseTimeout: pc.CloseTimeout,
	})
}

// checkReplaceable refuses, with production: true, a plugin binary that users other than its
// owner could replace (harden.ReplaceableBy: the file or a directory above it writable by a group
// or by everyone), since the process started from it receives the provider's settings and serves
// the secrets; elsewhere it warns. Pinning sha256 catches a replaced binary at its next start;
// this catches the binary that can be replaced before it is.
func checkReplaceable(cfg *config.Config, name, bin string, log *slog.Logger) error {
	err := harden.ReplaceableBy(bin)
	if err == nil {
		return nil
	}
	if cfg.Production {
		return provider.NewError(provider.ErrPermissionDenied, name,
			fmt.Errorf("plugin binary refused (production: true): other users could replace it: %w", err))
	}
	log.Warn("keyfort: other users could replace this plugin binary; production: true refuses it",
		slog.String("provider", name), slog.String("plugin", bin), slog.String("reason", err.Error()))
	return nil
}

func hostBinary(explicit string) (string, error) {
	if explicit != "" {
		return explicit, nil
	}
	if p := os.Getenv(HostBinaryEnv); p != "" {
		return p, nil
	}
	p, err := exec.LookPath("provider-host")
	if err != nil {
		return "", provider.NewError(provider.ErrInvalidConfig, "provider-host",
			fmt.Errorf("built-in providers run in the provider-host binary, which is not on PATH; install it (go install github.com/keyfort/keyfort/cmd/provider-host) or set %s", HostBinaryEnv))
	}
	return p, nil
}

// Config returns the configuration the catalog runs.
func (c *Catalog) Config() *config.Config { return c.cfg }

// Client returns the client of provider instance name.
func (c *Catalog) Client(name string) (*provider.Client, bool) {
	cl, ok := c.clients[name]
	return cl, ok
}

// Refresh refetches every provider's cached material now (provider.Client.Refresh), providers in
// parallel, and returns the failures joined; material that could not be refetched is still served
// as before.
func (c *Catalog) Refresh(ctx context.Context) error {
	errs := make([]error, 0, len(c.clients))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, cl := range c.clients {
		wg.Go(func() {
			if err := cl.Refresh(ctx); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Resolve returns the binding of a logical key and the client of its provider.
func (c *Catalog) Resolve(key string) (config.Binding, *provider.Client, error) {
	if c.cfg.Empty() {
		b := config.Binding{Key: "identity.secrets." + strings.TrimPrefix(strings.ReplaceAll(key, "/", "."), "identity.secrets."),
			Provider: EphemeralProvider, Location: key, Kind: config.KindSecret}
		if strings.HasSuffix(key, "signing") {
			b.Kind = config.KindKeySet
		}
		return b, c.clients[EphemeralProvider], nil
	}
	b, err := c.cfg.Resolve(key)
	if err != nil {
		return b, nil, err
	}
	cl, ok := c.clients[b.Provider]
	if !ok {
		if err, failed := c.startErrs[b.Provider]; failed {
			return b, nil, err
		}
		return b, nil, provider.NewError(provider.ErrInvalidConfig, b.Key, fmt.Errorf("provider %q is not running", b.Provider))
	}
	return b, cl, nil
}

// failedToStart records why provider name did not start, as the error of the keys bound to it.
func (c *Catalog) failedToStart(name string, err error) {
	if c.startErrs == nil {
		c.startErrs = map[string]*StartError{}
	}
	c.startErrs[name] = &StartError{Provider: name, Err: err}
}

// StartError is why a provider did not start (Options.KeepGoing): the error of every key bound to
// it. errors.Is sees the provider's error kind through it.
type StartError struct {
	Provider string
	Err      error
}

func (e *StartError) Error() string {
	return fmt.Sprintf("provider %q did not start: %v", e.Provider, e.Err)
}

func (e *StartError) Unwrap() error { return e.Err }

// StartErrors returns, by provider name, why providers did not start (Options.KeepGoing); nil when
// every provider runs.
func (c *Catalog) StartErrors() map[string]*StartError {
	if len(c.startErrs) == 0 {
		return nil
	}
	return maps.Clone(c.startErrs)
}

// SigningKeys returns the key set of a logical key ("session_signing").
func (c *Catalog) SigningKeys(ctx context.Context, key string) (provider.KeySet, error) {
	b, cl, err := c.Resolve(key)
	if err != nil {
		return provider.KeySet{}, err
	}
	ks, err := cl.SigningKeys(ctx, b.Location)
	return ks, withKey(err, b)
}

// Secret returns the secret of a logical key ("oidc.google.client_id").
func (c *Catalog) Secret(ctx context.Context, key string) (provider.Secret, error) {
	b, cl, err := c.Resolve(key)
	if err != nil {
		return provider.Secret{}, err
	}
	s, err := cl.Secret(ctx, b.Location)
	return s, withKey(err, b)
}

// Credentials returns credentials for a role under identity.credentials, on behalf of identity when
// it is not empty. Renew and revoke them through the returned client.
func (c *Catalog) Credentials(ctx context.Context, role string, identity provider.Sensitive) (provider.Credentials, *provider.Client, error) {
	key := role
	if !strings.HasPrefix(key, "identity.") {
		key = "identity.credentials." + role
	}
	b, cl, err := c.Resolve(key)
	if err != nil {
		return provider.Credentials{}, nil, err
	}
	cr, err := cl.Credentials(ctx, provider.CredentialRequest{Role: b.Location, Identity: identity})
	return cr, cl, withKey(err, b)
}

// KeyError names the logical key an error is about, on top of the provider error.
type KeyError struct {
	Key string
	Err error
}

// Error names the key, then the provider's error.
func (e *KeyError) Error() string { return "key " + e.Key + ": " + e.Err.Error() }

// Unwrap returns the provider error.
func (e *KeyError) Unwrap() error { return e.Err }

func withKey(err error, b config.Binding) error {
	if err == nil {
		return nil
	}
	return &KeyError{Key: b.Key, Err: err}
}

// Close stops every provider.
func (c *Catalog) Close() error {
	c.closeOnce.Do(func() {
		var errs []error
		for _, name := range slices.Sorted(maps.Keys(c.clients)) {
			if err := c.clients[name].Close(); err != nil {
				errs = append(errs, err)
			}
		}
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}
