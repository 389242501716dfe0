package plugin

import (
	"context"
	"log/slog"
	"os"
	"time"
)

// TermGrace is how long a plugin process that receives SIGTERM keeps serving while it waits for its
// host to stop it (see [Serve]).
const TermGrace = 60 * time.Second

// parentPoll is how often a plugin process checks that its host is alive.
const parentPoll = 250 * time.Millisecond

// orphanCloseTimeout bounds closing the provider of a plugin whose host died.
const orphanCloseTimeout = 10 * time.Second

// watchParent ends a plugin process whose host died without stopping it (killed, crashed, OOM):
// go-plugin stops plugins only when the host asks, so an orphan would otherwise live on, holding
// secret material in memory and keeping its backend login (a Vault token, say) renewed for nobody.
// When the parent process changes (the orphan is re-parented to init or a subreaper), the provider is
// closed, which revokes what it leased and its own login where the backend allows, and the process
// exits. Polling getppid is portable across Unix systems and cannot fire early, unlike Linux's
// PR_SET_PDEATHSIG, which follows the forking thread rather than the process.
// It returns when ctx ends.
func watchParent(ctx context.Context, srv *server, ppid int, poll time.Duration, exit func(code int)) {
	// A parent of pid 1 is init, or a host that is the init of its container: when such a host
	// dies, the kernel ends every process of its PID namespace, plugins included.
	if ppid <= 1 {
		return
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if os.Getppid() == ppid {
			continue
		}
		slog.Warn("keyfort: the host process is gone; closing the provider and exiting",
			slog.Int("host_pid", ppid))
		cctx, cancel := context.WithTimeout(context.Background(), orphanCloseTimeout)
		_, _ = srv.Close(cctx, nil)
		cancel()
		exit(3)
		return
	}
}

// awaitHost keeps a plugin process that receives SIGTERM serving until its host stops it. A
// supervisor that stops a service often signals every process of it at once (systemd's default
// KillMode=control-group, `timeout`, `kill -TERM -PGID`): a plugin that died there and then would
// leave its host shutting down without the provider through which it revokes its sessions' leases
// and logins. So the first SIGTERM is logged and otherwise waited out: the host stops the plugin
// when it has finished with it (go-plugin's shutdown, after which Serve closes the provider), or
// the host's death is noticed by watchParent. If neither happens within grace, or a second SIGTERM
// arrives, the provider is closed and the process exits, so an operator's SIGTERM still ends a
// plugin on its own. It returns when ctx ends.
func awaitHost(ctx context.Context, srv *server, sigs <-chan os.Signal, grace time.Duration, exit func(code int)) {
	select {
	case <-ctx.Done():
		return
	case <-sigs:
	}
	slog.Info("keyfort: SIGTERM received; serving until the host stops this plugin",
		slog.Duration("grace", grace))
	t := time.NewTimer(grace)
	defer t.Stop()
	reason := "the host did not stop it within the grace period"
	select {
	case <-ctx.Done():
		return
	case <-sigs:
		reason = "a second SIGTERM"
	case <-t.C:
	}
	slog.Warn("keyfort: closing the provider and exiting", slog.String("reason", reason))
	cctx, cancel := context.WithTimeout(context.Background(), orphanCloseTimeout)
	_, _ = srv.Close(cctx, nil)
	cancel()
	exit(0)
}
