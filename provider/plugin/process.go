package plugin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goplugin "github.com/hashicorp/go-plugin"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/keyfort/keyfort/internal/providerpb/v1"
	"github.com/keyfort/keyfort/provider"
)

// Defaults for [Config]'s zero values.
const (
	DefaultStartTimeout = 30 * time.Second
	DefaultMinBackoff   = 100 * time.Millisecond
	DefaultMaxBackoff   = 30 * time.Second
	DefaultProbeTimeout = 5 * time.Second
	DefaultCloseTimeout = 30 * time.Second
	// killGrace is how long go-plugin's graceful stop may take before the process is killed.
	killGrace = 2 * time.Second
	// maxAttempts bounds how often an idempotent call is tried on fresh processes.
	maxAttempts = 3
)

// Config describes a plugin process to launch.
type Config struct {
	// Name is the provider instance's configured name, for logs and errors.
	Name string
	// Path is the plugin binary.
	Path string
	// Args are passed to the binary ("plugin", "vault" for a built-in served by provider-host).
	Args []string
	// SHA256 pins the binary: when set (hex), go-plugin refuses to start a binary with another digest.
	SHA256 string
	// Settings are sent to the plugin's Configure call after every start.
	Settings provider.Settings
	// Environ is the plugin's environment ("K=V") before GOMAXPROCS and Env. Nil: the host's whole
	// environment. FilterEnv makes a least-privilege one (catalog.Open does, per provider).
	Environ []string
	// Env is added to the plugin's environment; it can override GOMAXPROCS.
	Env []string
	// MaxProcs is the plugin process's GOMAXPROCS. Zero: 1 — a provider plugin relays calls to a
	// backend, and with one P the hand-offs between gRPC's goroutines on every call happen on one
	// thread instead of waking another (about a fifth of a round trip here, see
	// docs/performance.md). Negative: Go's default (every CPU), for a plugin that computes.
	MaxProcs int
	// Logger receives the host's supervision messages and the plugin's own log lines; nil: slog.Default().
	Logger *slog.Logger
	// StartTimeout bounds a start and its Configure call. Zero: [DefaultStartTimeout].
	StartTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between failed restarts, doubling from one to the other.
	// Zero: [DefaultMinBackoff], [DefaultMaxBackoff].
	MinBackoff, MaxBackoff time.Duration
	// ProbeTimeout bounds the liveness probe that follows a call whose deadline expired in the
	// plugin: a plugin whose gRPC server does not answer within it (a stopped, frozen or wedged
	// process) is killed and replaced. A slow backend does not fail the probe. Zero:
	// [DefaultProbeTimeout].
	ProbeTimeout time.Duration
	// OnRestart, when set, is called each time a plugin process is replaced, with the reason:
	// "exited" (it died), "connection" (its connection broke), "unresponsive" (it answered no
	// liveness probe). provider.Metrics.Restarted counts them. It runs under the Process's lock:
	// keep it short, and do not call the Process from it.
	OnRestart func(reason string)
	// CloseTimeout bounds Close's request that the plugin close its provider (which revokes what it
	// leased); after it the process is killed. Zero: [DefaultCloseTimeout].
	CloseTimeout time.Duration
}

// Process is a supervised plugin process, seen as an [provider.IdentitySecretMaterialProvider] with every
// optional capability (each returning [provider.ErrUnimplemented] when the plugin lacks it). A process
// that dies is restarted (with backoff after consecutive failed starts) and reconfigured; idempotent
// calls are retried on the fresh process. Process is safe for concurrent use; wrap it in a
// provider.Client for caching, timeouts and metrics.
type Process struct {
	name  string
	log   *slog.Logger
	start func() (*instance, error)

	minBackoff, maxBackoff     time.Duration
	probeTimeout, closeTimeout time.Duration
	probes                     sync.WaitGroup
	onRestart                  func(reason string)

	mu         sync.Mutex
	cur        *instance
	starting   chan struct{} // closed when the start under way ends
	failures   int
	notBefore  time.Time
	lastErr    error
	closed     bool
	restarts   atomic.Int64
	generation atomic.Int64
}

var (
	_ provider.IdentitySecretMaterialProvider = (*Process)(nil)
	_ provider.Signer                         = (*Process)(nil)
	_ provider.HealthChecker                  = (*Process)(nil)
	_ provider.KeyRotator                     = (*Process)(nil)
	_ provider.Watcher                        = (*Process)(nil)
)

