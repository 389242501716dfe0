//go:build !unix

package harden

// Process does nothing where there are no core limits to set.
func Process() error { return nil }

// ReplaceableBy reports nothing where file ownership and modes are not Unix's.
func ReplaceableBy(string) error { return nil }
