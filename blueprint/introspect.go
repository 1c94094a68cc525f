package blueprint

import (
	"context"
	"fmt"
	"strings"

	"github.com/cockroachdb/errors"
	"github.com/jackc/pgx/v5"
)

// Introspect reads the DDL of schema public from the catalogs, for when
// pg_dump cannot be used. It covers enum types, sequences, tables (columns,
// defaults, identity and generated columns), constraints, indexes, sequence
// ownership, views and comments on tables and columns; not functions,
// triggers, domains, composite types or partitioning (pg_dump covers those).
// Names come out schema-qualified, as pg_dump writes them.
func Introspect(ctx context.Context, sourceURL string) ([]string, error) {
	if _, err := CheckSourceURL(sourceURL); err != nil {
		return nil, err
	}
	cfg, err := pgx.ParseConfig(sourceURL)
	if err != nil {
		return nil, errors.Mark(errors.Wrap(err, "parse from_url"), ErrBadSource)
	}
	OwnCredentials(&cfg.Config, sourceURL)
	cfg.RuntimeParams["application_name"] = "tdb-schema-import"
	// An empty search_path makes the catalog functions qualify every name.
	cfg.RuntimeParams["search_path"] = ""
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, errors.Mark(errors.Wrap(err, "connect to from_url"), ErrBadSource)
	}
	defer conn.Close(context.Background())
	in := &introspection{ctx: ctx, conn: conn}
	for _, step := range []func() error{in.enums, in.sequences, in.tables, in.constraints, in.indexes, in.foreignKeys, in.ownedBy, in.views, in.comments} {
		if err := step(); err != nil {
			return nil, errors.Wrap(err, "read the source's catalogs")
		}
	}
	if len(in.out) == 0 {
		return nil, errors.Mark(errors.New("the source database has no tables, views or other objects in schema public"), ErrBadSource)
	}
	return in.out, nil
}

type introspection struct {
	ctx  context.Context
	conn *pgx.Conn
	out  []string
}

// each runs a catalog query and appends one statement per row.
func (in *introspection) each(sql string, stmt func(rows pgx.Rows) (string, error)) error {
	rows, err := in.conn.Query(in.ctx, sql)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		s, err := stmt(rows)
		if err != nil {
			return err
		}
		if s != "" {
			in.out = append(in.out, s)
		}
	}
	return rows.Err()
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func (in *introspection) enums() error {
	return in.each(`SELECT t.oid::regtype::text, array_agg(e.enumlabel ORDER BY e.enumsortorder)
		FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid
		WHERE t.typnamespace = 'public'::regnamespace GROUP BY t.oid ORDER BY t.oid`,
		func(rows pgx.Rows) (string, error) {
			var name string
			var labels []string
			if err := rows.Scan(&name, &labels); err != nil {
				return "", err
			}
			q := make([]string, len(labels))
			for i, l := range labels {
				q[i] = quoteLiteral(l)
			}
			return fmt.Sprintf("CREATE TYPE %s AS ENUM (%s)", name, strings.Join(q, ", ")), nil
		})
}

func (in *introspection) sequences() error {
	return in.each(`SELECT s.seqrelid::regclass::text, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement,
			s.seqmin, s.seqmax, s.seqcache, s.seqcycle
		FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
		WHERE c.relnamespace = 'public'::regnamespace
		  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = s.seqrelid AND d.deptype = 'i')
		ORDER BY s.seqrelid`,
		func(rows pgx.Rows) (string, error) {
			var name, typ string
			var start, inc, minv, maxv, cache int64
			var cycle bool
			if err := rows.Scan(&name, &typ, &start, &inc, &minv, &maxv, &cache, &cycle); err != nil {
				return "", err
			}
			c := "NO CYCLE"
			if cycle {
				c = "CYCLE"
			}
			return fmt.Sprintf("CREATE SEQUENCE %s AS %s START WITH %d INCREMENT BY %d MINVALUE %d MAXVALUE %d CACHE %d %s",
				name, typ, start, inc, minv, maxv, cache, c), nil
		})
}

