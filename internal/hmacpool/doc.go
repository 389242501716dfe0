// Package hmacpool keeps pooled HMAC-SHA-256 instances for one key, so that the hot paths (the
// session cache's token key, HS256 tokens) pay the key schedule once per pooled instance rather than
// once per call, and allocate nothing: the input is read in place and the sum lands in a buffer that
// travels with the instance.
package hmacpool
