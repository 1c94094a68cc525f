package actors

import (
	"strings"
	"testing"
	"time"

	"tdb/wire"
)

// clock is a settable clock for stepping the limiter.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newTestLimiter() (*limiter, *clock) {
	c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	return newLimiter(c.now), c
}

// errorOf decodes the ErrorResponse frame an action sends instead.
func errorOf(t *testing.T, act relayAction) (code, msg string) {
	t.Helper()
	if len(act.out) < 5 || act.out[0] != 'E' {
		t.Fatalf("action sends %q, want an ErrorResponse", act.out)
	}
	_, code, msg, err := wire.ParseErrorFields(act.out[5:])
	if err != nil {
		t.Fatal(err)
	}
	return code, msg
}

func rows(t *testing.T, l *limiter, n int, wantForward bool) {
	t.Helper()
	for i := 0; i < n; i++ {
		act := l.dataRow()
		if act.drop == wantForward || act.cancel != "" || act.out != nil {
			t.Fatalf("row %d: action %+v, want forward=%v", i+1, act, wantForward)
		}
	}
}

func forwarded(t *testing.T, what string, act relayAction) {
	t.Helper()
	if act.drop || act.out != nil || act.cancel != "" {
		t.Fatalf("%s: action %+v, want it forwarded as is", what, act)
	}
}

func dropped(t *testing.T, what string, act relayAction) {
	t.Helper()
	if !act.drop || act.out != nil {
		t.Fatalf("%s: action %+v, want it dropped", what, act)
	}
}

