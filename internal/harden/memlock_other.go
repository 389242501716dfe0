//go:build !linux

package harden

import "fmt"

// LockMemory locks the process's memory into RAM where Keyfort knows how to do so safely (Linux);
// elsewhere it returns an error wrapping [ErrMemoryLockNotAllowed].
func LockMemory() error { return CanLockMemory() }

// CanLockMemory reports why LockMemory locks nothing here.
func CanLockMemory() error {
	return fmt.Errorf("%w: not supported on this system", ErrMemoryLockNotAllowed)
}

// LockedBytes reports no locked memory where LockMemory locks none.
func LockedBytes(pid int) (int64, error) { return 0, nil }

// ResidentBytes is not measured here.
func ResidentBytes(pid int) (int64, error) { return 0, nil }
