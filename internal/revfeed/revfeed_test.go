package revfeed_test

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/keyfort/keyfort/internal/revfeed"
	"github.com/keyfort/keyfort/session"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParse(t *testing.T) {
	for in, want := range map[string]session.Revocation{
		"f:fam-1": {Family: "fam-1"},
		"t:abc":   {Token: "abc"},
		revfeed.Cut(session.SubjectCut{Subject: "alice", IdP: "google", Before: time.UnixMilli(1700000000123)}): {
			Subject: session.SubjectHash("alice"), SubjectIdP: "google", SubjectBefore: time.UnixMilli(1700000000123)},
		revfeed.Cut(session.SubjectCut{Subject: "bob", IdP: "a:b", Before: time.UnixMilli(5)}): {
			Subject: session.SubjectHash("bob"), SubjectIdP: "a:b", SubjectBefore: time.UnixMilli(5)},
		revfeed.Cut(session.SubjectCut{Subject: "carol", Before: time.UnixMilli(7)}): {
			Subject: session.SubjectHash("carol"), SubjectBefore: time.UnixMilli(7)},
		revfeed.Key(session.KeyRevocation{KeyID: "kid-1", Until: time.UnixMilli(1700000000123)}): {
			Key: "kid-1", KeyUntil: time.UnixMilli(1700000000123)},
		revfeed.Key(session.KeyRevocation{KeyID: "vault:2:x", Until: time.UnixMilli(9)}): {Key: "vault:2:x", KeyUntil: time.UnixMilli(9)},
	} {
		if got, ok := revfeed.Parse(in); !ok || got != want {
			t.Errorf("Parse(%q): got %+v, %v; want %+v", in, got, ok, want)
		}
	}
	hash := session.SubjectHash("alice")
	for _, in := range []string{"", "f:", "t:", "p:", "x:y", "fam", "s:", "s:1:" + hash, "s:x:" + hash + ":", "s:1:" + hash[1:] + ":",
		"s:1:" + strings.Repeat("g", 64) + ":", "s:1:" + hash + "0:",
		"k:", "k:1", "k:1:", "k:x:kid", "k::kid"} {
		if got, ok := revfeed.Parse(in); ok {
			t.Errorf("Parse(%q): got %+v, want no event", in, got)
		}
	}
}

// TestPumpDropsForAStuckSubscriberAndSaysSo: Push never blocks; the excess over the queue is
// dropped and counted, and the subscriber gets a Resync when it catches up; Close delivers what is
// queued and returns; Push after Close is ignored.
func TestPumpDropsForAStuckSubscriberAndSaysSo(t *testing.T) {
	gate := make(chan struct{})
	got := make(chan session.Revocation, 64)
	dropped := 0
	p := revfeed.NewPump(4, func(r session.Revocation) { <-gate; got <- r }, func() { dropped++ })
	for range 20 {
		p.Push(session.Revocation{Family: "f"})
	}
	if dropped < 20-4-1 { // one may be in fn, four in the queue
		t.Errorf("dropped %d of 20 with a queue of 4", dropped)
	}
	close(gate)
	resync := false
	for !resync {
		select {
		case r := <-got:
			resync = r.Resync
		case <-time.After(10 * time.Second):
			t.Fatal("no Resync after drops")
		}
	}
	p.Close()
	p.Close()
	p.Push(session.Revocation{Family: "late"})
}
