package blueprint

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/cockroachdb/errors"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"tdb/fsm"
)

// CopyStyles are the session settings an import reads the source with:
// values are written in them (COPY TO, a routing value as text), whatever
// the source server's defaults. pg_dump sets the same.
var CopyStyles = map[string]string{"DateStyle": "ISO", "IntervalStyle": "postgres", "extra_float_digits": "3"}

// ImportPlan is how a source database's rows split into tenants.
type ImportPlan struct {
	Tables   []fsm.ImportTable // copied, parents before children
	Unrouted []string          // tables with no way to the routing field that no copied table references
	Values   []string          // the distinct routing values, as text, sorted
	// NotCopied says, per routed table, how many rows reach no routing value
	// (a NULL one, or a NULL foreign key on the way): no tenant gets them.
	NotCopied []string
}

// Analyse plans an import-full of schema public of the database at
// sourceURL: tables with the routing column are split by it; tables without
// it follow their foreign keys (the shortest chain) to a table that has it;
// tables that have no such chain but that the tables copied reference, along
// foreign keys, are lookup tables (countries, plans) that every tenant gets
// whole, or its copies of the others would break their foreign keys; the
// rest are reported as unrouted.
func Analyse(ctx context.Context, sourceURL, routingField string) (ImportPlan, error) {
	var plan ImportPlan
	if _, err := CheckSourceURL(sourceURL); err != nil {
		return plan, err
	}
	cfg, err := pgx.ParseConfig(sourceURL)
	if err != nil {
		return plan, errors.Mark(errors.Wrap(err, "parse from_url"), ErrBadSource)
	}
	OwnCredentials(&cfg.Config, sourceURL)
	cfg.RuntimeParams["application_name"] = "tdb-import"
	cfg.RuntimeParams["search_path"] = ""
	// The routing values are read as text here and matched as text by each
	// tenant's copy, whose session sets the same styles (a date routing
	// column under the source's 'SQL, DMY' would match nothing).
	for k, v := range CopyStyles {
		cfg.RuntimeParams[k] = v
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return plan, errors.Mark(errors.Wrap(err, "connect to from_url"), ErrBadSource)
	}
	defer conn.Close(context.Background())

	type table struct {
		name    string
		columns []string
		routing string
		hops    []fsm.ImportHop
		routed  bool
		whole   bool
		typ     string // the routing column's type
	}
	tables := map[uint32]*table{}
	var oids []uint32
	rows, err := conn.Query(ctx, `SELECT c.oid, c.oid::regclass::text,
			array_agg(quote_ident(a.attname) ORDER BY a.attnum) FILTER (WHERE a.attgenerated = ''),
			bool_or(a.attname = $1),
			coalesce(min(a.atttypid::regtype::text) FILTER (WHERE a.attname = $1), '')
		FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition
		GROUP BY c.oid ORDER BY c.oid`, routingField)
	if err != nil {
		return plan, errors.Wrap(err, "list the source's tables")
	}
	for rows.Next() {
		var oid uint32
		t := &table{}
		var has bool
		if err := rows.Scan(&oid, &t.name, &t.columns, &has, &t.typ); err != nil {
			rows.Close()
			return plan, err
		}
		if has {
			t.routing, t.routed = pgx.Identifier{routingField}.Sanitize(), true
		}
		tables[oid] = t
		oids = append(oids, oid)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return plan, err
	}

	type fk struct {
		from, to         uint32
		cols, refColumns []string
		deferrable       bool
	}
	var fks []fk
	rows, err = conn.Query(ctx, `SELECT c.conrelid, c.confrelid,
			(SELECT array_agg(quote_ident(a.attname) ORDER BY k.n) FROM unnest(c.conkey) WITH ORDINALITY k(attnum, n)
			   JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum),
			(SELECT array_agg(quote_ident(a.attname) ORDER BY k.n) FROM unnest(c.confkey) WITH ORDINALITY k(attnum, n)
			   JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum),
			c.condeferrable
		FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid
		WHERE c.contype = 'f' AND r.relnamespace = 'public'::regnamespace ORDER BY c.oid`)
	if err != nil {
		return plan, errors.Wrap(err, "list the source's foreign keys")
	}
	for rows.Next() {
		var f fk
		if err := rows.Scan(&f.from, &f.to, &f.cols, &f.refColumns, &f.deferrable); err != nil {
			rows.Close()
			return plan, err
		}
		if tables[f.from] != nil && tables[f.to] != nil && f.from != f.to {
			fks = append(fks, f)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return plan, err
	}

	// Tables without the routing column: the shortest foreign-key chain to
	// one that has it (breadth first; ties by constraint order).
	for _, oid := range oids {
		t := tables[oid]
		if t.routed {
			continue
		}
		type node struct {
			oid  uint32
			hops []fsm.ImportHop
		}
		seen := map[uint32]bool{oid: true}
		queue := []node{{oid: oid}}
		for len(queue) > 0 && !t.routed {
			n := queue[0]
			queue = queue[1:]
			for _, f := range fks {
				if f.from != n.oid || seen[f.to] {
					continue
				}
				seen[f.to] = true
				ref := tables[f.to]
				hop := fsm.ImportHop{Columns: f.cols, RefTable: ref.name, RefColumns: f.refColumns}
				hops := append(append([]fsm.ImportHop(nil), n.hops...), hop)
				if ref.routing != "" {
					hops[len(hops)-1].RefRouting = ref.routing
					t.hops, t.routed = hops, true
					break
				}
				queue = append(queue, node{oid: f.to, hops: hops})
			}
		}
	}

	// Lookup tables: without a way to the routing field, but referenced
	// from a table copied. Such a table's own keys lead only to tables
	// without a way either (else it would have one), which are copied whole
	// in turn.
	var lookups []uint32
	for _, oid := range oids {
		if tables[oid].routed {
			lookups = append(lookups, oid)
		}
	}
	for len(lookups) > 0 {
		from := lookups[0]
		lookups = lookups[1:]
		for _, f := range fks {
			if ref := tables[f.to]; f.from == from && !ref.routed && !ref.whole {
				ref.whole = true
				lookups = append(lookups, f.to)
			}
		}
	}

	// Parents before children, so that foreign keys hold while copying. A
	// deferrable key is checked at the copy's commit: when the immediate
	// keys alone leave an order, deferrable ones may point either way (a
	// cycle of them copies). Only the tables copied are ordered: a table
	// copied references only tables copied (lookups), and keys among the
	// others hold nothing up.
	var copied []uint32
	for _, oid := range oids {
		if t := tables[oid]; t.routed || t.whole {
			copied = append(copied, oid)
		} else {
			plan.Unrouted = append(plan.Unrouted, t.name)
		}
	}
	done := map[uint32]bool{}
	var order []uint32
	ready := func(oid uint32, deferredToo bool) bool {
		for _, f := range fks {
			if t := tables[f.to]; f.from == oid && !done[f.to] && (t.routed || t.whole) && (deferredToo || !f.deferrable) {
				return false
			}
		}
		return true
	}
	for len(order) < len(copied) {
		progress := false
		for _, deferredToo := range []bool{true, false} {
			for _, oid := range copied {
				if !done[oid] && ready(oid, deferredToo) {
					done[oid], order, progress = true, append(order, oid), true
				}
			}
			if progress {
				break
			}
		}
		if !progress {
			// Name the cycle: drop the tables no other one left depends on
			// (those waiting behind the cycle), until only the cycle is left.
			left := map[uint32]bool{}
			for _, oid := range copied {
				left[oid] = !done[oid]
			}
			for pruned := true; pruned; {
				pruned = false
				for oid, in := range left {
					if !in {
						continue
					}
					needed := false
					for _, f := range fks {
						needed = needed || (f.to == oid && left[f.from] && !f.deferrable)
					}
					if !needed {
						left[oid], pruned = false, true
					}
				}
			}
			var stuck []string
			for _, f := range fks {
				if left[f.from] && left[f.to] && !f.deferrable {
					stuck = append(stuck, tables[f.from].name+" -> "+tables[f.to].name)
				}
			}
			return plan, errors.Mark(errors.Newf("the source's foreign keys form a cycle (%s): import-full copies one only when its foreign keys are DEFERRABLE",
				strings.Join(stuck, ", ")), ErrBadSource)
		}
	}
	// Each tenant's rows are matched by the routing value's text; where
	// every routing column has one type whose values are equal exactly when
	// their text is, the copy also compares as that type, for an index.
	typ := ""
	for _, oid := range oids {
		if t := tables[oid]; t.routing != "" {
			if typ != "" && t.typ != typ {
				typ = ""
				break
			}
			typ = t.typ
		}
	}
	if !indexableRouting[typ] {
		typ = ""
	}
	var routed []string
	for _, oid := range order {
		t := tables[oid]
		it := fsm.ImportTable{Name: t.name, Columns: t.columns, Routing: t.routing, Via: t.hops, Whole: t.whole}
		if typ != "" {
			if it.Routing != "" {
				it.RoutingType = typ
			}
			if n := len(it.Via); n > 0 {
				it.Via = append([]fsm.ImportHop(nil), it.Via...)
				it.Via[n-1].RefRoutingType = typ
			}
		}
		plan.Tables = append(plan.Tables, it)
		if t.routing != "" {
			routed = append(routed, fmt.Sprintf("SELECT %s::text AS v FROM %s", t.routing, t.name))
		}
	}
	if len(routed) == 0 {
		return plan, errors.Mark(errors.Newf("no table in schema public of the source has a column %q", routingField), ErrBadSource)
	}
	rows, err = conn.Query(ctx, "SELECT DISTINCT v FROM ("+strings.Join(routed, " UNION ")+") x WHERE v IS NOT NULL ORDER BY v")
	if err != nil {
		return plan, errors.Wrap(err, "read the routing values")
	}
	plan.Values, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return plan, errors.Wrap(err, "read the routing values")
	}
	inherited, err := InheritedTables(ctx, conn.PgConn())
	if err != nil {
		return plan, err
	}
	for _, t := range plan.Tables {
		if t.Whole {
			continue
		}
		var n int64
		if err := conn.QueryRow(ctx, NotCopiedSQL(t, inherited[t.Name])).Scan(&n); err != nil {
			return plan, errors.Wrapf(err, "count the rows of %s that reach no %s", t.Name, routingField)
		}
		if n > 0 {
			plan.NotCopied = append(plan.NotCopied, fmt.Sprintf("%s: %d row(s) that reach no %s", t.Name, n, routingField))
		}
	}
	return plan, nil
}

