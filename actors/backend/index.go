package backend

import (
	"context"

	"github.com/cockroachdb/errors"
	"github.com/jackc/pgx/v5"

	"tdb/wire/classify"
)

// DropInvalidIndex drops, in database db, the index a CREATE INDEX
// CONCURRENTLY statement names, when it exists and is invalid: what a build
// that failed leaves behind. It returns the qualified name it dropped, ""
// when there was none (an unnamed index, another statement, or no invalid
// index of that name).
func DropInvalidIndex(ctx context.Context, superuserURL, db, stmt string) (string, error) {
	schema, table, name, ok := classify.ConcurrentIndex(stmt)
	if !ok {
		return "", nil
	}
	if err := checkName(db); err != nil {
		return "", err
	}
	conn, err := connect(ctx, superuserURL, db)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	// Names resolve as in the workspace, whose DDL runs with search_path
	// public (or qualified names).
	var nsp, rel string
	err = conn.QueryRow(ctx, `SELECT n.nspname, c.relname
		FROM pg_catalog.pg_class c
		JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid
		JOIN pg_catalog.pg_class t ON t.oid = i.indrelid
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relname = $1 AND t.relname = $3 AND NOT i.indisvalid
		  AND n.nspname = CASE WHEN $2 = '' THEN 'public' ELSE $2 END`,
		name, schema, table).Scan(&nsp, &rel)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", errors.Wrapf(err, "look for the invalid index %s", name)
	}
	qualified := pgx.Identifier{nsp, rel}.Sanitize()
	if _, err := conn.Exec(ctx, "DROP INDEX CONCURRENTLY IF EXISTS "+qualified); err != nil {
		return "", errors.Wrapf(err, "drop the invalid index %s", qualified)
	}
	return qualified, nil
}
