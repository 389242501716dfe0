package redisstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keyfort/keyfort/internal/redistest"
	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/redisstore"
	"github.com/keyfort/keyfort/session/sessiontest"
)

// TestSentinel runs the store contract through Redis Sentinel (a master, a replica and a Sentinel,
// each a real redis-server), then fails the master over: the store follows the Sentinel to the
// promoted replica with its data (the families written before), the revocation feed reports a
// Resync and carries events again.
func TestSentinel(t *testing.T) {
	sen := redistest.StartSentinel(t)
	ctx := context.Background()
	open := func(t *testing.T) *redisstore.Store {
		s, err := redisstore.New(ctx, redisstore.Config{URL: sen.URL, Prefix: uniqueName("keyfort-sentinel-test:") + ":"})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	t.Run("Contract", func(t *testing.T) {
		sessiontest.RunStoreTests(t, func(t *testing.T) session.Store { return open(t) })
	})
	t.Run("Failover", func(t *testing.T) {
		s := open(t)
		defer s.Close()
		events := make(chan session.Revocation, 64)
		stop, err := s.SubscribeRevocations(ctx, func(r session.Revocation) { events <- r })
		if err != nil {
			t.Fatal(err)
		}
		defer stop()
		fam := session.Family{ID: "before-failover", Current: "j1", ExpiresAt: time.Now().Add(time.Hour)}
		if err := s.CreateFamily(ctx, fam); err != nil {
			t.Fatal(err)
		}
		sen.SyncReplica(t) // the family must be on the replica before it is promoted
		promoted := sen.Failover(t)
		if promoted != sen.Replica {
			t.Fatalf("the Sentinel promoted %s, want the replica %s", promoted, sen.Replica)
		}
		var got session.Family
		for range 200 { // the first calls after the switch may meet the old master's closed connections
			if got, err = s.Family(ctx, fam.ID); err == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil || got.Revoked || got.Current != "j1" {
			t.Fatalf("the family after the failover: %+v, %v", got, err)
		}
		if _, out, err := s.Rotate(ctx, fam.ID, "j1", "j2", time.Now(), time.Second); err != nil || out != session.Rotated {
			t.Fatalf("a rotation on the new master: %v, %v", out, err)
		}
		resynced := false
		for !resynced {
			select {
			case r := <-events:
				resynced = r.Resync
			case <-time.After(20 * time.Second):
				t.Fatal("no Resync after the failover")
			}
		}
		if err := s.RevokeFamily(ctx, fam.ID); err != nil {
			t.Fatal(err)
		}
		for {
			select {
			case r := <-events:
				if r.Family == fam.ID {
					return
				}
			case <-time.After(20 * time.Second):
				t.Fatal("no event from the new master")
			}
		}
	})
}

// TestRedactedURL: a URL is shown without its user's password or a password query parameter.
func TestRedactedURL(t *testing.T) {
	for in, want := range map[string]string{
		"rediss://keyfort:Pa55word@redis.internal:6380/0":                                  "rediss://keyfort:xxxxx@redis.internal:6380/0",
		"redis://:s3ntinel-Pa55@s1:26379/0?master_name=m&password=data-Pa55&addr=s2:26379": "redis://:xxxxx@s1:26379/0?addr=s2%3A26379&master_name=m&password=xxxxx",
		"redis://r:6379/0?sentinel_password=x-Pa55":                                        "redis://r:6379/0?sentinel_password=xxxxx",
		"redis://r:6379/0": "redis://r:6379/0",
	} {
		got := redisstore.RedactedURL(in)
		if got != want {
			t.Errorf("RedactedURL(%q) = %q, want %q", in, got, want)
		}
		if strings.Contains(got, "Pa55") {
			t.Errorf("%q shows a password", got)
		}
	}
}

// TestSkipVerifyRefused: go-redis would turn TLS verification off for skip_verify=true in the URL;
// the store refuses such a URL, whatever the topology, before connecting.
func TestSkipVerifyRefused(t *testing.T) {
	for _, u := range []string{
		"rediss://127.0.0.1:1/0?skip_verify=true",
		"rediss://127.0.0.1:1/0?master_name=m&skip_verify=true",
		"rediss://127.0.0.1:1?cluster=true&skip_verify=true",
	} {
		_, err := redisstore.New(context.Background(), redisstore.Config{URL: u})
		if !errors.Is(err, provider.ErrInvalidConfig) || !strings.Contains(err.Error(), "skip_verify") {
			t.Errorf("%s: got %v, want ErrInvalidConfig naming skip_verify", u, err)
		}
	}
}
