package pgstore

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keyfort/keyfort/internal/revfeed"
	"github.com/keyfort/keyfort/session"
)

// feedQueue is how many events may wait for a slow subscriber before they are dropped (and a
// Resync delivered instead).
const feedQueue = 1024

// Bounds of the pause before a lost LISTEN connection is made again.
const (
	feedMinBackoff = 100 * time.Millisecond
	feedMaxBackoff = 10 * time.Second
)

// SubscribeRevocations implements session.RevocationFeed with LISTEN on the store's channel
// ("<prefix>revocations", or a channel of the tables' schema when that is not public), on a
// connection of its own outside the pool. Every Store on this database, schema and prefix notifies there,
// in the transaction that revokes, so an event is sent only for a revocation that committed. When
// the connection is lost it is made again (with a pause that grows to 10 s), and fn gets a Resync:
// PostgreSQL keeps no notifications for a listener that was away. fn is called on one goroutine,
// one event at a time; a subscriber more than a queue behind loses the excess and gets a Resync.
func (s *Store) SubscribeRevocations(ctx context.Context, fn func(session.Revocation)) (func(), error) {
	conn, err := s.listen(ctx)
	if err != nil {
		return nil, err
	}
	var dropped func()
	if s.dropped != nil {
		dropped = s.dropped.Inc
	}
	pump := revfeed.NewPump(feedQueue, fn, dropped)
	lctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer pump.Close()
		backoff := feedMinBackoff
		for {
			for conn != nil {
				n, err := conn.WaitForNotification(lctx)
				if err != nil {
					_ = conn.Close(context.Background())
					conn = nil
					break
				}
				backoff = feedMinBackoff
				if r, ok := revfeed.Parse(n.Payload); ok {
					pump.Push(r)
				}
			}
			select {
			case <-lctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, feedMaxBackoff)
			sctx, scancel := context.WithTimeout(lctx, 10*time.Second)
			conn, _ = s.listen(sctx)
			scancel()
			if conn != nil { // listening again: what was sent meanwhile is lost
				pump.Push(session.Revocation{Resync: true})
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}, nil
}

// listen opens a connection of its own with the pool's settings and LISTENs on the channel.
func (s *Store) listen(ctx context.Context) (*pgx.Conn, error) {
	cc := s.pool.Config().ConnConfig.Copy()
	if bc := s.pool.Config().BeforeConnect; bc != nil {
		if err := bc(ctx, cc); err != nil {
			return nil, fmt.Errorf("%w: postgres: %v", session.ErrStoreUnavailable, err)
		}
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, wrap(err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.channel}.Sanitize()); err != nil {
		_ = conn.Close(context.Background())
		return nil, wrap(err)
	}
	return conn, nil
}
