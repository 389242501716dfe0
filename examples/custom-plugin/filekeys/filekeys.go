package filekeys

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/keyfort/keyfort/provider"
)

// Config is the plugin's settings block.
type Config struct {
	// Dir holds keys/ and secrets/.
	Dir string `json:"dir"`
	// Watch, a duration such as "2s", makes the plugin look for changed files at that interval and
	// report them to the host, whose cache then refetches them at once instead of at its cache_ttl.
	// Empty: no watching.
	Watch string `json:"watch"`
}

// Provider serves files under Config.Dir. It is safe for concurrent use.
type Provider struct {
	root   *os.Root
	closed atomic.Bool
	// changes reports what the poller finds; stop and polled end the poller.
	changes      provider.Changes
	watching     bool
	stop, polled chan struct{}
}

var (
	_ provider.IdentitySecretMaterialProvider = (*Provider)(nil)
	_ provider.Watcher                        = (*Provider)(nil)
)

// Factory builds the provider from the host's settings.
func Factory(ctx context.Context, s provider.Settings) (provider.IdentitySecretMaterialProvider, error) {
	var cfg Config
	if err := s.Decode(&cfg); err != nil {
		return nil, err
	}
	return New(ctx, cfg)
}

// New opens the directory. os.Root confines every later read to it.
func New(_ context.Context, cfg Config) (*Provider, error) {
	if cfg.Dir == "" {
		return nil, provider.NewError(provider.ErrInvalidConfig, "dir", errors.New("setting dir is required"))
	}
	var every time.Duration
	if cfg.Watch != "" {
		d, err := time.ParseDuration(cfg.Watch)
		if err != nil || d <= 0 {
			return nil, provider.NewError(provider.ErrInvalidConfig, "watch", errors.New(`setting watch must be a positive duration such as "2s"`))
		}
		every = d
	}
	root, err := os.OpenRoot(cfg.Dir)
	if err != nil {
		return nil, provider.NewError(provider.ErrInvalidConfig, cfg.Dir, errors.New("cannot open the directory"))
	}
	p := &Provider{root: root}
	if every > 0 {
		p.watching, p.stop, p.polled = true, make(chan struct{}), make(chan struct{})
		go p.poll(every, p.snapshot()) // the first look before New returns: changes after it count
	}
	return p, nil
}

// Watch implements provider.Watcher when the watch setting is set.
func (p *Provider) Watch(ctx context.Context, fn func(provider.Change)) error {
	if !p.watching {
		return provider.NewError(provider.ErrUnimplemented, "", errors.New("the files plugin watches only with the watch setting"))
	}
	return p.changes.Watch(ctx, fn)
}

// poll compares what the directory holds every interval and reports each key set and secret whose
// files changed.
func (p *Provider) poll(every time.Duration, last map[string]string) {
	defer close(p.polled)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		now := p.snapshot()
		for name, sig := range now {
			if last[name] != sig {
				p.changes.Notify(name)
			}
		}
		for name := range last {
			if _, ok := now[name]; !ok {
				p.changes.Notify(name)
			}
		}
		last = now
	}
}

// snapshot maps each key set and secret name to the names, sizes and modification times of its files.
func (p *Provider) snapshot() map[string]string {
	out := map[string]string{}
	sig := func(e fs.DirEntry) string {
		info, err := e.Info()
		if err != nil {
			return e.Name()
		}
		return fmt.Sprintf("%s/%d/%d;", e.Name(), info.Size(), info.ModTime().UnixNano())
	}
	sets, _ := fs.ReadDir(p.root.FS(), "keys")
	for _, set := range sets {
		if !set.IsDir() {
			continue
		}
		files, _ := fs.ReadDir(p.root.FS(), filepath.Join("keys", set.Name()))
		var b strings.Builder
		for _, f := range files {
			b.WriteString(sig(f))
		}
		out[set.Name()] = b.String()
	}
	secrets, _ := fs.ReadDir(p.root.FS(), "secrets")
	for _, f := range secrets {
		if !f.IsDir() {
			out[f.Name()] += sig(f)
		}
	}
	return out
}

