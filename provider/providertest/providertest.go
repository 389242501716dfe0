package providertest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyfort/keyfort/provider"
)

// Config describes the provider under test and the fixtures it serves.
type Config struct {
	// NewProvider returns a fresh provider that serves the fixtures below. The suite closes it.
	NewProvider func(t *testing.T) provider.IdentitySecretMaterialProvider
	// KeySet names an existing key set with at least one key.
	KeySet string
	// Secret names an existing secret whose value is SecretValue.
	Secret      string
	SecretValue []byte
	// Credentials names a role that issues credentials; empty when the provider issues none.
	Credentials string
	// Missing is a name at which no material of any kind exists. Errors about it must name it.
	Missing string
	// Rotate rotates KeySet in the backend behind p. Nil: the suite rotates through provider.KeyRotator.
	Rotate func(ctx context.Context, t *testing.T, p provider.IdentitySecretMaterialProvider) error
	// NoRotation, when the provider cannot be rotated from the test, says why; the rotation test is then
	// skipped with that reason instead of failing.
	NoRotation string
}

// Run runs the conformance suite.
func Run(t *testing.T, cfg Config) {
	t.Helper()
	if cfg.NewProvider == nil || cfg.KeySet == "" || cfg.Secret == "" || len(cfg.SecretValue) == 0 || cfg.Missing == "" {
		t.Fatal("providertest: Config needs NewProvider, KeySet, Secret, SecretValue and Missing")
	}
	open := func(t *testing.T) provider.IdentitySecretMaterialProvider {
		p := cfg.NewProvider(t)
		t.Cleanup(func() { _ = p.Close() })
		return p
	}
	t.Run("KeySet", func(t *testing.T) { testKeySet(t, open(t), cfg) })
	t.Run("Rotation", func(t *testing.T) { testRotation(t, open(t), cfg) })
	t.Run("Watch", func(t *testing.T) { testWatch(t, open(t), cfg) })
	t.Run("Secret", func(t *testing.T) { testSecret(t, open(t), cfg) })
	t.Run("NotFound", func(t *testing.T) { testNotFound(t, open(t), cfg) })
	t.Run("CancelledContext", func(t *testing.T) { testCancelled(t, open(t), cfg) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, open(t), cfg) })
	t.Run("Credentials", func(t *testing.T) { testCredentials(t, open(t), cfg) })
	t.Run("NoSecretInErrors", func(t *testing.T) { testNoSecretInErrors(t, open(t), cfg) })
	t.Run("Closed", func(t *testing.T) { testClosed(t, cfg.NewProvider(t), cfg) })
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func testKeySet(t *testing.T, p provider.IdentitySecretMaterialProvider, cfg Config) {
	ctx := ctxFor(t)
	ks, err := p.SigningKeys(ctx, cfg.KeySet)
	if err != nil {
		t.Fatalf("SigningKeys(%q): %v", cfg.KeySet, err)
	}
	if err := ks.Validate(); err != nil {
		t.Fatalf("SigningKeys(%q) returned an invalid set: %v", cfg.KeySet, err)
	}
	for _, k := range ks.Keys {
		if err := SignAndVerify(ctx, p, cfg.KeySet, k); err != nil {
			t.Errorf("key %s: %v", k, err)
		}
	}
	again, err := p.SigningKeys(ctx, cfg.KeySet)
	if err != nil {
		t.Fatalf("second SigningKeys(%q): %v", cfg.KeySet, err)
	}
	if again.ActiveID != ks.ActiveID {
		t.Errorf("active kid changed between two reads without rotation: got %q, want %q", again.ActiveID, ks.ActiveID)
	}
}

