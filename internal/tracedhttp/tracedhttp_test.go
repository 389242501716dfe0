package tracedhttp_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.uber.org/goleak"

	"github.com/keyfort/keyfort/internal/spantest"
	"github.com/keyfort/keyfort/internal/tracedhttp"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestTracedOnlyWithinATrace: a request made in a traced call is a client span under the call's
// span, made with that span's provider (no global one is set); a request outside any trace makes
// no span at all.
func TestTracedOnlyWithinATrace(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }))
	defer srv.Close()
	tr := srv.Client().Transport.(*http.Transport)
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tracedhttp.Transport(tr)}
	rec := spantest.New(t)
	get := func(ctx context.Context) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/v1/path", nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
	}
	get(context.Background())
	if n := len(rec.Ended()); n != 0 {
		t.Fatalf("an untraced request made %d spans", n)
	}
	ctx, call := rec.Tracer("test").Start(context.Background(), "call")
	get(ctx)
	call.End()
	spans := rec.Children(call)
	if len(spans) != 1 || spans[0].Name() != "HTTP GET" || spantest.Attr(spans[0], "url.full") != srv.URL+"/v1/path" {
		t.Errorf("the traced request's spans: %d", len(spans))
	}
}
