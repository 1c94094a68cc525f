package backend

import (
	"context"
	"slices"
	"strconv"
	"strings"

	"github.com/cockroachdb/errors"
	"github.com/jackc/pgx/v5"
)

// Privileges of each login role on tables (incl. views) and sequences.
// Nobody but the owner (and, outside tenant databases, the admin role) may
// create objects.
const (
	adminTablePrivs = "SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER"
	writeTablePrivs = "SELECT, INSERT, UPDATE, DELETE"
	readTablePrivs  = "SELECT"
	adminSeqPrivs   = "USAGE, SELECT, UPDATE"
	writeSeqPrivs   = "USAGE, SELECT, UPDATE"
	readSeqPrivs    = "SELECT"
)

// grantStatements are run, as the superuser in one transaction inside
// database db, to set the privileges of its kind. All are idempotent, and
// write and read lose whatever else they were granted, so a rerun converges.
func grantStatements(db string, kind Kind, guard int) []string {
	owner := ident(RoleName(db, RoleOwner))
	admin := ident(RoleName(db, RoleAdmin))
	write := ident(RoleName(db, RoleWrite))
	read := ident(RoleName(db, RoleRead))
	logins := admin + ", " + write + ", " + read
	s := []string{
		"ALTER SCHEMA public OWNER TO " + owner,
		"REVOKE ALL ON SCHEMA public FROM PUBLIC",
		"REVOKE CREATE ON SCHEMA public FROM " + logins,
		"GRANT USAGE ON SCHEMA public TO " + logins,

		// DO blocks and PL/pgSQL let a role run statements the proxy cannot
		// see, ALTER ROLE CURRENT_USER among them: only the owner (which
		// deployments log in as) and, where DDL is allowed, the admin role
		// may use the language.
		"REVOKE USAGE ON LANGUAGE plpgsql FROM PUBLIC",
		"GRANT USAGE ON LANGUAGE plpgsql TO " + owner,

		// Objects that exist now (whoever owns them).
		"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM " + write + ", " + read,
		"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM " + write + ", " + read,
		"GRANT " + adminTablePrivs + " ON ALL TABLES IN SCHEMA public TO " + admin,
		"GRANT " + writeTablePrivs + " ON ALL TABLES IN SCHEMA public TO " + write,
		"GRANT " + readTablePrivs + " ON ALL TABLES IN SCHEMA public TO " + read,
		"GRANT " + adminSeqPrivs + " ON ALL SEQUENCES IN SCHEMA public TO " + admin,
		"GRANT " + writeSeqPrivs + " ON ALL SEQUENCES IN SCHEMA public TO " + write,
		"GRANT " + readSeqPrivs + " ON ALL SEQUENCES IN SCHEMA public TO " + read,
	}
	// Objects that deployments will create as the owner.
	s = append(s, defaultPrivileges(owner, map[string][2]string{
		admin: {adminTablePrivs, adminSeqPrivs},
		write: {writeTablePrivs, writeSeqPrivs},
		read:  {readTablePrivs, readSeqPrivs},
	})...)
	if kind == KindWorkspace || kind == KindControl {
		// The admin key runs DDL here; what it creates is usable by the
		// write and read keys.
		s = append(s, "GRANT CREATE ON SCHEMA public TO "+admin, "GRANT USAGE ON LANGUAGE plpgsql TO "+admin)
		s = append(s, defaultPrivileges(admin, map[string][2]string{
			write: {writeTablePrivs, writeSeqPrivs},
			read:  {readTablePrivs, readSeqPrivs},
		})...)
	}
	s = append(s, largeObjectGrants(db)...)
	return append(s, ddlGuard(db, kind, guard)...)
}

// largeObjectFuncs create large objects; PostgreSQL lets PUBLIC run them.
const largeObjectFuncs = "pg_catalog.lo_creat(integer), pg_catalog.lo_create(oid), pg_catalog.lo_from_bytea(oid, bytea)"

