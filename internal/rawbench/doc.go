// Package rawbench holds the raw primitives that Keyfort's benchmarks compare its hot paths with,
// written once so that every package measures against the same floor. It is built from the
// standard library only, never from the code it is compared with.
package rawbench
