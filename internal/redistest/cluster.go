package redistest

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster of three masters (each a redis-server of its own on 127.0.0.1, a
// third of the hash slots each) and, when asked for, a replica of each. The nodes stop when the
// test ends.
type Cluster struct {
	// URL is the store URL that reaches it (cluster=true, every master as a seed).
	URL string
	// Masters are the masters' addresses; Replicas[i] replicates Masters[i] (when there are
	// replicas).
	Masters, Replicas []string
}

// StartCluster starts a cluster of three masters and waits until it is healthy. Without a
// redis-server binary the test is skipped (it fails where KEYFORT_REQUIRE_SERVERS=1).
func StartCluster(tb testing.TB) *Cluster { return startCluster(tb, false) }

// StartClusterWithReplicas is StartCluster with a replica of each master, for failovers.
func StartClusterWithReplicas(tb testing.TB) *Cluster { return startCluster(tb, true) }

func startCluster(tb testing.TB, replicas bool) *Cluster {
	tb.Helper()
	bin := serverBin(tb)
	dir := tb.TempDir()
	n := 0
	node := func() string {
		n++
		d := filepath.Join(dir, fmt.Sprintf("node%d", n))
		return startServer(tb, bin, d, "--save", "", "--appendonly", "no", "--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(d, "nodes.conf"), "--cluster-node-timeout", "2000")
	}
	c := &Cluster{}
	for range 3 {
		c.Masters = append(c.Masters, node())
	}
	ctx := context.Background()
	do := func(addr string, args ...any) *redis.Cmd {
		cl := redis.NewClient(&redis.Options{Addr: addr})
		defer cl.Close()
		return cl.Do(ctx, args...)
	}
	meet := func(addr string) {
		h, p, _ := net.SplitHostPort(addr)
		if err := do(c.Masters[0], "CLUSTER", "MEET", h, p).Err(); err != nil {
			tb.Fatalf("CLUSTER MEET %s: %v", addr, err)
		}
	}
	const slots = 16384
	for i, addr := range c.Masters {
		if err := do(addr, "CLUSTER", "ADDSLOTSRANGE", i*slots/3, (i+1)*slots/3-1).Err(); err != nil {
			tb.Fatalf("CLUSTER ADDSLOTSRANGE on %s: %v", addr, err)
		}
		if i > 0 {
			meet(addr)
		}
	}
	all := c.Masters
	if replicas {
		for _, m := range c.Masters {
			id, err := do(m, "CLUSTER", "MYID").Text()
			if err != nil {
				tb.Fatal(err)
			}
			r := node()
			meet(r)
			// A replica can follow its master once it has heard of it through the cluster bus.
			var rerr error
			for range 200 {
				if rerr = do(r, "CLUSTER", "REPLICATE", id).Err(); rerr == nil {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if rerr != nil {
				tb.Fatalf("CLUSTER REPLICATE on %s: %v", r, rerr)
			}
			c.Replicas = append(c.Replicas, r)
		}
		all = append(append([]string(nil), c.Masters...), c.Replicas...)
	}
	known := "cluster_known_nodes:" + map[bool]string{false: "3", true: "6"}[replicas]
	for _, addr := range all {
		ok := false
		for range 400 {
			info, err := do(addr, "CLUSTER", "INFO").Text()
			if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, known) {
				ok = true
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if !ok {
			tb.Fatalf("the cluster never became healthy at %s", addr)
		}
	}
	c.URL = "redis://" + c.Masters[0] + "?cluster=true&addr=" + c.Masters[1] + "&addr=" + c.Masters[2]
	return c
}

// Failover promotes Replicas[i] in place of Masters[i] (CLUSTER FAILOVER, coordinated with the
// master, so no acknowledged write is lost) and waits until the replica reports itself master.
func (c *Cluster) Failover(tb testing.TB, i int) {
	tb.Helper()
	ctx := context.Background()
	r := redis.NewClient(&redis.Options{Addr: c.Replicas[i]})
	defer r.Close()
	if err := r.Do(ctx, "CLUSTER", "FAILOVER").Err(); err != nil {
		tb.Fatalf("CLUSTER FAILOVER on %s: %v", c.Replicas[i], err)
	}
	for range 400 {
		if role, err := r.Do(ctx, "ROLE").Slice(); err == nil && len(role) > 0 && role[0] == "master" {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	tb.Fatalf("%s never became master", c.Replicas[i])
}