// SelectSQL is the query that reads one tenant's rows of a table: those
// whose routing value (of their own, or at the end of their foreign-key
// chain) is value; all of a lookup table's. With inherited set, other
// tables inherit from it (InheritedTables), and it is read without their
// rows, which their own copies carry.
func SelectSQL(t fsm.ImportTable, value string, inherited bool) string {
	if t.Whole {
		return fmt.Sprintf("SELECT %s FROM %s", strings.Join(t.Columns, ", "), from(t.Name, inherited))
	}
	lit := literal(value)
	cond := routedWhere(t, func(routing, typ string) string {
		if typ != "" {
			return fmt.Sprintf("%s = CAST(%s AS %s) AND %s::text = %s", routing, lit, typ, routing, lit)
		}
		return fmt.Sprintf("%s::text = %s", routing, lit)
	})
	return fmt.Sprintf("SELECT %s FROM %s WHERE %s", strings.Join(t.Columns, ", "), from(t.Name, inherited), cond)
}

// from is what table's rows are read from: a table others inherit from
// (INHERITS, not partitions) without their rows, as each child is a table
// of the import of its own.
func from(table string, inherited bool) string {
	if inherited {
		return "ONLY " + table
	}
	return table
}

// InheritedTables returns the tables of schema public that other tables
// inherit from (INHERITS, not partitions), named as the plan names them,
// read in the session conn (whose search_path is empty, as Analyse's and
// the copy's are). The copy reads them in its snapshot of the source: they
// are not kept in the plan, as builds before it would not keep such a
// field in their state.
func InheritedTables(ctx context.Context, conn *pgconn.PgConn) (map[string]bool, error) {
	rr := conn.ExecParams(ctx, `SELECT c.oid::regclass::text FROM pg_catalog.pg_class c
		WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND c.relhassubclass`, nil, nil, nil, nil)
	out := map[string]bool{}
	for rr.NextRow() {
		out[string(rr.Values()[0])] = true
	}
	if _, err := rr.Close(); err != nil {
		return nil, errors.Wrap(err, "read which tables others inherit from")
	}
	return out, nil
}

