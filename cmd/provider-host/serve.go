package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	noopmetric "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/keyfort/keyfort/catalog"
	"github.com/keyfort/keyfort/config"
	"github.com/keyfort/keyfort/internal/harden"
	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/identityrpc"
	"github.com/keyfort/keyfort/session/redisstore"
)

func newServeCmd() *cobra.Command {
	var (
		files      []string
		httpAddr   string
		grpcAddr   string
		tlsCert    string
		tlsKey     string
		clientCA   string
		allow      []string
		verbose    bool
		cores      bool
		noMlock    bool
		reflection bool
		forwarded  bool
		drain      time.Duration
		readTO     time.Duration
		maxStreams uint32
	)
	cmd := &cobra.Command{
		Use:   "serve [--config FILE]",
		Short: "Run Keyfort: resolve every configured key, then publish JWKS, health and metrics over HTTP",
		Long: `Load the configuration, start its providers and resolve every configured key; a key whose
material is missing stops start-up with a non-zero exit naming it. Then serve over HTTP:

  /.well-known/jwks.json  public keys of identity.secrets.session_signing (never HS256 secrets)
  /healthz                the process is up
  /readyz                 the signing keys resolve through their provider and the shared session
                          store (Redis, PostgreSQL) answers (503 once shutting down)
  /metrics                Prometheus metrics (provider calls, errors, latency, cache hits)
  /oauth2/introspect      RFC 7662 token introspection, with identity.session.introspection_clients:
                          callers present a client certificate (of --tls-client-ca) on that list

With no configuration at all (no --config, no KEYFORT_* variables) it runs on an ephemeral in-memory
signing key and says so loudly; production: true forbids that.

The gRPC health service follows /readyz (checked every 2 seconds); the log says when readiness
changes. On SIGINT or SIGTERM it stops taking calls: /readyz and the gRPC health service turn to not serving,
calls in flight finish within --shutdown-timeout (then the rest are cancelled), and the providers
close, revoking the leases they issued. On SIGHUP every provider refetches the material it has cached
(a rotation at the backend takes effect before its cache_ttl); the configuration is not reloaded.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level := slog.LevelInfo
			if verbose {
				level = slog.LevelDebug
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			ctx, stop := signalContext(0)
			defer stop()
			if readTO <= 0 {
				return fmt.Errorf("--http-read-timeout must be positive (got %s): without it a client may hold a connection for ever", readTO)
			}
			if maxStreams == 0 {
				return fmt.Errorf("--grpc-max-streams must be at least 1")
			}
			if (tlsCert == "") != (tlsKey == "") {
				return fmt.Errorf("--tls-cert and --tls-key go together")
			}
			if clientCA != "" && tlsCert == "" {
				return fmt.Errorf("--tls-client-ca needs --tls-cert and --tls-key")
			}
			if len(allow) > 0 && clientCA == "" {
				return fmt.Errorf("--tls-client-allow needs --tls-client-ca")
			}
			allowList, err := parseClientAllowList(allow)
			if err != nil {
				return fmt.Errorf("--tls-client-allow: %w", err)
			}
			if forwarded {
				if clientCA != "" {
					return fmt.Errorf("--forwarded-client-cert and --tls-client-ca name callers two ways: behind a sidecar, the sidecar checks client certificates")
				}
				// Whoever can reach serve without the sidecar could write the header: loopback only.
				for flag, addr := range map[string]string{"--grpc-addr": grpcAddr, "--http-addr": httpAddr} {
					if !loopback(addr) {
						return fmt.Errorf("--forwarded-client-cert needs %s on loopback, where only the sidecar reaches it (got %s)", flag, addr)
					}
				}
			}
			if !cores {
				// The process holds signing keys: no core file, no same-user debugger.
				if err := harden.Process(); err != nil {
					log.Warn("keyfort: could not keep secrets out of core dumps", slog.String("error", err.Error()))
				}
			}
			// ... and no swap, where the process may lock its memory.
			locked := !noMlock && harden.LockMemoryLogged(log)
			return serve(ctx, log, files, listeners{http: httpAddr, grpc: grpcAddr, cert: tlsCert, key: tlsKey, clientCA: clientCA, allow: allowList, drain: drain, memoryLocked: locked, reflection: reflection, forwarded: forwarded,
				httpReadTimeout: readTO, grpcMaxStreams: maxStreams})
		},
	}
	cmd.Flags().StringArrayVarP(&files, "config", "c", nil, "configuration file (YAML, TOML or JSON); repeat to layer files")
	cmd.Flags().StringVar(&httpAddr, "http-addr", "127.0.0.1:8080", "address for the JWKS, health and metrics endpoints")
	cmd.Flags().StringVar(&grpcAddr, "grpc-addr", "127.0.0.1:9090", "address of the gRPC identity runtime service")
	cmd.Flags().StringVar(&tlsCert, "tls-cert", "", "PEM certificate (chain) for both listeners, reloaded when the files change; without it they serve plaintext")
	cmd.Flags().StringVar(&tlsKey, "tls-key", "", "PEM private key of --tls-cert")
	cmd.Flags().StringVar(&clientCA, "tls-client-ca", "", "PEM bundle of CAs: the gRPC listener then requires a client certificate that chains to one (mutual TLS; reloaded when the file changes). The HTTP listener asks for one only with identity.session.introspection_clients, for /oauth2/introspect")
	cmd.Flags().BoolVar(&forwarded, "forwarded-client-cert", false, "behind a sidecar proxy that terminates mutual TLS (Envoy, Istio): name callers by the client certificate in its x-forwarded-client-cert header, for token binding and introspection; both listeners must be on loopback")
	cmd.Flags().StringArrayVar(&allow, "tls-client-allow", nil, "with --tls-client-ca, an identity a client certificate must carry (repeat for several): a URI SAN such as a SPIFFE ID, exact or ending in /* for any under that path, or a DNS SAN")
	cmd.Flags().DurationVar(&drain, "shutdown-timeout", 10*time.Second, "on SIGTERM, how long calls in flight (and open streams) may take to finish before they are cancelled")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "debug logging")
	cmd.Flags().BoolVar(&reflection, "grpc-reflection", false, "serve the gRPC reflection service, for grpcurl and the like (off by default; behind the same TLS and client certificates as the other services)")
	cmd.Flags().BoolVar(&noMlock, "no-memory-lock", false, "leave the process's memory swappable (by default, with CAP_IPC_LOCK or an unlimited RLIMIT_MEMLOCK, it is locked into RAM so that signing keys never reach swap)")
	cmd.Flags().DurationVar(&readTO, "http-read-timeout", 10*time.Second, "how long an HTTP request (TLS handshake, headers and body) may take to arrive before its connection is closed: a client trickling bytes holds a connection no longer")
	cmd.Flags().Uint32Var(&maxStreams, "grpc-max-streams", 1000, "calls one gRPC connection may have in flight at once (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS); further calls wait")
	cmd.Flags().BoolVar(&cores, "allow-core-dumps", false, "leave core dumps and same-user debugging on (by default the process, which holds signing keys, is made non-dumpable)")
	return cmd
}

// listeners are the addresses serve listens on, the TLS certificate both use when set, and how long
// a shutdown waits for calls in flight.
type listeners struct {
	http, grpc string
	cert, key  string
	clientCA   string           // CAs of the gRPC listener's client certificates (mutual TLS); needs cert
	allow      *clientAllowList // identities a client certificate must carry (nil: any of the CAs)
	drain      time.Duration
	// memoryLocked reports that the process's memory is locked (keyfort_process_memory_locked).
	memoryLocked bool
	// reflection serves the gRPC reflection service (--grpc-reflection).
	reflection bool
	// forwarded names callers by the x-forwarded-client-cert header of a sidecar
	// (--forwarded-client-cert).
	forwarded bool
	// httpReadTimeout bounds the arrival of an HTTP request (--http-read-timeout); grpcMaxStreams
	// the calls in flight on one gRPC connection (--grpc-max-streams).
	httpReadTimeout time.Duration
	grpcMaxStreams  uint32
}

// Bounds of the listeners beside their flags: what a client may hold without sending a request.
const (
	// httpWriteTimeout bounds writing a response (/metrics is the largest).
	httpWriteTimeout = 30 * time.Second
	// httpIdleTimeout closes a kept-alive connection with no request.
	httpIdleTimeout = 2 * time.Minute
	// httpMaxHeaderBytes bounds a request's headers (net/http's default is 1 MiB); a token is at
	// most 16 KiB, and nothing else here needs large headers.
	httpMaxHeaderBytes = 64 << 10
	// grpcHandshakeTimeout bounds a new gRPC connection's TLS and HTTP/2 handshake (grpc-go's
	// default is two minutes).
	grpcHandshakeTimeout = 10 * time.Second
)

func serve(ctx context.Context, log *slog.Logger, files []string, l listeners) error {
	// SIGHUP refetches the providers' material once serving (refreshOnHangup); one that arrives
	// during start-up waits for it instead of killing the process (the signal's default).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	redisstore.RouteClientLogs(log) // go-redis's reconnection and failover lines, in serve's log
	httpAddr, grpcAddr := l.http, l.grpc
	var tlsCfg *tls.Config
	if l.cert != "" {
		certs, err := newCertReloader(l.cert, l.key, log)
		if err != nil {
			log.Error("keyfort: --tls-cert/--tls-key", slog.String("error", err.Error()))
			return exitCode(exitInvalidConfig)
		}
		tlsCfg = certs.tlsConfig()
	}
	cfg, err := config.Load(config.Source{Files: files})
	if err != nil {
		log.Error(err.Error())
		return exitCode(exitInvalidConfig)
	}
	grpcTLS, httpTLS := tlsCfg, tlsCfg
	if l.clientCA != "" {
		cas, err := newClientCAReloader(l.clientCA, log)
		if err != nil {
			log.Error("keyfort: --tls-client-ca", slog.String("error", err.Error()))
			return exitCode(exitInvalidConfig)
		}
		grpcTLS = cas.mutualTLS(tlsCfg, l.allow)
		if len(cfg.Session.IntrospectionClients) > 0 {
			// RFC 7662 introspection on the HTTP listener: its callers are named by certificate too.
			httpTLS = cas.optionalTLS(tlsCfg)
		}
	}
	if len(cfg.Session.IntrospectionClients) > 0 && l.clientCA == "" && !l.forwarded {
		// Its callers are named by their certificate: without client certificates no one could call it.
		log.Error("keyfort: identity.session.introspection_clients needs client certificates: serve with --tls-client-ca (or --forwarded-client-cert behind a sidecar)")
		return exitCode(exitInvalidConfig)
	}
	if cfg.Session.BindAccess && l.clientCA == "" && !l.forwarded {
		// Without client certificates there is no client to bind to: every access token would be a
		// bearer token, which the setting says must not be.
		log.Error("keyfort: identity.session.bind_access_to_client needs client certificates: serve with --tls-client-ca (or --forwarded-client-cert behind a sidecar)")
		return exitCode(exitInvalidConfig)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	memLocked := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "keyfort", Subsystem: "process", Name: "memory_locked",
		Help: "1 when serve's memory is locked into RAM (no swap for its signing keys), 0 when it is not."})
	if l.memoryLocked {
		memLocked.Set(1)
	}
	reg.MustRegister(memLocked)
	metrics, err := provider.NewMetrics(reg)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	sdkTP, err := newTracerProvider(ctx, log, "keyfort")
	if err != nil {
		log.Error("keyfort: tracing", slog.String("error", err.Error()))
		return exitCode(exitInvalidConfig)
	}
	var tp trace.TracerProvider // nil unless the environment asks for traces
	if sdkTP != nil {
		tp = sdkTP
		defer func() {
			// Spans still batched are sent before the process exits.
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = sdkTP.Shutdown(sctx)
		}()
	}
	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	cat, err := catalog.Open(startCtx, cfg, catalog.Options{HostBinary: self, Verify: true, Logger: log, Metrics: metrics, TracerProvider: tp})
	cancel()
	if err != nil {
		log.Error("keyfort: start-up failed", slog.String("error", err.Error()))
		var missing *catalog.MissingError
		if errors.As(err, &missing) {
			return exitCode(exitFailing)
		}
		return exitCode(exitInvalidConfig)
	}
	defer cat.Close()

	mux := http.NewServeMux()
	var revoked *session.RevokedKeys // set before the listeners serve
	mux.HandleFunc("GET /.well-known/jwks.json", func(w http.ResponseWriter, r *http.Request) {
		ks, err := cat.SigningKeys(r.Context(), config.SessionSigningKey)
		if err != nil {
			log.Warn("keyfort: jwks unavailable", slog.String("error", err.Error()))
			http.Error(w, "signing keys unavailable", http.StatusServiceUnavailable)
			return
		}
		// A revoked key is published no more: services verifying with the JWKS drop it at their
		// next fetch.
		ks.Keys = slices.DeleteFunc(slices.Clone(ks.Keys), func(k provider.Key) bool { return revoked.Revoked(k.ID) })
		body, err := ks.PublicJWKS()
		if err != nil {
			http.Error(w, "signing keys unavailable", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Header().Set("Cache-Control", "public, max-age=60")
		_, _ = w.Write(body)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = fmt.Fprintln(w, "ok") })
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))

	// /readyz gives the shared store this long to answer: long enough for a pool busy under load
	// (a PostgreSQL ping waits for a free connection), short against a probe's own timeout.
	const readyStoreTimeout = 2 * time.Second
	// healthInterval is how often the gRPC health service is brought up to date with those checks.
	const healthInterval = 2 * time.Second
	runtime, err := newIdentityRuntime(ctx, cfg, cat, log, reg, grpcTLS, l, tp)
	if err != nil {
		log.Error("keyfort: start-up failed", slog.String("error", err.Error()))
		return exitCode(exitInvalidConfig)
	}
	defer runtime.close()
	revoked = runtime.revoked
	if len(cfg.Session.IntrospectionClients) > 0 {
		var h http.Handler = runtime.service.IntrospectionHandler()
		if tp != nil {
			// Services in other languages introspect over HTTP: their calls join their traces too.
			// JWKS, health and metrics are not traced (probes and scrapes would drown the rest).
			h = otelhttp.NewHandler(h, "POST "+identityrpc.IntrospectionPath, otelhttp.WithTracerProvider(tp),
				otelhttp.WithPropagators(propagation.TraceContext{}), otelhttp.WithMeterProvider(noopmetric.NewMeterProvider()))
		}
		mux.Handle(identityrpc.IntrospectionPath, h)
	}
	var draining atomic.Bool
	pinger, _ := runtime.manager.Store().(session.Pinger)
	// notReady says why this replica should get no calls ("" when it should): shutting down, no
	// signing keys, or a shared store it cannot reach.
	notReady := func(ctx context.Context) string {
		if draining.Load() {
			return "shutting down"
		}
		if _, err := cat.SigningKeys(ctx, config.SessionSigningKey); err != nil {
			return "signing keys unavailable"
		}
		if pinger != nil {
			pctx, cancel := context.WithTimeout(ctx, readyStoreTimeout)
			defer cancel()
			if err := pinger.Ping(pctx); err != nil {
				return "session store unreachable"
			}
		}
		return ""
	}
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if why := notReady(r.Context()); why != "" {
			http.Error(w, "not ready: "+why, http.StatusServiceUnavailable)
			return
		}
		_, _ = fmt.Fprintln(w, "ready")
	})
	// SIGHUP: refetch every provider's material now instead of at the end of its cache TTL (a
	// rotation, or a compromised key removed at its backend, takes effect at once).
	go refreshOnHangup(ctx, hup, cat, log)
	// The gRPC health service follows the same checks, every healthInterval, and the log says
	// when readiness changes (a probe of /readyz alone leaves no trace).
	hctx, stopHealth := context.WithCancel(ctx)
	defer stopHealth()
	go func() {
		t := time.NewTicker(healthInterval)
		defer t.Stop()
		last := ""
		for {
			select {
			case <-hctx.Done():
				return
			case <-t.C:
			}
			why := notReady(hctx)
			if why == last || draining.Load() {
				continue
			}
			if why != "" {
				log.Warn("keyfort: not ready", slog.String("reason", why))
				runtime.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
			} else {
				log.Info("keyfort: ready again")
				runtime.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
			}
			last = why
		}
	}()

	ln, err := net.Listen("tcp", httpAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", httpAddr, err)
	}
	scheme := "http://"
	if httpTLS != nil {
		ln = tls.NewListener(ln, httpTLS)
		scheme = "https://"
	}
	gln, err := net.Listen("tcp", grpcAddr)
	if err != nil {
		_ = ln.Close()
		return fmt.Errorf("listen on %s: %w", grpcAddr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: min(5*time.Second, l.httpReadTimeout), ReadTimeout: l.httpReadTimeout,
		WriteTimeout: httpWriteTimeout, IdleTimeout: httpIdleTimeout, MaxHeaderBytes: httpMaxHeaderBytes}
	log.Info("keyfort: serving", slog.String("http", scheme+ln.Addr().String()), slog.String("grpc", gln.Addr().String()),
		slog.Bool("tls", tlsCfg != nil), slog.Bool("grpc_client_certs", l.clientCA != ""), slog.Bool("grpc_client_allow_list", l.allow != nil), slog.Bool("forwarded_client_cert", l.forwarded),
		slog.Any("config", cfg.Sources), slog.Int("keys", len(cfg.Keys())), slog.Any("identity_providers", runtime.idps),
		slog.String("session_store", runtime.storeName), slog.String("dpop", runtime.dpopMode), slog.Bool("tracing", tp != nil))
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	go func() { errc <- runtime.grpc.Serve(gln) }()
	select {
	case err := <-errc:
		runtime.grpc.Stop()
		_ = srv.Close()
		return err
	case <-ctx.Done():
	}
	log.Info("keyfort: shutting down: not ready any more, waiting for calls in flight", slog.Duration("timeout", l.drain))
	// Load balancers see the readiness probe and the gRPC health service turn first; the HTTP
	// server answers them until the gRPC calls have drained.
	draining.Store(true)
	runtime.health.Shutdown()
	drained := make(chan struct{})
	go func() { runtime.grpc.GracefulStop(); close(drained) }()
	timer := time.NewTimer(l.drain)
	defer timer.Stop()
	select {
	case <-drained:
	case <-timer.C:
		// GracefulStop waits for every stream, and a client's open stream (a health watch, say)
		// never ends by itself.
		log.Warn("keyfort: calls still in flight at the shutdown timeout: cancelling them", slog.Duration("timeout", l.drain))
		runtime.grpc.Stop()
		<-drained
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutdownCtx)
}

// loopback reports whether addr (host:port) listens on a loopback address only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// refreshTimeout bounds the refetch a SIGHUP starts.
const refreshTimeout = 30 * time.Second

// refreshOnHangup refetches every provider's cached material on each SIGHUP of hup until ctx ends, and logs
// what the signing key set is then (its kids, never a value).
func refreshOnHangup(ctx context.Context, hup <-chan os.Signal, cat *catalog.Catalog, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		log.Info("keyfort: SIGHUP: refetching every provider's material")
		rctx, cancel := context.WithTimeout(ctx, refreshTimeout)
		err := cat.Refresh(rctx)
		ks, kerr := cat.SigningKeys(rctx, config.SessionSigningKey)
		cancel()
		if err != nil {
			log.Warn("keyfort: SIGHUP: some material could not be refetched; the last good is still served", slog.String("error", err.Error()))
		}
		if kerr != nil {
			log.Warn("keyfort: SIGHUP: signing keys unavailable", slog.String("error", kerr.Error()))
			continue
		}
		kids := make([]string, 0, len(ks.Keys))
		for _, k := range ks.Keys {
			kids = append(kids, k.ID)
		}
		log.Info("keyfort: SIGHUP: refetched", slog.String("active_kid", ks.ActiveID), slog.Any("kids", kids))
	}
}
