// Command custom-plugin is a third-party-style Keyfort provider plugin: signing keys and secrets from
// files in a directory. It uses only Keyfort's public API; its whole main is one call.
//
// Configure it with:
//
//	providers:
//	  files:
//	    plugin: /usr/local/lib/keyfort/custom-plugin
//	    sha256: "<sha256sum of the binary>"
//	    settings: { dir: /etc/keyfort/files, watch: 2s }   # watch: report changed files at once
//	identity:
//	  secrets:
//	    session_signing: files:session
package main
