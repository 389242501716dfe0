package main_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	pb "github.com/keyfort/keyfort/api/identity/v1"
	"github.com/keyfort/keyfort/internal/hosttest"
	kvpb "github.com/keyfort/keyfort/internal/kvexamplepb/v1"
	"github.com/keyfort/keyfort/internal/vaulttest"
	"github.com/keyfort/keyfort/session/oidc/oidctest"
)

// collector is an OTLP/gRPC trace collector on loopback: the real exporter sends it real OTLP.
type collector struct {
	collectorpb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []exported
}

// exported is a span with the service that sent it.
type exported struct {
	service string
	span    *tracepb.Span
}

func (c *collector) Export(_ context.Context, req *collectorpb.ExportTraceServiceRequest) (*collectorpb.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		service := attrOf(rs.GetResource().GetAttributes(), "service.name")
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.spans = append(c.spans, exported{service: service, span: s})
			}
		}
	}
	return &collectorpb.ExportTraceServiceResponse{}, nil
}

func attrOf(kvs []*commonpb.KeyValue, key string) string {
	for _, kv := range kvs {
		if kv.GetKey() == key {
			return kv.GetValue().GetStringValue()
		}
	}
	return ""
}

// startCollector serves a collector on loopback and returns it and its address.
func startCollector(t *testing.T) (*collector, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	srv := grpc.NewServer()
	collectorpb.RegisterTraceServiceServer(srv, c)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return c, ln.Addr().String()
}

