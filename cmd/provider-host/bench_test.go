package main_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/keyfort/keyfort/internal/hosttest"
	"github.com/keyfort/keyfort/internal/pgtest"
	"github.com/keyfort/keyfort/internal/redistest"
)

// benchReport is the part of "provider-host bench --json" the tests read.
type benchReport struct {
	Sessions   int  `json:"sessions"`
	Replicas   int  `json:"replicas"`
	Guarded    bool `json:"guarded_service"`
	External   bool `json:"external"`
	StartPhase struct {
		Calls int64 `json:"calls"`
	} `json:"start_phase"`
	MixedPhase struct {
		Calls int64 `json:"calls"`
	} `json:"mixed_phase"`
	Ops map[string]struct {
		Count      int64   `json:"count"`
		Errors     int64   `json:"errors"`
		Throughput float64 `json:"calls_per_second"`
		P50ms      float64 `json:"p50_ms"`
		P99ms      float64 `json:"p99_ms"`
		P999ms     float64 `json:"p999_ms"`
		MaxMs      float64 `json:"max_ms"`
	} `json:"ops"`
	Calls                int64            `json:"calls"`
	Errors               int64            `json:"errors"`
	RSSKiB               map[string]int64 `json:"rss_kib"`
	RedisCommandsPerCall float64          `json:"redis_commands_per_runtime_call"`
	StoreCommandsPerCall float64          `json:"store_commands_per_runtime_call"`
	Store                string           `json:"store"`
	DPoP                 string           `json:"dpop"`
}

func runBench(t *testing.T, args ...string) (benchReport, result) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "report.json")
	r := run(t, nil, append([]string{"bench", "--json", out, "--progress", "lines"}, args...)...)
	var rep benchReport
	if body, err := os.ReadFile(out); err == nil {
		if err := json.Unmarshal(body, &rep); err != nil {
			t.Fatalf("report: %v\n%s", err, body)
		}
	}
	return rep, r
}

func checkOps(t *testing.T, rep benchReport, want ...string) {
	t.Helper()
	for _, op := range want {
		o, ok := rep.Ops[op]
		if !ok || o.Count == 0 {
			t.Errorf("op %s: no calls in %+v", op, rep.Ops)
			continue
		}
		if o.Errors != 0 {
			t.Errorf("op %s: %d errors", op, o.Errors)
		}
		if !(0 < o.P50ms && o.P50ms <= o.P99ms && o.P99ms <= o.P999ms && o.P999ms <= o.MaxMs) || o.Throughput <= 0 {
			t.Errorf("op %s: inconsistent figures %+v", op, o)
		}
	}
}

