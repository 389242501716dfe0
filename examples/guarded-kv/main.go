package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/keyfort/keyfort/config"
	"github.com/keyfort/keyfort/examples/guarded-kv/kvserver"
)

func main() {
	var (
		cfgFile = flag.String("config", "", "Keyfort configuration file")
		addr    = flag.String("addr", "127.0.0.1:7070", "gRPC listen address")
		noAuth  = flag.Bool("auth-disabled", false, "serve without authentication (development only)")
		jwks    = flag.String("runtime-jwks", "", "accept Keyfort access tokens verified with this JWKS URL (provider-host serve's /.well-known/jwks.json) instead of ID tokens")
	)
	flag.Parse()
	if err := run(*cfgFile, *addr, kvserver.Options{AuthDisabled: *noAuth, RuntimeJWKS: *jwks}); err != nil {
		fmt.Fprintln(os.Stderr, "guarded-kv:", err)
		os.Exit(1)
	}
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
	srv, err := kvserver.New(ctx, cfg, opts)
	if err != nil {
		return err
	}
	defer srv.Close()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	slog.Info("guarded-kv: serving", slog.String("addr", l.Addr().String()), slog.Bool("auth", !opts.AuthDisabled), slog.Bool("keyfort_tokens", opts.RuntimeJWKS != ""))
	go func() { <-ctx.Done(); srv.Close() }()
	return srv.Serve(l)
}