// NotCopiedSQL counts the rows of a table that reach no routing value: a
// NULL one, or a NULL or dangling foreign key on the way. No tenant's
// SelectSQL reads them.
func NotCopiedSQL(t fsm.ImportTable, inherited bool) string {
	cond := routedWhere(t, func(routing, _ string) string { return routing + " IS NOT NULL" })
	return fmt.Sprintf("SELECT count(*) FROM %s WHERE NOT coalesce((%s), false)", from(t.Name, inherited), cond)
}

// routedWhere is the condition on a table's rows that their routing value
// (of their own, or at the end of their foreign-key chain) meets test,
// which is given the routing column and its type (when the plan has it).
func routedWhere(t fsm.ImportTable, test func(routing, typ string) string) string {
	if t.Routing != "" {
		return test(t.Routing, t.RoutingType)
	}
	// Innermost first: the last hop's table filtered by its routing column.
	cond := ""
	for i := len(t.Via) - 1; i >= 0; i-- {
		h := t.Via[i]
		where := test(h.RefRouting, h.RefRoutingType)
		if i < len(t.Via)-1 {
			where = cond
		}
		cond = fmt.Sprintf("(%s) IN (SELECT %s FROM %s WHERE %s)",
			strings.Join(h.Columns, ", "), strings.Join(h.RefColumns, ", "), h.RefTable, where)
	}
	return cond
}

