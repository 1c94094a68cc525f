package blueprint

import (
	"context"

	"github.com/cockroachdb/errors"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"tdb/actors/backend"
)

// Apply runs statements in one transaction in database db of the backend at
// backendURL, logged in as user with password (a workspace's admin role, so
// what it creates belongs to that role as if typed through the proxy), with
// function bodies unchecked: pg_dump writes functions before the tables
// they read (and turns the check off for that), as tenants run them. A
// PostgreSQL error comes back as a *pgconn.PgError in the chain.
func Apply(ctx context.Context, backendURL, db, user, password string, stmts []string) error {
	return ApplyRecorded(ctx, backendURL, db, user, password, stmts, 0, nil, nil)
}

// ApplyRecorded is Apply in a tenant workspace, whose committed DDL becomes
// a blueprint version: it takes the workspace's capture lock (the advisory
// lock lockKey, which the proxy's sessions take for their DDL) before the
// transaction, and holds it until record, which records the version, has
// returned. A session's DDL that depends on the statements then waits for
// their version, so versions are recorded in commit order. record runs
// only when the statements committed, and gets the capture id the
// workspace's DDL journal gave them ("" where it keeps none); their rows
// are deleted from the journal once it has recorded them. recover, when
// not nil, runs once the lock is taken, before the statements: it records
// the DDL the journal holds that may not be recorded
// (backend.RecoverJournal), which comes first.
func ApplyRecorded(ctx context.Context, backendURL, db, user, password string, stmts []string, lockKey int64, recover func() error, record func(captureID string) error) error {
	cfg, err := pgx.ParseConfig(backendURL)
	if err != nil {
		return errors.Wrap(err, "parse backend URL")
	}
	cfg.User, cfg.Password, cfg.Database = user, password, db
	cfg.RuntimeParams["application_name"] = "tdb-schema"
	var captureID string
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		if n.Code == backend.JournalNoticeCode && backend.ValidCaptureID(n.Message) {
			captureID = n.Message
		}
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return errors.Wrapf(err, "connect to database %s as %s", db, user)
	}
	defer conn.Close(context.Background()) // also gives the lock back
	if record != nil {
		if _, err := conn.Exec(ctx, "SELECT pg_catalog.pg_advisory_lock($1)", lockKey); err != nil {
			return errors.Wrap(err, "wait for the workspace's other DDL to be recorded")
		}
		if recover != nil {
			if err := recover(); err != nil {
				return errors.Wrap(err, "record the DDL that committed in the workspace before")
			}
		}
	}
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL check_function_bodies = off"); err != nil {
			return errors.Wrap(err, "set check_function_bodies")
		}
		for _, s := range stmts {
			if _, err := tx.Exec(ctx, s, pgx.QueryExecModeSimpleProtocol); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil || record == nil {
		return err
	}
	if err := record(captureID); err != nil {
		return err
	}
	if captureID != "" {
		// Left there, the next session records it again under the same
		// id, which adds nothing.
		_, _ = conn.Exec(ctx, "SELECT "+backend.ForgetJournalSQL([]string{captureID}))
	}
	return nil
}
