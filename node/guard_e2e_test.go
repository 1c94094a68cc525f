package node_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"tdb/actors/backend"
	"tdb/fsm"
	"tdb/internal/testnode"
	"tdb/wire/classify"
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
	// A read key stores no data as large objects, in no database.
	readTenant := connect(t, e.ConnString(readWS, "myapp__wayne", "require"))
	readControl := connect(t, e.ConnString(e.CreateKey(t, "read", "project"), "controlplane_workspace", "require"))
	for _, c := range []*pgx.Conn{ws, readTenant, readControl} {
		refused(c, "SELECT lo_from_bytea(0, 'written by a read key')", "42501", "permission denied for function lo_from_bytea")
		refused(c, "SELECT lo_creat(-1)", "42501", "permission denied for function lo_creat")
	}
	refused(ws, "ALTER DEFAULT PRIVILEGES GRANT ALL ON TABLES TO PUBLIC", "42501", "DDL in a workspace needs a key with role admin")
	admin := connect(t, e.ConnString(e.ProxyPassword, "myapp_workspace", "require"))
	refused(admin, "ALTER DEFAULT PRIVILEGES GRANT ALL ON TABLES TO PUBLIC", "42501", "not allowed in a tenant workspace")
	refused(admin, "GRANT ALL ON SCHEMA public TO PUBLIC", "42501", "not allowed in a tenant workspace")
	// DDL run by a DO block or a procedure could not be captured.
	refused(admin, "DO $$ BEGIN EXECUTE 'CREATE TABLE do1 (id int)'; END $$", "42501",
		"DO is not allowed in a tenant workspace: DDL it runs could not be captured as a blueprint version")
	refused(admin, "CALL nothing()", "42501", "CALL is not allowed in a tenant workspace")
	// So are statements about databases: a version would run them on every tenant.
	refused(admin, "DROP DATABASE IF EXISTS prisma_migrate_shadow_db_1", "42501", "DROP DATABASE is not allowed in a tenant workspace")
	refused(admin, "ALTER DATABASE current SET work_mem = '8MB'", "42501", "ALTER DATABASE is not allowed in a tenant workspace")
	// A control workspace captures nothing: DO runs there.
	ctl := connect(t, e.ConnString(e.ProxyPassword, "controlplane_workspace", "require"))
	if _, err := ctl.Exec(ctx, "DO $$ BEGIN PERFORM 1; END $$"); err != nil {
		t.Fatalf("DO in a control workspace: %v", err)
	}
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

