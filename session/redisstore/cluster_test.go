package redisstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keyfort/keyfort/internal/redistest"
	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/redisstore"
	"github.com/keyfort/keyfort/session/sessiontest"
)

// TestCluster runs the store contract on a Redis Cluster of three masters (real redis-server
// processes), then shows two stores (two replicas) agreeing across it: families and tombstones
// spread over the nodes' slots, and every revocation, whichever node holds its key, reaches the
// other store's feed.
func TestCluster(t *testing.T) {
	url, nodes := redistest.StartCluster(t)
	ctx := context.Background()
	open := func(t *testing.T, prefix string) *redisstore.Store {
		s, err := redisstore.New(ctx, redisstore.Config{URL: url, Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	t.Run("Contract", func(t *testing.T) {
		sessiontest.RunStoreTests(t, func(t *testing.T) session.Store { return open(t, uniqueName("kf-cluster:")+":") })
	})
	t.Run("TwoStores", func(t *testing.T) {
		prefix := uniqueName("kf-cluster:") + ":"
		a, b := open(t, prefix), open(t, prefix)
		if string(a.HashKey()) != string(b.HashKey()) {
			t.Error("two stores on one cluster and prefix hold different hash keys")
		}
		onB := events(t, b)
		// Enough families that their keys fall on every node's slots.
		for i := range 12 {
			id := fmt.Sprintf("fam-%d", i)
			if err := a.CreateFamily(ctx, session.Family{ID: id, Current: "j1", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
			if err := a.RevokeFamily(ctx, id); err != nil {
				t.Fatal(err)
			}
			if r := nextEvent(t, onB, "a revocation on the cluster"); r != (session.Revocation{Family: id}) {
				t.Errorf("got %+v, want family %s", r, id)
			}
			if f, err := b.Family(ctx, id); err != nil || !f.Revoked {
				t.Errorf("family %s through the other store: %+v, %v", id, f, err)
			}
		}
		holding := 0
		for _, addr := range nodes {
			c := redis.NewClient(&redis.Options{Addr: addr})
			keys, err := c.Keys(ctx, prefix+"fam:*").Result()
			_ = c.Close()
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) > 0 {
				holding++
			}
		}
		if holding < 2 {
			t.Errorf("the families are on %d node(s): the test did not spread them over the cluster", holding)
		}
	})
}
