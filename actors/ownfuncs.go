package actors

import (
	"sync"

	"tdb/fsm"
	"tdb/wire/classify"
)

// The row guard asks whether a SELECT calls a function that may write
// (guardable). PostgreSQL's own functions that cannot write are known by
// name; a workspace's blueprint can define functions under those names, or
// ones a query calls in attribute notation (s.bump). Their names come from
// the blueprint's DDL: every version's, which covers every tenant whatever
// version it is at (a name a later version drops only makes the guard
// careful).

// ownFunctionsCache keeps each workspace's function names, read once per
// blueprint version, off the relay: reading a large blueprint takes a
// while (about 40 µs a statement), which neither the event loop's thread
// nor a session's lock may wait for.
type ownFunctionsCache struct {
	mu      sync.Mutex
	m       map[ownFunctionsKey]ownFunctionsEntry
	reading map[ownFunctionsKey]bool
}

type ownFunctionsKey struct{ projectID, workspace string }

// ownFunctionsEntry is the names read from a blueprint's first n versions,
// the last of which had checksum last (a workspace deleted and made again
// under its name has other versions).
type ownFunctionsEntry struct {
	n    int
	last string
	f    *classify.Functions
}

// maxOwnFunctionsCache bounds how many workspaces the cache keeps (each a
// set of names); past it, it starts again.
const maxOwnFunctionsCache = 4096

// versionsDDL is what of a blueprint's versions the names are read from.
type versionsDDL struct {
	statements [][]string
	checksums  []string
}

// blueprintDDL takes the DDL of a workspace's versions (inside an FSM
// View: the slices are the state's, which never changes them).
func blueprintDDL(w *fsm.Workspace) versionsDDL {
	if len(w.Versions) == 0 {
		return versionsDDL{}
	}
	d := versionsDDL{statements: make([][]string, len(w.Versions)), checksums: make([]string, len(w.Versions))}
	for i := range w.Versions {
		d.statements[i], d.checksums[i] = w.Versions[i].Statements, w.Versions[i].Checksum
	}
	return d
}

// functions returns the names the workspace's versions define (nil where
// it has none), and whether they are known: until a read of the versions
// not read before (begun here, on a goroutine of its own) has ended, it
// returns classify.AnyFunction, which makes the row guard take any name
// for one of the workspace's own.
func (c *ownFunctionsCache) functions(projectID, workspace string, d versionsDDL) (*classify.Functions, bool) {
	n := len(d.statements)
	if n == 0 {
		return nil, true
	}
	key := ownFunctionsKey{projectID, workspace}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[key]
	if e.n == n && e.last == d.checksums[n-1] {
		return e.f, true
	}
	if !c.reading[key] {
		if c.reading == nil {
			c.reading = make(map[ownFunctionsKey]bool)
		}
		c.reading[key] = true
		go c.read(key, e, d)
	}
	return classify.AnyFunction, false
}

// read reads the names of the versions in d that e has not read, and keeps
// them.
func (c *ownFunctionsCache) read(key ownFunctionsKey, e ownFunctionsEntry, d versionsDDL) {
	n := len(d.statements)
	var base *classify.Functions
	from := 0
	if e.n > 0 && e.n < n && d.checksums[e.n-1] == e.last {
		base, from = e.f, e.n
	}
	var ddl []string
	for _, stmts := range d.statements[from:] {
		ddl = append(ddl, stmts...)
	}
	f := classify.OwnFunctions(base, ddl)
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.reading, key)
	if cur := c.m[key]; cur.n <= n {
		if c.m == nil || len(c.m) >= maxOwnFunctionsCache {
			c.m = make(map[ownFunctionsKey]ownFunctionsEntry)
		}
		c.m[key] = ownFunctionsEntry{n: n, last: d.checksums[n-1], f: f}
	}
}

// ownFunctions returns the function names the session's workspace defines,
// as its limits last read them (nil without a row limit).
func (s *session) ownFunctions() *classify.Functions {
	if s.gov == nil {
		return nil
	}
	return s.gov.limits().own
}
