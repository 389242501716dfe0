package capfetch_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keyfort/keyfort/internal/capfetch"
)

func TestGet(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/doc":
			_, _ = w.Write([]byte(`{"ok":true}`))
		case "/big":
			_, _ = w.Write([]byte(strings.Repeat("x", 2048)))
		case "/elsewhere":
			http.Redirect(w, r, "http://169.254.169.254/latest/meta-data", http.StatusFound)
		}
	}))
	defer srv.Close()
	c := capfetch.Client(5 * time.Second)
	defer c.CloseIdleConnections()
	ctx := context.Background()
	if body, err := capfetch.Get(ctx, c, srv.URL+"/doc", "application/json", 1024); err != nil || string(body) != `{"ok":true}` {
		t.Errorf("a document: %q, %v", body, err)
	}
	if _, err := capfetch.Get(ctx, c, srv.URL+"/big", "application/json", 1024); err == nil || !strings.Contains(err.Error(), "larger than 1024") {
		t.Errorf("above the cap: %v", err)
	}
	if _, err := capfetch.Get(ctx, c, srv.URL+"/elsewhere", "application/json", 1024); err == nil || !strings.Contains(err.Error(), "HTTP 302") {
		t.Errorf("a redirect must not be followed: %v", err)
	}
	for u, want := range map[string]bool{"https://idp.example/jwks": true, "http://127.0.0.1:8080/x": true,
		"http://localhost:1/x": true, "http://idp.example/jwks": false, "http://127.0.0.1.evil/x": false} {
		if capfetch.Allowed(u) != want {
			t.Errorf("Allowed(%q) = %v, want %v", u, !want, want)
		}
	}
}
