package main_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/keyfort/keyfort/internal/harden"
	"github.com/keyfort/keyfort/internal/hosttest"
)

var serving = regexp.MustCompile(`http=http://(127\.0\.0\.1:\d+)`)

// startServe runs "provider-host serve" and returns its address and collected stderr.
func startServe(t *testing.T, env []string, args ...string) (string, *hosttest.Log, *exec.Cmd) {
	t.Helper()
	return startLogged(t, hosttest.ProviderHost(t), env, serving, append([]string{"serve", "--http-addr", "127.0.0.1:0"}, args...)...)
}

// startLogged runs bin (see hosttest.StartLogged) and returns the first submatch of ready.
func startLogged(t *testing.T, bin string, env []string, ready *regexp.Regexp, args ...string) (string, *hosttest.Log, *exec.Cmd) {
	t.Helper()
	m, log, cmd := hosttest.StartLogged(t, bin, env, ready, args...)
	return m[0], log, cmd
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestServeWithoutConfigurationWarnsAndPublishesJWKS(t *testing.T) {
	addr, log, cmd := startServe(t, []string{"PATH=/usr/bin:/bin"})
	if !strings.Contains(log.String(), "level=WARN") || !strings.Contains(log.String(), "EPHEMERAL") {
		t.Errorf("no loud warning:\n%s", log)
	}
	code, body := get(t, "http://"+addr+"/.well-known/jwks.json")
	if code != 200 {
		t.Fatalf("jwks: %d %s", code, body)
	}
	var jwks struct {
		Keys []struct {
			Kid, Alg, Kty, Use string
			D                  string `json:"d"`
		} `json:"keys"`
	}
	if err := json.Unmarshal([]byte(body), &jwks); err != nil {
		t.Fatal(err)
	}
	if len(jwks.Keys) != 1 || jwks.Keys[0].Alg != "EdDSA" || jwks.Keys[0].Kid == "" || jwks.Keys[0].Use != "sig" {
		t.Errorf("jwks: got %+v, want one EdDSA signing key with a kid", jwks.Keys)
	}
	if jwks.Keys[0].D != "" {
		t.Error("the JWKS publishes private key material")
	}
	for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ready", "/metrics": "keyfort_provider_calls_total"} {
		if code, body := get(t, "http://"+addr+path); code != 200 || !strings.Contains(body, want) {
			t.Errorf("%s: got %d %q, want 200 containing %q", path, code, firstLine(body), want)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop on SIGTERM")
	}
}

func firstLine(s string) string { l, _, _ := strings.Cut(s, "\n"); return l }

// TestServeKeepsSecretsOutOfCoreDumps: serve, which holds signing keys, sets its core size limit to
// zero unless --allow-core-dumps.
func TestServeKeepsSecretsOutOfCoreDumps(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{{nil, "0"}, {[]string{"--allow-core-dumps"}, ""}} {
		_, _, cmd := startServe(t, nil, append([]string{"--grpc-addr", "127.0.0.1:0"}, tc.args...)...)
		soft, hard := hosttest.CoreLimit(t, cmd.Process.Pid)
		if tc.want != "" && (soft != tc.want || hard != tc.want) {
			t.Errorf("serve %v: core size limit %s/%s, want %s/%s", tc.args, soft, hard, tc.want, tc.want)
		}
		if tc.want == "" {
			mySoft, myHard := hosttest.CoreLimit(t, os.Getpid())
			if soft != mySoft || hard != myHard {
				t.Errorf("serve %v: core size limit %s/%s, want the inherited %s/%s", tc.args, soft, hard, mySoft, myHard)
			}
		}
	}
}

// TestServeLocksItsMemory: serve, which holds signing keys, locks its memory into RAM where it may
// (CAP_IPC_LOCK or an unlimited RLIMIT_MEMLOCK, as for root here) and says so in
// keyfort_process_memory_locked; --no-memory-lock leaves it swappable. Where it may not, it runs
// unlocked and its log says why.
func TestServeLocksItsMemory(t *testing.T) {
	canLock := harden.CanLockMemory()
	var rss [2]int64
	for i, tc := range []struct {
		args   []string
		locked bool
	}{{nil, canLock == nil}, {[]string{"--no-memory-lock"}, false}} {
		httpAddr, log, cmd := startServe(t, nil, append([]string{"--grpc-addr", "127.0.0.1:0"}, tc.args...)...)
		n, err := harden.LockedBytes(cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		if rss[i], err = harden.ResidentBytes(cmd.Process.Pid); err != nil {
			t.Fatal(err)
		}
		if (n > 0) != tc.locked {
			t.Errorf("serve %v: %d bytes locked, want locked=%v (%v)", tc.args, n, tc.locked, canLock)
		}
		want := "keyfort_process_memory_locked 0"
		if tc.locked {
			want = "keyfort_process_memory_locked 1"
		}
		if _, body := get(t, "http://"+httpAddr+"/metrics"); !strings.Contains(body, want) {
			t.Errorf("serve %v: /metrics lacks %q", tc.args, want)
		}
		if tc.args == nil && !tc.locked && !strings.Contains(log.String(), "memory not locked") {
			t.Errorf("serve could not lock its memory and did not say so:\n%s", log.String())
		}
		if !tc.locked {
			t.Logf("serve %v runs unlocked: %v", tc.args, canLock)
		}
	}
	// Locking takes pages as they are touched (MCL_ONFAULT), not every page the runtime maps:
	// that made serve about six times larger.
	if canLock == nil && rss[0] > 2*rss[1] {
		t.Errorf("locked, serve is %d bytes resident; unlocked, %d", rss[0], rss[1])
	}
}

// TestServeReflection: with --grpc-reflection, serve lists its services to a reflection client
// (grpcurl's way in); without it, the reflection service is not there.
func TestServeReflection(t *testing.T) {
	list := func(args ...string) ([]string, error) {
		_, log, _ := startServe(t, nil, append([]string{"--grpc-addr", "127.0.0.1:0"}, args...)...)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stream, err := reflectionpb.NewServerReflectionClient(serveConn(t, log.String())).ServerReflectionInfo(ctx)
		if err != nil {
			return nil, err
		}
		if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		} // io.EOF: the server ended the stream already (Unimplemented, say); Recv says how
		resp, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		var names []string
		for _, s := range resp.GetListServicesResponse().GetService() {
			names = append(names, s.GetName())
		}
		return names, nil
	}
	names, err := list("--grpc-reflection")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"keyfort.identity.v1.IdentityRuntimeService", "grpc.health.v1.Health"} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lists %v, want %s among them", names, want)
		}
	}
	if _, err := list(); status.Code(err) != codes.Unimplemented {
		t.Errorf("without --grpc-reflection: got %v, want Unimplemented", err)
	}
}

