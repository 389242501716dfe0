package mototest

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"
)

var (
	mu   sync.Mutex
	cmd  *exec.Cmd
	addr string
)

// URL returns the endpoint of a running moto server with fresh state, starting it when needed.
func URL(tb testing.TB) string {
	tb.Helper()
	mu.Lock()
	defer mu.Unlock()
	if cmd == nil {
		start(tb)
	}
	resp, err := http.Post(addr+"/moto-api/reset", "application/json", nil)
	if err != nil {
		tb.Fatalf("moto reset: %v", err)
	}
	resp.Body.Close()
	return addr
}

func start(tb testing.TB) {
	python, err := exec.LookPath("python3")
	if err == nil {
		err = exec.Command(python, "-c", "import moto.server").Run()
	}
	if err != nil {
		if os.Getenv("KEYFORT_REQUIRE_SERVERS") == "1" {
			tb.Fatal("moto is not installed in python3 (python3 -c 'import moto.server' fails)")
		}
		tb.Skip("moto is not installed in python3")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	c := exec.Command(python, "-m", "moto.server", "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	c.Stdout, c.Stderr = nil, nil
	if err := c.Start(); err != nil {
		tb.Fatal(err)
	}
	a := "http://127.0.0.1:" + strconv.Itoa(port)
	for range 300 {
		if resp, err := http.Get(a + "/moto-api/"); err == nil {
			resp.Body.Close()
			cmd, addr = c, a
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = c.Process.Kill()
	_ = c.Wait()
	tb.Fatal("moto did not become ready")
}

// Stop stops the server; call it from TestMain after m.Run. A later URL starts a new one.
func Stop() {
	mu.Lock()
	defer mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		cmd = nil
	}
}
