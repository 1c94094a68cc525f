package classify

import (
	_ "embed"
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

// callCache remembers MayCallWritingFunction's answers for statement texts
// seen before (a driver's prepared statements, an ORM's queries).
var callCache struct {
	sync.RWMutex
	m map[string]bool
}

const (
	callCacheEntries = 2048
	callCacheText    = 8 << 10
)

// MayCallWritingFunction reports whether a statement calls, by name, a
// function that may write: one that is not a built-in function known to
// write nothing, called by its name alone or with schema pg_catalog. Text
// that does not parse, or that is too costly to parse, counts as calling one.
// Not seen: a function a view, an operator or a cast calls.
func MayCallWritingFunction(sql string) bool {
	if strings.IndexByte(sql, '(') < 0 {
		return false // no call without a parenthesis
	}
	cacheable := len(sql) <= callCacheText
	if cacheable {
		callCache.RLock()
		may, ok := callCache.m[sql]
		callCache.RUnlock()
		if ok {
			return may
		}
	}
	may := callsWritingFunction(sql)
	if cacheable {
		callCache.Lock()
		if callCache.m == nil || len(callCache.m) >= callCacheEntries {
			callCache.m = make(map[string]bool)
		}
		callCache.m[strings.Clone(sql)] = may
		callCache.Unlock()
	}
	return may
}

func callsWritingFunction(sql string) bool {
	if tooComplex(sql) {
		return true
	}
	tree, err := parse(sql)
	if err != nil {
		return true
	}
	found := false
	walk(tree.ProtoReflect(), func(m protoreflect.Message) {
		if fc, ok := m.Interface().(*pg_query.FuncCall); ok && !found {
			found = !knownReadOnly(fc.Funcname)
		}
	})
	return found
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
