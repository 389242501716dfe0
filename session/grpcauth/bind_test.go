package grpcauth_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/keyfort/keyfort/internal/hosttest"
	"github.com/keyfort/keyfort/internal/metrictest"
	"github.com/keyfort/keyfort/internal/testpki"
	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/grpcauth"
	"github.com/keyfort/keyfort/session/sessiontest"
)

// TestBoundAccessTokens: over mutual TLS, an access token bound to its client
// (session.Config.BindAccessTokens) is served to that client — with any certificate of its
// identity, a rotated one included — and refused to another client of the same CA and to a caller
// without a certificate, on unary calls and streams, first calls and cache hits, with the tap
// handle and without; the refusal is logged as a warning naming both identities, and the session
// goes on for its client. A token bound to no client is anyone's who holds it.
func TestBoundAccessTokens(t *testing.T) {
	const gateway, batch = "spiffe://keyfort.test/ns/prod/sa/gateway", "spiffe://keyfort.test/ns/prod/sa/batch"
	ctx := context.Background()
	m, startFor := sessiontest.BoundManager(t)

	ca := testpki.New(t)
	serverCert, serverKey := ca.Server(t)
	pair, err := tls.LoadX509KeyPair(serverCert, serverKey)
	if err != nil {
		t.Fatal(err)
	}
	// Certificates are asked for, not required, so that a caller without one reaches the guard.
	creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: ca.Pool(),
		ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS13})
	dial := func(t *testing.T, addr, uri string) healthpb.HealthClient {
		t.Helper()
		cfg := &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS13}
		if uri != "" {
			certFile, keyFile := ca.ClientWith(t, []string{uri}, nil) // a new certificate on each dial
			cert, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cc.Close() })
		return healthpb.NewHealthClient(cc)
	}

	eachWiring(t, func(t *testing.T, w wiring) {
		cache, err := session.NewCache(session.CacheConfig{Authenticator: m})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cache.Close() })
		var log hosttest.Log
		reg := prometheus.NewRegistry()
		addr := listenGuarded(t, w, grpcauth.Config{Sessions: cache, Logger: slog.New(slog.NewTextHandler(&log, nil)), Registerer: reg},
			grpc.Creds(creds))

		unary := func(c healthpb.HealthClient, tok string) error {
			_, err := c.Check(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok), &healthpb.HealthCheckRequest{})
			return err
		}
		stream := func(c healthpb.HealthClient, tok string) error {
			s, err := c.Watch(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok), &healthpb.HealthCheckRequest{})
			if err == nil {
				_, err = s.Recv()
			}
			return err
		}
		bound, bearer := startFor(gateway), startFor("")
		gw, rotated, other, anonymous := dial(t, addr, gateway), dial(t, addr, gateway), dial(t, addr, batch), dial(t, addr, "")

		// Another client first (a miss: the interceptors), then after the session is cached (a hit:
		// the tap handle's path), and again after its own client's calls.
		for round := range 3 {
			for what, c := range map[string]healthpb.HealthClient{"another client": other, "no client certificate": anonymous} {
				if err := unary(c, bound); status.Code(err) != codes.Unauthenticated {
					t.Errorf("round %d: a bound token from %s: got %v, want Unauthenticated", round, what, err)
				}
				if err := stream(c, bound); status.Code(err) != codes.Unauthenticated {
					t.Errorf("round %d: a bound token from %s, on a stream: got %v, want Unauthenticated", round, what, err)
				}
			}
			for what, c := range map[string]healthpb.HealthClient{"its client": gw, "its client's rotated certificate": rotated} {
				if err := unary(c, bound); err != nil {
					t.Errorf("round %d: a bound token from %s: %v", round, what, err)
				}
				if err := stream(c, bound); err != nil {
					t.Errorf("round %d: a bound token from %s, on a stream: %v", round, what, err)
				}
			}
		}
		for what, c := range map[string]healthpb.HealthClient{"a client": other, "no client certificate": anonymous} {
			if err := unary(c, bearer); err != nil {
				t.Errorf("a token bound to no client, from %s: %v", what, err)
			}
		}
		// Refusals by reason: 12 of a bound token by the wrong caller above, and one of each other kind.
		if _, err := gw.Check(ctx, &healthpb.HealthCheckRequest{}); status.Code(err) != codes.Unauthenticated {
			t.Errorf("no credential: %v", err)
		}
		if err := unary(gw, bound[:len(bound)-4]+"AAAA"); status.Code(err) != codes.Unauthenticated {
			t.Errorf("a forged token: %v", err)
		}
		for reason, want := range map[string]float64{"client_mismatch": 12, "credential": 1, "unauthenticated": 1, "unavailable": 0} {
			if got := metrictest.Counter(t, reg, "keyfort_guard_refused_total", map[string]string{"reason": reason}); got != want {
				t.Errorf("keyfort_guard_refused_total{reason=%q} = %v, want %v", reason, got, want)
			}
		}
		out := log.String()
		if !strings.Contains(out, `level=WARN msg="keyfort: call refused"`) ||
			!strings.Contains(out, `bound to \"`+gateway+`\"; presented by \"`+batch+`\"`) ||
			!strings.Contains(out, `bound to \"`+gateway+`\"; presented without a client certificate`) {
			t.Errorf("the refusals are not logged as warnings naming both identities:\n%s", out)
		}
		if strings.Contains(out, bound) || strings.Contains(out, bound[strings.LastIndexByte(bound, '.')+1:]) {
			t.Error("the log carries the token")
		}
	})
}

// listenGuarded serves a health service guarded by cfg (its interceptors, with the tap handle in
// front when w.tapped) on a loopback port, with opts (TLS credentials, say), and returns its address.
func listenGuarded(t *testing.T, w wiring, cfg grpcauth.Config, opts ...grpc.ServerOption) string {
	t.Helper()
	var guard []grpc.ServerOption
	if w.tapped {
		guard = grpcauth.New(cfg).ServerOptions()
	} else {
		guard = []grpc.ServerOption{grpc.ChainUnaryInterceptor(grpcauth.UnaryServerInterceptor(cfg)),
			grpc.ChainStreamInterceptor(grpcauth.StreamServerInterceptor(cfg))}
	}
	srv := grpc.NewServer(append(opts, guard...)...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}