// largeObjectGrants keep the read role from storing data as large objects:
// creating one takes no privilege by default, and its creator owns it and
// may write it. Only the owner, admin and write roles may create them;
// takeLargeObjects takes from the read role those it made before.
func largeObjectGrants(db string) []string {
	return []string{
		"REVOKE EXECUTE ON FUNCTION " + largeObjectFuncs + " FROM PUBLIC",
		"GRANT EXECUTE ON FUNCTION " + largeObjectFuncs + " TO " + ident(RoleName(db, RoleOwner)) + ", " + ident(RoleName(db, RoleAdmin)) + ", " + ident(RoleName(db, RoleWrite)),
	}
}

// takeLargeObjects gives the owner role the large objects the read role of
// db owns, so it holds no right on them. Each is a statement of its own:
// the DDL guard refuses DDL a function runs.
func takeLargeObjects(ctx context.Context, tx pgx.Tx, db string) error {
	rows, err := tx.Query(ctx, `SELECT m.oid FROM pg_catalog.pg_largeobject_metadata m
		JOIN pg_catalog.pg_roles r ON r.oid = m.lomowner WHERE r.rolname = $1`, RoleName(db, RoleRead))
	if err != nil {
		return errors.Wrap(err, "list the read role's large objects")
	}
	oids, err := pgx.CollectRows(rows, pgx.RowTo[uint32])
	if err != nil {
		return errors.Wrap(err, "list the read role's large objects")
	}
	for _, oid := range oids {
		if _, err := tx.Exec(ctx, "ALTER LARGE OBJECT "+strconv.FormatUint(uint64(oid), 10)+" OWNER TO "+ident(RoleName(db, RoleOwner))); err != nil {
			return errors.Wrapf(err, "give large object %d to the owner", oid)
		}
	}
	return nil
}

// sideEffectFuncs are functions of pg_catalog that PUBLIC may run and that
// act beyond the tables and sequences the roles' grants cover: pg_notify
// sends a notification to the database's listeners, pg_logical_emit_message
// writes a message into the WAL for the database's logical decoding
// consumers. Their argument lists differ between PostgreSQL versions (17
// gave the latter a flush argument): grantSideEffects reads them.
var sideEffectFuncs = []string{"pg_notify", "pg_logical_emit_message"}

// grantSideEffects keeps the read role of db from running sideEffectFuncs:
// only the owner, admin and write roles may. Each statement is one of its
// own: the DDL guard refuses GRANT run by a function.
func grantSideEffects(ctx context.Context, tx pgx.Tx, db string) error {
	rows, err := tx.Query(ctx, `SELECT pg_catalog.format('pg_catalog.%I(%s)', p.proname, pg_catalog.oidvectortypes(p.proargtypes))
		FROM pg_catalog.pg_proc p
		WHERE p.pronamespace OPERATOR(pg_catalog.=) 'pg_catalog'::pg_catalog.regnamespace
		  AND p.proname OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.name[])
		ORDER BY 1`, sideEffectFuncs)
	if err != nil {
		return errors.Wrap(err, "list functions with side effects")
	}
	funcs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return errors.Wrap(err, "list functions with side effects")
	}
	grantees := idents(RoleName(db, RoleOwner), RoleName(db, RoleAdmin), RoleName(db, RoleWrite))
	var stmts []string
	for _, f := range funcs {
		stmts = append(stmts, "REVOKE EXECUTE ON FUNCTION "+f+" FROM PUBLIC", "GRANT EXECUTE ON FUNCTION "+f+" TO "+grantees)
	}
	return execAll(ctx, tx, stmts)
}

// defaultPrivileges grants, on tables and sequences that creator will make
// in schema public, each grantee its [table, sequence] privileges.
func defaultPrivileges(creator string, grants map[string][2]string) []string {
	var s []string
	for _, grantee := range sortedKeys(grants) {
		p := grants[grantee]
		prefix := "ALTER DEFAULT PRIVILEGES FOR ROLE " + creator + " IN SCHEMA public GRANT "
		s = append(s,
			prefix+p[0]+" ON TABLES TO "+grantee,
			prefix+p[1]+" ON SEQUENCES TO "+grantee)
	}
	return s
}

