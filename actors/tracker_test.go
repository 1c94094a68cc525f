package actors

import (
	"slices"
	"testing"

	"tdb/wire/classify"
)

// step is one protocol event fed to the tracker.
type step struct {
	query  string // simple Query
	parse  string // Parse of the unnamed statement, then Bind + Execute + Sync
	cc     string // CommandComplete tag
	err    bool   // ErrorResponse
	rfq    byte   // ReadyForQuery status
	expect []string
}

func TestTrackerCapturesCommittedDDL(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
		want  []string // all DDL handed out, in order
	}{
		{"autocommit DDL", []step{
			{query: "CREATE TABLE a (id int)"}, {cc: "CREATE TABLE"}, {rfq: 'I'},
		}, []string{"CREATE TABLE a (id int)"}},
		{"DML is not captured", []step{
			{query: "INSERT INTO a VALUES (1)"}, {cc: "INSERT 0 1"}, {rfq: 'I'},
		}, nil},
		{"failed DDL", []step{
			{query: "CREATE TABLE a (id int)"}, {err: true}, {rfq: 'I'},
		}, nil},
		{"multi-statement with a later error rolls back", []step{
			{query: "CREATE TABLE a (id int); SELECT 1/0"}, {cc: "CREATE TABLE"}, {err: true}, {rfq: 'I'},
		}, nil},
		{"multi-statement commits together", []step{
			{query: "CREATE TABLE a (id int); CREATE TABLE b (id int)"}, {cc: "CREATE TABLE"}, {cc: "CREATE TABLE"}, {rfq: 'I'},
		}, []string{"CREATE TABLE a (id int)", "CREATE TABLE b (id int)"}},
		{"explicit transaction committed", []step{
			{query: "BEGIN"}, {cc: "BEGIN"}, {rfq: 'T'},
			{query: "CREATE TABLE a (id int)"}, {cc: "CREATE TABLE"}, {rfq: 'T'},
			{query: "COMMIT"}, {cc: "COMMIT"}, {rfq: 'I'},
		}, []string{"CREATE TABLE a (id int)"}},
		{"explicit transaction rolled back", []step{
			{query: "BEGIN"}, {cc: "BEGIN"}, {rfq: 'T'},
			{query: "CREATE TABLE a (id int)"}, {cc: "CREATE TABLE"}, {rfq: 'T'},
			{query: "ROLLBACK"}, {cc: "ROLLBACK"}, {rfq: 'I'},
		}, nil},
		{"commit of an aborted transaction", []step{
			{query: "BEGIN"}, {cc: "BEGIN"}, {rfq: 'T'},
			{query: "CREATE TABLE a (id int)"}, {cc: "CREATE TABLE"}, {rfq: 'T'},
			{query: "SELECT 1/0"}, {err: true}, {rfq: 'E'},
			{query: "COMMIT"}, {cc: "ROLLBACK"}, {rfq: 'I'},
		}, nil},
		{"rollback to savepoint drops later DDL", []step{
			{query: "BEGIN"}, {cc: "BEGIN"}, {rfq: 'T'},
			{query: "CREATE TABLE a (id int)"}, {cc: "CREATE TABLE"}, {rfq: 'T'},
			{query: "SAVEPOINT s1"}, {cc: "SAVEPOINT"}, {rfq: 'T'},
			{query: "CREATE TABLE b (id int)"}, {cc: "CREATE TABLE"}, {rfq: 'T'},
			{query: "ROLLBACK TO SAVEPOINT s1"}, {cc: "ROLLBACK"}, {rfq: 'T'},
			{query: "COMMIT"}, {cc: "COMMIT"}, {rfq: 'I'},
		}, []string{"CREATE TABLE a (id int)"}},
		{"rollback to savepoint with a comment after its name", []step{
			{query: "BEGIN"}, {cc: "BEGIN"}, {rfq: 'T'},
			{query: "CREATE TABLE a (id int)"}, {cc: "CREATE TABLE"}, {rfq: 'T'},
			{query: "SAVEPOINT s1 /* before b */"}, {cc: "SAVEPOINT"}, {rfq: 'T'},
			{query: "CREATE TABLE b (id int)"}, {cc: "CREATE TABLE"}, {rfq: 'T'},
			{query: "ROLLBACK TO s1 -- undo b"}, {cc: "ROLLBACK"}, {rfq: 'T'},
			{query: "COMMIT"}, {cc: "COMMIT"}, {rfq: 'I'},
		}, []string{"CREATE TABLE a (id int)"}},
		{"extended protocol", []step{
			{parse: "CREATE TABLE a (id int)"}, {cc: "CREATE TABLE"}, {rfq: 'I'},
			{parse: "DROP TABLE nope"}, {err: true}, {rfq: 'I'},
		}, []string{"CREATE TABLE a (id int)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTracker()
			var got []string
			for _, s := range tc.steps {
				switch {
				case s.query != "":
					tr.query(classify.Classify(s.query))
				case s.parse != "":
					tr.parse("", classify.Classify(s.parse))
					tr.bind("", "")
					tr.execute("")
					tr.sync()
				case s.cc != "":
					tr.commandComplete([]byte(s.cc))
				case s.err:
					tr.errorResponse()
				case s.rfq != 0:
					got = append(got, tr.readyForQuery(s.rfq)...)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("captured %q, want %q", got, tc.want)
			}
		})
	}
}

// TestSavepointName: the savepoint a statement names is the parser's
// reading of it: folded unless quoted, whatever comments follow.
func TestSavepointName(t *testing.T) {
	for in, want := range map[string]string{
		"SAVEPOINT s1": "s1", "ROLLBACK TO SAVEPOINT S1": "s1", "release sp_2;": "sp_2",
		`SAVEPOINT "My Point"`: "My Point", "ROLLBACK TO x": "x",
		"ROLLBACK TO a /* undo */": "a", "SAVEPOINT a -- here": "a", "SAVEPOINT /* x */ b": "b",
	} {
		r := classify.Classify(in)
		if len(r.Statements) != 1 || r.Statements[0].Savepoint != want {
			t.Errorf("%q: got %+v, want savepoint %q", in, r, want)
		}
	}
}