// TestParserSettingsCannotDrift: however a session changes a setting that
// makes PostgreSQL read statement text differently from the proxy's parser
// (an options spelling, a computed set_config name), the backend reports
// it, and the session ends before the backend parses another statement,
// pipelined or not. The smuggled statement here would change the role's
// password if it ran: the key would stop working.
func TestParserSettingsCannotDrift(t *testing.T) {
	t.Parallel()
	eachRelay(t, func(t *testing.T, e *testnode.Env) {
		ctx := context.Background()
		key := e.CreateTenant(t, "wayne")
		conn := e.ConnString(key, "myapp__wayne", "require")

		for _, opts := range []string{"-c standard-conforming-strings=off", "--client-encoding=SJIS", "-cstandard_conforming_strings=off"} {
			_, err := pgx.Connect(ctx, conn+"&options="+strings.ReplaceAll(url.QueryEscape(opts), "+", "%20"))
			if pe := pgErr(t, err); pe.Severity != "FATAL" || pe.Code != "42501" {
				t.Fatalf("options %q: %s %s %q, want FATAL 42501", opts, pe.Severity, pe.Code, pe.Message)
			}
		}

		// One SELECT of two concatenated strings as the proxy reads it (with
		// standard_conforming_strings on); with it off, an ALTER ROLE between them.
		const smuggled = `SELECT 'a\'||'; ALTER ROLE current_user PASSWORD $$pwned$$; --'`
		for _, tc := range []struct{ set, text string }{
			{"SELECT set_config('standard_' || 'conforming_strings', 'off', false)", "standard_conforming_strings must be on through the proxy"},
			{"SELECT set_config('client_' || 'encoding', 'SJIS', false)", `client encoding "SJIS" is not supported through the proxy; use UTF8`},
		} {
			// One statement at a time: the change ends the session.
			c := connect(t, conn)
			_, err := c.Exec(ctx, tc.set, pgx.QueryExecModeSimpleProtocol)
			wantPgError(t, err, "FATAL", "42501", tc.text)

			// Pipelined behind the change, in one write: the smuggled
			// statement never reaches the backend.
			c = connect(t, conn)
			fe := c.PgConn().Frontend()
			fe.Send(&pgproto3.Query{String: tc.set})
			fe.Send(&pgproto3.Query{String: smuggled})
			if err := fe.Flush(); err != nil {
				t.Fatal(err)
			}
			var fatal *pgproto3.ErrorResponse
			for fatal == nil {
				msg, err := fe.Receive()
				if err != nil {
					t.Fatalf("%s: the session ended without the FATAL: %v", tc.set, err)
				}
				switch m := msg.(type) {
				case *pgproto3.CommandComplete:
					if strings.HasPrefix(string(m.CommandTag), "ALTER") {
						t.Fatalf("%s: the smuggled statement ran", tc.set)
					}
				case *pgproto3.ErrorResponse:
					cp := *m
					fatal = &cp
				}
			}
			if fatal.Severity != "FATAL" || fatal.Code != "42501" || fatal.Message != tc.text {
				t.Fatalf("%s: got %s %s %q", tc.set, fatal.Severity, fatal.Code, fatal.Message)
			}
			if _, err := fe.Receive(); err == nil {
				t.Fatalf("%s: the session went on after the FATAL", tc.set)
			}
		}

		// The key still works, and no pooled backend session kept a
		// changed setting.
		for range 3 {
			c := connect(t, conn)
			var scs, enc string
			if err := c.QueryRow(ctx, "SHOW standard_conforming_strings").Scan(&scs); err != nil {
				t.Fatal(err)
			}
			if err := c.QueryRow(ctx, "SHOW client_encoding").Scan(&enc); err != nil {
				t.Fatal(err)
			}
			if scs != "on" || enc != "UTF8" {
				t.Fatalf("a new session has standard_conforming_strings=%s client_encoding=%s", scs, enc)
			}
			c.Close(ctx)
		}
	})
}

// TestParserSettingsInsideABatch: inside one extended-protocol batch the
// backend parses each statement after running the ones before it, so a
// statement text after one that may change settings is refused until Sync,
// and a Query message there ends the session. Either way the smuggled
// statement (it would change the role's password) never runs.
func TestParserSettingsInsideABatch(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	ctx := context.Background()
	key := e.CreateTenant(t, "wayne")
	conn := e.ConnString(key, "myapp__wayne", "require")
	const change = "SELECT set_config('standard_' || 'conforming_strings', 'off', false)"
	// As in TestParserSettingsCannotDrift: harmless as the proxy reads it.
	const smuggled = `SELECT 'a\'||'; ALTER ROLE current_user PASSWORD $$pwned$$; --'`

	for _, tc := range []struct {
		name string
		next pgproto3.FrontendMessage
		want string // the SQLSTATE of the first error
	}{
		{"Parse", &pgproto3.Parse{Query: smuggled}, "0A000"},
		{"Query", &pgproto3.Query{String: smuggled}, "08P01"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := connect(t, conn)
			fe := c.PgConn().Frontend()
			fe.Send(&pgproto3.Parse{Name: "chg", Query: change})
			fe.Send(&pgproto3.Bind{PreparedStatement: "chg"})
			fe.Send(&pgproto3.Execute{})
			fe.Send(tc.next)
			fe.Send(&pgproto3.Bind{})
			fe.Send(&pgproto3.Execute{})
			fe.Send(&pgproto3.Sync{})
			if err := fe.Flush(); err != nil {
				t.Fatal(err)
			}
			var first *pgproto3.ErrorResponse
			for done := false; !done; {
				msg, err := fe.Receive()
				if err != nil {
					break // the session ended
				}
				switch m := msg.(type) {
				case *pgproto3.ReadyForQuery:
					// The refusal failed the batch: its transaction, and
					// the setting changed in it, were rolled back.
					done = true
				case *pgproto3.CommandComplete:
					if strings.HasPrefix(string(m.CommandTag), "ALTER") {
						t.Fatal("the smuggled statement ran")
					}
				case *pgproto3.ErrorResponse:
					if first == nil {
						cp := *m
						first = &cp
					}
				}
			}
			if first == nil || first.Code != tc.want {
				t.Fatalf("first error %+v, want %s", first, tc.want)
			}
			// The key still logs in: the password did not change.
			mustSelectOne(t, connect(t, conn))
		})
	}
	_ = ctx
}