// testWatch checks the Watcher capability where a provider has it: Change{} once the watch is
// established, a Change naming the key set after a rotation, and an end when ctx ends. A provider
// without it (or a plugin without it: ErrUnimplemented) has nothing to check.
func testWatch(t *testing.T, p provider.IdentitySecretMaterialProvider, cfg Config) {
	w, ok := p.(provider.Watcher)
	if !ok {
		return
	}
	ctx, cancel := context.WithCancel(ctxFor(t))
	defer cancel()
	changes := make(chan provider.Change, 256)
	ended := make(chan error, 1)
	go func() {
		ended <- w.Watch(ctx, func(ch provider.Change) {
			select {
			case changes <- ch:
			default:
			}
		})
	}()
	select {
	case ch := <-changes:
		if ch.Name != "" {
			t.Fatalf("first change: got %+v, want Change{} (the watch is established)", ch)
		}
	case err := <-ended:
		if errors.Is(err, provider.ErrUnimplemented) {
			return // a plugin that does not report changes
		}
		t.Fatalf("Watch ended before it was established: %v", err)
	case <-ctx.Done():
		t.Fatal("Watch was never established")
	}
	if cfg.Rotate == nil {
		if _, ok := p.(provider.KeyRotator); !ok {
			return // a watcher the suite cannot make change
		}
	}
	rotate(t, ctx, p, cfg)
	for seen := false; !seen; {
		select {
		case ch := <-changes:
			seen = ch.Name == cfg.KeySet
		case err := <-ended:
			t.Fatalf("Watch ended before it reported the rotation: %v", err)
		case <-ctx.Done():
			t.Fatalf("no Change{Name: %q} after a rotation", cfg.KeySet)
		}
	}
	cancel()
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not end when its context did")
	}
}

// rotate rotates cfg.KeySet through cfg.Rotate or provider.KeyRotator.
func rotate(t *testing.T, ctx context.Context, p provider.IdentitySecretMaterialProvider, cfg Config) {
	t.Helper()
	if cfg.Rotate != nil {
		if err := cfg.Rotate(ctx, t, p); err != nil {
			t.Fatalf("rotate: %v", err)
		}
		return
	}
	if _, err := p.(provider.KeyRotator).RotateSigningKey(ctx, cfg.KeySet); err != nil {
		t.Fatalf("RotateSigningKey(%q): %v", cfg.KeySet, err)
	}
}

func testRotation(t *testing.T, p provider.IdentitySecretMaterialProvider, cfg Config) {
	ctx := ctxFor(t)
	before, err := p.SigningKeys(ctx, cfg.KeySet)
	if err != nil {
		t.Fatalf("SigningKeys(%q): %v", cfg.KeySet, err)
	}
	switch {
	case cfg.Rotate != nil:
		if err := cfg.Rotate(ctx, t, p); err != nil {
			t.Fatalf("rotate: %v", err)
		}
	default:
		r, ok := p.(provider.KeyRotator)
		if !ok {
			if cfg.NoRotation != "" {
				t.Skip("rotation not exercised: " + cfg.NoRotation)
			}
			t.Fatal("provider is no provider.KeyRotator and Config has neither Rotate nor NoRotation")
		}
		if _, err := r.RotateSigningKey(ctx, cfg.KeySet); err != nil {
			if errors.Is(err, provider.ErrUnimplemented) && cfg.NoRotation != "" {
				t.Skip("rotation not exercised: " + cfg.NoRotation)
			}
			t.Fatalf("RotateSigningKey(%q): %v", cfg.KeySet, err)
		}
	}
	after, err := p.SigningKeys(ctx, cfg.KeySet)
	if err != nil {
		t.Fatalf("SigningKeys(%q) after rotation: %v", cfg.KeySet, err)
	}
	if after.ActiveID == before.ActiveID {
		t.Fatalf("active kid after rotation: got %q, want a new one", after.ActiveID)
	}
	if _, ok := after.Lookup(before.ActiveID); !ok {
		t.Errorf("previous active kid %q no longer verifies after rotation; set is %v", before.ActiveID, after.IDs())
	}
	active, _ := after.Active()
	if err := SignAndVerify(ctx, p, cfg.KeySet, active); err != nil {
		t.Errorf("new active key: %v", err)
	}
}

