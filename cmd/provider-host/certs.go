package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// certReloader serves serve's TLS certificate from its files and picks up a rotation (cert-manager,
// an ACME client, a Vault agent template rewriting them) at the next handshake, without a restart.
// Each handshake compares the files' size and modification time with those of the pair it serves
// (two stats); when they changed it loads the pair again. A pair that does not load (a rotation
// caught between the certificate and the key being written) is logged and the previous one served
// until the files change again.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu     sync.Mutex
	cert   *tls.Certificate
	stamp  [2]fileStamp
	failed [2]fileStamp // the stamps of the last pair that did not load, so it is logged once
}

type fileStamp struct {
	size int64
	mod  time.Time
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{size: fi.Size(), mod: fi.ModTime()}, nil
}

// newCertReloader loads the pair once; an error here stops start-up.
func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	stamp, err := r.stamps()
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	r.cert, r.stamp = &cert, stamp
	return r, nil
}

func (r *certReloader) stamps() ([2]fileStamp, error) {
	c, err := stampOf(r.certFile)
	if err != nil {
		return [2]fileStamp{}, err
	}
	k, err := stampOf(r.keyFile)
	if err != nil {
		return [2]fileStamp{}, err
	}
	return [2]fileStamp{c, k}, nil
}

// GetCertificate implements tls.Config.GetCertificate.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	stamp, err := r.stamps()
	if err != nil || stamp == r.stamp || stamp == r.failed {
		return r.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		r.failed = stamp
		r.log.Warn("keyfort: the TLS certificate files changed but do not load; serving the previous pair",
			slog.String("cert", r.certFile), slog.String("key", r.keyFile), slog.String("error", err.Error()))
		return r.cert, nil
	}
	r.cert, r.stamp, r.failed = &cert, stamp, [2]fileStamp{}
	r.log.Info("keyfort: TLS certificate reloaded", slog.String("cert", r.certFile), slog.String("expires", certExpiry(&cert)))
	return r.cert, nil
}

func certExpiry(c *tls.Certificate) string {
	if c.Leaf == nil {
		return "unknown"
	}
	return c.Leaf.NotAfter.UTC().Format(time.RFC3339)
}

// tlsConfig is serve's server TLS configuration around the reloader.
func (r *certReloader) tlsConfig() *tls.Config {
	return &tls.Config{GetCertificate: r.GetCertificate, MinVersion: tls.VersionTLS12}
}

// clientCAReloader serves the pool of CAs that client certificates of the gRPC listener must chain
// to, from a PEM bundle that it reads again when the file changes (one stat per handshake), like the
// certificate pair. A bundle that does not load is logged and the previous pool kept.
type clientCAReloader struct {
	file string
	log  *slog.Logger

	mu     sync.Mutex
	pool   *x509.CertPool
	stamp  fileStamp
	failed fileStamp
}

// loadCAPool reads a PEM bundle; errors name the file, never its content.
func loadCAPool(file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", file)
	}
	return pool, nil
}

func newClientCAReloader(file string, log *slog.Logger) (*clientCAReloader, error) {
	stamp, err := stampOf(file)
	if err != nil {
		return nil, err
	}
	pool, err := loadCAPool(file)
	if err != nil {
		return nil, err
	}
	return &clientCAReloader{file: file, log: log, pool: pool, stamp: stamp}, nil
}

func (r *clientCAReloader) current() *x509.CertPool {
	r.mu.Lock()
	defer r.mu.Unlock()
	stamp, err := stampOf(r.file)
	if err != nil || stamp == r.stamp || stamp == r.failed {
		return r.pool
	}
	pool, err := loadCAPool(r.file)
	if err != nil {
		r.failed = stamp
		r.log.Warn("keyfort: the client CA file changed but does not load; keeping the previous CAs",
			slog.String("file", r.file), slog.String("error", err.Error()))
		return r.pool
	}
	r.pool, r.stamp, r.failed = pool, stamp, fileStamp{}
	r.log.Info("keyfort: client CAs reloaded", slog.String("file", r.file))
	return r.pool
}

