package actors

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/errors"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"tdb/actors/backend"
	"tdb/fsm"
	"tdb/wire/classify"
)

// ApplyConfig holds the knobs of applying blueprint versions to one tenant.
type ApplyConfig struct {
	// LockTimeout bounds how long one statement waits for a lock (a busy
	// tenant) before its step is rolled back and retried.
	LockTimeout time.Duration
	// Attempts is how many times a step is tried when it hits a lock
	// timeout, a deadlock or a serialization failure.
	Attempts int
	// Backoff is the pause before the second try; it doubles after each.
	Backoff time.Duration
	// TenantTimeout bounds the whole work on one tenant.
	TenantTimeout time.Duration
}

func (c *ApplyConfig) defaults() {
	if c.LockTimeout <= 0 {
		c.LockTimeout = 5 * time.Second
	}
	if c.Attempts <= 0 {
		c.Attempts = 5
	}
	if c.Backoff <= 0 {
		c.Backoff = 500 * time.Millisecond
	}
	if c.TenantTimeout <= 0 {
		c.TenantTimeout = 30 * time.Minute
	}
}

// deployLockKey is the advisory lock a deployer holds in a tenant database
// while it applies versions there, so that two deployers (an old leader that
// has not noticed yet, and the new one) never interleave.
const deployLockKey int64 = 0x7464625f64706c79 // "tdb_dply"

// markerPrefix starts the comment on a tenant database that records the
// last blueprint version applied there. It is written in the same
// transaction as the version, so it is exact even when the deployer dies
// between that commit and recording the result in the FSM.
//
// A version whose statements cannot all run in one transaction (CREATE
// INDEX CONCURRENTLY…) commits in steps; after each step but the last the
// marker also says how many of the next version's statements are done
// (markerDone: "tdb:schema_version=3;done=2"), so that a retry goes on
// after them instead of running them again (a DROP INDEX CONCURRENTLY
// would fail, an unnamed index would be made twice).
//
// An import's copy records itself last (markerImport:
// "tdb:schema_version=3;done=0;import=imp_1f2e3d/42", the import and the
// rows it copied), in the copy's transaction, so that a copy whose result
// the leader never recorded is not made again over rows written since.
// The done field then comes first, even at 0: builds that know only the
// version and done fields read the version right, though not the steps
// done (done=2;import=… is no number to them), so a copy records itself
// only once the cluster runs log version 3 (ImportJob.Mark).
const markerPrefix = "tdb:schema_version="

// markerDone separates the version from the statements done of the next.
const markerDone = ";done="

// markerImport separates the import copied last from the fields before.
const markerImport = ";import="

// marker is what a tenant database's comment records.
type marker struct {
	version int    // the last blueprint version applied
	done    int    // statements of the next version done
	imp     string // the import whose copy committed last
	rows    int64  // the rows that copy made
}

// String is the comment that records m.
func (m marker) String() string {
	s := markerPrefix + strconv.Itoa(m.version)
	if m.done > 0 || m.imp != "" {
		s += markerDone + strconv.Itoa(m.done)
	}
	if m.imp != "" {
		s += markerImport + m.imp + "/" + strconv.FormatInt(m.rows, 10)
	}
	return s
}

// comment is the statement that records m on database db.
func (m marker) comment(db string) string {
	return "COMMENT ON DATABASE " + pgx.Identifier{db}.Sanitize() + " IS " + quoteLiteral(m.String())
}

