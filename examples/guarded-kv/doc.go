// Command guarded-kv is the example key-value service guarded by Keyfort: run it with one of the
// configurations in config/ (see README.md).
//
//	go run ./examples/guarded-kv --config examples/guarded-kv/config/auth-disabled.yaml
package main
