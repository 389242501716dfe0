package plugin

import "net"

// PluginAddr is where the current plugin process of p listens, nil when none runs.
func PluginAddr(p *Process) net.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == nil {
		return nil
	}
	return p.cur.addr
}

// SetAfterPinCheck runs fn between the digest check of a pinned plugin binary and its start, until
// the test ends.
func SetAfterPinCheck(t interface{ Cleanup(func()) }, fn func(path string)) {
	afterPinCheck = fn
	t.Cleanup(func() { afterPinCheck = nil })
}

// PinnedExec reports whether pinned binaries start from the file that was checked.
const PinnedExec = pinnedExec
