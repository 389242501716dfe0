// Package harden keeps secret material in a process's memory out of core dumps and away from
// same-user debuggers: the core file size limit is set to zero and, on Linux, the process is made
// non-dumpable (PR_SET_DUMPABLE 0: no core, no ptrace attach or /proc/PID/mem read by unprivileged
// processes of the same user). Provider plugins and `provider-host serve` call it at start.
//
// LockMemory keeps the same memory out of swap (mlockall, page by page as it is touched), where the
// process may lock all its memory without risking a failed mapping later: with CAP_IPC_LOCK or an
// unlimited RLIMIT_MEMLOCK.
package harden
