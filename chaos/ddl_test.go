package main

import (
	"errors"
	"io"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestOpsOffByDefault(t *testing.T) {
	cfg, err := parseRunFlags(nil, io.Discard)
	if err != nil || len(cfg.ops) != 0 {
		t.Fatalf("default ops %v, %v: want none", cfg.ops, err)
	}
	cfg, err = parseRunFlags([]string{"--ops", "capture, deploy,capture"}, io.Discard)
	if err != nil || !slices.Equal(cfg.ops, []string{opsCapture, opsDeploy}) {
		t.Fatalf("ops %v, %v", cfg.ops, err)
	}
	if _, err := parseRunFlags([]string{"--ops", "capture,drop"}, io.Discard); err == nil {
		t.Fatal("an unknown workload was taken")
	}
}

func TestDDLOutcome(t *testing.T) {
	for _, tc := range []struct {
		err     error
		notices []string
		want    string
	}{
		{nil, nil, outOK},
		{nil, []string{"WARNING 01000 " + notRecorded + " as a blueprint version: timeout"}, outWarned},
		{&pgconn.PgError{Severity: "ERROR", Code: "57P03"}, nil, outFail},
		{&pgconn.PgError{Severity: "FATAL", Code: "57P01"}, nil, outUnknown},
		{errors.New("unexpected EOF"), nil, outUnknown},
	} {
		if got, _ := ddlOutcome(tc.err, tc.notices); got != tc.want {
			t.Errorf("ddlOutcome(%v, %v) = %s, want %s", tc.err, tc.notices, got, tc.want)
		}
	}
}

func TestDiffSchemas(t *testing.T) {
	want := schema{
		tables:  map[string][]string{"t_1": {"id integer", "v text", "c_2 integer", "c_3 integer"}},
		indexes: map[string]string{"i_4": "CREATE INDEX i_4 ON public.t_1 USING btree (c_2)"},
	}
	got := schema{
		tables:  map[string][]string{"t_1": {"id integer", "v text", "c_3 integer", "c_2 integer", "c_9 integer"}, "t_5": {"id integer"}},
		indexes: map[string]string{},
	}
	var objects []string
	for _, d := range diffSchemas(want, got) {
		objects = append(objects, d.object)
	}
	if w := []string{"c_9", "t_1", "t_5", "i_4"}; !slices.Equal(objects, w) {
		t.Fatalf("differences about %v, want %v", objects, w)
	}
	if d := diffSchemas(want, want); len(d) != 0 {
		t.Fatalf("a schema differs from itself: %v", d)
	}
	if o := ddlObject("ALTER TABLE t_1 ADD COLUMN c_22 integer"); o != "c_22" {
		t.Fatalf("ddlObject = %q", o)
	}
}
