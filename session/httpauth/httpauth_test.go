package httpauth_test

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyfort/keyfort/internal/hosttest"
	"github.com/keyfort/keyfort/internal/metrictest"
	"github.com/keyfort/keyfort/internal/testpki"
	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/httpauth"
	"github.com/keyfort/keyfort/session/sessiontest"
)

const gateway, batch = "spiffe://keyfort.test/ns/prod/sa/gateway", "spiffe://keyfort.test/ns/prod/sa/batch"

// fixture is a Manager binding access tokens to their client, a cache over it, and a function
// starting a session of alice for a client ("": none) that returns its access token.
type fixture struct {
	cache    *session.Cache
	startFor func(client string) string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	m, startFor := sessiontest.BoundManager(t)
	cache, err := session.NewCache(session.CacheConfig{Authenticator: m, Store: m.Store()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cache.Close() })
	return &fixture{cache: cache, startFor: startFor}
}

// whoami answers the subject of the request's session.
var whoami = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	s, ok := session.FromContext(r.Context())
	if !ok {
		_, _ = io.WriteString(w, "no session")
		return
	}
	_, _ = io.WriteString(w, s.Principal.Subject)
})

func get(t *testing.T, c *http.Client, url string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body))
}

// TestCredentials: the credential rules grpcauth applies, over HTTP: a bearer token (any case of
// the scheme) or a bare one in X-Prism-Token puts the session in the handler's context; none, two,
// another scheme, an oversized or a forged one is a 401 with a generic body, counted; exempt paths
// and the disabled mode pass through.
func TestCredentials(t *testing.T) {
	f := newFixture(t)
	tok := f.startFor("")
	reg := prometheus.NewRegistry()
	srv := httptest.NewServer(httpauth.New(httpauth.Config{Sessions: f.cache, Exempt: []string{"/healthz"}, Registerer: reg})(whoami))
	defer srv.Close()
	for name, tc := range map[string]struct {
		header []string
		code   int
		body   string
	}{
		"bearer":            {[]string{"Authorization", "Bearer " + tok}, 200, "alice"},
		"bearer lower case": {[]string{"authorization", "bearer " + tok}, 200, "alice"},
		"x-prism-token":     {[]string{"X-Prism-Token", tok}, 200, "alice"},
		"none":              {nil, 401, "unauthenticated"},
		"basic auth":        {[]string{"Authorization", "Basic dXNlcjpwYXNz"}, 401, "unauthenticated"},
		"two credentials":   {[]string{"Authorization", "Bearer " + tok, "X-Prism-Token", tok}, 401, "unauthenticated"},
		"oversized":         {[]string{"X-Prism-Token", strings.Repeat("a", httpauth.DefaultMaxCredentialSize+1)}, 401, "unauthenticated"},
		"forged":            {[]string{"X-Prism-Token", tok[:len(tok)-4] + "AAAA"}, 401, "unauthenticated"},
	} {
		if code, body := get(t, srv.Client(), srv.URL+"/orders", tc.header...); code != tc.code || body != tc.body {
			t.Errorf("%s: %d %q, want %d %q", name, code, body, tc.code, tc.body)
		}
	}
	if got := metrictest.Counter(t, reg, "keyfort_guard_refused_total", map[string]string{"reason": "credential"}); got != 4 {
		t.Errorf("credential refusals counted: %v, want 4", got)
	}
	if got := metrictest.Counter(t, reg, "keyfort_guard_refused_total", map[string]string{"reason": "unauthenticated"}); got != 1 {
		t.Errorf("token refusals counted: %v, want 1", got)
	}
	if code, body := get(t, srv.Client(), srv.URL+"/healthz"); code != 200 || body != "no session" {
		t.Errorf("an exempt path: %d %q", code, body)
	}
	off := httptest.NewServer(httpauth.New(httpauth.Config{Disabled: true})(whoami))
	defer off.Close()
	if code, body := get(t, off.Client(), off.URL+"/orders"); code != 200 || body != "no session" {
		t.Errorf("disabled: %d %q", code, body)
	}
}

