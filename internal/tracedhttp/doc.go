// Package tracedhttp wraps the HTTP transport of a backend client (Vault's, the AWS SDK's) so that
// each request made within a traced call becomes an otelhttp client span under the call's span,
// and a request outside any trace costs nothing more than the bare transport.
package tracedhttp