// TestDDLRunByFunctionsRefused: DDL that a function, procedure or trigger
// runs shows in no statement the proxy sees. In a tenant workspace it could
// not be captured (tenants would lack it); in a tenant database a SECURITY
// DEFINER function of the blueprint runs as the database's owner, which may
// change the schema. Both databases refuse it themselves.
func TestDDLRunByFunctionsRefused(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	ctx := context.Background()
	ws := connect(t, e.ConnString(e.ProxyPassword, "myapp_workspace", "require"))
	execAll(t, ws,
		"CREATE TABLE items (id int)",
		"CREATE FUNCTION make_table() RETURNS void LANGUAGE plpgsql AS $$ BEGIN CREATE TABLE made (id int); END $$",
		"CREATE FUNCTION make_sql() RETURNS void LANGUAGE sql AS 'CREATE TABLE made_sql (id int)'",
		"CREATE FUNCTION on_insert() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'ALTER TABLE items ADD COLUMN c' || NEW.id || ' int'; RETURN NEW; END $$",
		"CREATE TRIGGER items_ddl BEFORE INSERT ON items FOR EACH ROW EXECUTE FUNCTION on_insert()",
		"CREATE FUNCTION owner_ddl() RETURNS void LANGUAGE plpgsql SECURITY DEFINER AS $$ BEGIN CREATE TABLE escaped (id int); END $$",
	)
	for _, sql := range []string{"SELECT make_table()", "SELECT make_sql()", "INSERT INTO items VALUES (1)", "SELECT owner_ddl()"} {
		_, err := ws.Exec(ctx, sql)
		pe := pgErr(t, err)
		if pe.Code != "42501" || !strings.Contains(pe.Message, "DDL run by a function, procedure or trigger is not allowed in a tenant workspace") ||
			!strings.Contains(pe.Hint, "as a statement of its own") {
			t.Fatalf("%s in the workspace: %s %q (hint %q)", sql, pe.Code, pe.Message, pe.Hint)
		}
	}
	var made bool
	if err := ws.QueryRow(ctx, "SELECT to_regclass('made') IS NOT NULL OR to_regclass('made_sql') IS NOT NULL OR to_regclass('escaped') IS NOT NULL").Scan(&made); err != nil || made {
		t.Fatalf("a refused function's table exists: %v, %v", made, err)
	}

	// What the guard lets through: a function that refreshes a
	// materialized view (not DDL to the proxy), and the DO block that
	// creates a type unless it exists, over several lines.
	execAll(t, ws,
		"CREATE MATERIALIZED VIEW item_count AS SELECT count(*) AS n FROM items",
		"CREATE FUNCTION refresh_counts() RETURNS void LANGUAGE plpgsql AS $$ BEGIN REFRESH MATERIALIZED VIEW item_count; END $$",
		"SELECT refresh_counts()",
		"DO 'BEGIN\n  CREATE TYPE\n    enum_items_state AS ENUM (''new'', ''old'');\nEXCEPTION WHEN duplicate_object THEN null;\nEND'",
	)

	key := e.CreateTenant(t, "acme")
	tenant := connect(t, e.ConnString(key, "myapp__acme", "require"))
	var n int
	if err := tenant.QueryRow(ctx, "SELECT count(*) FROM items").Scan(&n); err != nil {
		t.Fatalf("the blueprint's own DDL did not deploy: %v", err)
	}
	var labels string
	if err := tenant.QueryRow(ctx, "SELECT enum_range(NULL::enum_items_state)::text").Scan(&labels); err != nil || labels != "{new,old}" {
		t.Fatalf("the multi-line type block on the tenant: %q, %v", labels, err)
	}
	_, err := tenant.Exec(ctx, "SELECT owner_ddl()")
	if pe := pgErr(t, err); pe.Code != "42501" || pe.Message != "DDL not allowed on tenant databases, use workspace mode" {
		t.Fatalf("a SECURITY DEFINER function's DDL on a tenant: %s %q", pe.Code, pe.Message)
	}

	// Past the proxy, straight to PostgreSQL as the tenant's admin role
	// (which holds TRIGGER on its tables), DDL is refused all the same.
	var phys, password string
	e.Node.FSM().View(func(s *fsm.State) {
		tg, _ := s.Resolve(e.ProjectID, "myapp__acme")
		phys, password = tg.Database.Name, tg.Database.Passwords.For(fsm.RoleAdmin)
	})
	u, err := url.Parse(e.PG.URL())
	if err != nil {
		t.Fatal(err)
	}
	u.User, u.Path = url.UserPassword(backend.RoleName(phys, backend.RoleAdmin), password), "/"+phys
	direct := connect(t, u.String())
	_, err = direct.Exec(ctx, "CREATE TRIGGER items_noop BEFORE UPDATE ON items FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()")
	if pe := pgErr(t, err); pe.Code != "42501" || pe.Message != "DDL not allowed on tenant databases, use workspace mode" {
		t.Fatalf("a login role's own DDL on a tenant: %s %q", pe.Code, pe.Message)
	}
}