// quoteLiteral quotes s as an SQL string literal (standard_conforming_strings).
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// applyTenant applies job.Versions in order to the tenant's database, logged
// in as its owner role. Each version runs in its own transaction, except
// statements that cannot run in one (CREATE INDEX CONCURRENTLY…), which run
// alone. A version already recorded in the database's marker is skipped, so
// retrying a tenant whose result was never recorded is safe. It returns the
// version the database has reached, and the first error.
func applyTenant(ctx context.Context, cfg ApplyConfig, job TenantJob) (int, error) {
	cfg.defaults()
	reached := job.From
	if len(job.Versions) == 0 {
		return reached, nil
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.TenantTimeout)
	defer cancel()
	var conn *pgx.Conn
	err := retry(ctx, cfg, notFenced, func() error {
		var err error
		conn, err = backend.ConnectAsOwner(ctx, job.BackendURL, job.Database)
		return err
	})
	if err != nil {
		return reached, err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, fmt.Sprintf("SET lock_timeout = %d", cfg.LockTimeout.Milliseconds())); err != nil {
		return reached, errors.Wrap(err, "set lock_timeout")
	}
	// Function bodies were checked where the version was written, if that
	// session checked them; a schema loaded from pg_dump's output (which
	// turns the check off) defines functions before the tables they read.
	if _, err := conn.Exec(ctx, "SET check_function_bodies = off"); err != nil {
		return reached, errors.Wrap(err, "set check_function_bodies")
	}
	err = retry(ctx, cfg, retryable, func() error {
		_, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", deployLockKey)
		return err
	})
	if err != nil {
		return reached, errors.Wrap(err, "take the deployment lock")
	}
	mark, err := readMarker(ctx, conn)
	if err != nil {
		return reached, err
	}
	if mark.version < reached {
		mark.done = 0 // the statements done were of a version now behind
	}
	mark.version = max(reached, mark.version)
	reached = mark.version
	for _, v := range job.Versions {
		if v.Version <= reached {
			continue
		}
		skip := 0
		if v.Version == mark.version+1 {
			skip = min(mark.done, len(v.Statements))
		}
		if err := useSettings(ctx, conn, v.Settings); err != nil {
			return reached, errors.Wrapf(err, "blueprint version %d", v.Version)
		}
		if err := applyVersion(ctx, conn, cfg, job.Database, mark, v.Version, v.Statements, skip); err != nil {
			if ctx.Err() == context.DeadlineExceeded {
				err = errors.Wrapf(err, "timed out after %s", cfg.TenantTimeout)
			}
			return reached, errors.Wrapf(err, "blueprint version %d", v.Version)
		}
		reached = v.Version
		mark.version, mark.done = v.Version, 0
	}
	return reached, nil
}

// useSettings gives the deployment's session the settings a version's DDL
// ran with in the workspace, so that its constants mean the same on every
// tenant (a partition bound of a timestamptz, a date default); a version
// without them runs with the backend's defaults, as it always has.
func useSettings(ctx context.Context, conn *pgx.Conn, ss *fsm.SessionSettings) error {
	var err error
	if ss == nil {
		_, err = conn.Exec(ctx, `RESET "TimeZone"; RESET "DateStyle"; RESET "IntervalStyle"`, pgx.QueryExecModeSimpleProtocol)
	} else {
		_, err = conn.Exec(ctx, "SELECT set_config('TimeZone', $1, false), set_config('DateStyle', $2, false), set_config('IntervalStyle', $3, false)",
			ss.TimeZone, ss.DateStyle, ss.IntervalStyle)
	}
	return errors.Wrap(err, "set the version's session settings")
}

// deployStep is a run of statements that execute together: in one transaction, or
// (noTxn) a single statement outside any.
type deployStep struct {
	stmts []string
	noTxn bool
}

// splitSteps groups a version's statements into steps. Only statements
// that commit at once (commitsAtOnce) run outside a transaction: ALTER TYPE
// … ADD VALUE, which PostgreSQL refused in transaction blocks before 12,
// stays in the version's transaction, as it ran in the workspace.
func splitSteps(stmts []string) []deployStep {
	var steps []deployStep
	for _, s := range stmts {
		noTxn := false
		for _, st := range classify.Classify(s).Statements {
			noTxn = noTxn || commitsAtOnce(&st)
		}
		if !noTxn && len(steps) > 0 && !steps[len(steps)-1].noTxn {
			steps[len(steps)-1].stmts = append(steps[len(steps)-1].stmts, s)
			continue
		}
		steps = append(steps, deployStep{stmts: []string{s}, noTxn: noTxn})
	}
	return steps
}

// inStatement says which statement of a version failed: its number in the
// version, from 1, and the start of its text.
func inStatement(err error, n int, stmt string) error {
	return errors.Wrapf(err, "statement %d (%s)", n, statementStart(stmt))
}

// statementStart is the first 80 characters of a statement, its runs of
// whitespace made one space.
func statementStart(stmt string) string {
	s := strings.Join(strings.Fields(stmt), " ")
	if r := []rune(s); len(r) > 80 {
		s = string(r[:80]) + "…"
	}
	return s
}

