package actors

import (
	"testing"
	"time"

	"tdb/wire/classify"
)

// TestOwnFunctionsReadOncePerVersion: a workspace's function names are
// read off the caller's goroutine, from the versions not read before (any
// name counts as one meanwhile), and read again from the start for a
// workspace made again under the same name.
func TestOwnFunctionsReadOncePerVersion(t *testing.T) {
	var c ownFunctionsCache
	known := func(d versionsDDL) *classify.Functions {
		t.Helper()
		f, ok := c.functions("p", "w", d)
		if !ok && f != classify.AnyFunction {
			t.Fatal("names not yet read are not AnyFunction")
		}
		for deadline := time.Now().Add(10 * time.Second); !ok; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the names were never read")
			}
			f, ok = c.functions("p", "w", d)
		}
		return f
	}
	fn := func(name string) []string {
		return []string{"CREATE FUNCTION " + name + "() RETURNS int LANGUAGE sql AS 'SELECT 1'"}
	}
	one := versionsDDL{statements: [][]string{fn("a")}, checksums: []string{"1"}}
	if _, ok := c.functions("p", "w", one); ok {
		t.Fatal("names known before they were read")
	}
	f1 := known(one)
	if !f1.Has("a") || f1.Len() != 1 {
		t.Fatalf("version 1: %d names", f1.Len())
	}
	two := versionsDDL{statements: [][]string{{"CREATE FUNCTION not_read_again() RETURNS int LANGUAGE sql AS 'SELECT 1'"}, fn("b")},
		checksums: []string{"1", "2"}}
	f2 := known(two)
	if !f2.Has("a") || !f2.Has("b") || f2.Has("not_read_again") || f1.Has("b") {
		t.Fatal("version 2's names are not added to a copy of version 1's")
	}
	if f, ok := c.functions("p", "w", two); !ok || f != f2 {
		t.Fatal("the same versions were read again")
	}
	again := versionsDDL{statements: [][]string{fn("c"), fn("d")}, checksums: []string{"3", "4"}}
	if f := known(again); f.Has("a") || !f.Has("c") || !f.Has("d") {
		t.Fatal("a workspace made again kept the names of the one before")
	}
	if f, ok := c.functions("p", "other", versionsDDL{}); f != nil || !ok {
		t.Fatal("a workspace without versions has names")
	}
}
