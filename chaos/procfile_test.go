package main

import (
	"os"
	"strings"
	"testing"
)

func TestParseProcfile(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		want    []Process
		wantErr string
	}{
		{name: "lines, comments, blanks", in: "# a cluster\n\npg: bin/tdb pg --port 5499\nn1:  bin/tdb server --x a:b \n",
			want: []Process{{"pg", "bin/tdb pg --port 5499"}, {"n1", "bin/tdb server --x a:b"}}},
		{name: "no colon", in: "pg bin/tdb\n", wantErr: "line 1"},
		{name: "bad name", in: "p g: x\n", wantErr: "line 1"},
		{name: "empty command", in: "pg:\n", wantErr: "no command"},
		{name: "duplicate", in: "a: x\na: y\n", wantErr: "defined twice"},
		{name: "empty", in: "# nothing\n", wantErr: "no process"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseProcfile(strings.NewReader(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || len(got) != len(tc.want) {
				t.Fatalf("got %v, %v", got, err)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("process %d = %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

// TestRepoProcfile: the committed Procfile parses and describes three
// nodes, a backend and the load balancer.
func TestRepoProcfile(t *testing.T) {
	f, err := os.Open("../Procfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	procs, err := ParseProcfile(f)
	if err != nil {
		t.Fatal(err)
	}
	servers, names := 0, map[string]bool{}
	for _, p := range procs {
		names[p.Name] = true
		if strings.Contains(p.Command, "tdb server") {
			servers++
		}
	}
	if servers != 3 || !names["pg"] || !names["lb"] {
		t.Fatalf("Procfile processes %v", procs)
	}
}
