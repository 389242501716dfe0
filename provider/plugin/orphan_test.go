package plugin_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keyfort/keyfort/internal/harden"
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

// TestPluginProcessesLockTheirMemory: a plugin process locks its memory into RAM where it may
// (CAP_IPC_LOCK or an unlimited RLIMIT_MEMLOCK, as for root here), so that the keys it holds never
// reach swap, and says so in the host's log; where it may not, it runs unlocked and says why. The
// line also shows that a plugin's log lines reach the host's log as records with their own level,
// message and fields (they arrived as raw JSON at debug level until 2026-11-30).
func TestPluginProcessesLockTheirMemory(t *testing.T) {
	var log hosttest.Log
	p := launchMemory(t, plugin.Config{Logger: slog.New(slog.NewJSONHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if _, err := p.SigningKeys(context.Background(), "signing"); err != nil {
		t.Fatal(err)
	}
	n, err := harden.LockedBytes(p.Pid())
	if err != nil {
		t.Fatal(err)
	}
	why := harden.CanLockMemory()
	want := map[string]any{"level": "INFO", "msg": "keyfort: memory locked; secret material stays out of swap", "provider": "mem"}
	switch {
	case why == nil && n == 0:
		t.Error("the plugin may lock its memory and did not")
	case why != nil && n != 0:
		t.Errorf("the plugin locked %d bytes although %v", n, why)
	case why != nil:
		t.Logf("this machine does not lock: %v", why)
		want = map[string]any{"level": "INFO", "msg": "keyfort: memory not locked; secret material may reach swap", "provider": "mem", "reason": why.Error()}
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if rec := findRecord(t, log.String(), want); rec != nil {
			if _, dup := rec["timestamp"]; dup {
				t.Errorf("the record carries the plugin's timestamp as a field: %v", rec)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the host's log has no record %v:\n%s", want, log.String())
		}
	}
}

// findRecord returns the first record of the JSON log with every field of want, or nil.
func findRecord(t *testing.T, log string, want map[string]any) map[string]any {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		match := true
		for k, v := range want {
			if rec[k] != v {
				match = false
				break
			}
		}
		if match {
			return rec
		}
	}
	return nil
}

// TestPluginOutlivesASIGTERMSentToItsHostsGroup: a supervisor stopping a service often signals all
// of its processes at once (systemd's KillMode=control-group, `timeout`, `kill -TERM -PGID`), and
// a SIGHUP meant for the host may reach its plugins too. A plugin ignores the SIGHUP; on a SIGTERM it
// keeps serving its host, which still needs it to revoke leases while it shuts down,
// and exits cleanly when the host stops it. A second SIGTERM ends it (closing its provider); the
// host then starts a new process at the next call.
func TestPluginOutlivesASIGTERMSentToItsHostsGroup(t *testing.T) {
	var log hosttest.Log
	var restarts []string
	p := launchMemory(t, plugin.Config{
		Logger:    slog.New(slog.NewJSONHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		OnRestart: func(r string) { restarts = append(restarts, r) },
	})
	ctx := context.Background()
	if _, err := p.SigningKeys(ctx, "signing"); err != nil {
		t.Fatal(err)
	}
	pid := p.Pid()
	// A SIGHUP to the group (a reload of the host's material, a terminal's hang-up) and a SIGINT (a
	// terminal's Ctrl-C) are the host's.
	for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGINT} {
		if err := syscall.Kill(pid, sig); err != nil {
			t.Fatal(err)
		}
	}
	waitRecord := func(want map[string]any) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); findRecord(t, log.String(), want) == nil; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the host's log has no record %v:\n%s", want, log.String())
			}
		}
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitRecord(map[string]any{"level": "INFO", "msg": "keyfort: SIGTERM received; serving until the host stops this plugin", "provider": "mem"})
	if _, err := p.SigningKeys(ctx, "signing"); err != nil {
		t.Fatalf("a call after the SIGTERM: %v", err)
	}
	if p.Pid() != pid || !alive(pid) || len(restarts) != 0 {
		t.Fatalf("the plugin did not outlive the SIGTERM: pid %d → %d, restarts %v", pid, p.Pid(), restarts)
	}

	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitRecord(map[string]any{"level": "WARN", "msg": "keyfort: closing the provider and exiting", "reason": "a second SIGTERM", "provider": "mem"})
	for deadline := time.Now().Add(30 * time.Second); alive(pid); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("plugin process %d still runs after a second SIGTERM", pid)
		}
	}
	if _, err := p.SigningKeys(ctx, "signing"); err != nil {
		t.Fatalf("the call after the plugin exited: %v", err)
	}
	if p.Pid() == pid {
		t.Error("the host did not start a new plugin process")
	}
}
