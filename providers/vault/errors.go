package vault

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/hashicorp/vault/api"

	"github.com/keyfort/keyfort/provider"
)

// classify turns a vault/api error into a provider error at location, naming the operation and path
// and never a token: Vault's own error texts carry paths and reasons, and vault/api puts no token in
// its errors, but we rebuild the message anyway so that nothing but status and Vault's reasons passes.
func classify(location, op, path string, err error) error {
	if err == nil {
		return nil
	}
	var re *api.ResponseError
	if errors.As(err, &re) {
		kind := provider.ErrInternal
		switch {
		case re.StatusCode == 403 || re.StatusCode == 401:
			kind = provider.ErrPermissionDenied
		case re.StatusCode == 404:
			kind = provider.ErrNotFound
		case re.StatusCode == 400:
			kind = provider.ErrInvalidArgument
		case re.StatusCode == 429 || re.StatusCode >= 500:
			kind = provider.ErrUnavailable
		}
		reasons := strings.Join(re.Errors, "; ")
		if reasons == "" {
			reasons = "no reason given"
		}
		return provider.NewError(kind, location, fmt.Errorf("vault %s %s: HTTP %d: %s", op, path, re.StatusCode, reasons))
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return provider.NewError(provider.ErrUnavailable, location, fmt.Errorf("vault %s %s: %w", op, path, ctxErr(err)))
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		// url.Error quotes the request URL (path and query, no token); keep only the network reason.
		return provider.NewError(provider.ErrUnavailable, location, fmt.Errorf("vault %s %s: server unreachable: %v", op, path, ue.Err))
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return provider.NewError(provider.ErrUnavailable, location, fmt.Errorf("vault %s %s: server unreachable: %v", op, path, ne))
	}
	if pe := (*provider.Error)(nil); errors.As(err, &pe) {
		return err
	}
	return provider.NewError(provider.ErrInternal, location, fmt.Errorf("vault %s %s: %v", op, path, err))
}

func ctxErr(err error) error {
	if errors.Is(err, context.Canceled) {
		return context.Canceled
	}
	return context.DeadlineExceeded
}
