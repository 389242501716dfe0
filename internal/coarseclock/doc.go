// Package coarseclock is a process-wide clock of 10 ms resolution for hot paths whose decisions are
// measured in seconds or minutes (cache ages): reading it is one atomic load, where time.Now reads
// two clocks through the vDSO, which on some virtual machines is half of a cache hit. It runs while
// anything holds it (Acquire/Release) and falls back to time.Now when nothing does.
package coarseclock
