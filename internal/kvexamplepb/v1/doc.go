// Package kvexamplev1 is the generated Go code of the example key-value service,
// keyfort.kvexample.v1 (proto/keyfort/kvexample/v1/kv.proto). Regenerate with scripts/genproto.sh.
package kvexamplev1
