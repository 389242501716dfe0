package coarseclock

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestClockAdvancesWhileHeldAndStopsAfter: the clock follows real time within its resolution while
// held, and its goroutine is gone once every holder released it (goleak checks at exit).
func TestClockAdvancesWhileHeldAndStopsAfter(t *testing.T) {
	Acquire()
	Acquire()
	start := NowNano()
	if d := time.Duration(time.Now().UnixNano() - start); d < 0 || d > time.Second {
		t.Fatalf("coarse clock off by %v right after start", d)
	}
	deadline := time.Now().Add(10 * time.Second) // a liveness bound, not a performance threshold
	for NowNano() == start {
		if time.Now().After(deadline) {
			t.Fatal("the coarse clock does not advance")
		}
		time.Sleep(time.Millisecond)
	}
	if NowNano() > time.Now().UnixNano() {
		t.Error("the coarse clock runs ahead of real time")
	}
	Release()
	if nanos.Load() == 0 {
		t.Fatal("the clock stopped while still held")
	}
	Release()
	if nanos.Load() != 0 {
		t.Fatal("the clock runs with no holder")
	}
	before := time.Now().UnixNano()
	if n := NowNano(); n < before {
		t.Errorf("a stopped clock must read time.Now: %d < %d", n, before)
	}
}

func TestReleaseWithoutAcquirePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("an unbalanced Release did not panic")
		}
	}()
	Release()
}

// BenchmarkNowNano against BenchmarkTimeNow: what the coarse clock saves per reading.
func BenchmarkNowNano(b *testing.B) {
	Acquire()
	defer Release()
	for b.Loop() {
		_ = NowNano()
	}
}

func BenchmarkTimeNow(b *testing.B) {
	for b.Loop() {
		_ = time.Now().UnixNano()
	}
}
