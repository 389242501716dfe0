package main_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/keyfort/keyfort/internal/hosttest"
	"github.com/keyfort/keyfort/internal/testpki"
)

var servingTLS = regexp.MustCompile(`http=https://(127\.0\.0\.1:\d+) grpc=(127\.0\.0\.1:\d+)`)

// startServeTLS runs serve with --tls-cert and --tls-key and returns its HTTP and gRPC addresses.
func startServeTLS(t *testing.T, certFile, keyFile string) (httpAddr, grpcAddr string) {
	t.Helper()
	cmd := exec.Command(hosttest.ProviderHost(t), "serve", "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0",
		"--tls-cert", certFile, "--tls-key", keyFile)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if m := servingTLS.FindStringSubmatch(sc.Text()); m != nil {
			httpAddr, grpcAddr = m[1], m[2]
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, stderr) }()
	if httpAddr == "" {
		t.Fatal("serve never listened with TLS")
	}
	return httpAddr, grpcAddr
}

func TestServeTLS(t *testing.T) {
	ca := testpki.New(t)
	certFile, keyFile := ca.Server(t)
	pool := ca.Pool()
	httpAddr, grpcAddr := startServeTLS(t, certFile, keyFile)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := hc.Get("https://" + httpAddr + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"keys"`) {
		t.Errorf("jwks over TLS: %d %s", resp.StatusCode, body)
	}
	cc, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("gRPC over TLS: %v", err)
	}
	plain, _ := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	defer plain.Close()
	pctx, pcancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer pcancel()
	if _, err := healthpb.NewHealthClient(plain).Check(pctx, &healthpb.HealthCheckRequest{}); err == nil {
		t.Error("a plaintext client was served by the TLS listener")
	}
}

// servedSerial returns the serial number of the certificate serve's HTTPS listener presents to a new
// connection.
func servedSerial(t *testing.T, addr string, pool *x509.CertPool) string {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// replaceFile writes src's content to dst by rename, as rotation tools do.
func replaceFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

// TestServeReloadsRotatedCertificate: a certificate rotated on disk is served from the next new
// connection on, with no restart; a pair that does not load (the key not yet written) leaves the
// previous one in service.
func TestServeReloadsRotatedCertificate(t *testing.T) {
	ca := testpki.New(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	first, firstKey := ca.Server(t)
	replaceFile(t, first, certFile)
	replaceFile(t, firstKey, keyFile)
	httpAddr, _ := startServeTLS(t, certFile, keyFile)
	serial := servedSerial(t, httpAddr, ca.Pool())

	second, secondKey := ca.Server(t)
	replaceFile(t, second, certFile)
	replaceFile(t, secondKey, keyFile)
	rotated := servedSerial(t, httpAddr, ca.Pool())
	if rotated == serial {
		t.Fatalf("after the rotation the old certificate (serial %s) is still served", serial)
	}

	third, _ := ca.Server(t)
	replaceFile(t, third, certFile) // its key is not written yet: the pair does not match
	if got := servedSerial(t, httpAddr, ca.Pool()); got != rotated {
		t.Errorf("with a half-written rotation: serial %s served, want the previous %s", got, rotated)
	}
}
