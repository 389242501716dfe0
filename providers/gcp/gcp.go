package gcp

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	secretmanager "cloud.google.com/go/secretmanager/apiv1"
	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/keyfort/keyfort/provider"
)

// Config is the gcp provider's settings block.
type Config struct {
	// CredentialsFile is a credentials file (a service account key by default); default:
	// Application Default Credentials.
	CredentialsFile string `json:"credentials_file"`
	// CredentialsType is the type CredentialsFile must have (its "type" member): service_account
	// (the default), authorized_user, impersonated_service_account or external_account. A file of
	// another type is refused, so that a file swapped for, say, an external account configuration
	// whose credential source runs a program is never acted on.
	CredentialsType string `json:"credentials_type"`
	// Endpoint overrides the service address ("host:port").
	Endpoint string `json:"endpoint"`
	// InsecurePlaintext talks to Endpoint without TLS and without credentials: emulators only.
	InsecurePlaintext bool `json:"insecure_plaintext"`
	// MaxVerificationKeys caps how many older enabled versions verify (default 5).
	MaxVerificationKeys int `json:"max_verification_keys"`
	// PublishAhead (Go duration, default none) publishes a new version of a key set for that long
	// before it signs: the newest enabled version at least that old (its create_time) signs, the
	// newer ones verify, so that verifiers holding a copy of the JWKS have the key before any token
	// names it.
	PublishAhead string `json:"publish_ahead"`
}

// Provider serves material from Secret Manager. It is safe for concurrent use.
type Provider struct {
	c            *secretmanager.Client
	maxKeys      int
	publishAhead time.Duration
	closed       atomic.Bool
}

var (
	_ provider.IdentitySecretMaterialProvider = (*Provider)(nil)
	_ provider.Factory                        = Factory
)

// Factory builds a gcp provider from Keyfort settings; provider-host lists it as the built-in "gcp".
func Factory(ctx context.Context, s provider.Settings) (provider.IdentitySecretMaterialProvider, error) {
	var cfg Config
	if err := s.Decode(&cfg); err != nil {
		return nil, err
	}
	return New(ctx, cfg)
}

// New creates the client; missing credentials are an error here.
func New(ctx context.Context, cfg Config) (*Provider, error) {
	var ahead time.Duration
	if cfg.PublishAhead != "" {
		d, err := time.ParseDuration(cfg.PublishAhead)
		if err != nil || d < 0 {
			return nil, provider.NewError(provider.ErrInvalidConfig, "publish_ahead", errors.New("want a duration like \"5m\""))
		}
		ahead = d
	}
	var opts []option.ClientOption
	if cfg.Endpoint != "" {
		opts = append(opts, option.WithEndpoint(cfg.Endpoint))
	}
	switch {
	case cfg.InsecurePlaintext:
		if cfg.Endpoint == "" {
			return nil, provider.NewError(provider.ErrInvalidConfig, "insecure_plaintext", errors.New("insecure_plaintext needs an endpoint (an emulator)"))
		}
		opts = append(opts, option.WithoutAuthentication(),
			option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	case cfg.CredentialsFile != "":
		credType, err := credentialsType(cfg.CredentialsType)
		if err != nil {
			return nil, err
		}
		if err := checkCredentialsFile(cfg.CredentialsFile, credType); err != nil {
			return nil, err
		}
		opts = append(opts, option.WithAuthCredentialsFile(credType, cfg.CredentialsFile))
	case cfg.CredentialsType != "":
		return nil, provider.NewError(provider.ErrInvalidConfig, "credentials_type", errors.New("credentials_type needs credentials_file"))
	}
	c, err := secretmanager.NewClient(ctx, opts...)
	if err != nil {
		return nil, provider.NewError(provider.ErrInvalidConfig, "gcp", fmt.Errorf("secret manager client: %v", err))
	}
	p := &Provider{c: c, maxKeys: cfg.MaxVerificationKeys, publishAhead: ahead}
	if p.maxKeys <= 0 {
		p.maxKeys = 5
	}
	return p, nil
}

// parseLocation splits "projects/P/secrets/S[/versions/N][#field]" into the secret, the version
// ("" for latest) and the field.
func parseLocation(location string) (secret, version, field string, err error) {
	rest, field, _ := strings.Cut(location, "#")
	parts := strings.Split(rest, "/")
	switch {
	case len(parts) == 4 && parts[0] == "projects" && parts[2] == "secrets" && parts[1] != "" && parts[3] != "":
		return rest, "", field, nil
	case len(parts) == 6 && parts[0] == "projects" && parts[2] == "secrets" && parts[4] == "versions" && parts[5] != "":
		return strings.Join(parts[:4], "/"), parts[5], field, nil
	}
	return "", "", "", provider.NewError(provider.ErrInvalidArgument, location,
		errors.New("want projects/PROJECT/secrets/SECRET[/versions/N][#field]"))
}

func (p *Provider) check(ctx context.Context, location string) error {
	if p.closed.Load() {
		return provider.NewError(provider.ErrClosed, location, nil)
	}
	if err := ctx.Err(); err != nil {
		return provider.NewError(provider.ErrUnavailable, location, err)
	}
	return nil
}

// classify maps gRPC codes to kinds; the message names the operation and resource.
func classify(location, op, resource string, err error) error {
	st, _ := status.FromError(err)
	kind := provider.ErrInternal
	switch st.Code() {
	case codes.NotFound:
		kind = provider.ErrNotFound
	case codes.FailedPrecondition: // a disabled or destroyed version
		kind = provider.ErrNotFound
	case codes.PermissionDenied, codes.Unauthenticated:
		kind = provider.ErrPermissionDenied
	case codes.InvalidArgument:
		kind = provider.ErrInvalidArgument
	case codes.Unavailable, codes.ResourceExhausted, codes.Aborted, codes.Internal, codes.Unknown:
		kind = provider.ErrUnavailable
	case codes.DeadlineExceeded:
		return provider.NewError(provider.ErrUnavailable, location, fmt.Errorf("secretmanager %s %s: %w", op, resource, context.DeadlineExceeded))
	case codes.Canceled:
		return provider.NewError(provider.ErrUnavailable, location, fmt.Errorf("secretmanager %s %s: %w", op, resource, context.Canceled))
	}
	return provider.NewError(kind, location, fmt.Errorf("secretmanager %s %s: %s: %s", op, resource, st.Code(), st.Message()))
}

func (p *Provider) access(ctx context.Context, location, name string) (*secretmanagerpb.AccessSecretVersionResponse, error) {
	resp, err := p.c.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: name})
	if err != nil {
		return nil, classify(location, "AccessSecretVersion", name, err)
	}
	return resp, nil
}

