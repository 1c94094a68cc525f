package actors

import (
	"context"
	"io"
	"strings"

	"github.com/cockroachdb/errors"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"tdb/actors/backend"
	"tdb/blueprint"
	"tdb/fsm"
)

// ImportJob is the copy of one tenant's rows, planned from the state.
type ImportJob struct {
	Import     string
	Tenant     string
	Value      string // routing value
	Wait       bool   // the tenant's database is still being provisioned
	Fail       string // the tenant cannot be worked on; recorded as its error
	SourceURL  string
	BackendURL string
	Database   string
	Tables     []fsm.ImportTable
	// Mark records the copy in the database's marker, and skips a copy
	// the marker says committed. Builds before log version 3 read a marker
	// with a step count and an import as no steps done, so the field is
	// written only once every node runs a build that reads it.
	Mark bool
}

// PlanImportTenant decides what to do for one tenant of an import.
func PlanImportTenant(s *fsm.State, im *fsm.Import, it *fsm.ImportTenant) ImportJob {
	job := ImportJob{Import: im.ID, Tenant: it.Tenant, Value: it.Value, SourceURL: im.SourceURL, Tables: im.Tables,
		Mark: s.ActiveLogVersion() >= 3}
	var db *fsm.Database
	if p := s.Projects[im.ProjectID]; p != nil {
		if t := p.Tenants[it.Tenant]; t != nil && t.Blueprint == im.Workspace {
			db = s.Databases[t.Database]
		}
	}
	switch {
	case db == nil || db.Status == fsm.StatusDeleting:
		job.Fail = "tenant " + it.Tenant + " was deleted"
	case db.Status == fsm.StatusProvisioning:
		job.Wait = true
	case db.Status == fsm.StatusFailed:
		job.Fail = "tenant database failed to provision: " + db.Error
	case s.Backends[db.Backend] == nil:
		job.Fail = "backend " + db.Backend + " is not registered"
	default:
		job.BackendURL, job.Database = s.Backends[db.Backend].URL, db.Name
	}
	return job
}

// copyTenant copies one tenant's rows from the source into its database, as
// the database's owner, in one transaction that first empties the tables: a
// rerun after a crash never duplicates rows. The transaction records the
// import in the database's marker, so a rerun of the same import after a
// commit whose result was never recorded returns the rows that commit made
// and leaves the tables alone: the tenant's applications may have written
// there since. The marker is read and written under the deployment lock,
// which keeps a deployment to the same database from overwriting it. The
// source is read in one snapshot that no concurrent transaction can
// invalidate (SERIALIZABLE READ ONLY DEFERRABLE, as pg_dump
// --serializable-deferrable: it may wait for the source's serializable
// writers to finish, never fails). It returns the rows copied.
func copyTenant(ctx context.Context, cfg ApplyConfig, job ImportJob) (int64, error) {
	cfg.defaults()
	ctx, cancel := context.WithTimeout(ctx, cfg.TenantTimeout)
	defer cancel()
	var target *pgx.Conn
	err := retry(ctx, cfg, notFenced, func() error {
		var err error
		target, err = backend.ConnectAsOwner(ctx, job.BackendURL, job.Database)
		return err
	})
	if err != nil {
		return 0, err
	}
	defer target.Close(context.Background())
	scfg, err := pgconn.ParseConfig(job.SourceURL)
	if err != nil {
		return 0, errors.Wrap(err, "parse the source URL")
	}
	blueprint.OwnCredentials(scfg, job.SourceURL)
	scfg.RuntimeParams["application_name"] = "tdb-import"
	scfg.RuntimeParams["search_path"] = ""
	// COPY TO writes values in the session's styles, and the tenant reads
	// them in its own: the source's (a server's 'SQL, DMY') must not be
	// what both sides assume.
	for k, v := range blueprint.CopyStyles {
		scfg.RuntimeParams[k] = v
	}
	src, err := pgconn.ConnectConfig(ctx, scfg)
	if err != nil {
		return 0, errors.Wrap(err, "connect to the source")
	}
	defer src.Close(context.Background())
	if _, err := target.Exec(ctx, "SELECT pg_advisory_lock($1)", deployLockKey); err != nil {
		return 0, errors.Wrap(err, "take the deployment lock")
	}
	mark, err := readMarker(ctx, target)
	if err != nil {
		return 0, err
	}
	if job.Mark && mark.imp == job.Import {
		return mark.rows, nil
	}
	if err := src.Exec(ctx, "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY DEFERRABLE").Close(); err != nil {
		return 0, errors.Wrap(err, "read the source")
	}

	var total int64
	err = pgx.BeginFunc(ctx, target, func(tx pgx.Tx) error {
		names := make([]string, len(job.Tables))
		for i, t := range job.Tables {
			names[i] = t.Name
		}
		if _, err := tx.Exec(ctx, "TRUNCATE "+strings.Join(names, ", ")+" CASCADE"); err != nil {
			return errors.Wrap(err, "empty the tenant's tables")
		}
		// Tables whose foreign keys form a cycle are copied in any order:
		// Analyse let them through only when those keys are deferrable.
		if _, err := tx.Exec(ctx, "SET CONSTRAINTS ALL DEFERRED"); err != nil {
			return errors.Wrap(err, "defer the tenant's constraints")
		}
		// The rows are copies of rows the schema's triggers already acted
		// on: fired again, a trigger that writes a history table would
		// copy its rows twice, and one that stamps a column would change
		// them (pg_restore --disable-triggers).
		restore, err := disableTriggers(ctx, tx, names)
		if err != nil {
			return err
		}
		readd, err := setAsideNotValid(ctx, tx, names)
		if err != nil {
			return err
		}
		inherited, err := blueprint.InheritedTables(ctx, src)
		if err != nil {
			return err
		}
		for _, t := range job.Tables {
			n, err := copyTable(ctx, src, tx.Conn().PgConn(), t, job.Value, inherited[t.Name])
			if err != nil {
				return errors.Wrapf(err, "copy %s", t.Name)
			}
			total += n
		}
		if err := restore(); err != nil {
			return err
		}
		if err := readd(); err != nil {
			return err
		}
		if err := resetSequences(ctx, tx); err != nil {
			return err
		}
		if !job.Mark {
			return nil
		}
		mark.imp, mark.rows = job.Import, total
		_, err = tx.Exec(ctx, mark.comment(job.Database))
		return errors.Wrap(err, "record the import in the database")
	})
	return total, err
}