func (in *introspection) tables() error {
	type table struct {
		oid  uint32
		name string
	}
	var tables []table
	rows, err := in.conn.Query(in.ctx, `SELECT c.oid, c.oid::regclass::text FROM pg_class c
		WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND NOT c.relispartition ORDER BY c.oid`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var t table
		if err := rows.Scan(&t.oid, &t.name); err != nil {
			rows.Close()
			return err
		}
		tables = append(tables, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, t := range tables {
		var cols []string
		err := in.each0(`SELECT quote_ident(a.attname), format_type(a.atttypid, a.atttypmod), a.attnotnull,
				coalesce(pg_get_expr(d.adbin, d.adrelid), ''), a.attidentity::text, a.attgenerated::text
			FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
			WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, []any{t.oid},
			func(rows pgx.Rows) error {
				var name, typ, def, identity, generated string
				var notNull bool
				if err := rows.Scan(&name, &typ, &notNull, &def, &identity, &generated); err != nil {
					return err
				}
				col := name + " " + typ
				switch {
				case generated == "s":
					col += " GENERATED ALWAYS AS (" + def + ") STORED"
				case identity == "a":
					col += " GENERATED ALWAYS AS IDENTITY"
				case identity == "d":
					col += " GENERATED BY DEFAULT AS IDENTITY"
				case def != "":
					col += " DEFAULT " + def
				}
				if notNull {
					col += " NOT NULL"
				}
				cols = append(cols, "    "+col)
				return nil
			})
		if err != nil {
			return err
		}
		in.out = append(in.out, fmt.Sprintf("CREATE TABLE %s (\n%s\n)", t.name, strings.Join(cols, ",\n")))
	}
	return nil
}

// each0 is each with arguments and no statement per row.
func (in *introspection) each0(sql string, args []any, fn func(rows pgx.Rows) error) error {
	rows, err := in.conn.Query(in.ctx, sql, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// constraints: primary keys first, then unique, check and exclusion
// constraints.
func (in *introspection) constraints() error {
	return in.constraintsOf("c.contype IN ('p', 'u', 'c', 'x')")
}

// foreignKeys come after the indexes: a key may reference the columns of a
// unique index that backs no constraint, as pg_dump orders them.
func (in *introspection) foreignKeys() error {
	return in.constraintsOf("c.contype = 'f'")
}

// constraintsOf adds the constraints that where selects, primary keys first.
func (in *introspection) constraintsOf(where string) error {
	return in.each(`SELECT c.conrelid::regclass::text, quote_ident(c.conname), pg_get_constraintdef(c.oid)
		FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid
		WHERE r.relnamespace = 'public'::regnamespace AND r.relkind = 'r' AND `+where+`
		ORDER BY c.contype <> 'p', c.oid`,
		func(rows pgx.Rows) (string, error) {
			var table, name, def string
			if err := rows.Scan(&table, &name, &def); err != nil {
				return "", err
			}
			return fmt.Sprintf("ALTER TABLE ONLY %s ADD CONSTRAINT %s %s", table, name, def), nil
		})
}

// indexes that back no constraint (those come with their constraint).
func (in *introspection) indexes() error {
	return in.each(`SELECT pg_get_indexdef(i.indexrelid)
		FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
		WHERE c.relnamespace = 'public'::regnamespace AND t.relkind = 'r'
		  AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.contype IN ('p', 'u', 'x'))
		ORDER BY i.indexrelid`,
		func(rows pgx.Rows) (string, error) {
			var def string
			return def, rows.Scan(&def)
		})
}

func (in *introspection) ownedBy() error {
	return in.each(`SELECT d.objid::regclass::text, d.refobjid::regclass::text, quote_ident(a.attname)
		FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
		JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
		WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'a'
		  AND s.relnamespace = 'public'::regnamespace
		ORDER BY d.objid`,
		func(rows pgx.Rows) (string, error) {
			var seq, table, col string
			if err := rows.Scan(&seq, &table, &col); err != nil {
				return "", err
			}
			return fmt.Sprintf("ALTER SEQUENCE %s OWNED BY %s.%s", seq, table, col), nil
		})
}

func (in *introspection) views() error {
	return in.each(`SELECT c.oid::regclass::text, pg_get_viewdef(c.oid)
		FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'v' ORDER BY c.oid`,
		func(rows pgx.Rows) (string, error) {
			var name, def string
			if err := rows.Scan(&name, &def); err != nil {
				return "", err
			}
			return fmt.Sprintf("CREATE VIEW %s AS\n%s", name, strings.TrimSuffix(strings.TrimSpace(def), ";")), nil
		})
}

func (in *introspection) comments() error {
	return in.each(`SELECT c.oid::regclass::text, coalesce(quote_ident(a.attname), ''), d.description, c.relkind::text
		FROM pg_description d JOIN pg_class c ON c.oid = d.objoid AND d.classoid = 'pg_class'::regclass
		LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.objsubid AND d.objsubid > 0
		WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'v')
		ORDER BY c.oid, d.objsubid`,
		func(rows pgx.Rows) (string, error) {
			var rel, col, text, kind string
			if err := rows.Scan(&rel, &col, &text, &kind); err != nil {
				return "", err
			}
			if col != "" {
				return fmt.Sprintf("COMMENT ON COLUMN %s.%s IS %s", rel, col, quoteLiteral(text)), nil
			}
			what := "TABLE"
			if kind == "v" {
				what = "VIEW"
			}
			return fmt.Sprintf("COMMENT ON %s %s IS %s", what, rel, quoteLiteral(text)), nil
		})
}
