package plugin_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/keyfort/keyfort/internal/hosttest"
	"github.com/keyfort/keyfort/internal/spantest"
	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/provider/plugin"
	"github.com/keyfort/keyfort/providers/memory"
)

// seeing wraps the memory provider and keeps the span context each SigningKeys call saw in the plugin.
type seeing struct {
	provider.IdentitySecretMaterialProvider
	mu   sync.Mutex
	seen []trace.SpanContext
}

func (s *seeing) SigningKeys(ctx context.Context, name string) (provider.KeySet, error) {
	s.mu.Lock()
	s.seen = append(s.seen, trace.SpanContextFromContext(ctx))
	s.mu.Unlock()
	return s.IdentitySecretMaterialProvider.SigningKeys(ctx, name)
}

func (s *seeing) last() trace.SpanContext {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[len(s.seen)-1]
}

func serveSeeing(t *testing.T, tp trace.TracerProvider) (*seeing, *plugin.Process) {
	t.Helper()
	s := &seeing{}
	p, err := plugin.ServeInProcess(context.Background(), plugin.InProcessConfig{
		Name:     "mem",
		Settings: provider.NewSettings("mem", []byte(`{"signing_keys":{"signing":{"algorithm":"EdDSA"}},"secrets":{"s":"9f1c-secret-value"}}`)),
		Factory: func(ctx context.Context, set provider.Settings) (provider.IdentitySecretMaterialProvider, error) {
			m, err := memory.Factory(ctx, set)
			s.IdentitySecretMaterialProvider = m
			return s, err
		},
		TracerProvider: tp,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return s, p
}

// TestTraceCrossesTheBoundary: the host's provider span is the parent of the plugin's server span,
// whose context the provider's method receives; a failure marks the plugin's span with the gRPC code,
// and no secret value reaches a span on either side.
func TestTraceCrossesTheBoundary(t *testing.T) {
	rec := spantest.New(t)
	s, p := serveSeeing(t, rec)
	c, err := provider.NewClient(p, provider.ClientConfig{Name: "mem", TracerProvider: rec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ctx, root := rec.Tracer("test").Start(context.Background(), "request")
	if _, err := c.SigningKeys(ctx, "signing"); err != nil {
		t.Fatal(err)
	}
	sec, err := c.Secret(ctx, "s")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Secret(ctx, "missing"); !errors.Is(err, provider.ErrNotFound) {
		t.Fatalf("got %v, want ErrNotFound", err)
	}
	root.End()

	host := rec.Named("keyfort.provider.SigningKeys")
	plug := rec.Named("keyfort.plugin.SigningKeys")
	if len(host) != 1 || len(plug) != 1 {
		t.Fatalf("spans: %d host, %d plugin; want one of each", len(host), len(plug))
	}
	if plug[0].Parent().SpanID() != host[0].SpanContext().SpanID() || !plug[0].Parent().IsRemote() {
		t.Errorf("plugin span's parent: %v (remote %v), want the host's span %v", plug[0].Parent().SpanID(),
			plug[0].Parent().IsRemote(), host[0].SpanContext().SpanID())
	}
	if plug[0].SpanContext().TraceID() != root.SpanContext().TraceID() || plug[0].SpanKind() != trace.SpanKindServer {
		t.Error("the plugin's span is not a server span of the caller's trace")
	}
	if got := s.last(); got.SpanID() != plug[0].SpanContext().SpanID() {
		t.Errorf("the provider saw span %v, want the plugin's server span %v", got.SpanID(), plug[0].SpanContext().SpanID())
	}
	failed := rec.Named("keyfort.plugin.Secret")
	if len(failed) != 2 || failed[1].Status().Code != codes.Error || spantest.Attr(failed[1], "rpc.grpc.status_code") != "NotFound" {
		t.Errorf("the failed call's plugin span: %d spans, want the second with an error status and code NotFound", len(failed))
	}
	rec.NoSecret(t, string(sec.Value.Reveal()))
}

// TestTraceReachesAnUntracedPlugin: a plugin that records no spans itself still hands the host's span
// context to its provider, so spans the provider makes join the host's trace.
func TestTraceReachesAnUntracedPlugin(t *testing.T) {
	rec := spantest.New(t)
	s, p := serveSeeing(t, nil)
	ctx, root := rec.Tracer("test").Start(context.Background(), "request")
	if _, err := p.SigningKeys(ctx, "signing"); err != nil {
		t.Fatal(err)
	}
	root.End()
	got := s.last()
	if !got.IsRemote() || got.TraceID() != root.SpanContext().TraceID() || got.SpanID() != root.SpanContext().SpanID() {
		t.Errorf("the provider saw %v, want the caller's span %v as a remote parent", got, root.SpanContext())
	}
	if n := len(rec.Ended()); n != 1 {
		t.Errorf("spans: %d, want only the caller's", n)
	}
	if _, err := p.SigningKeys(context.Background(), "signing"); err != nil {
		t.Fatal(err)
	}
	if s.last().IsValid() {
		t.Error("a call outside any trace reached the provider with a span context")
	}
}

// TestRestartIsOnTheCallersSpan: a call that finds its plugin process killed, and waits for the
// fresh one, says so on its span: keyfort.plugin.started (with the new pid), after a
// keyfort.plugin.connection_failed when the broken connection was seen first.
func TestRestartIsOnTheCallersSpan(t *testing.T) {
	rec := spantest.New(t)
	p := launchMemory(t, plugin.Config{})
	if _, err := p.SigningKeys(context.Background(), "signing"); err != nil {
		t.Fatal(err)
	}
	pid := p.Pid()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ctx, span := rec.Tracer("test").Start(context.Background(), "request")
	if _, err := p.SigningKeys(ctx, "signing"); err != nil {
		t.Fatalf("the call after the crash: %v", err)
	}
	span.End()
	var started, failed bool
	for _, ev := range rec.Named("request")[0].Events() {
		switch ev.Name {
		case "keyfort.plugin.started":
			for _, kv := range ev.Attributes {
				if kv.Key == "keyfort.plugin.pid" && int(kv.Value.AsInt64()) == p.Pid() && p.Pid() != pid {
					started = true
				}
			}
		case "keyfort.plugin.connection_failed":
			failed = true
		}
	}
	if !started {
		t.Errorf("no keyfort.plugin.started event with the new pid on the caller's span (connection_failed: %v)", failed)
	}
}

// TestFailedRestartIsOnTheCallersSpan: a call that finds its plugin process dead and cannot start a
// new one (the binary is gone) says so on its span: keyfort.plugin.start_failed with the error kind.
func TestFailedRestartIsOnTheCallersSpan(t *testing.T) {
	rec := spantest.New(t)
	bin := filepath.Join(t.TempDir(), "provider-host")
	copyFile(t, hosttest.ProviderHost(t), bin)
	p := launchMemory(t, plugin.Config{Path: bin})
	if _, err := p.Secret(context.Background(), "s"); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(bin); err != nil {
		t.Fatal(err)
	}
	_ = syscall.Kill(p.Pid(), syscall.SIGKILL)
	ctx, span := rec.Tracer("test").Start(context.Background(), "request")
	if _, err := p.Secret(ctx, "s"); err == nil {
		t.Fatal("a call succeeded with the plugin binary gone")
	}
	span.End()
	kind := ""
	for _, ev := range rec.Named("request")[0].Events() {
		if ev.Name == "keyfort.plugin.start_failed" {
			kind = ev.Attributes[0].Value.AsString()
		}
	}
	if kind == "" || kind == "ok" {
		t.Errorf("no keyfort.plugin.start_failed event with an error kind on the caller's span (%q)", kind)
	}
}
