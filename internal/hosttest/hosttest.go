package hosttest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

var (
	mu    sync.Mutex
	dir   string
	built = map[string]string{}
)

// ProviderHost returns the path of a provider-host binary built from this checkout.
func ProviderHost(tb testing.TB) string {
	return Build(tb, "github.com/keyfort/keyfort/cmd/provider-host")
}

// Build builds the main package pkg once per test process and returns the binary's path.
func Build(tb testing.TB, pkg string) string {
	tb.Helper()
	mu.Lock()
	defer mu.Unlock()
	if p, ok := built[pkg]; ok {
		return p
	}
	if dir == "" {
		d, err := os.MkdirTemp("", "keyfort-hosttest-")
		if err != nil {
			tb.Fatalf("hosttest: %v", err)
		}
		dir = d
	}
	out := filepath.Join(dir, strings.ReplaceAll(pkg, "/", "_"))
	cmd := exec.Command(goBin(), "build", "-o", out, pkg)
	if msg, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("hosttest: go build %s: %v\n%s", pkg, err, msg)
	}
	built[pkg] = out
	return out
}

// Cleanup removes the binaries; call it from TestMain after m.Run.
func Cleanup() {
	mu.Lock()
	defer mu.Unlock()
	if dir != "" {
		_ = os.RemoveAll(dir)
		dir = ""
		built = map[string]string{}
	}
}

func goBin() string {
	// The toolchain that built this test binary, whatever go is first on PATH.
	p := filepath.Join(runtime.GOROOT(), "bin", "go") //lint:ignore SA1019 the build's own GOROOT is the one wanted

	if _, err := os.Stat(p); err == nil {
		return p
	}
	return "go"
}

// Main runs a test binary's tests, removes the binaries built for them, and fails the run when
// goroutines leak. go-plugin's in-process mode leaves stdio pipes to the garbage collector (see
// plugin.ServeInProcess), so it collects garbage before looking. Call it from TestMain.
func Main(m interface{ Run() int }, ignore ...goleak.Option) {
	code := m.Run()
	Cleanup()
	if code == 0 {
		runtime.GC()
		if err := goleak.Find(ignore...); err != nil {
			println("goleak:", err.Error())
			code = 1
		}
	}
	os.Exit(code)
}

// CoreLimit returns the soft and hard core file size limits of process pid as /proc shows them
// ("0", "unlimited", …); the test is skipped where there is no /proc.
func CoreLimit(tb testing.TB, pid int) (soft, hard string) {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		if _, statErr := os.Stat("/proc/self/limits"); statErr != nil {
			tb.Skipf("no /proc/PID/limits here: %v", err)
		}
		tb.Fatalf("hosttest: %v", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Max core file size"); ok {
			f := strings.Fields(rest)
			if len(f) >= 2 {
				return f[0], f[1]
			}
		}
	}
	tb.Fatalf("hosttest: no core limit in /proc/%d/limits", pid)
	return "", ""
}
