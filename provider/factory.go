package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
)

// Factory builds a configured provider from its settings. Built-in adapters export one; the plugin
// transport calls it when the host configures the plugin process.
type Factory func(ctx context.Context, settings Settings) (IdentitySecretMaterialProvider, error)

// Settings are a provider instance's settings from configuration (the "settings" block of
// providers.<name>), as a JSON object. They may hold secrets (a Vault token), so Settings never print them.
type Settings struct {
	// Name is the provider instance's configured name.
	Name string
	raw  []byte
}

// NewSettings wraps a JSON object. Empty input means no settings.
func NewSettings(name string, rawJSON []byte) Settings { return Settings{Name: name, raw: rawJSON} }

// SettingsFromMap encodes m (as loaded from configuration) as Settings.
func SettingsFromMap(name string, m map[string]any) (Settings, error) {
	if len(m) == 0 {
		return Settings{Name: name}, nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return Settings{}, NewError(ErrInvalidConfig, "providers."+name+".settings", err)
	}
	return Settings{Name: name, raw: b}, nil
}

// JSON returns the raw JSON object (nil when empty).
func (s Settings) JSON() []byte { return s.raw }

// Decode decodes the settings into v strictly: a field v does not declare is an [ErrInvalidConfig] error
// naming the field, so a typo in configuration is caught at start-up. Values never appear in the error.
func (s Settings) Decode(v any) error {
	if len(bytes.TrimSpace(s.raw)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(s.raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return NewError(ErrInvalidConfig, "providers."+s.Name+".settings", sanitizeJSONError(err))
	}
	return nil
}

// sanitizeJSONError keeps what names a field and drops anything that could quote a value.
func sanitizeJSONError(err error) error {
	switch e := err.(type) {
	case *json.UnmarshalTypeError:
		return fmt.Errorf("field %q: want %s, got a JSON %s", e.Field, e.Type, e.Value)
	case *json.SyntaxError:
		return fmt.Errorf("malformed JSON at offset %d", e.Offset)
	}
	msg := err.Error()
	if len(msg) > 0 && bytes.HasPrefix([]byte(msg), []byte("json: unknown field ")) {
		return fmt.Errorf("unknown setting %s", msg[len("json: unknown field "):])
	}
	return fmt.Errorf("malformed settings")
}

// String never prints the settings' values.
func (s Settings) String() string { return fmt.Sprintf("Settings{name=%s len=%d}", s.Name, len(s.raw)) }

// Format implements fmt.Formatter: every verb prints [Settings.String].
func (s Settings) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(s.String())) }
