// Command provider-host is Keyfort's one binary. It serves every built-in provider adapter as a
// go-plugin plugin (the host library starts "provider-host plugin NAME" per configured provider),
// runs the identity runtime (serve), offers the admin commands check, get and version, and carries
// the load generator (bench), which stands up a deployment on loopback and drives it with many
// concurrent sessions. Run "provider-host --help".
package main
