package node_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"tdb/internal/testnode"
)

// TestRoleModelCannotBeSubverted covers statements that would let a key
// escape its native role: role changes (directly or in a DO block), DDL by a
// non-admin key in a tenant workspace, privilege changes captured into a
// blueprint, and settings that make PostgreSQL read text differently from
// the proxy's parser.
func TestRoleModelCannotBeSubverted(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	ctx := context.Background()
	key := e.CreateTenant(t, "wayne")
	accountsTable(t, e, "wayne")
	tenant := connect(t, e.ConnString(key, "myapp__wayne", "require"))

	refused := func(c *pgx.Conn, sql, code, text string) {
		t.Helper()
		_, err := c.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol)
		pe := pgErr(t, err)
		if pe.Code != code || !strings.Contains(pe.Message, text) {
			t.Fatalf("%s: got %s %q, want %s containing %q", sql, pe.Code, pe.Message, code, text)
		}
	}
	refused(tenant, "DO $$BEGIN EXECUTE 'ALTER ROLE CURRENT_USER PASSWORD ''pwned'''; END$$", "42501", "permission denied for language plpgsql")
	refused(tenant, "ALTER ROLE CURRENT_USER SET statement_timeout = '1ms'", "42501", "")
	refused(tenant, "SET standard_conforming_strings = off", "42501", "standard_conforming_strings cannot be changed")
	refused(tenant, "SELECT set_config('client_encoding', 'SJIS', false)", "42501", "client encoding")
	// The key still logs in: nothing above reached the backend role.
	if c := connect(t, e.ConnString(key, "myapp__wayne", "require")); c == nil {
		t.Fatal("unreachable")
	}

	readWS := e.CreateKey(t, "read", "workspace", "myapp")
	ws := connect(t, e.ConnString(readWS, "myapp_workspace", "require"))
	refused(ws, "ALTER DEFAULT PRIVILEGES GRANT ALL ON TABLES TO PUBLIC", "42501", "DDL in a workspace needs a key with role admin")
	admin := connect(t, e.ConnString(e.ProxyPassword, "myapp_workspace", "require"))
	refused(admin, "ALTER DEFAULT PRIVILEGES GRANT ALL ON TABLES TO PUBLIC", "42501", "not allowed in a tenant workspace")
	refused(admin, "GRANT ALL ON SCHEMA public TO PUBLIC", "42501", "not allowed in a tenant workspace")
	var versions []version
	e.MustDo(t, "GET", "/v1/blueprints/myapp/versions", e.ProxyPassword, "", nil, &versions)
	if len(versions) != 0 {
		t.Fatalf("refused statements were captured: %+v", versions)
	}

	// Startup parameters that would split the parsers are refused too.
	_, err := pgx.Connect(ctx, e.ConnString(key, "myapp__wayne", "require")+"&client_encoding=SJIS")
	if pe := pgErr(t, err); pe.Code != "42501" {
		t.Fatalf("SJIS startup: %v", pe)
	}
}
