package authd

import (
	"errors"
	"fmt"
	"slices"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrorDomain is the ErrorInfo domain of authd's errors. ErrorInfo from any
// other domain (a proxy, another service) says nothing about authd's
// decision and is ignored.
const ErrorDomain = "authd"

// Reason is why authd refused a request: the reason of its
// google.rpc.ErrorInfo, the auth.v1.ErrorReason value's name without
// ERROR_REASON_ (e.g. "TOKEN_EXPIRED"). A newer authd may send a reason this
// package has no constant for; it arrives as sent.
type Reason string

// Reasons returns every reason this package knows, in the order of the
// proto's enum (derived from the generated auth.v1.ErrorReason).
func Reasons() []Reason { return slices.Clone(knownReasons) }

// Known reports whether r is one of [Reasons].
func (r Reason) Known() bool { return slices.Contains(knownReasons, r) }

// AuthError is an error from authd or from the connection to it. Take it
// with errors.As:
//
//	var authErr *authd.AuthError
//	if errors.As(err, &authErr) && authErr.Reason == authd.ReasonTokenExpired { … }
type AuthError struct {
	// Code is the gRPC status code.
	Code codes.Code
	// Reason is authd's reason from google.rpc.ErrorInfo; empty when the
	// error did not come from authd (e.g. a connection failure).
	Reason Reason
	// Message is the human-readable message.
	Message string
	// Metadata is the ErrorInfo metadata (e.g. "missing" for
	// INSUFFICIENT_SCOPE); never a token or a session handle.
	Metadata map[string]string
}

func (e *AuthError) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("authd: %s (%s): %s", e.Code, e.Reason, e.Message)
	}
	return fmt.Sprintf("authd: %s: %s", e.Code, e.Message)
}

// GRPCStatus makes an AuthError a gRPC status (status.FromError,
// status.Code), with its ErrorInfo when it has a reason.
func (e *AuthError) GRPCStatus() *status.Status {
	st := status.New(e.Code, e.Message)
	if e.Reason == "" {
		return st
	}
	if with, err := st.WithDetails(&errdetails.ErrorInfo{
		Reason: string(e.Reason), Domain: ErrorDomain, Metadata: e.Metadata,
	}); err == nil {
		return with
	}
	return st
}

// Unavailable reports whether authd could not be reached or could not
// decide in time (UNAVAILABLE, DEADLINE_EXCEEDED): callers must fail closed.
func (e *AuthError) Unavailable() bool {
	return e.Code == codes.Unavailable || e.Code == codes.DeadlineExceeded
}

// ReasonOf returns authd's reason for err, or "" when err is not an
// [AuthError] with a reason.
func ReasonOf(err error) Reason {
	var authErr *AuthError
	if errors.As(err, &authErr) {
		return authErr.Reason
	}
	return ""
}

// fromStatus converts a gRPC error to an *AuthError.
func fromStatus(err error) *AuthError {
	if err == nil {
		return nil
	}
	var authErr *AuthError
	if errors.As(err, &authErr) {
		return authErr
	}
	st, _ := status.FromError(err)
	out := &AuthError{Code: st.Code(), Message: st.Message()}
	for _, detail := range st.Details() {
		if info, ok := detail.(*errdetails.ErrorInfo); ok && info.GetDomain() == ErrorDomain {
			out.Reason = Reason(info.GetReason())
			out.Metadata = info.GetMetadata()
			break
		}
	}
	return out
}

// localError is an error that did not come from authd.
func localError(code codes.Code, format string, args ...any) *AuthError {
	return &AuthError{Code: code, Message: fmt.Sprintf(format, args...)}
}
