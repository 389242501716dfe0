package redistest

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// StartCluster starts a Redis Cluster of three masters (each a redis-server of its own on
// 127.0.0.1, a third of the hash slots each), waits until it is healthy, and returns the store URL
// that reaches it (cluster=true, every node as a seed). The nodes stop when the test ends. Without
// a redis-server binary the test is skipped (it fails where KEYFORT_REQUIRE_SERVERS=1).
func StartCluster(tb testing.TB) (url string, nodes []string) {
	tb.Helper()
	bin := serverBin(tb)
	dir := tb.TempDir()
	for range 3 {
		port := freePort(tb)
		d := filepath.Join(dir, "node"+port)
		if err := os.MkdirAll(d, 0o700); err != nil {
			tb.Fatal(err)
		}
		cmd := exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--dir", d, "--logfile", filepath.Join(d, "redis.log"),
			"--save", "", "--appendonly", "no", "--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(d, "nodes.conf"),
			"--cluster-node-timeout", "2000")
		if err := cmd.Start(); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		addr := net.JoinHostPort("127.0.0.1", port)
		waitPing(tb, addr, filepath.Join(d, "redis.log"))
		nodes = append(nodes, addr)
	}
	ctx := context.Background()
	const slots = 16384
	for i, addr := range nodes {
		c := redis.NewClient(&redis.Options{Addr: addr})
		from, to := i*slots/3, (i+1)*slots/3-1
		if err := c.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", from, to).Err(); err != nil {
			_ = c.Close()
			tb.Fatalf("CLUSTER ADDSLOTSRANGE on %s: %v", addr, err)
		}
		if i > 0 {
			h, p, _ := net.SplitHostPort(addr)
			first := redis.NewClient(&redis.Options{Addr: nodes[0]})
			err := first.Do(ctx, "CLUSTER", "MEET", h, p).Err()
			_ = first.Close()
			if err != nil {
				_ = c.Close()
				tb.Fatalf("CLUSTER MEET %s: %v", addr, err)
			}
		}
		_ = c.Close()
	}
	for _, addr := range nodes {
		c := redis.NewClient(&redis.Options{Addr: addr})
		ok := false
		for range 400 {
			info, err := c.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_known_nodes:3") {
				ok = true
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		_ = c.Close()
		if !ok {
			tb.Fatalf("the cluster never became healthy at %s", addr)
		}
	}
	url = "redis://" + nodes[0] + "?cluster=true&addr=" + nodes[1] + "&addr=" + nodes[2]
	return url, nodes
}