type instance struct {
	rpc     *rpcClient
	exited  func() bool
	stop    func()      // go-plugin's stop: asks the plugin to exit, then kills it
	process *os.Process // for a kill that a frozen plugin cannot hold up
	pid     int
	addr    net.Addr // where the plugin listens (AutoMTLS: only this host's certificate is served)
	probing atomic.Bool
}

// kill stops the plugin process, giving it grace to exit by itself. go-plugin's stop asks the plugin
// over gRPC first and waits for the answer with no deadline, so a frozen process would hold it
// forever: past the grace the process is killed, which ends that wait.
func (inst *instance) kill(grace time.Duration) {
	done := make(chan struct{})
	go func() { inst.stop(); close(done) }()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
		return
	case <-t.C:
	}
	if inst.process != nil {
		_ = inst.process.Kill() // os.Process signals through a pidfd: never another process
	}
	<-done
}

// Launch starts the plugin binary, checks its handshake (and its digest when pinned), configures it and
// returns the supervised process. A plugin that cannot start or refuses its settings is an error here,
// so misconfiguration fails loudly at start-up.
func Launch(ctx context.Context, cfg Config) (*Process, error) {
	if cfg.Path == "" {
		return nil, provider.NewError(provider.ErrInvalidConfig, cfg.Name, errors.New("no plugin binary path"))
	}
	var (
		secure *goplugin.SecureConfig
		pinned []byte
	)
	if cfg.SHA256 != "" {
		sum, err := hex.DecodeString(cfg.SHA256)
		if err != nil || len(sum) != sha256.Size {
			return nil, provider.NewError(provider.ErrInvalidConfig, cfg.Name, fmt.Errorf("sha256 of %s is not 64 hex digits", cfg.Path))
		}
		if pinnedExec {
			pinned = sum
		} else {
			secure = &goplugin.SecureConfig{Checksum: sum, Hash: sha256.New()}
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With(slog.String("provider", cfg.Name))
	startTimeout := orDefault(cfg.StartTimeout, DefaultStartTimeout)
	pinnedName := ""
	if pinned != nil {
		pinnedName = cfg.Path
	}
	start := func() (*instance, error) {
		cmd := exec.Command(cfg.Path, cfg.Args...)
		var bin *pinnedFile
		if pinned != nil {
			// Checked and started from one open file, on every (re)start.
			var err error
			if bin, err = openPinned(cfg.Path, pinned); err != nil {
				return nil, err
			}
			defer bin.Close() // the child has its own descriptor once started
			cmd = pinnedCommand(bin.File, cfg.Path, cfg.Args)
		}
		cmd.Env = pluginEnv(cfg.Environ, cfg.MaxProcs, cfg.Env)
		client := goplugin.NewClient(&goplugin.ClientConfig{
			SkipHostEnv:      true, // pluginEnv has it, so that GOMAXPROCS is ours, not the host's
			HandshakeConfig:  Handshake,
			VersionedPlugins: versionedPlugins(nil),
			Cmd:              cmd,
			SecureConfig:     secure,
			AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
			GRPCDialOptions:  traceDialOptions(),
			AutoMTLS:         true,
			StartTimeout:     startTimeout,
			Logger:           newHCLogAdapter(log, pinnedName),
		})
		inst, err := dispense(client, pinnedName)
		if err != nil {
			client.Kill()
			return nil, err
		}
		inst.process = cmd.Process
		if bin != nil {
			if err := bin.unchanged(); err != nil {
				inst.kill(killGrace)
				return nil, err
			}
		}
		cctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		defer cancel()
		if err := inst.rpc.configure(cctx, cfg.Settings); err != nil {
			inst.kill(killGrace)
			return nil, fromStatus(err)
		}
		return inst, nil
	}
	p := newProcess(cfg.Name, log, start, cfg.MinBackoff, cfg.MaxBackoff)
	p.probeTimeout = orDefault(cfg.ProbeTimeout, DefaultProbeTimeout)
	p.closeTimeout = orDefault(cfg.CloseTimeout, DefaultCloseTimeout)
	p.onRestart = cfg.OnRestart
	if _, err := p.get(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// dispense starts the plugin process of client and returns its provider. bin, when set, is the
// path of a binary started through its descriptor (pinnedCommand), which errors then name in place
// of the descriptor's path.
func dispense(client *goplugin.Client, bin string) (*instance, error) {
	cp, err := client.Client()
	if err != nil {
		return nil, classifyStartError(renamed(err, bin))
	}
	raw, err := cp.Dispense(PluginName)
	if err != nil {
		return nil, classifyStartError(renamed(err, bin))
	}
	rc, ok := raw.(*rpcClient)
	if !ok {
		return nil, provider.NewError(provider.ErrInternal, "", fmt.Errorf("plugin dispensed %T", raw))
	}
	inst := &instance{rpc: rc, exited: client.Exited, stop: client.Kill}
	if rc := client.ReattachConfig(); rc != nil {
		inst.pid, inst.addr = rc.Pid, rc.Addr
	}
	return inst, nil
}

// renamedError is an error whose text names a binary by its path rather than by the descriptor
// it was started through (go-plugin describes a plugin that failed to start by its command's path).
type renamedError struct {
	err error
	bin string
}

func (e renamedError) Error() string { return strings.ReplaceAll(e.err.Error(), pinnedPath, e.bin) }
func (e renamedError) Unwrap() error { return e.err }

func renamed(err error, bin string) error {
	if bin == "" || pinnedPath == "" {
		return err
	}
	return renamedError{err, bin}
}

func classifyStartError(err error) error {
	if errors.Is(err, goplugin.ErrChecksumsDoNotMatch) || errors.Is(err, goplugin.ErrSecureConfigNoHash) ||
		errors.Is(err, goplugin.ErrSecureConfigNoChecksum) {
		return provider.NewError(provider.ErrPermissionDenied, "", fmt.Errorf("plugin binary refused: %w", err))
	}
	if errors.Is(err, exec.ErrNotFound) {
		return provider.NewError(provider.ErrInvalidConfig, "", err)
	}
	return provider.NewError(provider.ErrUnavailable, "", fmt.Errorf("plugin did not start: %w", err))
}

func newProcess(name string, log *slog.Logger, start func() (*instance, error), minB, maxB time.Duration) *Process {
	return &Process{
		name: name, log: log, start: start,
		minBackoff:   orDefault(minB, DefaultMinBackoff),
		maxBackoff:   orDefault(maxB, DefaultMaxBackoff),
		probeTimeout: DefaultProbeTimeout,
		closeTimeout: DefaultCloseTimeout,
	}
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Pid returns the current plugin process id, or 0 when none runs.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == nil {
		return 0
	}
	return p.cur.pid
}

// Restarts returns how many times the plugin was restarted after dying.
func (p *Process) Restarts() int64 { return p.restarts.Load() }

// get returns a live instance, starting one (single-flight, with backoff after failures) when needed.
func (p *Process) get(ctx context.Context) (*instance, error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, provider.NewError(provider.ErrClosed, "", nil)
		}
		if p.cur != nil && !p.cur.exited() {
			inst := p.cur
			p.mu.Unlock()
			return inst, nil
		}
		if p.cur != nil {
			p.log.Warn("keyfort: plugin process exited; restarting", slog.Int("pid", p.cur.pid))
			p.cur.kill(killGrace)
			p.cur = nil
			p.restarted("exited")
		}
		if ch := p.starting; ch != nil {
			p.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, provider.NewError(provider.ErrUnavailable, "", fmt.Errorf("waiting for plugin start: %w", ctx.Err()))
			}
		}
		if wait := time.Until(p.notBefore); wait > 0 {
			lastErr := p.lastErr
			p.mu.Unlock()
			if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
				return nil, provider.NewError(provider.ErrUnavailable, "",
					fmt.Errorf("plugin restart backing off for %s after %w", wait.Round(time.Millisecond), lastErr))
			}
			t := time.NewTimer(wait)
			select {
			case <-t.C:
				continue
			case <-ctx.Done():
				t.Stop()
				return nil, provider.NewError(provider.ErrUnavailable, "", ctx.Err())
			}
		}
		ch := make(chan struct{})
		p.starting = ch
		p.mu.Unlock()

		inst, err := p.start()

		p.mu.Lock()
		p.starting = nil
		close(ch)
		if err != nil {
			p.failures++
			backoff := p.minBackoff << min(p.failures-1, 16)
			if backoff > p.maxBackoff || backoff <= 0 {
				backoff = p.maxBackoff
			}
			p.notBefore = time.Now().Add(backoff)
			p.lastErr = err
			p.mu.Unlock()
			p.log.Error("keyfort: plugin failed to start", slog.String("error", err.Error()),
				slog.Int("failures", p.failures), slog.Duration("backoff", backoff))
			if span := trace.SpanFromContext(ctx); span.IsRecording() {
				span.AddEvent("keyfort.plugin.start_failed", trace.WithAttributes(
					attribute.String("keyfort.error.kind", provider.KindName(provider.KindOf(err)))))
			}
			return nil, err
		}
		if p.closed {
			p.mu.Unlock()
			inst.kill(killGrace)
			return nil, provider.NewError(provider.ErrClosed, "", nil)
		}
		p.failures = 0
		p.lastErr = nil
		p.cur = inst
		gen := p.generation.Add(1)
		p.mu.Unlock()
		if span := trace.SpanFromContext(ctx); span.IsRecording() {
			// The call that (re)started the plugin waited for it: say so on its span.
			span.AddEvent("keyfort.plugin.started", trace.WithAttributes(attribute.Int("keyfort.plugin.pid", inst.pid),
				attribute.Int64("keyfort.plugin.generation", int64(gen))))
		}
		return inst, nil
	}
}

