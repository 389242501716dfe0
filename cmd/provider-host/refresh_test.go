package main_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/keyfort/keyfort/api/identity/v1"
	"github.com/keyfort/keyfort/internal/hosttest"
	"github.com/keyfort/keyfort/internal/redistest"
	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/session/oidc/oidctest"
	"github.com/keyfort/keyfort/session/token"
)

// writeSigningKey writes a new ES256 key as file of the custom plugin's key set "session" in dir.
func writeSigningKey(t *testing.T, dir, file string) {
	t.Helper()
	k, err := provider.GenerateKey(provider.ES256, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "keys", "session"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "keys", "session", file),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k.Private.Reveal()}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// jwksKids fetches serve's JWKS and returns its kids.
func jwksKids(t *testing.T, httpAddr string) []string {
	t.Helper()
	code, body := get(t, "http://"+httpAddr+"/.well-known/jwks.json")
	if code != 200 {
		t.Fatalf("jwks: %d %s", code, body)
	}
	var jwks struct {
		Keys []struct{ Kid string } `json:"keys"`
	}
	if err := json.Unmarshal([]byte(body), &jwks); err != nil {
		t.Fatal(err)
	}
	kids := make([]string, 0, len(jwks.Keys))
	for _, k := range jwks.Keys {
		kids = append(kids, k.Kid)
	}
	return kids
}

// TestServeRefetchesOnSIGHUP: a key added at a provider that reports no changes (the custom plugin,
// files on disk) waits for the cache TTL (an hour here); SIGHUP makes serve refetch at once, publish
// it and log the key set's kids with the new active one, and serve goes on.
func TestServeRefetchesOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	writeSigningKey(t, dir, "0001.pem")
	bin := hosttest.Build(t, "github.com/keyfort/keyfort/examples/custom-plugin")
	cfg := writeConfig(t, `
providers:
  files:
    plugin: `+bin+`
    cache_ttl: 1h
    settings: { dir: `+dir+` }
identity:
  secrets:
    session_signing: files:session
`)
	addr, log, cmd := startServe(t, []string{"PATH=" + os.Getenv("PATH")}, "--config", cfg)
	before := jwksKids(t, addr)
	if len(before) != 1 {
		t.Fatalf("kids at start: %v", before)
	}
	writeSigningKey(t, dir, "0002.pem")
	if got := jwksKids(t, addr); len(got) != 1 {
		t.Fatalf("the new key was published before SIGHUP (the cache should hold the old set): %v", got)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(log.String(), "SIGHUP: refetched") {
		if time.Now().After(deadline) {
			t.Fatalf("no refetch logged after SIGHUP:\n%s", log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	after := jwksKids(t, addr)
	if len(after) != 2 {
		t.Fatalf("kids after SIGHUP: %v, want the old and the new", after)
	}
	newKid := after[0]
	if newKid == before[0] {
		newKid = after[1]
	}
	if !strings.Contains(log.String(), "active_kid="+newKid) {
		t.Errorf("the log does not name the new active kid %s:\n%s", newKid, log)
	}
	if cmd.ProcessState != nil {
		t.Fatal("serve exited on SIGHUP")
	}
	if got := jwksKids(t, addr); len(got) != 2 {
		t.Errorf("serve stopped answering after SIGHUP: %v", got)
	}
}

// TestRotationSeenFirstByOneReplica: two replicas over one Redis, a provider that reports no
// changes (the custom plugin's files) cached for an hour. After a new key is added, one replica
// refetches first (SIGHUP here; its cache TTL, in production) and signs with the new key; the
// other, whose cache still holds the old set, accepts those tokens at once by refetching the set
// for the unknown kid, instead of refusing them until its cache TTL ends. A flood of made-up kids
// costs that replica no further provider call within the refetch interval.
func TestRotationSeenFirstByOneReplica(t *testing.T) {
	srv := redistest.StartServer(t)
	f := newFilesRuntime(t, `    redis_url: "redis://`+srv.Addr+`/0"
`, "")
	iss := f.iss
	addrA, _, cmdA, a := f.serve(t)
	addrB, _, _, b := f.serve(t)
	ctx := context.Background()
	old := startAs(t, a, iss, "client-1", "alice", "laptop")
	f.rotate(t, cmdA, addrA)
	if kids := jwksKids(t, addrB); len(kids) != 1 {
		t.Fatalf("replica B knew the new key before any token named it: %v", kids)
	}
	fresh := startAs(t, a, iss, "client-1", "bob", "phone")
	freshKID, _ := token.KeyID(fresh.GetAccessToken())
	if oldKID, _ := token.KeyID(old.GetAccessToken()); freshKID == oldKID {
		t.Fatal("replica A does not sign with the new key")
	}
	as := func(tok string) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	}
	if _, err := b.EvaluateIdentityPolicy(as(fresh.GetAccessToken()), &pb.EvaluateIdentityPolicyRequest{}); err != nil {
		t.Fatalf("replica B refused a token of the key replica A rotated to: %v", err)
	}
	if _, err := b.RefreshIdentitySession(ctx, &pb.RefreshIdentitySessionRequest{RefreshToken: fresh.GetRefreshToken()}); err != nil {
		t.Errorf("replica B refreshing the new key's session: %v", err)
	}
	if kids := jwksKids(t, addrB); len(kids) != 2 || !slices.Contains(kids, freshKID) {
		t.Errorf("replica B's JWKS after the refetch: %v", kids)
	}
	calls := func() float64 {
		_, body := get(t, "http://"+addrB+"/metrics")
		return metricValue(body, `keyfort_provider_calls_total{method="SigningKeys",provider="files"}`)
	}
	before := calls()
	if before < 2 {
		t.Fatalf("replica B's SigningKeys calls: %v, want its first fetch and the refetch counted", before)
	}
	parts := strings.Split(fresh.GetAccessToken(), ".")
	for i := range 20 {
		h := base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, `{"alg":"ES256","kid":"made-up-%d","typ":"at+jwt"}`, i))
		if _, err := b.EvaluateIdentityPolicy(as(h+"."+parts[1]+"."+parts[2]), &pb.EvaluateIdentityPolicyRequest{}); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("a made-up kid: %v", err)
		}
	}
	if got := calls() - before; got != 0 {
		t.Errorf("20 made-up kids within the refetch interval cost %v provider calls, want 0", got)
	}
}

