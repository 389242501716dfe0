package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/keyfort/keyfort/config"
	"github.com/keyfort/keyfort/examples/guarded-kv/kvserver"
)

func main() {
	var (
		cfgFile = flag.String("config", "", "Keyfort configuration file")
		addr    = flag.String("addr", "127.0.0.1:7070", "gRPC listen address")
		noAuth  = flag.Bool("auth-disabled", false, "serve without authentication (development only)")
		jwks    = flag.String("runtime-jwks", "", "accept Keyfort access tokens verified with this JWKS URL (provider-host serve's /.well-known/jwks.json) instead of ID tokens")
		jwksCA  = flag.String("runtime-ca", "", "PEM CA bundle that signed the runtime's HTTPS certificate, for --runtime-jwks")
		cert    = flag.String("tls-cert", "", "PEM certificate (chain) to serve gRPC over TLS")
		key     = flag.String("tls-key", "", "PEM private key of --tls-cert")
		ca      = flag.String("tls-client-ca", "", "PEM CA bundle: require client certificates of these CAs (mutual TLS; access tokens bound to their client are served to that client only)")
		xfcc    = flag.Bool("forwarded-client-cert", false, "behind an Envoy or Istio sidecar on loopback: name callers by its x-forwarded-client-cert header")
	)
	flag.Parse()
	opts := kvserver.Options{AuthDisabled: *noAuth, RuntimeJWKS: *jwks, ForwardedClientCert: *xfcc}
	var err error
	if opts.TLS, err = serverTLS(*cert, *key, *ca); err == nil && *jwksCA != "" {
		opts.JWKSClient, err = clientWithRoots(*jwksCA)
	}
	if err == nil {
		err = run(*cfgFile, *addr, opts)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "guarded-kv:", err)
		os.Exit(1)
	}
}

// serverTLS is the gRPC listener's TLS (nil without a certificate), requiring client certificates
// of clientCA when it is set.
func serverTLS(certFile, keyFile, clientCA string) (*tls.Config, error) {
	switch {
	case certFile == "" && keyFile == "" && clientCA == "":
		return nil, nil
	case certFile == "" || keyFile == "":
		return nil, errors.New("--tls-cert and --tls-key go together (and --tls-client-ca needs them)")
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	if clientCA != "" {
		pool, err := pool(clientCA)
		if err != nil {
			return nil, fmt.Errorf("--tls-client-ca: %w", err)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// clientWithRoots is an HTTP client trusting the CAs of file.
func clientWithRoots(file string) (*http.Client, error) {
	roots, err := pool(file)
	if err != nil {
		return nil, fmt.Errorf("--runtime-ca: %w", err)
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}, nil
}

func pool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return p, nil
}

func run(cfgFile, addr string, opts kvserver.Options) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var files []string
	if cfgFile != "" {
		files = append(files, cfgFile)
	}
	cfg, err := config.Load(config.Source{Files: files})
	if err != nil {
		return err
	}
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" {
		// Traces over OTLP/gRPC, configured by the standard OTEL_* environment (endpoint, TLS,
		// sampler, service name); the service's spans, the session library's and the providers'.
		exp, err := otlptracegrpc.New(ctx)
		if err != nil {
			return fmt.Errorf("OTLP exporter: %w", err)
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp))
		defer func() { _ = tp.Shutdown(context.Background()) }()
		opts.TracerProvider = tp
	}
	srv, err := kvserver.New(ctx, cfg, opts)
	if err != nil {
		return err
	}
	defer srv.Close()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	slog.Info("guarded-kv: serving", slog.String("addr", l.Addr().String()), slog.Bool("auth", !opts.AuthDisabled), slog.Bool("keyfort_tokens", opts.RuntimeJWKS != ""),
		slog.Bool("tls", opts.TLS != nil), slog.Bool("client_certs", opts.TLS != nil && opts.TLS.ClientCAs != nil), slog.Bool("tracing", opts.TracerProvider != nil))
	go func() { <-ctx.Done(); srv.Close() }()
	return srv.Serve(l)
}