// drop forgets inst after a failure, so that the next get starts a fresh process, and stops it
// (with grace to exit by itself, or none when it stopped answering). Calls still in flight on it
// fail as a transport failure, and idempotent ones are retried on the fresh process.
func (p *Process) drop(inst *instance, reason, why string, grace time.Duration) {
	p.mu.Lock()
	if p.cur != inst {
		p.mu.Unlock()
		return
	}
	p.log.Warn("keyfort: "+why+"; restarting the plugin", slog.Int("pid", inst.pid))
	p.cur = nil
	p.restarted(reason)
	p.mu.Unlock()
	inst.kill(grace)
}

func (p *Process) restarted(reason string) {
	p.restarts.Add(1)
	if p.onRestart != nil {
		p.onRestart(reason)
	}
}

// suspect probes inst after a call's deadline expired in it, once at a time: a plugin whose gRPC
// server does not answer within the probe timeout is frozen or wedged, and is replaced.
func (p *Process) suspect(inst *instance) {
	if !inst.probing.CompareAndSwap(false, true) {
		return
	}
	p.probes.Add(1)
	go func() {
		defer p.probes.Done()
		defer inst.probing.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), p.probeTimeout)
		defer cancel()
		if err := inst.rpc.alive(ctx); err == nil || inst.exited() {
			return // it answers (the call was slow, not the plugin), or it died and get restarts it
		}
		p.drop(inst, "unresponsive", fmt.Sprintf("plugin process did not answer a liveness probe within %s", p.probeTimeout), 0)
	}()
}

