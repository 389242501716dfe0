package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/keyfort/keyfort/provider"
)

type kvMount struct {
	path    string // "secret/" (with the trailing slash)
	version int    // 1 or 2
}

// parseLocation splits "[scheme:]path[#field]".
func parseLocation(location string) (scheme, path, field string) {
	scheme = "kv"
	rest := location
	if s, r, ok := strings.Cut(location, ":"); ok && (s == "kv" || s == "transit") {
		scheme, rest = s, r
	}
	path, field, _ = strings.Cut(rest, "#")
	return scheme, strings.Trim(path, "/"), field
}

// mountOf finds the KV mount holding path and its version, through sys/internal/ui/mounts (granted
// by Vault's default policy), caching the answer.
func (p *Provider) mountOf(ctx context.Context, location, path string) (kvMount, error) {
	var found kvMount
	p.mounts.Range(func(k, v any) bool {
		if strings.HasPrefix(path+"/", k.(string)) {
			found = v.(kvMount)
			return false
		}
		return true
	})
	if found.path != "" {
		return found, nil
	}
	s, err := p.client.Logical().ReadWithContext(ctx, "sys/internal/ui/mounts/"+path)
	if err != nil {
		var re *api.ResponseError
		if errors.As(err, &re) && re.StatusCode == 403 {
			// The token may not see the mount table for this path (the preflight check needs some
			// capability on it). Assume KV v2 at the first path element, uncached, so that the real
			// read reports the real answer.
			first, _, _ := strings.Cut(path, "/")
			return kvMount{path: first + "/", version: 2}, nil
		}
		return kvMount{}, classify(location, "GET", "sys/internal/ui/mounts/"+path, err)
	}
	if s == nil || s.Data == nil {
		return kvMount{}, provider.NewError(provider.ErrNotFound, location, fmt.Errorf("no secrets engine is mounted at %s", path))
	}
	m := kvMount{version: 1}
	m.path, _ = s.Data["path"].(string)
	if t, _ := s.Data["type"].(string); t != "kv" && t != "generic" {
		return kvMount{}, provider.NewError(provider.ErrInvalidArgument, location, fmt.Errorf("%s is a %q engine, not kv", m.path, t))
	}
	if opts, ok := s.Data["options"].(map[string]any); ok && opts["version"] == "2" {
		m.version = 2
	}
	if m.path == "" {
		return kvMount{}, provider.NewError(provider.ErrNotFound, location, fmt.Errorf("no secrets engine is mounted at %s", path))
	}
	p.mounts.Store(m.path, m)
	return m, nil
}

// readKV returns the data of path (at version when > 0) and its KV v2 metadata when there is one.
func (p *Provider) readKV(ctx context.Context, location, path string, version int) (map[string]any, error) {
	m, err := p.mountOf(ctx, location, path)
	if err != nil {
		return nil, err
	}
	rel := strings.TrimPrefix(path, strings.TrimSuffix(m.path, "/"))
	rel = strings.Trim(rel, "/")
	if rel == "" {
		return nil, provider.NewError(provider.ErrInvalidArgument, location, errors.New("location names a mount, not a secret"))
	}
	if m.version == 1 {
		s, err := p.client.Logical().ReadWithContext(ctx, path)
		if err != nil {
			return nil, classify(location, "GET", path, err)
		}
		if s == nil || s.Data == nil {
			return nil, provider.NewError(provider.ErrNotFound, location, fmt.Errorf("no secret at %s", path))
		}
		return s.Data, nil
	}
	dataPath := m.path + "data/" + rel
	var query map[string][]string
	if version > 0 {
		query = map[string][]string{"version": {strconv.Itoa(version)}}
	}
	s, err := p.client.Logical().ReadWithDataWithContext(ctx, dataPath, query)
	if err != nil {
		return nil, classify(location, "GET", dataPath, err)
	}
	if s == nil || s.Data == nil || s.Data["data"] == nil {
		return nil, provider.NewError(provider.ErrNotFound, location, fmt.Errorf("no secret at %s (or the version is deleted)", dataPath))
	}
	data, _ := s.Data["data"].(map[string]any)
	return data, nil
}

// Secret reads a KV v1 or v2 secret and returns one field.
func (p *Provider) Secret(ctx context.Context, location string) (provider.Secret, error) {
	if err := p.check(ctx, location); err != nil {
		return provider.Secret{}, err
	}
	scheme, path, field := parseLocation(location)
	if scheme != "kv" {
		return provider.Secret{}, provider.NewError(provider.ErrInvalidArgument, location, errors.New("secrets come from kv locations"))
	}
	data, err := p.readKV(ctx, location, path, 0)
	if err != nil {
		return provider.Secret{}, err
	}
	v, err := pickField(location, data, field)
	if err != nil {
		return provider.Secret{}, err
	}
	return provider.Secret{Name: location, Value: provider.NewSensitive(v)}, nil
}

