// Package storemetrics holds the collectors every shared session store exports (the Redis store
// and the PostgreSQL store): commands by name, failed commands, round-trip latency, and revocation
// events dropped for a slow subscriber. Two stores in one process share one registry's collectors.
package storemetrics
