// Package filekeys is the provider behind the custom-plugin example: key sets and secrets read from
// a directory at every call.
//
//	DIR/keys/NAME/*.pem   a key set: every file is a key (a PEM private key, or a public key that only
//	                      verifies); the file whose name sorts last is the active key, so rotation is
//	                      "write 0003.pem". HS256 secrets are files ending in .hs256.
//	DIR/secrets/NAME      a secret: the file's bytes.
//
// Names must be single path elements: "..", "/" and hidden names are refused, so a location can never
// leave DIR.
//
// With the watch setting the provider is a provider.Watcher: it compares the directory's files at
// that interval and reports each key set and secret whose files changed, so that a rotation
// ("write 0003.pem") reaches the host's cache at once.
package filekeys
