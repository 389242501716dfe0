// Command provider-host is Keyfort's one binary. It serves every built-in provider adapter as a
// go-plugin plugin (the host library starts "provider-host plugin NAME" per configured provider), and
// offers the admin commands check, get, serve and version. Run "provider-host --help".
package main
