package actors

import (
	"slices"
	"testing"

	"tdb/fsm"
	"tdb/wire/classify"
)

// step is one protocol event fed to the tracker.
type step struct {
	query  string   // simple Query
	parse  string   // Parse of the unnamed statement, then Bind + Execute + Sync
	pipe   []string // each Parse, Bind, Execute; then one Sync
	cc     string   // CommandComplete tag
	err    bool     // ErrorResponse
	rfq    byte     // ReadyForQuery status
	expect []string
}

// feed plays steps to tr and returns the DDL it handed out, in order.
func feed(tr *tracker, steps []step) []string {
	var got []string
	for _, s := range steps {
		switch {
		case s.query != "":
			tr.query(classify.Classify(s.query))
		case s.parse != "":
			tr.parse("", s.parse, classify.Classify(s.parse))
			tr.bind("", "")
			tr.execute("")
			tr.sync()
		case s.pipe != nil:
			for _, sql := range s.pipe {
				tr.parse("", sql, classify.Classify(sql))
				tr.bind("", "")
				tr.execute("")
			}
			tr.sync()
		case s.cc != "":
			tr.commandComplete([]byte(s.cc))
		case s.err:
			tr.errorResponse()
		case s.rfq != 0:
			got = append(got, slices.Concat(ddlOf(tr.readyForQuery(s.rfq))...)...)
		}
	}
	return got
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
		{"CREATE INDEX CONCURRENTLY commits at once, whatever fails after it", []step{
			{pipe: []string{"CREATE INDEX CONCURRENTLY i ON a (id)", "SELECT 1/0"}}, {cc: "CREATE INDEX"}, {err: true}, {rfq: 'I'},
		}, []string{"CREATE INDEX CONCURRENTLY i ON a (id)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := feed(newTracker(), tc.steps); !slices.Equal(got, tc.want) {
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

func TestDeallocateName(t *testing.T) {
	for in, want := range map[string]string{
		"DEALLOCATE s1": "s1", "DEALLOCATE PREPARE S1": "s1", `deallocate "My Stmt"`: "My Stmt",
		"DEALLOCATE ALL": "", "SELECT 1": "",
	} {
		r := classify.Classify(in)
		if len(r.Statements) != 1 || r.Statements[0].Deallocate != want {
			t.Errorf("%q: got %+v, want %q", in, r, want)
		}
	}
}

// TestTrackerCountsDataChangesWithDDL: the statements that changed rows in
// a transaction whose DDL committed are counted (they are not deployed);
// those of transactions without DDL, rolled back, or changing nothing are
// not.
func TestTrackerCountsDataChangesWithDDL(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
		n     int
		tag   string
	}{
		{"backfill between two ALTERs", []step{
			{query: "BEGIN"}, {cc: "BEGIN"}, {rfq: 'T'},
			{query: "ALTER TABLE u ADD COLUMN s text"}, {cc: "ALTER TABLE"}, {rfq: 'T'},
			{query: "UPDATE u SET s = 'a'"}, {cc: "UPDATE 3"}, {rfq: 'T'},
			{query: "INSERT INTO u VALUES (1)"}, {cc: "INSERT 0 1"}, {rfq: 'T'},
			{query: "ALTER TABLE u ALTER s SET NOT NULL"}, {cc: "ALTER TABLE"}, {rfq: 'T'},
			{query: "COMMIT"}, {cc: "COMMIT"}, {rfq: 'I'},
		}, 2, "UPDATE 3"},
		{"one Query", []step{
			{query: "CREATE TABLE c (id int); INSERT INTO c VALUES (1)"}, {cc: "CREATE TABLE"}, {cc: "INSERT 0 1"}, {rfq: 'I'},
		}, 1, "INSERT 0 1"},
		{"no rows changed", []step{
			{query: "CREATE TABLE c (id int); DELETE FROM c"}, {cc: "CREATE TABLE"}, {cc: "DELETE 0"}, {rfq: 'I'},
		}, 0, ""},
		{"data alone", []step{
			{query: "UPDATE u SET s = 'b'"}, {cc: "UPDATE 3"}, {rfq: 'I'},
			{query: "CREATE TABLE d (id int)"}, {cc: "CREATE TABLE"}, {rfq: 'I'},
		}, 0, ""},
		{"rolled back to a savepoint", []step{
			{query: "BEGIN"}, {cc: "BEGIN"}, {rfq: 'T'},
			{query: "CREATE TABLE f (id int)"}, {cc: "CREATE TABLE"}, {rfq: 'T'},
			{query: "SAVEPOINT s"}, {cc: "SAVEPOINT"}, {rfq: 'T'},
			{query: "INSERT INTO f VALUES (1)"}, {cc: "INSERT 0 1"}, {rfq: 'T'},
			{query: "ROLLBACK TO s"}, {cc: "ROLLBACK"}, {rfq: 'T'},
			{query: "COMMIT"}, {cc: "COMMIT"}, {rfq: 'I'},
		}, 0, ""},
		{"rolled back", []step{
			{query: "BEGIN"}, {cc: "BEGIN"}, {rfq: 'T'},
			{query: "CREATE TABLE e (id int); INSERT INTO e VALUES (1)"}, {cc: "CREATE TABLE"}, {cc: "INSERT 0 1"}, {rfq: 'T'},
			{query: "ROLLBACK"}, {cc: "ROLLBACK"}, {rfq: 'I'},
		}, 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTracker()
			feed(tr, tc.steps)
			if n, tag := tr.takeWrites(); n != tc.n || tag != tc.tag {
				t.Fatalf("got %d (%q), want %d (%q)", n, tag, tc.n, tc.tag)
			}
		})
	}
}

// parseAlone parses statement name in a batch of its own, answered, and
// returns what that batch recorded.
func parseAlone(tr *tracker, name, sql string) []string {
	tr.parse(name, sql, classify.Classify(sql))
	tr.sync()
	tr.answered('P')
	return slices.Concat(ddlOf(tr.readyForQuery('I'))...)
}

// sendFailing sends Parse, Bind and Execute of a statement that fails,
// without Sync (failingAnswered has it fail at its Execute).
func sendFailing(tr *tracker) {
	tr.parse("", "SELECT 1/0", classify.Classify("SELECT 1/0"))
	tr.bind("", "")
	tr.execute("")
}

// failingAnswered is the backend's answer to sendFailing: ParseComplete,
// BindComplete, then the error.
func failingAnswered(tr *tracker) {
	tr.answered('P')
	tr.answered('B')
	tr.errorResponse()
}

// runPrepared binds and executes statement name in a batch of its own,
// which completes with tag, and returns what it recorded.
func runPrepared(tr *tracker, name, tag string) []string {
	tr.bind("", name)
	tr.execute("")
	tr.sync()
	tr.answered('B')
	tr.commandComplete([]byte(tag))
	return slices.Concat(ddlOf(tr.readyForQuery('I'))...)
}

// TestExactTrackerTakesBackSkippedMessages: after an error the backend
// skips every message up to Sync, Close and Parse included. A statement
// whose Close was skipped still exists; executed later, its DDL commits and
// is recorded.
func TestExactTrackerTakesBackSkippedMessages(t *testing.T) {
	tr := newTracker()
	if got := parseAlone(tr, "s1", "CREATE TABLE h_close (a int)"); len(got) != 0 {
		t.Fatalf("a Parse alone committed %q", got)
	}
	// SELECT 1/0, then Close s1 and Parse s2: skipped after the error.
	sendFailing(tr)
	tr.close('S', "s1")
	tr.parse("s2", "CREATE TABLE skipped (a int)", classify.Classify("CREATE TABLE skipped (a int)"))
	tr.describe()
	tr.sync()
	failingAnswered(tr)
	tr.readyForQuery('I')
	if _, ok := tr.prepared["s2"]; ok {
		t.Fatal("a skipped Parse is remembered")
	}
	// s1 still exists on the backend.
	if got := runPrepared(tr, "s1", "CREATE TABLE"); !slices.Equal(got, []string{"CREATE TABLE h_close (a int)"}) {
		t.Fatalf("recorded %q, want the DDL of the statement whose Close was skipped", got)
	}
	// A named Parse that fails because the name exists leaves the old
	// statement; a failed unnamed Parse leaves none.
	tr.parse("s1", "SELECT 1", classify.Classify("SELECT 1"))
	tr.sync()
	tr.errorResponse()
	tr.readyForQuery('I')
	if tr.prepared["s1"].kind != classify.DDL {
		t.Fatalf("s1 after its failed re-Parse: %+v", tr.prepared["s1"])
	}
	tr.parse("", "CREATE TABLE u (a int)", classify.Classify("CREATE TABLE u (a int)"))
	tr.sync()
	tr.errorResponse()
	tr.readyForQuery('I')
	if _, ok := tr.prepared[""]; ok {
		t.Fatal("a failed unnamed Parse left a statement")
	}
	if tr.queue.len() != 0 {
		t.Fatalf("%d items left in the queue", tr.queue.len())
	}
}

// ALTER TYPE … ADD VALUE runs in transactions from PostgreSQL 12 on: it
// commits or rolls back with its transaction, in order.
func TestTrackerAddValueFollowsItsTransaction(t *testing.T) {
	got := feed(newTracker(), []step{
		{query: "BEGIN"}, {cc: "BEGIN"}, {rfq: 'T'},
		{query: "ALTER TYPE mood ADD VALUE 'gone'"}, {cc: "ALTER TYPE"}, {rfq: 'T'},
		{query: "ROLLBACK"}, {cc: "ROLLBACK"}, {rfq: 'I'},
		{query: "BEGIN; CREATE TYPE mood2 AS ENUM ('a'); ALTER TYPE mood2 ADD VALUE 'b'; COMMIT"},
		{cc: "BEGIN"}, {cc: "CREATE TYPE"}, {cc: "ALTER TYPE"}, {cc: "COMMIT"}, {rfq: 'I'},
	})
	if want := []string{"CREATE TYPE mood2 AS ENUM ('a')", "ALTER TYPE mood2 ADD VALUE 'b'"}; !slices.Equal(got, want) {
		t.Fatalf("recorded %q, want %q", got, want)
	}
}

// Messages the client sends after an error, before its Sync, are skipped
// by the backend too (a pipeline that used Flush); and taking back a
// skipped message leaves alone a name a later batch set.
func TestExactTrackerSkipsUntilSync(t *testing.T) {
	tr := newTracker()
	parseAlone(tr, "sx", "CREATE TABLE sx_t (a int)")
	// SELECT 1/0, Flush; its error comes back before the client goes on.
	sendFailing(tr)
	failingAnswered(tr)
	tr.close('S', "sx") // skipped by the backend
	tr.sync()
	tr.readyForQuery('I')
	if got := runPrepared(tr, "sx", "CREATE TABLE"); !slices.Equal(got, []string{"CREATE TABLE sx_t (a int)"}) {
		t.Fatalf("after a Close sent past the error: recorded %q", got)
	}

	// Batch 1 fails before its Parse of s1; batch 2, already sent, parses
	// s1 anew: batch 2's statement stands.
	sendFailing(tr)
	tr.parse("s1", "SELECT 2", classify.Classify("SELECT 2"))
	tr.sync()
	tr.parse("s1", "CREATE TABLE t_clobber (a int)", classify.Classify("CREATE TABLE t_clobber (a int)"))
	tr.sync()
	failingAnswered(tr)
	tr.readyForQuery('I')
	tr.answered('P')
	tr.readyForQuery('I')
	if got := runPrepared(tr, "s1", "CREATE TABLE"); !slices.Equal(got, []string{"CREATE TABLE t_clobber (a int)"}) {
		t.Fatalf("a later batch's Parse of the same name: recorded %q", got)
	}
}

// A Close skipped after an error, and the same name parsed again by a
// batch already sent: the backend still holds the name, so that Parse
// fails, and the tracker keeps the statement the backend holds.
func TestExactTrackerSkippedCloseThenReparse(t *testing.T) {
	tr := newTracker()
	ddl := "CREATE INDEX IF NOT EXISTS i ON t (a)"
	parseAlone(tr, "s1", ddl)
	// batch 1: error, then Close s1 (skipped by the backend)
	sendFailing(tr)
	tr.close('S', "s1")
	tr.sync()
	// batch 2, pipelined: Parse s1 again
	tr.parse("s1", ddl, classify.Classify(ddl))
	tr.sync()
	// backend: batch 1
	failingAnswered(tr)
	tr.readyForQuery('I')
	// backend: batch 2's Parse fails: s1 already exists
	tr.errorResponse()
	tr.readyForQuery('I')
	if _, ok := tr.prepared["s1"]; !ok {
		t.Errorf("tracker lost s1, which the backend still holds")
	}
	if got := runPrepared(tr, "s1", "CREATE INDEX"); !slices.Equal(got, []string{ddl}) {
		t.Fatalf("recorded %q, want the DDL", got)
	}
}

// A simple Query sent after an error, before Sync: the backend skips it
// (ignore_till_sync), and so does the tracker (the relay refuses one there
// first).
func TestExactTrackerQueryWhileSkipping(t *testing.T) {
	tr := newTracker()
	sendFailing(tr)
	failingAnswered(tr)
	tr.query(classify.Classify("SELECT 1")) // skipped by the backend
	tr.sync()
	tr.readyForQuery('I') // the Sync's; the Query gets no answer
	tr.query(classify.Classify("CREATE TABLE z (a int)"))
	tr.commandComplete([]byte("CREATE TABLE"))
	got := slices.Concat(ddlOf(tr.readyForQuery('I'))...)
	if !slices.Equal(got, []string{"CREATE TABLE z (a int)"}) {
		t.Fatalf("recorded %q, queue %d", got, tr.queue.len())
	}
}

// TestTrackerHandsOutEachTransaction: transactions that commit in one batch
// are handed out one by one: each becomes a version, which runs in a transaction of its own on
// tenants (an enum value added in one and used in the next must be
// committed in between).
func TestTrackerHandsOutEachTransaction(t *testing.T) {
	tr := newTracker()
	tr.query(classify.Classify("BEGIN; ALTER TYPE mood ADD VALUE 'b'; COMMIT; CREATE TABLE t (m mood DEFAULT 'b'); CREATE TABLE u (id int)"))
	for _, tag := range []string{"BEGIN", "ALTER TYPE", "COMMIT", "CREATE TABLE", "CREATE TABLE"} {
		tr.commandComplete([]byte(tag))
	}
	got := ddlOf(tr.readyForQuery('I'))
	want := [][]string{{"ALTER TYPE mood ADD VALUE 'b'"}, {"CREATE TABLE t (m mood DEFAULT 'b')", "CREATE TABLE u (id int)"}}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("handed out %q, want %q", got, want)
	}
}

