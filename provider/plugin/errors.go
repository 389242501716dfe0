package plugin

import (
	"context"
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/keyfort/keyfort/provider"
)

// errorDomain marks statuses produced by a Keyfort provider (as opposed to the transport).
const errorDomain = "keyfort.dev"

// codeOf is the one table from error kinds to gRPC codes; kindOf is its inverse.
var codeOf = map[error]codes.Code{
	provider.ErrNotFound:         codes.NotFound,
	provider.ErrPermissionDenied: codes.PermissionDenied,
	provider.ErrInvalidArgument:  codes.InvalidArgument,
	provider.ErrInvalidConfig:    codes.FailedPrecondition,
	provider.ErrUnavailable:      codes.Unavailable,
	provider.ErrUnimplemented:    codes.Unimplemented,
	provider.ErrClosed:           codes.Aborted,
	provider.ErrInternal:         codes.Internal,
}

var kindOf = func() map[codes.Code]error {
	m := make(map[codes.Code]error, len(codeOf)+2)
	for k, c := range codeOf {
		m[c] = k
	}
	m[codes.Unauthenticated] = provider.ErrPermissionDenied
	m[codes.ResourceExhausted] = provider.ErrUnavailable
	return m
}()

// toStatus encodes a provider error as a gRPC status: the code carries the kind, an ErrorInfo carries
// the kind by name and the location, and the message is the cause's message (which by contract names
// locations, never values). Context errors keep their own codes so cancellation round-trips.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	kind := provider.KindOf(err)
	msg := ""
	location := ""
	var pe *provider.Error
	if errors.As(err, &pe) {
		location = pe.Location
		if pe.Err != nil {
			msg = pe.Err.Error()
		}
	} else {
		msg = err.Error()
	}
	st := status.New(codeOf[kind], msg)
	if withInfo, derr := st.WithDetails(&errdetails.ErrorInfo{
		Reason:   provider.KindName(kind),
		Domain:   errorDomain,
		Metadata: map[string]string{"location": location},
	}); derr == nil {
		st = withInfo
	}
	return st.Err()
}

// fromStatus decodes a gRPC error into a classified provider error. Statuses without Keyfort's
// ErrorInfo come from the transport and are classified by code (Unavailable for a broken connection).
func fromStatus(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return provider.NewError(provider.ErrUnavailable, "", err)
	}
	switch st.Code() {
	case codes.Canceled:
		return provider.NewError(provider.ErrUnavailable, "", context.Canceled)
	case codes.DeadlineExceeded:
		return provider.NewError(provider.ErrUnavailable, "", context.DeadlineExceeded)
	}
	kind, ok := kindOf[st.Code()]
	if !ok {
		kind = provider.ErrInternal
	}
	location := ""
	if info := errorInfo(st); info != nil {
		kind = provider.KindFromName(info.GetReason())
		location = info.GetMetadata()["location"]
	}
	var cause error
	if msg := st.Message(); msg != "" && msg != kind.Error() {
		cause = errors.New(msg)
	}
	return provider.NewError(kind, location, cause)
}

func errorInfo(st *status.Status) *errdetails.ErrorInfo {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == errorDomain {
			return info
		}
	}
	return nil
}

// isTransportFailure reports whether err means the plugin process or its connection is gone, rather
// than an answer from the provider.
func isTransportFailure(err error) bool {
	st, ok := status.FromError(err)
	if !ok {
		return true
	}
	if errorInfo(st) != nil {
		return false
	}
	switch st.Code() {
	case codes.Unavailable, codes.Unknown, codes.Internal:
		return true
	}
	return false
}
