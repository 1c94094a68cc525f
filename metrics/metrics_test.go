package metrics

import (
	"fmt"
	"testing"
)

// TestStatementSQLStatesBounded: clients choose the SQLSTATEs of their own
// errors, so the series they make are bounded; every statement is still
// counted.
func TestStatementSQLStatesBounded(t *testing.T) {
	m := New(Sources{})
	const n = 5000
	for i := 0; i < n; i++ {
		m.Statement(fmt.Sprintf("Z%04d", i))
	}
	m.Statement("42501") // a real error past the bound still counts
	m.Statement("00000")
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		switch f.GetName() {
		case "tdb_statements_total", "tdb_statement_errors_total":
		default:
			continue
		}
		var total float64
		for _, s := range f.GetMetric() {
			total += s.GetCounter().GetValue()
		}
		if len(f.GetMetric()) > 1000 {
			t.Errorf("%s has %d series after %d distinct SQLSTATEs", f.GetName(), len(f.GetMetric()), n)
		}
		want := float64(n + 1)
		if f.GetName() == "tdb_statements_total" {
			want++ // the success
		}
		if total != want {
			t.Errorf("%s counts %v statements, want %v", f.GetName(), total, want)
		}
	}
}
