package plugin

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	"github.com/keyfort/keyfort/internal/harden"
	pb "github.com/keyfort/keyfort/internal/providerpb/v1"
	"github.com/keyfort/keyfort/provider"
)

// ServeOption configures [Serve] and [ServeFactory].
type ServeOption func(*serveOptions)

type serveOptions struct {
	logLevel  slog.Level
	test      *goplugin.ServeTestConfig
	logger    hclog.Logger
	coreDumps bool
	noMlock   bool
	tracer    trace.Tracer
}

// WithCoreDumps leaves core dumps and same-user debugging on, for debugging a plugin. By default a
// plugin process, which holds secret material, sets its core size limit to zero and (on Linux) makes
// itself non-dumpable, so that no core file and no unprivileged process of the same user can read
// its memory.
func WithCoreDumps() ServeOption { return func(o *serveOptions) { o.coreDumps = true } }

// WithoutMemoryLock leaves the plugin's memory swappable. By default a plugin process that may lock
// all its memory (it has CAP_IPC_LOCK, or RLIMIT_MEMLOCK is unlimited) locks it into RAM, present
// and future, so that the secret material it holds never reaches swap; one that may not says so in
// its log and runs unlocked. Locked memory cannot be reclaimed: it counts fully against a
// container's memory limit.
func WithoutMemoryLock() ServeOption { return func(o *serveOptions) { o.noMlock = true } }

// WithLogLevel sets the plugin's log level (default Info). Logs go to stderr as JSON that the host
// re-emits through its own logger, so the plugin's lines appear in the host's log with their levels.
func WithLogLevel(l slog.Level) ServeOption { return func(o *serveOptions) { o.logLevel = l } }

// Serve serves impl as a Keyfort provider plugin over go-plugin's gRPC transport and returns when the
// host stops the plugin, after closing impl. The host's Configure call is ignored, except that an impl
// implementing [Configurable] receives the settings.
//
// The host owns the plugin's life. SIGINT and SIGHUP are ignored (go-plugin's rule for SIGINT: a
// terminal's Ctrl-C reaches the host, which stops its plugins in order; a SIGHUP sent to the host's
// group to reload its material, or its terminal's hang-up, is the host's too). The first SIGTERM
// is logged and the plugin keeps serving for up to [TermGrace], because a supervisor stopping the
// service signals the host and its plugins together and the host still needs the plugin to revoke
// leases as it shuts down; a second SIGTERM, or the grace running out, closes impl and exits. A
// plugin whose host dies closes impl and exits within a second.
func Serve(impl provider.IdentitySecretMaterialProvider, opts ...ServeOption) {
	serve(&server{impl: impl}, opts)
}

// ServeFactory serves the provider that f builds from the settings the host sends when it configures
// the plugin. This is how built-in adapters run in provider-host, and the easiest way for a plugin to
// take settings from Keyfort's configuration.
func ServeFactory(f provider.Factory, opts ...ServeOption) {
	serve(&server{factory: f}, opts)
}

// Configurable is implemented by a provider served with [Serve] that wants the host's settings.
type Configurable interface {
	Configure(ctx context.Context, settings provider.Settings) error
}

func serve(srv *server, opts []ServeOption) {
	o := serveOptions{logLevel: slog.LevelInfo}
	for _, opt := range opts {
		opt(&o)
	}
	if o.test == nil {
		slog.SetDefault(newPluginLogger(o.logLevel))
	}
	if o.logger == nil {
		o.logger = hclog.New(&hclog.LoggerOptions{Output: os.Stderr, JSONFormat: true, Level: hclogLevel(o.logLevel)})
	}
	if o.test == nil && !o.coreDumps {
		if err := harden.Process(); err != nil {
			slog.Warn("keyfort: could not keep secrets out of core dumps", slog.String("error", err.Error()))
		}
	}
	if o.test == nil && !o.noMlock {
		harden.LockMemoryLogged(slog.Default())
	}
	if o.test == nil {
		releaseStartFile()
		go watchParent(context.Background(), srv, os.Getppid(), parentPoll, os.Exit)
		// A hang-up of the host's terminal, or a SIGHUP sent to its whole group to reload its
		// material, is the host's business: by default it would kill the plugin.
		signal.Ignore(syscall.SIGHUP)
		term := make(chan os.Signal, 2)
		signal.Notify(term, syscall.SIGTERM)
		go awaitHost(context.Background(), srv, term, TermGrace, os.Exit)
	}
	goplugin.Serve(&goplugin.ServeConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: versionedPlugins(srv),
		GRPCServer:       serverTracing{tracer: o.tracer}.grpcServer,
		Logger:           o.logger,
		Test:             o.test,
	})
	_, _ = srv.Close(context.Background(), nil)
}

