package main_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/keyfort/keyfort/internal/hosttest"
)

// TestServeBoundsWhatAClientHolds: serve's listeners bound what one client may hold without
// sending a request: an HTTP request that does not arrive within --http-read-timeout loses its
// connection, headers beyond 64 KiB are refused (431), and a gRPC connection is told it may have
// --grpc-max-streams calls in flight (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS).
func TestServeBoundsWhatAClientHolds(t *testing.T) {
	m, _, _ := hosttest.StartLogged(t, hosttest.ProviderHost(t), []string{"PATH=" + os.Getenv("PATH")}, servingPlain,
		"serve", "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--http-read-timeout", "300ms", "--grpc-max-streams", "7")
	httpAddr, grpcAddr := m[0], m[1]

	// A request whose body never arrives: two bytes of the hundred announced.
	c, err := net.Dial("tcp", httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: keyfort\r\nContent-Length: 100\r\n\r\nab"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second)) // a safety net, not the bound tested
	if _, err := io.ReadAll(c); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("serve kept a connection whose request never arrived")
		}
	}

	req, err := http.NewRequest(http.MethodGet, "http://"+httpAddr+"/healthz", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Padding", strings.Repeat("a", 100<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("100 KiB of headers: %d, want 431", resp.StatusCode)
	}

	g, err := net.Dial("tcp", grpcAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	_ = g.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(g, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(g, bufio.NewReader(g))
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("no SETTINGS from the gRPC listener: %v", err)
		}
		sf, ok := f.(*http2.SettingsFrame)
		if !ok || sf.IsAck() {
			continue
		}
		if v, ok := sf.Value(http2.SettingMaxConcurrentStreams); !ok || v != 7 {
			t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS: %d (sent: %v), want 7", v, ok)
		}
		break
	}
}

// TestServeRefusesUnboundedListeners: the bounds cannot be turned off by accident.
func TestServeRefusesUnboundedListeners(t *testing.T) {
	for _, args := range [][]string{{"--http-read-timeout", "0s"}, {"--http-read-timeout", "-1s"}, {"--grpc-max-streams", "0"}} {
		r := run(t, nil, append([]string{"serve", "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0"}, args...)...)
		if r.code == 0 || !strings.Contains(r.stderr, args[0]) {
			t.Errorf("%v: exit %d, want a refusal naming the flag\n%s", args, r.code, r.stderr)
		}
	}
}
