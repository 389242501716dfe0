package harden

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// capIPCLock is CAP_IPC_LOCK's bit in a capability set.
const capIPCLock = 14

// LockMemory locks the process's memory, present and future, into RAM (mlockall with MCL_CURRENT,
// MCL_FUTURE and MCL_ONFAULT), so that secret material never reaches swap. MCL_ONFAULT locks each
// page when it is first touched instead of populating every mapping at once, which made a serve
// process about 165 MB resident instead of about 28 MB (the Go runtime maps large structures it
// barely touches).
//
// It locks only where the lock cannot later starve the Go runtime: with CAP_IPC_LOCK or an
// unlimited RLIMIT_MEMLOCK. Under a finite limit the heap's growth past it would fail, and the Go
// runtime dies on a failed mapping; then LockMemory locks nothing and returns an error wrapping
// [ErrMemoryLockNotAllowed] that names the limit. Binaries built with the race detector are not
// locked (its shadow memory would be).
func LockMemory() error {
	if raceEnabled {
		return fmt.Errorf("%w: the race detector's shadow memory cannot be locked", ErrMemoryLockNotAllowed)
	}
	if err := CanLockMemory(); err != nil {
		return err
	}
	if err := unix.Mlockall(unix.MCL_CURRENT | unix.MCL_FUTURE | unix.MCL_ONFAULT); err != nil {
		return fmt.Errorf("keyfort: locking memory (mlockall): %w", err)
	}
	return nil
}

// CanLockMemory reports whether LockMemory would lock this process's memory (nil) or why not
// (an error wrapping [ErrMemoryLockNotAllowed]), race-detector builds aside: a child started by
// this process with the same user, limits and capabilities, and not built with the race detector,
// gets the same answer.
func CanLockMemory() error {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim); err != nil {
		return fmt.Errorf("keyfort: reading RLIMIT_MEMLOCK: %w", err)
	}
	capEff, err := effectiveCaps()
	if err != nil {
		return fmt.Errorf("keyfort: reading the process's capabilities: %w", err)
	}
	if why := memlockRefusal(lim.Cur, capEff); why != "" {
		return fmt.Errorf("%w: %s", ErrMemoryLockNotAllowed, why)
	}
	return nil
}

// memlockRefusal says why a process with this RLIMIT_MEMLOCK soft limit and these effective
// capabilities must not lock all its memory, or "" when it may.
func memlockRefusal(limit uint64, capEff uint64) string {
	if limit == unix.RLIM_INFINITY || capEff&(1<<capIPCLock) != 0 {
		return ""
	}
	return fmt.Sprintf("RLIMIT_MEMLOCK is %d bytes and the process lacks CAP_IPC_LOCK (grant CAP_IPC_LOCK, or set the limit to unlimited)", limit)
}

// effectiveCaps reads the process's effective capability set from /proc/self/status.
func effectiveCaps() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no CapEff line in /proc/self/status")
}

// LockedBytes is VmLck of process pid (0: the calling process): how much of its memory is locked.
func LockedBytes(pid int) (int64, error) {
	path := "/proc/self/status"
	if pid != 0 {
		path = "/proc/" + strconv.Itoa(pid) + "/status"
	}
	return statusKiB(path, "VmLck:")
}

// ResidentBytes is VmRSS of process pid (0: the calling process).
func ResidentBytes(pid int) (int64, error) {
	path := "/proc/self/status"
	if pid != 0 {
		path = "/proc/" + strconv.Itoa(pid) + "/status"
	}
	return statusKiB(path, "VmRSS:")
}

// statusKiB reads a "Name:   N kB" line of a /proc status file, in bytes.
func statusKiB(path, field string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n << 10, err
		}
	}
	return 0, fmt.Errorf("no %s line in %s", field, path)
}