func sortedKeys(m map[string][2]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// GuardVersion is the newest version of the guard InstallGuard installs:
// the DDL guard (ddlGuard) where the kind keeps one, from version 2 the
// large object grants (largeObjectGrants), from version 3 the grants of
// functions with side effects (grantSideEffects), and from version 4
// (JournalGuard) the DDL journal of tenant workspaces (journal.go). A
// change to any raises it: the reconciler then installs the new guard in
// every database recorded with an older one, once every node's build
// handles what it brings.
const GuardVersion = JournalGuard

// HasGuard reports whether databases of kind keep a guard: every kind
// (tenant databases and tenant workspaces a DDL guard too; control
// workspaces capture nothing).
func HasGuard(kind Kind) bool {
	return kind == KindTenant || kind == KindWorkspace || kind == KindControl
}

// InstallGuard installs version guard (at most GuardVersion) of the guard
// of database db of kind on the server at superuserURL, replacing an older
// one, in one transaction. Ensure installs it with the grants; this brings
// a database provisioned before the guard existed (or before its current
// version) up to it.
func InstallGuard(ctx context.Context, superuserURL, db string, kind Kind, guard int) error {
	if err := checkName(db); err != nil {
		return err
	}
	if !HasGuard(kind) {
		return errors.Mark(errors.Newf("database %s: kind %q keeps no guard", db, kind), ErrInvalidSpec)
	}
	stmts := append(largeObjectGrants(db), ddlGuard(db, kind, guard)...)
	conn, err := connect(ctx, superuserURL, db)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if err := execAll(ctx, tx, stmts); err != nil {
			return err
		}
		if err := grantSideEffects(ctx, tx, db); err != nil {
			return err
		}
		return takeLargeObjects(ctx, tx, db)
	})
	return errors.Wrapf(err, "install the guard in database %s", db)
}

// GuardUnchanged reports whether version to of the guard of database db of
// kind installs nothing that version from did not: from version 3 on only
// the DDL guard's statements change, and those of some kinds stay the same
// (a tenant database gets no journal).
func GuardUnchanged(db string, kind Kind, from, to int) bool {
	return from >= 3 && HasGuard(kind) && slices.Equal(ddlGuard(db, kind, from), ddlGuard(db, kind, to))
}

// guardSchema holds the event trigger functions of ddlGuard, and in a
// tenant workspace the DDL journal (journal.go); the superuser that
// provisions databases owns all of it. The login roles use only what the
// journal grants them: reading it, and the functions its sessions call.
const guardSchema = "tdb_guard"

