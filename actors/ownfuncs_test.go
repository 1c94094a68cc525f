package actors

import "testing"

// TestOwnFunctionsReadOncePerVersion: a workspace's function names are
// read from the versions not read before, and read again from the start for
// a workspace made again under the same name.
func TestOwnFunctionsReadOncePerVersion(t *testing.T) {
	var c ownFunctionsCache
	fn := func(name string) []string {
		return []string{"CREATE FUNCTION " + name + "() RETURNS int LANGUAGE sql AS 'SELECT 1'"}
	}
	one := versionsDDL{statements: [][]string{fn("a")}, checksums: []string{"1"}}
	f1 := c.functions("p", "w", one)
	if !f1.Has("a") || f1.Len() != 1 {
		t.Fatalf("version 1: %d names", f1.Len())
	}
	two := versionsDDL{statements: [][]string{{"this is not read again"}, fn("b")}, checksums: []string{"1", "2"}}
	f2 := c.functions("p", "w", two)
	if !f2.Has("a") || !f2.Has("b") || f1.Has("b") {
		t.Fatal("version 2's names are not added to a copy of version 1's")
	}
	if c.functions("p", "w", two) != f2 {
		t.Fatal("the same versions were read again")
	}
	if f := c.functions("p", "w", one); !f.Has("a") || f.Has("b") {
		t.Fatal("fewer versions answered with names of later ones")
	}
	again := versionsDDL{statements: [][]string{fn("c"), fn("d")}, checksums: []string{"3", "4"}}
	if f := c.functions("p", "w", again); f.Has("a") || !f.Has("c") || !f.Has("d") {
		t.Fatal("a workspace made again kept the names of the one before")
	}
	if c.functions("p", "other", versionsDDL{}) != nil {
		t.Fatal("a workspace without versions has names")
	}
}
