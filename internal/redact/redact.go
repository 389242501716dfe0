package redact

import (
	"net/url"
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
