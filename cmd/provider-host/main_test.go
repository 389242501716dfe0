package main_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyfort/keyfort/internal/hosttest"
	"github.com/keyfort/keyfort/session/oidc/oidctest"
)

func TestMain(m *testing.M) { hosttest.Main(m) }

type result struct {
	stdout, stderr string
	code           int
}

func run(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(hosttest.ProviderHost(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		r.code = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "keyfort.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const config = `
providers:
  dev:
    type: memory
    settings:
      signing_keys: { session-signing: { algorithm: EdDSA } }
      secrets: { api-key: "the-api-key-value-1234" }
      credentials: { orders: { ttl: 5m } }
identity:
  secrets:
    session_signing: dev:session-signing
    api_key: dev:api-key
    oidc:
      google:
        client_id: env:KFCMD_GOOGLE_CLIENT_ID
  credentials:
    orders: dev:orders
`

func TestCheckNamesTheMissingKey(t *testing.T) {
	cfg := writeConfig(t, config)
	iss := oidctest.New(t)
	issuerEnv := "KEYFORT_IDENTITY__SECRETS__OIDC__GOOGLE__ISSUER=" + iss.URL
	r := run(t, []string{issuerEnv}, "check", "--identity-providers", "--config", cfg)
	if r.code != 1 {
		t.Fatalf("exit code: got %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{
		"FAIL identity.secrets.oidc.google.client_id  env:KFCMD_GOOGLE_CLIENT_ID",
		"not found",
		"ok   identity.secrets.session_signing  dev:session-signing",
		"ok   identity.credentials.orders  dev:orders",
		"FAIL identity.secrets.oidc.google.issuer  " + iss.URL + "  identity provider \"google\"", // no client id to check it with
		"2 key(s) failing",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout+r.stderr, "the-api-key-value-1234") {
		t.Error("check printed a secret value")
	}
	r = run(t, []string{issuerEnv, "KFCMD_GOOGLE_CLIENT_ID=abc.apps.googleusercontent.com"}, "check", "--identity-providers", "--config", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, "ok   identity.secrets.oidc.google.issuer  "+iss.URL+"  discovery and key set fetched") {
		t.Errorf("with every key present: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// An identity provider that does not answer fails the check before a rollout would; without
	// --identity-providers (a pipeline with no route to it) it is not asked.
	r = run(t, []string{"KEYFORT_IDENTITY__SECRETS__OIDC__GOOGLE__ISSUER=http://127.0.0.1:1", "KFCMD_GOOGLE_CLIENT_ID=abc.apps.googleusercontent.com"},
		"check", "--identity-providers", "--config", cfg)
	if r.code != 1 || !strings.Contains(r.stdout, "FAIL identity.secrets.oidc.google.issuer  http://127.0.0.1:1  identity provider \"google\": oidc: discovery") {
		t.Errorf("an unreachable identity provider: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = run(t, []string{"KEYFORT_IDENTITY__SECRETS__OIDC__GOOGLE__ISSUER=http://127.0.0.1:1", "KFCMD_GOOGLE_CLIENT_ID=abc.apps.googleusercontent.com"},
		"check", "--config", cfg)
	if r.code != 0 || strings.Contains(r.stdout, ".issuer") {
		t.Errorf("without --identity-providers: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestCheckJSON: check --json says the same as its lines, as one document a pipeline can read:
// each key with its binding, status, detail and error kind, and the count of failures; the exit
// status is the same, and no secret value appears.
func TestCheckJSON(t *testing.T) {
	cfg := writeConfig(t, config)
	r := run(t, nil, "check", "--json", "--config", cfg)
	if r.code != 1 {
		t.Fatalf("exit code: got %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
	}
	var rep struct {
		OK      bool `json:"ok"`
		Failing int  `json:"failing"`
		Checks  []struct {
			Key, Where, Detail string
			OK                 bool   `json:"ok"`
			Kind               string `json:"error_kind"`
		} `json:"checks"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("not one JSON document: %v\n%s", err, r.stdout)
	}
	byKey := map[string]int{}
	for i, c := range rep.Checks {
		byKey[c.Key] = i
	}
	id, ok := byKey["identity.secrets.oidc.google.client_id"]
	if rep.OK || rep.Failing != 1 || !ok {
		t.Fatalf("report: ok %v, failing %d, checks %+v", rep.OK, rep.Failing, rep.Checks)
	}
	if c := rep.Checks[id]; c.OK || c.Where != "env:KFCMD_GOOGLE_CLIENT_ID" || c.Kind != "not_found" {
		t.Errorf("the missing key: %+v", c)
	}
	if c := rep.Checks[byKey["identity.secrets.session_signing"]]; !c.OK || c.Where != "dev:session-signing" || c.Kind != "" || c.Detail == "" {
		t.Errorf("the signing key: %+v", c)
	}
	if strings.Contains(r.stdout+r.stderr, "the-api-key-value-1234") {
		t.Error("check printed a secret value")
	}
	r = run(t, []string{"KFCMD_GOOGLE_CLIENT_ID=abc.apps.googleusercontent.com"}, "check", "--json", "--config", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, `"ok": true`) || !strings.Contains(r.stdout, `"failing": 0`) {
		t.Errorf("with every key present: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestCheckReportsTracing: check reports the tracing the OTEL_* environment asks of serve, failing
// what serve would refuse at start.
func TestCheckReportsTracing(t *testing.T) {
	cfg := writeConfig(t, config)
	env := []string{"KFCMD_GOOGLE_CLIENT_ID=abc.apps.googleusercontent.com", "OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4317"}
	r := run(t, env, "check", "--config", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, "ok   tracing  http://collector:4317  OTLP over grpc") {
		t.Errorf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = run(t, append(env, "OTEL_EXPORTER_OTLP_PROTOCOL=http/json"), "check", "--config", cfg)
	if r.code != 1 || !strings.Contains(r.stdout, "FAIL tracing  http://collector:4317  OTEL_EXPORTER_OTLP_PROTOCOL=http/json") {
		t.Errorf("an unsupported protocol: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestCheckReportsProvidersThatDoNotStart: check reports a provider that does not start (a plugin
// binary that is no plugin, a Vault nobody answers at) as a failing line of its own, and every key
// bound to it as failing because of it, while the keys of the providers that did start are still
// resolved: every problem at once, a line each, exit status 1.
func TestCheckReportsProvidersThatDoNotStart(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	_ = dead.Close()
	cfg := writeConfig(t, `
providers:
  dev:
    type: memory
    settings:
      secrets: { api-key: "the-api-key-value-1234" }
  corp:
    plugin: /bin/false
  vault:
    settings: { address: "http://`+deadAddr+`", auth: { method: token } }
identity:
  secrets:
    session_signing: corp:session
    api_key: dev:api-key
    db_password: vault:kv:secret/db#password
`)
	r := run(t, []string{"VAULT_TOKEN=not-a-real-token-5150"}, "check", "--config", cfg)
	if r.code != 1 {
		t.Errorf("exit code: got %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{
		"FAIL providers.corp  /bin/false  did not start: keyfort: unavailable: plugin did not start",
		"FAIL providers.vault  vault  did not start: keyfort: \"auth.token\": unavailable: vault GET auth/token/lookup-self: server unreachable",
		"FAIL identity.secrets.session_signing  corp:session  provider \"corp\" did not start (providers.corp)",
		"FAIL identity.secrets.db_password  vault:kv:secret/db#password  provider \"vault\" did not start (providers.vault)",
		"ok   identity.secrets.api_key  dev:api-key  secret: 22 bytes",
		"4 key(s) failing",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
		}
	}
	if n := strings.Count(strings.TrimSpace(r.stdout), "\n") + 1; n != 6 {
		t.Errorf("%d lines, want one per check and the total:\n%s", n, r.stdout)
	}
	if strings.Contains(r.stdout+r.stderr, "not-a-real-token-5150") {
		t.Error("check printed the Vault token")
	}

	r = run(t, []string{"VAULT_TOKEN=not-a-real-token-5150"}, "check", "--config", cfg, "--json")
	var rep struct {
		OK      bool
		Failing int
		Checks  []struct {
			Key, Kind string
			OK        bool
			ErrorKind string `json:"error_kind"`
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("--json: %v\n%s", err, r.stdout)
	}
	kinds := map[string]string{}
	for _, c := range rep.Checks {
		kinds[c.Key] = c.ErrorKind
	}
	if rep.OK || rep.Failing != 4 || kinds["providers.vault"] != "unavailable" || kinds["identity.secrets.session_signing"] != "unavailable" || kinds["identity.secrets.api_key"] != "" {
		t.Errorf("--json: ok %v, failing %d, kinds %v", rep.OK, rep.Failing, kinds)
	}
}

func TestCheckInvalidConfiguration(t *testing.T) {
	cfg := writeConfig(t, "identity: { secrets: { session_signing: nowhere:x } }\nbogus: 1\n")
	r := run(t, nil, "check", "--config", cfg)
	if r.code != 2 {
		t.Fatalf("exit code: got %d, want 2", r.code)
	}
	for _, want := range []string{"bogus: unknown key", `unknown provider "nowhere"`} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
}

func TestGetRevealsOnlyWhenAsked(t *testing.T) {
	cfg := writeConfig(t, config)
	r := run(t, nil, "get", "api_key", "--config", cfg)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, "provider: dev") || !strings.Contains(r.stdout, "length:   22 bytes") {
		t.Errorf("metadata missing:\n%s", r.stdout)
	}
	if strings.Contains(r.stdout, "the-api-key-value-1234") {
		t.Error("get printed the value without --reveal")
	}
	r = run(t, nil, "get", "api_key", "--config", cfg, "--reveal")
	if !strings.Contains(r.stdout, "value:    the-api-key-value-1234") {
		t.Errorf("--reveal did not print the value:\n%s", r.stdout)
	}
	r = run(t, nil, "get", "session_signing", "--config", cfg)
	if !strings.Contains(r.stdout, "alg=EdDSA") || strings.Contains(r.stdout, "PRIVATE KEY") {
		t.Errorf("key set metadata:\n%s", r.stdout)
	}
	r = run(t, nil, "get", "identity.credentials.orders", "--config", cfg)
	if !strings.Contains(r.stdout, "username: v-orders-") || !strings.Contains(r.stdout, "Lease{") {
		t.Errorf("credentials metadata:\n%s", r.stdout)
	}
	r = run(t, nil, "get", "no_such_key", "--config", cfg)
	if r.code != 1 || !strings.Contains(r.stderr, "identity.secrets.no_such_key") {
		t.Errorf("unknown key: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"serve", "--help"}, {"check", "--help"}, {"get", "--help"}, {"plugin", "--help"}, {"version", "--help"}} {
		r := run(t, nil, args...)
		if r.code != 0 || !strings.Contains(r.stdout, "Usage:") {
			t.Errorf("%v: exit %d, output %q", args, r.code, r.stdout)
		}
	}
	r := run(t, nil, "version")
	if r.code != 0 || !strings.Contains(r.stdout, "plugin protocol 1") {
		t.Errorf("version: %q", r.stdout)
	}
}

func TestPluginRefusesToRunByHand(t *testing.T) {
	r := run(t, nil, "plugin", "memory")
	if r.code == 0 || !strings.Contains(r.stderr, "started by a Keyfort host") {
		t.Errorf("plugin by hand: exit %d, stderr %q", r.code, r.stderr)
	}
	r = run(t, nil, "plugin", "nonesuch")
	if r.code == 0 || !strings.Contains(r.stderr, `no built-in provider "nonesuch"`) {
		t.Errorf("unknown plugin: exit %d, stderr %q", r.code, r.stderr)
	}
}
