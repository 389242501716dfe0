// Package providerv1 is the generated Go code of Keyfort's plugin protocol, keyfort.provider.v1
// (proto/keyfort/provider/v1/provider.proto). Regenerate with scripts/genproto.sh; CI fails when the
// committed code differs from a fresh generation. Plugin authors in Go use provider/plugin instead;
// authors in other languages generate their own code from the .proto file.
package providerv1
