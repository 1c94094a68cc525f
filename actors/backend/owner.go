package backend

import (
	"context"
	"crypto/rand"
	"encoding/hex"

	"github.com/cockroachdb/errors"
	"github.com/jackc/pgx/v5"
)

// ConnectAsOwner opens a session in database db logged in as its owner role,
// for replaying blueprint DDL. Unlike RunAsOwner (a superuser session with
// SET ROLE), nothing the DDL does can get back to the superuser: RESET ROLE
// inside a DO block or function lands on the owner. The owner role cannot
// log in normally; it is given a one-time password for this login and made
// NOLOGIN again right after (the session outlives that). Under a context
// carrying a Fence the session is fenced as connect's. Two concurrent calls
// for one database may make one of them fail authentication: retry.
func ConnectAsOwner(ctx context.Context, superuserURL, db string) (*pgx.Conn, error) {
	if err := checkName(db); err != nil {
		return nil, err
	}
	su, err := connect(ctx, superuserURL, "")
	if err != nil {
		return nil, err
	}
	defer su.Close(context.Background())
	owner := RoleName(db, RoleOwner)
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	password := hex.EncodeToString(b)
	// The statement carries a password: errors name the role only.
	if _, err := su.Exec(ctx, "ALTER ROLE "+ident(owner)+" WITH LOGIN PASSWORD '"+password+"'"); err != nil {
		return nil, errors.Wrapf(err, "let role %s log in", owner)
	}
	lock := func() error {
		_, err := su.Exec(context.Background(), "ALTER ROLE "+ident(owner)+" WITH NOLOGIN PASSWORD NULL")
		return errors.Wrapf(err, "lock role %s", owner)
	}
	cfg, err := pgx.ParseConfig(superuserURL)
	if err != nil {
		_ = lock()
		return nil, errors.Wrap(err, "parse backend URL")
	}
	cfg.User, cfg.Password, cfg.Database = owner, password, db
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["application_name"] = "tdb-deploy"
	f, fenced := FenceOf(ctx)
	if fenced {
		cfg.RuntimeParams["application_name"] = f.AppName()
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if lerr := lock(); lerr != nil {
		if conn != nil {
			conn.Close(context.Background())
		}
		return nil, lerr
	}
	if err != nil {
		return nil, errors.Wrapf(err, "connect to database %s as %s", db, owner)
	}
	if fenced {
		// Visible with its term from its startup: checked as every fenced
		// connection.
		if err := checkFence(ctx, conn, superuserURL, f); err != nil {
			conn.Close(context.Background())
			return nil, err
		}
	}
	return conn, nil
}
