package testnet

import (
	"net"
	"testing"
)

// FreePort returns a TCP port of 127.0.0.1 that was free a moment ago, for a server a test starts.
func FreePort(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}
