package session

import "time"

// WaitForCutScans waits until the cut scanner has no cut left to apply (benchmarks measure the
// scan, which runs off the feed's goroutine).
func (c *Cache) WaitForCutScans() {
	for {
		c.cutMu.Lock()
		busy := c.scanning || len(c.pendingCuts) > 0
		c.cutMu.Unlock()
		if !busy {
			return
		}
		time.Sleep(20 * time.Microsecond)
	}
}
