package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestRewriteRepoProcfile: the Procfile's servers and backend become
// hermetic commands: fresh ports, consistent across processes (n2 joins
// n1's new gossip address), data dirs in the run's dir, no PROXY protocol.
func TestRewriteRepoProcfile(t *testing.T) {
	f, err := os.Open("../Procfile")
	if err != nil {
		t.Fatal(err)
	}
	procs, err := ParseProcfile(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	m := newRemapper()
	defer m.release()
	argv := map[string][]string{}
	for _, p := range procs {
		if p.Name == "lb" {
			continue
		}
		a, err := rewriteCommand(p, "/x/tdb", "/run", m)
		if err != nil {
			t.Fatalf("%s: %v", p.Name, err)
		}
		argv[p.Name] = a
		joined := strings.Join(a, " ")
		if a[0] != "/x/tdb" || strings.Contains(joined, "proxy-protocol-from") || strings.Contains(joined, "${") {
			t.Fatalf("%s: %s", p.Name, joined)
		}
		if got := flagValue(a, "--data-dir"); got != filepath.Join("/run", p.Name) {
			t.Fatalf("%s: data dir %q", p.Name, got)
		}
		for _, fl := range []string{"--wire-addr", "--http-addr", "--raft-addr", "--gossip-addr"} {
			if v := flagValue(a, fl); p.Name != "pg" && (v == "" || strings.HasSuffix(v, ":5441") || strings.Contains(v, ":74") || strings.Contains(v, ":79")) {
				t.Fatalf("%s: %s %q not remapped", p.Name, fl, v)
			}
		}
	}
	if flagValue(argv["pg"], "--port") == "5499" {
		t.Fatal("pg port not remapped")
	}
	join := strings.Split(flagValue(argv["n2"], "--join"), ",")
	if !slices.Contains(join, flagValue(argv["n1"], "--gossip-addr")) || !slices.Contains(join, flagValue(argv["n3"], "--gossip-addr")) {
		t.Fatalf("n2 joins %v; n1 gossips at %s, n3 at %s", join, flagValue(argv["n1"], "--gossip-addr"), flagValue(argv["n3"], "--gossip-addr"))
	}
	if !strings.HasPrefix(flagValue(argv["n1"], "--admin-key"), "sk_") {
		t.Fatalf("admin key not expanded: %v", argv["n1"])
	}
}

func TestSplitWords(t *testing.T) {
	env := func(k string) string { return map[string]string{"A": "x y", "B": ""}[k] }
	for _, tc := range []struct {
		in   string
		want []string
		err  bool
	}{
		{in: `a  b'c d'"e $A" ${B:-def} $A\ z`, want: []string{"a", "bc de x y", "def", "x y z"}},
		{in: `a | b`, err: true},
		{in: `'open`, err: true},
	} {
		got, err := splitWords(tc.in, env)
		if tc.err != (err != nil) || !tc.err && !slices.Equal(got, tc.want) {
			t.Fatalf("splitWords(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
