package redact_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/keyfort/keyfort/internal/redact"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestURL(t *testing.T) {
	for in, want := range map[string]string{
		"redis://:s3cret@r:6379/0":                            "redis://:xxxxx@r:6379/0",
		"postgres://keyfort:s3cret@db:5432/k?sslmode=require": "postgres://keyfort:xxxxx@db:5432/k?sslmode=require",
		"redis://s:26379/0?master_name=m&password=s3cret":     "redis://s:26379/0?master_name=m&password=xxxxx",
		"postgres://db/k":                                     "postgres://db/k",
		"postgres://k:s3cret@[::1/k":                          "fallback",
	} {
		if got := redact.URL(in, "fallback"); got != want {
			t.Errorf("URL(%q): got %q, want %q", in, got, want)
		}
	}
}
