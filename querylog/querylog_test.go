package querylog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unsafe"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestRingKeepsTheNewest(t *testing.T) {
	l := New(3, nil)
	defer l.Close()
	for i := 0; i < 5; i++ {
		l.Add(Entry{Time: t0.Add(time.Duration(i) * time.Second), Statement: string(rune('a' + i))})
	}
	if l.Len() != 3 {
		t.Fatalf("len %d", l.Len())
	}
	got := ""
	for _, e := range l.Query(Filter{}) {
		got += e.Statement
	}
	if got != "cde" {
		t.Fatalf("entries %q, want cde", got)
	}
	got = ""
	for _, e := range l.Query(Filter{Limit: 2}) {
		got += e.Statement
	}
	if got != "de" {
		t.Fatalf("limited entries %q, want de", got)
	}
	if n := len(l.Query(Filter{Since: t0.Add(4 * time.Second)})); n != 1 {
		t.Fatalf("since: %d entries", n)
	}
}

func TestFilter(t *testing.T) {
	l := New(10, nil)
	defer l.Close()
	l.Add(Entry{Project: "p1", Database: "myapp__wayne", Workspace: "myapp", Tenant: "wayne"})
	l.Add(Entry{Project: "p1", Database: "myapp__globex", Workspace: "myapp", Tenant: "globex"})
	l.Add(Entry{Project: "p2", Database: "myapp__wayne", Workspace: "myapp", Tenant: "wayne"})
	l.Add(Entry{Project: "p1", Database: "myapp_workspace", Workspace: "myapp"})
	l.Add(Entry{Project: "p1", Database: "controlplane_workspace", Workspace: "controlplane"})
	for _, tt := range []struct {
		name string
		f    Filter
		want int
	}{
		{"all", Filter{}, 5},
		{"project", Filter{Project: "p1"}, 4},
		{"tenant", Filter{Project: "p1", Tenant: "wayne"}, 1},
		{"workspace scope", Filter{Project: "p1", Workspaces: map[string]bool{"myapp": true}}, 3},
		{"tenant scope", Filter{Project: "p1", Tenants: map[string]TenantScope{"wayne": {Blueprint: "myapp"}, "globex": {Blueprint: "myapp"}}}, 2},
		{"tenant scope, another blueprint's tenant of the name", Filter{Project: "p1", Tenants: map[string]TenantScope{"wayne": {Blueprint: "other"}}}, 0},
		{"tenant scope, a tenant of the name made later", Filter{Project: "p1", Tenants: map[string]TenantScope{"wayne": {Blueprint: "myapp", Since: time.Now().Add(time.Hour)}}}, 0},
		{"empty scope", Filter{Workspaces: map[string]bool{}}, 0},
	} {
		if n := len(l.Query(tt.f)); n != tt.want {
			t.Errorf("%s: %d entries, want %d", tt.name, n, tt.want)
		}
	}
}

func TestJSONLines(t *testing.T) {
	var buf bytes.Buffer
	l := New(10, &buf)
	l.Add(Entry{Time: t0, Node: "n1", Statement: "SELECT 1", SQLState: "00000", Rows: 1})
	l.Add(Entry{Time: t0, Node: "n1", Statement: "SELECT x", SQLState: "42703"})
	l.Close()
	sc := bufio.NewScanner(&buf)
	var lines []map[string]any
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 2 || lines[0]["msg"] != "query" || lines[1]["sqlstate"] != "42703" || lines[0]["statement"] != "SELECT 1" {
		t.Fatalf("lines %v", lines)
	}
}

func TestTruncate(t *testing.T) {
	s, cut := Truncate("SELECT 1")
	if s != "SELECT 1" || cut {
		t.Fatalf("short text changed: %q %v", s, cut)
	}
	long := "SELECT '" + strings.Repeat("é", 3000) + "'"
	s, cut = Truncate(long)
	if !cut || len(s) > MaxStatement || len(s) < MaxStatement-1 || !strings.HasPrefix(long, s) {
		t.Fatalf("truncated to %d bytes, cut %v", len(s), cut)
	}
	if !json.Valid([]byte(`"` + strings.ReplaceAll(s, `'`, ``) + `"`)) {
		t.Fatalf("split a UTF-8 character")
	}
}

// TestTruncateCopies: a cut statement does not keep the whole text alive in
// the log.
func TestTruncateCopies(t *testing.T) {
	long := strings.Repeat("x", 1<<20)
	cut, truncated := Truncate(long)
	if !truncated || len(cut) != MaxStatement {
		t.Fatalf("cut to %d bytes, truncated %v", len(cut), truncated)
	}
	if unsafe.StringData(cut) == unsafe.StringData(long) {
		t.Fatal("the cut statement shares the whole text's memory")
	}
}