// copyTable streams one table's rows for a routing value from the source
// into the target with COPY, without holding them in memory.
func copyTable(ctx context.Context, src, dst *pgconn.PgConn, t fsm.ImportTable, value string, inherited bool) (int64, error) {
	pr, pw := io.Pipe()
	read := make(chan error, 1)
	go func() {
		_, err := src.CopyTo(ctx, pw, "COPY ("+blueprint.SelectSQL(t, value, inherited)+") TO STDOUT")
		pw.CloseWithError(err)
		read <- err
	}()
	tag, err := dst.CopyFrom(ctx, pr, "COPY "+t.Name+" ("+strings.Join(t.Columns, ", ")+") FROM STDIN")
	pr.CloseWithError(errors.New("copy ended"))
	if rerr := <-read; rerr != nil && err == nil {
		err = rerr
	}
	return tag.RowsAffected(), err
}

// ofTables is the condition that the table column rel names is one of the
// tables of the query's $1 (a text[] of names) or a partition of one, at
// any depth.
func ofTables(rel string) string {
	return "(" + rel + " = ANY ($1::text[]::regclass[]) OR " + rel +
		" IN (SELECT p.relid FROM unnest($1::text[]::regclass[]) r(oid), pg_catalog.pg_partition_tree(r.oid) p))"
}

// disableTriggers disables, in the transaction tx, the user triggers of
// tables that are enabled, and returns what enables them again as they
// were (ENABLE, ALWAYS or REPLICA) before tx commits. A partitioned
// table's rows land in its partitions, whose triggers fire too: a
// partition's own, and its clones of the parent's, which may be set apart
// from the parent's (ALTER TABLE ONLY … DISABLE TRIGGER). Each trigger is
// set on its own table only, so each is left as it was.
func disableTriggers(ctx context.Context, tx pgx.Tx, tables []string) (restore func() error, err error) {
	rows, err := tx.Query(ctx, `SELECT t.tgrelid::regclass::text, quote_ident(t.tgname), t.tgenabled
		FROM pg_catalog.pg_trigger t
		WHERE NOT t.tgisinternal AND t.tgenabled <> 'D' AND `+ofTables("t.tgrelid")+`
		ORDER BY 1, 2`, tables)
	if err != nil {
		return nil, errors.Wrap(err, "list the tenant's triggers")
	}
	type trigger struct {
		table, name string
		enabled     byte
	}
	triggers, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (trigger, error) {
		var tg trigger
		var enabled string
		err := r.Scan(&tg.table, &tg.name, &enabled)
		if enabled != "" {
			tg.enabled = enabled[0]
		}
		return tg, err
	})
	if err != nil {
		return nil, errors.Wrap(err, "list the tenant's triggers")
	}
	for _, tg := range triggers {
		if _, err := tx.Exec(ctx, "ALTER TABLE ONLY "+tg.table+" DISABLE TRIGGER "+tg.name); err != nil {
			return nil, errors.Wrapf(err, "disable trigger %s on %s for the copy", tg.name, tg.table)
		}
	}
	return func() error {
		for _, tg := range triggers {
			how := "ENABLE TRIGGER "
			switch tg.enabled {
			case 'A':
				how = "ENABLE ALWAYS TRIGGER "
			case 'R':
				how = "ENABLE REPLICA TRIGGER "
			}
			if _, err := tx.Exec(ctx, "ALTER TABLE ONLY "+tg.table+" "+how+tg.name); err != nil {
				return errors.Wrapf(err, "enable trigger %s on %s after the copy", tg.name, tg.table)
			}
		}
		return nil
	}, nil
}

