package hosttest

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Freeze stops process pid with SIGSTOP (alive, answering nothing) and returns once every one of
// its threads is stopped: the signal is only queued when kill returns, and on a loaded machine a
// thread can still answer a request in between. The process is killed when the test ends.
func Freeze(tb testing.TB, pid int) {
	tb.Helper()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	for range 5000 {
		if allStopped(pid) {
			return
		}
		time.Sleep(time.Millisecond)
	}
	tb.Fatalf("process %d did not stop after SIGSTOP", pid)
}

// allStopped reports whether every thread of pid is in the stopped state (T).
func allStopped(pid int) bool {
	stats, _ := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "stat"))
	if len(stats) == 0 {
		return false
	}
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			return false
		}
		// The state is the first field after the command name, which is in parentheses.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || i+2 >= len(s) || s[i+2] != 'T' {
			return false
		}
	}
	return true
}
