package provider_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/keyfort/keyfort/provider"
)

const topSecret = "hunter2-hunter2-hunter2-hunter2!"

func TestSensitiveNeverPrints(t *testing.T) {
	s := provider.SensitiveString(topSecret)
	key, err := provider.ParseKey(provider.HS256, []byte(topSecret))
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]any{
		"Sensitive":   s,
		"*Sensitive":  &s,
		"Secret":      provider.Secret{Name: "n", Value: s},
		"Key":         key,
		"KeySet":      provider.KeySet{Name: "n", ActiveID: key.ID, Keys: []provider.Key{key}},
		"Credentials": provider.Credentials{Username: "u", Password: s, Token: s, Extra: map[string]provider.Sensitive{"host": s}},
		"Request":     provider.CredentialRequest{Role: "r", Identity: s},
		"Settings":    provider.NewSettings("p", []byte(`{"token":"`+topSecret+`"}`)),
		"struct":      struct{ V provider.Sensitive }{s},
		"slice":       []provider.Sensitive{s},
		"map":         map[string]provider.Sensitive{"k": s},
	}
	for name, v := range values {
		t.Run(name, func(t *testing.T) {
			for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T %v"} {
				if out := fmt.Sprintf(verb, v); leaks(out) {
					t.Errorf("fmt %s reveals the secret: %s", verb, out)
				}
			}
			if b, err := json.Marshal(v); err == nil && leaks(string(b)) {
				t.Errorf("json reveals the secret: %s", b)
			}
			var buf bytes.Buffer
			slog.New(slog.NewJSONHandler(&buf, nil)).Info("m", "v", v)
			slog.New(slog.NewTextHandler(&buf, nil)).Info("m", "v", v)
			if leaks(buf.String()) {
				t.Errorf("slog reveals the secret: %s", buf.String())
			}
		})
	}
}

func leaks(s string) bool {
	return strings.Contains(s, topSecret) || strings.Contains(s, fmt.Sprintf("%x", topSecret)) ||
		strings.Contains(s, "aHVudGVyMi1odW50ZXIy") // base64 prefix
}

func TestSensitiveReveal(t *testing.T) {
	s := provider.SensitiveString(topSecret)
	if s.RevealString() != topSecret || string(s.Reveal()) != topSecret || s.Len() != len(topSecret) {
		t.Error("Reveal does not return the value")
	}
	if !s.Equal(provider.SensitiveString(topSecret)) || s.Equal(provider.SensitiveString("other")) {
		t.Error("Equal is wrong")
	}
	if !(provider.Sensitive{}).IsZero() {
		t.Error("zero value is not zero")
	}
}

func TestLeaseExpiresAt(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := provider.Lease{ID: "x", TTL: time.Hour, IssuedAt: now}
	if got := l.ExpiresAt(); !got.Equal(now.Add(time.Hour)) {
		t.Errorf("ExpiresAt: got %v, want %v", got, now.Add(time.Hour))
	}
	if !(provider.Lease{}).IsZero() || !(provider.Lease{}).ExpiresAt().IsZero() {
		t.Error("zero lease")
	}
}