// server adapts a provider to the gRPC service.
type server struct {
	pb.UnimplementedProviderServiceServer

	mu      sync.RWMutex
	impl    provider.IdentitySecretMaterialProvider
	factory provider.Factory
	closed  bool
}

var errNotConfigured = errors.New("plugin is not configured yet: the host must call Configure first")

func (s *server) get() (provider.IdentitySecretMaterialProvider, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, provider.NewError(provider.ErrClosed, "", nil)
	}
	if s.impl == nil {
		return nil, provider.NewError(provider.ErrInvalidConfig, "", errNotConfigured)
	}
	return s.impl, nil
}

func (s *server) Configure(ctx context.Context, req *pb.ConfigureRequest) (*pb.ConfigureResponse, error) {
	settings := provider.NewSettings(req.GetName(), req.GetSettingsJson())
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, toStatus(provider.NewError(provider.ErrClosed, "", nil))
	}
	if s.factory != nil {
		impl, err := s.factory(ctx, settings)
		if err != nil {
			return nil, toStatus(err)
		}
		if s.impl != nil {
			_ = s.impl.Close()
		}
		s.impl = impl
	} else if c, ok := s.impl.(Configurable); ok {
		if err := c.Configure(ctx, settings); err != nil {
			return nil, toStatus(err)
		}
	}
	return &pb.ConfigureResponse{Capabilities: capabilitiesOf(s.impl)}, nil
}

func capabilitiesOf(p provider.IdentitySecretMaterialProvider) []pb.Capability {
	var caps []pb.Capability
	if _, ok := p.(provider.Signer); ok {
		caps = append(caps, pb.Capability_CAPABILITY_SIGNER)
	}
	if _, ok := p.(provider.HealthChecker); ok {
		caps = append(caps, pb.Capability_CAPABILITY_HEALTH_CHECKER)
	}
	if _, ok := p.(provider.KeyRotator); ok {
		caps = append(caps, pb.Capability_CAPABILITY_KEY_ROTATOR)
	}
	if _, ok := p.(provider.Watcher); ok {
		caps = append(caps, pb.Capability_CAPABILITY_WATCHER)
	}
	return caps
}

func (s *server) SigningKeys(ctx context.Context, req *pb.SigningKeysRequest) (*pb.SigningKeysResponse, error) {
	p, err := s.get()
	if err != nil {
		return nil, toStatus(err)
	}
	ks, err := p.SigningKeys(ctx, req.GetName())
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.SigningKeysResponse{KeySet: keySetOut(ks)}, nil
}

func (s *server) Secret(ctx context.Context, req *pb.SecretRequest) (*pb.SecretResponse, error) {
	p, err := s.get()
	if err != nil {
		return nil, toStatus(err)
	}
	sec, err := p.Secret(ctx, req.GetName())
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.SecretResponse{Name: sec.Name, Version: sec.Version, Value: sec.Value.Reveal(), CreatedAt: tsOut(sec.CreatedAt)}, nil
}

func (s *server) Credentials(ctx context.Context, req *pb.CredentialsRequest) (*pb.CredentialsResponse, error) {
	p, err := s.get()
	if err != nil {
		return nil, toStatus(err)
	}
	c, err := p.Credentials(ctx, provider.CredentialRequest{Role: req.GetRole(), Identity: provider.NewSensitive(req.GetIdentity())})
	if err != nil {
		return nil, toStatus(err)
	}
	return credentialsOut(c), nil
}

func (s *server) Renew(ctx context.Context, req *pb.RenewRequest) (*pb.RenewResponse, error) {
	p, err := s.get()
	if err != nil {
		return nil, toStatus(err)
	}
	l, err := p.Renew(ctx, leaseIn(req.GetLease()))
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.RenewResponse{Lease: leaseOut(l)}, nil
}