// applyVersion runs one version's steps, after the first skip statements
// (done by an earlier try), and records the version in the marker with the
// last transaction; after each earlier step, how far it got. prev is the
// marker the database had: its import is kept.
func applyVersion(ctx context.Context, conn *pgx.Conn, cfg ApplyConfig, db string, prev marker, version int, stmts []string, skip int) error {
	mark := marker{version: version, imp: prev.imp, rows: prev.rows}.comment(db)
	steps := splitSteps(stmts[skip:])
	if len(steps) == 0 || steps[len(steps)-1].noTxn {
		steps = append(steps, deployStep{}) // a transaction for the marker alone
	}
	done := skip
	for i, st := range steps {
		done += len(st.stmts)
		progress := marker{version: version - 1, done: done, imp: prev.imp, rows: prev.rows}.comment(db)
		if st.noTxn {
			if err := execNoTxn(ctx, conn, cfg, st.stmts[0]); err != nil {
				return inStatement(err, done, st.stmts[0])
			}
			if _, err := conn.Exec(ctx, progress); err != nil {
				return errors.Wrap(err, "record the statements done in the database")
			}
			continue
		}
		last := i == len(steps)-1
		err := retry(ctx, cfg, retryable, func() error {
			return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				for j, s := range st.stmts {
					if _, err := tx.Exec(ctx, s, pgx.QueryExecModeSimpleProtocol); err != nil {
						return inStatement(err, done-len(st.stmts)+j+1, s)
					}
				}
				if last {
					_, err := tx.Exec(ctx, mark)
					return errors.Wrap(err, "record the version in the database")
				}
				_, err := tx.Exec(ctx, progress)
				return errors.Wrap(err, "record the statements done in the database")
			})
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// execNoTxn runs a statement that cannot run in a transaction. It waits for
// locks without a timeout: CREATE INDEX CONCURRENTLY waits for older
// transactions by design without blocking anyone, and a timeout would only
// leave an invalid index to clean up (afterEarlierTry). TenantTimeout still
// bounds it.
func execNoTxn(ctx context.Context, conn *pgx.Conn, cfg ApplyConfig, stmt string) error {
	if _, err := conn.Exec(ctx, "SET lock_timeout = 0"); err != nil {
		return errors.Wrap(err, "set lock_timeout")
	}
	_, err := conn.Exec(ctx, stmt, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		err = afterEarlierTry(ctx, conn, stmt, err)
	} else {
		err = rebuildIfInvalid(ctx, conn, stmt)
	}
	if err != nil {
		return err
	}
	_, err = conn.Exec(ctx, fmt.Sprintf("SET lock_timeout = %d", cfg.LockTimeout.Milliseconds()))
	return errors.Wrap(err, "set lock_timeout")
}

// afterEarlierTry handles a CREATE INDEX CONCURRENTLY that failed because
// its index exists: an earlier try of this version (on a node that stopped
// before recording it) made it. A valid index is the work done; an invalid
// one, which a try that was cut off leaves behind, is dropped and the
// statement run again. Likewise a DROP INDEX CONCURRENTLY that failed
// because its index does not exist: an earlier try dropped it, and no
// index of that name is what the version wants. Any other failure is
// returned as it is.
func afterEarlierTry(ctx context.Context, conn *pgx.Conn, stmt string, err error) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return err
	}
	if pe.Code == "42704" && droppingIndexConcurrently(stmt) {
		return nil
	}
	if pe.Code != "42P07" {
		return err
	}
	valid, qualified, found, qerr := concurrentIndex(ctx, conn, stmt)
	switch {
	case qerr != nil:
		return qerr
	case !found:
		return err // no index of that name on that table: the statement's own error stands
	case valid:
		return nil
	}
	return rebuild(ctx, conn, stmt, qualified)
}

// droppingIndexConcurrently reports whether stmt is a DROP INDEX
// CONCURRENTLY, which PostgreSQL allows for one index only.
func droppingIndexConcurrently(stmt string) bool {
	r := classify.Classify(stmt)
	return len(r.Statements) == 1 && r.Statements[0].Tag == "DROP INDEX" && r.Statements[0].NoTxn
}

// rebuildIfInvalid checks the index a CREATE INDEX CONCURRENTLY that
// succeeded names: with IF NOT EXISTS it succeeds, skipping, over an
// invalid index an earlier try that was cut off left (a UNIQUE one that
// enforces nothing), which is then dropped and made again.
func rebuildIfInvalid(ctx context.Context, conn *pgx.Conn, stmt string) error {
	valid, qualified, found, err := concurrentIndex(ctx, conn, stmt)
	if err != nil || !found || valid {
		return err
	}
	return rebuild(ctx, conn, stmt, qualified)
}

