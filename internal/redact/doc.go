// Package redact masks the secrets of connection strings (Redis and PostgreSQL URLs) for logs,
// errors and check output: passwords in the user part and in query parameters are masked, and a
// string that does not parse is replaced whole, since a parser's error would repeat it. Userinfo
// masks the user part of every URL inside a free text (a library's error message).
package redact
