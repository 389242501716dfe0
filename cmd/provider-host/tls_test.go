package main_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/keyfort/keyfort/api/identity/v1"
	"github.com/keyfort/keyfort/internal/hosttest"
	"github.com/keyfort/keyfort/internal/testpki"
	"github.com/keyfort/keyfort/session/oidc/oidctest"
)

var servingTLS = regexp.MustCompile(`http=https://(127\.0\.0\.1:\d+) grpc=(127\.0\.0\.1:\d+)`)

// startServeTLS runs serve with --tls-cert, --tls-key and extra flags and returns its HTTP and gRPC addresses.
func startServeTLS(t *testing.T, certFile, keyFile string, extra ...string) (httpAddr, grpcAddr string) {
	t.Helper()
	cmd := exec.Command(hosttest.ProviderHost(t), append([]string{"serve", "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0",
		"--tls-cert", certFile, "--tls-key", keyFile}, extra...)...)
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

// healthOver calls the gRPC health service at addr with TLS configuration c.
func healthOver(t *testing.T, addr string, c *tls.Config) error {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(c)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

func clientCert(t *testing.T, ca *testpki.CA) []tls.Certificate {
	t.Helper()
	certFile, keyFile := ca.Client(t)
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return []tls.Certificate{c}
}

// TestServeMutualTLS: with --tls-client-ca the gRPC listener serves only clients whose certificate
// chains to those CAs (none, or one of another CA, is refused at the handshake), the HTTP endpoints
// still answer without one, and a rotated CA bundle takes effect at the next connection.
func TestServeMutualTLS(t *testing.T) {
	serverCA, clientCA, otherCA := testpki.New(t), testpki.New(t), testpki.New(t)
	certFile, keyFile := serverCA.Server(t)
	caFile := filepath.Join(t.TempDir(), "client-ca.pem")
	replaceFile(t, clientCA.CertFile, caFile)
	httpAddr, grpcAddr := startServeTLS(t, certFile, keyFile, "--tls-client-ca", caFile)
	roots := serverCA.Pool()

	good := clientCert(t, clientCA)
	if err := healthOver(t, grpcAddr, &tls.Config{RootCAs: roots, Certificates: good}); err != nil {
		t.Fatalf("a client certificate of the configured CA: %v", err)
	}
	if err := healthOver(t, grpcAddr, &tls.Config{RootCAs: roots}); err == nil {
		t.Error("a client without a certificate was served")
	}
	stranger := clientCert(t, otherCA)
	if err := healthOver(t, grpcAddr, &tls.Config{RootCAs: roots, Certificates: stranger}); err == nil {
		t.Error("a client certificate of another CA was served")
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	resp, err := hc.Get("https://" + httpAddr + "/healthz")
	if err != nil {
		t.Fatalf("HTTP without a client certificate: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz: %d", resp.StatusCode)
	}

	// Rotate the bundle to the other CA: its clients are served from the next connection, the
	// first CA's are not; a bundle that does not load keeps the CAs in service.
	replaceFile(t, otherCA.CertFile, caFile)
	if err := healthOver(t, grpcAddr, &tls.Config{RootCAs: roots, Certificates: stranger}); err != nil {
		t.Errorf("after the rotation, a certificate of the new CA: %v", err)
	}
	if err := healthOver(t, grpcAddr, &tls.Config{RootCAs: roots, Certificates: good}); err == nil {
		t.Error("after the rotation, a certificate of the old CA was still served")
	}
	if err := os.WriteFile(caFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := healthOver(t, grpcAddr, &tls.Config{RootCAs: roots, Certificates: stranger}); err != nil {
		t.Errorf("with a broken bundle on disk the previous CAs must stay in service: %v", err)
	}
}

// TestServeClientCAFlags: --tls-client-ca without a server certificate, or naming a file that is not
// a CA bundle, and --tls-client-allow without client CAs or with a value it cannot match, stop
// start-up naming the flag.
func TestServeClientCAFlags(t *testing.T) {
	ca := testpki.New(t)
	certFile, keyFile := ca.Server(t)
	bad := filepath.Join(t.TempDir(), "bad.pem")
	if err := os.WriteFile(bad, []byte("nothing"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, args := range map[string][]string{
		"no server certificate": {"serve", "--tls-client-ca", ca.CertFile},
		"not a bundle":          {"serve", "--tls-cert", certFile, "--tls-key", keyFile, "--tls-client-ca", bad},
		"an allow-list without client CAs": {"serve", "--tls-cert", certFile, "--tls-key", keyFile,
			"--tls-client-allow", "gateway.internal"},
		"a wildcard DNS name on the allow-list": {"serve", "--tls-cert", certFile, "--tls-key", keyFile,
			"--tls-client-ca", ca.CertFile, "--tls-client-allow", "*.internal"},
	} {
		cmd := exec.Command(hosttest.ProviderHost(t), append(args, "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0")...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Errorf("%s: serve started", name)
			continue
		}
		if !strings.Contains(string(out), "--tls-client-ca") && !strings.Contains(string(out), "--tls-client-allow") {
			t.Errorf("%s: the error does not name the flag:\n%s", name, out)
		}
	}
}

// TestServeClientAllowList: with --tls-client-allow, a client certificate of the configured CA is
// served only when it carries an allowed identity (a SPIFFE ID exactly, one under an allowed path,
// or a DNS name); the others are refused at the handshake, and the refusal is logged with the
// certificate's identities.
func TestServeClientAllowList(t *testing.T) {
	serverCA, clientCA := testpki.New(t), testpki.New(t)
	certFile, keyFile := serverCA.Server(t)
	addrs, log, _ := hosttest.StartLogged(t, hosttest.ProviderHost(t), []string{"PATH=" + os.Getenv("PATH")}, servingTLS,
		"serve", "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile,
		"--tls-client-ca", clientCA.CertFile,
		"--tls-client-allow", "spiffe://keyfort.test/ns/prod/sa/gateway",
		"--tls-client-allow", "spiffe://keyfort.test/ns/ops/*",
		"--tls-client-allow", "gateway.internal")
	grpcAddr := addrs[1]
	roots := serverCA.Pool()
	with := func(uris, dns []string) *tls.Config {
		certFile, keyFile := clientCA.ClientWith(t, uris, dns)
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		return &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{c}}
	}
	for name, c := range map[string]*tls.Config{
		"the gateway's SPIFFE ID":   with([]string{"spiffe://keyfort.test/ns/prod/sa/gateway"}, nil),
		"a SPIFFE ID under ns/ops":  with([]string{"spiffe://keyfort.test/ns/ops/sa/runner"}, nil),
		"an allowed DNS name":       with(nil, []string{"gateway.internal"}),
		"one allowed among several": with([]string{"spiffe://keyfort.test/ns/dev/sa/x", "spiffe://keyfort.test/ns/prod/sa/gateway"}, nil),
	} {
		if err := healthOver(t, grpcAddr, c); err != nil {
			t.Errorf("%s: refused: %v", name, err)
		}
	}
	for name, c := range map[string]*tls.Config{
		"another SPIFFE ID":           with([]string{"spiffe://keyfort.test/ns/prod/sa/batch"}, nil),
		"another trust domain":        with([]string{"spiffe://evil.test/ns/prod/sa/gateway"}, nil),
		"a name under an allowed one": with(nil, []string{"x.gateway.internal"}),
		"no identity at all":          {RootCAs: roots, Certificates: clientCert(t, clientCA)},
	} {
		if err := healthOver(t, grpcAddr, c); err == nil {
			t.Errorf("%s: served", name)
		}
	}
	// The runtime's audit records name the caller's certificate and SPIFFE ID.
	cc, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(with([]string{"spiffe://keyfort.test/ns/prod/sa/gateway"}, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = pb.NewIdentityRuntimeServiceClient(cc).StartIdentitySession(ctx,
		&pb.StartIdentitySessionRequest{IdentityProvider: "google", ExternalToken: "not.a.token"})
	if status.Code(err) != codes.Unauthenticated && status.Code(err) != codes.InvalidArgument {
		t.Errorf("StartIdentitySession with a junk token: %v", err)
	}
	waitLog(t, log, `client_uri=spiffe://keyfort.test/ns/prod/sa/gateway`)
	if !strings.Contains(log.String(), `client_cert="CN=keyfort test workload"`) {
		t.Errorf("the audit record does not name the client certificate:\n%s", log.String())
	}
	if !strings.Contains(log.String(), "not on --tls-client-allow") || !strings.Contains(log.String(), "spiffe://keyfort.test/ns/prod/sa/batch") {
		t.Errorf("the refusals are not logged with the certificate's identity:\n%s", log.String())
	}
}

// waitLog waits for want in a child's output.
func waitLog(t *testing.T, log *hosttest.Log, want string) {
	t.Helper()
	for range 500 {
		if strings.Contains(log.String(), want) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%q never logged:\n%s", want, log.String())
}

// TestRefreshTokensBoundToTheClientCertificate: over mutual TLS, the refresh tokens of a session
// are bound to the identity of the client that started it (its SPIFFE ID): another client of the
// same CA is refused (audited as client_mismatch) and rotates nothing; the same identity with a
// new certificate (a rotation) refreshes; identity.session.bind_refresh_to_client: false turns
// the binding off.
func TestRefreshTokensBoundToTheClientCertificate(t *testing.T) {
	m := newMTLSRuntime(t)
	const gateway, batch = "spiffe://keyfort.test/ns/prod/sa/gateway", "spiffe://keyfort.test/ns/prod/sa/batch"
	for _, bind := range []bool{true, false} {
		addr, log := m.serve(m.config(fmt.Sprintf("bind_refresh_to_client: %v", bind)))
		ctx := context.Background()
		started, err := m.client(addr, gateway).StartIdentitySession(ctx, &pb.StartIdentitySessionRequest{IdentityProvider: "google",
			ExternalToken: m.iss.Sign(t, "k1", m.iss.Claims("alice", "client-1"), nil)})
		if err != nil {
			t.Fatal(err)
		}
		// Each call from a new certificate (and key): a rotation, for the same identity.
		refresh := func(uri, tok string) (*pb.RefreshIdentitySessionResponse, error) {
			return m.client(addr, uri).RefreshIdentitySession(ctx, &pb.RefreshIdentitySessionRequest{RefreshToken: tok})
		}
		_, err = refresh(batch, started.GetTokens().GetRefreshToken())
		if !bind {
			if err != nil {
				t.Errorf("without binding, another client refreshing: %v", err)
			}
			continue
		}
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("another client refreshing a bound refresh token: got %v, want Unauthenticated", err)
		}
		waitLog(t, log, "event=session.refresh outcome=client_mismatch")
		again, err := refresh(gateway, started.GetTokens().GetRefreshToken()) // a rotated certificate of the same workload
		if err != nil {
			t.Fatalf("the same client identity, with a new certificate: %v", err)
		}
		if _, err := refresh(batch, again.GetTokens().GetRefreshToken()); status.Code(err) != codes.Unauthenticated {
			t.Errorf("the successor, by another client: %v", err)
		}
		// Nor may another client end the session with it (a thief logging its user out).
		if _, err := m.client(addr, batch).EndIdentitySession(ctx, &pb.EndIdentitySessionRequest{Token: again.GetTokens().GetRefreshToken()}); status.Code(err) != codes.Unauthenticated {
			t.Errorf("another client ending the session with its bound refresh token: got %v, want Unauthenticated", err)
		}
		waitLog(t, log, "event=session.end outcome=client_mismatch")
		if _, err := refresh(gateway, again.GetTokens().GetRefreshToken()); err != nil {
			t.Errorf("the session after another client's attempt to end it: %v", err)
		}
	}
}

// TestAccessTokensBoundToTheClientCertificate: with identity.session.bind_access_to_client, the
// access tokens of a session started over mutual TLS are served only to its client — any
// certificate of its identity, a rotated one included, before and after a refresh — and refused to
// another client of the same CA (a warning naming both identities, the session unharmed for its
// client); introspection reports the bound client. Without the setting an access token is anyone's
// who holds it. The setting without --tls-client-ca, or beside bind_refresh_to_client: false, stops
// serve naming it.
func TestAccessTokensBoundToTheClientCertificate(t *testing.T) {
	m := newMTLSRuntime(t)
	const gateway, batch, python = "spiffe://keyfort.test/ns/prod/sa/gateway", "spiffe://keyfort.test/ns/prod/sa/batch", "spiffe://keyfort.test/ns/prod/sa/python"
	cfg := m.config(fmt.Sprintf("bind_access_to_client: true, introspection_clients: [%q]", python))
	r := run(t, []string{"PATH=" + os.Getenv("PATH")}, "serve", "--config", m.config("bind_access_to_client: true"),
		"--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0")
	if r.code == 0 || !strings.Contains(r.stdout+r.stderr, "identity.session.bind_access_to_client needs client certificates") {
		t.Errorf("bind_access_to_client without --tls-client-ca: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = run(t, nil, "check", "--config", m.config("bind_access_to_client: true, bind_refresh_to_client: false"))
	if r.code == 0 || !strings.Contains(r.stdout+r.stderr, "identity.session.bind_access_to_client: set, but identity.session.bind_refresh_to_client is false") {
		t.Errorf("bind_access_to_client beside unbound refresh tokens: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	ctx := context.Background()
	for _, bind := range []bool{true, false} {
		conf := cfg
		if !bind {
			conf = m.config(fmt.Sprintf("introspection_clients: [%q]", python))
		}
		addr, log := m.serve(conf)
		started, err := m.client(addr, gateway).StartIdentitySession(ctx, &pb.StartIdentitySessionRequest{IdentityProvider: "google",
			ExternalToken: m.iss.Sign(t, "k1", m.iss.Claims("alice", "client-1"), nil)})
		if err != nil {
			t.Fatal(err)
		}
		list := func(uri, access string) error {
			_, err := m.client(addr, uri).ListSubjectSessions(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+access),
				&pb.ListSubjectSessionsRequest{Subject: "alice"})
			return err
		}
		access := started.GetTokens().GetAccessToken()
		if err := list(gateway, access); err != nil {
			t.Fatalf("bind=%v: the access token from its client: %v", bind, err)
		}
		err = list(batch, access)
		if !bind {
			if err != nil {
				t.Errorf("without binding, the access token from another client: %v", err)
			}
			res, err := m.client(addr, python).IntrospectIdentityToken(ctx, &pb.IntrospectIdentityTokenRequest{Token: access})
			if err != nil || !res.GetActive() || res.GetClient() != "" {
				t.Errorf("introspecting a bearer token: %v, %v; want active, no client", res, err)
			}
			continue
		}
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("a bound access token from another client: got %v, want Unauthenticated", err)
		}
		waitLog(t, log, `level=WARN msg="keyfort: call refused"`)
		waitLog(t, log, fmt.Sprintf(`bound to \"%s\"; presented by \"%s\"`, gateway, batch))
		if err := list(gateway, access); err != nil { // a new certificate of the same workload
			t.Errorf("the access token from its client, after another's attempt: %v", err)
		}
		res, err := m.client(addr, python).IntrospectIdentityToken(ctx, &pb.IntrospectIdentityTokenRequest{Token: access})
		if err != nil || !res.GetActive() || res.GetClient() != gateway {
			t.Errorf("introspecting a bound token: %v, %v; want active, client %s", res, err, gateway)
		}
		next, err := m.client(addr, gateway).RefreshIdentitySession(ctx, &pb.RefreshIdentitySessionRequest{RefreshToken: started.GetTokens().GetRefreshToken()})
		if err != nil {
			t.Fatal(err)
		}
		if err := list(batch, next.GetTokens().GetAccessToken()); status.Code(err) != codes.Unauthenticated {
			t.Errorf("a refreshed access token from another client: got %v, want Unauthenticated", err)
		}
		if err := list(gateway, next.GetTokens().GetAccessToken()); err != nil {
			t.Errorf("a refreshed access token from its client: %v", err)
		}
		if strings.Contains(log.String(), access) {
			t.Error("serve's log carries an access token")
		}
	}
}

// TestIntrospection: over mutual TLS, a client on identity.session.introspection_clients asks
// whether an access token is active and gets its claims; once its session is ended, or for a
// refresh token, a junk token or an expired one, the answer is inactive and says nothing more.
// Any other client is refused; and introspection clients without --tls-client-ca stop serve.
func TestIntrospection(t *testing.T) {
	m := newMTLSRuntime(t)
	iss := m.iss
	const gateway, python = "spiffe://keyfort.test/ns/prod/sa/gateway", "spiffe://keyfort.test/ns/prod/sa/python"
	cfg := m.config(fmt.Sprintf("introspection_clients: [%q]", python))
	r := run(t, []string{"PATH=" + os.Getenv("PATH")}, "serve", "--config", cfg, "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0")
	if r.code == 0 || !strings.Contains(r.stdout+r.stderr, "introspection_clients needs client certificates") {
		t.Errorf("introspection clients without --tls-client-ca: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	addr, log := m.serve(cfg)
	client := func(uri string) pb.IdentityRuntimeServiceClient { return m.client(addr, uri) }
	ctx := context.Background()
	gw, py := client(gateway), client(python)
	claims := iss.Claims("alice", "client-1")
	started, err := gw.StartIdentitySession(ctx, &pb.StartIdentitySessionRequest{IdentityProvider: "google", Tenant: "acme",
		ExternalToken: iss.Sign(t, "k1", claims, nil)})
	if err != nil {
		t.Fatal(err)
	}
	access := started.GetTokens().GetAccessToken()
	introspect := func(c pb.IdentityRuntimeServiceClient, tok string) (*pb.IntrospectIdentityTokenResponse, error) {
		return c.IntrospectIdentityToken(ctx, &pb.IntrospectIdentityTokenRequest{Token: tok})
	}
	res, err := introspect(py, access)
	if err != nil || !res.GetActive() || res.GetSubject() != "alice" || res.GetTenant() != "acme" || res.GetIdentityProvider() != "google" ||
		!res.GetExpiresAt().AsTime().After(time.Now()) || res.GetIssuedAt().AsTime().After(time.Now()) {
		t.Fatalf("an active access token: %v, %v", res, err)
	}
	if _, err := introspect(gw, access); status.Code(err) != codes.PermissionDenied {
		t.Errorf("a client not on introspection_clients: got %v, want PermissionDenied", err)
	}
	waitLog(t, log, "is not on identity.session.introspection_clients")
	for what, tok := range map[string]string{
		"a refresh token": started.GetTokens().GetRefreshToken(),
		"a junk token":    "not.a.token",
		"an ID token":     iss.Sign(t, "k1", claims, nil),
	} {
		if res, err := introspect(py, tok); err != nil || res.GetActive() || res.GetSubject() != "" {
			t.Errorf("%s: %v, %v; want inactive and nothing more", what, res, err)
		}
	}
	if _, err := gw.EndIdentitySession(ctx, &pb.EndIdentitySessionRequest{Token: access}); err != nil {
		t.Fatal(err)
	}
	if res, err := introspect(py, access); err != nil || res.GetActive() || res.GetSubject() != "" {
		t.Errorf("the access token of an ended session: %v, %v; want inactive", res, err)
	}
}

// TestIntrospectionOverHTTP: RFC 7662's form of introspection on serve's HTTP listener. A client
// on identity.session.introspection_clients POSTs a form with the token and gets the JSON answer —
// an active access token's claims (Keyfort's tid, idp and cli among them), {"active":false} and
// nothing more for a refresh token, a junk token or the token of an ended session; a client
// without a certificate gets 401, one off the list 403, a malformed request 400, a GET 405, each an
// OAuth error body. Probes and the JWKS still answer callers without a certificate.
func TestIntrospectionOverHTTP(t *testing.T) {
	m := newMTLSRuntime(t)
	const gateway, python = "spiffe://keyfort.test/ns/prod/sa/gateway", "spiffe://keyfort.test/ns/prod/sa/python"
	httpAddr, grpcAddr, log := m.serveBoth(m.config(fmt.Sprintf("introspection_clients: [%q], bind_access_to_client: true", python)))
	ctx := context.Background()
	gw := m.client(grpcAddr, gateway)
	started, err := gw.StartIdentitySession(ctx, &pb.StartIdentitySessionRequest{IdentityProvider: "google", Tenant: "acme",
		ExternalToken: m.iss.Sign(t, "k1", m.iss.Claims("alice", "client-1"), nil)})
	if err != nil {
		t.Fatal(err)
	}
	access := started.GetTokens().GetAccessToken()
	endpoint := "https://" + httpAddr + "/oauth2/introspect"
	post := func(hc *http.Client, form url.Values) (int, map[string]any, http.Header) {
		t.Helper()
		resp, err := hc.PostForm(endpoint, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatalf("status %d: the body is not JSON: %v", resp.StatusCode, err)
		}
		return resp.StatusCode, body, resp.Header
	}
	py := m.httpClient(python)
	code, body, hdr := post(py, url.Values{"token": {access}, "token_type_hint": {"refresh_token"}})
	if code != http.StatusOK || body["active"] != true || body["sub"] != "alice" || body["tid"] != "acme" || body["idp"] != "google" ||
		body["cli"] != gateway || body["iss"] != "keyfort" || body["token_type"] != "Bearer" ||
		body["exp"].(float64) <= float64(time.Now().Unix()) || hdr.Get("Cache-Control") != "no-store" || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("an active access token: %d %v %v", code, body, hdr)
	}
	for what, tok := range map[string]string{
		"a refresh token": started.GetTokens().GetRefreshToken(),
		"a junk token":    "not.a.token",
		"an ID token":     m.iss.Sign(t, "k1", m.iss.Claims("alice", "client-1"), nil),
	} {
		if code, body, _ := post(py, url.Values{"token": {tok}}); code != http.StatusOK || len(body) != 1 || body["active"] != false {
			t.Errorf("%s: %d %v; want {\"active\":false} and nothing more", what, code, body)
		}
	}
	for what, tc := range map[string]struct {
		hc   *http.Client
		form url.Values
		code int
		err  string
	}{
		"no client certificate": {m.httpClient(""), url.Values{"token": {access}}, http.StatusUnauthorized, "invalid_client"},
		"a client off the list": {m.httpClient(gateway), url.Values{"token": {access}}, http.StatusForbidden, "access_denied"},
		"no token":              {py, url.Values{"token_type_hint": {"access_token"}}, http.StatusBadRequest, "invalid_request"},
		"two tokens":            {py, url.Values{"token": {access, access}}, http.StatusBadRequest, "invalid_request"},
		"an oversized body":     {py, url.Values{"token": {strings.Repeat("a", 70<<10)}}, http.StatusBadRequest, "invalid_request"},
	} {
		if code, body, _ := post(tc.hc, tc.form); code != tc.code || body["error"] != tc.err || body["active"] != nil {
			t.Errorf("%s: %d %v; want %d and error %s", what, code, body, tc.code, tc.err)
		}
	}
	resp, err := py.Get(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET: %d, Allow %q; want 405, POST", resp.StatusCode, resp.Header.Get("Allow"))
	}
	for _, path := range []string{"/healthz", "/.well-known/jwks.json", "/metrics"} {
		resp, err := m.httpClient("").Get("https://" + httpAddr + path)
		if err != nil {
			t.Fatalf("%s without a client certificate: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s without a client certificate: %d", path, resp.StatusCode)
		}
		if path == "/metrics" && (!strings.Contains(string(body), `keyfort_identity_calls_total{method="IntrospectHTTP",outcome="ok"} 1`) ||
			!strings.Contains(string(body), `keyfort_identity_calls_total{method="IntrospectHTTP",outcome="inactive"} 3`)) {
			t.Errorf("the introspections are not counted:\n%s", body)
		}
	}
	if _, err := gw.EndIdentitySession(ctx, &pb.EndIdentitySessionRequest{Token: access}); err != nil {
		t.Fatal(err)
	}
	if code, body, _ := post(py, url.Values{"token": {access}}); code != http.StatusOK || body["active"] != false {
		t.Errorf("the access token of an ended session: %d %v; want inactive", code, body)
	}
	waitLog(t, log, "is not on identity.session.introspection_clients")
	if strings.Contains(log.String(), access) {
		t.Error("serve's log carries the token")
	}
}

// TestRateLimit: with identity.session.rate_limit, each client of the runtime service has its own
// bucket — by certificate identity over mutual TLS, by address without — and a client past it gets
// ResourceExhausted, counted as rate_limited, while another client, introspection and the health
// service go on. A bad setting stops serve naming it.
func TestRateLimit(t *testing.T) {
	m := newMTLSRuntime(t)
	const gateway, batch, python = "spiffe://keyfort.test/ns/prod/sa/gateway", "spiffe://keyfort.test/ns/prod/sa/batch", "spiffe://keyfort.test/ns/prod/sa/python"
	// Three calls at once, then one an hour: the fourth in a row is refused, whatever the machine's speed.
	limit := "rate_limit: { per_second: 0.0003, burst: 3 }"
	r := run(t, nil, "check", "--config", m.config("rate_limit: { per_second: -1, burst: many }"))
	if r.code == 0 || !strings.Contains(r.stdout+r.stderr, "identity.session.rate_limit.per_second: want a positive number") ||
		!strings.Contains(r.stdout+r.stderr, "identity.session.rate_limit.burst: want a positive whole number") {
		t.Errorf("a bad rate_limit: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	ctx := context.Background()
	start := func(c pb.IdentityRuntimeServiceClient) error {
		_, err := c.StartIdentitySession(ctx, &pb.StartIdentitySessionRequest{IdentityProvider: "google", ExternalToken: "not.a.token"})
		return err
	}
	httpAddr, grpcAddr, _ := m.serveBoth(m.config(fmt.Sprintf("%s, introspection_clients: [%q]", limit, python)))
	gw := m.client(grpcAddr, gateway)
	for i := range 3 {
		if err := start(gw); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("call %d within the burst: got %v, want Unauthenticated (a junk token)", i+1, err)
		}
	}
	if err := start(gw); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("the call past the burst: got %v, want ResourceExhausted", err)
	}
	// The same identity with another certificate, on another connection: the same bucket.
	if err := start(m.client(grpcAddr, gateway)); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("the same client on a new connection: got %v, want ResourceExhausted", err)
	}
	if err := start(m.client(grpcAddr, batch)); status.Code(err) != codes.Unauthenticated {
		t.Errorf("another client: got %v, want its own bucket", err)
	}
	py := m.client(grpcAddr, python)
	for range 5 {
		if _, err := py.IntrospectIdentityToken(ctx, &pb.IntrospectIdentityTokenRequest{Token: "not.a.token"}); err != nil {
			t.Fatalf("introspection is not rate limited: %v", err)
		}
	}
	resp, err := m.httpClient("").Get("https://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if !strings.Contains(string(body), `keyfort_identity_calls_total{method="StartIdentitySession",outcome="rate_limited"} 2`) {
		t.Errorf("the refusals are not counted:\n%s", body)
	}

	// Without client certificates, the bucket is the caller's address.
	addrs, _, _ := hosttest.StartLogged(t, hosttest.ProviderHost(t), []string{"PATH=" + os.Getenv("PATH")}, servingPlain,
		"serve", "--config", m.config(limit), "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0")
	dial := func() pb.IdentityRuntimeServiceClient {
		cc, err := grpc.NewClient(addrs[1], grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cc.Close() })
		return pb.NewIdentityRuntimeServiceClient(cc)
	}
	for i := range 3 {
		if err := start(dial()); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("plaintext call %d within the burst: got %v", i+1, err)
		}
	}
	if err := start(dial()); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a fourth connection from the same address: got %v, want ResourceExhausted", err)
	}
	hc, err := grpc.NewClient(addrs[1], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	if _, err := healthpb.NewHealthClient(hc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("the health service, from a rate-limited address: %v", err)
	}
}

// servingPlain reads both addresses of a plaintext serve.
var servingPlain = regexp.MustCompile(`http=http://(127\.0\.0\.1:\d+) grpc=(127\.0\.0\.1:\d+)`)

// TestServeBehindASidecar: with --forwarded-client-cert, serve names its callers by the
// x-forwarded-client-cert header of the sidecar that terminated their mutual TLS: tokens are bound
// to the client it names (refresh and, with bind_access_to_client, access), another client named
// there is refused, a call without the header holds no identity, introspection (gRPC and HTTP)
// admits the clients of introspection_clients by it, and the audit records name the forwarded
// client. The flag refuses listeners off loopback and --tls-client-ca beside it.
func TestServeBehindASidecar(t *testing.T) {
	m := newMTLSRuntime(t)
	const gateway, batch, python = "spiffe://keyfort.test/ns/prod/sa/gateway", "spiffe://keyfort.test/ns/prod/sa/batch", "spiffe://keyfort.test/ns/prod/sa/python"
	cfg := m.config(fmt.Sprintf("bind_access_to_client: true, introspection_clients: [%q]", python))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--grpc-addr", "0.0.0.0:0", "--http-addr", "127.0.0.1:0"}, "--forwarded-client-cert needs --grpc-addr on loopback"},
		{[]string{"--grpc-addr", "127.0.0.1:0", "--http-addr", ":0"}, "--forwarded-client-cert needs --http-addr on loopback"},
		{[]string{"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--tls-cert", "c", "--tls-key", "k", "--tls-client-ca", m.clientCA.CertFile},
			"--forwarded-client-cert and --tls-client-ca name callers two ways"},
	} {
		r := run(t, nil, append([]string{"serve", "--config", cfg, "--forwarded-client-cert"}, tc.args...)...)
		if r.code == 0 || !strings.Contains(r.stdout+r.stderr, tc.want) {
			t.Errorf("%v: exit %d, want %q\n%s%s", tc.args, r.code, tc.want, r.stdout, r.stderr)
		}
	}
	addrs, log, _ := hosttest.StartLogged(t, hosttest.ProviderHost(t), []string{"PATH=" + os.Getenv("PATH")}, servingPlain,
		"serve", "--config", cfg, "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--forwarded-client-cert")
	httpAddr, grpcAddr := addrs[0], addrs[1]
	cc, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	rt := pb.NewIdentityRuntimeServiceClient(cc)
	// from is a call's context as the sidecar forwards it for the client uri ("": no header).
	from := func(uri string, kv ...string) context.Context {
		if uri != "" {
			kv = append(kv, "x-forwarded-client-cert", "By=spiffe://keyfort.test/ns/prod/sa/keyfort;Hash=ab12;URI="+uri)
		}
		return metadata.AppendToOutgoingContext(context.Background(), kv...)
	}
	started, err := rt.StartIdentitySession(from(gateway), &pb.StartIdentitySessionRequest{IdentityProvider: "google",
		ExternalToken: m.iss.Sign(t, "k1", m.iss.Claims("alice", "client-1"), nil)})
	if err != nil {
		t.Fatal(err)
	}
	access, refresh := started.GetTokens().GetAccessToken(), started.GetTokens().GetRefreshToken()
	list := func(uri string) error {
		_, err := rt.ListSubjectSessions(from(uri, "authorization", "Bearer "+access), &pb.ListSubjectSessionsRequest{Subject: "alice"})
		return err
	}
	if err := list(gateway); err != nil {
		t.Fatalf("the bound access token, from its client through the sidecar: %v", err)
	}
	for _, uri := range []string{batch, ""} {
		if err := list(uri); status.Code(err) != codes.Unauthenticated {
			t.Errorf("the bound access token, from %q: got %v, want Unauthenticated", uri, err)
		}
		if _, err := rt.RefreshIdentitySession(from(uri), &pb.RefreshIdentitySessionRequest{RefreshToken: refresh}); status.Code(err) != codes.Unauthenticated {
			t.Errorf("the bound refresh token, from %q: got %v, want Unauthenticated", uri, err)
		}
	}
	res, err := rt.IntrospectIdentityToken(from(python), &pb.IntrospectIdentityTokenRequest{Token: access})
	if err != nil || !res.GetActive() || res.GetClient() != gateway {
		t.Errorf("introspection by an introspection client through the sidecar: %v, %v", res, err)
	}
	if _, err := rt.IntrospectIdentityToken(from(gateway), &pb.IntrospectIdentityTokenRequest{Token: access}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("introspection by another client: got %v, want PermissionDenied", err)
	}
	for uri, want := range map[string]int{python: http.StatusOK, gateway: http.StatusForbidden, "": http.StatusUnauthorized} {
		req, err := http.NewRequest(http.MethodPost, "http://"+httpAddr+"/oauth2/introspect", strings.NewReader(url.Values{"token": {access}}.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if uri != "" {
			req.Header.Set("X-Forwarded-Client-Cert", "By=spiffe://keyfort.test/ns/prod/sa/keyfort;URI="+uri)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		_ = resp.Body.Close()
		if resp.StatusCode != want || (want == http.StatusOK && (body["active"] != true || body["cli"] != gateway)) {
			t.Errorf("HTTP introspection from %q: %d %v, want %d", uri, resp.StatusCode, body, want)
		}
	}
	next, err := rt.RefreshIdentitySession(from(gateway), &pb.RefreshIdentitySessionRequest{RefreshToken: refresh})
	if err != nil {
		t.Fatalf("the bound refresh token, from its client: %v", err)
	}
	access = next.GetTokens().GetAccessToken()
	if err := list(gateway); err != nil {
		t.Errorf("the refreshed access token, from its client: %v", err)
	}
	waitLog(t, log, "event=session.refresh outcome=client_mismatch")
	waitLog(t, log, "client_forwarded="+gateway)
	waitLog(t, log, "forwarded_client_cert=true")
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if !strings.Contains(string(metrics), `keyfort_guard_refused_total{reason="client_mismatch"} 2`) {
		t.Errorf("the guard's refusals of the bound token (another client, no client) are not counted:\n%s", metrics)
	}
}

// mtlsRuntime is a serve over mutual TLS (a server CA, a client CA) with an identity provider,
// whose clients are named by a SPIFFE ID in their certificate.
type mtlsRuntime struct {
	t                  *testing.T
	serverCA, clientCA *testpki.CA
	iss                *oidctest.Issuer
}

func newMTLSRuntime(t *testing.T) *mtlsRuntime {
	return &mtlsRuntime{t: t, serverCA: testpki.New(t), clientCA: testpki.New(t), iss: oidctest.New(t)}
}

// config is a configuration with the memory provider's signing key and the test identity provider
// (client id client-1), and session settings (a YAML flow map's members), then any more of identity (YAML lines indented by two).
func (m *mtlsRuntime) config(session string, identity ...string) string {
	return writeConfig(m.t, fmt.Sprintf(`
providers:
  dev:
    type: memory
    settings:
      signing_keys: { session-signing: { algorithm: ES256 } }
      secrets: { google-client-id: client-1 }
identity:
  secrets:
    session_signing: dev:session-signing
    oidc: { google: { client_id: dev:google-client-id, issuer: %s } }
  session: { %s }
%s`, m.iss.URL, session, strings.Join(identity, "")))
}

// serve starts serve on cfg with client certificates required, and returns its gRPC address and log.
func (m *mtlsRuntime) serve(cfg string) (string, *hosttest.Log) {
	_, grpcAddr, log := m.serveBoth(cfg)
	return grpcAddr, log
}

// serveBoth is serve, returning the HTTP address too.
func (m *mtlsRuntime) serveBoth(cfg string) (httpAddr, grpcAddr string, log *hosttest.Log) {
	certFile, keyFile := m.serverCA.Server(m.t)
	addrs, log, _ := hosttest.StartLogged(m.t, hosttest.ProviderHost(m.t), []string{"PATH=" + os.Getenv("PATH")}, servingTLS,
		"serve", "--config", cfg, "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile,
		"--tls-client-ca", m.clientCA.CertFile)
	return addrs[0], addrs[1], log
}

// httpClient is an HTTPS client of serve presenting a new certificate naming uri ("": none).
func (m *mtlsRuntime) httpClient(uri string) *http.Client {
	cfg := &tls.Config{RootCAs: m.serverCA.Pool()}
	if uri != "" {
		cf, kf := m.clientCA.ClientWith(m.t, []string{uri}, nil)
		c, err := tls.LoadX509KeyPair(cf, kf)
		if err != nil {
			m.t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
	m.t.Cleanup(hc.CloseIdleConnections)
	return hc
}

// client is a client of the runtime at addr with a new certificate (and key) naming uri, and opts.
func (m *mtlsRuntime) client(addr, uri string, opts ...grpc.DialOption) pb.IdentityRuntimeServiceClient {
	cf, kf := m.clientCA.ClientWith(m.t, []string{uri}, nil)
	c, err := tls.LoadX509KeyPair(cf, kf)
	if err != nil {
		m.t.Fatal(err)
	}
	opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: m.serverCA.Pool(), Certificates: []tls.Certificate{c}})))
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		m.t.Fatal(err)
	}
	m.t.Cleanup(func() { _ = cc.Close() })
	return pb.NewIdentityRuntimeServiceClient(cc)
}

// TestBareTokensBoundToTheCallerCertificate: over mutual TLS with serve's defaults (access tokens
// not bound), IssueIdentityToken with bind_to_caller binds the bare token to the identity of the
// calling client's certificate (token_type Bearer, as RFC 8705 has it): serve's guard takes it from
// that client, with any certificate of the same identity, and refuses it from another; the audit
// record names the binding.
func TestBareTokensBoundToTheCallerCertificate(t *testing.T) {
	const gateway, batch = "spiffe://keyfort.test/ns/prod/sa/gateway", "spiffe://keyfort.test/ns/prod/sa/batch"
	m := newMTLSRuntime(t)
	addr, log := m.serve(m.config("", `  policy:
    rules:
      - { subject: alice, action: "keyfort:issue_token", for_subject: "batch-*", effect: allow }
`))
	ctx := context.Background()
	started, err := m.client(addr, gateway).StartIdentitySession(ctx, &pb.StartIdentitySessionRequest{IdentityProvider: "google",
		ExternalToken: m.iss.Sign(t, "k1", m.iss.Claims("alice", "client-1"), nil)})
	if err != nil {
		t.Fatal(err)
	}
	as := func(tok string) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	}
	issued, err := m.client(addr, gateway).IssueIdentityToken(as(started.GetTokens().GetAccessToken()),
		&pb.IssueIdentityTokenRequest{Subject: "batch-7", BindToCaller: true})
	if err != nil {
		t.Fatal(err)
	}
	if issued.GetTokenType() != "Bearer" {
		t.Errorf("token_type %q, want Bearer", issued.GetTokenType())
	}
	policy := func(uri string) error {
		_, err := m.client(addr, uri).EvaluateIdentityPolicy(as(issued.GetAccessToken()), &pb.EvaluateIdentityPolicyRequest{Subject: "batch-7", Action: "read"})
		return err
	}
	if err := policy(gateway); err != nil {
		t.Errorf("the bound bare token from its client: %v", err)
	}
	if err := policy(batch); status.Code(err) != codes.Unauthenticated {
		t.Errorf("the bound bare token from another client: %v, want Unauthenticated", err)
	}
	waitLog(t, log, `event=token.issue outcome=ok`)
	if !strings.Contains(log.String(), `bound_to=`+gateway) {
		t.Errorf("the audit record does not name the binding:\n%s", log)
	}
}
