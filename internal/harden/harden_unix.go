//go:build unix

package harden

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Process applies the hardening to the calling process.
func Process() error {
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err != nil {
		return fmt.Errorf("keyfort: disabling core dumps: %w", err)
	}
	return undumpable()
}
