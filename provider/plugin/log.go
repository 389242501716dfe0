package plugin

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// newHCLogAdapter gives go-plugin an hclog.Logger that writes into slog: hclog renders each line as
// JSON into slogWriter, which re-emits it as an slog record with the same level and fields.
//
// bin, when set, is the binary's path for a plugin started through a descriptor (pinnedCommand):
// go-plugin names such a plugin after /proc/self/fd/3, which the lines then show as bin again.
func newHCLogAdapter(log *slog.Logger, bin string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       "go-plugin",
		Output:     &slogWriter{log: log, bin: bin},
		JSONFormat: true,
		Level:      hclog.Debug,
	})
}

type slogWriter struct {
	log *slog.Logger
	bin string
}

func (w *slogWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimSpace(string(p)), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			w.log.Info(line)
			continue
		}
		level := slog.LevelInfo
		switch rec["@level"] {
		case "trace", "debug":
			level = slog.LevelDebug
		case "warn":
			level = slog.LevelWarn
		case "error":
			level = slog.LevelError
		}
		// go-plugin's own lifecycle chatter ("starting plugin", "plugin process exited") is debug
		// detail for Keyfort's operators; the plugin's own lines (module "go-plugin.<binary>") keep
		// their levels, and Keyfort logs restarts itself.
		if rec["@module"] == "go-plugin" && level == slog.LevelInfo {
			level = slog.LevelDebug
		}
		msg, _ := rec["@message"].(string)
		attrs := make([]slog.Attr, 0, len(rec))
		for k, v := range rec {
			switch k {
			case "@level", "@message", "@timestamp", "@caller", "timestamp":
				// "timestamp" is the plugin line's own time, which go-plugin adds to its fields;
				// the host's record has its time already.
				continue
			case "@module":
				k = "module"
				if w.bin != "" && v == "go-plugin."+filepath.Base(pinnedPath) {
					v = "go-plugin." + filepath.Base(w.bin)
				}
			case "plugin":
				if w.bin != "" && v == pinnedPath {
					v = w.bin
				}
			}
			attrs = append(attrs, slog.Any(k, v))
		}
		w.log.LogAttrs(context.Background(), level, msg, attrs...)
	}
	return len(p), nil
}
