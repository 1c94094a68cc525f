package httpapi

import (
	"fmt"
	"net/http"

	"github.com/cockroachdb/errors"

	"tdb/fsm"
)

// Error codes of the JSON error body {"code":…, "message":…}.
const (
	codeBadRequest       = "bad_request"
	codeUnauthorized     = "unauthorized"
	codeScopeDenied      = "scope_denied"
	codePermissionDenied = "permission_denied"
	codeNotFound         = "not_found"
	codeConflict         = "conflict"
	codeNotLeader        = "not_leader"
	codeRateLimited      = "rate_limited"
	codeTooLarge         = "request_too_large"
	codeUnavailable      = "unavailable"
	codeTimeout          = "timeout"
	codeBackendError     = "backend_error"
	codeInternal         = "internal"
	codeMethodNotAllowed = "method_not_allowed"
)

// ErrNotLeader may mark an error of Cluster.Apply (errors.Mark) when the
// command could not reach the raft leader; the client then gets 503
// not_leader instead of 503 unavailable. Apply forwards to the leader, so this
// should be rare.
var ErrNotLeader = errors.New("not the raft leader")

// ErrOutcomeUnknown marks an error of Cluster.Apply when the leader lost its
// place after the command was appended and before it knew whether it was
// committed: it may have been applied, so the client is told to check
// rather than retry (a retried create would make a second one).
var ErrOutcomeUnknown = errors.New("the outcome of the command is unknown")

// apiError is an error with the HTTP status and code the client sees.
type apiError struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *apiError) Error() string { return e.Message }

func errf(status int, code, format string, args ...any) *apiError {
	return &apiError{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

func badRequest(format string, args ...any) *apiError {
	return errf(http.StatusBadRequest, codeBadRequest, format, args...)
}

func notFound(format string, args ...any) *apiError {
	return errf(http.StatusNotFound, codeNotFound, format, args...)
}

func scopeDenied(format string, args ...any) *apiError {
	return errf(http.StatusForbidden, codeScopeDenied, format, args...)
}

func permissionDenied(format string, args ...any) *apiError {
	return errf(http.StatusForbidden, codePermissionDenied, format, args...)
}

// fsmStatus maps the codes of business failures computed by the FSM.
var fsmStatus = map[fsm.Code]int{
	fsm.CodeBadRequest: http.StatusBadRequest,
	fsm.CodeNotFound:   http.StatusNotFound,
	fsm.CodeConflict:   http.StatusConflict,
}

// toAPIError classifies any error a handler returns. Errors that are neither
// an *apiError nor an *fsm.Error are internal: their text is logged, not shown.
func toAPIError(err error) (e *apiError, internal bool) {
	if errors.As(err, &e) {
		return e, false
	}
	var fe *fsm.Error
	if errors.As(err, &fe) {
		status, ok := fsmStatus[fe.Code]
		if !ok {
			status = http.StatusBadRequest
		}
		return &apiError{Status: status, Code: string(fe.Code), Message: fe.Message}, false
	}
	return errf(http.StatusInternalServerError, codeInternal, "internal error"), true
}
