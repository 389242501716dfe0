package main_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyfort/keyfort/internal/hosttest"
	"github.com/keyfort/keyfort/provider/plugin"
)

// TestSystemdUnit keeps examples/systemd/keyfort.service true to the binary: systemd accepts it
// (systemd-analyze verify, where systemd is installed: no error and no warning, such as an unknown
// or misspelled directive), every flag of its ExecStart is one serve has, it reloads with SIGHUP,
// its stop signals reach serve (KillMode control-group or mixed), and it waits long enough before
// SIGKILL for serve to drain, end its sessions and stop its plugins.
func TestSystemdUnit(t *testing.T) {
	unitPath := filepath.Join("..", "..", "examples", "systemd", "keyfort.service")
	body, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	directives := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	var line string
	for sc.Scan() {
		line += strings.TrimSpace(sc.Text())
		if strings.HasSuffix(line, `\`) { // continued on the next line
			line = strings.TrimSuffix(line, `\`) + " "
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			directives[k] = v
		}
		line = ""
	}

	exe := strings.Fields(directives["ExecStart"])
	if len(exe) < 2 || exe[0] != "/usr/local/bin/provider-host" || exe[1] != "serve" {
		t.Fatalf("ExecStart %q: want /usr/local/bin/provider-host serve …", directives["ExecStart"])
	}
	help := run(t, nil, "serve", "--help").stdout
	shutdown := 10 * time.Second // serve's default
	for i, arg := range exe[2:] {
		if !strings.HasPrefix(arg, "--") {
			continue
		}
		if !strings.Contains(help, "  "+arg+" ") && !strings.Contains(help, ", "+arg+" ") {
			t.Errorf("ExecStart passes %s, which serve does not have", arg)
		}
		if arg == "--shutdown-timeout" && i+3 < len(exe) {
			if shutdown, err = time.ParseDuration(exe[i+3]); err != nil {
				t.Errorf("--shutdown-timeout %q: %v", exe[i+3], err)
			}
		}
	}
	if r := directives["ExecReload"]; !strings.Contains(r, "-HUP $MAINPID") {
		t.Errorf("ExecReload %q: want a SIGHUP to serve, which refetches material", r)
	}
	if m := directives["KillMode"]; m != "control-group" && m != "mixed" {
		t.Errorf("KillMode %q: want control-group or mixed, whose SIGTERM reaches serve", m)
	}
	stop, err := time.ParseDuration(directives["TimeoutStopSec"] + "s")
	if err != nil {
		t.Fatalf("TimeoutStopSec %q: %v", directives["TimeoutStopSec"], err)
	}
	if need := shutdown + plugin.DefaultCloseTimeout; stop < need {
		t.Errorf("TimeoutStopSec %v: want at least the shutdown timeout plus the plugins' close timeout, %v", stop, need)
	}
	if directives["LimitMEMLOCK"] != "infinity" || directives["LimitCORE"] != "0" {
		t.Errorf("LimitMEMLOCK %q, LimitCORE %q: want infinity (keys locked out of swap) and 0", directives["LimitMEMLOCK"], directives["LimitCORE"])
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze is not installed here: the unit's syntax is not verified")
		return
	}
	// verify checks that ExecStart's binary exists: point it at this checkout's build.
	unit := filepath.Join(t.TempDir(), "keyfort.service")
	if err := os.WriteFile(unit, []byte(strings.ReplaceAll(string(body), exe[0], hosttest.ProviderHost(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", unit).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