// TestRequestEndsWithItsSession: a long response (a stream of events) stops when its session ends.
func TestRequestEndsWithItsSession(t *testing.T) {
	f := newFixture(t)
	tok := f.startFor("")
	ended := make(chan error, 1)
	started := make(chan struct{})
	srv := httptest.NewServer(httpauth.New(httpauth.Config{Sessions: f.cache})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done()
		ended <- r.Context().Err()
	})))
	defer srv.Close()
	go func() { _, _ = get(t, srv.Client(), srv.URL+"/events", "Authorization", "Bearer "+tok) }()
	<-started
	if err := f.cache.End(context.Background(), tok, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ended:
		if err == nil {
			t.Error("the request's context ended without an error")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the request went on after its session ended")
	}
}

// TestBoundTokensOverHTTPS: an access token bound to its client is served to a caller presenting a
// certificate of that client, and refused (401, a warning naming both identities, counted
// client_mismatch) to another or to none; behind a sidecar, ForwardedClientCert names the caller.
func TestBoundTokensOverHTTPS(t *testing.T) {
	f := newFixture(t)
	bound := f.startFor(gateway)
	ca := testpki.New(t)
	certFile, keyFile := ca.Server(t)
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	var log hosttest.Log
	reg := prometheus.NewRegistry()
	srv := httptest.NewUnstartedServer(httpauth.New(httpauth.Config{Sessions: f.cache, Registerer: reg,
		Logger: slog.New(slog.NewTextHandler(&log, nil))})(whoami))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: ca.Pool(), ClientAuth: tls.VerifyClientCertIfGiven}
	srv.StartTLS()
	defer srv.Close()
	client := func(uri string) *http.Client {
		cfg := &tls.Config{RootCAs: ca.Pool()}
		if uri != "" {
			cf, kf := ca.ClientWith(t, []string{uri}, nil)
			c, err := tls.LoadX509KeyPair(cf, kf)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Certificates = []tls.Certificate{c}
		}
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
		t.Cleanup(c.CloseIdleConnections)
		return c
	}
	gw := client(gateway)
	for range 2 { // the second on the same connection: the remembered certificate
		if code, body := get(t, gw, srv.URL+"/orders", "Authorization", "Bearer "+bound); code != 200 || body != "alice" {
			t.Errorf("the bound token from its client: %d %q", code, body)
		}
	}
	for what, c := range map[string]*http.Client{"another client": client(batch), "no certificate": client("")} {
		if code, _ := get(t, c, srv.URL+"/orders", "Authorization", "Bearer "+bound); code != 401 {
			t.Errorf("the bound token from %s: %d, want 401", what, code)
		}
	}
	if got := metrictest.Counter(t, reg, "keyfort_guard_refused_total", map[string]string{"reason": "client_mismatch"}); got != 2 {
		t.Errorf("client_mismatch refusals counted: %v, want 2", got)
	}
	if out := log.String(); !strings.Contains(out, `level=WARN msg="keyfort: request refused"`) ||
		!strings.Contains(out, `bound to \"`+gateway+`\"; presented by \"`+batch+`\"`) || strings.Contains(out, bound) {
		t.Errorf("the refusal is not a warning naming both identities, or the log carries the token:\n%s", out)
	}

	proxied := httptest.NewServer(httpauth.New(httpauth.Config{Sessions: f.cache, ClientIdentity: httpauth.ForwardedClientCert})(whoami))
	defer proxied.Close()
	for xfcc, want := range map[string]int{"By=spiffe://keyfort.test/ns/prod/sa/kv;URI=" + gateway: 200, "URI=" + batch: 401, "": 401} {
		header := []string{"Authorization", "Bearer " + bound}
		if xfcc != "" {
			header = append(header, "X-Forwarded-Client-Cert", xfcc)
		}
		if code, _ := get(t, proxied.Client(), proxied.URL+"/orders", header...); code != want {
			t.Errorf("behind a sidecar, x-forwarded-client-cert %q: %d, want %d", xfcc, code, want)
		}
	}
}