func testSecret(t *testing.T, p provider.IdentitySecretMaterialProvider, cfg Config) {
	s, err := p.Secret(ctxFor(t), cfg.Secret)
	if err != nil {
		t.Fatalf("Secret(%q): %v", cfg.Secret, err)
	}
	if !bytes.Equal(s.Value.Reveal(), cfg.SecretValue) {
		t.Errorf("Secret(%q): got a value of %d bytes that differs from the fixture (%d bytes)", cfg.Secret, s.Value.Len(), len(cfg.SecretValue))
	}
}

func testNotFound(t *testing.T, p provider.IdentitySecretMaterialProvider, cfg Config) {
	ctx := ctxFor(t)
	_, err := p.SigningKeys(ctx, cfg.Missing)
	checkKind(t, "SigningKeys", cfg.Missing, err, provider.ErrNotFound)
	_, err = p.Secret(ctx, cfg.Missing)
	checkKind(t, "Secret", cfg.Missing, err, provider.ErrNotFound)
	if cfg.Credentials != "" {
		_, err = p.Credentials(ctx, provider.CredentialRequest{Role: cfg.Missing})
		checkKind(t, "Credentials", cfg.Missing, err, provider.ErrNotFound)
	}
}

func checkKind(t *testing.T, op, name string, err, want error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s(%q): got no error, want %v", op, name, want)
		return
	}
	if !errors.Is(err, want) {
		t.Errorf("%s(%q): got %v, want an error matching %v", op, name, err, want)
	}
	if !strings.Contains(err.Error(), name) {
		t.Errorf("%s(%q): error %q does not name the location", op, name, err)
	}
}

func testCancelled(t *testing.T, p provider.IdentitySecretMaterialProvider, cfg Config) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.SigningKeys(ctx, cfg.KeySet); !errors.Is(err, context.Canceled) {
		t.Errorf("SigningKeys with a cancelled context: got %v, want context.Canceled", err)
	}
	if _, err := p.Secret(ctx, cfg.Secret); !errors.Is(err, context.Canceled) {
		t.Errorf("Secret with a cancelled context: got %v, want context.Canceled", err)
	}
	dctx, dcancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer dcancel()
	if _, err := p.Secret(dctx, cfg.Secret); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Secret with an expired deadline: got %v, want context.DeadlineExceeded", err)
	}
}

