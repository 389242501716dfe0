package plugin

import (
	"context"
	"log/slog"
	"os"
	"time"
)

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
