package plugin_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keyfort/keyfort/internal/hosttest"
	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/provider/plugin"
)

func TestMain(m *testing.M) { hosttest.Main(m) }

var memorySettings = provider.NewSettings("mem", []byte(`{"signing_keys":{"signing":{"algorithm":"EdDSA"}},"secrets":{"s":"v"},"credentials":{"db":{"ttl":"1m"}}}`))

func launchMemory(t *testing.T, cfg plugin.Config) *plugin.Process {
	t.Helper()
	if cfg.Path == "" {
		cfg.Path = hosttest.ProviderHost(t)
	}
	cfg.Name = "mem"
	cfg.Args = []string{"plugin", "memory"}
	if len(cfg.Settings.JSON()) == 0 {
		cfg.Settings = memorySettings
	}
	p, err := plugin.Launch(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Launch: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// TestCrashedPluginIsRestarted kills the plugin process mid-use and sees the next call succeed on a
// fresh process.
func TestCrashedPluginIsRestarted(t *testing.T) {
	var reasons []string
	p := launchMemory(t, plugin.Config{OnRestart: func(r string) { reasons = append(reasons, r) }})
	ctx := context.Background()
	if _, err := p.SigningKeys(ctx, "signing"); err != nil {
		t.Fatal(err)
	}
	pid := p.Pid()
	if pid == 0 {
		t.Fatal("no pid")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ks, err := p.SigningKeys(ctx, "signing")
	if err != nil {
		t.Fatalf("first call after the crash: %v", err)
	}
	if len(ks.Keys) == 0 {
		t.Fatal("empty key set after restart")
	}
	if got := p.Restarts(); got != 1 {
		t.Errorf("restarts: got %d, want 1", got)
	}
	// Which the host sees first, the exit or the broken connection, is a race; either is one restart.
	if len(reasons) != 1 || (reasons[0] != "exited" && reasons[0] != "connection") {
		t.Errorf("OnRestart reasons: got %q, want one of exited or connection", reasons)
	}
	if p.Pid() == pid || p.Pid() == 0 {
		t.Errorf("pid after restart: got %d, old %d", p.Pid(), pid)
	}
	if _, err := p.Secret(ctx, "s"); err != nil {
		t.Errorf("the restarted plugin was not reconfigured: %v", err)
	}
}

// gone reports whether process pid has exited and been reaped, waiting a little for the reaping.
func gone(pid int) bool {
	for range 500 {
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// TestFrozenPluginIsReplaced stops the plugin process (SIGSTOP: alive, answering nothing). A call
// runs into its deadline; the liveness probe that follows gets no answer either, so the frozen
// process is killed and the next call, already waiting on it, is served by a fresh one.
func TestFrozenPluginIsReplaced(t *testing.T) {
	var (
		mu      sync.Mutex
		reasons []string
	)
	p := launchMemory(t, plugin.Config{ProbeTimeout: 300 * time.Millisecond, OnRestart: func(r string) {
		mu.Lock()
		defer mu.Unlock()
		reasons = append(reasons, r)
	}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hang guard
	defer cancel()
	if _, err := p.Secret(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	frozen := p.Pid()
	hosttest.Freeze(t, frozen)
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	if _, err := p.Secret(short, "s"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a call to the frozen plugin: got %v, want a deadline error", err)
	}
	s, err := p.Secret(ctx, "s")
	if err != nil {
		t.Fatalf("the call after the freeze: %v", err)
	}
	if s.Value.RevealString() != "v" {
		t.Errorf("the fresh plugin was not configured")
	}
	if got := p.Restarts(); got != 1 {
		t.Errorf("restarts: got %d, want 1", got)
	}
	if p.Pid() == frozen {
		t.Error("the frozen process still serves")
	}
	mu.Lock()
	if len(reasons) != 1 || reasons[0] != "unresponsive" {
		t.Errorf("OnRestart reasons: got %q, want [unresponsive]", reasons)
	}
	mu.Unlock()
	if !gone(frozen) {
		t.Error("the frozen process was not killed")
	}
}

// TestCloseOfAFrozenPluginIsBounded: Close asks the plugin to close its provider and waits at most
// the close timeout; a frozen plugin is then killed instead of holding the host's shutdown forever.
func TestCloseOfAFrozenPluginIsBounded(t *testing.T) {
	p := launchMemory(t, plugin.Config{CloseTimeout: 300 * time.Millisecond})
	if _, err := p.Secret(context.Background(), "s"); err != nil {
		t.Fatal(err)
	}
	frozen := p.Pid()
	hosttest.Freeze(t, frozen)
	closed := make(chan error, 1)
	go func() { closed <- p.Close() }()
	select {
	case err := <-closed:
		if !errors.Is(err, provider.ErrUnavailable) {
			t.Errorf("Close of a frozen plugin: got %v, want ErrUnavailable", err)
		}
	case <-time.After(time.Minute): // a hang guard, not a timing assertion
		t.Fatal("Close of a frozen plugin did not return")
	}
	if !gone(frozen) {
		t.Error("the frozen process was not killed")
	}
}

// TestRestartBacksOff makes the restart itself fail (the binary is gone), sees a loud ErrUnavailable,
// and sees recovery once the binary is back and the backoff has passed.
func TestRestartBacksOff(t *testing.T) {
	src := hosttest.ProviderHost(t)
	bin := filepath.Join(t.TempDir(), "provider-host")
	copyFile(t, src, bin)
	p := launchMemory(t, plugin.Config{Path: bin, MinBackoff: 50 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	ctx := context.Background()
	if _, err := p.Secret(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(bin); err != nil {
		t.Fatal(err)
	}
	_ = syscall.Kill(p.Pid(), syscall.SIGKILL)
	if _, err := p.Secret(ctx, "s"); !errors.Is(err, provider.ErrUnavailable) {
		t.Fatalf("with the binary gone: got %v, want ErrUnavailable", err)
	}
	short, cancel := context.WithTimeout(ctx, time.Millisecond)
	defer cancel()
	if _, err := p.Secret(short, "s"); !errors.Is(err, provider.ErrUnavailable) {
		t.Fatalf("during backoff: got %v, want ErrUnavailable", err)
	}
	copyFile(t, src, bin)
	if _, err := p.Secret(ctx, "s"); err != nil {
		t.Fatalf("after the binary is back: %v", err)
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestSHA256Pinning(t *testing.T) {
	bin := hosttest.ProviderHost(t)
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	p := launchMemory(t, plugin.Config{SHA256: hex.EncodeToString(sum[:])})
	if _, err := p.Secret(context.Background(), "s"); err != nil {
		t.Errorf("pinned to the right digest: %v", err)
	}
	wrong := sha256.Sum256([]byte("another binary"))
	_, err = plugin.Launch(context.Background(), plugin.Config{
		Name: "mem", Path: bin, Args: []string{"plugin", "memory"}, SHA256: hex.EncodeToString(wrong[:]), Settings: memorySettings,
	})
	if !errors.Is(err, provider.ErrPermissionDenied) || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("pinned to another digest: got %v, want ErrPermissionDenied about the checksum", err)
	}
	_, err = plugin.Launch(context.Background(), plugin.Config{Name: "mem", Path: bin, SHA256: "abc"})
	if !errors.Is(err, provider.ErrInvalidConfig) {
		t.Errorf("malformed digest: got %v, want ErrInvalidConfig", err)
	}
}

// copyProviderHost copies the provider-host binary into dir, as a pinned plugin binary of the
// test's own, and returns its path, bytes and SHA-256.
func copyProviderHost(t *testing.T, dir string) (string, []byte, [32]byte) {
	t.Helper()
	data, err := os.ReadFile(hosttest.ProviderHost(t))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "keyfort-plugin")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, data, sha256.Sum256(data)
}

// TestPinnedBinaryIsTheOneThatRuns: a pinned binary is checked and started from one open file, so
// replacing it at its path after the check (the window go-plugin's check-by-path leaves open) never
// runs the replacement: the start is refused (the checked file was unlinked under it), and so is
// the next start, which finds the replacement at the path.
func TestPinnedBinaryIsTheOneThatRuns(t *testing.T) {
	if !plugin.PinnedExec {
		t.Skip("this system starts pinned binaries by path") // Linux starts them from the checked file
	}
	dir := t.TempDir()
	bin, _, sum := copyProviderHost(t, dir)
	marker := filepath.Join(dir, "impostor-ran")
	impostor := filepath.Join(dir, "impostor")
	if err := os.WriteFile(impostor, []byte("#!/bin/sh\ntouch "+marker+"\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var log hosttest.Log
	cfg := plugin.Config{Name: "mem", Path: bin, Args: []string{"plugin", "memory"}, SHA256: hex.EncodeToString(sum[:]),
		Settings: memorySettings, Logger: slog.New(slog.NewJSONHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))}

	// Untouched, the pinned binary starts from its descriptor, and its log lines name it by its path.
	p, err := plugin.Launch(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.SigningKeys(context.Background(), "signing"); err != nil {
		t.Fatalf("the checked binary does not serve: %v", err)
	}
	for deadline := time.Now().Add(10 * time.Second); findRecord(t, log.String(), map[string]any{"module": "go-plugin.keyfort-plugin"}) == nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no plugin log line names the binary:\n%s", log.String())
		}
	}
	// The plugin closed the descriptor it was started through: it does not pass it on.
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.Pid()))
	for _, fd := range fds {
		if target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", p.Pid(), fd.Name())); target == bin {
			t.Errorf("the plugin process keeps its binary open as fd %s", fd.Name())
		}
	}
	_ = p.Close()

	swapped := false
	plugin.SetAfterPinCheck(t, func(path string) {
		if !swapped {
			swapped = true
			time.Sleep(20 * time.Millisecond) // past the kernel's coarse timestamp granularity
			if err := os.Rename(impostor, path); err != nil {
				t.Error(err)
			}
		}
	})
	_, err = plugin.Launch(context.Background(), cfg)
	if !swapped {
		t.Fatal("the binary was not swapped after its check")
	}
	if !errors.Is(err, provider.ErrPermissionDenied) {
		t.Errorf("a start during which the binary was replaced: got %v, want ErrPermissionDenied", err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the binary swapped in after the check ran")
	}
	_, err = plugin.Launch(context.Background(), cfg)
	if !errors.Is(err, provider.ErrPermissionDenied) || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("the next start, with the impostor in place: got %v, want ErrPermissionDenied about the checksum", err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the impostor ran at the next start")
	}
}

// TestPinnedBinaryRewrittenWhileStartingIsRefused: a pinned binary written to in place between its
// check and its start (the same file, so the descriptor it starts from sees the new bytes) is
// refused before the plugin is handed its settings. The bytes written here are the checked ones:
// the write, not what it wrote, is what is detected.
func TestPinnedBinaryRewrittenWhileStartingIsRefused(t *testing.T) {
	if !plugin.PinnedExec {
		t.Skip("this system starts pinned binaries by path") // Linux starts them from the checked file
	}
	bin, data, sum := copyProviderHost(t, t.TempDir())
	plugin.SetAfterPinCheck(t, func(path string) {
		time.Sleep(20 * time.Millisecond) // past the kernel's coarse timestamp granularity
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Error(err)
			return
		}
		if _, err := f.WriteAt(data[:4096], 0); err != nil {
			t.Error(err)
		}
		_ = f.Close()
	})
	_, err := plugin.Launch(context.Background(), plugin.Config{
		Name: "mem", Path: bin, Args: []string{"plugin", "memory"}, SHA256: hex.EncodeToString(sum[:]), Settings: memorySettings,
	})
	if !errors.Is(err, provider.ErrPermissionDenied) || !strings.Contains(err.Error(), "was written to between its checksum and its start") {
		t.Errorf("got %v, want ErrPermissionDenied naming the write", err)
	}
}

// TestPinnedBinaryErrorsNameItsPath: a pinned binary is started through its descriptor, and the
// error of one that is no plugin still names it by its path.
func TestPinnedBinaryErrorsNameItsPath(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "not-a-plugin")
	script := []byte("#!/bin/sh\nexit 1\n")
	if err := os.WriteFile(bin, script, 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(script)
	_, err := plugin.Launch(context.Background(), plugin.Config{Name: "x", Path: bin, SHA256: hex.EncodeToString(sum[:])})
	if err == nil || !strings.Contains(err.Error(), "Path: "+bin) || strings.Contains(err.Error(), "/proc/self/fd") {
		t.Errorf("got %v, want an error naming %s", err, bin)
	}
}

func TestNotAPlugin(t *testing.T) {
	_, err := plugin.Launch(context.Background(), plugin.Config{Name: "x", Path: "/bin/true", StartTimeout: 5 * time.Second})
	if !errors.Is(err, provider.ErrUnavailable) {
		t.Errorf("a binary that is no plugin: got %v, want ErrUnavailable", err)
	}
	_, err = plugin.Launch(context.Background(), plugin.Config{Name: "x", Path: "/nonexistent/plugin"})
	if err == nil {
		t.Error("a missing binary launched")
	}
}

func TestSettingsRefusedAtLaunch(t *testing.T) {
	bin := hosttest.ProviderHost(t)
	_, err := plugin.Launch(context.Background(), plugin.Config{
		Name: "mem", Path: bin, Args: []string{"plugin", "memory"},
		Settings: provider.NewSettings("mem", []byte(`{"signing_keyz":{}}`)),
	})
	if !errors.Is(err, provider.ErrInvalidConfig) || !strings.Contains(err.Error(), "signing_keyz") {
		t.Errorf("got %v, want ErrInvalidConfig naming the unknown setting", err)
	}
}

// recorder is a provider whose calls block until their context ends and which records what the
// plugin side saw, or which fails with a chosen error kind.
type recorder struct {
	mu       sync.Mutex
	deadline time.Time
	ended    error
	started  chan struct{}
}

func (r *recorder) SigningKeys(ctx context.Context, name string) (provider.KeySet, error) {
	if kind := provider.KindFromName(name); name != "block" {
		return provider.KeySet{}, provider.NewError(kind, "loc/"+name, errors.New("backend said no"))
	}
	dl, _ := ctx.Deadline()
	r.mu.Lock()
	r.deadline = dl
	r.mu.Unlock()
	close(r.started)
	<-ctx.Done()
	r.mu.Lock()
	r.ended = ctx.Err()
	r.mu.Unlock()
	return provider.KeySet{}, provider.NewError(provider.ErrUnavailable, name, ctx.Err())
}

func (r *recorder) Secret(context.Context, string) (provider.Secret, error) {
	return provider.Secret{}, provider.NewError(provider.ErrNotFound, "x", nil)
}
func (r *recorder) Credentials(context.Context, provider.CredentialRequest) (provider.Credentials, error) {
	return provider.Credentials{}, provider.NewError(provider.ErrNotFound, "x", nil)
}
func (r *recorder) Renew(_ context.Context, l provider.Lease) (provider.Lease, error) { return l, nil }
func (r *recorder) Revoke(context.Context, provider.Lease) error                      { return nil }
func (r *recorder) Close() error                                                      { return nil }

func serveRecorder(t *testing.T) (*recorder, *plugin.Process) {
	t.Helper()
	rec := &recorder{started: make(chan struct{})}
	p, err := plugin.ServeInProcess(context.Background(), plugin.InProcessConfig{
		Name: "rec",
		Factory: func(context.Context, provider.Settings) (provider.IdentitySecretMaterialProvider, error) {
			return rec, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return rec, p
}

func TestErrorKindsCrossTheBoundary(t *testing.T) {
	_, p := serveRecorder(t)
	for _, kind := range provider.Kinds {
		name := provider.KindName(kind)
		t.Run(name, func(t *testing.T) {
			_, err := p.SigningKeys(context.Background(), name)
			if !errors.Is(err, kind) {
				t.Fatalf("got %v, want errors.Is %v", err, kind)
			}
			var pe *provider.Error
			if !errors.As(err, &pe) || pe.Location != "loc/"+name {
				t.Errorf("location: got %+v, want loc/%s", pe, name)
			}
			if !strings.Contains(err.Error(), "backend said no") {
				t.Errorf("message %q lost the cause", err)
			}
		})
	}
}

func TestDeadlineCrossesTheBoundary(t *testing.T) {
	rec, p := serveRecorder(t)
	deadline := time.Now().Add(300 * time.Millisecond)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	_, err := p.SigningKeys(ctx, "block")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want context.DeadlineExceeded", err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.deadline.IsZero() {
		t.Fatal("the plugin saw no deadline")
	}
	if d := rec.deadline.Sub(deadline); d > 50*time.Millisecond || d < -50*time.Millisecond {
		t.Errorf("plugin deadline %v differs from the caller's %v by %v", rec.deadline, deadline, d)
	}
	// The liveness probe that followed found the plugin answering (its provider was slow, not the
	// plugin): no restart. Close waits for the probe.
	_ = p.Close()
	if got := p.Restarts(); got != 0 {
		t.Errorf("a slow call restarted the plugin %d times", got)
	}
}

func TestCancellationCrossesTheBoundary(t *testing.T) {
	rec, p := serveRecorder(t)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := p.SigningKeys(ctx, "block")
		errc <- err
	}()
	<-rec.started
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("caller: got %v, want context.Canceled", err)
	}
	waitEnded(t, rec)
}

func waitEnded(t *testing.T, rec *recorder) {
	t.Helper()
	for range 1000 {
		rec.mu.Lock()
		ended := rec.ended
		rec.mu.Unlock()
		if ended != nil {
			if !errors.Is(ended, context.Canceled) {
				t.Errorf("plugin side ended with %v, want context.Canceled", ended)
			}
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("the plugin never saw the cancellation")
}

func TestMissingCapabilityIsUnimplemented(t *testing.T) {
	_, p := serveRecorder(t)
	if _, err := p.Sign(context.Background(), "k", "kid", []byte("x")); !errors.Is(err, provider.ErrUnimplemented) {
		t.Errorf("Sign: got %v, want ErrUnimplemented", err)
	}
	if _, err := p.RotateSigningKey(context.Background(), "k"); !errors.Is(err, provider.ErrUnimplemented) {
		t.Errorf("RotateSigningKey: got %v, want ErrUnimplemented", err)
	}
	if err := p.Health(context.Background()); err != nil {
		t.Errorf("Health of a plugin without a health check that answers: %v", err)
	}
}

// processEnv reads a process's environment (Linux).
func processEnv(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if errors.Is(err, fs.ErrPermission) {
		t.Skipf("plugin processes are non-dumpable, so only root reads their environment: %v", err)
	}
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	env := map[string]string{}
	for kv := range strings.SplitSeq(string(b), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	return env
}

// Plugin processes run on one P unless told otherwise; Env overrides it, and MaxProcs < 0 leaves
// the environment as inherited. The host's own GOMAXPROCS does not set theirs.
func TestPluginGOMAXPROCS(t *testing.T) {
	t.Setenv("GOMAXPROCS", "7")
	for _, tc := range []struct {
		name     string
		maxProcs int
		env      []string
		want     string
	}{
		{"default", 0, nil, "1"},
		{"explicit", 3, nil, "3"},
		{"env overrides", 0, []string{"GOMAXPROCS=2"}, "2"},
		{"go default", -1, nil, "7"}, // unset by Keyfort: the inherited value stands
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := plugin.Launch(context.Background(), plugin.Config{
				Name: "mem", Path: hosttest.ProviderHost(t), Args: []string{"plugin", "memory"}, Settings: benchSettings(),
				MaxProcs: tc.maxProcs, Env: tc.env,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if got := processEnv(t, p.Pid())["GOMAXPROCS"]; got != tc.want {
				t.Errorf("GOMAXPROCS=%q, want %q", got, tc.want)
			}
			if _, err := p.Secret(context.Background(), "s"); err != nil {
				t.Errorf("the plugin does not answer: %v", err)
			}
		})
	}
}

func TestFilterEnv(t *testing.T) {
	environ := []string{"PATH=/bin", "HOME=/root", "LC_ALL=C", "VAULT_TOKEN=s", "VAULT_ADDR=http://v",
		"AWS_SECRET_ACCESS_KEY=s", "APP_KEY=k", "APP_KEY_PREVIOUS=p", "APPLE=no", "broken"}
	got := plugin.FilterEnv(environ, []string{"VAULT_*", "APP_KEY", "APP_KEY_*"})
	want := []string{"PATH=/bin", "HOME=/root", "LC_ALL=C", "VAULT_TOKEN=s", "VAULT_ADDR=http://v", "APP_KEY=k", "APP_KEY_PREVIOUS=p"}
	if !slices.Equal(got, want) {
		t.Errorf("FilterEnv: got %v, want %v", got, want)
	}
	if got := plugin.FilterEnv(environ, nil); !slices.Equal(got, []string{"PATH=/bin", "HOME=/root", "LC_ALL=C"}) {
		t.Errorf("baseline only: got %v", got)
	}
	// The OpenTelemetry exporter's settings pass, but not its headers (a collector's API key) nor
	// the host's service name, unless a plugin's own patterns name them.
	otel := []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://c:4317", "OTEL_EXPORTER_OTLP_HEADERS=api-key=s",
		"OTEL_SERVICE_NAME=host", "OTEL_TRACES_SAMPLER=always_on"}
	if got := plugin.FilterEnv(otel, nil); !slices.Equal(got, []string{otel[0], otel[3]}) {
		t.Errorf("OTEL_*: got %v", got)
	}
	if got := plugin.FilterEnv(otel, []string{"OTEL_EXPORTER_OTLP_HEADERS"}); !slices.Equal(got, []string{otel[0], otel[1], otel[3]}) {
		t.Errorf("OTEL_* with the headers asked for: got %v", got)
	}
}

// TestChangesCrossThePluginAndItsRestarts: a rotation made inside the plugin process reaches a
// Client on the host through the plugin's change stream, at once, although its cache would serve
// the old set for an hour; and when the plugin process dies, the host watches its replacement,
// whose first Change{} makes the Client refetch (the new process has keys of its own).
func TestChangesCrossThePluginAndItsRestarts(t *testing.T) {
	p := launchMemory(t, plugin.Config{MinBackoff: 10 * time.Millisecond})
	c, err := provider.NewClient(p, provider.ClientConfig{Name: "mem", CacheTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	first, err := c.SigningKeys(ctx, "signing")
	if err != nil {
		t.Fatal(err)
	}
	// Rotate inside the plugin, past the Client's cache (Client.RotateSigningKey would update it).
	if _, err := p.RotateSigningKey(ctx, "signing"); err != nil {
		t.Fatal(err)
	}
	rotated := waitForKeys(t, c, func(ks provider.KeySet) bool { return ks.ActiveID != first.ActiveID })
	if _, ok := rotated.Lookup(first.ActiveID); !ok {
		t.Errorf("the previous key is gone from the rotated set %v", rotated.IDs())
	}
	if err := syscall.Kill(p.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// No call restarts the plugin here: the cache answers every SigningKeys. The watch does, and
	// the replacement's keys reach the cache.
	waitForKeys(t, c, func(ks provider.KeySet) bool {
		_, old := ks.Lookup(rotated.ActiveID)
		return !old
	})
}

// waitForKeys polls c until its key set "signing" satisfies ok, and returns it.
func waitForKeys(t *testing.T, c *provider.Client, ok func(provider.KeySet) bool) provider.KeySet {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ks, err := c.SigningKeys(context.Background(), "signing")
		if err == nil && ok(ks) {
			return ks
		}
		if time.Now().After(deadline) {
			t.Fatalf("the key set never changed as expected (last: %v, %v)", ks.IDs(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
