package plugin

import (
	"context"
	"errors"
	"os"
	"syscall"
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

// TestSIGTERMWaitsForTheHost: the first SIGTERM leaves the provider open (the host, signalled with
// it, still needs it to revoke leases as it shuts down); a second one, or the grace running out,
// closes it and exits with status 0; a plugin stopped by its host in the meantime does neither.
func TestSIGTERMWaitsForTheHost(t *testing.T) {
	for _, tc := range []struct {
		name    string
		grace   time.Duration
		signals int
	}{
		{"second SIGTERM", time.Hour, 2},
		{"grace runs out", 20 * time.Millisecond, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			impl, err := memory.New(context.Background(), memory.Config{})
			if err != nil {
				t.Fatal(err)
			}
			srv := &server{impl: impl}
			sigs := make(chan os.Signal, 2)
			exited := make(chan int, 1)
			done := make(chan struct{})
			go func() {
				defer close(done)
				awaitHost(context.Background(), srv, sigs, tc.grace, func(code int) { exited <- code })
			}()
			sigs <- syscall.SIGTERM
			if tc.signals == 2 {
				select {
				case code := <-exited:
					t.Fatalf("the first SIGTERM ended the plugin (%d)", code)
				case <-time.After(50 * time.Millisecond):
				}
				if _, err := impl.Secret(context.Background(), "anything"); errors.Is(err, provider.ErrClosed) {
					t.Fatalf("the provider stopped serving after the first SIGTERM: %v", err)
				}
				sigs <- syscall.SIGTERM
			}
			select {
			case code := <-exited:
				if code != 0 {
					t.Errorf("exit status %d, want 0", code)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the plugin did not exit")
			}
			<-done
			if _, err := impl.Secret(context.Background(), "anything"); !errors.Is(err, provider.ErrClosed) {
				t.Errorf("the provider was not closed before the exit: %v", err)
			}
		})
	}
	t.Run("stopped by its host", func(t *testing.T) {
		impl, err := memory.New(context.Background(), memory.Config{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		sigs := make(chan os.Signal, 2)
		done := make(chan struct{})
		go func() {
			defer close(done)
			awaitHost(ctx, &server{impl: impl}, sigs, time.Hour, func(code int) { t.Errorf("exit(%d) after the host stopped the plugin", code) })
		}()
		sigs <- syscall.SIGTERM
		cancel()
		<-done
	})
}
