package aws_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyfort/keyfort/internal/hosttest"
	"github.com/keyfort/keyfort/internal/mototest"
	"github.com/keyfort/keyfort/internal/spantest"
	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/provider/providertest"
	"github.com/keyfort/keyfort/providers/aws"
	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/oidc"
	"github.com/keyfort/keyfort/session/oidc/oidctest"
	"github.com/keyfort/keyfort/session/token"
)

func TestMain(m *testing.M) {
	hosttest.Main(withCleanup{m, mototest.Stop})
}

// withCleanup runs a cleanup after the tests, before hosttest.Main looks for leaks.
type withCleanup struct {
	*testing.M
	cleanup func()
}

func (w withCleanup) Run() int {
	code := w.M.Run()
	w.cleanup()
	return code
}

// moto returns the emulator's endpoint, fresh, with the environment the SDK's standard chain reads.
func moto(t *testing.T) (string, *secretsmanager.Client) {
	t.Helper()
	t.Setenv("AWS_ACCESS_KEY_ID", "testing")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testing")
	t.Setenv("AWS_REGION", "us-east-1")
	url := mototest.URL(t)
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return url, secretsmanager.NewFromConfig(cfg, func(o *secretsmanager.Options) { o.BaseEndpoint = awssdk.String(url) })
}

func pemKey(t *testing.T, alg provider.Algorithm) string {
	t.Helper()
	k, err := provider.GenerateKey(alg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k.Private.Reveal()}))
}

func create(t *testing.T, sm *secretsmanager.Client, name, value string) {
	t.Helper()
	if _, err := sm.CreateSecret(context.Background(), &secretsmanager.CreateSecretInput{Name: awssdk.String(name), SecretString: awssdk.String(value)}); err != nil {
		t.Fatal(err)
	}
}

func put(t *testing.T, sm *secretsmanager.Client, name, value string, stages ...string) {
	t.Helper()
	in := &secretsmanager.PutSecretValueInput{SecretId: awssdk.String(name), SecretString: awssdk.String(value)}
	if len(stages) > 0 {
		in.VersionStages = stages
	}
	if _, err := sm.PutSecretValue(context.Background(), in); err != nil {
		t.Fatal(err)
	}
}

const secretValue = "aws secret value 91"

func rds(user, pass string) string {
	b, _ := json.Marshal(map[string]any{"username": user, "password": pass, "host": "db.internal", "port": 5432, "dbname": "orders", "engine": "postgres"})
	return string(b)
}

// TestConformance runs the suite in process, over the plugin transport and through provider-host.
func TestConformance(t *testing.T) {
	url, sm := moto(t)
	create(t, sm, "keyfort/signing", pemKey(t, provider.ES256))
	create(t, sm, "keyfort/app", `{"client_id":"`+secretValue+`","other":1}`)
	create(t, sm, "keyfort/db", rds("orders_app", "pa55word-of-rds"))
	providertest.RunAllWays(t, providertest.Ways{
		Name: "aws", Factory: aws.Factory, Binary: hosttest.ProviderHost(t), Args: []string{"plugin", "aws"},
		Settings: provider.NewSettings("aws", []byte(`{"endpoint":"`+url+`","region":"us-east-1"}`)),
	}, providertest.Config{
		KeySet: "keyfort/signing", Secret: "keyfort/app#client_id", SecretValue: []byte(secretValue),
		Credentials: "keyfort/db", Missing: "keyfort/nothing-here",
		Rotate: func(_ context.Context, t *testing.T, _ provider.IdentitySecretMaterialProvider) error {
			put(t, sm, "keyfort/signing", pemKey(t, provider.ES256)) // the new version is AWSCURRENT, the old AWSPREVIOUS
			return nil
		},
	})
}