// The load generator stands up the runtime and the guarded example, drives every operation through
// them over gRPC, and reports what it measured.
func TestBenchDrivesRuntimeAndGuardedService(t *testing.T) {
	guarded := hosttest.Build(t, "github.com/keyfort/keyfort/examples/guarded-kv")
	rep, r := runBench(t, "--sessions", "40", "--concurrency", "4", "--duration", "1500ms", "--guarded-bin", guarded)
	if r.code != 0 {
		t.Fatalf("bench exited %d:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if rep.Sessions != 40 || !rep.Guarded || rep.StartPhase.Calls != 40 || rep.MixedPhase.Calls == 0 || rep.Errors != 0 {
		t.Errorf("report: %+v", rep)
	}
	checkOps(t, rep, "start", "guarded", "refresh", "logout")
	if rep.RSSKiB["serve-0"] == 0 || rep.RSSKiB["guarded"] == 0 {
		t.Errorf("no resident memory figures: %v", rep.RSSKiB)
	}
	for _, s := range []string{"guarded calls: Put/Get on the guarded key-value service", "p99.9 ms", "mixed ", "100%"} {
		if !strings.Contains(r.stdout+r.stderr, s) {
			t.Errorf("output lacks %q:\n%s\n%s", s, r.stdout, r.stderr)
		}
	}
}

// TestBenchDPoP: with --dpop every session is bound to its client's key and every call carries a
// proof; with --dpop-nonce the replicas (two, on Redis: each is an origin of its own to the clients)
// require server nonces, which the clients follow. No call fails.
func TestBenchDPoP(t *testing.T) {
	redistest.Client(t)
	for _, args := range [][]string{{"--dpop"}, {"--dpop", "--dpop-nonce", "--replicas", "2", "--redis-url", redistest.URL()}} {
		rep, r := runBench(t, append([]string{"--sessions", "20", "--concurrency", "4", "--duration", "1500ms",
			"--mix", "guarded=60,refresh=30,logout=10"}, args...)...)
		if r.code != 0 {
			t.Fatalf("bench %v exited %d:\n%s\n%s", args, r.code, r.stdout, r.stderr)
		}
		checkOps(t, rep, "start", "guarded", "refresh", "logout")
		want := "on"
		if len(args) > 1 {
			want = "nonces"
		}
		if rep.DPoP != want || !strings.Contains(r.stdout, "sessions bound to DPoP keys") {
			t.Errorf("bench %v: dpop %q, want %q:\n%s", args, rep.DPoP, want, r.stdout)
		}
	}
}

// Two replicas share sessions through Redis: refreshes and logouts land on either one, and none
// fails (a rotation seen by one replica is seen by the other).
func TestBenchTwoReplicasShareRedis(t *testing.T) {
	redistest.Client(t)
	url := redistest.URL()
	rep, r := runBench(t, "--sessions", "30", "--concurrency", "4", "--duration", "1500ms",
		"--replicas", "2", "--redis-url", url, "--mix", "guarded=40,refresh=50,logout=10")
	if r.code != 0 {
		t.Fatalf("bench exited %d:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	checkOps(t, rep, "start", "guarded", "refresh", "logout")
	if rep.Replicas != 2 || rep.RedisCommandsPerCall <= 0 || rep.RSSKiB["serve-1"] == 0 {
		t.Errorf("report: %+v", rep)
	}
}

// TestBenchTwoReplicasSharePostgres: the same load with the replicas sharing PostgreSQL.
func TestBenchTwoReplicasSharePostgres(t *testing.T) {
	rep, r := runBench(t, "--sessions", "30", "--concurrency", "4", "--duration", "1500ms",
		"--replicas", "2", "--postgres-url", pgtest.SchemaURL(t), "--mix", "guarded=40,refresh=50,logout=10")
	if r.code != 0 {
		t.Fatalf("bench exited %d:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	checkOps(t, rep, "start", "guarded", "refresh", "logout")
	// A rotation alone is four statements (BEGIN, SELECT … FOR UPDATE, UPDATE, COMMIT).
	if rep.Replicas != 2 || rep.Store != "postgres" || rep.RSSKiB["serve-1"] == 0 || rep.StoreCommandsPerCall < 2 || rep.RedisCommandsPerCall != 0 {
		t.Errorf("report: %+v", rep)
	}
	if !strings.Contains(r.stdout, "sessions shared through PostgreSQL") || !strings.Contains(r.stdout, "statements per runtime call") {
		t.Errorf("the summary does not name the store:\n%s", r.stdout)
	}
}

func TestBenchRefusesBadSetups(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--replicas", "2"}, "--replicas > 1 needs --redis-url or --postgres-url"},
		{[]string{"--redis-url", "redis://x", "--postgres-url", "postgres://x"}, "choose one store"},
		{[]string{"--mix", "guarded=1,steal=2"}, "--mix"},
		{[]string{"--mix", "guarded=0"}, "add up to zero"},
		{[]string{"--sessions", "0"}, "--sessions"},
		{[]string{"--sessions", "2", "--duration", "1s", "--guarded-bin", "/bin/false"}, "guarded exited before serving"},
		{[]string{"--runtime-addr", "127.0.0.1:1"}, "needs --issuer-url, --issuer-key and --client-id"},
		{[]string{"--runtime-addr", "127.0.0.1:1", "--issuer-url", "http://x", "--issuer-key", "k", "--client-id", "c", "--replicas", "2"}, "services started elsewhere"},
		{[]string{"--guarded-addr", "127.0.0.1:1"}, "go with --runtime-addr"},
		{[]string{"--dpop", "--guarded-bin", "/bin/false"}, "--dpop drives the runtime's own guarded calls"},
		{[]string{"--dpop-nonce"}, "--dpop-nonce goes with --dpop"},
	} {
		_, r := runBench(t, tc.args...)
		if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("bench %v: exit %d, want a failure naming %q:\n%s", tc.args, r.code, tc.want, r.stderr)
		}
	}
}

// The load generator drives services started elsewhere: they trust "provider-host bench issuer",
// and the generator mints ID tokens with the same key file.
func TestBenchDrivesServicesStartedElsewhere(t *testing.T) {
	host := hosttest.ProviderHost(t)
	guarded := hosttest.Build(t, "github.com/keyfort/keyfort/examples/guarded-kv")
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "issuer.pem")
	env := []string{"PATH=" + os.Getenv("PATH"), "KEYFORT_PROVIDER_HOST=" + host}
	issuerURL, _, _ := startLogged(t, host, env, regexp.MustCompile(`serving (http://127\.0\.0\.1:\d+)`),
		"bench", "issuer", "--key", keyFile, "--listen", "127.0.0.1:0")
	cfg := writeConfig(t, `
providers:
  dev:
    type: memory
    settings:
      signing_keys: { session: { algorithm: EdDSA } }
      secrets: { client-id: load-test-client }
      credentials: { kv: { ttl: 15m } }
identity:
  secrets:
    session_signing: dev:session
    oidc:
      google: { client_id: dev:client-id, issuer: `+issuerURL+` }
  credentials:
    kv_backend: dev:kv
`)
	runtimeAddr, _, _ := startLogged(t, host, env, regexp.MustCompile(`grpc=(127\.0\.0\.1:\d+)`),
		"serve", "--config", cfg, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
	guardedAddr, _, _ := startLogged(t, guarded, env, regexp.MustCompile(`addr=(127\.0\.0\.1:\d+)`),
		"--config", cfg, "--addr", "127.0.0.1:0")

	external := []string{"--runtime-addr", runtimeAddr, "--guarded-addr", guardedAddr, "--issuer-url", issuerURL,
		"--client-id", "load-test-client", "--sessions", "20", "--concurrency", "4", "--duration", "1s"}
	rep, r := runBench(t, append(external, "--issuer-key", keyFile)...)
	if r.code != 0 {
		t.Fatalf("bench exited %d:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	checkOps(t, rep, "start", "guarded", "refresh", "logout")
	if !rep.External || !rep.Guarded || len(rep.RSSKiB) != 0 {
		t.Errorf("report: %+v", rep)
	}

	// Tokens minted with another key are refused by the services, and the run says so.
	other := filepath.Join(dir, "other.pem")
	_ = run(t, nil, "bench", "issuer", "--key", other, "--listen", "no-port") // creates the key, then cannot listen
	rep, r = runBench(t, append(external, "--issuer-key", other, "--duration", "200ms")...)
	if r.code == 0 || rep.Errors == 0 || !strings.Contains(r.stdout, "Unauthenticated") {
		t.Errorf("a key the services do not trust: exit %d, %d errors:\n%s", r.code, rep.Errors, r.stdout)
	}
}
