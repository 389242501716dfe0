package revfeed

import (
	"encoding/hex"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keyfort/keyfort/session"
)

// Parse reads a feed payload: "f:" and a family ID, "t:" and a tombstone key, a subject cut
// (Cut) or a key revocation (Key). Anything else (a store's probe, a stranger's message, an event of a later release) is not
// an event.
func Parse(p string) (session.Revocation, bool) {
	switch {
	case len(p) > 2 && strings.HasPrefix(p, "f:"):
		return session.Revocation{Family: p[2:]}, true
	case len(p) > 2 && strings.HasPrefix(p, "t:"):
		return session.Revocation{Token: p[2:]}, true
	case strings.HasPrefix(p, "s:"):
		ms, rest, ok1 := strings.Cut(p[2:], ":")
		hash, idp, ok2 := strings.Cut(rest, ":")
		n, err := strconv.ParseInt(ms, 10, 64)
		if !ok1 || !ok2 || err != nil || len(hash) != 64 || !isHex(hash) {
			return session.Revocation{}, false
		}
		return session.Revocation{Subject: hash, SubjectIdP: idp, SubjectBefore: time.UnixMilli(n)}, true
	case strings.HasPrefix(p, "k:"):
		ms, kid, ok := strings.Cut(p[2:], ":")
		n, err := strconv.ParseInt(ms, 10, 64)
		if !ok || err != nil || kid == "" {
			return session.Revocation{}, false
		}
		return session.Revocation{Key: kid, KeyUntil: time.UnixMilli(n)}, true
	}
	return session.Revocation{}, false
}

// Cut is the payload of a subject cut: "s:", the cut's Before in unix milliseconds, the subject's
// session.SubjectHash and the identity provider (last: it may hold a colon), colon-separated.
func Cut(c session.SubjectCut) string {
	return "s:" + strconv.FormatInt(c.Before.UnixMilli(), 10) + ":" + session.SubjectHash(c.Subject) + ":" + c.IdP
}

// Key is the payload of a key revocation: "k:", its Until in unix milliseconds and the kid (last:
// it may hold a colon), colon-separated.
func Key(r session.KeyRevocation) string {
	return "k:" + strconv.FormatInt(r.Until.UnixMilli(), 10) + ":" + r.KeyID
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
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
