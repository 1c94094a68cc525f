package classify

import "testing"

func TestFastPathTaken(t *testing.T) {
	for _, sql := range []string{
		"SELECT * FROM t WHERE id = $1",
		"select 1;",
		"  -- lead\n /* block /* nested */ */ select 1 ; \n",
		"INSERT INTO t (a) VALUES ($1)",
		"update t set a = 1",
		"DELETE FROM t",
		"MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE",
		"WITH x AS (SELECT 1) SELECT * FROM x",
		"values (1)",
		"SHOW work_mem",
		"BEGIN", "commit;", "ROLLBACK", "END", "ABORT",
		"", " ", "-- c",
	} {
		if _, ok := fastClassify(sql, nil); !ok {
			t.Errorf("fastClassify(%q) not taken", sql)
		}
	}
}

func TestFastPathDeclines(t *testing.T) {
	for _, sql := range []string{
		"select 1; create table t ()",          // two statements
		"select 1; -- c",                       // ';' not at the end
		"select * into x from y",               // SELECT INTO creates a table
		"select * from t where a = 'Into'",     // conservative
		"with a as (select 1) select * into x", // WITH … SELECT INTO
		"with a as (select 1) insert into t select 1",
		"COMMIT PREPARED 'x'",
		"ROLLBACK TO s",
		"BEGIN ISOLATION LEVEL SERIALIZABLE",
		"commit -- c",
		"/* /* */ select 1 */ create table t ()", // nested comment hides the real first word
		"/* unterminated select 1",
		"select 1 --;",      // trailing ';' is inside a comment
		"selectx from t",    // not the keyword
		"select$1",          // one identifier
		"create table t ()", // not a fast keyword
		"TABLE t",           // not a fast keyword
		"\uFEFFselect 1",    // BOM is not whitespace to PostgreSQL
		"select\u00a0 1",    // U+00A0 is an identifier byte
		"(select 1)",        // not a keyword first
		"explain select 1",  // not a fast keyword
		"COPY t FROM STDIN", // never fast
		"-- c\ncopy t to stdout",
	} {
		if r, ok := fastClassify(sql, nil); ok {
			t.Errorf("fastClassify(%q) = %+v, want the parser", sql, r)
		}
	}
}

// TestFastPathAgreesWithParser checks that, wherever the fast path answers and
// the parser accepts the text, both give the same statements.
func TestFastPathAgreesWithParser(t *testing.T) {
	inputs := []string{
		"BEGIN", "commit;", "ROLLBACK", "END", "ABORT", "begin ;  ;",
		"SELECT * FROM t WHERE id = $1", "select 1;", "  -- lead\n /* a /* b */ */ select 1 ; \n",
		"select 'a' --c\n;", "INSERT INTO t VALUES (1)", "update t set a = 1", "delete from t",
		"values (1), (2)", "show all", "with x as (select 1) select * from x",
		"MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE", "SELECT(1)", "select'a'",
	}
	for _, tc := range singleCases {
		inputs = append(inputs, tc.sql)
	}
	for _, sql := range inputs {
		checkFastAgrees(t, sql)
	}
}

func checkFastAgrees(t *testing.T, sql string) {
	t.Helper()
	fast, ok := fastClassify(sql, nil)
	if !ok {
		return
	}
	slow := parseClassify(sql)
	if slow.Unparsed {
		return // the server rejects it either way
	}
	agrees(t, sql, "fast", fast, slow, true)
}

// agrees fails the test unless got, which the way how read sql to, has the
// parser's statements (their texts too, with texts).
func agrees(t *testing.T, sql, how string, got, parser Result, texts bool) {
	t.Helper()
	if len(got.Statements) != len(parser.Statements) {
		t.Fatalf("%q: %s %+v, parser %+v", sql, how, got, parser)
	}
	for i, g := range got.Statements {
		p := parser.Statements[i]
		if g.Tag == "WITH" {
			g.Tag = p.Tag // the fast path does not look past WITH for the verb
		}
		if !texts {
			g.Text = p.Text
		}
		if g != p {
			t.Errorf("%q: statement %d %s %+v, parser %+v", sql, i, how, g, p)
		}
	}
}

// checkLongAgrees: reading a text a statement at a time (classifyLong,
// for texts longer than MaxParsed) reads each statement of a text the
// parser reads as the parser does. It may refuse more (a BEGIN ATOMIC body
// the scanner cuts), and, like the fast path, pass text the server refuses
// with a syntax error.
func checkLongAgrees(t *testing.T, sql string) {
	t.Helper()
	if tooComplex(sql) {
		return
	}
	long, whole := classifyLong(sql), parseClassify(sql)
	if long.Unparsed || long.TooLong || whole.Unparsed {
		return
	}
	agrees(t, sql, "a statement at a time", long, whole, false)
}

func TestLongAgrees(t *testing.T) {
	for _, sql := range []string{
		"SELECT 1; SELECT 2", "SELECT 1; SELEC x", "SELECT 1; x; CREATE TABLE t ()", "a; b; c", "SELECT 1;;; SELECT 2;",
		"insert into t values ('a;b'); create table u (id int)", "select $$;create table x()$$; select 1",
		"/* ; */ select 1; -- ; \n create table t ()", "SELECT * INTO x FROM y; SELECT 1", "VACUUM; SELECT 1",
		"SET search_path = a; RESET ALL; SAVEPOINT s; ROLLBACK TO s", "SELECT E'\\';'; CREATE TABLE z ()",
		"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END; SELECT 2",
		"(SELECT 1); VALUES (1); WITH a AS (SELECT 1) INSERT INTO t SELECT * FROM a",
		"SELECT 1 /* unterminated", "SELECT 'open", ";", "  ", "",
	} {
		checkLongAgrees(t, sql)
	}
}

func TestContainsInto(t *testing.T) {
	naive := func(s string) bool {
		for i := 0; i+4 <= len(s); i++ {
			if s[i]|0x20 == 'i' && s[i+1]|0x20 == 'n' && s[i+2]|0x20 == 't' && s[i+3]|0x20 == 'o' {
				return true
			}
		}
		return false
	}
	inputs := []string{"", "int", "INTO", "x iNtO y", "int o", "pinto", "iinto", "ininto", "inintto", "tinto", "oooo", "xxxinto", "intxinto"}
	// Every string of length ≤ 7 over a small alphabet, to exercise every shift.
	alphabet := "iInNtToO x"
	var gen func(prefix string)
	gen = func(prefix string) {
		inputs = append(inputs, prefix)
		if len(prefix) == 6 {
			return
		}
		for i := range len(alphabet) {
			gen(prefix + alphabet[i:i+1])
		}
	}
	gen("")
	for _, s := range inputs {
		if got, want := containsInto(s), naive(s); got != want {
			t.Fatalf("containsInto(%q) = %v, want %v", s, got, want)
		}
	}
}