// setAsideNotValid drops, in the transaction tx, the checks and foreign
// keys of tables that are NOT VALID, and returns what adds them again as
// they were, NOT VALID, before tx commits. Such a constraint of the source
// holds old rows that break it; it still checks every new row, so the
// copy's rows would break it here (pg_dump adds it after the data). One
// that a table inherits comes back with its parent's; one that a table
// both has of its own and inherits is left in place.
func setAsideNotValid(ctx context.Context, tx pgx.Tx, tables []string) (readd func() error, err error) {
	rows, err := tx.Query(ctx, `SELECT c.conrelid::regclass::text, quote_ident(c.conname), pg_catalog.pg_get_constraintdef(c.oid)
		FROM pg_catalog.pg_constraint c
		WHERE c.contype IN ('c', 'f') AND NOT c.convalidated AND c.conislocal AND c.coninhcount = 0
		  AND `+ofTables("c.conrelid")+`
		ORDER BY 1, 2`, tables)
	if err != nil {
		return nil, errors.Wrap(err, "list the tenant's not valid constraints")
	}
	type constraint struct{ table, name, def string }
	cons, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (constraint, error) {
		var c constraint
		return c, r.Scan(&c.table, &c.name, &c.def)
	})
	if err != nil {
		return nil, errors.Wrap(err, "list the tenant's not valid constraints")
	}
	for _, c := range cons {
		if _, err := tx.Exec(ctx, "ALTER TABLE "+c.table+" DROP CONSTRAINT "+c.name); err != nil {
			return nil, errors.Wrapf(err, "set constraint %s on %s aside for the copy", c.name, c.table)
		}
	}
	return func() error {
		if len(cons) == 0 {
			return nil
		}
		// A table with checks of deferred keys still due cannot be
		// altered (55006): they are made now, as the commit would.
		if _, err := tx.Exec(ctx, "SET CONSTRAINTS ALL IMMEDIATE"); err != nil {
			return errors.Wrap(err, "check the copied rows")
		}
		for _, c := range cons {
			if _, err := tx.Exec(ctx, "ALTER TABLE "+c.table+" ADD CONSTRAINT "+c.name+" "+c.def); err != nil {
				return errors.Wrapf(err, "add constraint %s on %s again after the copy", c.name, c.table)
			}
		}
		return nil
	}, nil
}

// resetSequences moves every sequence a column owns (serial, identity) or
// a column's default draws from (nextval('ids'), as ORMs share one) past
// the largest value copied into that column (the smallest, for a sequence
// that counts down), where the sequence's bounds allow it and it is not
// past it already. An integer column may be of a domain over an integer
// type.
func resetSequences(ctx context.Context, tx pgx.Tx) error {
	rows, err := tx.Query(ctx, `WITH RECURSIVE ints(oid) AS (
			SELECT unnest(ARRAY['int2'::regtype, 'int4'::regtype, 'int8'::regtype])::oid
			UNION SELECT y.oid FROM pg_type y JOIN ints ON y.typtype = 'd' AND y.typbasetype = ints.oid)
		SELECT DISTINCT s.oid::regclass::text, t.oid::regclass::text, quote_ident(a.attname)
		FROM pg_depend d
		LEFT JOIN pg_attrdef ad ON d.classid = 'pg_attrdef'::regclass AND ad.oid = d.objid
		JOIN pg_class s ON s.relkind = 'S' AND s.oid = CASE WHEN ad.oid IS NULL THEN d.objid ELSE d.refobjid END
		JOIN pg_class t ON t.oid = CASE WHEN ad.oid IS NULL THEN d.refobjid ELSE ad.adrelid END
		JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = CASE WHEN ad.oid IS NULL THEN d.refobjsubid ELSE ad.adnum END
		WHERE ((d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i'))
		    OR (ad.oid IS NOT NULL AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'n'))
		  AND t.relnamespace = 'public'::regnamespace AND t.relkind IN ('r', 'p')
		  AND a.atttypid IN (SELECT oid FROM ints)
		ORDER BY 1, 2, 3`)
	if err != nil {
		return errors.Wrap(err, "list sequences")
	}
	type seq struct{ seq, table, col string }
	seqs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (seq, error) {
		var s seq
		return s, r.Scan(&s.seq, &s.table, &s.col)
	})
	if err != nil {
		return errors.Wrap(err, "list sequences")
	}
	for _, s := range seqs {
		if _, err := tx.Exec(ctx, `SELECT setval($1::regclass, y.m)
			FROM (SELECT max(`+s.col+`)::bigint AS hi, min(`+s.col+`)::bigint AS lo FROM `+s.table+`) x,
			  pg_catalog.pg_sequence q, `+s.seq+` cur,
			  LATERAL (SELECT CASE WHEN q.seqincrement > 0 THEN x.hi ELSE x.lo END AS m) y
			WHERE q.seqrelid = $1::regclass AND y.m BETWEEN q.seqmin AND q.seqmax
			  AND CASE WHEN q.seqincrement > 0
			    THEN y.m > CASE WHEN cur.is_called THEN cur.last_value ELSE cur.last_value - 1 END
			    ELSE y.m < CASE WHEN cur.is_called THEN cur.last_value ELSE cur.last_value + 1 END END`, s.seq); err != nil {
			return errors.Wrapf(err, "reset sequence %s", s.seq)
		}
	}
	return nil
}
