package capfetch

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Client returns an HTTP client with the timeout that follows no redirect (a document server that
// redirects elsewhere is not followed to another host).
func Client(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
}

// Allowed reports whether u may serve a document: https, or http on a loopback address.
func Allowed(u string) bool {
	return strings.HasPrefix(u, "https://") || Loopback(u)
}

// Loopback reports whether u is an http URL on a loopback address.
func Loopback(u string) bool {
	return strings.HasPrefix(u, "http://127.0.0.1:") || strings.HasPrefix(u, "http://localhost:") || strings.HasPrefix(u, "http://[::1]:")
}

// Get fetches url with Accept accept and returns its body, which must answer 200 and be at most
// max bytes (checked while reading). Errors name the status or the cap, never the body.
func Get(ctx context.Context, c *http.Client, url, accept string, max int64) ([]byte, error) {
	body, _, err := GetWithHeader(ctx, c, url, accept, max)
	return body, err
}

// GetWithHeader is Get that also returns the response's header (its Cache-Control, say).
func GetWithHeader(ctx context.Context, c *http.Client, url, accept string, max int64) ([]byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", accept)
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, nil, err
	}
	if int64(len(body)) > max {
		return nil, nil, fmt.Errorf("response larger than %d bytes", max)
	}
	return body, resp.Header, nil
}