func versionName(secret, version string) string {
	if version == "" {
		version = "latest"
	}
	return secret + "/versions/" + version
}

// Secret returns a version's payload, or one field of its JSON.
func (p *Provider) Secret(ctx context.Context, location string) (provider.Secret, error) {
	if err := p.check(ctx, location); err != nil {
		return provider.Secret{}, err
	}
	secret, version, field, err := parseLocation(location)
	if err != nil {
		return provider.Secret{}, err
	}
	resp, err := p.access(ctx, location, versionName(secret, version))
	if err != nil {
		return provider.Secret{}, err
	}
	v := resp.GetPayload().GetData()
	if field != "" {
		var fields map[string]any
		if err := json.Unmarshal(v, &fields); err != nil {
			return provider.Secret{}, provider.NewError(provider.ErrInvalidArgument, location, errors.New("the secret is not a JSON object, so it has no fields"))
		}
		fv, ok := fields[field]
		if !ok {
			return provider.Secret{}, provider.NewError(provider.ErrNotFound, location, fmt.Errorf("no field %q", field))
		}
		if s, ok := fv.(string); ok {
			v = []byte(s)
		} else {
			v, _ = json.Marshal(fv)
		}
	}
	return provider.Secret{Name: location, Version: lastElem(resp.GetName()), Value: provider.NewSensitive(v)}, nil
}

func lastElem(name string) string { return name[strings.LastIndexByte(name, '/')+1:] }

// parseKey reads a version's payload as a key document, or as a raw HS256 secret.
func parseKey(data []byte) (provider.Key, error) {
	t := strings.TrimSpace(string(data))
	if strings.HasPrefix(t, "-----BEGIN") || strings.HasPrefix(t, "{") {
		return provider.ParseKeyDocument(data)
	}
	if rest, ok := strings.CutPrefix(t, "base64:"); ok {
		raw, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return provider.Key{}, errors.New("payload has the base64: prefix but is not valid base64")
		}
		data = raw
	}
	return provider.ParseKey(provider.HS256, data)
}