func (p *Provider) check(ctx context.Context, name string) error {
	if p.closed.Load() {
		return provider.NewError(provider.ErrClosed, name, nil)
	}
	if err := ctx.Err(); err != nil {
		return provider.NewError(provider.ErrUnavailable, name, err)
	}
	if name == "" || name != filepath.Base(name) || strings.HasPrefix(name, ".") {
		return provider.NewError(provider.ErrInvalidArgument, name, errors.New("names are single path elements"))
	}
	return nil
}

func classify(name string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return provider.NewError(provider.ErrNotFound, name, errors.New("no such file"))
	}
	if errors.Is(err, fs.ErrPermission) {
		return provider.NewError(provider.ErrPermissionDenied, name, errors.New("file not readable"))
	}
	return provider.NewError(provider.ErrUnavailable, name, errors.New("cannot read"))
}

// SigningKeys reads DIR/keys/NAME/.
func (p *Provider) SigningKeys(ctx context.Context, name string) (provider.KeySet, error) {
	if err := p.check(ctx, name); err != nil {
		return provider.KeySet{}, err
	}
	dir := filepath.Join("keys", name)
	entries, err := fs.ReadDir(p.root.FS(), dir)
	if err != nil {
		return provider.KeySet{}, classify(dir, err)
	}
	var files []string
	for _, e := range entries {
		if !e.IsDir() && (strings.HasSuffix(e.Name(), ".pem") || strings.HasSuffix(e.Name(), ".hs256")) {
			files = append(files, e.Name())
		}
	}
	if len(files) == 0 {
		return provider.KeySet{}, provider.NewError(provider.ErrNotFound, dir, errors.New("no .pem or .hs256 files"))
	}
	sort.Sort(sort.Reverse(sort.StringSlice(files))) // newest (last-sorting) first
	ks := provider.KeySet{Name: name}
	for i, f := range files {
		path := filepath.Join(dir, f)
		data, err := p.root.ReadFile(path)
		if err != nil {
			return provider.KeySet{}, classify(path, err)
		}
		var alg provider.Algorithm
		if strings.HasSuffix(f, ".hs256") {
			alg = provider.HS256
		}
		k, err := provider.ParseKey(alg, data)
		if err != nil {
			return provider.KeySet{}, provider.NewError(provider.ErrInvalidConfig, path, err)
		}
		k.Version = strings.TrimSuffix(strings.TrimSuffix(f, ".pem"), ".hs256")
		if i == 0 {
			if k.Private.IsZero() && k.Algorithm != provider.HS256 {
				return provider.KeySet{}, provider.NewError(provider.ErrInvalidConfig, path, fmt.Errorf("the active key must be a private key"))
			}
			ks.ActiveID = k.ID
		}
		ks.Keys = append(ks.Keys, k)
	}
	return ks, nil
}

// Secret reads DIR/secrets/NAME.
func (p *Provider) Secret(ctx context.Context, name string) (provider.Secret, error) {
	if err := p.check(ctx, name); err != nil {
		return provider.Secret{}, err
	}
	path := filepath.Join("secrets", name)
	data, err := p.root.ReadFile(path)
	if err != nil {
		return provider.Secret{}, classify(path, err)
	}
	return provider.Secret{Name: name, Value: provider.NewSensitive(data)}, nil
}

// Credentials are not served from files.
func (p *Provider) Credentials(ctx context.Context, req provider.CredentialRequest) (provider.Credentials, error) {
	if err := p.check(ctx, req.Role); err != nil {
		return provider.Credentials{}, err
	}
	return provider.Credentials{}, provider.NewError(provider.ErrUnimplemented, req.Role, errors.New("the files plugin serves no credentials"))
}

// Renew returns static credentials' zero lease unchanged: the files plugin issues no leases.
func (p *Provider) Renew(_ context.Context, l provider.Lease) (provider.Lease, error) {
	return provider.RenewStatic(l, p.closed.Load())
}

// Revoke does nothing: the files plugin issues no leases.
func (p *Provider) Revoke(_ context.Context, l provider.Lease) error {
	return provider.RevokeStatic(l, p.closed.Load())
}

// Close stops the watching and releases the directory.
func (p *Provider) Close() error {
	if p.closed.CompareAndSwap(false, true) {
		if p.watching {
			close(p.stop)
			<-p.polled
		}
		p.changes.Close()
		return p.root.Close()
	}
	return nil
}
