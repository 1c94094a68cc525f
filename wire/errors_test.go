package wire

import (
	"bytes"
	"io"
	"testing"

	"github.com/cockroachdb/errors"
	"github.com/jackc/pgx/v5/pgproto3"
)

func TestCodeOf(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		wantCode  string
		wantFatal bool
	}{
		{name: "nil", err: nil, wantCode: ""},
		{name: "error", err: Errorf(CodeInsufficientPrivilege, "DDL not allowed on tenant databases, use workspace mode"), wantCode: "42501"},
		{name: "fatal", err: Fatalf(CodeTooManyConnections, "too many"), wantCode: "53300", wantFatal: true},
		{name: "wrapped", err: errors.Wrapf(Errorf(CodeFeatureNotSupported, "COPY"), "relay %s", "x"), wantCode: "0A000"},
		{name: "wrapped twice with stack", err: errors.WithStack(errors.Wrap(Fatalf(CodeInvalidCatalogName, "no db"), "resolve")), wantCode: "3D000", wantFatal: true},
		{name: "plain", err: io.EOF, wantCode: "XX000", wantFatal: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CodeOf(tt.err); got != tt.wantCode {
				t.Fatalf("CodeOf = %q, want %q", got, tt.wantCode)
			}
			if tt.err != nil && IsFatal(tt.err) != tt.wantFatal {
				t.Fatalf("IsFatal = %v", IsFatal(tt.err))
			}
		})
	}
}

func TestToErrorResponse(t *testing.T) {
	err := errors.Wrap(Fatalf(CodeInvalidPassword, "password authentication failed for user %q", "tdb_2abf90d3"), "authenticate")
	resp := ToErrorResponse(err)
	if resp.Severity != "FATAL" || resp.Code != "28P01" || resp.Message != `password authentication failed for user "tdb_2abf90d3"` {
		t.Fatalf("resp = %+v", resp)
	}
	internal := ToErrorResponse(errors.New("dial 10.0.0.7:5432: refused"))
	if internal.Code != "XX000" || internal.Message != "internal error" {
		t.Fatalf("internal = %+v", internal)
	}
	var buf bytes.Buffer
	if err := WriteError(&buf, err); err != nil {
		t.Fatal(err)
	}
	fe := pgproto3.NewFrontend(&buf, io.Discard)
	msg, rerr := fe.Receive()
	if e, ok := msg.(*pgproto3.ErrorResponse); rerr != nil || !ok || e.Code != "28P01" {
		t.Fatalf("decoded %#v, %v", msg, rerr)
	}
}
