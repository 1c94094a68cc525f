package classify

import (
	_ "embed"
	"regexp"
	"slices"
	"strings"
	"sync"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// A SELECT writes nothing unless a function it calls does. Which functions
// can is known for PostgreSQL's own: a stable or immutable function cannot
// write, and of the volatile ones most do not either (random, clock_timestamp,
// pg_sleep). Any other function (a user's, or a built-in one that writes:
// lo_create, pg_notify, set_config, query_to_xml, which runs a query it is
// given) may.

//go:embed builtins.txt
var builtinsText string

// harmless are the volatile built-in functions that write nothing a
// transaction could keep or undo. nextval and setval are among them: a
// sequence moves on whether or not the transaction commits.
var harmless = [...]string{
	"clock_timestamp", "currval", "gen_random_uuid", "lastval", "nextval", "random", "setseed", "setval",
	"timeofday", "pg_sleep", "pg_sleep_for", "pg_sleep_until",
	"pg_database_size", "pg_indexes_size", "pg_relation_size", "pg_table_size", "pg_tablespace_size",
	"pg_total_relation_size", "pg_is_in_recovery", "pg_blocking_pids", "pg_lock_status",
	"pg_partition_ancestors", "pg_partition_tree", "pg_xact_status", "txid_status", "pg_current_wal_lsn",
	"pg_current_wal_insert_lsn", "pg_current_wal_flush_lsn", "pg_jit_available", "pg_last_committed_xact",
	"pg_notification_queue_usage", "pg_sequence_last_value", "current_query", "pg_stat_clear_snapshot",
	"pg_xact_commit_timestamp", "pg_collation_actual_version", "pg_database_collation_actual_version",
}

var readOnly = sync.OnceValue(func() map[string]bool {
	m := make(map[string]bool, 2600)
	for _, line := range strings.Split(builtinsText, "\n") {
		if line != "" && line[0] != '#' {
			m[line] = true
		}
	}
	for _, name := range harmless {
		m[name] = true
	}
	return m
})

// Functions are the names of the functions (and aggregates and procedures)
// a database defines itself, read from the DDL that made its schema
// (OwnFunctions). A name among them may be that of a function that writes,
// even where it is also a built-in's (an overload length(my_type), or a
// search_path that puts the database's schema before pg_catalog), and a
// function of one argument can be called in attribute notation (s.bump is
// bump(s)). The zero value and nil hold no name.
type Functions struct {
	names map[string]bool
	any   bool // AnyFunction
}

// AnyFunction stands for a database whose function names are not known
// yet: every name may be one of its own.
var AnyFunction = &Functions{any: true}

// Has reports whether the database defines a function named name.
func (f *Functions) Has(name string) bool {
	return f != nil && (f.any || f.names[name])
}

// Len is how many names f holds (1 for AnyFunction).
func (f *Functions) Len() int {
	switch {
	case f == nil:
		return 0
	case f.any:
		return 1
	}
	return len(f.names)
}

// OwnFunctions reads the function names that DDL statements define
// (CREATE FUNCTION, CREATE PROCEDURE, CREATE AGGREGATE, and the new names of
// ALTER … RENAME TO), on top of those of base (nil: none); base is not
// changed. A statement that does not parse defines none. Not seen: the
// functions an extension brings, or DDL that a DO block or a function runs.
func OwnFunctions(base *Functions, ddl []string) *Functions {
	f := &Functions{names: make(map[string]bool, base.Len())}
	if base != nil {
		for name := range base.names {
			f.names[name] = true
		}
	}
	for _, sql := range ddl {
		if tooComplex(sql) {
			continue
		}
		tree, err := parse(sql)
		if err != nil {
			continue
		}
		walk(tree.ProtoReflect(), func(m protoreflect.Message) {
			switch n := m.Interface().(type) {
			case *pg_query.CreateFunctionStmt:
				f.addLast(n.Funcname)
			case *pg_query.DefineStmt:
				if n.Kind == pg_query.ObjectType_OBJECT_AGGREGATE {
					f.addLast(n.Defnames)
				}
			case *pg_query.RenameStmt:
				switch n.RenameType {
				case pg_query.ObjectType_OBJECT_FUNCTION, pg_query.ObjectType_OBJECT_PROCEDURE,
					pg_query.ObjectType_OBJECT_ROUTINE, pg_query.ObjectType_OBJECT_AGGREGATE:
					f.names[n.Newname] = true
				}
			}
		})
	}
	return f
}

func (f *Functions) addLast(parts []*pg_query.Node) {
	if len(parts) > 0 {
		if name := parts[len(parts)-1].GetString_().GetSval(); name != "" {
			f.names[name] = true
		}
	}
}

// calls is what a statement's text says about the functions it calls:
// whether it calls one that is not a built-in known to write nothing
// (writes), and the names it calls that are such built-ins, or that could
// be a function called in attribute notation (the last name of a qualified
// column reference), for a database's own functions to be checked against.
type calls struct {
	writes bool
	names  []string
}

// callCache remembers what statement texts seen before call (a driver's
// prepared statements, an ORM's queries).
var callCache struct {
	sync.RWMutex
	m map[string]calls
}

const (
	callCacheEntries = 2048
	callCacheText    = 8 << 10
)

// MayCallWritingFunction reports whether a statement calls, by name, a
// function that may write: one that is not a built-in function known to
// write nothing, called by its name alone or with schema pg_catalog, or one
// named as a function the database defines itself (own: OwnFunctions; nil
// where none is known), called by that name or in attribute notation. Text
// that does not parse, or that is too costly to parse, counts as calling
// one. Not seen: a function a view, an operator or a cast calls.
func MayCallWritingFunction(sql string, own *Functions) bool {
	if strings.IndexByte(sql, '(') < 0 && (own.Len() == 0 || strings.IndexByte(sql, '.') < 0) {
		return false // no call without a parenthesis, or a qualified name
	}
	c := statementCalls(sql)
	if c.writes {
		return true
	}
	if own.Len() > 0 {
		for _, name := range c.names {
			if own.Has(name) {
				return true
			}
		}
	}
	return false
}

// statementCalls is callsIn, answered from the cache where it can be.
func statementCalls(sql string) calls {
	cacheable := len(sql) <= callCacheText
	if cacheable {
		callCache.RLock()
		c, ok := callCache.m[sql]
		callCache.RUnlock()
		if ok {
			return c
		}
	}
	c := callsIn(sql)
	if cacheable {
		callCache.Lock()
		if callCache.m == nil || len(callCache.m) >= callCacheEntries {
			callCache.m = make(map[string]calls)
		}
		callCache.m[strings.Clone(sql)] = c
		callCache.Unlock()
	}
	return c
}

func callsIn(sql string) calls {
	if tooComplex(sql) {
		return calls{writes: true}
	}
	tree, err := parse(sql)
	if err != nil {
		return calls{writes: true}
	}
	var c calls
	seen := func(name string) {
		if name != "" {
			c.names = append(c.names, name)
		}
	}
	walk(tree.ProtoReflect(), func(m protoreflect.Message) {
		switch n := m.Interface().(type) {
		case *pg_query.FuncCall:
			if !knownReadOnly(n.Funcname) {
				c.writes = true
			} else {
				seen(n.Funcname[len(n.Funcname)-1].GetString_().GetSval())
			}
		case *pg_query.ColumnRef:
			if len(n.Fields) > 1 {
				seen(n.Fields[len(n.Fields)-1].GetString_().GetSval())
			}
		case *pg_query.A_Indirection:
			for _, ind := range n.Indirection {
				seen(ind.GetString_().GetSval())
			}
		}
	})
	if c.writes {
		return calls{writes: true}
	}
	slices.Sort(c.names)
	c.names = slices.Clip(slices.Compact(c.names))
	return c
}

// knownReadOnly reports whether a function name (its parts as the parser
// read them) is that of a built-in function that writes nothing.
func knownReadOnly(parts []*pg_query.Node) bool {
	switch len(parts) {
	case 1:
	case 2:
		if parts[0].GetString_().GetSval() != "pg_catalog" {
			return false
		}
	default:
		return false
	}
	return readOnly()[parts[len(parts)-1].GetString_().GetSval()]
}

// walk calls visit for m and every message below it.
func walk(m protoreflect.Message, visit func(protoreflect.Message)) {
	visit(m)
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Message() == nil:
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				walk(l.Get(i).Message(), visit)
			}
		case fd.IsMap():
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				if fd.MapValue().Message() != nil {
					walk(mv.Message(), visit)
				}
				return true
			})
		default:
			walk(v.Message(), visit)
		}
		return true
	})
}

// typeIfMissing is a DO block that creates a type unless it exists, what
// Sequelize sends for an ENUM column.
var typeIfMissing = regexp.MustCompile(`(?is)^\s*BEGIN\s+(CREATE\s+TYPE\s.*?)\s*;\s*EXCEPTION\s+WHEN\s+duplicate_object\s+THEN\s+null\s*;\s*END\s*;?\s*$`)

// CreatesTypeIfMissing reports whether a DO statement does nothing but
// create one type unless it exists (DO 'BEGIN CREATE TYPE … AS ENUM (…);
// EXCEPTION WHEN duplicate_object THEN null; END'). Replayed on a tenant
// it does the same, so a tenant workspace records it as it is, as DDL.
func CreatesTypeIfMissing(st Statement) bool {
	if st.Tag != "DO" {
		return false
	}
	body, ok := DoBody(st.Text)
	m := typeIfMissing.FindStringSubmatch(body)
	if !ok || m == nil {
		return false
	}
	r := Classify(m[1])
	return len(r.Statements) == 1 && r.Statements[0].Tag == "CREATE TYPE"
}
