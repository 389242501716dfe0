package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"

	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/provider/plugin"
	"github.com/keyfort/keyfort/providers/aws"
	"github.com/keyfort/keyfort/providers/env"
	"github.com/keyfort/keyfort/providers/gcp"
	"github.com/keyfort/keyfort/providers/memory"
	"github.com/keyfort/keyfort/providers/vault"
)

// builtins lists every adapter this binary serves, explicitly (no init-time registration).
var builtins = map[string]provider.Factory{
	"aws":    aws.Factory,
	"memory": memory.Factory,
	"env":    env.Factory,
	"gcp":    gcp.Factory,
	"vault":  vault.Factory,
}

// providerNone is the empty identity: admin commands ask for credentials as the provider itself.
var providerNone = provider.Sensitive{}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		if code, ok := err.(exitCode); ok {
			return int(code)
		}
		fmt.Fprintln(stderr, "provider-host:", err)
		return 1
	}
	return 0
}

// exitCode is returned by commands that already reported their outcome and only need an exit status.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "provider-host",
		Short: "Keyfort's provider host: built-in provider plugins and admin commands",
		Long: `provider-host is Keyfort's one binary. It runs the identity runtime (serve), serves the built-in
provider adapters as go-plugin plugins (Keyfort's host library starts "provider-host plugin NAME" for
each configured provider), and administers a deployment: check and get inspect a configuration,
migrate prepares the PostgreSQL session store, list-sessions and end-sessions show and end a
subject's sessions, revoke-key withdraws a leaked signing key everywhere, and bench load-tests the
runtime.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newServeCmd(), newBenchCmd(), newPluginCmd(), newCheckCmd(), newGetCmd(), newMigrateCmd(), newListSessionsCmd(), newEndSessionsCmd(), newRevokeKeyCmd(), newVersionCmd())
	return root
}

func builtinNames() []string {
	names := make([]string, 0, len(builtins))
	for n := range builtins {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func newPluginCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "plugin NAME",
		Short: "Serve a built-in provider as a go-plugin plugin (started by the host, not by hand)",
		Long: fmt.Sprintf(`Serve the built-in provider NAME over go-plugin's gRPC transport. The Keyfort host starts this
command itself; run by hand it refuses, because the plugin handshake cookie is missing.

Built-in providers: %v`, builtinNames()),
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, ok := builtins[args[0]]
			if !ok {
				return fmt.Errorf("no built-in provider %q (built-in: %v)", args[0], builtinNames())
			}
			if os.Getenv(plugin.Handshake.MagicCookieKey) != plugin.Handshake.MagicCookieValue {
				return fmt.Errorf("this command is started by a Keyfort host as a plugin, not by hand; try \"provider-host check --config FILE\"")
			}
			var opts []plugin.ServeOption
			tp, err := newTracerProvider(cmd.Context(), nil, "keyfort-plugin-"+args[0], attribute.String("keyfort.plugin.type", args[0]))
			if err != nil {
				// The host reads this from stderr in its log; the plugin runs untraced rather than
				// not at all (serve, which shares the environment, refuses it at start).
				fmt.Fprintf(cmd.ErrOrStderr(), "keyfort: tracing: %v\n", err)
			}
			if tp != nil {
				opts = append(opts, plugin.WithTracerProvider(tp))
				// The backend SDKs' own spans, under the plugin's span of the call: GCP's gRPC
				// instrumentation uses the process's global provider (Vault's and AWS's HTTP
				// requests take the provider of the span in the call's context).
				otel.SetTracerProvider(tp)
				defer func() {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					_ = tp.Shutdown(ctx)
				}()
			}
			plugin.ServeFactory(f, opts...)
			return nil
		},
	}
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version and the plugin protocol version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "provider-host %s (plugin protocol %d; built-in providers: %v)\n",
				version, plugin.ProtocolVersion, builtinNames())
			return nil
		},
	}
}
