package classify

import (
	"strings"
	"testing"
)

// FuzzClassify checks that Classify never panics, that statement texts are
// substrings of the input, and that the fast path agrees with the parser.
func FuzzClassify(f *testing.F) {
	for _, s := range []string{
		"select 1", "insert into t values (1); create table u (id int)",
		"select $$;create table x()$$", "/* /* */ select 1 */ create table t ()",
		"SELECT * INTO x FROM y", "COPY t FROM STDIN", "commit prepared 'x'", "select 1 --;",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		r := Classify(sql)
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
	})
}
