// Package hosttest builds the provider-host binary (or any main package of this module) once per test
// process, for tests that launch real plugin processes.
package hosttest