func newProvider(t *testing.T, url string) *aws.Provider {
	t.Helper()
	p, err := aws.New(context.Background(), aws.Config{Endpoint: url, Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func TestPendingVersionPublishedAheadOfRotation(t *testing.T) {
	url, sm := moto(t)
	create(t, sm, "sig", pemKey(t, provider.EdDSA))
	put(t, sm, "sig", pemKey(t, provider.EdDSA))
	put(t, sm, "sig", pemKey(t, provider.EdDSA), "AWSPENDING")
	ks, err := newProvider(t, url).SigningKeys(context.Background(), "sig")
	if err != nil {
		t.Fatal(err)
	}
	if len(ks.Keys) != 3 || ks.Keys[0].ID == ks.ActiveID || ks.Keys[1].ID != ks.ActiveID {
		t.Errorf("want pending (verify), current (active) and previous (verify); got %v", ks)
	}
}

func TestBinaryHS256AndJSONKeyDocuments(t *testing.T) {
	url, sm := moto(t)
	ctx := context.Background()
	if _, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: awssdk.String("bin"), SecretBinary: []byte(strings.Repeat("k", 32))}); err != nil {
		t.Fatal(err)
	}
	create(t, sm, "doc", `{"secret":"base64:`+"QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB"+`","algorithm":"HS256"}`)
	create(t, sm, "short", `{"secret":"too-short"}`)
	p := newProvider(t, url)
	for _, name := range []string{"bin", "doc"} {
		ks, err := p.SigningKeys(ctx, name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if a, _ := ks.Active(); a.Algorithm != provider.HS256 {
			t.Errorf("%s: got %v", name, a)
		}
	}
	if _, err := p.SigningKeys(ctx, "short"); !errors.Is(err, provider.ErrInvalidConfig) || strings.Contains(err.Error(), "too-short") {
		t.Errorf("a short HMAC secret: got %v", err)
	}
}

func TestRDSCredentials(t *testing.T) {
	url, sm := moto(t)
	create(t, sm, "db", rds("app", "s3cret-rds"))
	c, err := newProvider(t, url).Credentials(context.Background(), provider.CredentialRequest{Role: "db"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Username != "app" || c.Password.RevealString() != "s3cret-rds" || c.Extra["port"].RevealString() != "5432" || c.Extra["engine"].RevealString() != "postgres" {
		t.Errorf("got %v", c)
	}
}

func TestOutageServedStaleThenLoud(t *testing.T) {
	url, sm := moto(t)
	create(t, sm, "app", "v1")
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	c, err := provider.NewClient(newProvider(t, url), provider.ClientConfig{Name: "aws", CacheTTL: time.Minute, StaleBudget: 5 * time.Minute, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if _, err := c.Secret(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	mototest.Stop()
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	if s, err := c.Secret(ctx, "app"); err != nil || s.Value.RevealString() != "v1" {
		t.Fatalf("within the stale budget: %v, %v", s, err)
	}
	mu.Lock()
	now = now.Add(5 * time.Minute)
	mu.Unlock()
	if _, err := c.Secret(ctx, "app"); !errors.Is(err, provider.ErrUnavailable) || !strings.Contains(err.Error(), "stale budget") {
		t.Errorf("past the stale budget: got %v", err)
	}
}

// TestRotationThroughSessionRefresh rotates the signing secret in Secrets Manager under a running
// session manager: after the client's cache TTL, a refresh signs with the new key, with no restart,
// and tokens signed with the previous key keep verifying.
func TestRotationThroughSessionRefresh(t *testing.T) {
	url, sm := moto(t)
	create(t, sm, "session-signing", pemKey(t, provider.ES256))
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	keys, err := provider.NewClient(newProvider(t, url), provider.ClientConfig{Name: "aws", CacheTTL: time.Minute, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer keys.Close()
	iss := oidctest.New(t)
	google, err := oidc.New(context.Background(), oidc.Config{Issuer: iss.URL, Audience: "client-1"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := session.NewManager(session.Config{Issuer: "https://keyfort.test",
		Keys: token.KeySourceFunc(func(ctx context.Context) (provider.KeySet, error) { return keys.SigningKeys(ctx, "session-signing") }),
		IdPs: map[string]*oidc.Verifier{"google": google}, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	first, err := m.StartSession(ctx, session.StartRequest{IdP: "google", ExternalToken: iss.Sign(t, "k1", iss.Claims("alice", "client-1"), nil)})
	if err != nil {
		t.Fatal(err)
	}
	before, _ := keys.SigningKeys(ctx, "session-signing")
	put(t, sm, "session-signing", pemKey(t, provider.ES256))
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	second, err := m.RefreshSession(ctx, first.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	after, _ := keys.SigningKeys(ctx, "session-signing")
	if after.ActiveID == before.ActiveID {
		t.Fatal("the rotation in Secrets Manager did not reach the provider client")
	}
	if !strings.Contains(headerKid(t, second.AccessToken), after.ActiveID) {
		t.Error("the refreshed token is not signed with the new key")
	}
	if _, err := m.VerifyAccess(ctx, first.AccessToken); err != nil {
		t.Errorf("a token signed with the previous key: %v", err)
	}
}

func headerKid(t *testing.T, tok string) string {
	t.Helper()
	return strings.Split(tok, ".")[0] + "|" + decodeHeader(t, tok)
}

// TestAWSRequestsAreTraced: with a global TracerProvider (provider-host plugin sets one from
// OTEL_*), each request the SDK sends is a client span under the span of the call that made it,
// with none of the request's signature or credentials.
func TestAWSRequestsAreTraced(t *testing.T) {
	url, sm := moto(t)
	create(t, sm, "traced", "a-value-of-the-secret")
	rec := spantest.Global(t)
	p := newProvider(t, url)
	ctx, call := rec.Tracer("test").Start(context.Background(), "call")
	if _, err := p.Secret(ctx, "traced"); err != nil {
		t.Fatal(err)
	}
	call.End()
	spans := rec.Children(call)
	if len(spans) == 0 || spantest.Attr(spans[0], "http.request.method") != "POST" || !strings.HasPrefix(spantest.Attr(spans[0], "url.full"), url) {
		t.Fatalf("the call's client spans: %d, want the SDK's POST to %s", len(spans), url)
	}
	rec.NoSecret(t, "a-value-of-the-secret", "AWS4-HMAC-SHA256", "testing")
}
