//go:build !unix

package harden

// Process does nothing where there are no core limits to set.
func Process() error { return nil }
