// Package spantest is test support: an OpenTelemetry tracer provider that records spans in memory,
// with helpers to find spans by name, read their attributes, and assert that no secret value reached
// a span's name, status, attributes or events.
package spantest