// ddlGuard returns the statements that install, in database db of kind, an
// event trigger refusing DDL that would leave a schema other than what the
// blueprint's recorded versions make:
//
//   - In a tenant workspace, DDL its login roles run while search_path
//     selects a schema other than public: the version holds the statement's
//     text, which each tenant runs with the default search_path (its names
//     would resolve elsewhere). Which schemas the path selects is
//     current_schemas: those of its entries that exist, at the time the
//     statement runs. An empty path (pg_dump's, whose output qualifies every
//     name) passes, though it leaves public out of the search for functions
//     and operators, where a tenant's default path has it.
//   - DDL that a function, procedure or trigger runs. In a tenant workspace
//     it could not be captured as a blueprint version (tenants would lack
//     it). The trigger sees PL/pgSQL's context stack: a statement the client
//     sent itself shows only the trigger's own frame. The one nested form let
//     through is a CREATE TYPE run by a DO block: the proxy admits only the
//     block that creates a type unless it exists, and records it as it is.
//   - In a tenant database, any DDL by its login roles: a SECURITY DEFINER
//     function of the blueprint runs as the owner, and the admin role holds
//     TRIGGER on the tables. Only deployments, logged in as the owner, change
//     a tenant's schema.
//
// REFRESH MATERIALIZED VIEW fires the trigger but is not DDL to the proxy
// (it changes rows, not the schema): it passes. Control workspaces capture
// nothing and keep no guard. From version JournalGuard a tenant workspace
// also keeps the DDL journal (journalStatements).
func ddlGuard(db string, kind Kind, guard int) []string {
	// The login roles the proxy's sessions use.
	var logins []string
	for _, r := range []string{RoleAdmin, RoleWrite, RoleRead} {
		lit, err := literal(RoleName(db, r))
		if err != nil {
			return nil // checkName refused such a name before
		}
		logins = append(logins, lit)
	}
	login := `session_user::pg_catalog.text OPERATOR(pg_catalog.=) ANY (ARRAY[` + strings.Join(logins, ", ") + `]::pg_catalog.text[])`
	var check string
	switch kind {
	case KindWorkspace:
		check = `IF nested THEN
				RAISE EXCEPTION 'DDL run by a function, procedure or trigger is not allowed in a tenant workspace: it could not be captured as a blueprint version'
					USING ERRCODE = '42501', HINT = 'Run ' OPERATOR(pg_catalog.||) tg_tag OPERATOR(pg_catalog.||) ' as a statement of its own.';
			END IF;
			IF ` + login + `
					AND schemas OPERATOR(pg_catalog.<>) '{}'::pg_catalog.name[] AND schemas OPERATOR(pg_catalog.<>) '{public}'::pg_catalog.name[] THEN
				RAISE EXCEPTION 'DDL is not allowed in a tenant workspace while search_path selects schemas other than public (%): tenants run each blueprint version with the default search_path',
						pg_catalog.array_to_string(schemas, ', ')
					USING ERRCODE = '0A000', HINT = 'RESET search_path, and schema-qualify names where the statement means another schema.';
			END IF;`
	case KindTenant:
		check = `IF nested OR ` + login + ` THEN
				RAISE EXCEPTION 'DDL not allowed on tenant databases, use workspace mode' USING ERRCODE = '42501';
			END IF;`
	default:
		return nil
	}
	stmts := []string{
		// A database provisioned before the guard may hold a schema of that
		// name made by its own roles, who could then drop the guard.
		`DO $$ BEGIN
			IF EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
					WHERE n.nspname = '` + guardSchema + `' AND NOT r.rolsuper) THEN
				RAISE EXCEPTION 'schema ` + guardSchema + ` exists and is not owned by a superuser'
					USING ERRCODE = '42P06', HINT = 'Rename that schema: the DDL guard is kept in it.';
			END IF;
		END $$`,
		"CREATE SCHEMA IF NOT EXISTS " + guardSchema,
		"REVOKE ALL ON SCHEMA " + guardSchema + " FROM PUBLIC",
		// The function runs with the caller's search_path, which it reads
		// (current_schemas): every name in it is qualified, so no object the
		// caller can create and put first on that path stands in for one.
		`CREATE OR REPLACE FUNCTION ` + guardSchema + `.refuse_nested_ddl() RETURNS event_trigger
		LANGUAGE plpgsql AS $guard$
		DECLARE
			context pg_catalog.text;
			nested pg_catalog.bool;
			schemas pg_catalog.name[];
		BEGIN
			IF tg_tag OPERATOR(pg_catalog.=) 'REFRESH MATERIALIZED VIEW' THEN
				RETURN;
			END IF;
			schemas := pg_catalog.current_schemas(false);
			GET DIAGNOSTICS context = PG_CONTEXT;
			-- One line: the trigger's own frame, under the client's statement.
			nested := pg_catalog.strpos(context, E'\n') OPERATOR(pg_catalog.>) 0
				AND NOT (tg_tag OPERATOR(pg_catalog.=) 'CREATE TYPE'
					AND context OPERATOR(pg_catalog.~) '\nPL/pgSQL function inline_code_block line [0-9]+ at SQL statement$');
			` + check + `
		END $guard$`,
		"REVOKE ALL ON FUNCTION " + guardSchema + ".refuse_nested_ddl() FROM PUBLIC",
	}
	stmts = append(stmts, eventTrigger("tdb_refuse_nested_ddl", "ddl_command_start", guardSchema+".refuse_nested_ddl()")...)
	if kind == KindWorkspace && guard >= JournalGuard {
		stmts = append(stmts, journalStatements(db, login)...)
	}
	return stmts
}

// eventTrigger returns the statements that make event trigger name, on
// event, run function unless it exists, and enable it.
func eventTrigger(name, event, function string) []string {
	return []string{
		`DO $$ BEGIN
			IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger WHERE evtname = '` + name + `') THEN
				CREATE EVENT TRIGGER ` + name + ` ON ` + event + ` EXECUTE FUNCTION ` + function + `;
			END IF;
		END $$`,
		"ALTER EVENT TRIGGER " + name + " ENABLE",
	}
}
