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
