package vault

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/keyfort/keyfort/provider"
)

// Config is the vault provider's settings block.
type Config struct {
	// Address of the Vault server (https://vault.internal:8200). Default: $VAULT_ADDR.
	Address string `json:"address"`
	// Namespace (Vault Enterprise / HCP).
	Namespace string `json:"namespace"`
	// RequestTimeout bounds each HTTP request (Go duration, default "10s").
	RequestTimeout string `json:"request_timeout"`
	// TLS settings.
	TLS TLSConfig `json:"tls"`
	// Auth is how the provider logs in for itself.
	Auth AuthConfig `json:"auth"`
	// IdentityAuth, when set, exchanges a caller's identity JWT for a per-session Vault token through a
	// JWT auth role before reading credentials on the caller's behalf.
	IdentityAuth *IdentityAuthConfig `json:"identity_auth"`
	// MaxVerificationKeys caps how many older KV versions stay in a key set for verification (default 5).
	MaxVerificationKeys int `json:"max_verification_keys"`
	// TransitPublishAhead (Go duration, default none) publishes a new Transit key version for that
	// long before it signs: the previous version keeps signing until the new one is that old (its
	// creation_time), so that every verifier holding a copy of the JWKS has fetched the new key
	// before any token names it. Set it above the verifiers' JWKS refresh (token.JWKSKeys: 5m).
	TransitPublishAhead string `json:"transit_publish_ahead"`
}

// TLSConfig configures the connection to Vault.
type TLSConfig struct {
	CAFile         string `json:"ca_file"`
	ServerName     string `json:"server_name"`
	ClientCertFile string `json:"client_cert_file"`
	ClientKeyFile  string `json:"client_key_file"`
	// InsecureSkipVerify disables certificate verification. Never in production.
	InsecureSkipVerify bool `json:"insecure_skip_verify"`
}

// AuthConfig selects the provider's own login.
type AuthConfig struct {
	// Method: token (default), approle, kubernetes or jwt.
	Method string `json:"method"`
	// Path is the auth mount (default auth/<method>).
	Path string `json:"path"`
	// Token (method token). Default: $VAULT_TOKEN. Prefer TokenFile.
	Token     string `json:"token"`
	TokenFile string `json:"token_file"`
	// RoleID and SecretID or SecretIDFile (method approle).
	RoleID       string `json:"role_id"`
	SecretID     string `json:"secret_id"`
	SecretIDFile string `json:"secret_id_file"`
	// Role and JWTFile (methods kubernetes and jwt). For kubernetes JWTFile defaults to the service
	// account token.
	Role    string `json:"role"`
	JWTFile string `json:"jwt_file"`
}

// IdentityAuthConfig is the JWT auth role that turns a caller's OIDC JWT into a session token.
type IdentityAuthConfig struct {
	Path string `json:"path"` // default auth/jwt
	Role string `json:"role"`
}

const serviceAccountToken = "/var/run/secrets/kubernetes.io/serviceaccount/token"

type settings struct {
	Config
	requestTimeout time.Duration
	publishAhead   time.Duration
}

// validate reports every problem at once; messages name settings, never values.
func (c Config) validate(name string) (settings, error) {
	s := settings{Config: c, requestTimeout: 10 * time.Second}
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if s.Address == "" {
		s.Address = os.Getenv("VAULT_ADDR")
	}
	if s.Address == "" {
		add("address: required (or set VAULT_ADDR)")
	} else if !strings.HasPrefix(s.Address, "https://") && !strings.HasPrefix(s.Address, "http://") {
		add("address: want an http:// or https:// URL")
	}
	if c.RequestTimeout != "" {
		d, err := time.ParseDuration(c.RequestTimeout)
		if err != nil || d <= 0 {
			add("request_timeout: want a positive duration like \"10s\"")
		}
		s.requestTimeout = d
	}
	if s.MaxVerificationKeys == 0 {
		s.MaxVerificationKeys = 5
	}
	if c.TransitPublishAhead != "" {
		d, err := time.ParseDuration(c.TransitPublishAhead)
		if err != nil || d < 0 {
			add("transit_publish_ahead: want a duration like \"5m\"")
		}
		s.publishAhead = d
	}
	if (c.TLS.ClientCertFile == "") != (c.TLS.ClientKeyFile == "") {
		add("tls: set both client_cert_file and client_key_file, or neither")
	}
	a := &s.Auth
	if a.Method == "" {
		a.Method = "token"
	}
	switch a.Method {
	case "token":
		if a.Token == "" && a.TokenFile == "" && os.Getenv("VAULT_TOKEN") == "" {
			add("auth: method token needs token, token_file or VAULT_TOKEN")
		}
	case "approle":
		if a.RoleID == "" || (a.SecretID == "" && a.SecretIDFile == "") {
			add("auth: method approle needs role_id and secret_id or secret_id_file")
		}
	case "kubernetes", "jwt":
		if a.Role == "" {
			add("auth: method %s needs role", a.Method)
		}
		if a.JWTFile == "" {
			if a.Method == "jwt" {
				add("auth: method jwt needs jwt_file")
			}
			a.JWTFile = serviceAccountToken
		}
	default:
		add("auth.method: unknown %q (want token, approle, kubernetes or jwt)", a.Method)
	}
	if a.Path == "" {
		a.Path = "auth/" + a.Method
	}
	a.Path = strings.Trim(a.Path, "/")
	if ia := s.IdentityAuth; ia != nil {
		if ia.Role == "" {
			add("identity_auth.role: required")
		}
		if ia.Path == "" {
			ia.Path = "auth/jwt"
		}
		ia.Path = strings.Trim(ia.Path, "/")
	}
	if len(problems) > 0 {
		return s, provider.NewError(provider.ErrInvalidConfig, "providers."+name+".settings", errors.New(strings.Join(problems, "; ")))
	}
	return s, nil
}

func readFileTrim(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("cannot read %s", path)
	}
	return strings.TrimSpace(string(b)), nil
}
