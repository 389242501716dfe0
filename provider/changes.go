package provider

import (
	"context"
	"errors"
	"sync"
)

// changeQueue is how many changes wait for a slow watcher before they are dropped (and the watcher
// is sent Change{} instead).
const changeQueue = 64

// Changes is a ready-made [Watcher] for providers that learn of their own changes: call Notify when
// material changes, and delegate Watch to it. The zero value is ready; it is safe for concurrent use.
// Close ends every Watch with [ErrClosed].
type Changes struct {
	mu     sync.Mutex
	subs   map[*changeSub]struct{}
	closed bool
	done   chan struct{}
}

type changeSub struct {
	ch   chan Change
	lost chan struct{}
}

func (c *Changes) doneChan() chan struct{} {
	if c.done == nil {
		c.done = make(chan struct{})
	}
	return c.done
}

// Notify tells every watcher that the material at name changed. It never blocks: a watcher that is a
// whole queue behind loses the change and gets Change{} when it catches up.
func (c *Changes) Notify(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for s := range c.subs {
		select {
		case s.ch <- Change{Name: name}:
		default:
			select {
			case s.lost <- struct{}{}:
			default:
			}
		}
	}
}

// Watch implements [Watcher].
func (c *Changes) Watch(ctx context.Context, fn func(Change)) error {
	s := &changeSub{ch: make(chan Change, changeQueue), lost: make(chan struct{}, 1)}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return NewError(ErrClosed, "", errors.New("provider closed"))
	}
	if c.subs == nil {
		c.subs = make(map[*changeSub]struct{})
	}
	c.subs[s] = struct{}{}
	done := c.doneChan()
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.subs, s)
		c.mu.Unlock()
	}()
	fn(Change{})
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-done:
			return NewError(ErrClosed, "", errors.New("provider closed"))
		case ch := <-s.ch:
			fn(ch)
		case <-s.lost:
			fn(Change{})
		}
	}
}

// Close ends every Watch; later ones return [ErrClosed]. It is idempotent.
func (c *Changes) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed = true
		close(c.doneChan())
	}
}
