package redact

import (
	"net/url"
	"regexp"
	"strings"
)

// URL is u with every password masked: the user part's and any query parameter whose name holds
// "password". A string that does not parse as a URL is replaced by fallback whole (net/url's
// error would repeat it).
func URL(u, fallback string) string {
	parsed, err := url.Parse(u)
	if err != nil {
		return fallback
	}
	q := parsed.Query()
	for k := range q {
		if strings.Contains(strings.ToLower(k), "password") {
			q.Set(k, "xxxxx")
		}
	}
	parsed.RawQuery = q.Encode()
	return parsed.Redacted()
}

// userinfo matches the user part of a URL inside free text ("https://user:pass@host").
var userinfo = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s"']*@`)

// Userinfo is text with the user part of every URL in it masked, for messages that libraries
// build around a URL they were given (an exporter's endpoint, say), which may carry credentials.
func Userinfo(text string) string { return userinfo.ReplaceAllString(text, "${1}xxxxx@") }
