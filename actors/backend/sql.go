package backend

import (
	"context"
	"strings"
	"unicode/utf8"

	"github.com/cockroachdb/errors"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ident quotes one identifier for SQL.
func ident(name string) string { return pgx.Identifier{name}.Sanitize() }

// idents quotes a list of identifiers, comma-separated.
func idents(names ...string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = ident(n)
	}
	return strings.Join(q, ", ")
}

// literal renders s as an escape-string constant (E'…'): quotes are doubled
// and backslashes escaped, which is correct whatever the server's
// standard_conforming_strings. NUL and invalid UTF-8 cannot be represented
// and are rejected. For statements that take no bind parameters
// (CREATE/ALTER ROLE … PASSWORD).
func literal(s string) (string, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return "", errors.New("string contains a NUL byte")
	}
	if !utf8.ValidString(s) {
		return "", errors.New("string is not valid UTF-8")
	}
	s = strings.ReplaceAll(s, `\`, `\\`)
	s = strings.ReplaceAll(s, `'`, `''`)
	return "E'" + s + "'", nil
}

// connect opens a connection with superuserURL's credentials, to database
// db when db is not empty. Under a context carrying a Fence (leader work)
// the connection is fenced: it names its term in application_name and is
// refused (ErrFenced) on a server a later leader of its cluster has acted
// on (fence.go).
func connect(ctx context.Context, superuserURL, db string) (*pgx.Conn, error) {
	f, fenced := FenceOf(ctx)
	app := ""
	if fenced {
		app = f.AppName()
	}
	conn, err := dial(ctx, superuserURL, db, app)
	if err != nil || !fenced {
		return conn, err
	}
	if err := checkFence(ctx, conn, superuserURL, f); err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	return conn, nil
}

// dial opens a connection with superuserURL's credentials, to database db
// when db is not empty, with application_name app when app is not empty
// (else the URL's, else tdb-backend).
func dial(ctx context.Context, superuserURL, db, app string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(superuserURL)
	if err != nil {
		return nil, errors.Wrap(err, "parse backend URL")
	}
	if db != "" {
		cfg.Database = db
	}
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	if app != "" {
		cfg.RuntimeParams["application_name"] = app
	} else if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = "tdb-backend"
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, errors.Wrapf(err, "connect to backend %s:%d database %s", cfg.Host, cfg.Port, cfg.Database)
	}
	return conn, nil
}

type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// execAll runs statements in order, stopping at the first error.
// Statements must hold no secrets: they end up in error messages.
func execAll(ctx context.Context, q execer, stmts []string) error {
	for _, s := range stmts {
		if _, err := q.Exec(ctx, s); err != nil {
			return errors.Wrapf(err, "%s", s)
		}
	}
	return nil
}