func testConcurrent(t *testing.T, p provider.IdentitySecretMaterialProvider, cfg Config) {
	ctx := ctxFor(t)
	want, err := p.SigningKeys(ctx, cfg.KeySet)
	if err != nil {
		t.Fatalf("SigningKeys(%q): %v", cfg.KeySet, err)
	}
	const goroutines, rounds = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for range goroutines {
		wg.Go(func() {
			for range rounds {
				ks, err := p.SigningKeys(ctx, cfg.KeySet)
				if err != nil {
					errs <- fmt.Errorf("SigningKeys: %w", err)
					return
				}
				if ks.ActiveID != want.ActiveID {
					errs <- fmt.Errorf("SigningKeys: active kid %q, want %q", ks.ActiveID, want.ActiveID)
					return
				}
				s, err := p.Secret(ctx, cfg.Secret)
				if err != nil {
					errs <- fmt.Errorf("Secret: %w", err)
					return
				}
				if !bytes.Equal(s.Value.Reveal(), cfg.SecretValue) {
					errs <- errors.New("Secret: value differs from the fixture")
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func testCredentials(t *testing.T, p provider.IdentitySecretMaterialProvider, cfg Config) {
	if cfg.Credentials == "" {
		t.Skip("the provider under test issues no credentials")
	}
	ctx := ctxFor(t)
	c, err := p.Credentials(ctx, provider.CredentialRequest{Role: cfg.Credentials})
	if err != nil {
		t.Fatalf("Credentials(%q): %v", cfg.Credentials, err)
	}
	if c.Username == "" && c.Token.IsZero() {
		t.Fatalf("Credentials(%q): got neither a username nor a token", cfg.Credentials)
	}
	if c.Username != "" && c.Password.IsZero() {
		t.Errorf("Credentials(%q): username without a password", cfg.Credentials)
	}
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c)} {
		if !c.Password.IsZero() && strings.Contains(s, c.Password.RevealString()) {
			t.Errorf("fmt of credentials reveals the password: %s", s)
		}
	}
	if c.Lease.IsZero() {
		l, err := p.Renew(ctx, c.Lease)
		if err != nil || !l.IsZero() {
			t.Errorf("Renew(zero lease): got (%v, %v), want the zero lease and no error", l, err)
		}
		if err := p.Revoke(ctx, c.Lease); err != nil {
			t.Errorf("Revoke(zero lease): %v", err)
		}
		return
	}
	if c.Lease.TTL <= 0 {
		t.Errorf("lease %s has no TTL", c.Lease.ID)
	}
	if c.Lease.Renewable {
		l, err := p.Renew(ctx, c.Lease)
		if err != nil {
			t.Fatalf("Renew(%s): %v", c.Lease.ID, err)
		}
		if l.ID != c.Lease.ID || l.TTL <= 0 {
			t.Errorf("Renew: got %v, want lease %s with a TTL", l, c.Lease.ID)
		}
	}
	if err := p.Revoke(ctx, c.Lease); err != nil {
		t.Fatalf("Revoke(%s): %v", c.Lease.ID, err)
	}
	if err := p.Revoke(ctx, c.Lease); err != nil {
		t.Errorf("second Revoke(%s): got %v, want nil (revoke is idempotent)", c.Lease.ID, err)
	}
	if c.Lease.Renewable {
		if _, err := p.Renew(ctx, c.Lease); !errors.Is(err, provider.ErrNotFound) {
			t.Errorf("Renew after Revoke: got %v, want provider.ErrNotFound", err)
		}
	}
}

func testNoSecretInErrors(t *testing.T, p provider.IdentitySecretMaterialProvider, cfg Config) {
	ctx := ctxFor(t)
	secrets := [][]byte{cfg.SecretValue}
	ks, err := p.SigningKeys(ctx, cfg.KeySet)
	if err != nil {
		t.Fatalf("SigningKeys: %v", err)
	}
	for _, k := range ks.Keys {
		if !k.Private.IsZero() {
			secrets = append(secrets, k.Private.Reveal())
		}
	}
	s, err := p.Secret(ctx, cfg.Secret)
	if err != nil {
		t.Fatalf("Secret: %v", err)
	}
	var texts []string
	for _, v := range []any{s, ks, s.Value} {
		texts = append(texts, fmt.Sprint(v), fmt.Sprintf("%+v", v), fmt.Sprintf("%#v", v), fmt.Sprintf("%x", v), fmt.Sprintf("%q", v))
	}
	for _, k := range ks.Keys {
		texts = append(texts, fmt.Sprint(k), fmt.Sprintf("%#v", k))
	}
	if cfg.Credentials != "" {
		c, err := p.Credentials(ctx, provider.CredentialRequest{Role: cfg.Credentials, Identity: provider.NewSensitive(cfg.SecretValue)})
		if err == nil {
			secrets = append(secrets, c.Password.Reveal(), c.Token.Reveal())
			texts = append(texts, fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c))
			defer func() { _ = p.Revoke(ctx, c.Lease) }()
		} else {
			texts = append(texts, err.Error())
		}
		_, err = p.Credentials(ctx, provider.CredentialRequest{Role: cfg.Missing, Identity: provider.NewSensitive(cfg.SecretValue)})
		texts = append(texts, errString(err))
	}
	_, err = p.SigningKeys(ctx, cfg.Missing)
	texts = append(texts, errString(err))
	_, err = p.Secret(ctx, cfg.Missing)
	texts = append(texts, errString(err))
	_, err = p.Renew(ctx, provider.Lease{ID: cfg.Missing, TTL: time.Minute, IssuedAt: time.Now(), Renewable: true})
	texts = append(texts, errString(err))
	for _, text := range texts {
		for _, secret := range secrets {
			if leaks(text, secret) {
				t.Errorf("a secret value (%d bytes) appears in %q", len(secret), text)
			}
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error() + fmt.Sprintf(" %+v %#v", err, err)
}

// leaks reports whether secret appears in text raw, hex or base64 encoded.
func leaks(text string, secret []byte) bool {
	if len(secret) < 4 {
		return false
	}
	for _, enc := range []string{
		string(secret), hex.EncodeToString(secret),
		base64.StdEncoding.EncodeToString(secret), base64.RawURLEncoding.EncodeToString(secret),
	} {
		if strings.Contains(text, enc) {
			return true
		}
	}
	return false
}

func testClosed(t *testing.T, p provider.IdentitySecretMaterialProvider, cfg Config) {
	ctx := ctxFor(t)
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := p.SigningKeys(ctx, cfg.KeySet); !errors.Is(err, provider.ErrClosed) {
		t.Errorf("SigningKeys after Close: got %v, want provider.ErrClosed", err)
	}
	if _, err := p.Secret(ctx, cfg.Secret); !errors.Is(err, provider.ErrClosed) {
		t.Errorf("Secret after Close: got %v, want provider.ErrClosed", err)
	}
	if _, err := p.Credentials(ctx, provider.CredentialRequest{Role: cfg.Secret}); !errors.Is(err, provider.ErrClosed) {
		t.Errorf("Credentials after Close: got %v, want provider.ErrClosed", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: got %v, want nil", err)
	}
}

// SignAndVerify signs a message with k (its private material, or the provider's provider.Signer for
// keys that never leave the backend) and verifies the signature with k's public material.
func SignAndVerify(ctx context.Context, p provider.IdentitySecretMaterialProvider, set string, k provider.Key) error {
	msg := []byte("keyfort conformance " + k.ID)
	digest := sha256.Sum256(msg)
	var sig []byte
	if k.Private.IsZero() {
		s, ok := p.(provider.Signer)
		if !ok {
			return errors.New("key has no private material and the provider is no provider.Signer")
		}
		var err error
		if sig, err = s.Sign(ctx, set, k.ID, msg); err != nil {
			return fmt.Errorf("Sign: %w", err)
		}
		return verifyJWS(k, msg, sig)
	}
	if k.Algorithm == provider.HS256 {
		mac := hmac.New(sha256.New, k.Private.Reveal())
		mac.Write(msg)
		sig = mac.Sum(nil)
		return verifyJWS(k, msg, sig)
	}
	priv, err := k.PrivateKey()
	if err != nil {
		return err
	}
	switch k.Algorithm {
	case provider.EdDSA:
		sig, err = priv.Sign(rand.Reader, msg, crypto.Hash(0))
	case provider.ES256:
		var r, s *big.Int
		r, s, err = ecdsa.Sign(rand.Reader, priv.(*ecdsa.PrivateKey), digest[:])
		if err == nil {
			sig = make([]byte, 64)
			r.FillBytes(sig[:32])
			s.FillBytes(sig[32:])
		}
	case provider.RS256:
		sig, err = priv.Sign(rand.Reader, digest[:], crypto.SHA256)
	}
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	return verifyJWS(k, msg, sig)
}

// verifyJWS verifies a JWS-format signature (ES256 as r||s) over msg with k's public material.
func verifyJWS(k provider.Key, msg, sig []byte) error {
	pub, err := k.PublicKey()
	if err != nil {
		return err
	}
	digest := sha256.Sum256(msg)
	ok := false
	switch k.Algorithm {
	case provider.HS256:
		mac := hmac.New(sha256.New, pub.([]byte))
		mac.Write(msg)
		ok = hmac.Equal(mac.Sum(nil), sig)
	case provider.EdDSA:
		ok = ed25519.Verify(pub.(ed25519.PublicKey), msg, sig)
	case provider.ES256:
		if len(sig) == 64 {
			r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
			ok = ecdsa.Verify(pub.(*ecdsa.PublicKey), digest[:], r, s)
		}
	case provider.RS256:
		ok = rsa.VerifyPKCS1v15(pub.(*rsa.PublicKey), crypto.SHA256, digest[:], sig) == nil
	}
	if !ok {
		return errors.New("signature does not verify with the key's public material")
	}
	return nil
}
