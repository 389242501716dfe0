package aws

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go"

	"github.com/keyfort/keyfort/internal/tracedhttp"
	"github.com/keyfort/keyfort/provider"
)

// Config is the aws provider's settings block.
type Config struct {
	// Region; default from the standard chain (AWS_REGION, shared config).
	Region string `json:"region"`
	// Endpoint overrides the service endpoint (a VPC endpoint, or an emulator in tests).
	Endpoint string `json:"endpoint"`
	// Profile selects a shared-config profile.
	Profile string `json:"profile"`
	// RequestTimeout bounds each HTTP request (default "10s").
	RequestTimeout string `json:"request_timeout"`
}

// Provider serves material from AWS Secrets Manager. It is safe for concurrent use.
type Provider struct {
	sm     *secretsmanager.Client
	closed atomic.Bool
}

var (
	_ provider.IdentitySecretMaterialProvider = (*Provider)(nil)
	_ provider.HealthChecker                  = (*Provider)(nil)
	_ provider.Factory                        = Factory
)

// Factory builds an aws provider from Keyfort settings; provider-host lists it as the built-in "aws".
func Factory(ctx context.Context, s provider.Settings) (provider.IdentitySecretMaterialProvider, error) {
	var cfg Config
	if err := s.Decode(&cfg); err != nil {
		return nil, err
	}
	return New(ctx, cfg)
}

// traced makes a client span per request of the SDK's HTTP client made in a traced call, under
// the call's span (tracedhttp); the request is signed in its headers, which spans do not record.
// It wraps the client LoadDefaultConfig made (which must be its own type to take a custom CA
// bundle).
type traced struct{ rt http.RoundTripper }

func tracedClient(c aws.HTTPClient) traced {
	return traced{tracedhttp.Transport(tracedhttp.RoundTripperFunc(c.Do))}
}

func (t traced) Do(req *http.Request) (*http.Response, error) { return t.rt.RoundTrip(req) }

// New loads the SDK configuration.
func New(ctx context.Context, cfg Config) (*Provider, error) {
	timeout := 10 * time.Second
	if cfg.RequestTimeout != "" {
		d, err := time.ParseDuration(cfg.RequestTimeout)
		if err != nil || d <= 0 {
			return nil, provider.NewError(provider.ErrInvalidConfig, "request_timeout", errors.New("want a positive duration like \"10s\""))
		}
		timeout = d
	}
	opts := []func(*config.LoadOptions) error{
		config.WithHTTPClient(awshttp.NewBuildableClient().WithTimeout(timeout)),
		config.WithRetryMaxAttempts(2),
	}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.Profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(cfg.Profile))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, provider.NewError(provider.ErrInvalidConfig, "aws", fmt.Errorf("loading the AWS configuration: %v", err))
	}
	awsCfg.HTTPClient = tracedClient(awsCfg.HTTPClient)
	if awsCfg.Region == "" {
		return nil, provider.NewError(provider.ErrInvalidConfig, "region", errors.New("no region: set region or AWS_REGION"))
	}
	sm := secretsmanager.NewFromConfig(awsCfg, func(o *secretsmanager.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
	})
	return &Provider{sm: sm}, nil
}

func parseLocation(location string) (id, field string) {
	id, field, _ = strings.Cut(location, "#")
	return id, field
}

func (p *Provider) check(ctx context.Context, location string) error {
	if p.closed.Load() {
		return provider.NewError(provider.ErrClosed, location, nil)
	}
	if id, _ := parseLocation(location); id == "" {
		return provider.NewError(provider.ErrInvalidArgument, location, errors.New("empty secret id"))
	}
	if err := ctx.Err(); err != nil {
		return provider.NewError(provider.ErrUnavailable, location, err)
	}
	return nil
}

// classify maps Secrets Manager error codes to kinds; the message names the operation and secret.
func classify(location, op string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		cause := context.DeadlineExceeded
		if errors.Is(err, context.Canceled) {
			cause = context.Canceled
		}
		return provider.NewError(provider.ErrUnavailable, location, fmt.Errorf("secretsmanager %s: %w", op, cause))
	}
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return provider.NewError(provider.ErrUnavailable, location, fmt.Errorf("secretsmanager %s: service unreachable", op))
	}
	kind := provider.ErrInternal
	switch ae.ErrorCode() {
	case "ResourceNotFoundException":
		kind = provider.ErrNotFound
	case "AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException",
		"ExpiredTokenException", "DecryptionFailure", "InvalidClientTokenId":
		kind = provider.ErrPermissionDenied
	case "InvalidParameterException", "InvalidRequestException", "ValidationException":
		kind = provider.ErrInvalidArgument
	case "InternalServiceError", "ThrottlingException", "ServiceUnavailable", "RequestTimeout":
		kind = provider.ErrUnavailable
	}
	return provider.NewError(kind, location, fmt.Errorf("secretsmanager %s: %s: %s", op, ae.ErrorCode(), ae.ErrorMessage()))
}