// TestRoleDefaultsCannotSplitTheParsers: PostgreSQL lets a role change its
// own defaults, and a function can do so where the proxy refuses the
// statement. A backend session that then starts (or is reset) reading text
// as the proxy's parser does not is refused, not used.
func TestRoleDefaultsCannotSplitTheParsers(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	ctx := context.Background()
	cs := e.ConnString(e.ProxyPassword, "controlplane_workspace", "disable")
	c := connect(t, cs)
	execAll(t, c,
		`CREATE FUNCTION sneak() RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'ALTER ROLE CURRENT_USER SET standard_' || 'conforming_strings = off'; END $$`,
		"SELECT sneak()",
	)
	role := backend.RoleName(e.Physical(t, "controlplane_workspace"), backend.RoleAdmin)
	admin := connect(t, e.PG.URL())
	t.Cleanup(func() {
		_, _ = admin.Exec(context.Background(), "ALTER ROLE "+pgx.Identifier{role}.Sanitize()+" RESET ALL")
	})
	var defaults string
	if err := admin.QueryRow(ctx, `SELECT coalesce(array_agg(c)::text, '') FROM pg_db_role_setting s, unnest(s.setconfig) c
		WHERE s.setrole = (SELECT oid FROM pg_roles WHERE rolname = $1)`, role).Scan(&defaults); err != nil || !strings.Contains(defaults, "standard_conforming_strings=off") {
		t.Fatalf("the function did not change the role's defaults (%q, %v): the test proves nothing", defaults, err)
	}
	// A new backend session (other startup parameters: no pooled one) starts
	// with the role's new default, and is refused.
	_, err := pgx.Connect(ctx, cs+"&application_name=fresh")
	if pe := pgErr(t, err); pe.Code != "42501" || pe.Message != "standard_conforming_strings must be on through the proxy" {
		t.Fatalf("login onto a backend that reads text differently: %s %q", pe.Code, pe.Message)
	}
}

