// Package testpki is a throwaway certificate authority for tests: a CA that issues server
// certificates for 127.0.0.1 and client certificates, written as PEM files in the test's temporary
// directory.
package testpki