func TestLimiterRows(t *testing.T) {
	lim := stmtLimits{maxRows: 3}
	tests := []struct {
		name  string
		steps func(t *testing.T, l *limiter)
		log   []string // sqlstate:rows of the logged statements, in order
	}{
		{"at the limit", func(t *testing.T, l *limiter) {
			l.query("SELECT x", []string{"SELECT x"}, lim)
			rows(t, l, 3, true)
			forwarded(t, "CommandComplete", l.commandComplete([]byte("SELECT 3")))
			forwarded(t, "ReadyForQuery", l.readyForQuery('I'))
		}, []string{"00000:3"}},
		{"past the limit: cancel, discard, 54000 in place of the statement's end", func(t *testing.T, l *limiter) {
			l.query("SELECT x", []string{"SELECT x"}, lim)
			rows(t, l, 3, true)
			if act := l.dataRow(); !act.drop || act.cancel != limitRows {
				t.Fatalf("4th row: %+v, want drop and cancel", act)
			}
			rows(t, l, 50, false)
			dropped(t, "notice", l.other('N'))
			forwarded(t, "ParameterStatus", l.other('S'))
			act := l.errorResponse("ERROR", "57014") // the cancel landed
			code, msg := errorOf(t, act)
			if !act.drop || code != "54000" || msg != "query returned more than max_rows_per_query (3) rows" {
				t.Fatalf("statement end: %+v %s %q", act, code, msg)
			}
			forwarded(t, "ReadyForQuery", l.readyForQuery('I'))
			// The session goes on with fresh counts.
			l.query("SELECT y", []string{"SELECT y"}, lim)
			rows(t, l, 2, true)
			forwarded(t, "CommandComplete", l.commandComplete([]byte("SELECT 2")))
			forwarded(t, "ReadyForQuery", l.readyForQuery('I'))
		}, []string{"54000:3", "00000:2"}},
		{"past the limit, the cancel too late: still 54000", func(t *testing.T, l *limiter) {
			l.query("SELECT x", []string{"SELECT x"}, lim)
			rows(t, l, 3, true)
			l.dataRow()
			code, _ := errorOf(t, l.commandComplete([]byte("SELECT 4")))
			if code != "54000" {
				t.Fatalf("code %s", code)
			}
			forwarded(t, "ReadyForQuery", l.readyForQuery('I'))
		}, []string{"54000:3"}},
		{"each statement of a Query counts on its own", func(t *testing.T, l *limiter) {
			l.query("SELECT a; SELECT b", []string{"SELECT a", "SELECT b"}, lim)
			rows(t, l, 3, true)
			forwarded(t, "CommandComplete", l.commandComplete([]byte("SELECT 3")))
			forwarded(t, "RowDescription", l.other('T'))
			rows(t, l, 3, true)
			forwarded(t, "CommandComplete", l.commandComplete([]byte("SELECT 3")))
			forwarded(t, "ReadyForQuery", l.readyForQuery('I'))
		}, []string{"00000:3", "00000:3"}},
		{"the rest of a Query past the limit is discarded", func(t *testing.T, l *limiter) {
			l.query("SELECT a; SELECT b", []string{"SELECT a", "SELECT b"}, lim)
			rows(t, l, 3, true)
			l.dataRow()
			errorOf(t, l.commandComplete([]byte("SELECT 4"))) // the cancel came too late for a...
			dropped(t, "RowDescription", l.other('T'))
			rows(t, l, 2, false)
			dropped(t, "CommandComplete", l.commandComplete([]byte("SELECT 2"))) // ...and b ran
			forwarded(t, "ReadyForQuery", l.readyForQuery('I'))
		}, []string{"54000:3", "00000:2"}},
		{"portal fetched in batches: PortalSuspended resets nothing", func(t *testing.T, l *limiter) {
			l.bind("c1", "SELECT x")
			for i := 0; i < 3; i++ { // Execute(c1, 1) + Sync, three times
				l.execute("c1", lim)
				l.sync()
				rows(t, l, 1, true)
				forwarded(t, "PortalSuspended", l.portalSuspended())
				forwarded(t, "ReadyForQuery", l.readyForQuery('T'))
			}
			l.execute("c1", lim)
			l.sync()
			if act := l.dataRow(); act.cancel != limitRows {
				t.Fatalf("4th row over three fetches: %+v", act)
			}
			code, _ := errorOf(t, l.portalSuspended())
			if code != "54000" {
				t.Fatalf("code %s", code)
			}
			forwarded(t, "ReadyForQuery", l.readyForQuery('T'))
		}, []string{"54000:3"}},
		{"a rebound portal counts afresh; a completed run logs once", func(t *testing.T, l *limiter) {
			l.bind("", "SELECT x")
			l.execute("", lim)
			l.sync()
			rows(t, l, 2, true)
			forwarded(t, "CommandComplete", l.commandComplete([]byte("SELECT 2")))
			forwarded(t, "ReadyForQuery", l.readyForQuery('I'))
			l.bind("", "SELECT x")
			l.execute("", lim)
			l.sync()
			rows(t, l, 3, true)
			forwarded(t, "CommandComplete", l.commandComplete([]byte("SELECT 3")))
			forwarded(t, "ReadyForQuery", l.readyForQuery('I'))
		}, []string{"00000:2", "00000:3"}},
		{"pipelined Executes after the one past the limit are discarded", func(t *testing.T, l *limiter) {
			l.bind("", "SELECT x")
			l.execute("", lim)
			l.bind("", "INSERT y")
			l.execute("", lim)
			l.sync()
			forwarded(t, "ParseComplete", l.other('1'))
			forwarded(t, "BindComplete", l.other('2'))
			rows(t, l, 3, true)
			l.dataRow()
			errorOf(t, l.errorResponse("ERROR", "57014"))
			forwarded(t, "ReadyForQuery", l.readyForQuery('I'))
		}, []string{"54000:3"}},
		{"a FATAL error always reaches the client", func(t *testing.T, l *limiter) {
			l.query("SELECT x", []string{"SELECT x"}, lim)
			rows(t, l, 3, true)
			l.dataRow()
			errorOf(t, l.commandComplete([]byte("SELECT 4")))
			forwarded(t, "FATAL", l.errorResponse("FATAL", "57P01"))
		}, []string{"54000:3"}},
		{"no limit: rows flow", func(t *testing.T, l *limiter) {
			l.query("SELECT x", nil, stmtLimits{})
			rows(t, l, 10_000, true)
			forwarded(t, "CommandComplete", l.commandComplete([]byte("SELECT 10000")))
			forwarded(t, "ReadyForQuery", l.readyForQuery('I'))
		}, []string{"00000:10000"}},
		{"new settings apply to the next statement", func(t *testing.T, l *limiter) {
			l.query("SELECT x", nil, stmtLimits{maxRows: 5})
			rows(t, l, 5, true)
			forwarded(t, "CommandComplete", l.commandComplete([]byte("SELECT 5")))
			forwarded(t, "ReadyForQuery", l.readyForQuery('I'))
			l.query("SELECT x", nil, stmtLimits{maxRows: 2})
			rows(t, l, 2, true)
			if act := l.dataRow(); act.cancel != limitRows {
				t.Fatalf("3rd row under the new limit: %+v", act)
			}
		}, []string{"00000:5"}},
		{"rows of a DML statement come from its tag", func(t *testing.T, l *limiter) {
			l.query("UPDATE t SET x = 1", nil, lim)
			forwarded(t, "CommandComplete", l.commandComplete([]byte("UPDATE 42")))
			forwarded(t, "ReadyForQuery", l.readyForQuery('I'))
		}, []string{"00000:42"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _ := newTestLimiter()
			tt.steps(t, l)
			var got []string
			for _, d := range l.collect() {
				got = append(got, d.sqlstate+":"+itoa(int(d.rows)))
			}
			if strings.Join(got, " ") != strings.Join(tt.log, " ") {
				t.Fatalf("logged %v, want %v", got, tt.log)
			}
		})
	}
}