// metricValue is the value of series (name and labels, as the text exposition writes them) in
// body; 0 when it is not there.
func metricValue(body, series string) float64 {
	for line := range strings.Lines(body) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// filesRuntime is a runtime configuration whose signing keys are files of the custom plugin (a
// provider that reports no changes, cached for an hour): rotate adds a key file, and only a SIGHUP
// or a refetch makes a serve see it.
type filesRuntime struct {
	dir string
	iss *oidctest.Issuer
	cfg string
	env []string
}

// newFilesRuntime writes one key file and the configuration, with session lines (indented under
// identity.session) and more identity lines (indented under identity) appended.
func newFilesRuntime(t *testing.T, session, identity string) *filesRuntime {
	t.Helper()
	f := &filesRuntime{dir: t.TempDir(), iss: oidctest.New(t), env: []string{"PATH=" + os.Getenv("PATH"), "KFSERVE_CLIENT_ID=client-1"}}
	writeSigningKey(t, f.dir, "0001.pem")
	bin := hosttest.Build(t, "github.com/keyfort/keyfort/examples/custom-plugin")
	f.cfg = writeConfig(t, `
providers:
  files:
    plugin: `+bin+`
    cache_ttl: 1h
    settings: { dir: `+f.dir+` }
identity:
  secrets:
    session_signing: files:session
    oidc:
      google:
        client_id: env:KFSERVE_CLIENT_ID
        issuer: `+f.iss.URL+`
  session:
    issuer: https://keyfort.test
`+session+identity)
	return f
}

// serve starts a serve on the configuration and returns its HTTP address, log, process and client.
func (f *filesRuntime) serve(t *testing.T) (string, *hosttest.Log, *exec.Cmd, pb.IdentityRuntimeServiceClient) {
	t.Helper()
	addr, log, cmd := startServe(t, f.env, "--config", f.cfg, "--grpc-addr", "127.0.0.1:0")
	return addr, log, cmd, runtimeClient(t, log.String())
}

// rotate adds a newer key file and makes the serve of cmd and addr refetch it (SIGHUP), waiting
// until its JWKS publishes both keys.
func (f *filesRuntime) rotate(t *testing.T, cmd *exec.Cmd, addr string) {
	t.Helper()
	writeSigningKey(t, f.dir, "0002.pem")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for len(jwksKids(t, addr)) != 2 {
		time.Sleep(20 * time.Millisecond)
	}
}
