package classify

import (
	"strings"
	"testing"
	"unsafe"
)

func TestMayCallWritingFunction(t *testing.T) {
	cases := []struct {
		sql string
		may bool
	}{
		{"SELECT abalance FROM pgbench_accounts WHERE aid = $1", false},
		{"SELECT count(*), max(id), lower(name) FROM t GROUP BY 3", false},
		{"SELECT pg_catalog.now(), coalesce(a, 1), extract(year FROM ts), substring(s FROM 2) FROM t", false},
		{"SELECT * FROM generate_series(1, 10) g WHERE g IN (1, 2)", false},
		{"SELECT nextval('s'), random(), gen_random_uuid()", false},
		{"(SELECT jsonb_build_object('a', 1)) UNION (SELECT '{}')", false},
		{"SELECT add_order(1)", true},
		{"SELECT * FROM t WHERE id = (SELECT bump())", true},
		{"SELECT * FROM audit_rows(3)", true},
		{"SELECT public.lower('A')", true},
		{"SELECT lo_from_bytea(0, 'x')", true},
		{"SELECT pg_notify('c', 'x')", true},
		{"SELECT set_config('search_path', 'x', false)", true},
		{"SELECT query_to_xml('SELECT 1', true, true, '')", true},
		{"WITH x AS (SELECT f()) SELECT * FROM x", true},
		{"SELECT count(* FROM", true}, // does not parse
	}
	for _, c := range cases {
		if got := MayCallWritingFunction(c.sql, nil); got != c.may {
			t.Errorf("MayCallWritingFunction(%q) = %v, want %v", c.sql, got, c.may)
		}
		if got := MayCallWritingFunction(c.sql, nil); got != c.may { // from the cache
			t.Errorf("cached MayCallWritingFunction(%q) = %v, want %v", c.sql, got, c.may)
		}
	}
	if len(readOnly()) < 2000 || readOnly()["lo_create"] || !readOnly()["lower"] {
		t.Fatalf("built-in list not loaded as expected: %d names", len(readOnly()))
	}
}

// TestCallCacheKeepsItsOwnText checks that a cached answer does not follow a
// caller's buffer that is written over after the call.
func TestCallCacheKeepsItsOwnText(t *testing.T) {
	buf := []byte("SELECT cache_probe_fn(1)")
	s := unsafe.String(&buf[0], len(buf))
	if !MayCallWritingFunction(s, nil) {
		t.Fatal("a user function counts as writing")
	}
	copy(buf, "SELECT lower('AAAAAAAA')")
	for i := range 300 { // the map grows, and places its keys anew by their text
		MayCallWritingFunction("SELECT lower('"+strings.Repeat("b", i)+"')", nil)
	}
	if MayCallWritingFunction(strings.Clone(s), nil) {
		t.Fatal("the cache answered for text that changed under it")
	}
}

// TestMayCallOwnFunction: where the database defines functions itself, a
// call by a built-in's name or in attribute notation may be one of them.
func TestMayCallOwnFunction(t *testing.T) {
	own := OwnFunctions(nil, []string{
		"CREATE TABLE seed (id int)",
		"CREATE FUNCTION bump(seed) RETURNS int LANGUAGE sql AS $$ INSERT INTO log VALUES (1) RETURNING 1 $$",
		"create or replace function app.LENGTH(x int) returns int language sql as 'select 1'",
		`CREATE FUNCTION "Odd"() RETURNS int LANGUAGE sql AS 'SELECT 1'`,
		"CREATE AGGREGATE sum(seed) (SFUNC = seed_add, STYPE = int)",
		"CREATE PROCEDURE p() LANGUAGE sql AS 'SELECT 1'",
		"ALTER FUNCTION old_name(int) RENAME TO upper",
		"CREATE FUNCTION broken(", // does not parse: defines nothing
	})
	for _, name := range []string{"bump", "length", "Odd", "sum", "p", "upper"} {
		if !own.Has(name) {
			t.Errorf("%q not read from the DDL", name)
		}
	}
	if own.Has("seed") || own.Has("broken") || own.Has("old_name") || own.Len() != 6 {
		t.Errorf("%d names, want 6", own.Len())
	}
	more := OwnFunctions(own, []string{"CREATE FUNCTION later() RETURNS int LANGUAGE sql AS 'SELECT 1'"})
	if !more.Has("later") || !more.Has("bump") || own.Has("later") {
		t.Error("a later version's names are not added to a copy of the earlier ones")
	}
	cases := []struct {
		sql    string
		own    *Functions
		writes bool
	}{
		{"SELECT s.bump FROM seed s", own, true},
		{"SELECT (s).bump FROM seed s", own, true},
		{"SELECT s.id FROM seed s", own, false},
		{"SELECT length(s.id) FROM seed s", own, true},
		{"SELECT lower('a'), count(*) FROM seed", own, false},
		{"SELECT sum(s) FROM seed s", own, true},
		{"SELECT length('abc')", nil, false},
		{"SELECT s.bump FROM seed s", nil, false},
		{"SELECT s.bump FROM seed s", &Functions{}, false},
		{"SELECT id FROM seed", own, false},
	}
	for _, c := range cases {
		for range 2 { // parsed, then from the cache
			if got := MayCallWritingFunction(c.sql, c.own); got != c.writes {
				t.Errorf("MayCallWritingFunction(%q, %d own) = %v, want %v", c.sql, c.own.Len(), got, c.writes)
			}
		}
	}
}

// TestAnyFunction: while a database's names are not known, every name in a
// call or in attribute notation may be one of its own.
func TestAnyFunction(t *testing.T) {
	for sql, writes := range map[string]bool{
		"SELECT s.id FROM seed s": true,
		"SELECT lower('a')":       true,
		"SELECT id FROM seed":     false,
		"SELECT 1":                false,
	} {
		if got := MayCallWritingFunction(sql, AnyFunction); got != writes {
			t.Errorf("MayCallWritingFunction(%q, AnyFunction) = %v, want %v", sql, got, writes)
		}
	}
	if OwnFunctions(AnyFunction, nil).Has("x") {
		t.Error("names read on top of AnyFunction are all names")
	}
}
