package catalog

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/keyfort/keyfort/config"
	"github.com/keyfort/keyfort/provider"
)

// CheckResult is the outcome of resolving one configured key.
type CheckResult struct {
	Binding config.Binding
	// Detail describes what was found (kids, version, username) without any secret value.
	Detail string
	Err    error
}

// OK reports whether the key resolved.
func (r CheckResult) OK() bool { return r.Err == nil }

// String renders one line: "ok   KEY  provider:location  detail" or "FAIL KEY  provider:location  reason".
func (r CheckResult) String() string {
	status, text := "ok  ", r.Detail
	if r.Err != nil {
		status, text = "FAIL", r.Err.Error()
	}
	return fmt.Sprintf("%s %s  %s  %s", status, r.Binding.Key, r.Binding, text)
}

// Check resolves every configured key (and session_signing through the default binding) and reports
// each. Credentials are issued and their lease revoked at once.
func (c *Catalog) Check(ctx context.Context) []CheckResult {
	keys := c.cfg.Keys()
	if c.cfg.Empty() {
		keys = []string{"identity.secrets." + config.SessionSigningKey}
	}
	results := make([]CheckResult, 0, len(keys))
	for _, key := range keys {
		results = append(results, c.checkKey(ctx, key))
	}
	return results
}

func (c *Catalog) checkKey(ctx context.Context, key string) CheckResult {
	b, cl, err := c.Resolve(key)
	r := CheckResult{Binding: b}
	if err != nil {
		r.Err = err
		return r
	}
	switch b.Kind {
	case config.KindKeySet:
		ks, err := cl.SigningKeys(ctx, b.Location)
		if err != nil {
			r.Err = err
			return r
		}
		active, _ := ks.Active()
		r.Detail = fmt.Sprintf("key set: active kid %s (%s), %d key(s)", active.ID, active.Algorithm, len(ks.Keys))
	case config.KindSecret:
		s, err := cl.Secret(ctx, b.Location)
		if err != nil {
			r.Err = err
			return r
		}
		r.Detail = fmt.Sprintf("secret: %d bytes", s.Value.Len())
		if s.Version != "" {
			r.Detail += ", version " + s.Version
		}
	case config.KindCredentials:
		if b.PerSession {
			r.Detail = "credentials: issued per session with the caller's identity; not checked at start"
			return r
		}
		cr, err := cl.Credentials(ctx, provider.CredentialRequest{Role: b.Location})
		if err != nil {
			r.Err = err
			return r
		}
		r.Detail = "credentials: username " + cr.Username
		if !cr.Lease.IsZero() {
			r.Detail += fmt.Sprintf(", lease ttl %s (revoked after the check)", cr.Lease.TTL.Round(time.Second))
			if err := cl.Revoke(ctx, cr.Lease); err != nil {
				r.Detail += "; revoke failed: " + err.Error()
			}
		}
	default:
		r.Err = fmt.Errorf("unknown kind %q", b.Kind)
	}
	r.Detail = strings.TrimSpace(r.Detail)
	return r
}
