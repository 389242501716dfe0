package redistest

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keyfort/keyfort/internal/testpki"
)

// StartTLS starts a redis-server of its own that speaks only TLS on 127.0.0.1, with a certificate
// from ca, requiring a client certificate from ca when clientCerts is set, and returns its address.
// The server stops when the test ends. Without a redis-server binary the test is skipped (it fails
// where KEYFORT_REQUIRE_SERVERS=1: .ci/run installs Redis).
func StartTLS(tb testing.TB, ca *testpki.CA, clientCerts bool) string {
	tb.Helper()
	bin := serverBin(tb)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	_, port, _ := net.SplitHostPort(addr)
	cert, key := ca.Server(tb)
	auth := "no"
	if clientCerts {
		auth = "yes"
	}
	dir := tb.TempDir()
	cmd := exec.Command(bin, "--port", "0", "--tls-port", port, "--bind", "127.0.0.1",
		"--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", ca.CertFile,
		"--tls-auth-clients", auth, "--save", "", "--appendonly", "no", "--dir", dir,
		"--logfile", dir+"/redis.log")
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	tc := &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	if clientCerts {
		cc, ck := ca.Client(tb)
		pair, err := tls.LoadX509KeyPair(cc, ck)
		if err != nil {
			tb.Fatal(err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	c := redis.NewClient(&redis.Options{Addr: addr, TLSConfig: tc, MaxRetries: -1})
	defer c.Close()
	for range 200 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err = c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return addr
		}
		time.Sleep(50 * time.Millisecond)
	}
	log, _ := os.ReadFile(dir + "/redis.log")
	tb.Fatalf("TLS redis-server on %s did not answer: %v\n%s", addr, err, log)
	return ""
}
