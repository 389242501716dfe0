package identityclient_test

import (
	"context"
	"sync"
	"testing"
	"time"

	pb "github.com/keyfort/keyfort/api/identity/v1"
	"github.com/keyfort/keyfort/session/identityclient"
)

// BenchmarkCallCredentials is what a Session adds to each outgoing call while its token is fresh:
// GetRequestMetadata, as gRPC calls it.
func BenchmarkCallCredentials(b *testing.B) {
	r := newRuntime(b)
	var tokens *pb.SessionTokens
	r.start(b, identityclient.Config{OnTokens: func(t *pb.SessionTokens) { tokens = t }})
	s, err := identityclient.Resume(identityclient.Config{Runtime: pb.NewIdentityRuntimeServiceClient(r.conn(b, nil)),
		Insecure: true, RefreshBefore: time.Second}, tokens) // the real clock; the token is fresh for a minute
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.GetRequestMetadata(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawCallCredentials is the floor of the same job: a mutex, a clock read, a comparison and
// a ready header map.
func BenchmarkRawCallCredentials(b *testing.B) {
	var mu sync.Mutex
	md := map[string]string{"authorization": "Bearer x"}
	renewAt := time.Now().Add(time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		mu.Lock()
		if !time.Now().Before(renewAt) {
			b.Fatal("expired")
		}
		got := md
		mu.Unlock()
		_ = got
	}
}