// TestUnparsedTextIsNotSent: what the proxy's parser cannot read, it cannot
// check. The backend might read it (PostgreSQL 15 takes system_user as a
// name, the parser's newer grammar does not; a LATIN1 session's text is not
// UTF-8), and with it a role statement or DDL no guard saw.
func TestUnparsedTextIsNotSent(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	ctx := context.Background()
	e.CreateTenant(t, "wayne")
	accountsTable(t, e, "wayne")
	read := e.CreateKey(t, "read", "tenant", "wayne")
	tenant := connect(t, e.ConnString(read, "myapp__wayne", "require"))
	_, err := tenant.Exec(ctx, "ALTER ROLE CURRENT_USER PASSWORD 'owned'; SELECT 1 FROM accounts AS system_user", pgx.QueryExecModeSimpleProtocol)
	if pe := pgErr(t, err); pe.Code != "42601" || pe.Message != `syntax error at or near "system_user"` || pe.Position != 69 {
		t.Fatalf("text with a role statement the parser cannot read: %s %q at %d", pe.Code, pe.Message, pe.Position)
	}
	_, err = tenant.Exec(ctx, "SELECT 'Gr\xf6\xdfe'")
	if pe := pgErr(t, err); pe.Code != "22021" || !strings.Contains(pe.Hint, "set client_encoding to UTF8") {
		t.Fatalf("text that is not UTF-8: %s %q (hint %q)", pe.Code, pe.Message, pe.Hint)
	}
	mustSelectOne(t, connect(t, e.ConnString(read, "myapp__wayne", "require"))) // the password did not change

	ws := connect(t, e.ConnString(e.ProxyPassword, "myapp_workspace", "require"))
	if _, err := ws.Exec(ctx, "CREATE TABLE gadgets (id int)"); err != nil {
		t.Fatal(err)
	}
	if _, err := ws.Exec(ctx, "ALTER TABLE gadgets ADD COLUMN system_user text"); pgErr(t, err).Code != "42601" {
		t.Fatalf("DDL the parser cannot read ran: %v", err)
	}
	if _, err := ws.Exec(ctx, `ALTER TABLE gadgets ADD COLUMN "system_user" text`); err != nil {
		t.Fatalf("the quoted name: %v", err)
	}
	var versions []version
	e.MustDo(t, "GET", "/v1/blueprints/myapp/versions", e.ProxyPassword, "", nil, &versions)
	last := versions[len(versions)-1]
	if len(last.Statements) != 1 || last.Statements[0] != `ALTER TABLE gadgets ADD COLUMN "system_user" text` {
		t.Fatalf("the last version is %+v", last)
	}
}

