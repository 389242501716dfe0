package catalog_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyfort/keyfort/catalog"
	"github.com/keyfort/keyfort/config"
	"github.com/keyfort/keyfort/internal/hosttest"
	"github.com/keyfort/keyfort/internal/metrictest"
	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/providers/env"
	"github.com/keyfort/keyfort/providers/memory"
)

func TestMain(m *testing.M) { hosttest.Main(m) }

const cfgYAML = `
providers:
  dev:
    type: memory
    settings:
      signing_keys: { session-signing: { algorithm: ES256 } }
      credentials: { orders: { ttl: 5m } }
identity:
  secrets:
    session_signing: dev:session-signing
    oidc:
      google:
        client_id: env:KFCAT_GOOGLE_CLIENT_ID
  credentials:
    orders: dev:orders
`

func load(t *testing.T, body string) *config.Config {
	t.Helper()
	p := filepath.Join(t.TempDir(), "keyfort.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(config.Source{Files: []string{p}, Environ: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestOpenThroughProviderHost(t *testing.T) {
	t.Setenv("KFCAT_GOOGLE_CLIENT_ID", "client-123.apps.googleusercontent.com")
	cat, err := catalog.Open(context.Background(), load(t, cfgYAML), catalog.Options{HostBinary: hosttest.ProviderHost(t), Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	ctx := context.Background()
	ks, err := cat.SigningKeys(ctx, "session_signing")
	if err != nil {
		t.Fatal(err)
	}
	if active, _ := ks.Active(); active.Algorithm != provider.ES256 {
		t.Errorf("active key: got %s, want ES256", active.Algorithm)
	}
	s, err := cat.Secret(ctx, "oidc/google/client_id")
	if err != nil || s.Value.RevealString() != "client-123.apps.googleusercontent.com" {
		t.Errorf("client id: got %v, %v", s, err)
	}
	cr, cl, err := cat.Credentials(ctx, "orders", provider.Sensitive{})
	if err != nil {
		t.Fatal(err)
	}
	if cr.Lease.IsZero() || cr.Password.IsZero() {
		t.Errorf("dynamic credentials: got %v", cr)
	}
	if err := cl.Revoke(ctx, cr.Lease); err != nil {
		t.Errorf("Revoke: %v", err)
	}
	for _, r := range cat.Check(ctx) {
		if !r.OK() {
			t.Errorf("check: %s", r)
		}
	}
}

// childPIDs returns the processes this test process started.
func childPIDs(t *testing.T) []int {
	t.Helper()
	tasks, _ := filepath.Glob("/proc/self/task/*/children")
	var pids []int
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// openWithPlugin opens a catalog of cfgYAML with metrics on a registry of its own, and returns it
// with the registry and the pid of the one plugin process it started.
func openWithPlugin(t *testing.T, cfgYAML string) (*catalog.Catalog, *prometheus.Registry, int) {
	t.Helper()
	return openWithPluginLogged(t, cfgYAML, nil)
}

// openWithPluginLogged is openWithPlugin with the catalog's log written to log (nil: the default).
func openWithPluginLogged(t *testing.T, cfgYAML string, log *hosttest.Log) (*catalog.Catalog, *prometheus.Registry, int) {
	t.Helper()
	var logger *slog.Logger
	if log != nil {
		logger = slog.New(slog.NewTextHandler(log, nil))
	}
	reg := prometheus.NewRegistry()
	metrics, err := provider.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := load(t, cfgYAML)
	before := childPIDs(t)
	cat, err := catalog.Open(context.Background(), cfg, catalog.Options{HostBinary: hosttest.ProviderHost(t), Metrics: metrics, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cat.Close() })
	var plugins []int
	for _, pid := range childPIDs(t) {
		if !slices.Contains(before, pid) {
			plugins = append(plugins, pid)
		}
	}
	if len(plugins) != 1 {
		t.Fatalf("plugin processes: got %v, want one", plugins)
	}
	return cat, reg, plugins[0]
}

// restarts sums keyfort_provider_restarts_total for provider name and, when not empty, reason.
func restarts(t *testing.T, reg *prometheus.Registry, name, reason string) float64 {
	t.Helper()
	labels := map[string]string{"provider": name}
	if reason != "" {
		labels["reason"] = reason
	}
	return metrictest.Counter(t, reg, "keyfort_provider_restarts_total", labels)
}

// TestPluginRestartsAreCounted: a plugin process that dies is restarted, and
// keyfort_provider_restarts_total counts it for its provider.
func TestPluginRestartsAreCounted(t *testing.T) {
	cat, reg, pid := openWithPlugin(t, `
providers:
  dev: { type: memory, cache_ttl: -1s, settings: { secrets: { s: v } } }
identity: { secrets: { session_signing: "dev:signing", s: "dev:s" } }
`)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := cat.Secret(context.Background(), "s"); err != nil {
		t.Fatalf("after the crash: %v", err)
	}
	if got := restarts(t, reg, "dev", ""); got != 1 {
		t.Errorf("keyfort_provider_restarts_total{provider=\"dev\"}: got %v, want 1", got)
	}
}

// TestFrozenPluginIsReplacedThroughConfiguration: probe_timeout and close_timeout reach the plugin's
// supervision. A frozen plugin (SIGSTOP) fails a call at the provider's timeout, the liveness probe
// (of the configured timeout) finds it unresponsive and replaces it, and calls succeed again; a
// replacement frozen in turn is killed at the configured close timeout when the catalog closes.
func TestFrozenPluginIsReplacedThroughConfiguration(t *testing.T) {
	var log hosttest.Log
	cat, reg, pid := openWithPluginLogged(t, `
providers:
  dev: { type: memory, cache_ttl: -1s, timeout: 300ms, probe_timeout: 234ms, close_timeout: 345ms, settings: { secrets: { s: v } } }
identity: { secrets: { session_signing: "dev:signing", s: "dev:s" } }
`, &log)
	hosttest.Freeze(t, pid)
	ctx := context.Background()
	if _, err := cat.Secret(ctx, "s"); !errors.Is(err, provider.ErrUnavailable) {
		t.Fatalf("a call to the frozen plugin: got %v, want ErrUnavailable", err)
	}
	var err error
	for range 100 { // each call is bounded by the provider's 300ms timeout
		if _, err = cat.Secret(ctx, "s"); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("the frozen plugin was not replaced: %v", err)
	}
	if got := restarts(t, reg, "dev", "unresponsive"); got != 1 {
		t.Errorf("restarts by reason unresponsive: got %v, want 1", got)
	}
	if !strings.Contains(log.String(), "did not answer a liveness probe within 234ms") {
		t.Errorf("the probe did not use the configured probe_timeout:\n%s", log.String())
	}
	fresh := 0
	for _, p := range childPIDs(t) {
		if p != pid {
			fresh = p
		}
	}
	if fresh == 0 {
		t.Fatal("no replacement plugin process")
	}
	hosttest.Freeze(t, fresh)
	if err := cat.Close(); err == nil || !strings.Contains(err.Error(), "did not close within 345ms") {
		t.Errorf("closing a frozen plugin: got %v, want the configured close_timeout", err)
	}
}

func TestVerifyNamesEveryMissingKey(t *testing.T) {
	cfg := load(t, cfgYAML+"    missing_too: env:KFCAT_NOT_SET\n")
	_, err := catalog.Open(context.Background(), cfg, catalog.Options{
		InProcess: map[string]provider.Factory{"memory": memory.Factory, "env": env.Factory}, Verify: true,
	})
	var missing *catalog.MissingError
	if !errors.As(err, &missing) || !errors.Is(err, provider.ErrNotFound) {
		t.Fatalf("got %v, want a *MissingError", err)
	}
	msg := err.Error()
	for _, want := range []string{
		`identity.secrets.oidc.google.client_id  env:KFCAT_GOOGLE_CLIENT_ID  keyfort: provider "env": Secret "KFCAT_GOOGLE_CLIENT_ID": not found`,
		`identity.credentials.missing_too  env:KFCAT_NOT_SET`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not name %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "identity.secrets.session_signing") {
		t.Errorf("a resolving key is reported as missing:\n%s", msg)
	}
}

func TestZeroConfigurationIsEphemeralAndLoud(t *testing.T) {
	cfg, err := config.Load(config.Source{Environ: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	var logs hosttest.Log
	cat, err := catalog.Open(context.Background(), cfg, catalog.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "EPHEMERAL") {
		t.Errorf("no loud warning in the log: %q", logs.String())
	}
	ctx := context.Background()
	a, err := cat.SigningKeys(ctx, "session_signing")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := cat.SigningKeys(ctx, "session_signing")
	if a.ActiveID != b.ActiveID {
		t.Error("the ephemeral key changed between calls")
	}
	if _, err := cat.Secret(ctx, "oidc.google.client_id"); !errors.Is(err, provider.ErrNotFound) {
		t.Errorf("no secret exists without configuration: got %v", err)
	}
}

func TestStartFailureNamesTheProvider(t *testing.T) {
	cfg := load(t, `
providers:
  corp-hsm: { plugin: /bin/true }
identity: { secrets: { session_signing: corp-hsm:keys } }
`)
	_, err := catalog.Open(context.Background(), cfg, catalog.Options{})
	if err == nil || !strings.Contains(err.Error(), `provider "corp-hsm"`) {
		t.Errorf("got %v, want an error naming corp-hsm", err)
	}
}

func TestMissingHostBinaryIsExplained(t *testing.T) {
	t.Setenv(catalog.HostBinaryEnv, "")
	t.Setenv("PATH", t.TempDir())
	_, err := catalog.Open(context.Background(), load(t, cfgYAML), catalog.Options{})
	if !errors.Is(err, provider.ErrInvalidConfig) || !strings.Contains(err.Error(), catalog.HostBinaryEnv) {
		t.Errorf("got %v, want ErrInvalidConfig explaining %s", err, catalog.HostBinaryEnv)
	}
}

func TestPerSessionCredentialsAreNotIssuedAtStart(t *testing.T) {
	cfg := load(t, `
providers:
  dev: { type: memory, settings: { signing_keys: { s: {} } } }
identity:
  secrets: { session_signing: dev:s }
  credentials:
    orders: { provider: dev, location: only-with-identity, per_session: true }
`)
	cat, err := catalog.Open(context.Background(), cfg, catalog.Options{
		InProcess: map[string]provider.Factory{"memory": memory.Factory}, Verify: true,
	})
	if err != nil {
		t.Fatalf("a per-session binding failed start-up: %v", err)
	}
	defer cat.Close()
	for _, r := range cat.Check(context.Background()) {
		if r.Binding.Key == "identity.credentials.orders" && (!r.OK() || !strings.Contains(r.Detail, "per session")) {
			t.Errorf("check: %s", r)
		}
	}
}

// TestReplaceablePluginBinary: a plugin binary that users other than its owner could replace (here
// its directory is writable by everyone) is refused with production: true, naming the directory;
// elsewhere it starts, with a warning saying why production would refuse it. The provider-host
// binary that serves built-in types is held to the same rule.
func TestReplaceablePluginBinary(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "plugins")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(hosttest.ProviderHost(t))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "corp-plugin")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil { // as if a deploy step had loosened it
		t.Fatal(err)
	}
	custom := "providers:\n  corp: { plugin: " + bin + ", args: [plugin, env] }\nidentity: { secrets: { session_signing: corp:SIGNING } }\n"
	builtin := "providers:\n  corp: { type: env }\nidentity: { secrets: { session_signing: corp:SIGNING } }\n"
	for _, body := range []string{custom, builtin} {
		_, err := catalog.Open(context.Background(), load(t, "production: true\n"+body), catalog.Options{HostBinary: bin})
		if !errors.Is(err, provider.ErrPermissionDenied) || !strings.Contains(err.Error(), dir+" is writable by every user") {
			t.Errorf("production: got %v, want ErrPermissionDenied naming %s", err, dir)
		}
		var log hosttest.Log
		cat, err := catalog.Open(context.Background(), load(t, body), catalog.Options{HostBinary: bin,
			Logger: slog.New(slog.NewTextHandler(&log, nil))})
		if err != nil {
			t.Fatalf("without production: %v", err)
		}
		_ = cat.Close()
		if !strings.Contains(log.String(), "other users could replace this plugin binary") || !strings.Contains(log.String(), dir+" is writable by every user") {
			t.Errorf("without production, no warning:\n%s", log.String())
		}
	}
}
