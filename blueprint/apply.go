package blueprint

import (
	"context"

	"github.com/cockroachdb/errors"
	"github.com/jackc/pgx/v5"
)

// Apply runs statements in one transaction in database db of the backend at
// backendURL, logged in as user with password (a workspace's admin role, so
// what it creates belongs to that role as if typed through the proxy), with
// function bodies unchecked: pg_dump writes functions before the tables
// they read (and turns the check off for that), as tenants run them. A
// PostgreSQL error comes back as a *pgconn.PgError in the chain.
func Apply(ctx context.Context, backendURL, db, user, password string, stmts []string) error {
	cfg, err := pgx.ParseConfig(backendURL)
	if err != nil {
		return errors.Wrap(err, "parse backend URL")
	}
	cfg.User, cfg.Password, cfg.Database = user, password, db
	cfg.RuntimeParams["application_name"] = "tdb-schema"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return errors.Wrapf(err, "connect to database %s as %s", db, user)
	}
	defer conn.Close(context.Background())
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
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
}
