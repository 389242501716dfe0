package gcp_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	secretmanager "cloud.google.com/go/secretmanager/apiv1"
	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	gcpemulator "github.com/blackwell-systems/gcp-secret-manager-emulator"
	"go.uber.org/goleak"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/keyfort/keyfort/internal/hosttest"
	"github.com/keyfort/keyfort/internal/spantest"
	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/provider/providertest"
	"github.com/keyfort/keyfort/providers/gcp"
	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/oidc"
	"github.com/keyfort/keyfort/session/oidc/oidctest"
	"github.com/keyfort/keyfort/session/token"
)

func TestMain(m *testing.M) {
	hosttest.Main(m, goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"))
}

// emulator serves the Secret Manager emulator on loopback (the real API over gRPC) and returns its
// address, a real client to it, and a function that stops it.
type emulator struct {
	addr   string
	client *secretmanager.Client
	srv    *grpc.Server
	once   sync.Once
}

func startEmulator(t *testing.T, opts ...grpc.ServerOption) *emulator {
	t.Helper()
	srv := grpc.NewServer(opts...)
	if err := gcpemulator.Register(srv); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	e := &emulator{addr: l.Addr().String(), srv: srv}
	c, err := secretmanager.NewClient(context.Background(), option.WithEndpoint(e.addr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		t.Fatal(err)
	}
	e.client = c
	t.Cleanup(func() { _ = c.Close(); e.stop() })
	return e
}

func (e *emulator) stop() { e.once.Do(e.srv.Stop) }

const project = "projects/keyfort-test"

func (e *emulator) create(t *testing.T, id string, payloads ...string) string {
	t.Helper()
	ctx := context.Background()
	s, err := e.client.CreateSecret(ctx, &secretmanagerpb.CreateSecretRequest{Parent: project, SecretId: id,
		Secret: &secretmanagerpb.Secret{Replication: &secretmanagerpb.Replication{Replication: &secretmanagerpb.Replication_Automatic_{Automatic: &secretmanagerpb.Replication_Automatic{}}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range payloads {
		e.add(t, s.GetName(), p)
	}
	return s.GetName()
}

func (e *emulator) add(t *testing.T, secret, payload string) string {
	t.Helper()
	v, err := e.client.AddSecretVersion(context.Background(), &secretmanagerpb.AddSecretVersionRequest{Parent: secret, Payload: &secretmanagerpb.SecretPayload{Data: []byte(payload)}})
	if err != nil {
		t.Fatal(err)
	}
	return v.GetName()
}

func (e *emulator) settings() provider.Settings {
	return provider.NewSettings("gcp", []byte(`{"endpoint":"`+e.addr+`","insecure_plaintext":true}`))
}

func pemKey(t *testing.T, alg provider.Algorithm) string {
	t.Helper()
	k, err := provider.GenerateKey(alg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k.Private.Reveal()}))
}

const secretValue = "gcp secret value 33"

// TestConformance runs the suite in process, over the plugin transport and through provider-host.
func TestConformance(t *testing.T) {
	e := startEmulator(t)
	signing := e.create(t, "signing", pemKey(t, provider.EdDSA))
	e.create(t, "app", `{"client_id":"`+secretValue+`"}`)
	creds, _ := json.Marshal(map[string]any{"username": "svc", "password": "gcp-pa55word", "host": "10.0.0.5"})
	e.create(t, "db", string(creds))
	providertest.RunAllWays(t, providertest.Ways{
		Name: "gcp", Factory: gcp.Factory, Settings: e.settings(), Binary: hosttest.ProviderHost(t), Args: []string{"plugin", "gcp"},
	}, providertest.Config{
		KeySet: signing, Secret: project + "/secrets/app#client_id", SecretValue: []byte(secretValue),
		Credentials: project + "/secrets/db", Missing: project + "/secrets/nothing-here",
		Rotate: func(_ context.Context, t *testing.T, _ provider.IdentitySecretMaterialProvider) error {
			e.add(t, signing, pemKey(t, provider.EdDSA))
			return nil
		},
	})
}

func newProvider(t *testing.T, e *emulator) *gcp.Provider {
	t.Helper()
	p, err := gcp.New(context.Background(), gcp.Config{Endpoint: e.addr, InsecurePlaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func TestDisabledAndDestroyedVersionsNeverVerify(t *testing.T) {
	e := startEmulator(t)
	ctx := context.Background()
	secret := e.create(t, "sig", pemKey(t, provider.ES256))
	v2 := e.add(t, secret, pemKey(t, provider.ES256))
	e.add(t, secret, pemKey(t, provider.ES256))
	p := newProvider(t, e)
	ks, err := p.SigningKeys(ctx, secret)
	if err != nil || len(ks.Keys) != 3 || ks.Keys[0].Version != "3" || ks.Keys[0].ID != ks.ActiveID {
		t.Fatalf("three enabled versions: got %v, %v", ks, err)
	}
	if _, err := e.client.DisableSecretVersion(ctx, &secretmanagerpb.DisableSecretVersionRequest{Name: v2}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.DestroySecretVersion(ctx, &secretmanagerpb.DestroySecretVersionRequest{Name: secret + "/versions/1"}); err != nil {
		t.Fatal(err)
	}
	ks, err = p.SigningKeys(ctx, secret)
	if err != nil || len(ks.Keys) != 1 || ks.Keys[0].Version != "3" {
		t.Errorf("after disabling v2 and destroying v1: got %v, %v; want only v3", ks, err)
	}
	if _, err := p.SigningKeys(ctx, v2); !errors.Is(err, provider.ErrNotFound) {
		t.Errorf("a pinned disabled version: got %v, want ErrNotFound", err)
	}
	if _, err := p.Secret(ctx, "projects/x/nope"); !errors.Is(err, provider.ErrInvalidArgument) {
		t.Errorf("a malformed location: got %v", err)
	}
}

func TestRawAndBase64HS256(t *testing.T) {
	e := startEmulator(t)
	raw := e.create(t, "raw", strings.Repeat("r", 32))
	b64 := e.create(t, "b64", "base64:"+"QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB")
	p := newProvider(t, e)
	for _, s := range []string{raw, b64} {
		ks, err := p.SigningKeys(context.Background(), s)
		if err != nil {
			t.Fatal(err)
		}
		if a, _ := ks.Active(); a.Algorithm != provider.HS256 {
			t.Errorf("%s: got %v", s, a)
		}
	}
}

func TestOutageServedStaleThenLoud(t *testing.T) {
	e := startEmulator(t)
	secret := e.create(t, "app", "v1")
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	c, err := provider.NewClient(newProvider(t, e), provider.ClientConfig{Name: "gcp", CacheTTL: time.Minute, StaleBudget: 5 * time.Minute, Timeout: 300 * time.Millisecond, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if _, err := c.Secret(ctx, secret); err != nil {
		t.Fatal(err)
	}
	e.stop()
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	if s, err := c.Secret(ctx, secret); err != nil || s.Value.RevealString() != "v1" {
		t.Fatalf("within the stale budget: %v, %v", s, err)
	}
	mu.Lock()
	now = now.Add(5 * time.Minute)
	mu.Unlock()
	if _, err := c.Secret(ctx, secret); !errors.Is(err, provider.ErrUnavailable) || !strings.Contains(err.Error(), "stale budget") {
		t.Errorf("past the stale budget: got %v", err)
	}
}

// TestRotationThroughSessionRefresh: a version added in Secret Manager signs the next refreshed token
// once the client's cache TTL has passed, with no restart; tokens of the previous version verify.
func TestRotationThroughSessionRefresh(t *testing.T) {
	e := startEmulator(t)
	secret := e.create(t, "session-signing", pemKey(t, provider.EdDSA))
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	keys, err := provider.NewClient(newProvider(t, e), provider.ClientConfig{Name: "gcp", CacheTTL: time.Minute, Now: clock})
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
		Keys: token.KeySourceFunc(func(ctx context.Context) (provider.KeySet, error) { return keys.SigningKeys(ctx, secret) }),
		IdPs: map[string]*oidc.Verifier{"google": google}, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	first, err := m.StartSession(ctx, session.StartRequest{IdP: "google", ExternalToken: iss.Sign(t, "k1", iss.Claims("alice", "client-1"), nil)})
	if err != nil {
		t.Fatal(err)
	}
	before, _ := keys.SigningKeys(ctx, secret)
	e.add(t, secret, pemKey(t, provider.EdDSA))
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	second, err := m.RefreshSession(ctx, first.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	after, _ := keys.SigningKeys(ctx, secret)
	if after.ActiveID == before.ActiveID {
		t.Fatal("the new version did not reach the provider client")
	}
	hdr, _ := base64.RawURLEncoding.DecodeString(strings.Split(second.AccessToken, ".")[0])
	if !strings.Contains(string(hdr), after.ActiveID) {
		t.Error("the refreshed token is not signed with the new version")
	}
	if _, err := m.VerifyAccess(ctx, first.AccessToken); err != nil {
		t.Errorf("a token signed with the previous version: %v", err)
	}
}

// TestIAMDenialAndDeadlines extends the emulator, on the wire, with what it lacks: an IAM denial for
// one secret and a backend that never answers another in time.
func TestIAMDenialAndDeadlines(t *testing.T) {
	deny := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if r, ok := req.(*secretmanagerpb.AccessSecretVersionRequest); ok {
			switch {
			case strings.Contains(r.GetName(), "/secrets/forbidden/"):
				return nil, status.Error(codes.PermissionDenied, "Permission 'secretmanager.versions.access' denied for resource")
			case strings.Contains(r.GetName(), "/secrets/slow/"):
				<-ctx.Done()
				return nil, status.FromContextError(ctx.Err()).Err()
			}
		}
		return h(ctx, req)
	}
	e := startEmulator(t, grpc.UnaryInterceptor(deny))
	forbidden := e.create(t, "forbidden", "x")
	slow := e.create(t, "slow", "x")
	p := newProvider(t, e)
	_, err := p.Secret(context.Background(), forbidden)
	if !errors.Is(err, provider.ErrPermissionDenied) || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("IAM denial: got %v, want ErrPermissionDenied naming the secret", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = p.Secret(ctx, slow)
	if !errors.Is(err, provider.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a backend past the deadline: got %v, want ErrUnavailable wrapping DeadlineExceeded", err)
	}
}

// TestGCPCallsAreTraced: with a global TracerProvider (provider-host plugin sets one from
// OTEL_*), the client library's own instrumentation (its gRPC transport) makes a client span per
// call under the span of the call that made it, with none of the secret's value.
func TestGCPCallsAreTraced(t *testing.T) {
	e := startEmulator(t)
	name := e.create(t, "traced", "a-value-of-the-secret")
	rec := spantest.Global(t)
	p := newProvider(t, e)
	ctx, call := rec.Tracer("test").Start(context.Background(), "call")
	if _, err := p.Secret(ctx, name); err != nil {
		t.Fatal(err)
	}
	call.End()
	var names []string
	for _, s := range rec.Children(call) {
		names = append(names, s.Name())
	}
	if !slices.ContainsFunc(names, func(n string) bool { return strings.HasSuffix(n, "SecretManagerService/AccessSecretVersion") }) {
		t.Errorf("the call's client spans: %q, want the AccessSecretVersion call", names)
	}
	rec.NoSecret(t, "a-value-of-the-secret")
}

// TestPublishAhead: with publish_ahead, a new version is published at once and signs only once it
// is that old (its create_time), the previous one signing meanwhile; a key set whose versions are
// all younger signs with the oldest; a bad duration is a configuration error.
func TestPublishAhead(t *testing.T) {
	e := startEmulator(t)
	name := e.create(t, "ahead", pemKey(t, provider.EdDSA))
	ctx := context.Background()
	open := func(ahead string) *gcp.Provider {
		p, err := gcp.New(ctx, gcp.Config{Endpoint: e.addr, InsecurePlaintext: true, PublishAhead: ahead})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Close() })
		return p
	}
	slow, quick := open("1h"), open("1s")
	first, err := slow.SigningKeys(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	e.add(t, name, pemKey(t, provider.EdDSA))
	after, err := slow.SigningKeys(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Keys) != 2 || after.ActiveID != first.ActiveID {
		t.Fatalf("right after a new version, an hour ahead: active %s of %d keys, want the first (%s) active and both published",
			after.ActiveID, len(after.Keys), first.ActiveID)
	}
	for i := 0; ; i++ {
		ks, err := quick.SigningKeys(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if ks.ActiveID != first.ActiveID {
			if _, ok := after.Lookup(ks.ActiveID); !ok {
				t.Fatalf("the active kid %s was not published before", ks.ActiveID)
			}
			break
		}
		if i == 100 {
			t.Fatal("the new version never signed, a second ahead")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := gcp.New(ctx, gcp.Config{Endpoint: e.addr, InsecurePlaintext: true, PublishAhead: "soon"}); !errors.Is(err, provider.ErrInvalidConfig) {
		t.Errorf("a bad publish_ahead: %v", err)
	}
}
