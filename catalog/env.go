package catalog

import (
	"os"
	"slices"

	"github.com/keyfort/keyfort/config"
	"github.com/keyfort/keyfort/provider/plugin"
	"github.com/keyfort/keyfort/providers/env"
)

// typeEnv are the host variables each built-in adapter reads (its client library's own settings
// and credential chain), beyond plugin.BaselineEnv.
var typeEnv = map[string][]string{
	"vault":  {"VAULT_*"},
	"aws":    {"AWS_*"},
	"gcp":    {"GOOGLE_*", "GCE_METADATA_*", "CLOUDSDK_*"},
	"memory": nil,
	// env: the variables its bindings name (envPatterns).
}

// pluginEnviron is the environment of provider pc's plugin process: the baseline, its type's
// variables, what its bindings name (for env) and its inherit_env, and nothing else from the host,
// so that one adapter's credentials do not reach another's process. Nil (the host's whole
// environment) only when inherit_env or the env provider's reach asks for "*".
func pluginEnviron(cfg *config.Config, pc config.Provider) []string {
	patterns := slices.Concat(typeEnv[pc.Type], pc.InheritEnv)
	if pc.Type == "env" {
		patterns = append(patterns, envPatterns(cfg, pc)...)
	}
	if slices.Contains(patterns, "*") {
		return nil
	}
	return plugin.FilterEnv(os.Environ(), patterns)
}

// envPatterns are the variables an env provider serves: for each location bound to it, its
// variable and the variable's suffixed companions (NAME_PREVIOUS, NAME_ALG, ROLE_USERNAME …); for
// the default binding, every variable under its location (every variable under the prefix, or
// every variable, when the default names no location).
func envPatterns(cfg *config.Config, pc config.Provider) []string {
	prefix, _ := pc.Settings["prefix"].(string)
	var out []string
	for _, b := range cfg.Bindings {
		if b.Provider == pc.Name {
			name := prefix + env.Normalize(b.Location)
			out = append(out, name, name+"_*")
		}
	}
	if d := cfg.Default; d != nil && d.Provider == pc.Name {
		if d.Location != "" {
			out = append(out, prefix+env.Normalize(d.Location+"/")+"*")
		} else {
			out = append(out, prefix+"*")
		}
	}
	return out
}