// ddlOf returns the statements of each transaction handed out.
func ddlOf(txs []captured) [][]string {
	out := make([][]string, len(txs))
	for i, tx := range txs {
		out[i] = tx.ddl
	}
	return out
}

// TestTrackerKeepsTheSettingsDDLRanWith: a transaction's DDL is handed out
// with the settings its first statement ran with, a statement that commits
// at once with those it ran with; settingsChanged tells when the session's
// settings moved on while the transaction holds DDL.
func TestTrackerKeepsTheSettingsDDLRanWith(t *testing.T) {
	tr := newTracker()
	utc := fsm.SessionSettings{TimeZone: "UTC", DateStyle: "ISO, MDY", IntervalStyle: "postgres"}
	ny := utc
	ny.TimeZone = "America/New_York"
	set := func(ss fsm.SessionSettings) {
		tr.setting("TimeZone", ss.TimeZone)
		tr.setting("DateStyle", ss.DateStyle)
		tr.setting("IntervalStyle", ss.IntervalStyle)
		tr.setting("application_name", "ignored")
	}
	set(ny)
	tr.query(classify.Classify("BEGIN"))
	tr.commandComplete([]byte("BEGIN"))
	tr.readyForQuery('T')
	if tr.settingsChanged() {
		t.Fatal("settings changed before any DDL")
	}
	tr.query(classify.Classify("CREATE TABLE t (d timestamptz DEFAULT '2024-01-01')"))
	tr.commandComplete([]byte("CREATE TABLE"))
	tr.readyForQuery('T')
	set(utc) // SET LOCAL "TimeZone" in the transaction, reported at its ReadyForQuery
	if !tr.settingsChanged() {
		t.Fatal("a change of TimeZone after DDL in the transaction went unseen")
	}
	set(ny)
	if tr.settingsChanged() {
		t.Fatal("settings back as they were count as changed")
	}
	tr.query(classify.Classify("COMMIT"))
	tr.commandComplete([]byte("COMMIT"))
	set(utc) // a SET LOCAL ends with the transaction
	got := tr.readyForQuery('I')
	if len(got) != 1 || got[0].settings != ny {
		t.Fatalf("handed out %+v, want the transaction's DDL with %+v", got, ny)
	}
	tr.query(classify.Classify("CREATE INDEX CONCURRENTLY i ON t (d)"))
	tr.commandComplete([]byte("CREATE INDEX"))
	if got := tr.readyForQuery('I'); len(got) != 1 || got[0].settings != utc {
		t.Fatalf("handed out %+v, want the index with %+v", got, utc)
	}
}

// TestTrackerKnowsATransactionChangedSettings: a change reported while a
// transaction is open marks it (its end may give the old values back),
// until the session is idle again.
func TestTrackerKnowsATransactionChangedSettings(t *testing.T) {
	tr := newTracker()
	tr.setting("TimeZone", "UTC")
	tr.settingsKnown()
	tr.readyForQuery('T') // BEGIN
	if tr.txTouched {
		t.Fatal("a transaction that changed nothing is marked")
	}
	tr.setting("TimeZone", "Asia/Tokyo") // SET LOCAL, reported before its ReadyForQuery
	tr.readyForQuery('T')
	if !tr.txTouched {
		t.Fatal("a change in the open transaction went unmarked")
	}
	tr.setting("TimeZone", "UTC")
	tr.readyForQuery('I') // COMMIT gave the value back
	if tr.txTouched {
		t.Fatal("the mark outlived its transaction")
	}
	tr.setting("TimeZone", "Asia/Tokyo") // a plain SET outside a transaction
	tr.readyForQuery('I')
	tr.readyForQuery('T')
	if tr.txTouched {
		t.Fatal("a change made before the transaction marks it")
	}
}