// waitSpans waits until the collector holds a span of trace for each name in want, and returns the
// spans of that trace by name.
func (c *collector) waitSpans(t *testing.T, trace []byte, want ...string) map[string]exported {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := map[string]exported{}
		c.mu.Lock()
		for _, e := range c.spans {
			if string(e.span.GetTraceId()) == string(trace) {
				got[e.span.GetName()] = e
			}
		}
		c.mu.Unlock()
		missing := []string{}
		for _, name := range want {
			if _, ok := got[name]; !ok {
				missing = append(missing, name)
			}
		}
		if len(missing) == 0 {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("the collector never received %v of the trace; it has %d spans of it", missing, len(got))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestServeExportsTraces: serve, configured by the standard OTEL_* environment, exports over OTLP
// one trace per call that continues the caller's W3C trace context: the gRPC server span, the
// Manager's, the provider client's and, from the memory plugin's own process, the plugin's server
// span under the host's provider span. No token reaches any exported span.
func TestServeExportsTraces(t *testing.T) {
	col, addr := startCollector(t)
	iss := oidctest.New(t)
	cfg := runtimeConfig(t, iss, "", "")
	// No cache in front of the memory provider: every signing reaches the plugin process.
	env := []string{"PATH=" + os.Getenv("PATH"), "KEYFORT_PROVIDERS__DEV__CACHE_TTL=-1s", "OTEL_EXPORTER_OTLP_ENDPOINT=http://" + addr,
		"OTEL_EXPORTER_OTLP_INSECURE=true", "OTEL_BSP_SCHEDULE_DELAY=50", "OTEL_EXPORTER_OTLP_HEADERS=x-api-key=collector-key"}
	_, log, _ := startServe(t, env, "--config", cfg, "--grpc-addr", "127.0.0.1:0")
	if !strings.Contains(log.String(), "tracing=true") {
		t.Errorf("serve's start line does not say it traces:\n%s", log.String())
	}
	rt := runtimeClient(t, log.String())

	traceID, parentID := "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", "00-"+traceID+"-"+parentID+"-01")
	ext := iss.Sign(t, "k1", iss.Claims("alice", "client-123.apps.googleusercontent.com"), nil)
	started, err := rt.StartIdentitySession(ctx, &pb.StartIdentitySessionRequest{IdentityProvider: "google", ExternalToken: ext})
	if err != nil {
		t.Fatal(err)
	}
	tid, _ := hex.DecodeString(traceID)
	pid, _ := hex.DecodeString(parentID)
	const rpc = "keyfort.identity.v1.IdentityRuntimeService/StartIdentitySession"
	spans := col.waitSpans(t, tid, rpc, "keyfort.session.StartSession", "keyfort.provider.SigningKeys", "keyfort.plugin.SigningKeys")
	if got := spans[rpc].span.GetParentSpanId(); string(got) != string(pid) {
		t.Errorf("the server span's parent: %x, want the caller's %s", got, parentID)
	}
	if got := spans["keyfort.session.StartSession"].span.GetParentSpanId(); string(got) != string(spans[rpc].span.GetSpanId()) {
		t.Error("the Manager's span is not under the server span")
	}
	host, plug := spans["keyfort.provider.SigningKeys"], spans["keyfort.plugin.SigningKeys"]
	if host.service != "keyfort" || plug.service != "keyfort-plugin-memory" {
		t.Errorf("services: host %q, plugin %q; want keyfort and keyfort-plugin-memory", host.service, plug.service)
	}
	if string(plug.span.GetParentSpanId()) != string(host.span.GetSpanId()) {
		t.Error("the plugin's span (its own process) is not under the host's provider span")
	}
	toks := started.GetTokens()
	col.mu.Lock()
	defer col.mu.Unlock()
	for _, e := range col.spans {
		text := e.span.String()
		for _, secret := range []string{ext, toks.GetAccessToken(), toks.GetRefreshToken(), "alice", "collector-key"} {
			if strings.Contains(text, secret) {
				t.Errorf("span %q of %s carries a secret value", e.span.GetName(), e.service)
			}
		}
	}
}

// TestServeRefusesTracingItCannotDo: an exporter or protocol serve does not support is a start-up
// error naming the variable, not a silent lack of traces.
func TestServeRefusesTracingItCannotDo(t *testing.T) {
	for _, env := range [][]string{
		{"OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317", "OTEL_TRACES_EXPORTER=zipkin"},
		{"OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL=http/json"},
	} {
		r := run(t, env, "serve", "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0")
		name, _, _ := strings.Cut(env[1], "=")
		if r.code != 2 || !strings.Contains(r.stderr, name) {
			t.Errorf("%v: exit %d, want 2 with a message naming %s\n%s", env, r.code, name, r.stderr)
		}
	}
}

// TestServeTracesHTTPIntrospection: RFC 7662 introspection over HTTP, the way services in other
// languages ask, joins the caller's trace (W3C traceparent header); no token reaches the span.
func TestServeTracesHTTPIntrospection(t *testing.T) {
	col, addr := startCollector(t)
	m := newMTLSRuntime(t)
	const python = "spiffe://keyfort.test/ns/prod/sa/python"
	cfg := m.config(fmt.Sprintf("introspection_clients: [%q]", python))
	addrs, _, _ := hosttest.StartLogged(t, hosttest.ProviderHost(t), []string{"PATH=" + os.Getenv("PATH"),
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + addr, "OTEL_EXPORTER_OTLP_INSECURE=true", "OTEL_BSP_SCHEDULE_DELAY=50"}, servingPlain,
		"serve", "--config", cfg, "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--forwarded-client-cert")
	cc, err := grpc.NewClient(addrs[1], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	started, err := pb.NewIdentityRuntimeServiceClient(cc).StartIdentitySession(context.Background(), &pb.StartIdentitySessionRequest{
		IdentityProvider: "google", ExternalToken: m.iss.Sign(t, "k1", m.iss.Claims("alice", "client-1"), nil)})
	if err != nil {
		t.Fatal(err)
	}
	access := started.GetTokens().GetAccessToken()
	traceID, parentID := "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	req, err := http.NewRequest(http.MethodPost, "http://"+addrs[0]+"/oauth2/introspect", strings.NewReader(url.Values{"token": {access}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Forwarded-Client-Cert", "By=spiffe://keyfort.test/ns/prod/sa/keyfort;URI="+python)
	req.Header.Set("Traceparent", "00-"+traceID+"-"+parentID+"-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("introspection: %d", resp.StatusCode)
	}
	tid, _ := hex.DecodeString(traceID)
	pid, _ := hex.DecodeString(parentID)
	spans := col.waitSpans(t, tid, "POST /oauth2/introspect")
	if got := spans["POST /oauth2/introspect"].span.GetParentSpanId(); string(got) != string(pid) {
		t.Errorf("the introspection span's parent: %x, want the caller's %s", got, parentID)
	}
	if text := spans["POST /oauth2/introspect"].span.String(); strings.Contains(text, access) {
		t.Error("the introspection span carries the token")
	}
}

// TestServeReportsAnUnreachableCollector: when spans cannot be exported, serve says so in its own
// structured log, as a warning naming the error, rather than in unstructured lines or not at all.
func TestServeReportsAnUnreachableCollector(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := ln.Addr().String()
	_ = ln.Close() // nothing listens there any more
	// Over HTTP, whose errors quote the endpoint, with credentials in its user part.
	_, log, _ := startServe(t, []string{"PATH=" + os.Getenv("PATH"), "OTEL_EXPORTER_OTLP_ENDPOINT=http://tenant:s3cret-key@" + gone,
		"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf", "OTEL_BSP_SCHEDULE_DELAY=50", "OTEL_EXPORTER_OTLP_TIMEOUT=500"}, "--grpc-addr", "127.0.0.1:0")
	rt := runtimeClient(t, log.String())
	_, _ = rt.IssueIdentityToken(context.Background(), &pb.IssueIdentityTokenRequest{Subject: "batch"}) // a traced call
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(log.String(), "keyfort: tracing error") {
		if time.Now().After(deadline) {
			t.Fatalf("no warning about the unreachable collector:\n%s", log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, line := range strings.Split(log.String(), "\n") {
		if strings.Contains(line, "keyfort: tracing error") && !strings.Contains(line, "level=WARN") {
			t.Errorf("not a structured warning: %s", line)
		}
	}
	if strings.Contains(log.String(), "s3cret-key") {
		t.Errorf("the endpoint's credentials reached the log:\n%s", log)
	}
}

// TestGuardedExampleExportsTraces: the guarded example's binary, traced by the standard OTEL_*
// environment, exports one trace per call under the caller's: its server span, the session's
// creation and its credentials' first fetch with the provider's call, and the memory plugin's span
// from its own process.
func TestGuardedExampleExportsTraces(t *testing.T) {
	col, addr := startCollector(t)
	iss := oidctest.New(t)
	const aud = "client-123.apps.googleusercontent.com"
	bin := hosttest.Build(t, "github.com/keyfort/keyfort/examples/guarded-kv")
	m, _, _ := hosttest.StartLogged(t, bin, []string{"PATH=" + os.Getenv("PATH"), "GOOGLE_CLIENT_ID=" + aud,
		"KEYFORT_IDENTITY__SECRETS__OIDC__GOOGLE__ISSUER=" + iss.URL, "KEYFORT_PROVIDER_HOST=" + hosttest.ProviderHost(t),
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + addr, "OTEL_EXPORTER_OTLP_INSECURE=true", "OTEL_BSP_SCHEDULE_DELAY=50"},
		regexp.MustCompile(`guarded-kv: serving addr=(127\.0\.0\.1:\d+).* tracing=true`),
		"--config", "../../examples/guarded-kv/config/auth-enabled.yaml", "--addr", "127.0.0.1:0")
	cc, err := grpc.NewClient(m[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	traceID, parentID := "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"
	tok := iss.Sign(t, "k1", iss.Claims("alice", aud), nil)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", "00-"+traceID+"-"+parentID+"-01", "authorization", "Bearer "+tok)
	if _, err := kvpb.NewKeyValueServiceClient(cc).Put(ctx, &kvpb.PutRequest{Key: "a", Value: "1"}); err != nil {
		t.Fatal(err)
	}
	tid, _ := hex.DecodeString(traceID)
	spans := col.waitSpans(t, tid, "keyfort.kvexample.v1.KeyValueService/Put", "keyfort.session.create",
		"keyfort.session.credentials", "keyfort.provider.Credentials", "keyfort.plugin.Credentials")
	pid, _ := hex.DecodeString(parentID)
	if got := spans["keyfort.kvexample.v1.KeyValueService/Put"].span.GetParentSpanId(); string(got) != string(pid) {
		t.Errorf("the service's span is not under the caller's: %x", got)
	}
	if plug := spans["keyfort.plugin.Credentials"]; plug.service != "keyfort-plugin-memory" {
		t.Errorf("the plugin's span came from %q", plug.service)
	}
	col.mu.Lock()
	defer col.mu.Unlock()
	for _, e := range col.spans {
		if strings.Contains(e.span.String(), tok) {
			t.Errorf("span %q carries the token", e.span.GetName())
		}
	}
}

// startHTTPCollector serves a collector on loopback over OTLP/HTTP (protobuf bodies at /v1/traces).
func startHTTPCollector(t *testing.T) (*collector, string) {
	t.Helper()
	c := &collector{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		req := &collectorpb.ExportTraceServiceRequest{}
		if err != nil || r.URL.Path != "/v1/traces" || proto.Unmarshal(body, req) != nil {
			http.Error(w, "bad export", http.StatusBadRequest)
			return
		}
		_, _ = c.Export(r.Context(), req)
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&collectorpb.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	}))
	t.Cleanup(srv.Close)
	return c, strings.TrimPrefix(srv.URL, "http://")
}

// TestServeExportsTracesOverHTTP: with OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf, serve exports
// over OTLP/HTTP, for collectors that take only that.
func TestServeExportsTracesOverHTTP(t *testing.T) {
	col, addr := startHTTPCollector(t)
	_, log, _ := startServe(t, []string{"PATH=" + os.Getenv("PATH"), "OTEL_EXPORTER_OTLP_ENDPOINT=http://" + addr,
		"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf", "OTEL_BSP_SCHEDULE_DELAY=50"}, "--grpc-addr", "127.0.0.1:0")
	traceID := "6e0c63257de34c92bf9efcd03927272e"
	ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	_, _ = runtimeClient(t, log.String()).IssueIdentityToken(ctx, &pb.IssueIdentityTokenRequest{Subject: "batch"})
	tid, _ := hex.DecodeString(traceID)
	col.waitSpans(t, tid, "keyfort.identity.v1.IdentityRuntimeService/IssueIdentityToken")
}

// TestPluginExportsBackendSpans: a built-in plugin traces its backend's calls too (the process's
// global TracerProvider, set from OTEL_*): a session started through serve with a Vault Transit
// signing key shows, from the vault plugin's process, the request to transit/sign under the
// plugin's span of the signature, with no token in any span.
func TestPluginExportsBackendSpans(t *testing.T) {
	v := vaulttest.Start(t)
	v.Write(t, "sys/mounts/transit", map[string]any{"type": "transit"})
	v.Write(t, "transit/keys/traced", map[string]any{"type": "ed25519"})
	vaultToken := v.Write(t, "auth/token/create", map[string]any{"ttl": "1h"}).Auth.ClientToken
	col, addr := startCollector(t)
	iss := oidctest.New(t)
	cfg := writeConfig(t, `
providers:
  vault:
    settings: { address: "`+v.Addr+`", auth: { method: token, token: "`+vaultToken+`" } }
identity:
  secrets:
    session_signing: vault:transit:transit/traced
    oidc:
      google:
        client_id: env:KFSERVE_CLIENT_ID
        issuer: `+iss.URL+`
  session:
    issuer: https://keyfort.test
`)
	env := []string{"PATH=" + os.Getenv("PATH"), "KFSERVE_CLIENT_ID=client-1", "OTEL_EXPORTER_OTLP_ENDPOINT=http://" + addr,
		"OTEL_EXPORTER_OTLP_INSECURE=true", "OTEL_BSP_SCHEDULE_DELAY=50"}
	_, log, _ := startServe(t, env, "--config", cfg, "--grpc-addr", "127.0.0.1:0")
	rt := runtimeClient(t, log.String())
	traceID := "6c2a4e8f10b3d5f7a9c1e3f5b7d9f1a3"
	ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", "00-"+traceID+"-1a2b3c4d5e6f7a8b-01")
	started, err := rt.StartIdentitySession(ctx, &pb.StartIdentitySessionRequest{IdentityProvider: "google",
		ExternalToken: iss.Sign(t, "k1", iss.Claims("alice", "client-1"), nil)})
	if err != nil {
		t.Fatal(err)
	}
	tid, _ := hex.DecodeString(traceID)
	spans := col.waitSpans(t, tid, "keyfort.plugin.Sign", "HTTP PUT")
	sign, req := spans["keyfort.plugin.Sign"], spans["HTTP PUT"]
	if req.service != "keyfort-plugin-vault" || string(req.span.GetParentSpanId()) != string(sign.span.GetSpanId()) ||
		!strings.HasSuffix(attrOf(req.span.GetAttributes(), "url.full"), "/v1/transit/sign/traced") {
		t.Errorf("the request to Vault: service %q, parent %x (the plugin's Sign: %x), url %q", req.service,
			req.span.GetParentSpanId(), sign.span.GetSpanId(), attrOf(req.span.GetAttributes(), "url.full"))
	}
	col.mu.Lock()
	defer col.mu.Unlock()
	for _, e := range col.spans {
		for _, secret := range []string{vaultToken, started.GetTokens().GetAccessToken(), started.GetTokens().GetRefreshToken()} {
			if strings.Contains(e.span.String(), secret) {
				t.Fatalf("a secret in the span %q of %s", e.span.GetName(), e.service)
			}
		}
	}
}