func TestLimiterTimeout(t *testing.T) {
	lim := stmtLimits{timeoutMs: 250}
	t.Run("expiry cancels once and rewrites the 57014", func(t *testing.T) {
		l, c := newTestLimiter()
		start := c.now()
		l.query("SELECT pg_sleep(10)", nil, lim)
		gen, at, ok := l.deadline()
		if !ok || !at.Equal(start.Add(250*time.Millisecond)) {
			t.Fatalf("deadline %v %v", at, ok)
		}
		c.advance(250 * time.Millisecond)
		if !l.expire(gen) {
			t.Fatal("expiry did not ask for a cancel")
		}
		if l.expire(gen) {
			t.Fatal("a second expiry asked for a second cancel")
		}
		c.advance(5 * time.Millisecond)
		act := l.errorResponse("ERROR", "57014")
		code, msg := errorOf(t, act)
		if !act.drop || code != "57014" || msg != "canceling statement due to query_timeout_ms (250 ms)" {
			t.Fatalf("%+v %s %q", act, code, msg)
		}
		forwarded(t, "ReadyForQuery", l.readyForQuery('I'))
		d := l.collect()
		if len(d) != 1 || d[0].sqlstate != "57014" || d[0].duration != 255*time.Millisecond {
			t.Fatalf("logged %+v", d)
		}
	})
	t.Run("a stale timer does nothing", func(t *testing.T) {
		l, c := newTestLimiter()
		l.query("SELECT 1; SELECT 2", []string{"SELECT 1", "SELECT 2"}, lim)
		gen1, _, _ := l.deadline()
		c.advance(100 * time.Millisecond)
		l.commandComplete([]byte("SELECT 1"))
		gen2, at2, ok := l.deadline()
		if !ok || gen2 == gen1 || !at2.Equal(c.now().Add(250*time.Millisecond)) {
			t.Fatalf("second statement: gen %d (first %d), deadline %v", gen2, gen1, at2)
		}
		if l.expire(gen1) {
			t.Fatal("the first statement's timer cancelled the second")
		}
		l.commandComplete([]byte("SELECT 1"))
		l.readyForQuery('I')
		if _, _, ok := l.deadline(); ok {
			t.Fatal("a deadline with nothing running")
		}
	})
	t.Run("a client's own cancel keeps its text", func(t *testing.T) {
		l, _ := newTestLimiter()
		l.query("SELECT pg_sleep(10)", nil, lim)
		forwarded(t, "57014 user request", l.errorResponse("ERROR", "57014"))
	})
	t.Run("each Execute of a portal is timed on its own; suspension is not execution", func(t *testing.T) {
		l, c := newTestLimiter()
		l.bind("p", "SELECT x")
		l.execute("p", lim)
		l.sync()
		c.advance(200 * time.Millisecond)
		l.portalSuspended()
		l.readyForQuery('T')
		if _, _, ok := l.deadline(); ok {
			t.Fatal("a suspended portal keeps a deadline")
		}
		c.advance(time.Hour) // the client thinks
		l.execute("p", lim)
		l.sync()
		_, at, _ := l.deadline()
		if !at.Equal(c.now().Add(250 * time.Millisecond)) {
			t.Fatalf("deadline %v", at)
		}
		c.advance(200 * time.Millisecond)
		l.commandComplete([]byte("SELECT 0"))
		l.readyForQuery('T')
		d := l.collect()
		if len(d) != 1 || d[0].duration != 400*time.Millisecond {
			t.Fatalf("logged %+v, want one run of 400ms", d)
		}
	})
	t.Run("no timeout: no deadline", func(t *testing.T) {
		l, _ := newTestLimiter()
		l.query("SELECT 1", nil, stmtLimits{})
		if _, _, ok := l.deadline(); ok {
			t.Fatal("deadline without query_timeout_ms")
		}
	})
}

