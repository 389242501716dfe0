package plugin_test

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyfort/keyfort/internal/hosttest"
	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/provider/plugin"
)

// pingPongChildEnv makes the test binary act as the raw ping-pong peer (see init).
const pingPongChildEnv = "KEYFORT_BENCH_PINGPONG_SOCKET"

func init() {
	if path := os.Getenv(pingPongChildEnv); path != "" {
		os.Exit(pingPongChild(path))
	}
}

// pingPongChild echoes length-prefixed messages on a unix socket: the physical limit of a
// request/response between two processes.
func pingPongChild(path string) int {
	ln, err := net.Listen("unix", path)
	if err != nil {
		return 1
	}
	conn, err := ln.Accept()
	if err != nil {
		return 1
	}
	buf := make([]byte, 64<<10)
	for {
		if _, err := io.ReadFull(conn, buf[:4]); err != nil {
			return 0
		}
		n := int(buf[0])<<24 | int(buf[1])<<16 | int(buf[2])<<8 | int(buf[3])
		if _, err := io.ReadFull(conn, buf[4:4+n]); err != nil {
			return 0
		}
		if _, err := conn.Write(buf[:4+n]); err != nil {
			return 0
		}
	}
}

// secretSize is the value size in the round-trip benchmarks; the ping-pong answers with as many bytes.
const secretSize = 64

// BenchmarkUnixSocketPingPong is the raw two-process request/response the plugin round trip is
// compared with: a 16-byte request, a response the size of a Secret answer.
func BenchmarkUnixSocketPingPong(b *testing.B) {
	sock := filepath.Join(b.TempDir(), "pp.sock")
	cmd := exec.Command(os.Args[0])
	// the peer runs on one P, as plugin processes do by default (plugin.Config.MaxProcs)
	cmd.Env = append(os.Environ(), pingPongChildEnv+"="+sock, "GOMAXPROCS=1")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var conn net.Conn
	for range 500 {
		var err error
		if conn, err = net.Dial("unix", sock); err == nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if conn == nil {
		b.Fatal("ping-pong peer did not listen")
	}
	defer conn.Close()
	msg := make([]byte, 4+secretSize)
	msg[3] = secretSize
	resp := make([]byte, len(msg))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := conn.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(conn, resp); err != nil {
			b.Fatal(err)
		}
	}
}

func benchSettings() provider.Settings {
	return provider.NewSettings("mem", []byte(`{"signing_keys":{"signing":{"algorithm":"EdDSA"}},"secrets":{"s":"`+strings.Repeat("x", secretSize)+`"}}`))
}

// BenchmarkPluginRoundTrip is one Secret call to a provider-host plugin process over go-plugin's gRPC
// transport with AutoMTLS, uncached: what a cache miss costs on top of the backend.
func BenchmarkPluginRoundTrip(b *testing.B) {
	p, err := plugin.Launch(context.Background(), plugin.Config{
		Name: "mem", Path: hosttest.ProviderHost(b), Args: []string{"plugin", "memory"}, Settings: benchSettings(),
	})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Secret(ctx, "s"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPluginRoundTripSigningKeys is the same for a key set (one EdDSA key).
func BenchmarkPluginRoundTripSigningKeys(b *testing.B) {
	p, err := plugin.Launch(context.Background(), plugin.Config{
		Name: "mem", Path: hosttest.ProviderHost(b), Args: []string{"plugin", "memory"}, Settings: benchSettings(),
	})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.SigningKeys(ctx, "signing"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPluginStart measures a plugin start with AutoMTLS up to the answer of its first call, and
// reports the plugin process's resident memory.
func BenchmarkPluginStart(b *testing.B) {
	bin := hosttest.ProviderHost(b)
	ctx := context.Background()
	var rssKiB float64
	b.ReportAllocs()
	for b.Loop() {
		p, err := plugin.Launch(ctx, plugin.Config{Name: "mem", Path: bin, Args: []string{"plugin", "memory"}, Settings: benchSettings()})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := p.Secret(ctx, "s"); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		rssKiB = float64(vmRSS(p.Pid()))
		_ = p.Close()
		b.StartTimer()
	}
	b.ReportMetric(rssKiB, "plugin-rss-KiB")
}

func vmRSS(pid int) int {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.Fields(rest)[0])
			return n
		}
	}
	return 0
}
