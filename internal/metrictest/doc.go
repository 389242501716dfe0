// Package metrictest reads Prometheus counters out of a registry for tests: the one place the
// tests of several packages look up a counter by name and labels.
package metrictest