func TestLimiterQueryLog(t *testing.T) {
	l, c := newTestLimiter()
	start := c.now()
	l.query("SELECT 1; SELEC 2", []string{}, stmtLimits{}) // unparsed: one entry with the whole text
	c.advance(3 * time.Millisecond)
	l.errorResponse("ERROR", "42601")
	l.readyForQuery('I')
	// A portal abandoned while suspended is logged when its transaction ends.
	l.bind("p", "SELECT g FROM generate_series(1, 100) g")
	l.execute("p", stmtLimits{})
	l.sync()
	rows(t, l, 10, true)
	l.portalSuspended()
	l.readyForQuery('I')
	d := l.collect()
	if len(d) != 2 {
		t.Fatalf("logged %+v", d)
	}
	if d[0].text != "SELECT 1; SELEC 2" || d[0].sqlstate != "42601" || !d[0].start.Equal(start) || d[0].duration != 3*time.Millisecond {
		t.Fatalf("first entry %+v", d[0])
	}
	if d[1].text != "SELECT g FROM generate_series(1, 100) g" || d[1].rows != 10 || d[1].sqlstate != "00000" {
		t.Fatalf("second entry %+v", d[1])
	}
}

func TestTagRows(t *testing.T) {
	for tag, want := range map[string]int64{"INSERT 0 5": 5, "UPDATE 3": 3, "SELECT 7": 7, "SELECT 1234567890123": 1234567890123, "CREATE TABLE": 0, "BEGIN": 0, "": 0, "SELECT ": 0, "SELECT 1x": 0, "SELECT -1": 0, "SELECT 99999999999999999999": 0} {
		if got := tagRows([]byte(tag)); got != want {
			t.Errorf("tagRows(%q) = %d, want %d", tag, got, want)
		}
	}
}

// TestLimiterLogsWhatTheSessionLeftRunning: a statement still executing
// when its session ends (the client left, the backend connection went) is
// logged, with the rows relayed so far and 08006, as is a suspended portal;
// what was queued behind it never ran and is not.
func TestLimiterLogsWhatTheSessionLeftRunning(t *testing.T) {
	l, c := newTestLimiter()
	l.bind("p", "SELECT g FROM generate_series(1, 100) g")
	l.execute("p", stmtLimits{})
	l.sync()
	rows(t, l, 10, true)
	l.portalSuspended()
	l.readyForQuery('T')
	start := c.now()
	l.query("SELECT pg_sleep(60) FROM t; SELECT 2", []string{"SELECT pg_sleep(60) FROM t", "SELECT 2"}, stmtLimits{})
	rows(t, l, 3, true)
	c.advance(2 * time.Second)
	l.sessionEnded()
	d := l.collect()
	if len(d) != 2 {
		t.Fatalf("logged %+v, want the running statement and the suspended portal", d)
	}
	if d[0].text != "SELECT pg_sleep(60) FROM t" || d[0].sqlstate != "08006" || d[0].rows != 3 ||
		!d[0].start.Equal(start) || d[0].duration != 2*time.Second {
		t.Fatalf("running statement logged as %+v", d[0])
	}
	if d[1].text != "SELECT g FROM generate_series(1, 100) g" || d[1].rows != 10 || d[1].sqlstate != "00000" {
		t.Fatalf("suspended portal logged as %+v", d[1])
	}
	l.sessionEnded()
	if d := l.collect(); len(d) != 0 {
		t.Fatalf("logged again: %+v", d)
	}
}

// TestLimiterSessionEndedPastTheRowLimit: a statement cancelled past
// max_rows_per_query whose session ends before its 54000 is logged with the
// rows the client got, not those the backend sent after.
func TestLimiterSessionEndedPastTheRowLimit(t *testing.T) {
	l, _ := newTestLimiter()
	l.query("SELECT x", []string{"SELECT x"}, stmtLimits{maxRows: 2})
	rows(t, l, 2, true)
	for i := 0; i < 5; i++ {
		l.dataRow()
	}
	l.sessionEnded()
	if d := l.collect(); len(d) != 1 || d[0].rows != 2 || d[0].sqlstate != "08006" {
		t.Fatalf("logged %+v, want one statement of 2 rows", d)
	}
}

// TestLimiterClientLeftMarksTheStatementItCancelled: the 57014 of the
// statement the proxy cancelled because its client left is logged 08006;
// a later statement's 57014 (a query_timeout_ms or a cancel of its own,
// while the session drains) keeps its code.
func TestLimiterClientLeftMarksTheStatementItCancelled(t *testing.T) {
	l, _ := newTestLimiter()
	l.query("SELECT pg_sleep(60)", []string{"SELECT pg_sleep(60)"}, stmtLimits{})
	l.query("SELECT 2", []string{"SELECT 2"}, stmtLimits{})
	l.clientLeft()
	l.errorResponse("ERROR", "57014")
	l.readyForQuery('I')
	l.errorResponse("ERROR", "57014")
	l.readyForQuery('I')
	d := l.collect()
	if len(d) != 2 || d[0].sqlstate != "08006" || d[1].sqlstate != "57014" {
		t.Fatalf("logged %+v, want the cancelled statement 08006 and the next 57014", d)
	}
}