// do runs fn on a live instance. Transport failures drop the instance; idempotent calls are then
// retried on a fresh one, up to maxAttempts in all.
func (p *Process) do(ctx context.Context, idempotent bool, fn func(*rpcClient) error) error {
	var lastErr error
	for attempt := 1; ; attempt++ {
		inst, err := p.get(ctx)
		if err != nil {
			if lastErr != nil {
				return provider.NewError(provider.ErrUnavailable, "", fmt.Errorf("%w (after: %v)", err, lastErr))
			}
			return err
		}
		err = fn(inst.rpc)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				p.suspect(inst)
			}
			return fromStatus(err)
		}
		if !isTransportFailure(err) {
			return fromStatus(err)
		}
		p.drop(inst, "connection", "plugin connection failed", killGrace)
		lastErr = err
		retry := idempotent && attempt < maxAttempts
		if span := trace.SpanFromContext(ctx); span.IsRecording() {
			span.AddEvent("keyfort.plugin.connection_failed", trace.WithAttributes(
				attribute.Int("keyfort.plugin.attempt", attempt), attribute.Bool("keyfort.plugin.retry", retry)))
		}
		if !retry {
			return provider.NewError(provider.ErrUnavailable, "", fmt.Errorf("plugin process failed: %w", err))
		}
	}
}

func (p *Process) capable(ctx context.Context, c pb.Capability, op string) error {
	inst, err := p.get(ctx)
	if err != nil {
		return err
	}
	if !inst.rpc.caps[c] {
		return provider.NewError(provider.ErrUnimplemented, "", fmt.Errorf("plugin does not implement %s", op))
	}
	return nil
}

// SigningKeys implements provider.IdentitySecretMaterialProvider.
func (p *Process) SigningKeys(ctx context.Context, name string) (ks provider.KeySet, err error) {
	err = p.do(ctx, true, func(c *rpcClient) (e error) { ks, e = c.SigningKeys(ctx, name); return })
	return ks, err
}

