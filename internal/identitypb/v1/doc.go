// Package identityv1 is the generated Go code of Keyfort's identity runtime service,
// keyfort.identity.v1 (proto/keyfort/identity/v1/identity.proto). Regenerate with scripts/genproto.sh.
package identityv1
