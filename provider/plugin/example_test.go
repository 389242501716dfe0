package plugin_test

import (
	"context"
	"log"

	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/provider/plugin"
	"github.com/keyfort/keyfort/providers/memory"
)

// The whole main of a custom provider plugin: build the provider, then serve it. The host launches
// the binary (providers.<name>.path in the configuration), configures it, and supervises it. (Not
// run here: Serve talks to the host that started the process.)
func ExampleServe() {
	p, err := memory.New(context.Background(), memory.Config{Secrets: map[string]string{"greeting": "hello"}})
	if err != nil {
		log.Fatal(err)
	}
	plugin.Serve(p)
}

// A plugin that takes its settings from Keyfort's configuration (providers.<name>.settings) serves a
// factory: the host sends the settings, and the factory builds the provider from them.
func ExampleServeFactory() {
	plugin.ServeFactory(func(ctx context.Context, s provider.Settings) (provider.IdentitySecretMaterialProvider, error) {
		var cfg memory.Config
		if err := s.Decode(&cfg); err != nil {
			return nil, err
		}
		return memory.New(ctx, cfg)
	})
}
