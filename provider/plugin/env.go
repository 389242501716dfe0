package plugin

import (
	"os"
	"slices"
	"strconv"
	"strings"
)

// BaselineEnv are the host's environment variables every plugin process receives when its
// environment is filtered (see FilterEnv): what a program needs to find binaries, files, the time
// zone, proxies and CA certificates, the Go runtime's settings and the OpenTelemetry exporter's
// (so that a plugin's spans reach the host's collector; see baselineExcluded). None of them is a
// credential.
var BaselineEnv = []string{
	"PATH", "HOME", "USER", "LOGNAME", "TMPDIR", "TZ", "LANG", "LC_*",
	"SSL_CERT_FILE", "SSL_CERT_DIR",
	"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
	"GODEBUG", "GOTRACEBACK", "GOGC", "GOMEMLIMIT", "GORACE", "GOCOVERDIR", "GRPC_GO_*",
	"OTEL_*",
}

// baselineExcluded are the names BaselineEnv's patterns match that a plugin does not receive unless
// a pattern of its own names them: the OTLP exporter's headers may hold a collector's API key, and
// the host's service name would hide which process a span comes from.
var baselineExcluded = []string{"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_SERVICE_NAME"}

// FilterEnv returns the entries of environ ("K=V") whose name is in BaselineEnv or matches one of
// patterns: a name, a prefix ending in "*", or "*" (every entry). It is how a host gives each
// plugin only the variables it needs, so that one adapter's credentials (VAULT_TOKEN,
// AWS_SECRET_ACCESS_KEY …) do not reach another adapter's process.
func FilterEnv(environ, patterns []string) []string {
	out := make([]string, 0, len(BaselineEnv))
	for _, kv := range environ {
		name, _, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		if (envMatch(name, BaselineEnv) && !slices.Contains(baselineExcluded, name)) || envMatch(name, patterns) {
			out = append(out, kv)
		}
	}
	return out
}

func envMatch(name string, patterns []string) bool {
	for _, p := range patterns {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if strings.HasPrefix(name, prefix) {
				return true
			}
		} else if name == p {
			return true
		}
	}
	return false
}

// pluginEnv is base (nil: the host's environment), then GOMAXPROCS (unless maxProcs < 0), then
// extra; a later entry wins over an earlier one of the same name.
func pluginEnv(base []string, maxProcs int, extra []string) []string {
	env := base
	if env == nil {
		env = os.Environ()
	}
	env = slices.Clip(env) // appends below never write into the caller's array
	if maxProcs >= 0 {
		env = append(env, "GOMAXPROCS="+strconv.Itoa(max(maxProcs, 1)))
	}
	return append(env, extra...)
}
