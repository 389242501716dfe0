//go:build unix

package harden

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// childEnv makes the test binary harden itself and report, so that the test process stays as it is.
const childEnv = "KEYFORT_TEST_HARDEN_CHILD"

// memlockChildEnv makes the test binary lock its memory and report how much is locked.
const memlockChildEnv = "KEYFORT_TEST_MEMLOCK_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(memlockChildEnv) != "" {
		err := LockMemory()
		n, lerr := LockedBytes(0)
		if lerr != nil {
			fmt.Println("error:", lerr)
			os.Exit(1)
		}
		fmt.Printf("locked=%d err=%v\n", n, err)
		os.Exit(0)
	}
	if os.Getenv(childEnv) != "" {
		if err := Process(); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		var lim unix.Rlimit
		if err := unix.Getrlimit(unix.RLIMIT_CORE, &lim); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		d, err := dumpable()
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Printf("core=%d/%d dumpable=%v\n", lim.Cur, lim.Max, d)
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// TestProcessDisablesCoreDumps: after Process, the core size limit is zero (soft and hard) and the
// process is not dumpable.
func TestProcessDisablesCoreDumps(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v: %s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "core=0/0 dumpable=false" {
		t.Errorf("after Process: %s, want core=0/0 dumpable=false", got)
	}
}

// TestLockMemory: a process allowed to lock all its memory (CAP_IPC_LOCK or no RLIMIT_MEMLOCK)
// has it locked after LockMemory; one that is not (or a race-detector build) locks nothing and is
// told why. Which of the two this machine shows depends on its user and limits; the decision
// itself is TestMemlockRefusal's. (The plugin and serve tests check a real lock in the binaries
// Keyfort ships, which are not race builds.)
func TestLockMemory(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), memlockChildEnv+"=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v: %s", err, out)
	}
	got := strings.TrimSpace(string(out))
	var locked int64
	var rest string
	if _, err := fmt.Sscanf(got, "locked=%d err=%s", &locked, &rest); err != nil {
		t.Fatalf("child said %q: %v", got, err)
	}
	why := CanLockMemory()
	if why == nil && raceEnabled {
		why = LockMemory()
	}
	if why == nil {
		if locked == 0 || !strings.HasSuffix(got, "err=<nil>") {
			t.Errorf("allowed to lock, the child says %q", got)
		}
	} else {
		if locked != 0 || !strings.Contains(got, ErrMemoryLockNotAllowed.Error()) {
			t.Errorf("not allowed (%v), the child says %q", why, got)
		}
		t.Logf("this machine does not lock: %v", why)
	}
}
