package plugin

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/providers/memory"
)

// TestOrphanClosesItsProviderAndExits: when the parent changes, the watchdog closes the provider
// (which revokes what it leased) and exits; while the parent lives, it does nothing.
func TestOrphanClosesItsProviderAndExits(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	impl, err := memory.New(ctx, memory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv := &server{impl: impl}
	exited := make(chan int, 1)
	exit := func(code int) { exited <- code }

	watchParent(ctx, srv, 1, time.Millisecond, exit) // init's child: returns at once, no exit
	select {
	case code := <-exited:
		t.Fatalf("a child of pid 1 exited (%d)", code)
	default:
	}

	done := make(chan struct{})
	go func() { defer close(done); watchParent(ctx, srv, os.Getppid(), time.Millisecond, exit) }()
	select {
	case code := <-exited:
		t.Fatalf("the watchdog exited (%d) while the parent lives", code)
	case <-time.After(50 * time.Millisecond):
	}

	go watchParent(ctx, srv, os.Getppid()+100000, time.Millisecond, exit) // a parent that is not ours
	select {
	case code := <-exited:
		if code == 0 {
			t.Error("an orphan exited with status 0")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the watchdog did not notice the changed parent")
	}
	if _, err := impl.Secret(context.Background(), "anything"); !errors.Is(err, provider.ErrClosed) {
		t.Errorf("the orphan's provider was not closed: %v", err)
	}
	cancel()
	<-done
}