// Secret implements provider.IdentitySecretMaterialProvider.
func (p *Process) Secret(ctx context.Context, name string) (s provider.Secret, err error) {
	err = p.do(ctx, true, func(c *rpcClient) (e error) { s, e = c.Secret(ctx, name); return })
	return s, err
}

// Credentials implements provider.IdentitySecretMaterialProvider. It is not retried: a plugin that died
// after issuing credentials may have created a lease the host never saw.
func (p *Process) Credentials(ctx context.Context, req provider.CredentialRequest) (cr provider.Credentials, err error) {
	err = p.do(ctx, false, func(c *rpcClient) (e error) { cr, e = c.Credentials(ctx, req); return })
	return cr, err
}

// Renew implements provider.IdentitySecretMaterialProvider.
func (p *Process) Renew(ctx context.Context, lease provider.Lease) (l provider.Lease, err error) {
	err = p.do(ctx, true, func(c *rpcClient) (e error) { l, e = c.Renew(ctx, lease); return })
	return l, err
}

// Revoke implements provider.IdentitySecretMaterialProvider.
func (p *Process) Revoke(ctx context.Context, lease provider.Lease) error {
	return p.do(ctx, true, func(c *rpcClient) error { return c.Revoke(ctx, lease) })
}

// Sign implements provider.Signer when the plugin does.
func (p *Process) Sign(ctx context.Context, name, kid string, payload []byte) (sig []byte, err error) {
	if err := p.capable(ctx, pb.Capability_CAPABILITY_SIGNER, "Sign"); err != nil {
		return nil, err
	}
	err = p.do(ctx, true, func(c *rpcClient) (e error) { sig, e = c.Sign(ctx, name, kid, payload); return })
	return sig, err
}

// Health implements provider.HealthChecker when the plugin does; a plugin without a health check is
// healthy when it answers.
func (p *Process) Health(ctx context.Context) error {
	if err := p.capable(ctx, pb.Capability_CAPABILITY_HEALTH_CHECKER, "Health"); err != nil {
		if errors.Is(err, provider.ErrUnimplemented) {
			return nil
		}
		return err
	}
	return p.do(ctx, true, func(c *rpcClient) error { return c.Health(ctx) })
}

// RotateSigningKey implements provider.KeyRotator when the plugin does. It is not retried.
func (p *Process) RotateSigningKey(ctx context.Context, name string) (ks provider.KeySet, err error) {
	if err := p.capable(ctx, pb.Capability_CAPABILITY_KEY_ROTATOR, "RotateSigningKey"); err != nil {
		return provider.KeySet{}, err
	}
	err = p.do(ctx, false, func(c *rpcClient) (e error) { ks, e = c.RotateSigningKey(ctx, name); return })
	return ks, err
}

// Watch implements provider.Watcher when the plugin does: it follows the current plugin process's
// changes until ctx ends or the process goes (a restart ends the watch with ErrUnavailable; a new
// Watch follows the new process and opens with Change{}).
func (p *Process) Watch(ctx context.Context, fn func(provider.Change)) error {
	if err := p.capable(ctx, pb.Capability_CAPABILITY_WATCHER, "Watch"); err != nil {
		return err
	}
	inst, err := p.get(ctx)
	if err != nil {
		return err
	}
	err = inst.rpc.watch(ctx, fn)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if isTransportFailure(err) {
		return provider.NewError(provider.ErrUnavailable, "", fmt.Errorf("plugin process failed: %w", err))
	}
	return fromStatus(err)
}

// Close asks the plugin to close its provider (waiting up to the close timeout), then stops the
// process. It is idempotent.
func (p *Process) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	inst := p.cur
	p.cur = nil
	p.mu.Unlock()
	defer p.probes.Wait()
	if inst == nil {
		return nil
	}
	var err error
	if !inst.exited() {
		ctx, cancel := context.WithTimeout(context.Background(), p.closeTimeout)
		err = inst.rpc.closeWithin(ctx)
		cancel()
		if status.Code(err) == codes.DeadlineExceeded {
			p.log.Error("keyfort: plugin did not close its provider within the close timeout; killing it",
				slog.Int("pid", inst.pid), slog.Duration("timeout", p.closeTimeout))
			inst.kill(0)
			return provider.NewError(provider.ErrUnavailable, "", fmt.Errorf("plugin did not close within %s", p.closeTimeout))
		}
	}
	inst.kill(killGrace)
	if err != nil && !isTransportFailure(err) {
		return fromStatus(err)
	}
	return nil
}
