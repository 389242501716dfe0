package filekeys_test

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyfort/keyfort/catalog"
	"github.com/keyfort/keyfort/config"
	"github.com/keyfort/keyfort/examples/custom-plugin/filekeys"
	"github.com/keyfort/keyfort/internal/hosttest"
	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/provider/providertest"
)

func TestMain(m *testing.M) { hosttest.Main(m) }

const secret = "file secret value 42"

// fixtureDir lays out one key set and one secret.
func fixtureDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	writeKey(t, dir, "0001.pem")
	must(t, os.MkdirAll(filepath.Join(dir, "secrets"), 0o700))
	must(t, os.WriteFile(filepath.Join(dir, "secrets", "db"), []byte(secret), 0o600))
	return dir
}

func writeKey(t *testing.T, dir, file string) {
	t.Helper()
	k, err := provider.GenerateKey(provider.ES256, nil)
	must(t, err)
	must(t, os.MkdirAll(filepath.Join(dir, "keys", "session"), 0o700))
	must(t, os.WriteFile(filepath.Join(dir, "keys", "session", file),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k.Private.Reveal()}), 0o600))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestConformance runs the suite against the provider in process, over the plugin transport and
// against the built example binary, all reading one fixture directory.
func TestConformance(t *testing.T) {
	dir := fixtureDir(t)
	rotations := 1
	// watch: the suite's Watch test sees each rotation reported (in process, over the transport and
	// from the binary).
	providertest.RunAllWays(t, providertest.Ways{
		Name: "files", Factory: filekeys.Factory, Settings: provider.NewSettings("files", []byte(`{"dir":"`+dir+`","watch":"20ms"}`)),
		Binary: hosttest.Build(t, "github.com/keyfort/keyfort/examples/custom-plugin"),
	}, providertest.Config{
		KeySet: "session", Secret: "db", SecretValue: []byte(secret), Missing: "nothing-here",
		Rotate: func(_ context.Context, t *testing.T, _ provider.IdentitySecretMaterialProvider) error {
			rotations++
			writeKey(t, dir, fmt.Sprintf("%04d.pem", rotations))
			return nil
		},
	})
}

// TestLoadedByConfigFile runs the plugin binary the way a user would: named in a configuration file,
// pinned by its sha256, and resolved by logical key.
func TestLoadedByConfigFile(t *testing.T) {
	bin := hosttest.Build(t, "github.com/keyfort/keyfort/examples/custom-plugin")
	sum := sha256File(t, bin)
	dir := fixtureDir(t)
	cfgFile := filepath.Join(t.TempDir(), "keyfort.yaml")
	must(t, os.WriteFile(cfgFile, []byte(`
providers:
  files:
    plugin: `+bin+`
    sha256: "`+sum+`"
    settings: { dir: `+dir+` }
identity:
  secrets:
    session_signing: files:session
    database_password: files:db
`), 0o600))
	cfg, err := config.Load(config.Source{Files: []string{cfgFile}, Environ: []string{}})
	must(t, err)
	cat, err := catalog.Open(context.Background(), cfg, catalog.Options{Verify: true})
	must(t, err)
	defer cat.Close()
	ks, err := cat.SigningKeys(context.Background(), "session_signing")
	must(t, err)
	if active, _ := ks.Active(); active.Version != "0001" || active.Algorithm != provider.ES256 {
		t.Errorf("active key: got %v", active)
	}
	s, err := cat.Secret(context.Background(), "database_password")
	if err != nil || s.Value.RevealString() != secret {
		t.Errorf("secret: got %v, %v", s, err)
	}
}

func TestPathTraversalRefused(t *testing.T) {
	p, err := filekeys.New(context.Background(), filekeys.Config{Dir: fixtureDir(t)})
	must(t, err)
	defer p.Close()
	for _, name := range []string{"../secrets", "..", "/etc/passwd", ".hidden", "a/b"} {
		if _, err := p.Secret(context.Background(), name); !errors.Is(err, provider.ErrInvalidArgument) {
			t.Errorf("Secret(%q): got %v, want ErrInvalidArgument", name, err)
		}
	}
}

// TestWatchReportsChangedFiles: with the watch setting, a new key file, a changed secret and a
// removed secret are each reported by name; without it, Watch is ErrUnimplemented (the host then
// keeps to its cache TTL). A bad interval is a configuration error naming the setting.
func TestWatchReportsChangedFiles(t *testing.T) {
	dir := fixtureDir(t)
	p, err := filekeys.New(context.Background(), filekeys.Config{Dir: dir, Watch: "10ms"})
	must(t, err)
	defer p.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan provider.Change, 64)
	go func() { _ = p.Watch(ctx, func(c provider.Change) { got <- c }) }()
	next := func(want string) {
		t.Helper()
		for {
			select {
			case c := <-got:
				if c.Name == want {
					return
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("no change reported for %q", want)
			}
		}
	}
	next("") // established
	writeKey(t, dir, "0002.pem")
	next("session")
	must(t, os.WriteFile(filepath.Join(dir, "secrets", "api"), []byte("new"), 0o600))
	next("api")
	must(t, os.Remove(filepath.Join(dir, "secrets", "db")))
	next("db")

	off, err := filekeys.New(context.Background(), filekeys.Config{Dir: dir})
	must(t, err)
	defer off.Close()
	if err := off.Watch(ctx, func(provider.Change) {}); !errors.Is(err, provider.ErrUnimplemented) {
		t.Errorf("Watch without the setting: got %v, want ErrUnimplemented", err)
	}
	if _, err := filekeys.New(context.Background(), filekeys.Config{Dir: dir, Watch: "soon"}); !errors.Is(err, provider.ErrInvalidConfig) || !strings.Contains(err.Error(), "watch") {
		t.Errorf("a bad interval: got %v, want ErrInvalidConfig naming watch", err)
	}
}
