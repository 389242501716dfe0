package provider

import (
	"context"
	"errors"
	"strings"
)

// The closed set of error kinds. Every error returned by a [Client] satisfies errors.Is against exactly
// one of them. Adapters return them through [NewError] so that the location travels with the kind.
var (
	// ErrNotFound: the material does not exist at the location (or no such lease).
	ErrNotFound = errors.New("not found")
	// ErrPermissionDenied: the backend refused the provider's identity.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrInvalidArgument: the request was malformed (empty name, bad location syntax).
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrInvalidConfig: the provider's own configuration is wrong (bad settings, bad key material).
	ErrInvalidConfig = errors.New("invalid configuration")
	// ErrUnavailable: a transient failure (backend unreachable, timeout, plugin restarting); retryable.
	ErrUnavailable = errors.New("unavailable")
	// ErrUnimplemented: the provider lacks an optional capability.
	ErrUnimplemented = errors.New("unimplemented")
	// ErrClosed: the provider or client was closed.
	ErrClosed = errors.New("closed")
	// ErrInternal: anything the adapter did not classify; a bug to report.
	ErrInternal = errors.New("internal error")
)

// Kinds lists every sentinel in the closed set, in a stable order.
var Kinds = []error{
	ErrNotFound, ErrPermissionDenied, ErrInvalidArgument, ErrInvalidConfig,
	ErrUnavailable, ErrUnimplemented, ErrClosed, ErrInternal,
}

// Error is a classified provider error. Its message names the operation, the provider and the location,
// and never carries a secret value: adapters must not put values into Err either.
type Error struct {
	// Kind is one of the sentinels in [Kinds].
	Kind error
	// Provider is the provider instance's configured name; the [Client] sets it once.
	Provider string
	// Op is the contract method ("SigningKeys", "Secret", ...); the [Client] sets it when empty.
	Op string
	// Location is where the material lives within the provider (a path, a variable name, a lease id).
	Location string
	// Err is the underlying cause; it may be nil.
	Err error
}

// NewError classifies cause as kind at location. kind must be one of the sentinels in [Kinds]; anything
// else is treated as [ErrInternal].
func NewError(kind error, location string, cause error) *Error {
	if !isKind(kind) {
		kind = ErrInternal
	}
	return &Error{Kind: kind, Location: location, Err: cause}
}

// Error implements error: "keyfort: provider "vault": SigningKeys "kv/x": not found: <cause>".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("keyfort: ")
	if e.Provider != "" {
		b.WriteString("provider ")
		b.WriteString(quote(e.Provider))
		b.WriteString(": ")
	}
	if e.Op != "" {
		b.WriteString(e.Op)
		if e.Location != "" {
			b.WriteByte(' ')
		}
	}
	if e.Location != "" {
		b.WriteString(quote(e.Location))
	}
	if e.Op != "" || e.Location != "" {
		b.WriteString(": ")
	}
	b.WriteString(e.Kind.Error())
	if e.Err != nil {
		if msg := e.Err.Error(); msg != "" && msg != e.Kind.Error() {
			b.WriteString(": ")
			b.WriteString(msg)
		}
	}
	return b.String()
}

// Is reports whether target is this error's kind.
func (e *Error) Is(target error) bool { return target == e.Kind }

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

func quote(s string) string { return "\"" + s + "\"" }

func isKind(err error) bool {
	for _, k := range Kinds {
		if err == k {
			return true
		}
	}
	return false
}

// KindOf returns the sentinel that err satisfies, classifying context errors as [ErrUnavailable] and
// anything unknown as [ErrInternal]. It returns nil for a nil error.
func KindOf(err error) error {
	if err == nil {
		return nil
	}
	var pe *Error
	if errors.As(err, &pe) && isKind(pe.Kind) {
		return pe.Kind
	}
	for _, k := range Kinds {
		if errors.Is(err, k) {
			return k
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return ErrUnavailable
	}
	return ErrInternal
}

// KindName returns a short stable label for a kind ("not_found", ...), used in metrics and logs.
func KindName(kind error) string {
	switch kind {
	case nil:
		return "ok"
	case ErrNotFound:
		return "not_found"
	case ErrPermissionDenied:
		return "permission_denied"
	case ErrInvalidArgument:
		return "invalid_argument"
	case ErrInvalidConfig:
		return "invalid_config"
	case ErrUnavailable:
		return "unavailable"
	case ErrUnimplemented:
		return "unimplemented"
	case ErrClosed:
		return "closed"
	default:
		return "internal"
	}
}

// KindFromName is the inverse of [KindName]; unknown names give [ErrInternal].
func KindFromName(name string) error {
	for _, k := range Kinds {
		if KindName(k) == name {
			return k
		}
	}
	return ErrInternal
}

// classify returns err as an *Error carrying provider and op, adding them only where they are missing,
// so a provider name is added exactly once however many layers an error crosses.
func classify(err error, providerName, op, location string) error {
	if err == nil {
		return nil
	}
	var pe *Error
	if errors.As(err, &pe) {
		if pe.Provider != "" && pe.Op != "" {
			return err
		}
		cp := *pe
		if cp.Provider == "" {
			cp.Provider = providerName
		}
		if cp.Op == "" {
			cp.Op = op
		}
		if cp.Location == "" {
			cp.Location = location
		}
		return &cp
	}
	return &Error{Kind: KindOf(err), Provider: providerName, Op: op, Location: location, Err: err}
}
