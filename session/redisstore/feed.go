package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keyfort/keyfort/internal/revfeed"
	"github.com/keyfort/keyfort/session"
)

// feedChannel is the revocation feed's channel, after the Store's prefix.
const feedChannel = "revocations"

// probePayload is what probeFeed publishes; subscribers ignore it.
const probePayload = "p:"

// feedHealthCheck is how often an idle subscription is pinged: a connection that died without a
// word is found within about this time (plus go-redis's ping timeout), and its replacement
// delivers a Resync.
const feedHealthCheck = 5 * time.Second

// feedQueue is how many events may wait for a slow subscriber before they are dropped (and a
// Resync is delivered instead), in go-redis's channel and again in the Store's own queue.
const feedQueue = 1024

// probeFeed finds out whether this Redis user may publish on the feed's channel. Redis 7 gives new
// ACL users no channel by default (acl-pubsub-default resetchannels): a user allowed the store's
// keys but not the channel keeps working as before, without the feed, rather than failing every
// revocation on a PUBLISH it may not make.
func (s *Store) probeFeed(ctx context.Context) error {
	s.channel = feedChannelOf(s.prefix, s.rdb)
	err := s.rdb.Publish(ctx, s.channel, probePayload).Err()
	switch {
	case err == nil:
		s.publish = s.channel
		return nil
	case isNoPerm(err):
		return nil
	default:
		return wrap(err)
	}
}

// feedChannelOf is the feed's channel for a Store on rdb with prefix: "<prefix>revocations", and
// "<prefix>revocations:db<N>" on a database N other than 0. Keys live in their database, but Redis
// publishes to every subscriber of the server whatever database it selected: without the number,
// two deployments sharing a server in databases of their own would take each other's revocations
// (a subject cut names its subject by an unkeyed hash, so one deployment's cut would end the
// other's sessions of that subject).
func feedChannelOf(prefix string, rdb redis.UniversalClient) string {
	if c, ok := rdb.(*redis.Client); ok {
		if db := c.Options().DB; db != 0 {
			return prefix + feedChannel + ":db" + strconv.Itoa(db)
		}
	}
	return prefix + feedChannel
}

func isNoPerm(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && strings.HasPrefix(re.Error(), "NOPERM")
}

// SubscribeRevocations implements session.RevocationFeed over Redis pub/sub on the channel
// "<prefix>revocations" (feedChannelOf): every Store on this Redis, database and prefix publishes there (in the same script
// as the write it announces) and hears every other. The subscription has a connection of its own,
// pinged when idle; after go-redis makes it again, fn gets a Resync, since Redis pub/sub keeps
// nothing for a subscriber that was away. fn is called on one goroutine, one event at a time; a
// subscriber that falls more than a queue of events behind loses the excess and gets a Resync.
func (s *Store) SubscribeRevocations(ctx context.Context, fn func(session.Revocation)) (func(), error) {
	if s.publish == "" {
		return nil, fmt.Errorf("%w: redis: this user may not publish on the channel %q (ACL: allow &%s)",
			session.ErrStoreUnavailable, s.channel, s.channel)
	}
	ps := s.rdb.Subscribe(ctx, s.channel)
	msg, err := ps.Receive(ctx)
	if err == nil {
		if _, ok := msg.(*redis.Subscription); !ok {
			err = fmt.Errorf("unexpected reply %T to SUBSCRIBE", msg)
		}
	}
	if err != nil {
		_ = ps.Close()
		return nil, fmt.Errorf("%w: redis: subscribing to %q: %v", session.ErrStoreUnavailable, s.channel, err)
	}
	ch := ps.ChannelWithSubscriptions(redis.WithChannelSize(feedQueue), redis.WithChannelHealthCheckInterval(feedHealthCheck))
	// go-redis's channel is drained without ever blocking, so go-redis never waits on a full
	// channel (it would drop a message after a minute and only log it): a subscriber that falls a
	// whole queue behind loses the excess and gets a Resync when it catches up, as after a lost
	// connection.
	var dropped func()
	if s.dropped != nil {
		dropped = s.dropped.Inc
	}
	pump := revfeed.NewPump(feedQueue, fn, dropped)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer pump.Close()
		for m := range ch {
			switch m := m.(type) {
			case *redis.Subscription:
				if m.Kind == "subscribe" { // the connection was made again: events may be lost
					pump.Push(session.Revocation{Resync: true})
				}
			case *redis.Message:
				if r, ok := revfeed.Parse(m.Payload); ok {
					pump.Push(r)
				}
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			_ = ps.Close()
			<-done
		})
	}, nil
}
