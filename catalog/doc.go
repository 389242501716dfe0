// Package catalog turns a configuration into running providers and resolves Keyfort's logical keys
// through them. It starts one plugin process per provider instance (built-ins through the provider-host
// binary, custom plugins from their own binary, optionally pinned by SHA-256), wraps each in a
// provider.Client (cache, timeouts, metrics) and answers SigningKeys, Secret and Credentials by logical
// key. [Catalog.Check] resolves every configured key and reports each; [Open] with Verify fails start-up
// naming every key whose material is missing. [Catalog.Refresh] refetches every provider's cached
// material at once (provider-host serve does it on SIGHUP).
//
// With no configuration at all, the catalog serves an ephemeral in-process EdDSA signing key and logs a
// loud warning; production configuration forbids that.
package catalog
