package harden

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestMemlockRefusal: all memory is locked only where later growth cannot hit a limit.
func TestMemlockRefusal(t *testing.T) {
	const eightMiB = 8 << 20
	for _, tc := range []struct {
		name   string
		limit  uint64
		capEff uint64
		ok     bool
	}{
		{"unlimited", unix.RLIM_INFINITY, 0, true},
		{"CAP_IPC_LOCK", eightMiB, 1 << capIPCLock, true},
		{"root's full set", 0, 0x1ffffffffff, true},
		{"a finite limit without the capability", eightMiB, 1<<capIPCLock - 1, false},
		{"no limit left", 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			why := memlockRefusal(tc.limit, tc.capEff)
			if (why == "") != tc.ok {
				t.Fatalf("refusal %q, want allowed=%v", why, tc.ok)
			}
			if !tc.ok && !strings.Contains(why, "RLIMIT_MEMLOCK") {
				t.Errorf("the refusal does not name the limit: %q", why)
			}
		})
	}
}
