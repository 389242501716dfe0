package main_test

import (
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keyfort/keyfort/internal/hosttest"
	"github.com/keyfort/keyfort/provider"
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
