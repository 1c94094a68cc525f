package wire

import (
	"fmt"
	"io"

	"github.com/cockroachdb/errors"
	"github.com/jackc/pgx/v5/pgproto3"
)

// SQLSTATE codes used by tdb. See PostgreSQL's errcodes.txt.
const (
	CodeInvalidAuthorization   = "28000" // invalid_authorization_specification
	CodeInvalidPassword        = "28P01" // invalid_password
	CodeInsufficientPrivilege  = "42501" // insufficient_privilege
	CodeFeatureNotSupported    = "0A000" // feature_not_supported
	CodeTooManyConnections     = "53300" // too_many_connections
	CodeProgramLimitExceeded   = "54000" // program_limit_exceeded
	CodeQueryCanceled          = "57014" // query_canceled
	CodeCannotConnectNow       = "57P03" // cannot_connect_now
	CodeProtocolViolation      = "08P01" // protocol_violation
	CodeConnectionFailure      = "08006" // connection_failure
	CodeInvalidCatalogName     = "3D000" // invalid_catalog_name: database does not exist
	CodeInternalError          = "XX000" // internal_error
	SeverityError              = "ERROR"
	SeverityFatal              = "FATAL"
	internalErrorClientMessage = "internal error"
)

// PGError is an error a client sees as an ErrorResponse. Create it where the
// error is made (Errorf, Fatalf), wrap it freely with cockroachdb/errors, and
// read it once at the edge with CodeOf, AsPGError or ToErrorResponse.
type PGError struct {
	Severity string // ERROR or FATAL
	Code     string // SQLSTATE
	Message  string
	Detail   string
	Hint     string
	Position int // 1-based character offset into the statement text; 0: none
}

// Error implements error.
func (e *PGError) Error() string {
	return e.Severity + ": " + e.Message + " (SQLSTATE " + e.Code + ")"
}

// WithDetail sets Detail and returns e, for chaining at construction.
func (e *PGError) WithDetail(detail string) *PGError { e.Detail = detail; return e }

// WithHint sets Hint and returns e, for chaining at construction.
func (e *PGError) WithHint(hint string) *PGError { e.Hint = hint; return e }

// NewError returns a *PGError. Prefer Errorf/Fatalf, which also record a stack.
func NewError(severity, code, format string, args ...any) *PGError {
	return &PGError{Severity: severity, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Errorf returns an ERROR (the session stays usable) with SQLSTATE code.
func Errorf(code, format string, args ...any) error {
	return errors.WithStackDepth(NewError(SeverityError, code, format, args...), 1)
}

// Fatalf returns a FATAL (the connection is closed after sending it) with SQLSTATE code.
func Fatalf(code, format string, args ...any) error {
	return errors.WithStackDepth(NewError(SeverityFatal, code, format, args...), 1)
}

// AsPGError finds the *PGError inside err's wrapping chain.
func AsPGError(err error) (*PGError, bool) {
	var pe *PGError
	if errors.As(err, &pe) {
		return pe, true
	}
	return nil, false
}

// CodeOf returns the SQLSTATE of err, or XX000 when err carries no *PGError.
// It returns "" for a nil error.
func CodeOf(err error) string {
	if err == nil {
		return ""
	}
	if pe, ok := AsPGError(err); ok {
		return pe.Code
	}
	return CodeInternalError
}

// IsFatal reports whether err must end the connection: a FATAL *PGError or any
// error that carries no *PGError (I/O, internal).
func IsFatal(err error) bool {
	pe, ok := AsPGError(err)
	return !ok || pe.Severity == SeverityFatal
}

// ToErrorResponse converts err into the message a client sees. An error
// without a *PGError becomes FATAL XX000 "internal error": its text may name
// internal hosts, so it is for the log only.
func ToErrorResponse(err error) *pgproto3.ErrorResponse {
	pe, ok := AsPGError(err)
	if !ok {
		pe = &PGError{Severity: SeverityFatal, Code: CodeInternalError, Message: internalErrorClientMessage}
	}
	return &pgproto3.ErrorResponse{
		Severity:            pe.Severity,
		SeverityUnlocalized: pe.Severity,
		Code:                pe.Code,
		Message:             pe.Message,
		Detail:              pe.Detail,
		Hint:                pe.Hint,
		Position:            int32(pe.Position),
	}
}

// WriteError writes err as one ErrorResponse frame to w (see ToErrorResponse).
func WriteError(w io.Writer, err error) error {
	buf, encErr := ToErrorResponse(err).Encode(nil)
	if encErr != nil {
		return errors.Wrap(encErr, "encode error response")
	}
	_, werr := w.Write(buf)
	return errors.Wrap(werr, "write error response")
}
