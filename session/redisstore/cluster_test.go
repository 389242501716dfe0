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
	cl := redistest.StartCluster(t)
	url, nodes := cl.URL, cl.Masters
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

// TestClusterFailover: in a cluster whose masters have replicas, a master is failed over (its
// replica promoted by the cluster, CLUSTER FAILOVER): the store follows the slots to the new master
// (go-redis's MOVED handling), every family written before is there, rotation works, and the
// revocation feed still carries events.
func TestClusterFailover(t *testing.T) {
	cl := redistest.StartClusterWithReplicas(t)
	ctx := context.Background()
	prefix := uniqueName("kf-cluster:") + ":"
	s, err := redisstore.New(ctx, redisstore.Config{URL: cl.URL, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ch := events(t, s)
	// Families until a few live on the master to be failed over (keys hash to slots).
	m0 := redis.NewClient(&redis.Options{Addr: cl.Masters[0]})
	defer m0.Close()
	n := 0
	for on0 := 0; on0 < 3; n++ {
		if n == 300 {
			t.Fatal("no family hashed to the first master's slots")
		}
		if err := s.CreateFamily(ctx, session.Family{ID: fmt.Sprintf("fam-%d", n), Current: "j1", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		keys, err := m0.Keys(ctx, prefix+"fam:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		on0 = len(keys)
	}
	cl.Failover(t, 0)
	for i := range n {
		id := fmt.Sprintf("fam-%d", i)
		var f session.Family
		for range 100 { // a call may meet the switch; go-redis follows the MOVED that comes after
			if f, err = s.Family(ctx, id); err == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil || f.Revoked || f.Current != "j1" {
			t.Fatalf("family %s after the failover: %+v, %v", id, f, err)
		}
		if _, out, err := s.Rotate(ctx, id, "j1", "j2", time.Now(), time.Second); err != nil || out != session.Rotated {
			t.Fatalf("rotation of %s after the failover: %v, %v", id, out, err)
		}
	}
	if err := s.RevokeFamily(ctx, "fam-0"); err != nil {
		t.Fatal(err)
	}
	for {
		r := nextEvent(t, ch, "a revocation after the failover")
		if r.Family == "fam-0" {
			return
		}
	}
}
