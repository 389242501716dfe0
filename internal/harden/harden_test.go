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

func TestMain(m *testing.M) {
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
