package fsm

import "fmt"

// Code classifies a business failure of a command so that callers (the HTTP
// API, the CLI) can map it to a status without parsing text.
type Code string

// Codes returned in Error.Code.
const (
	CodeBadRequest Code = "bad_request"
	CodeNotFound   Code = "not_found"
	CodeConflict   Code = "conflict"
)

// Error is a business failure: the command was valid and committed, but the
// state did not allow it. Every replica computes the same Error.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message }

func errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}
