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
		if got := MayCallWritingFunction(c.sql); got != c.may {
			t.Errorf("MayCallWritingFunction(%q) = %v, want %v", c.sql, got, c.may)
		}
		if got := MayCallWritingFunction(c.sql); got != c.may { // from the cache
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
	if !MayCallWritingFunction(s) {
		t.Fatal("a user function counts as writing")
	}
	copy(buf, "SELECT lower('AAAAAAAA')")
	for i := range 300 { // the map grows, and places its keys anew by their text
		MayCallWritingFunction("SELECT lower('" + strings.Repeat("b", i) + "')")
	}
	if MayCallWritingFunction(strings.Clone(s)) {
		t.Fatal("the cache answered for text that changed under it")
	}
}
