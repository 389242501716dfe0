package harden

import (
	"fmt"

	"golang.org/x/sys/unix"
)

func undumpable() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("keyfort: making the process non-dumpable: %w", err)
	}
	return nil
}

// dumpable reports the calling process's dumpable flag (for tests).
func dumpable() (bool, error) {
	v, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	return v != 0, err
}
