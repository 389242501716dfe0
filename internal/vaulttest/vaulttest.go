package vaulttest

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// RootToken is the dev server's root token.
const RootToken = "root"

// Server is a running Vault dev server.
type Server struct {
	Addr   string // http://127.0.0.1:PORT, or https:// with TLS
	CAFile string // the dev CA certificate, with TLS
	tls    bool
	bin    string
	port   int
	home   string
	mu     sync.Mutex
	cmd    *exec.Cmd
}

// Binary returns the Vault binary, or skips (fails in CI) the test.
func Binary(tb testing.TB) string {
	tb.Helper()
	bin := os.Getenv("KEYFORT_VAULT_BIN")
	if bin == "" {
		if os.Getenv("KEYFORT_REQUIRE_SERVERS") == "1" {
			tb.Fatal("KEYFORT_VAULT_BIN is not set; run the tests through scripts/test.sh")
		}
		tb.Skip("no Vault binary: set KEYFORT_VAULT_BIN=$(scripts/vault-dev.sh)")
	}
	return bin
}

// Start starts a dev server on a free loopback port; it stops when the test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s := &Server{bin: Binary(tb), port: freePort(tb), home: tb.TempDir()}
	s.Addr = "http://127.0.0.1:" + strconv.Itoa(s.port)
	s.start(tb)
	tb.Cleanup(s.Stop)
	return s
}

// StartTLS starts a dev server that serves HTTPS with a certificate from its own dev CA (CAFile).
func StartTLS(tb testing.TB) *Server {
	tb.Helper()
	s := &Server{bin: Binary(tb), port: freePort(tb), home: tb.TempDir(), tls: true}
	s.Addr = "https://127.0.0.1:" + strconv.Itoa(s.port)
	s.CAFile = filepath.Join(s.home, "vault-ca.pem")
	s.start(tb)
	tb.Cleanup(s.Stop)
	return s
}

func (s *Server) start(tb testing.TB) {
	tb.Helper()
	args := []string{"server", "-dev", "-dev-root-token-id=" + RootToken,
		"-dev-listen-address=127.0.0.1:" + strconv.Itoa(s.port), "-dev-no-store-token"}
	if s.tls {
		args = append(args, "-dev-tls", "-dev-tls-cert-dir="+s.home, "-dev-tls-san=127.0.0.1")
	}
	cmd := exec.Command(s.bin, args...)
	cmd.Env = []string{"HOME=" + s.home, "PATH=" + os.Getenv("PATH")}
	logFile, err := os.Create(filepath.Join(s.home, fmt.Sprintf("vault-%d.log", time.Now().UnixNano())))
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start vault: %v", err)
	}
	s.mu.Lock()
	s.cmd = cmd
	s.mu.Unlock()
	hc := http.DefaultClient
	if s.tls {
		hc = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // readiness probe only
	}
	for range 600 {
		resp, err := hc.Get(s.Addr + "/v1/sys/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	tb.Fatalf("vault dev server at %s did not become ready (log in %s)", s.Addr, logFile.Name())
}

// Stop kills the server.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		s.cmd = nil
	}
}

// Restart starts a fresh dev server (empty: dev mode keeps nothing) on the same address.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	s.Stop()
	s.start(tb)
}

// Client returns a client with the root token.
func (s *Server) Client(tb testing.TB) *api.Client {
	tb.Helper()
	cfg := api.DefaultConfig()
	cfg.Address = s.Addr
	if s.tls {
		if err := cfg.ConfigureTLS(&api.TLSConfig{CACert: s.CAFile}); err != nil {
			tb.Fatal(err)
		}
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	c.SetToken(RootToken)
	return c
}

// Write writes data at path with the root token, failing the test on error.
func (s *Server) Write(tb testing.TB, path string, data map[string]any) *api.Secret {
	tb.Helper()
	sec, err := s.Client(tb).Logical().Write(path, data)
	if err != nil {
		tb.Fatalf("vault write %s: %v", path, err)
	}
	return sec
}

func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
