package plugin

import (
	"context"
	"fmt"
	"log/slog"

	goplugin "github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"
	"go.opentelemetry.io/otel/trace"

	"github.com/keyfort/keyfort/provider"
)

// InProcessConfig describes a provider served over the plugin transport inside the calling process.
type InProcessConfig struct {
	// Name is the provider instance's name.
	Name string
	// Factory builds the provider from Settings, exactly as in a plugin process.
	Factory provider.Factory
	// Settings are sent through Configure, as to a plugin process.
	Settings provider.Settings
	// Logger: nil means slog.Default().
	Logger *slog.Logger
	// TracerProvider, when set, records the plugin side's server spans, as [WithTracerProvider] does
	// in a plugin process.
	TracerProvider trace.TracerProvider
}

// ServeInProcess serves a provider built by cfg.Factory on go-plugin's gRPC transport inside this
// process (a goroutine instead of a child process, over a real socket) and returns the host side. Every
// message crosses the same protobuf encoding, error mapping and Configure call as with [Launch], so it
// is how tests exercise the transport without building a binary, and how a host can run a built-in
// provider without a plugin binary.
//
// go-plugin's in-process mode opens two stdio pipes per start that it never closes; they are released
// when the garbage collector finalizes them, so a test that checks for leaked goroutines should run
// runtime.GC first.
func ServeInProcess(ctx context.Context, cfg InProcessConfig) (*Process, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With(slog.String("provider", cfg.Name))
	start := func() (*instance, error) {
		srvCtx, stop := context.WithCancel(context.Background())
		reattach := make(chan *goplugin.ReattachConfig, 1)
		done := make(chan struct{})
		go serve(&server{factory: cfg.Factory}, []ServeOption{func(o *serveOptions) {
			o.test = &goplugin.ServeTestConfig{Context: srvCtx, ReattachConfigCh: reattach, CloseCh: done}
			o.logger = newHCLogAdapter(log.With(slog.String("side", "plugin")), "")
			if cfg.TracerProvider != nil {
				WithTracerProvider(cfg.TracerProvider)(o)
			}
		}})
		var rc *goplugin.ReattachConfig
		select {
		case rc = <-reattach:
			// Watch the serving goroutine instead of a pid: go-plugin would otherwise poll our own pid.
			rc.Pid = 0
			rc.Test = false // so that Kill closes the connection and stops the goroutine through our runner
			rc.ReattachFunc = func() (runner.AttachedRunner, error) { return goroutineRunner{done: done, stop: stop}, nil }
		case <-done:
			stop()
			return nil, provider.NewError(provider.ErrUnavailable, "", fmt.Errorf("in-process plugin server stopped"))
		}
		client := goplugin.NewClient(&goplugin.ClientConfig{
			HandshakeConfig:  Handshake,
			Plugins:          versionedPlugins(nil)[ProtocolVersion],
			Reattach:         rc,
			AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
			GRPCDialOptions:  traceDialOptions(),
			Logger:           newHCLogAdapter(log, ""),
		})
		inst, err := dispense(client, "")
		if err != nil {
			client.Kill()
			stop()
			<-done
			return nil, err
		}
		inst.pid = 0
		inst.exited = func() bool {
			select {
			case <-done:
				return true
			default:
				return false
			}
		}
		inst.stop = func() {
			client.Kill()
			stop()
			<-done
		}
		cctx, cancel := context.WithTimeout(context.Background(), DefaultStartTimeout)
		defer cancel()
		if err := inst.rpc.configure(cctx, cfg.Settings); err != nil {
			inst.kill(killGrace)
			return nil, fromStatus(err)
		}
		return inst, nil
	}
	p := newProcess(cfg.Name, log, start, 0, 0)
	if _, err := p.get(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// goroutineRunner is go-plugin's view of a plugin served by a goroutine of this process.
type goroutineRunner struct {
	done <-chan struct{}
	stop context.CancelFunc
}

func (r goroutineRunner) Wait(ctx context.Context) error {
	select {
	case <-r.done:
	case <-ctx.Done():
	}
	return nil
}

func (r goroutineRunner) Kill(context.Context) error {
	r.stop()
	<-r.done
	return nil
}

func (r goroutineRunner) ID() string { return "in-process" }

func (goroutineRunner) PluginToHost(n, a string) (string, string, error) { return n, a, nil }
func (goroutineRunner) HostToPlugin(n, a string) (string, string, error) { return n, a, nil }
