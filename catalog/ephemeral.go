package catalog

import (
	"context"
	"errors"
	"sync"

	"github.com/keyfort/keyfort/provider"
)

// ephemeral serves one freshly generated EdDSA key set per name and nothing else. It exists only for
// the zero-configuration case and is never reachable from a configuration.
type ephemeral struct {
	mu     sync.Mutex
	sets   map[string]provider.KeySet
	closed bool
}

func newEphemeral() *ephemeral { return &ephemeral{sets: map[string]provider.KeySet{}} }

var _ provider.IdentitySecretMaterialProvider = (*ephemeral)(nil)

func (e *ephemeral) SigningKeys(ctx context.Context, name string) (provider.KeySet, error) {
	if err := ctx.Err(); err != nil {
		return provider.KeySet{}, provider.NewError(provider.ErrUnavailable, name, err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return provider.KeySet{}, provider.NewError(provider.ErrClosed, name, nil)
	}
	if ks, ok := e.sets[name]; ok {
		return ks, nil
	}
	k, err := provider.GenerateKey(provider.EdDSA, nil)
	if err != nil {
		return provider.KeySet{}, provider.NewError(provider.ErrInternal, name, err)
	}
	k.Version = "ephemeral"
	ks := provider.KeySet{Name: name, ActiveID: k.ID, Keys: []provider.Key{k}}
	e.sets[name] = ks
	return ks, nil
}

var errNothing = errors.New("no configuration: only an ephemeral signing key exists")

func (e *ephemeral) Secret(_ context.Context, name string) (provider.Secret, error) {
	return provider.Secret{}, provider.NewError(provider.ErrNotFound, name, errNothing)
}

func (e *ephemeral) Credentials(_ context.Context, req provider.CredentialRequest) (provider.Credentials, error) {
	return provider.Credentials{}, provider.NewError(provider.ErrNotFound, req.Role, errNothing)
}

func (e *ephemeral) Renew(_ context.Context, l provider.Lease) (provider.Lease, error) {
	return provider.Lease{}, provider.NewError(provider.ErrNotFound, l.ID, errNothing)
}

func (e *ephemeral) Revoke(context.Context, provider.Lease) error { return nil }

func (e *ephemeral) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed, e.sets = true, nil
	return nil
}
