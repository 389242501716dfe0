package providertest

import (
	"context"
	"testing"

	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/provider/plugin"
)

// Ways says how to build one provider three ways.
type Ways struct {
	// Name is the provider instance's name.
	Name string
	// Factory builds the provider from Settings.
	Factory provider.Factory
	// Settings are the provider's settings in every way.
	Settings provider.Settings
	// Binary and Args start the plugin process ("provider-host", "plugin", "vault"); Env is added to
	// its environment.
	Binary string
	Args   []string
	Env    []string
	// ForBinary, when set, adjusts the Config for the binary way (a fixture the test cannot change
	// inside another process).
	ForBinary func(*Config)
}

// RunAllWays runs the suite against the provider in process, over the plugin transport in this
// process (plugin.ServeInProcess), and against the plugin binary (plugin.Launch). cfg.NewProvider is
// set for each way.
func RunAllWays(t *testing.T, w Ways, cfg Config) {
	t.Helper()
	inProcess := cfg
	inProcess.NewProvider = func(t *testing.T) provider.IdentitySecretMaterialProvider {
		p, err := w.Factory(context.Background(), w.Settings)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Run("InProcess", func(t *testing.T) { Run(t, inProcess) })

	transport := cfg
	transport.NewProvider = func(t *testing.T) provider.IdentitySecretMaterialProvider {
		p, err := plugin.ServeInProcess(context.Background(), plugin.InProcessConfig{Name: w.Name, Factory: w.Factory, Settings: w.Settings})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Run("OverPluginTransport", func(t *testing.T) { Run(t, transport) })

	if w.Binary == "" {
		t.Run("PluginBinary", func(t *testing.T) { t.Fatal("providertest: Ways.Binary is not set") })
		return
	}
	binary := cfg
	if w.ForBinary != nil {
		w.ForBinary(&binary)
	}
	binary.NewProvider = func(t *testing.T) provider.IdentitySecretMaterialProvider {
		p, err := plugin.Launch(context.Background(), plugin.Config{Name: w.Name, Path: w.Binary, Args: w.Args, Env: w.Env, Settings: w.Settings})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Run("PluginBinary", func(t *testing.T) { Run(t, binary) })
}
