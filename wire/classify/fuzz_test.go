package classify

import (
	"reflect"
	"strings"
	"testing"
)

// FuzzClassify checks that Classify never panics, that statement texts are
// substrings of the input, that the fast path agrees with the parser, and
// that a Cache answers as Classify does, first time and from the cache, and
// that reading a statement at a time agrees with the parser.
func FuzzClassify(f *testing.F) {
	for _, s := range []string{
		"select 1", "insert into t values (1); create table u (id int)",
		"select $$;create table x()$$", "/* /* */ select 1 */ create table t ()",
		"SELECT * INTO x FROM y", "COPY t FROM STDIN", "commit prepared 'x'", "select 1 --;",
	} {
		f.Add(s)
	}
	cache := NewCache(256, 4096)
	f.Fuzz(func(t *testing.T, sql string) {
		r := Classify(sql)
		for range 2 {
			if c := cache.Classify(sql); !reflect.DeepEqual(c, r) {
				t.Fatalf("cache %+v, Classify %+v", c, r)
			}
		}
		if r.Unparsed && len(r.Statements) > 0 {
			t.Fatalf("Unparsed with statements: %+v", r)
		}
		for _, s := range r.Statements {
			if !strings.Contains(sql, s.Text) || s.Tag == "" {
				t.Fatalf("statement %+v: text not in input or empty tag", s)
			}
		}
		if i := strings.IndexByte(sql, 0); i >= 0 {
			sql = sql[:i]
		}
		checkFastAgrees(t, sql)
		checkLongAgrees(t, sql)
	})
}