// indexableRouting are the routing column types compared as themselves
// too: built-in, with a btree equality, and equal exactly when their text
// is (the text test stays, so the rows matched are the same).
var indexableRouting = map[string]bool{
	"smallint": true, "integer": true, "bigint": true, "text": true, "character varying": true, "uuid": true,
}

// literal renders s as an escape-string constant, whatever the server's
// standard_conforming_strings.
func literal(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	s = strings.ReplaceAll(s, `'`, `''`)
	return "E'" + s + "'"
}

var notName = regexp.MustCompile(`[^a-z0-9_]+`)

// TenantNames maps routing values to tenant names: lower case, other
// characters turned into _, a t_ prefix when the value does not start with a
// letter, at most 40 characters; clashes, among them or with a name for
// which taken reports true (a tenant of another blueprint), get _2, _3…
func TenantNames(values []string, taken func(name string) bool) []fsm.ImportTenantSpec {
	sorted := append([]string(nil), values...)
	sort.Strings(sorted)
	used := map[string]bool{}
	out := make([]fsm.ImportTenantSpec, 0, len(sorted))
	for _, v := range sorted {
		base := notName.ReplaceAllString(strings.ToLower(v), "_")
		for strings.Contains(base, "__") {
			base = strings.ReplaceAll(base, "__", "_")
		}
		base = strings.Trim(base, "_")
		if base == "" || base[0] < 'a' || base[0] > 'z' {
			base = "t_" + base
		}
		base = strings.TrimRight(truncate(base, 40), "_")
		name := base
		for i := 2; used[name] || taken(name); i++ {
			suffix := fmt.Sprintf("_%d", i)
			name = strings.TrimRight(truncate(base, 40-len(suffix)), "_") + suffix
		}
		used[name] = true
		out = append(out, fsm.ImportTenantSpec{Tenant: name, Value: v})
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Lookups names the plan's lookup tables, which each tenant gets whole.
func (p ImportPlan) Lookups() []string {
	var out []string
	for _, t := range p.Tables {
		if t.Whole {
			out = append(out, t.Name)
		}
	}
	return out
}
