//go:build unix && !linux

package harden

func undumpable() error { return nil }

func dumpable() (bool, error) { return false, nil }
