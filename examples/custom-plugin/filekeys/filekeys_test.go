package filekeys_test

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

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
	providertest.RunAllWays(t, providertest.Ways{
		Name: "files", Factory: filekeys.Factory, Settings: settings(dir),
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

func settings(dir string) provider.Settings {
	return provider.NewSettings("files", []byte(`{"dir":"`+dir+`"}`))
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