// concurrentIndex looks up the index a CREATE INDEX CONCURRENTLY names:
// whether it is valid, and its qualified name. found is false for other
// statements, an unnamed index, or an index that does not exist.
func concurrentIndex(ctx context.Context, conn *pgx.Conn, stmt string) (valid bool, qualified string, found bool, err error) {
	schema, table, name, ok := classify.ConcurrentIndex(stmt)
	if !ok {
		return false, "", false, nil
	}
	var nsp, rel string
	err = conn.QueryRow(ctx, `SELECT i.indisvalid, n.nspname, c.relname
		FROM pg_catalog.pg_class c
		JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid
		JOIN pg_catalog.pg_class t ON t.oid = i.indrelid
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relname = $1 AND t.relname = $3
		  AND CASE WHEN $2 = '' THEN pg_catalog.pg_table_is_visible(c.oid) ELSE n.nspname = $2 END`,
		name, schema, table).Scan(&valid, &nsp, &rel)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, "", false, nil
	}
	if err != nil {
		return false, "", false, errors.Wrapf(err, "look for the index %s an earlier try may have left", name)
	}
	return valid, pgx.Identifier{nsp, rel}.Sanitize(), true, nil
}

// rebuild drops the invalid index qualified, which an earlier try that was
// cut off left, and runs stmt again.
func rebuild(ctx context.Context, conn *pgx.Conn, stmt, qualified string) error {
	if _, err := conn.Exec(ctx, "DROP INDEX CONCURRENTLY IF EXISTS "+qualified); err != nil {
		return errors.Wrapf(err, "drop the invalid index %s an earlier try left", qualified)
	}
	_, err := conn.Exec(ctx, stmt, pgx.QueryExecModeSimpleProtocol)
	return err
}

// readMarker returns what the database's comment records (version 0 and
// no import when it has none).
func readMarker(ctx context.Context, conn *pgx.Conn) (marker, error) {
	var comment string
	err := conn.QueryRow(ctx, `SELECT coalesce(shobj_description(oid, 'pg_database'), '')
		FROM pg_database WHERE datname = current_database()`).Scan(&comment)
	if err != nil {
		return marker{}, errors.Wrap(err, "read the database's schema version")
	}
	return parseMarker(comment), nil
}

// parseMarker reads a marker comment; anything else is version 0, and a
// field it cannot read is left out.
func parseMarker(comment string) marker {
	rest, ok := strings.CutPrefix(comment, markerPrefix)
	if !ok {
		return marker{}
	}
	var m marker
	rest, imp, hasImport := strings.Cut(rest, markerImport)
	rest, steps, partial := strings.Cut(rest, markerDone)
	v, err := strconv.Atoi(rest)
	if err != nil || v < 0 {
		return marker{}
	}
	m.version = v
	if partial {
		if d, err := strconv.Atoi(steps); err == nil && d > 0 {
			m.done = d
		}
	}
	if id, rows, ok := strings.Cut(imp, "/"); hasImport && ok && id != "" {
		if n, err := strconv.ParseInt(rows, 10, 64); err == nil && n >= 0 {
			m.imp, m.rows = id, n
		}
	}
	return m
}

// retryable reports whether a failure is about contention, not about the
// statement: lock_timeout, deadlock, serialization failure.
func retryable(err error) bool {
	var pge *pgconn.PgError
	if !errors.As(err, &pge) {
		return false
	}
	switch pge.Code {
	case "55P03", "40P01", "40001":
		return true
	}
	return false
}

// notFenced accepts every failure to connect but a fenced backend's
// (backend.ErrFenced): another try would be refused as well.
func notFenced(err error) bool { return !errors.Is(err, backend.ErrFenced) }

// retry runs fn up to cfg.Attempts times while it fails with an error that
// again accepts, pausing cfg.Backoff, then twice that, and so on. The last
// error is returned with the number of attempts when they ran out.
func retry(ctx context.Context, cfg ApplyConfig, again func(error) bool, fn func() error) error {
	pause := cfg.Backoff
	var err error
	for attempt := 1; ; attempt++ {
		if err = fn(); err == nil || !again(err) || ctx.Err() != nil {
			return err
		}
		if attempt >= cfg.Attempts {
			return errors.Wrapf(err, "gave up after %d attempts", attempt)
		}
		select {
		case <-time.After(pause):
		case <-ctx.Done():
			return err
		}
		pause *= 2
	}
}
