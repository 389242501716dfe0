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

// TestUserinfo: credentials in the URLs of a free text are masked, and nothing else changes.
func TestUserinfo(t *testing.T) {
	for in, want := range map[string]string{
		`failed to send to https://tenant:s3cret@collector.example:4318/v1/traces: 401`: `failed to send to https://xxxxx@collector.example:4318/v1/traces: 401`,
		`post "http://key@c:4318/v1/traces" and grpc://u:p@other:4317`:                  `post "http://xxxxx@c:4318/v1/traces" and grpc://xxxxx@other:4317`,
		`connection refused: dial tcp 127.0.0.1:4317, mail admin@example.com`:           `connection refused: dial tcp 127.0.0.1:4317, mail admin@example.com`,
	} {
		if got := redact.Userinfo(in); got != want {
			t.Errorf("Userinfo(%q) = %q, want %q", in, got, want)
		}
	}
}
