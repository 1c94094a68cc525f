package classify

import (
	"strings"
	"sync"
)

// Cache remembers what PostgreSQL's parser said of the texts it had to
// read, so a text sent again costs a map lookup instead of a parse (tens of
// microseconds, on the relay's thread): an application's statements come
// back in every session, and drivers that send an unnamed Parse for each
// execution (node-postgres, JDBC before its prepare threshold) send the same
// text every time. Texts the cgo-free fast path classifies are not kept: it
// is cheaper than the lookup, and their literals make most of them unique.
// A Cache is safe for concurrent use; its Results must not be modified.
type Cache struct {
	maxEntries, maxText int

	mu      sync.Mutex
	entries map[string]Result
}

// NewCache returns a cache of at most maxEntries texts of at most maxText
// bytes each (longer ones are parsed every time), so it holds at most
// maxEntries*maxText bytes of text.
func NewCache(maxEntries, maxText int) *Cache {
	return &Cache{maxEntries: maxEntries, maxText: maxText, entries: make(map[string]Result)}
}

// Classify returns Classify(sql), from the cache when the parser read the
// same text before. When the cache is full a random entry makes room.
func (c *Cache) Classify(sql string) Result { return c.ClassifyIn(sql, nil) }

// ClassifyIn is Classify for a caller that is done with the Result before
// it calls again: a statement the cgo-free fast path classifies goes in
// *one instead of a new slice, so a session's plain statements classify
// without allocating. one may be nil.
func (c *Cache) ClassifyIn(sql string, one *[1]Statement) Result {
	sql, r, ok := withoutParser(sql, one)
	if ok {
		return r
	}
	if len(sql) > MaxParsed {
		return classifyLong(sql)
	}
	if c == nil || len(sql) > c.maxText || c.maxEntries <= 0 {
		return parseClassify(sql)
	}
	c.mu.Lock()
	r, ok = c.entries[sql]
	c.mu.Unlock()
	if ok {
		return r
	}
	// The entry owns its text: the Result's statement texts point into it,
	// not into whatever larger buffer sql may be part of.
	sql = strings.Clone(sql)
	r = parseClassify(sql)
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.entries { // map iteration starts at a random entry
		if len(c.entries) < c.maxEntries {
			break
		}
		delete(c.entries, k)
	}
	c.entries[sql] = r
	return r
}

// Len is the number of texts held.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
