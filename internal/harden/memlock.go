package harden

import (
	"errors"
	"log/slog"
)

// ErrMemoryLockNotAllowed is why LockMemory locked nothing: the process may not lock all its
// memory safely (a finite RLIMIT_MEMLOCK without CAP_IPC_LOCK, a race-detector build, a system
// Keyfort does not lock on).
var ErrMemoryLockNotAllowed = errors.New("memory not locked")

// LockMemoryLogged calls LockMemory, says in log what came of it, and reports whether memory is
// locked now.
func LockMemoryLogged(log *slog.Logger) bool {
	switch err := LockMemory(); {
	case err == nil:
		log.Info("keyfort: memory locked; secret material stays out of swap")
		return true
	case errors.Is(err, ErrMemoryLockNotAllowed):
		log.Info("keyfort: memory not locked; secret material may reach swap", slog.String("reason", err.Error()))
	default:
		log.Warn("keyfort: could not lock memory; secret material may reach swap", slog.String("error", err.Error()))
	}
	return false
}