// TestLongQueryTextIsReadWhole: the proxy adds no size limit of its own to
// what PostgreSQL takes. A simple Query longer than the parser's bound is
// read a statement at a time, so its writes run and DDL at its end is still
// seen; only one statement longer than the bound that only the parser can
// read is refused (54000), and nothing of that text runs.
func TestLongQueryTextIsReadWhole(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	ctx := context.Background()
	key := e.CreateTenant(t, "wayne")
	accountsTable(t, e, "wayne")
	tenant := connect(t, e.ConnString(key, "myapp__wayne", "require"))

	var b strings.Builder
	n := 0
	for ; b.Len() <= classify.MaxParsed; n++ {
		fmt.Fprintf(&b, "INSERT INTO accounts (name, email) VALUES ('a;%d', 'u%d@x');", n, n)
	}
	inserts := b.String()
	if _, err := tenant.Exec(ctx, inserts, pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatalf("%d INSERTs in %d bytes: %v", n, len(inserts), err)
	}
	count := func() (c int) {
		t.Helper()
		if err := tenant.QueryRow(ctx, "SELECT count(*) FROM accounts").Scan(&c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := count(); c != n {
		t.Fatalf("%d rows after %d INSERTs", c, n)
	}

	_, err := tenant.Exec(ctx, "DELETE FROM accounts; "+inserts+" CREATE TABLE sneaky (id int)", pgx.QueryExecModeSimpleProtocol)
	if pe := pgErr(t, err); pe.Code != "42501" {
		t.Fatalf("DDL after %d bytes: %s %s", len(inserts), pe.Code, pe.Message)
	}
	long := "DELETE FROM accounts; SELECT '" + strings.Repeat("into ", classify.MaxParsed/5+1) + "'"
	_, err = tenant.Exec(ctx, long, pgx.QueryExecModeSimpleProtocol)
	if pe := pgErr(t, err); pe.Code != "54000" || !strings.Contains(pe.Message, "holds a statement the proxy cannot analyse") {
		t.Fatalf("a statement only the parser reads, %d bytes: %s %s", len(long), pe.Code, pe.Message)
	}
	if c := count(); c != n {
		t.Fatalf("%d rows after refused texts, want %d", c, n)
	}
}

// execAll runs statements one by one and fails the test on the first error.
func execAll(t *testing.T, c *pgx.Conn, sqls ...string) {
	t.Helper()
	for _, sql := range sqls {
		if _, err := c.Exec(context.Background(), sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
}

// TestWorkspaceDDLNeedsTheDefaultSearchPath: a version is the statements'
// text, which tenants run with the default search_path, so a tenant
// workspace refuses DDL while search_path selects a schema other than
// public (its roles cannot create schemas, but a path can name system ones,
// or put public before pg_catalog, so that a function of public's shadows
// a built-in one). A path whose other schemas do not exist selects only
// public, and pg_dump's empty path selects none: those pass, and reach
// tenants.
func TestWorkspaceDDLNeedsTheDefaultSearchPath(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	ctx := context.Background()
	ws := connect(t, e.ConnString(e.ProxyPassword, "myapp_workspace", "require"))
	for path, shown := range map[string]string{"information_schema, public": "information_schema, public", "public, pg_catalog": "public, pg_catalog"} {
		execAll(t, ws, "SET search_path = "+path)
		for _, sql := range []string{"CREATE TABLE users (id int)", "CREATE VIEW columns_seen AS SELECT column_name FROM columns"} {
			_, err := ws.Exec(ctx, sql)
			pe := pgErr(t, err)
			if pe.Code != "0A000" || !strings.Contains(pe.Message, "search_path selects schemas other than public ("+shown+")") ||
				!strings.Contains(pe.Hint, "RESET search_path") {
				t.Fatalf("%s with search_path %s: %s %q (hint %q)", sql, path, pe.Code, pe.Message, pe.Hint)
			}
		}
	}
	execAll(t, ws,
		"SET search_path = nosuch, public", "CREATE TABLE public_path (id int)",
		"SET search_path = ''", "CREATE TABLE public.empty_path (id int)",
		"RESET search_path", "CREATE TABLE users (id int)",
	)

	key := e.CreateTenant(t, "acme")
	tenant := connect(t, e.ConnString(key, "myapp__acme", "require"))
	for _, table := range []string{"users", "public_path", "empty_path"} {
		var n int
		if err := tenant.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
			t.Fatalf("%s on the tenant: %v", table, err)
		}
	}
	var stray bool
	if err := tenant.QueryRow(ctx, "SELECT to_regclass('columns_seen') IS NOT NULL").Scan(&stray); err != nil || stray {
		t.Fatalf("a refused statement reached the tenant: %v, %v", stray, err)
	}
}

// TestWorkspaceRefusesDDLTenantsCouldNotReplay: DDL whose text means
// something only in the workspace's session or database is refused there
// (0A000), since each tenant runs the text: a table made from a prepared
// statement, a policy that names roles, DDL read in a client_encoding
// other than UTF8 (the version holds the UTF-8 text the proxy read), and
// PREPARE TRANSACTION, which would commit DDL later without its capture.
func TestWorkspaceRefusesDDLTenantsCouldNotReplay(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	ctx := context.Background()
	ws := connect(t, e.ConnString(e.ProxyPassword, "myapp_workspace", "require"))
	refused := func(sql, text string) {
		t.Helper()
		_, err := ws.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol)
		if pe := pgErr(t, err); pe.Code != "0A000" || !strings.Contains(pe.Message, text) {
			t.Fatalf("%s: %s %q, want 0A000 containing %q", sql, pe.Code, pe.Message, text)
		}
	}
	execAll(t, ws, "CREATE TABLE pt (id int)", "PREPARE p AS SELECT 1 AS id")
	refused("CREATE TABLE copy_t AS EXECUTE p WITH NO DATA", "CREATE TABLE AS is not allowed in a tenant workspace: it runs a prepared statement of this session")
	refused("CREATE POLICY readers ON pt FOR SELECT TO CURRENT_USER USING (true)", "CREATE POLICY is not allowed in a tenant workspace: it names roles")
	refused("CREATE INDEX CONCURRENTLY ON pt (id)", "CREATE INDEX is not allowed in a tenant workspace: an index built CONCURRENTLY needs a name")
	execAll(t, ws, "CREATE INDEX pt_id ON pt (id)", "REINDEX INDEX pt_id")
	refused("REINDEX INDEX CONCURRENTLY pt_id", "REINDEX is not allowed in a tenant workspace: one that fails leaves an invalid copy of an index behind")
	refused("BEGIN; CREATE TABLE later (id int); PREPARE TRANSACTION 'g'", "PREPARE TRANSACTION is not allowed in a tenant workspace")
	execAll(t, ws, "ROLLBACK")
	refused("SET client_encoding = 'LATIN1'; CREATE TABLE enc (\"café\" int)", "in the same query as a change of client_encoding")
	execAll(t, ws, "SET client_encoding = 'LATIN1'")
	refused("CREATE TABLE enc (\"café\" int)", "while client_encoding is not UTF8")
	execAll(t, ws, "SET client_encoding = 'UTF8'", "CREATE TABLE enc (\"café\" int)",
		"CREATE POLICY everyone ON pt FOR SELECT TO PUBLIC USING (true)")

	key := e.CreateTenant(t, "acme")
	tenant := connect(t, e.ConnString(key, "myapp__acme", "require"))
	var col string
	if err := tenant.QueryRow(ctx, "SELECT attname FROM pg_attribute WHERE attrelid = 'enc'::regclass AND attnum = 1").Scan(&col); err != nil || col != "café" {
		t.Fatalf("the tenant's column: %q, %v", col, err)
	}
	var stray bool
	if err := tenant.QueryRow(ctx, "SELECT to_regclass('copy_t') IS NOT NULL OR to_regclass('later') IS NOT NULL").Scan(&stray); err != nil || stray {
		t.Fatalf("a refused statement reached the tenant: %v, %v", stray, err)
	}
}

// TestReadKeyNotifiesNoListener: NOTIFY takes no privilege in PostgreSQL and
// PUBLIC may run pg_notify, so a read key could wake or feed an
// application's listeners. The proxy refuses a read key's NOTIFY, in either
// protocol and on the query endpoint, and the read role may not run
// pg_notify; the session stays usable, and a write key's notification is
// the first the listener gets.
func TestReadKeyNotifiesNoListener(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	ctx := context.Background()
	admin := e.CreateTenant(t, "wayne")
	listener := connect(t, e.ConnString(admin, "myapp__wayne", "disable"))
	if _, err := listener.Exec(ctx, "LISTEN jobs"); err != nil {
		t.Fatal(err)
	}

	read := connect(t, e.ConnString(e.CreateKey(t, "read", "tenant", "wayne"), "myapp__wayne", "disable"))
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		_, err := read.Exec(ctx, "NOTIFY jobs, 'by read'", mode)
		wantPgError(t, err, "ERROR", "42501", "NOTIFY needs a key with role write or admin")
		_, err = read.Exec(ctx, "SELECT pg_notify('jobs', 'by read')", mode)
		wantPgError(t, err, "ERROR", "42501", "permission denied for function pg_notify")
	}
	mustSelectOne(t, read)
	status, out := query(t, e, e.CreateKey(t, "read", "workspace", "myapp"), "wayne", "NOTIFY jobs, 'by read'")
	if status != 403 || out.Code != "permission_denied" || out.SQLState != "42501" || out.Message != "NOTIFY needs a key with role write or admin" {
		t.Fatalf("read key's NOTIFY on the query endpoint: %d %+v", status, out)
	}

	write := connect(t, e.ConnString(e.CreateKey(t, "write", "tenant", "wayne"), "myapp__wayne", "disable"))
	if _, err := write.Exec(ctx, "NOTIFY jobs, 'by write'"); err != nil {
		t.Fatalf("write key's NOTIFY: %v", err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	n, err := listener.WaitForNotification(wctx)
	if err != nil {
		t.Fatal(err)
	}
	if n.Payload != "by write" {
		t.Fatalf("the listener's first notification is %q, want the write key's", n.Payload)
	}
}
