package vault

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/api"
	"golang.org/x/sync/errgroup"

	"github.com/keyfort/keyfort/internal/tracedhttp"
	"github.com/keyfort/keyfort/provider"
)

// Provider serves material from Vault. It is safe for concurrent use.
type Provider struct {
	s    settings
	name string
	log  *slog.Logger
	now  func() time.Time

	client *api.Client // carries the provider's own token, kept fresh by maintain

	bg       context.Context
	stop     context.CancelFunc
	wg       sync.WaitGroup
	closed   atomic.Bool
	loggedIn bool // the token came from a login (revoked on Close), not from configuration

	mounts sync.Map // mount path → kvMount
	// transit holds, by transit location, the versions of its key set last read (kid → version):
	// a kid names one public key, so one version, for good, and Sign needs no read of the key
	// before each signature.
	transit sync.Map // location → map[string]transitVersion

	mu       sync.Mutex
	sessions map[string]*session // lease id → the per-session token it was issued under
}

var (
	_ provider.IdentitySecretMaterialProvider = (*Provider)(nil)
	_ provider.Signer                         = (*Provider)(nil)
	_ provider.HealthChecker                  = (*Provider)(nil)
	_ provider.KeyRotator                     = (*Provider)(nil)
	_ provider.Factory                        = Factory
)

// Factory builds a vault provider from Keyfort settings; provider-host lists it as the built-in "vault".
func Factory(ctx context.Context, s provider.Settings) (provider.IdentitySecretMaterialProvider, error) {
	var cfg Config
	if err := s.Decode(&cfg); err != nil {
		return nil, err
	}
	return New(ctx, s.Name, cfg)
}

// New connects to Vault and logs in. A login that fails is an error here: misconfiguration fails at
// start-up, not at the first request.
func New(ctx context.Context, name string, cfg Config) (*Provider, error) {
	if name == "" {
		name = "vault"
	}
	s, err := cfg.validate(name)
	if err != nil {
		return nil, err
	}
	vc := api.DefaultConfig()
	vc.Address = s.Address
	vc.Timeout = s.requestTimeout
	vc.MaxRetries = 0 // provider.Client and the caller own retries and deadlines
	if s.TLS != (TLSConfig{}) {
		if err := vc.ConfigureTLS(&api.TLSConfig{
			CACert: s.TLS.CAFile, TLSServerName: s.TLS.ServerName,
			ClientCert: s.TLS.ClientCertFile, ClientKey: s.TLS.ClientKeyFile, Insecure: s.TLS.InsecureSkipVerify,
		}); err != nil {
			return nil, provider.NewError(provider.ErrInvalidConfig, "tls", fmt.Errorf("tls settings: %v", err))
		}
	}
	// A client span per request to Vault made in a traced call, under the call's span (with its
	// tracer provider); untraced requests go straight out. Its URL carries a path, never the
	// token (a header).
	vc.HttpClient.Transport = tracedhttp.Transport(vc.HttpClient.Transport)
	client, err := api.NewClient(vc)
	if err != nil {
		return nil, provider.NewError(provider.ErrInvalidConfig, s.Address, err)
	}
	client.ClearToken() // never pick up VAULT_TOKEN implicitly: auth decides
	if s.Namespace != "" {
		client.SetNamespace(s.Namespace)
	}
	p := &Provider{
		s: s, name: name, client: client, now: time.Now,
		log: slog.Default().With(slog.String("provider", name)), sessions: map[string]*session{},
	}
	p.bg, p.stop = context.WithCancel(context.Background())
	auth, err := p.login(ctx)
	if err != nil {
		return nil, err
	}
	p.wg.Add(1)
	go p.maintain(auth)
	return p, nil
}

// Health asks Vault's sys/health.
func (p *Provider) Health(ctx context.Context) error {
	if p.closed.Load() {
		return provider.NewError(provider.ErrClosed, "", nil)
	}
	h, err := p.client.Sys().HealthWithContext(ctx)
	if err != nil {
		return classify("sys/health", "GET", "sys/health", err)
	}
	if h.Sealed {
		return provider.NewError(provider.ErrUnavailable, "sys/health", errors.New("vault is sealed"))
	}
	return nil
}

// closeConcurrency is how many session revocations Close runs at once.
const closeConcurrency = 16

// Close stops token maintenance, revokes every per-session token (and so their leases) and the
// provider's own login token, within a budget of 10 seconds.
func (p *Provider) Close() error {
	if !p.closed.CompareAndSwap(false, true) {
		return nil
	}
	p.stop()
	p.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p.mu.Lock()
	leases := p.sessions
	p.sessions = map[string]*session{}
	p.mu.Unlock()
	bySession := make(map[*session][]string, len(leases))
	for id, s := range leases {
		bySession[s] = append(bySession[s], id)
	}
	// Sessions are revoked concurrently (closeConcurrency at a time), so that thousands of them fit
	// in the budget; within a session, its leases first, synchronously, so that the credentials are
	// dead when Close returns, then its token, whose revocation catches anything this missed.
	var (
		errMu sync.Mutex
		errs  []error
		g     errgroup.Group
	)
	g.SetLimit(closeConcurrency)
	for s, ids := range bySession {
		g.Go(func() error {
			for _, id := range ids {
				_ = p.client.Sys().RevokeWithContext(ctx, id)
			}
			if err := revokeSession(ctx, s); err != nil {
				errMu.Lock()
				errs = append(errs, classify("session", "PUT", "auth/token/revoke-self", err))
				errMu.Unlock()
			}
			return nil
		})
	}
	_ = g.Wait()
	if p.loggedIn {
		if err := p.client.Auth().Token().RevokeSelfWithContext(ctx, ""); err != nil {
			errs = append(errs, classify("login", "PUT", "auth/token/revoke-self", err))
		}
	}
	return errors.Join(errs...)
}

func (p *Provider) check(ctx context.Context, location string) error {
	if p.closed.Load() {
		return provider.NewError(provider.ErrClosed, location, nil)
	}
	if location == "" {
		return provider.NewError(provider.ErrInvalidArgument, location, errors.New("empty location"))
	}
	if err := ctx.Err(); err != nil {
		return provider.NewError(provider.ErrUnavailable, location, err)
	}
	return nil
}