// SigningKeys builds a key set from the enabled versions (or the one pinned version).
func (p *Provider) SigningKeys(ctx context.Context, location string) (provider.KeySet, error) {
	if err := p.check(ctx, location); err != nil {
		return provider.KeySet{}, err
	}
	secret, version, _, err := parseLocation(location)
	if err != nil {
		return provider.KeySet{}, err
	}
	var versions []int
	created := map[int]time.Time{}
	if version != "" {
		n, err := strconv.Atoi(version)
		if err != nil {
			return provider.KeySet{}, provider.NewError(provider.ErrInvalidArgument, location, errors.New("a pinned key set names a version number"))
		}
		versions = []int{n}
	} else {
		it := p.c.ListSecretVersions(ctx, &secretmanagerpb.ListSecretVersionsRequest{Parent: secret})
		for {
			v, err := it.Next()
			if errors.Is(err, iterator.Done) {
				break
			}
			if err != nil {
				return provider.KeySet{}, classify(location, "ListSecretVersions", secret, err)
			}
			if v.GetState() != secretmanagerpb.SecretVersion_ENABLED {
				continue
			}
			if n, err := strconv.Atoi(lastElem(v.GetName())); err == nil {
				versions = append(versions, n)
				if v.GetCreateTime() != nil {
					created[n] = v.GetCreateTime().AsTime()
				}
			}
		}
		sort.Sort(sort.Reverse(sort.IntSlice(versions)))
		if len(versions) > 1+p.maxKeys {
			versions = versions[:1+p.maxKeys]
		}
	}
	if len(versions) == 0 {
		return provider.KeySet{}, provider.NewError(provider.ErrNotFound, location, errors.New("no enabled version"))
	}
	ks := provider.KeySet{Name: location}
	for _, n := range versions {
		name := versionName(secret, strconv.Itoa(n))
		resp, err := p.access(ctx, location, name)
		if err != nil {
			return provider.KeySet{}, err
		}
		k, err := parseKey(resp.GetPayload().GetData())
		if err != nil {
			return provider.KeySet{}, provider.NewError(provider.ErrInvalidConfig, name, err)
		}
		k.Version = strconv.Itoa(n)
		// versions is newest first: the first one old enough signs (with PublishAhead).
		if ks.ActiveID == "" && (p.publishAhead == 0 || created[n].IsZero() || !time.Now().Before(created[n].Add(p.publishAhead))) {
			ks.ActiveID = k.ID
		}
		if _, dup := ks.Lookup(k.ID); !dup {
			ks.Keys = append(ks.Keys, k)
		}
	}
	if ks.ActiveID == "" {
		// Every version is younger than PublishAhead: the oldest signs rather than none.
		ks.ActiveID = ks.Keys[len(ks.Keys)-1].ID
	}
	return ks, nil
}

// Credentials reads a JSON secret with username and password.
func (p *Provider) Credentials(ctx context.Context, req provider.CredentialRequest) (provider.Credentials, error) {
	if err := p.check(ctx, req.Role); err != nil {
		return provider.Credentials{}, err
	}
	secret, version, _, err := parseLocation(req.Role)
	if err != nil {
		return provider.Credentials{}, err
	}
	resp, err := p.access(ctx, req.Role, versionName(secret, version))
	if err != nil {
		return provider.Credentials{}, err
	}
	c, err := provider.CredentialsFromJSON(req.Role, resp.GetPayload().GetData())
	if err != nil {
		return provider.Credentials{}, provider.NewError(provider.ErrInvalidConfig, req.Role, err)
	}
	return c, nil
}

// Renew returns static credentials' zero lease unchanged: Secret Manager issues no leases.
func (p *Provider) Renew(_ context.Context, l provider.Lease) (provider.Lease, error) {
	return provider.RenewStatic(l, p.closed.Load())
}

// Revoke does nothing: Secret Manager issues no leases.
func (p *Provider) Revoke(_ context.Context, l provider.Lease) error {
	return provider.RevokeStatic(l, p.closed.Load())
}

// Close closes the client.
func (p *Provider) Close() error {
	if p.closed.CompareAndSwap(false, true) {
		return p.c.Close()
	}
	return nil
}

// credentialsTypes are the credentials_file types the provider accepts.
var credentialsTypes = map[string]option.CredentialsType{
	"service_account":              option.ServiceAccount,
	"authorized_user":              option.AuthorizedUser,
	"impersonated_service_account": option.ImpersonatedServiceAccount,
	"external_account":             option.ExternalAccount,
}

func credentialsType(name string) (option.CredentialsType, error) {
	if name == "" {
		name = "service_account"
	}
	t, ok := credentialsTypes[name]
	if !ok {
		return "", provider.NewError(provider.ErrInvalidConfig, "credentials_type",
			fmt.Errorf("unknown credentials type %q (want one of %s)", name, strings.Join(slices.Sorted(maps.Keys(credentialsTypes)), ", ")))
	}
	return t, nil
}

// checkCredentialsFile refuses a credentials file that is not of type want before the client
// library reads it, naming the file and both types (never its contents): the library would refuse
// it too, but only on the first call.
func checkCredentialsFile(file string, want option.CredentialsType) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return provider.NewError(provider.ErrInvalidConfig, "credentials_file", fmt.Errorf("%s: %w", file, errors.Unwrap(err)))
	}
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return provider.NewError(provider.ErrInvalidConfig, "credentials_file", fmt.Errorf("%s is not a JSON credentials file", file))
	}
	if head.Type != string(want) {
		return provider.NewError(provider.ErrInvalidConfig, "credentials_file",
			fmt.Errorf("%s holds %q credentials, and credentials_type is %q: set credentials_type to accept them", file, head.Type, want))
	}
	return nil
}
