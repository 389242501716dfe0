package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keyfort/keyfort/internal/testnet"
)

// Pair is a PostgreSQL primary and a streaming-replication standby of it, each a server of its own
// on 127.0.0.1 (initdb, pg_basebackup), stopped and removed when the test ends.
type Pair struct {
	// URL lists both hosts with target_session_attrs=read-write: what a client that must follow a
	// failover is given.
	URL string
	// Primary and Standby are the servers' addresses as started (a Failover swaps their roles).
	Primary, Standby string

	bin     string
	dirs    [2]string
	servers [2]*exec.Cmd
	cred    *syscall.Credential
}

// StartPair starts a primary and a standby streaming from it. Without PostgreSQL's server binaries
// ($KEYFORT_PG_BINDIR, /usr/lib/postgresql/*/bin, or initdb on the PATH) the test is skipped (it fails
// where KEYFORT_REQUIRE_SERVERS=1). As root, the servers run as the postgres user.
func StartPair(tb testing.TB) *Pair {
	tb.Helper()
	p := &Pair{bin: binDir(tb)}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			tb.Fatalf("running as root, and no postgres user to run the servers as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	base, err := os.MkdirTemp("", "keyfort-pgpair-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(base) })
	if p.cred != nil {
		if err := os.Chown(base, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
			tb.Fatal(err)
		}
	}
	p.dirs = [2]string{filepath.Join(base, "primary"), filepath.Join(base, "standby")}
	ports := [2]string{freePort(tb), freePort(tb)}
	p.Primary, p.Standby = "127.0.0.1:"+ports[0], "127.0.0.1:"+ports[1]

	p.tool(tb, "initdb", "-D", p.dirs[0], "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions")
	p.start(tb, 0, ports[0])
	p.tool(tb, "pg_basebackup", "-h", "127.0.0.1", "-p", ports[0], "-U", "postgres", "-D", p.dirs[1], "-R", "-X", "stream", "--no-sync")
	p.start(tb, 1, ports[1])
	p.waitStreaming(tb)
	p.URL = fmt.Sprintf("postgres://postgres@%s,%s/postgres?sslmode=disable&target_session_attrs=read-write", p.Primary, p.Standby)
	return p
}

// Sync waits until the standby has replayed everything the primary has written so far
// (replication is asynchronous). Call it before a Failover that must not lose those writes.
func (p *Pair) Sync(tb testing.TB) {
	tb.Helper()
	ctx := context.Background()
	primary := connect(tb, p.Primary)
	defer primary.Close(ctx)
	var lsn string
	if err := primary.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&lsn); err != nil {
		tb.Fatal(err)
	}
	standby := connect(tb, p.Standby)
	defer standby.Close(ctx)
	for range 200 {
		var caught bool
		if err := standby.QueryRow(ctx, "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", lsn).Scan(&caught); err != nil {
			tb.Fatal(err)
		}
		if caught {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	tb.Fatalf("the standby did not replay up to %s", lsn)
}

// Failover kills the primary (SIGKILL: no shutdown, no last words to the standby) and promotes the
// standby, returning when it accepts writes. The roles are swapped in Primary and Standby; the
// killed server is not restarted.
func (p *Pair) Failover(tb testing.TB) {
	tb.Helper()
	old := p.servers[0]
	_ = syscall.Kill(-old.Process.Pid, syscall.SIGKILL)
	_ = old.Wait()
	ctx := context.Background()
	standby := connect(tb, p.Standby)
	defer standby.Close(ctx)
	var promoted bool
	if err := standby.QueryRow(ctx, "SELECT pg_promote(true, 30)").Scan(&promoted); err != nil || !promoted {
		tb.Fatalf("pg_promote: %v, %v", promoted, err)
	}
	p.Primary, p.Standby = p.Standby, p.Primary
	p.servers[0], p.servers[1] = p.servers[1], nil
}

func (p *Pair) start(tb testing.TB, i int, port string) {
	tb.Helper()
	logFile := filepath.Join(filepath.Dir(p.dirs[i]), filepath.Base(p.dirs[i])+".log")
	f, err := os.Create(logFile)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(filepath.Join(p.bin, "postgres"), "-D", p.dirs[i], "-p", port,
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="+filepath.Dir(p.dirs[i]),
		"-c", "fsync=off", "-c", "wal_level=replica", "-c", "max_wal_senders=4", "-c", "hot_standby=on",
		"-c", "shared_buffers=16MB", "-c", "max_connections=50", "-c", "wal_retrieve_retry_interval=100ms")
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred, Setpgid: true}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	p.servers[i] = cmd
	tb.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			_ = cmd.Wait()
		}
	})
	addr := "127.0.0.1:" + port
	var last error
	for range 200 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := pgx.Connect(ctx, "postgres://postgres@"+addr+"/postgres?sslmode=disable")
		cancel()
		if err == nil {
			_ = c.Close(context.Background())
			return
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	log, _ := os.ReadFile(logFile)
	tb.Fatalf("postgres on %s did not answer: %v\n%s", addr, last, log)
}

func (p *Pair) waitStreaming(tb testing.TB) {
	tb.Helper()
	ctx := context.Background()
	primary := connect(tb, p.Primary)
	defer primary.Close(ctx)
	for range 200 {
		var n int
		if err := primary.QueryRow(ctx, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'").Scan(&n); err != nil {
			tb.Fatal(err)
		}
		if n == 1 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	tb.Fatal("the standby is not streaming from the primary")
}

// tool runs one of PostgreSQL's programs as the servers' user.
func (p *Pair) tool(tb testing.TB, name string, args ...string) {
	tb.Helper()
	cmd := exec.Command(filepath.Join(p.bin, name), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=5")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("%s: %v\n%s", name, err, out)
	}
}

func connect(tb testing.TB, addr string) *pgx.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, "postgres://postgres@"+addr+"/postgres?sslmode=disable")
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// binDir finds PostgreSQL's server programs.
func binDir(tb testing.TB) string {
	tb.Helper()
	if d := os.Getenv("KEYFORT_PG_BINDIR"); d != "" {
		return d
	}
	if found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb"); len(found) > 0 {
		sort.Slice(found, func(i, j int) bool { return pgMajor(found[i]) < pgMajor(found[j]) })
		return filepath.Dir(found[len(found)-1])
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p)
	}
	err := errors.New("no initdb in $KEYFORT_PG_BINDIR, /usr/lib/postgresql/*/bin or the PATH")
	if os.Getenv("KEYFORT_REQUIRE_SERVERS") == "1" {
		tb.Fatalf("PostgreSQL's server programs: %v", err)
	}
	tb.Skipf("PostgreSQL's server programs: %v", err)
	return ""
}

func pgMajor(path string) int {
	n, _ := strconv.Atoi(strings.Split(strings.TrimPrefix(path, "/usr/lib/postgresql/"), "/")[0])
	return n
}

// freePort is testnet.FreePort.
func freePort(tb testing.TB) string { return testnet.FreePort(tb) }