// TestServeShutsDownWithinItsTimeout: on SIGTERM serve turns not ready (HTTP probe and gRPC health
// service) while calls drain, and a stream that never ends by itself (a health watch) is cancelled at
// --shutdown-timeout instead of holding the process forever.
func TestServeShutsDownWithinItsTimeout(t *testing.T) {
	httpAddr, log, cmd := startServe(t, []string{"PATH=" + os.Getenv("PATH")}, "--grpc-addr", "127.0.0.1:0", "--shutdown-timeout", "5s")
	if code, _ := get(t, "http://"+httpAddr+"/readyz"); code != http.StatusOK {
		t.Fatalf("readyz before shutdown: %d", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hang guard
	defer cancel()
	watch, err := healthpb.NewHealthClient(serveConn(t, log.String())).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := watch.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health before shutdown: %v, %v", r, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if r, err := watch.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health after SIGTERM: %v, %v", r, err)
	}
	// The watch is still open, so the drain lasts until the timeout (5s: room for a loaded CI
	// machine) and HTTP still answers.
	if code, body := get(t, "http://"+httpAddr+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "shutting down") {
		t.Errorf("readyz while draining: %d %q, want 503", code, body)
	}
	if _, err := watch.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("the open stream at the shutdown timeout: %v, want it cancelled", err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("serve exited with %v, want 0", err)
		}
	case <-ctx.Done():
		t.Fatal("serve did not exit after its shutdown timeout")
	}
}

func TestServeRefusesToStartWithMissingKey(t *testing.T) {
	cfg := writeConfig(t, config)
	r := run(t, nil, "serve", "--config", cfg, "--http-addr", "127.0.0.1:0")
	if r.code != 1 {
		t.Fatalf("exit: got %d, want 1\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "identity.secrets.oidc.google.client_id") || !strings.Contains(r.stderr, "KFCMD_GOOGLE_CLIENT_ID") {
		t.Errorf("stderr does not name the missing key and its location:\n%s", r.stderr)
	}
}
