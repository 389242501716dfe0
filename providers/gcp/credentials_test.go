package gcp_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/providers/gcp"
)

// TestCredentialsFileOfItsTypeOnly: credentials_file must hold credentials of credentials_type
// (service_account unless set). A file of another type is refused at start with ErrInvalidConfig
// naming the file and both types; in particular an external account configuration, whose credential
// source may run a program, is never acted on unless credentials_type says external_account.
func TestCredentialsFileOfItsTypeOnly(t *testing.T) {
	t.Setenv("GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES", "1") // what a host might have set
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	script := filepath.Join(dir, "creds.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\ntouch "+marker+"\necho '{}'\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	const keyMaterial = "ZmFrZS1yZWZyZXNoLXRva2Vu"
	files := map[string]map[string]any{
		"sa.json": {"type": "service_account", "project_id": "p", "private_key_id": "k1",
			"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
			"client_email": "keyfort@p.iam.gserviceaccount.com", "client_id": "1",
			"token_uri": "http://127.0.0.1:1/token"},
		"user.json": {"type": "authorized_user", "client_id": "c", "client_secret": keyMaterial, "refresh_token": keyMaterial},
		"external.json": {"type": "external_account", "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x",
			"subject_token_type": "urn:ietf:params:oauth:token-type:jwt", "token_url": "http://127.0.0.1:1/token",
			"credential_source": map[string]any{"executable": map[string]any{"command": script, "timeout_millis": 5000}}},
	}
	for name, v := range files {
		b, _ := json.Marshal(v)
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		file, typ string
		wantErr   string // empty: accepted
	}{
		{"sa.json", "", ""},
		{"sa.json", "service_account", ""},
		{"user.json", "authorized_user", ""},
		{"external.json", "external_account", ""},
		{"user.json", "", `holds "authorized_user" credentials, and credentials_type is "service_account"`},
		{"external.json", "", `holds "external_account" credentials, and credentials_type is "service_account"`},
		{"external.json", "authorized_user", `holds "external_account" credentials, and credentials_type is "authorized_user"`},
		{"sa.json", "gdch", `unknown credentials type "gdch"`},
		{"missing.json", "", "missing.json"},
		{"creds.sh", "", "creds.sh is not a JSON credentials file"},
	} {
		p, err := gcp.New(context.Background(), gcp.Config{CredentialsFile: filepath.Join(dir, tc.file), CredentialsType: tc.typ})
		if tc.wantErr == "" {
			if err != nil {
				t.Errorf("%s as %q: %v", tc.file, tc.typ, err)
			} else {
				_ = p.Close()
			}
			continue
		}
		if err == nil {
			_ = p.Close()
			t.Errorf("%s as %q: accepted, want %q", tc.file, tc.typ, tc.wantErr)
			continue
		}
		if !errors.Is(err, provider.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s as %q: got %v, want ErrInvalidConfig with %q", tc.file, tc.typ, err, tc.wantErr)
		}
		if strings.Contains(err.Error(), keyMaterial) || strings.Contains(err.Error(), "PRIVATE KEY") {
			t.Errorf("%s as %q: the error quotes the file's secrets: %v", tc.file, tc.typ, err)
		}
	}
	if _, err := gcp.New(context.Background(), gcp.Config{CredentialsType: "service_account"}); !errors.Is(err, provider.ErrInvalidConfig) {
		t.Errorf("credentials_type without credentials_file: got %v, want ErrInvalidConfig", err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("a credentials file of the wrong type ran its credential source's program")
	}
}