func (s *server) Revoke(ctx context.Context, req *pb.RevokeRequest) (*pb.RevokeResponse, error) {
	p, err := s.get()
	if err != nil {
		return nil, toStatus(err)
	}
	if err := p.Revoke(ctx, leaseIn(req.GetLease())); err != nil {
		return nil, toStatus(err)
	}
	return &pb.RevokeResponse{}, nil
}

func (s *server) Sign(ctx context.Context, req *pb.SignRequest) (*pb.SignResponse, error) {
	p, err := s.get()
	if err != nil {
		return nil, toStatus(err)
	}
	signer, ok := p.(provider.Signer)
	if !ok {
		return nil, toStatus(provider.NewError(provider.ErrUnimplemented, req.GetName(), errors.New("provider cannot sign")))
	}
	sig, err := signer.Sign(ctx, req.GetName(), req.GetKeyId(), req.GetPayload())
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.SignResponse{Signature: sig}, nil
}

func (s *server) Health(ctx context.Context, _ *pb.HealthRequest) (*pb.HealthResponse, error) {
	p, err := s.get()
	if err != nil {
		return nil, toStatus(err)
	}
	h, ok := p.(provider.HealthChecker)
	if !ok {
		return nil, toStatus(provider.NewError(provider.ErrUnimplemented, "", errors.New("provider has no health check")))
	}
	if err := h.Health(ctx); err != nil {
		return nil, toStatus(err)
	}
	return &pb.HealthResponse{}, nil
}

// Watch streams the provider's changes to the host until the host cancels the call.
func (s *server) Watch(_ *pb.WatchRequest, stream grpc.ServerStreamingServer[pb.Change]) error {
	p, err := s.get()
	if err != nil {
		return toStatus(err)
	}
	w, ok := p.(provider.Watcher)
	if !ok {
		return toStatus(provider.NewError(provider.ErrUnimplemented, "", errors.New("provider does not report changes")))
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	var sendErr error
	err = w.Watch(ctx, func(ch provider.Change) {
		if sendErr == nil {
			if sendErr = stream.Send(&pb.Change{Name: ch.Name}); sendErr != nil {
				cancel() // the host is gone: end the provider's watch
			}
		}
	})
	if sendErr != nil {
		return sendErr
	}
	if stream.Context().Err() != nil {
		return nil // the host ended the watch
	}
	return toStatus(err)
}

func (s *server) RotateSigningKey(ctx context.Context, req *pb.SigningKeysRequest) (*pb.SigningKeysResponse, error) {
	p, err := s.get()
	if err != nil {
		return nil, toStatus(err)
	}
	r, ok := p.(provider.KeyRotator)
	if !ok {
		return nil, toStatus(provider.NewError(provider.ErrUnimplemented, req.GetName(), errors.New("provider cannot rotate keys")))
	}
	ks, err := r.RotateSigningKey(ctx, req.GetName())
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.SigningKeysResponse{KeySet: keySetOut(ks)}, nil
}

func (s *server) Close(context.Context, *pb.CloseRequest) (*pb.CloseResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return &pb.CloseResponse{}, nil
	}
	s.closed = true
	if s.impl != nil {
		if err := s.impl.Close(); err != nil && !errors.Is(err, provider.ErrClosed) {
			return nil, toStatus(err)
		}
	}
	return &pb.CloseResponse{}, nil
}

// newPluginLogger writes slog records to stderr as JSON with hclog's key names, which go-plugin's host
// parses back into levelled, structured log lines.
// hclogTimeFormat is the "@timestamp" layout of hclog's JSON lines, which go-plugin's host requires.
const hclogTimeFormat = "2006-01-02T15:04:05.000000Z07:00"

func newPluginLogger(level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				// hclog's layout, which go-plugin's host parses exactly: with slog's nanoseconds it
				// took every line for plain text and logged it raw at debug level.
				a.Key = "@timestamp"
				a.Value = slog.StringValue(a.Value.Time().Format(hclogTimeFormat))
			case slog.LevelKey:
				a.Key = "@level"
				a.Value = slog.StringValue(strings.ToLower(a.Value.String()))
			case slog.MessageKey:
				a.Key = "@message"
			}
			return a
		},
	}))
}

func hclogLevel(l slog.Level) hclog.Level {
	switch {
	case l <= slog.LevelDebug:
		return hclog.Debug
	case l <= slog.LevelInfo:
		return hclog.Info
	case l <= slog.LevelWarn:
		return hclog.Warn
	default:
		return hclog.Error
	}
}
