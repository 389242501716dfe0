package oidcop_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"

	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/providers/memory"
	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/oidc"
	"github.com/keyfort/keyfort/session/token"
)

const clientID, clientSecret = "keyfort-web", "secret"

// startOP serves the zitadel example OP on a loopback port and returns its issuer.
func startOP(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	issuer := "http://localhost:" + itoa(port) + "/"
	storage.RegisterClients(storage.WebClient(clientID, clientSecret, issuer+"callback"))
	logger := slog.New(slog.DiscardHandler)
	router := exampleop.SetupServer(issuer, storage.NewStorage(storage.NewUserStore(issuer)), logger, false)
	srv := &http.Server{Handler: router}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return issuer
}

func itoa(n int) string { return strconv.Itoa(n) }

// login runs the authorization-code flow as a browser would and returns the ID token.
func login(t *testing.T, issuer, username string) string {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	q := url.Values{"client_id": {clientID}, "response_type": {"code"}, "scope": {"openid profile email"},
		"redirect_uri": {issuer + "callback"}, "state": {"s1"}, "nonce": {"n1"}}
	var disc struct {
		Authorization string `json:"authorization_endpoint"`
		Token         string `json:"token_endpoint"`
	}
	dresp, err := http.Get(issuer + ".well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	_ = json.NewDecoder(dresp.Body).Decode(&disc)
	dresp.Body.Close()
	resp, err := c.Get(disc.Authorization + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loginURL, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loginURL.Query().Get("authRequestID") == "" {
		t.Fatalf("authorize: status %d, location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	id := loginURL.Query().Get("authRequestID")
	resp, err = c.PostForm(issuer+"login/username", url.Values{"username": {username}, "password": {"verysecure"}, "id": {id}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	next := resp.Header.Get("Location")
	for i := 0; i < 5 && !strings.HasPrefix(next, issuer+"callback"); i++ {
		if strings.HasPrefix(next, "/") {
			next = strings.TrimSuffix(issuer, "/") + next
		}
		resp, err = c.Get(next)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		next = resp.Header.Get("Location")
	}
	cb, err := url.Parse(next)
	if err != nil || cb.Query().Get("code") == "" {
		t.Fatalf("no authorization code; last location %q", next)
	}
	form := url.Values{"grant_type": {"authorization_code"}, "code": {cb.Query().Get("code")}, "redirect_uri": {issuer + "callback"}}
	req, _ := http.NewRequest(http.MethodPost, disc.Token, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, clientSecret)
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		IDToken string `json:"id_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.IDToken == "" {
		t.Fatalf("token endpoint: status %d, %v", resp.StatusCode, err)
	}
	return tok.IDToken
}

func TestRealOPIDTokenStartsASession(t *testing.T) {
	issuer := startOP(t)
	ctx := context.Background()
	v, err := oidc.New(ctx, oidc.Config{Issuer: issuer, Audience: clientID})
	if err != nil {
		t.Fatal(err)
	}
	idToken := login(t, issuer, "test-user@localhost")
	verified, err := v.Verify(ctx, idToken)
	if err != nil {
		t.Fatalf("the real OP's ID token does not verify: %v", err)
	}
	if verified.Subject == "" || verified.Issuer != issuer {
		t.Errorf("claims: got %+v", verified)
	}

	mem, _ := memory.New(ctx, memory.Config{SigningKeys: map[string]memory.KeySetConfig{"s": {}}})
	keys, _ := provider.NewClient(mem, provider.ClientConfig{Name: "memory"})
	defer keys.Close()
	m, err := session.NewManager(session.Config{
		Issuer: "https://keyfort.test", Keys: token.KeySourceFunc(func(ctx context.Context) (provider.KeySet, error) { return keys.SigningKeys(ctx, "s") }),
		IdPs: map[string]*oidc.Verifier{"zitadel": v},
	})
	if err != nil {
		t.Fatal(err)
	}
	toks, err := m.StartSession(ctx, session.StartRequest{Subject: verified.Subject, IdP: "zitadel", ExternalToken: idToken})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.RefreshSession(ctx, toks.RefreshToken); err != nil {
		t.Errorf("refresh: %v", err)
	}

	// The OP's tokens for another client are refused.
	other, err := oidc.New(ctx, oidc.Config{Issuer: issuer, Audience: "another-client"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Verify(ctx, idToken); !errors.Is(err, oidc.ErrWrongAudience) {
		t.Errorf("audience of another client: got %v", err)
	}
	// A tampered payload is refused.
	p := strings.Split(idToken, ".")
	if _, err := v.Verify(ctx, p[0]+"."+p[1]+"x."+p[2]); err == nil {
		t.Error("a tampered token verified")
	}
}