// pickField returns field (or "value", or the only field). Errors list field names, never values.
func pickField(location string, data map[string]any, field string) ([]byte, error) {
	if field == "" {
		if _, ok := data["value"]; ok {
			field = "value"
		} else if len(data) == 1 {
			for k := range data {
				field = k
			}
		} else {
			return nil, provider.NewError(provider.ErrInvalidArgument, location,
				fmt.Errorf("the secret has fields %v; name one with #FIELD", slices.Sorted(maps.Keys(data))))
		}
	}
	v, ok := data[field]
	if !ok {
		return nil, provider.NewError(provider.ErrNotFound, location, fmt.Errorf("no field %q (fields: %v)", field, slices.Sorted(maps.Keys(data))))
	}
	if s, ok := v.(string); ok {
		return []byte(s), nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, provider.NewError(provider.ErrInvalidConfig, location, fmt.Errorf("field %q is not representable", field))
	}
	return b, nil
}

// SigningKeys reads a key set from KV v2 versions or from Transit.
func (p *Provider) SigningKeys(ctx context.Context, location string) (provider.KeySet, error) {
	if err := p.check(ctx, location); err != nil {
		return provider.KeySet{}, err
	}
	scheme, path, _ := parseLocation(location)
	if scheme == "transit" {
		return p.transitKeySet(ctx, location, path)
	}
	return p.kvKeySet(ctx, location, path)
}

type kvVersion struct {
	n       int
	created time.Time
}

// kvKeySet turns the live versions of a KV v2 secret into a key set: the newest version whose
// not_before has passed signs; newer ones are published for verification ahead of rotation; older
// ones verify, up to MaxVerificationKeys.
func (p *Provider) kvKeySet(ctx context.Context, location, path string) (provider.KeySet, error) {
	m, err := p.mountOf(ctx, location, path)
	if err != nil {
		return provider.KeySet{}, err
	}
	if m.version != 2 {
		return provider.KeySet{}, provider.NewError(provider.ErrInvalidArgument, location, errors.New("key sets need KV v2 (versions)"))
	}
	rel := strings.Trim(strings.TrimPrefix(path, strings.TrimSuffix(m.path, "/")), "/")
	metaPath := m.path + "metadata/" + rel
	meta, err := p.client.Logical().ReadWithContext(ctx, metaPath)
	if err != nil {
		return provider.KeySet{}, classify(location, "GET", metaPath, err)
	}
	if meta == nil || meta.Data == nil {
		return provider.KeySet{}, provider.NewError(provider.ErrNotFound, location, fmt.Errorf("no secret at %s", metaPath))
	}
	versions, _ := meta.Data["versions"].(map[string]any)
	var live []kvVersion
	for k, v := range versions {
		n, err := strconv.Atoi(k)
		if err != nil {
			continue
		}
		vm, _ := v.(map[string]any)
		if destroyed, _ := vm["destroyed"].(bool); destroyed {
			continue
		}
		if dt, _ := vm["deletion_time"].(string); dt != "" {
			continue
		}
		created, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(vm["created_time"]))
		live = append(live, kvVersion{n: n, created: created})
	}
	if len(live) == 0 {
		return provider.KeySet{}, provider.NewError(provider.ErrNotFound, location, errors.New("every version is deleted or destroyed"))
	}
	sort.Slice(live, func(i, j int) bool { return live[i].n > live[j].n })
	ks := provider.KeySet{Name: location}
	now := p.now()
	older := 0
	for _, v := range live {
		data, err := p.readKV(ctx, location, path, v.n)
		if err != nil {
			return provider.KeySet{}, err
		}
		k, err := provider.KeyFromFields(data)
		if err != nil {
			return provider.KeySet{}, provider.NewError(provider.ErrInvalidConfig, fmt.Sprintf("%s (version %d)", location, v.n), err)
		}
		k.Version = strconv.Itoa(v.n)
		if !k.NotAfter.IsZero() && !now.Before(k.NotAfter) {
			continue // expired: verifies nothing any more
		}
		if ks.ActiveID == "" && k.ValidAt(now) {
			ks.ActiveID = k.ID
		} else if ks.ActiveID != "" {
			if older >= p.s.MaxVerificationKeys {
				break
			}
			older++
		}
		if _, dup := ks.Lookup(k.ID); !dup {
			ks.Keys = append(ks.Keys, k)
		}
	}
	if ks.ActiveID == "" {
		return provider.KeySet{}, provider.NewError(provider.ErrNotFound, location, errors.New("no version is valid now (check not_before/not_after)"))
	}
	return ks, nil
}
