package pgstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keyfort/keyfort/internal/pgtest"
	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/pgstore"
)

// TestFailoverToStandby: a store given both servers of a primary and its streaming standby
// (target_session_attrs=read-write) follows a failover. The primary is killed with SIGKILL and the
// standby promoted; calls in the switch fail with ErrStoreUnavailable (the session library fails
// closed), then the store works on the promoted server with every family replicated before the
// switch, rotations included, and its revocation feed listens there again (a Resync, then events).
func TestFailoverToStandby(t *testing.T) {
	pair := pgtest.StartPair(t)
	ctx := context.Background()
	s := open(t, pgstore.Config{URL: pair.URL})
	heard := make(chan session.Revocation, 16)
	stop, err := s.SubscribeRevocations(ctx, func(r session.Revocation) { heard <- r })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()

	now := time.Now()
	for _, id := range []string{"a", "b"} {
		if err := s.CreateFamily(ctx, session.Family{ID: id, Current: id + "1", ExpiresAt: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, out, err := s.Rotate(ctx, "a", "a1", "a2", now, time.Second); err != nil || out != session.Rotated {
		t.Fatalf("rotate before the failover: %v, %v", out, err)
	}
	if err := s.Tombstone(ctx, "logged-out", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	pair.Sync(t)
	pair.Failover(t)

	// The pool's connections to the killed primary fail; new ones reach the promoted standby.
	deadline := time.Now().Add(30 * time.Second)
	var f session.Family
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		f, err = s.Family(cctx, "a")
		cancel()
		if err == nil {
			break
		}
		if !errors.Is(err, session.ErrStoreUnavailable) {
			t.Fatalf("a call in the switch: %v, want ErrStoreUnavailable", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the store did not reach the promoted standby: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if f.Current != "a2" || f.Previous != "a1" {
		t.Errorf("family a after the failover: current %q previous %q, want the rotation made before it", f.Current, f.Previous)
	}
	if ok, err := s.Tombstoned(ctx, "logged-out"); err != nil || !ok {
		t.Errorf("the tombstone after the failover: %v, %v", ok, err)
	}
	// Reuse of a spent token is still caught, and a rotation commits on the new primary.
	if _, out, err := s.Rotate(ctx, "a", "a1", "a9", time.Now().Add(time.Minute), time.Second); err != nil || out != session.Reuse {
		t.Errorf("reuse after the failover: %v, %v", out, err)
	}
	if _, out, err := s.Rotate(ctx, "b", "b1", "b2", time.Now(), time.Second); err != nil || out != session.Rotated {
		t.Errorf("rotate on the promoted standby: %v, %v", out, err)
	}

	// The feed's connection died with the primary: it listens on the promoted server and says so.
	waitFor := func(want session.Revocation) {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for {
			select {
			case r := <-heard:
				if r == want {
					return
				}
			case <-timeout:
				t.Fatalf("no %+v from the feed after the failover", want)
			}
		}
	}
	waitFor(session.Revocation{Resync: true})
	if err := s.RevokeFamily(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	waitFor(session.Revocation{Family: "b"})
}
