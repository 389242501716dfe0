package provider_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"

	"github.com/keyfort/keyfort/provider"
)

func TestErrorIsAndUnwrap(t *testing.T) {
	cause := fs.ErrNotExist
	err := provider.NewError(provider.ErrNotFound, "kv/app", cause)
	if !errors.Is(err, provider.ErrNotFound) {
		t.Error("errors.Is(err, ErrNotFound) is false")
	}
	if errors.Is(err, provider.ErrUnavailable) {
		t.Error("errors.Is(err, ErrUnavailable) is true")
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Error("the backend's error is not reachable through Unwrap")
	}
	wrapped := fmt.Errorf("outer: %w", err)
	if got := provider.KindOf(wrapped); got != provider.ErrNotFound {
		t.Errorf("KindOf: got %v, want ErrNotFound", got)
	}
	if got := provider.NewError(errors.New("not a kind"), "x", nil).Kind; got != provider.ErrInternal {
		t.Errorf("unknown kind: got %v, want ErrInternal", got)
	}
}

func TestKindOf(t *testing.T) {
	tests := []struct {
		err  error
		want error
	}{
		{nil, nil},
		{context.DeadlineExceeded, provider.ErrUnavailable},
		{fmt.Errorf("x: %w", context.Canceled), provider.ErrUnavailable},
		{errors.New("boom"), provider.ErrInternal},
		{provider.ErrClosed, provider.ErrClosed},
	}
	for _, tc := range tests {
		if got := provider.KindOf(tc.err); got != tc.want {
			t.Errorf("KindOf(%v): got %v, want %v", tc.err, got, tc.want)
		}
	}
	for _, k := range provider.Kinds {
		if got := provider.KindFromName(provider.KindName(k)); got != k {
			t.Errorf("KindFromName(KindName(%v)): got %v", k, got)
		}
	}
}

func TestErrorMessageNamesProviderOnce(t *testing.T) {
	drv := newFaulty(t)
	c := newClient(t, drv, provider.ClientConfig{Name: "vault-eu"})
	_, err := c.Secret(context.Background(), "kv/missing")
	if !errors.Is(err, provider.ErrNotFound) {
		t.Fatalf("got %v, want ErrNotFound", err)
	}
	msg := err.Error()
	if n := strings.Count(msg, `"vault-eu"`); n != 1 {
		t.Errorf("provider name appears %d times in %q, want once", n, msg)
	}
	for _, want := range []string{"Secret", "kv/missing", "not found"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
}

func TestStaticLeases(t *testing.T) {
	if l, err := provider.RenewStatic(provider.Lease{}, false); err != nil || !l.IsZero() {
		t.Errorf("zero lease: got %v, %v", l, err)
	}
	if _, err := provider.RenewStatic(provider.Lease{ID: "x"}, false); !errors.Is(err, provider.ErrNotFound) {
		t.Errorf("a lease from nowhere: got %v, want ErrNotFound", err)
	}
	if _, err := provider.RenewStatic(provider.Lease{}, true); !errors.Is(err, provider.ErrClosed) {
		t.Errorf("closed: got %v", err)
	}
	if err := provider.RevokeStatic(provider.Lease{ID: "x"}, false); err != nil {
		t.Errorf("revoke: %v", err)
	}
	if err := provider.RevokeStatic(provider.Lease{}, true); !errors.Is(err, provider.ErrClosed) {
		t.Errorf("revoke when closed: got %v", err)
	}
}
