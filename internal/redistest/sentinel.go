package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keyfort/keyfort/internal/testnet"
)

// SentinelMaster is the master name the Sentinel of StartSentinel monitors.
const SentinelMaster = "keyfort-test"

// Sentinel is a Redis master, its replica and a Sentinel watching them, each a redis-server of its
// own on 127.0.0.1, stopped when the test ends.
type Sentinel struct {
	// URL is the store URL that reaches the master through the Sentinel (go-redis's failover URL:
	// the Sentinel's address, master_name in the query).
	URL string
	// Master and Replica are the data nodes' addresses as started (a failover swaps their roles).
	Master, Replica string
	// Addr is the Sentinel's address.
	Addr string
}

// StartSentinel starts a master, a replica of it and a Sentinel monitoring them. Without a
// redis-server binary the test is skipped (it fails where KEYFORT_REQUIRE_SERVERS=1).
func StartSentinel(tb testing.TB) *Sentinel {
	tb.Helper()
	bin := serverBin(tb)
	dir := tb.TempDir()
	start := func(name string, args ...string) string {
		return startServer(tb, bin, filepath.Join(dir, name), args...)
	}
	s := &Sentinel{}
	s.Master = start("master", "--save", "", "--appendonly", "no")
	mh, mp, _ := net.SplitHostPort(s.Master)
	s.Replica = start("replica", "--save", "", "--appendonly", "no", "--replicaof", mh, mp)
	conf := filepath.Join(dir, "sentinel.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, "sentinel monitor %s %s %s 1\n"+
		"sentinel down-after-milliseconds %s 1000\nsentinel failover-timeout %s 10000\n",
		SentinelMaster, mh, mp, SentinelMaster, SentinelMaster), 0o600); err != nil {
		tb.Fatal(err)
	}
	s.Addr = start("sentinel", conf, "--sentinel")
	s.URL = "redis://" + s.Addr + "/0?master_name=" + SentinelMaster
	// The Sentinel knows the replica once the master has told it (its INFO every 10s at first).
	s.waitReplicas(tb, 1)
	return s
}

// Failover makes the Sentinel promote the replica, and waits until it names the new master.
func (s *Sentinel) Failover(tb testing.TB) string {
	tb.Helper()
	c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr})
	defer c.Close()
	ctx := context.Background()
	before, err := c.GetMasterAddrByName(ctx, SentinelMaster).Result()
	if err != nil {
		tb.Fatal(err)
	}
	if err := c.Failover(ctx, SentinelMaster).Err(); err != nil {
		tb.Fatalf("SENTINEL FAILOVER: %v", err)
	}
	for range 300 {
		now, err := c.GetMasterAddrByName(ctx, SentinelMaster).Result()
		if err == nil && now[1] != before[1] {
			return net.JoinHostPort(now[0], now[1])
		}
		time.Sleep(50 * time.Millisecond)
	}
	tb.Fatal("the Sentinel never named a new master")
	return ""
}

func (s *Sentinel) waitReplicas(tb testing.TB, n int) {
	tb.Helper()
	c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr})
	defer c.Close()
	for range 600 {
		if r, err := c.Replicas(context.Background(), SentinelMaster).Result(); err == nil && len(r) >= n {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	tb.Fatalf("the Sentinel never saw %d replica(s)", n)
}

// freePort is testnet.FreePort.
func freePort(tb testing.TB) string { return testnet.FreePort(tb) }

func waitPing(tb testing.TB, addr, logFile string) {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	var err error
	for range 200 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err = c.Ping(ctx).Err()
		cancel()
		if err == nil || strings.HasPrefix(err.Error(), "NOAUTH") { // answering (with a password to give)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	log, _ := os.ReadFile(logFile)
	tb.Fatalf("redis-server on %s did not answer: %v\n%s", addr, err, log)
}

// serverBin is the redis-server binary the helpers start. Without one the test is skipped (it fails
// where KEYFORT_REQUIRE_SERVERS=1: .ci/run installs Redis).
func serverBin(tb testing.TB) string {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("KEYFORT_REQUIRE_SERVERS") == "1" {
			tb.Fatalf("redis-server: %v", err)
		}
		tb.Skipf("no redis-server binary: %v", err)
	}
	return bin
}

// SyncReplica waits until the replica holds every write the master has acknowledged so far
// (replication is asynchronous): a write of its own on the master, once the replica acknowledges it
// (WAIT), carries all before it. Call it before a Failover that must not lose them.
func (s *Sentinel) SyncReplica(tb testing.TB) {
	tb.Helper()
	ctx := context.Background()
	master := redis.NewClient(&redis.Options{Addr: s.Master})
	defer master.Close()
	if err := master.Set(ctx, "keyfort-sentinel-test:sync", "1", time.Minute).Err(); err != nil {
		tb.Fatal(err)
	}
	if n, err := master.Do(ctx, "WAIT", 1, 5000).Int(); err != nil || n < 1 {
		tb.Fatalf("WAIT: %d replica(s) acknowledged, %v", n, err)
	}
}

// startServer starts a redis-server with args on a free port of 127.0.0.1, its files in dir, waits
// until it answers, and returns its address; it is killed when the test ends.
func startServer(tb testing.TB, bin, dir string, args ...string) string {
	tb.Helper()
	port := freePort(tb)
	startOn(tb, bin, dir, port, args...)
	return net.JoinHostPort("127.0.0.1", port)
}

// startOn starts a redis-server with args on port, its files in dir, and waits until it answers;
// it is killed when the test ends, or by kill.
func startOn(tb testing.TB, bin, dir, port string, args ...string) (kill func()) {
	tb.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	logFile := filepath.Join(dir, "redis.log")
	cmd := exec.Command(bin, append(args, "--port", port, "--bind", "127.0.0.1", "--dir", dir, "--logfile", logFile)...)
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	var once sync.Once
	kill = func() { once.Do(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }) }
	tb.Cleanup(kill)
	waitPing(tb, net.JoinHostPort("127.0.0.1", port), logFile)
	return kill
}

// Server is a redis-server of a test's own (nothing persisted), which the test may stop and start
// again on the same address: an outage of the store.
type Server struct {
	Addr           string
	bin, dir, port string
	args           []string
	kill           func()
}

// StartServer starts a Server with redis-server's args (besides port, address and files); it is
// killed when the test ends.
func StartServer(tb testing.TB, args ...string) *Server {
	tb.Helper()
	s := &Server{bin: serverBin(tb), dir: tb.TempDir(), port: freePort(tb), args: args}
	s.Addr = net.JoinHostPort("127.0.0.1", s.port)
	s.Start(tb)
	return s
}

// Stop kills the server (SIGKILL: an outage, not a shutdown).
func (s *Server) Stop() { s.kill() }

// Start starts the server again on its address (empty: it kept nothing) and waits until it answers.
func (s *Server) Start(tb testing.TB) {
	tb.Helper()
	s.kill = startOn(tb, s.bin, s.dir, s.port, append([]string{"--save", "", "--appendonly", "no"}, s.args...)...)
}