// mutualTLS returns base (serve's server configuration) requiring, at each handshake, a client
// certificate that chains to the current CAs and, with an allow-list, carries an allowed identity.
func (r *clientCAReloader) mutualTLS(base *tls.Config, allow *clientAllowList) *tls.Config {
	if allow != nil {
		base = base.Clone()
		base.VerifyConnection = allow.verify(r.log)
	}
	return r.withClientAuth(base, tls.RequireAndVerifyClientCert)
}

// optionalTLS is base asking for a client certificate of the current client CAs without requiring
// one: the HTTP listener's, where probes and JWKS fetches come without and introspection callers
// (identity.session.introspection_clients) with one.
func (r *clientCAReloader) optionalTLS(base *tls.Config) *tls.Config {
	return r.withClientAuth(base, tls.VerifyClientCertIfGiven)
}

// withClientAuth is base checking client certificates by auth against the CAs current at each
// handshake.
func (r *clientCAReloader) withClientAuth(base *tls.Config, auth tls.ClientAuthType) *tls.Config {
	c := base.Clone()
	c.ClientAuth = auth
	c.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		per := base.Clone()
		per.ClientAuth = auth
		per.ClientCAs = r.current()
		return per, nil
	}
	return c
}

// clientAllowList is --tls-client-allow: the identities a client certificate of the gRPC listener
// must carry, beyond chaining to the client CAs. A value with "://" is a URI SAN (a SPIFFE ID):
// exact, or, ending in "/*", any URI under that path; any other value is a DNS SAN, exact (case
// does not matter).
type clientAllowList struct {
	uris, prefixes, dns []string
}

// parseClientAllowList checks every value; errors name the value (an identity, not a secret).
func parseClientAllowList(values []string) (*clientAllowList, error) {
	if len(values) == 0 {
		return nil, nil
	}
	a := &clientAllowList{}
	for _, v := range values {
		if strings.Contains(v, "://") {
			base, prefix := strings.CutSuffix(v, "/*")
			u, err := url.Parse(base)
			if err != nil || u.Scheme == "" || u.Host == "" || strings.Contains(base, "*") || u.RawQuery != "" || u.Fragment != "" {
				return nil, fmt.Errorf("%q is not a URI SAN (scheme://host/path, optionally ending in /*)", v)
			}
			if prefix {
				a.prefixes = append(a.prefixes, base+"/")
			} else {
				a.uris = append(a.uris, v)
			}
			continue
		}
		if v == "" || strings.ContainsAny(v, "*/ ") {
			return nil, fmt.Errorf("%q is not a DNS name (wildcards are not supported) or a URI", v)
		}
		a.dns = append(a.dns, strings.ToLower(v))
	}
	return a, nil
}

// allows reports whether the leaf certificate carries an allowed identity.
func (a *clientAllowList) allows(c *x509.Certificate) bool {
	for _, u := range c.URIs {
		s := u.String()
		if slices.Contains(a.uris, s) {
			return true
		}
		for _, p := range a.prefixes {
			if len(s) > len(p) && strings.HasPrefix(s, p) {
				return true
			}
		}
	}
	for _, d := range c.DNSNames {
		if slices.Contains(a.dns, strings.ToLower(d)) {
			return true
		}
	}
	return false
}

// errClientNotAllowed fails a handshake whose client certificate is not on the allow-list.
var errClientNotAllowed = errors.New("client certificate identity not allowed")

// verify is a tls.Config.VerifyConnection for the server: after the chain is verified, the leaf
// must be allowed. A refusal is logged with the certificate's identities (never a key).
func (a *clientAllowList) verify(log *slog.Logger) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errClientNotAllowed
		}
		leaf := cs.PeerCertificates[0]
		if a.allows(leaf) {
			return nil
		}
		uris := make([]string, len(leaf.URIs))
		for i, u := range leaf.URIs {
			uris[i] = u.String()
		}
		log.Warn("keyfort: gRPC client refused: its certificate is not on --tls-client-allow",
			slog.String("subject", leaf.Subject.String()), slog.Any("uri_sans", uris), slog.Any("dns_sans", leaf.DNSNames))
		return errClientNotAllowed
	}
}