// value reads the version at stage of secret id.
func (p *Provider) value(ctx context.Context, location, id, stage string) (*secretsmanager.GetSecretValueOutput, error) {
	out, err := p.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(id), VersionStage: aws.String(stage)})
	if err != nil {
		return nil, classify(location, "GetSecretValue", err)
	}
	return out, nil
}

func payload(out *secretsmanager.GetSecretValueOutput) []byte {
	if out.SecretString != nil {
		return []byte(*out.SecretString)
	}
	return out.SecretBinary
}

// Secret returns the AWSCURRENT value, or one field of its JSON.
func (p *Provider) Secret(ctx context.Context, location string) (provider.Secret, error) {
	if err := p.check(ctx, location); err != nil {
		return provider.Secret{}, err
	}
	id, field := parseLocation(location)
	out, err := p.value(ctx, location, id, "AWSCURRENT")
	if err != nil {
		return provider.Secret{}, err
	}
	v := payload(out)
	if field != "" {
		if v, err = jsonField(location, v, field); err != nil {
			return provider.Secret{}, err
		}
	}
	s := provider.Secret{Name: location, Value: provider.NewSensitive(v), Version: aws.ToString(out.VersionId)}
	if out.CreatedDate != nil {
		s.CreatedAt = *out.CreatedDate
	}
	return s, nil
}

func jsonField(location string, data []byte, field string) ([]byte, error) {
	var fields map[string]any
	if err := json.Unmarshal(data, &fields); err != nil {
		return nil, provider.NewError(provider.ErrInvalidArgument, location, errors.New("the secret is not a JSON object, so it has no fields"))
	}
	v, ok := fields[field]
	if !ok {
		return nil, provider.NewError(provider.ErrNotFound, location, fmt.Errorf("no field %q (fields: %v)", field, slices.Sorted(maps.Keys(fields))))
	}
	if s, ok := v.(string); ok {
		return []byte(s), nil
	}
	return json.Marshal(v)
}

// stages in the order of the key set: pending (newest, verify only), current (signs), previous.
var stages = []string{"AWSPENDING", "AWSCURRENT", "AWSPREVIOUS"}

// SigningKeys builds a key set from the AWSCURRENT, AWSPREVIOUS and AWSPENDING versions.
func (p *Provider) SigningKeys(ctx context.Context, location string) (provider.KeySet, error) {
	if err := p.check(ctx, location); err != nil {
		return provider.KeySet{}, err
	}
	id, _ := parseLocation(location)
	ks := provider.KeySet{Name: location}
	for _, stage := range stages {
		out, err := p.value(ctx, location, id, stage)
		if err != nil {
			if errors.Is(err, provider.ErrNotFound) && stage != "AWSCURRENT" {
				continue // no version at this stage
			}
			return provider.KeySet{}, err
		}
		var k provider.Key
		if out.SecretString == nil {
			k, err = provider.ParseKey(provider.HS256, out.SecretBinary)
		} else {
			k, err = provider.ParseKeyDocument([]byte(*out.SecretString))
		}
		if err != nil {
			return provider.KeySet{}, provider.NewError(provider.ErrInvalidConfig, fmt.Sprintf("%s (%s)", location, stage), err)
		}
		k.Version = aws.ToString(out.VersionId)
		if stage == "AWSCURRENT" {
			ks.ActiveID = k.ID
		}
		if _, dup := ks.Lookup(k.ID); !dup {
			ks.Keys = append(ks.Keys, k)
		}
	}
	return ks, nil
}

// Credentials reads the RDS rotation JSON shape.
func (p *Provider) Credentials(ctx context.Context, req provider.CredentialRequest) (provider.Credentials, error) {
	if err := p.check(ctx, req.Role); err != nil {
		return provider.Credentials{}, err
	}
	id, _ := parseLocation(req.Role)
	out, err := p.value(ctx, req.Role, id, "AWSCURRENT")
	if err != nil {
		return provider.Credentials{}, err
	}
	c, err := provider.CredentialsFromJSON(req.Role, payload(out))
	if err != nil {
		return provider.Credentials{}, provider.NewError(provider.ErrInvalidConfig, req.Role, err)
	}
	return c, nil
}

// Renew returns static credentials' zero lease unchanged: Secrets Manager issues no leases.
func (p *Provider) Renew(_ context.Context, l provider.Lease) (provider.Lease, error) {
	return provider.RenewStatic(l, p.closed.Load())
}

// Revoke does nothing: Secrets Manager issues no leases.
func (p *Provider) Revoke(_ context.Context, l provider.Lease) error {
	return provider.RevokeStatic(l, p.closed.Load())
}

// Health lists one secret.
func (p *Provider) Health(ctx context.Context) error {
	if p.closed.Load() {
		return provider.NewError(provider.ErrClosed, "", nil)
	}
	if _, err := p.sm.ListSecrets(ctx, &secretsmanager.ListSecretsInput{MaxResults: aws.Int32(1)}); err != nil {
		return classify("ListSecrets", "ListSecrets", err)
	}
	return nil
}

// Close makes later calls fail with provider.ErrClosed.
func (p *Provider) Close() error {
	p.closed.Store(true)
	return nil
}
