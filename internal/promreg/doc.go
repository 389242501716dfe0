// Package promreg registers Prometheus collectors the way every Keyfort component does: a collector
// already registered under the same description is shared, not an error, so that many instances
// (provider clients, caches, guards, client sessions) in one process export one series.
package promreg
