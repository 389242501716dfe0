package revfeed

import (
	"strings"
	"sync"

	"github.com/keyfort/keyfort/session"
)

// Parse reads a feed payload: "f:" and a family ID, or "t:" and a tombstone key. Anything else (a
// store's probe, a stranger's message) is not an event.
func Parse(p string) (session.Revocation, bool) {
	switch {
	case len(p) > 2 && strings.HasPrefix(p, "f:"):
		return session.Revocation{Family: p[2:]}, true
	case len(p) > 2 && strings.HasPrefix(p, "t:"):
		return session.Revocation{Token: p[2:]}, true
	}
	return session.Revocation{}, false
}

// Pump calls a subscriber's fn with the events pushed to it, one at a time on a goroutine of its
// own. Push never blocks: when fn is a whole queue behind, the event is dropped (and counted by the
// dropped callback), and fn gets a Resync once it has caught up. It is safe for concurrent use.
type Pump struct {
	q       chan session.Revocation
	lost    chan struct{}
	done    chan struct{}
	dropped func()
	mu      sync.Mutex
	closed  bool
}

// NewPump starts a pump of size queued events for fn; dropped (optional) is called for each event
// dropped.
func NewPump(size int, fn func(session.Revocation), dropped func()) *Pump {
	p := &Pump{q: make(chan session.Revocation, size), lost: make(chan struct{}, 1), done: make(chan struct{}), dropped: dropped}
	go func() {
		defer close(p.done)
		for {
			select {
			case r, ok := <-p.q:
				if !ok {
					return
				}
				fn(r)
			case <-p.lost:
				fn(session.Revocation{Resync: true})
			}
		}
	}()
	return p
}

// Push queues r for fn, or drops it when the queue is full.
func (p *Pump) Push(r session.Revocation) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	select {
	case p.q <- r:
	default:
		if p.dropped != nil {
			p.dropped()
		}
		select {
		case p.lost <- struct{}{}:
		default:
		}
	}
}

// Close takes no more events, lets fn handle those queued, and returns when it has. It is
// idempotent.
func (p *Pump) Close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.q)
	}
	p.mu.Unlock()
	<-p.done
}
