package plugin_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keyfort/keyfort/internal/hosttest"
	"github.com/keyfort/keyfort/provider/plugin"
)

// orphanHostEnv makes the test binary act as a host that launches a plugin and waits to be killed.
const orphanHostEnv = "KEYFORT_TEST_ORPHAN_HOST"

func init() {
	if bin := os.Getenv(orphanHostEnv); bin != "" {
		os.Exit(orphanHost(bin))
	}
}

func orphanHost(bin string) int {
	p, err := plugin.Launch(context.Background(), plugin.Config{
		Name: "mem", Path: bin, Args: []string{"plugin", "memory"}, Settings: memorySettings,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err := p.SigningKeys(context.Background(), "signing"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(p.Pid())
	select {} // until killed
}

// alive reports whether pid runs; a zombie (exited, not yet reaped by its new parent) does not.
func alive(pid int) bool {
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// pid (comm) state ...: the state follows the last ')'.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		return len(f) > 0 && f[0] != "Z" && f[0] != "X"
	} else if _, statErr := os.Stat("/proc/self/stat"); statErr == nil {
		return false // /proc works and has no such process
	}
	return syscall.Kill(pid, 0) == nil
}

// TestPluginExitsWhenItsHostIsKilled: a host killed without stopping its plugins (SIGKILL, a crash,
// the OOM killer) leaves no plugin process behind holding secrets.
func TestPluginExitsWhenItsHostIsKilled(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), orphanHostEnv+"="+hosttest.ProviderHost(t))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("the host did not report its plugin: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		t.Fatalf("plugin pid %q: %v", line, err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) }) // should the test fail
	if !alive(pid) {
		t.Fatal("the plugin is not running before its host is killed")
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	deadline := time.Now().Add(30 * time.Second) // a liveness bound, not a performance threshold
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("plugin process %d still runs after its host was killed", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPluginProcessesKeepSecretsOutOfCoreDumps: a plugin process sets its core size limit to zero
// (and, on Linux, makes itself non-dumpable, which internal/harden tests).
func TestPluginProcessesKeepSecretsOutOfCoreDumps(t *testing.T) {
	p := launchMemory(t, plugin.Config{})
	if _, err := p.SigningKeys(context.Background(), "signing"); err != nil {
		t.Fatal(err)
	}
	if soft, hard := hosttest.CoreLimit(t, p.Pid()); soft != "0" || hard != "0" {
		t.Errorf("plugin core size limit %s/%s, want 0/0", soft, hard)
	}
}
