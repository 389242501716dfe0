// Package memory is an in-memory provider for tests and local development. It generates signing keys
// (on configuration, or on first use when GenerateAlgorithm is set), rotates them on demand (it
// implements provider.KeyRotator), serves secrets set in its configuration or through SetSecret, and
// issues dynamic credentials with renewable, revocable leases. Nothing survives the process. The memory
// provider is refused when configuration sets production: true.
package memory
