package kvserver_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/keyfort/keyfort/internal/hosttest"
	pb "github.com/keyfort/keyfort/internal/kvexamplepb/v1"
	"github.com/keyfort/keyfort/internal/vaulttest"
)

// TestStoppedWithItsPluginsRevokesLeases runs the guarded-kv binary on Vault as a supervisor runs
// a service (its own process group, the way systemd's default KillMode=control-group, `timeout`
// or a terminal stop every process of a service at once) and stops it with one SIGTERM to the
// whole group, its Vault plugin included. The service still ends its sessions on the way out and
// the plugin still revokes their leases and Vault tokens: the PostgreSQL role Vault made for the
// session is dropped, the session's token is gone, and both processes exit cleanly.
func TestStoppedWithItsPluginsRevokesLeases(t *testing.T) {
	v, pgURL, iss := startVaultForIDTokens(t)

	cmd := exec.Command(hosttest.Build(t, "github.com/keyfort/keyfort/examples/guarded-kv"),
		"--config", filepath.Join("..", "config", "auth-enabled-vault.yaml"), "--addr", "127.0.0.1:0")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"VAULT_ADDR=" + v.Addr, "VAULT_TOKEN=" + vaulttest.RootToken,
		"GOOGLE_CLIENT_ID=client-123.apps.googleusercontent.com",
		"KEYFORT_IDENTITY__SECRETS__OIDC__GOOGLE__ISSUER=" + iss.URL,
		"KEYFORT_PROVIDER_HOST=" + hosttest.ProviderHost(t)}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	m, log := hosttest.StartCmd(t, cmd, regexp.MustCompile(`guarded-kv: serving.* addr=(127\.0\.0\.1:\d+)`))
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }) // should the test fail

	cc, err := grpc.NewClient(m[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	tok := iss.Sign(t, "k1", iss.Claims("alice", "client-123.apps.googleusercontent.com"), nil)
	put, err := pb.NewKeyValueServiceClient(cc).Put(bearer(tok), &pb.PutRequest{Key: "a", Value: "1"})
	if err != nil {
		t.Fatal(err)
	}
	role := pgRole(t, pgURL, put.GetBackendUser())
	if !role.exists() {
		t.Fatalf("backend user %q is not a PostgreSQL role made by Vault", put.GetBackendUser())
	}
	vc := v.Client(t)
	sessionTokens := jwtLogins(t, vc)
	if len(sessionTokens) == 0 {
		t.Fatal("no Vault token of a JWT login (the session's) before the stop")
	}

	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("guarded-kv after SIGTERM: %v\n%s", err, log)
		}
	case <-time.After(60 * time.Second): // a liveness bound, not a performance threshold
		t.Fatalf("guarded-kv did not stop on SIGTERM:\n%s", log)
	}
	role.waitGone()
	// The plugin's own Close ran too: the session's Vault token, which only that process held, is
	// revoked (a plugin killed by the SIGTERM leaves it to its TTL; a restarted one cannot know it).
	for _, acc := range sessionTokens {
		if _, err := vc.Auth().Token().LookupAccessor(acc); err == nil {
			t.Errorf("the session's Vault token (accessor %s) outlived the stop", acc)
		}
	}
	if strings.Contains(log.String(), "plugin process exited") && strings.Contains(log.String(), "signal: terminated") {
		t.Errorf("the SIGTERM killed the plugin under its host:\n%s", log)
	}
}

// jwtLogins returns the accessors of the live Vault tokens made by a JWT login.
func jwtLogins(t *testing.T, c *api.Client) []string {
	t.Helper()
	list, err := c.Logical().List("auth/token/accessors")
	if err != nil || list == nil {
		t.Fatalf("listing token accessors: %v", err)
	}
	keys, _ := list.Data["keys"].([]any)
	var out []string
	for _, k := range keys {
		acc, _ := k.(string)
		tok, err := c.Auth().Token().LookupAccessor(acc)
		if err == nil && tok != nil && tok.Data["path"] == "auth/jwt/login" {
			out = append(out, acc)
		}
	}
	return out
}
