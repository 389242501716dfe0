package coarseclock

import (
	"sync"
	"sync/atomic"
	"time"
)

// Resolution is how often the clock advances. A reading may also lag by however long the process
// keeps its ticking goroutine from running.
const Resolution = 10 * time.Millisecond

var (
	mu    sync.Mutex
	users int
	stop  chan struct{}
	done  chan struct{}
	nanos atomic.Int64 // unix nanoseconds; 0 while the clock does not run
)

// Acquire starts the clock, or keeps it running; every Acquire needs one Release.
func Acquire() {
	mu.Lock()
	defer mu.Unlock()
	users++
	if users > 1 {
		return
	}
	stop, done = make(chan struct{}), make(chan struct{})
	nanos.Store(time.Now().UnixNano())
	go run(stop, done)
}

// Release lets the clock stop when nothing else holds it.
func Release() {
	mu.Lock()
	defer mu.Unlock()
	if users == 0 {
		panic("coarseclock: Release without Acquire")
	}
	users--
	if users > 0 {
		return
	}
	close(stop)
	<-done
	nanos.Store(0)
}

func run(stop, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(Resolution)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			nanos.Store(now.UnixNano())
		}
	}
}

// NowNano returns the time in unix nanoseconds: the coarse clock while it runs, else time.Now.
func NowNano() int64 {
	if n := nanos.Load(); n != 0 {
		return n
	}
	return time.Now().UnixNano()
}
