package classify

import (
	"strings"
	"testing"
)

// one is the expected classification of a single-statement input; its Text
// is the input without surrounding whitespace and trailing semicolons.
type one struct {
	name  string
	sql   string
	kind  Kind
	tag   string
	noTxn bool
}

var singleCases = []one{
	// DDL, by family.
	{"create table", "CREATE TABLE t (id int PRIMARY KEY)", DDL, "CREATE TABLE", false},
	{"create table partition", "create table t_1 partition of t for values in (1)", DDL, "CREATE TABLE", false},
	{"alter table add column", "ALTER TABLE t ADD COLUMN x int", DDL, "ALTER TABLE", false},
	{"alter table detach concurrently", "ALTER TABLE p DETACH PARTITION p1 CONCURRENTLY", DDL, "ALTER TABLE", true},
	{"alter table detach", "ALTER TABLE p DETACH PARTITION p1", DDL, "ALTER TABLE", false},
	{"alter table set schema", "ALTER TABLE t SET SCHEMA s", DDL, "ALTER TABLE", false},
	{"alter table owner", "ALTER TABLE t OWNER TO bob", DDL, "ALTER TABLE", false},
	{"drop table", "DROP TABLE IF EXISTS t CASCADE", DDL, "DROP TABLE", false},
	{"rename table", "ALTER TABLE t RENAME TO u", DDL, "ALTER TABLE", false},
	{"rename column", "alter table t rename column a to b", DDL, "ALTER TABLE", false},
	{"create index", "CREATE INDEX i ON t (x)", DDL, "CREATE INDEX", false},
	{"create index concurrently", "CREATE UNIQUE INDEX CONCURRENTLY i ON t (x)", DDL, "CREATE INDEX", true},
	{"alter index", "ALTER INDEX i RENAME TO j", DDL, "ALTER INDEX", false},
	{"drop index", "DROP INDEX i", DDL, "DROP INDEX", false},
	{"drop index concurrently", "DROP INDEX CONCURRENTLY i", DDL, "DROP INDEX", true},
	{"create view", "CREATE OR REPLACE VIEW v AS SELECT 1", DDL, "CREATE VIEW", false},
	{"drop view", "DROP VIEW v", DDL, "DROP VIEW", false},
	{"create materialized view", "CREATE MATERIALIZED VIEW mv AS SELECT 1", DDL, "CREATE MATERIALIZED VIEW", false},
	{"alter materialized view", "ALTER MATERIALIZED VIEW mv RENAME TO mv2", DDL, "ALTER MATERIALIZED VIEW", false},
	{"drop materialized view", "DROP MATERIALIZED VIEW mv", DDL, "DROP MATERIALIZED VIEW", false},
	{"create sequence", "CREATE SEQUENCE s", DDL, "CREATE SEQUENCE", false},
	{"alter sequence", "ALTER SEQUENCE s RESTART", DDL, "ALTER SEQUENCE", false},
	{"drop sequence", "DROP SEQUENCE s", DDL, "DROP SEQUENCE", false},
	{"create schema", "CREATE SCHEMA app", DDL, "CREATE SCHEMA", false},
	{"rename schema", "ALTER SCHEMA app RENAME TO app2", DDL, "ALTER SCHEMA", false},
	{"drop schema", "DROP SCHEMA app CASCADE", DDL, "DROP SCHEMA", false},
	{"create function", "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ select 1; $$", DDL, "CREATE FUNCTION", false},
	{"create function body with ddl", "CREATE OR REPLACE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $body$ BEGIN CREATE TABLE x(); END $body$", DDL, "CREATE FUNCTION", false},
	{"create procedure", "CREATE PROCEDURE p() LANGUAGE sql AS 'select 1'", DDL, "CREATE PROCEDURE", false},
	{"alter function", "ALTER FUNCTION f() SECURITY DEFINER", DDL, "ALTER FUNCTION", false},
	{"alter function owner", "ALTER FUNCTION f() OWNER TO bob", DDL, "ALTER FUNCTION", false},
	{"drop function", "DROP FUNCTION f()", DDL, "DROP FUNCTION", false},
	{"drop procedure", "DROP PROCEDURE p()", DDL, "DROP PROCEDURE", false},
	{"create trigger", "CREATE TRIGGER trg BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()", DDL, "CREATE TRIGGER", false},
	{"drop trigger", "DROP TRIGGER trg ON t", DDL, "DROP TRIGGER", false},
	{"create enum", "CREATE TYPE mood AS ENUM ('sad', 'ok')", DDL, "CREATE TYPE", false},
	{"create composite type", "CREATE TYPE pair AS (a int, b int)", DDL, "CREATE TYPE", false},
	{"create range type", "CREATE TYPE fr AS RANGE (subtype = float8)", DDL, "CREATE TYPE", false},
	{"alter type add value", "ALTER TYPE mood ADD VALUE 'happy'", DDL, "ALTER TYPE", true},
	{"alter type rename value", "ALTER TYPE mood RENAME VALUE 'ok' TO 'fine'", DDL, "ALTER TYPE", false},
	{"alter type add attribute", "ALTER TYPE pair ADD ATTRIBUTE c int", DDL, "ALTER TYPE", false},
	{"drop type", "DROP TYPE mood", DDL, "DROP TYPE", false},
	{"create domain", "CREATE DOMAIN posint AS int CHECK (VALUE > 0)", DDL, "CREATE DOMAIN", false},
	{"alter domain", "ALTER DOMAIN posint SET NOT NULL", DDL, "ALTER DOMAIN", false},
	{"create extension", "CREATE EXTENSION IF NOT EXISTS pgcrypto", DDL, "CREATE EXTENSION", false},
	{"alter extension", "ALTER EXTENSION pgcrypto UPDATE", DDL, "ALTER EXTENSION", false},
	{"drop extension", "DROP EXTENSION pgcrypto", DDL, "DROP EXTENSION", false},
	{"create policy", "CREATE POLICY p ON t USING (owner = current_user)", DDL, "CREATE POLICY", false},
	{"alter policy", "ALTER POLICY p ON t USING (true)", DDL, "ALTER POLICY", false},
	{"drop policy", "DROP POLICY p ON t", DDL, "DROP POLICY", false},
	{"create rule", "CREATE RULE r AS ON INSERT TO t DO INSTEAD NOTHING", DDL, "CREATE RULE", false},
	{"create aggregate", "CREATE AGGREGATE a (int) (sfunc = int4pl, stype = int)", DDL, "CREATE AGGREGATE", false},
	{"create operator", "CREATE OPERATOR === (leftarg = int, rightarg = int, function = int4eq)", DDL, "CREATE OPERATOR", false},
	{"create operator class", "CREATE OPERATOR CLASS c FOR TYPE int USING btree AS OPERATOR 1 <", DDL, "CREATE OPERATOR CLASS", false},
	{"create collation", "CREATE COLLATION c (locale = 'C')", DDL, "CREATE COLLATION", false},
	{"create conversion", "CREATE CONVERSION conv FOR 'LATIN1' TO 'UTF8' FROM iso8859_1_to_utf8", DDL, "CREATE CONVERSION", false},
	{"create cast", "CREATE CAST (int AS text) WITH INOUT", DDL, "CREATE CAST", false},
	{"create text search configuration", "CREATE TEXT SEARCH CONFIGURATION cfg (COPY = english)", DDL, "CREATE TEXT SEARCH CONFIGURATION", false},
	{"alter text search dictionary", "ALTER TEXT SEARCH DICTIONARY d (StopWords = english)", DDL, "ALTER TEXT SEARCH DICTIONARY", false},
	{"alter text search configuration", "ALTER TEXT SEARCH CONFIGURATION cfg ADD MAPPING FOR word WITH simple", DDL, "ALTER TEXT SEARCH CONFIGURATION", false},
	{"create publication", "CREATE PUBLICATION pub FOR ALL TABLES", DDL, "CREATE PUBLICATION", false},
	{"alter publication", "ALTER PUBLICATION pub ADD TABLE t", DDL, "ALTER PUBLICATION", false},
	{"create subscription", "CREATE SUBSCRIPTION sub CONNECTION 'host=x' PUBLICATION pub", DDL, "CREATE SUBSCRIPTION", true},
	{"alter subscription refresh", "ALTER SUBSCRIPTION sub REFRESH PUBLICATION", DDL, "ALTER SUBSCRIPTION", true},
	{"alter subscription disable", "ALTER SUBSCRIPTION sub DISABLE", DDL, "ALTER SUBSCRIPTION", false},
	{"drop subscription", "DROP SUBSCRIPTION sub", DDL, "DROP SUBSCRIPTION", true},
	{"create event trigger", "CREATE EVENT TRIGGER et ON ddl_command_start EXECUTE FUNCTION f()", DDL, "CREATE EVENT TRIGGER", false},
	{"create foreign data wrapper", "CREATE FOREIGN DATA WRAPPER w", DDL, "CREATE FOREIGN DATA WRAPPER", false},
	{"create server", "CREATE SERVER s FOREIGN DATA WRAPPER w", DDL, "CREATE SERVER", false},
	{"create foreign table", "CREATE FOREIGN TABLE ft (a int) SERVER s", DDL, "CREATE FOREIGN TABLE", false},
	{"import foreign schema", "IMPORT FOREIGN SCHEMA remote FROM SERVER s INTO local", DDL, "IMPORT FOREIGN SCHEMA", false},
	{"create user mapping", "CREATE USER MAPPING FOR bob SERVER s OPTIONS (user 'x')", DDL, "CREATE USER MAPPING", false},
	{"drop user mapping", "DROP USER MAPPING FOR bob SERVER s", DDL, "DROP USER MAPPING", false},
	{"create statistics", "CREATE STATISTICS st ON a, b FROM t", DDL, "CREATE STATISTICS", false},
	{"create role", "CREATE ROLE r LOGIN", DDL, "CREATE ROLE", false},
	{"create user", "CREATE USER u PASSWORD 'x'", DDL, "CREATE ROLE", false},
	{"create group", "CREATE GROUP g", DDL, "CREATE ROLE", false},
	{"alter role", "ALTER ROLE r NOLOGIN", DDL, "ALTER ROLE", false},
	{"alter role set", "ALTER ROLE r SET work_mem = '1MB'", DDL, "ALTER ROLE", false},
	{"drop role", "DROP ROLE r", DDL, "DROP ROLE", false},
	{"drop owned", "DROP OWNED BY bob", DDL, "DROP OWNED", false},
	{"reassign owned", "REASSIGN OWNED BY a TO b", DDL, "REASSIGN OWNED", false},
	{"create database", "CREATE DATABASE d", DDL, "CREATE DATABASE", true},
	{"alter database", "ALTER DATABASE d CONNECTION LIMIT 5", DDL, "ALTER DATABASE", false},
	{"alter database set tablespace", "ALTER DATABASE d SET TABLESPACE ts", DDL, "ALTER DATABASE", true},
	{"alter database set", "ALTER DATABASE d SET work_mem = '1MB'", DDL, "ALTER DATABASE", false},
	{"drop database", "DROP DATABASE d", DDL, "DROP DATABASE", true},
	{"create tablespace", "CREATE TABLESPACE ts LOCATION '/x'", DDL, "CREATE TABLESPACE", true},
	{"drop tablespace", "DROP TABLESPACE ts", DDL, "DROP TABLESPACE", true},
	{"comment on", "COMMENT ON TABLE t IS 'copy; create table'", DDL, "COMMENT", false},
	{"grant", "GRANT SELECT ON t TO bob", DDL, "GRANT", false},
	{"revoke", "REVOKE ALL ON SCHEMA s FROM bob", DDL, "REVOKE", false},
	{"grant role", "GRANT admin TO bob", DDL, "GRANT ROLE", false},
	{"security label", "SECURITY LABEL FOR selinux ON TABLE t IS 'x'", DDL, "SECURITY LABEL", false},
	{"alter default privileges", "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO bob", DDL, "ALTER DEFAULT PRIVILEGES", false},
	{"alter system", "ALTER SYSTEM SET work_mem = '1MB'", DDL, "ALTER SYSTEM", true},
	{"create table as", "CREATE TABLE t2 AS SELECT 1", DDL, "CREATE TABLE AS", false},
	{"select into", "SELECT * INTO x FROM y", DDL, "SELECT INTO", false},
	{"select into lower case", "select a, b into temp x from y where c", DDL, "SELECT INTO", false},
	{"select into in union arm", "select * into x from a union select * from b", DDL, "SELECT INTO", false},
	{"with select into", "WITH a AS (SELECT 1) SELECT * INTO x FROM a", DDL, "SELECT INTO", false},
	{"explain analyze create table as", "EXPLAIN ANALYZE CREATE TABLE x AS SELECT 1", DDL, "EXPLAIN", false},
	{"explain analyze select into", "EXPLAIN (ANALYZE, BUFFERS) SELECT 1 INTO x", DDL, "EXPLAIN", false},
	{"prepare select into", "PREPARE q AS SELECT 1 INTO x", DDL, "PREPARE", false},

	// DML.
	{"select", "SELECT * FROM t WHERE id = $1", DML, "SELECT", false},
	{"select word into in a string", "select * from t where note = 'into'", DML, "SELECT", false},
	{"select for update", "SELECT * FROM t FOR UPDATE", DML, "SELECT", false},
	{"insert", "INSERT INTO t (a) VALUES ($1) RETURNING id", DML, "INSERT", false},
	{"insert on conflict", "insert into t values (1) on conflict (id) do update set a = excluded.a", DML, "INSERT", false},
	{"update", "UPDATE t SET a = 1 WHERE id = 2", DML, "UPDATE", false},
	{"delete", "DELETE FROM t WHERE id = 2", DML, "DELETE", false},
	{"merge", "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", DML, "MERGE", false},
	{"values", "VALUES (1), (2)", DML, "SELECT", false},
	{"table", "TABLE t", DML, "SELECT", false},
	{"with select", "WITH x AS (SELECT 1) SELECT * FROM x", DML, "WITH", false},
	{"with delete", "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x", DML, "WITH", false},
	{"with insert", "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", DML, "INSERT", false},
	{"truncate", "TRUNCATE t RESTART IDENTITY", DML, "TRUNCATE", false},
	{"explain analyze select", "EXPLAIN ANALYZE SELECT 1", DML, "EXPLAIN", false},
	{"explain analyze delete", "EXPLAIN (ANALYZE true) DELETE FROM t", DML, "EXPLAIN", false},

	// COPY.
	{"copy from stdin", "COPY t FROM STDIN", Copy, "COPY", false},
	{"copy query to stdout", "COPY (select 1) TO STDOUT", Copy, "COPY", false},
	{"copy to file", "copy t (a, b) to '/tmp/x' with (format csv)", Copy, "COPY", false},
	{"copy to program", "COPY t TO PROGRAM 'cat'", Copy, "COPY", false},

	// Transaction control.
	{"begin", "BEGIN", Begin, "BEGIN", false},
	{"begin lower semicolon", "begin;", Begin, "BEGIN", false},
	{"begin isolation", "BEGIN ISOLATION LEVEL SERIALIZABLE", Begin, "BEGIN", false},
	{"start transaction", "START TRANSACTION READ ONLY", Begin, "START TRANSACTION", false},
	{"commit", "COMMIT", Commit, "COMMIT", false},
	{"end", "END", Commit, "COMMIT", false},
	{"commit and chain", "COMMIT AND CHAIN", Commit, "COMMIT", false},
	{"rollback", "ROLLBACK", Rollback, "ROLLBACK", false},
	{"abort", "abort", Rollback, "ROLLBACK", false},
	{"savepoint", "SAVEPOINT a", Savepoint, "SAVEPOINT", false},
	{"rollback to savepoint", "ROLLBACK TO SAVEPOINT a", RollbackTo, "ROLLBACK TO", false},
	{"rollback to", "rollback to a", RollbackTo, "ROLLBACK TO", false},
	{"release savepoint", "RELEASE SAVEPOINT a", Release, "RELEASE", false},
	{"release", "RELEASE a", Release, "RELEASE", false},
	{"prepare transaction", "PREPARE TRANSACTION 'x'", PrepareTxn, "PREPARE TRANSACTION", false},
	{"commit prepared", "COMMIT PREPARED 'x'", CommitPrepared, "COMMIT PREPARED", true},
	{"rollback prepared", "ROLLBACK PREPARED 'x'", RollbackPrepared, "ROLLBACK PREPARED", true},

	// Settings.
	{"set", "SET search_path = app, public", Set, "SET", false},
	{"set local", "SET LOCAL statement_timeout = 0", Set, "SET", false},
	{"set transaction", "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", Set, "SET", false},
	{"reset all", "RESET ALL", Set, "RESET", false},
	{"set constraints", "SET CONSTRAINTS ALL DEFERRED", Set, "SET CONSTRAINTS", false},
	{"show", "SHOW server_version", Other, "SHOW", false},

	// Other utility statements.
	{"do", "DO $$ BEGIN CREATE TABLE x(); END $$", Other, "DO", false},
	{"call", "CALL p(1)", Other, "CALL", false},
	{"lock", "LOCK TABLE t IN ACCESS EXCLUSIVE MODE", Other, "LOCK TABLE", false},
	{"vacuum", "VACUUM", Other, "VACUUM", true},
	{"vacuum analyze", "VACUUM (ANALYZE) t", Other, "VACUUM", true},
	{"analyze", "ANALYZE t", Other, "ANALYZE", false},
	{"cluster table using", "CLUSTER t USING i", DDL, "CLUSTER", false},
	{"cluster index on table", "CLUSTER i ON t", DDL, "CLUSTER", false},
	{"cluster table", "CLUSTER t", Other, "CLUSTER", false},
	{"cluster all", "CLUSTER", Other, "CLUSTER", true},
	{"reindex table", "REINDEX TABLE t", Other, "REINDEX", false},
	{"reindex concurrently", "REINDEX TABLE CONCURRENTLY t", Other, "REINDEX", true},
	{"reindex option concurrently", "REINDEX (CONCURRENTLY) INDEX i", Other, "REINDEX", true},
	{"reindex database", "REINDEX DATABASE d", Other, "REINDEX", true},
	{"refresh materialized view", "REFRESH MATERIALIZED VIEW CONCURRENTLY mv", Other, "REFRESH MATERIALIZED VIEW", false},
	{"explain", "EXPLAIN SELECT 1", Other, "EXPLAIN", false},
	{"explain create table as", "EXPLAIN CREATE TABLE x AS SELECT 1", Other, "EXPLAIN", false},
	{"explain analyze off", "EXPLAIN (ANALYZE false) CREATE TABLE x AS SELECT 1", Other, "EXPLAIN", false},
	{"explain analyze execute", "EXPLAIN ANALYZE EXECUTE q", Other, "EXPLAIN", false},
	{"prepare", "PREPARE q (int) AS SELECT $1", Other, "PREPARE", false},
	{"execute", "EXECUTE q (1)", Other, "EXECUTE", false},
	{"deallocate", "DEALLOCATE ALL", Other, "DEALLOCATE", false},
	{"declare cursor", "DECLARE c CURSOR FOR SELECT 1", Other, "DECLARE CURSOR", false},
	{"fetch", "FETCH 10 FROM c", Other, "FETCH", false},
	{"close", "CLOSE c", Other, "CLOSE CURSOR", false},
	{"listen", "LISTEN ch", Other, "LISTEN", false},
	{"notify", "NOTIFY ch, 'create table'", Other, "NOTIFY", false},
	{"discard all", "DISCARD ALL", Other, "DISCARD", true},
	{"discard plans", "DISCARD PLANS", Other, "DISCARD", false},
	{"checkpoint", "CHECKPOINT", Other, "CHECKPOINT", false},

	// Lexical traps.
	{"dollar quote with semicolon and create", "select $$;create table x()$$", DML, "SELECT", false},
	{"tagged dollar quote", "select $q$ ; drop table t; $q$ as x", DML, "SELECT", false},
	{"string with semicolon", "select 'a;b; create table x()'", DML, "SELECT", false},
	{"quoted identifier with semicolon", `select 1 as "x; create table y()"`, DML, "SELECT", false},
	{"trailing semicolon and space", "select 1; \n", DML, "SELECT", false},
	{"leading whitespace", " \t\n SELECT 1", DML, "SELECT", false},
	{"copy word in select", "select copy from t", DML, "SELECT", false},
}

func TestClassifySingle(t *testing.T) {
	for _, tc := range singleCases {
		t.Run(tc.name, func(t *testing.T) {
			r := Classify(tc.sql)
			want := Statement{
				Text:  strings.TrimRight(strings.Trim(tc.sql, pgSpace), "; \n"),
				Kind:  tc.kind,
				NoTxn: tc.noTxn,
				Tag:   tc.tag,
			}
			if r.Unparsed || len(r.Statements) != 1 {
				t.Fatalf("Classify(%q) = %+v, want one statement", tc.sql, r)
			}
			got := r.Statements[0]
			got.Setting, got.Savepoint, got.Bound = "", "", "" // TestSettingName, TestSavepointName, TestBound
			if got != want {
				t.Errorf("Classify(%q)\n got %+v\nwant %+v", tc.sql, got, want)
			}
			if r.HasDDL() != (tc.kind == DDL) || IsDDL(tc.sql) != (tc.kind == DDL) {
				t.Errorf("HasDDL/IsDDL(%q) = %v/%v, want %v", tc.sql, r.HasDDL(), IsDDL(tc.sql), tc.kind == DDL)
			}
			if r.HasCopy() != (tc.kind == Copy) {
				t.Errorf("HasCopy(%q) = %v", tc.sql, r.HasCopy())
			}
		})
	}
}

func TestClassifyMulti(t *testing.T) {
	type st struct {
		text string
		kind Kind
	}
	tests := []struct {
		name string
		sql  string
		want []st
	}{
		{
			name: "insert then create",
			sql:  "insert into t values (1); create table u (id int);\n  CREATE INDEX i ON u (id)",
			want: []st{{"insert into t values (1)", DML}, {"create table u (id int)", DDL}, {"CREATE INDEX i ON u (id)", DDL}},
		},
		{
			name: "comments between statements are dropped from the text",
			sql:  "/* lead */ select 1 ; -- about the table\n create table t (a text default ';') ;  -- done\n",
			want: []st{{"select 1", DML}, {"create table t (a text default ';')", DDL}},
		},
		{
			name: "transaction around ddl",
			sql:  "BEGIN; ALTER TABLE t ADD c int; SAVEPOINT s; DROP TABLE u; ROLLBACK TO s; COMMIT;",
			want: []st{{"BEGIN", Begin}, {"ALTER TABLE t ADD c int", DDL}, {"SAVEPOINT s", Savepoint},
				{"DROP TABLE u", DDL}, {"ROLLBACK TO s", RollbackTo}, {"COMMIT", Commit}},
		},
		{
			name: "empty statements",
			sql:  ";;select 1;;;select 2;",
			want: []st{{"select 1", DML}, {"select 2", DML}},
		},
		{
			name: "function body with semicolons",
			sql:  "create function f() returns int language sql as $$ select 1; $$; select f()",
			want: []st{{"create function f() returns int language sql as $$ select 1; $$", DDL}, {"select f()", DML}},
		},
		{
			name: "copy after select",
			sql:  "select 1; copy t from stdin",
			want: []st{{"select 1", DML}, {"copy t from stdin", Copy}},
		},
		{
			name: "multibyte text keeps byte offsets",
			sql:  "select 'héllo ✓'; create table \"tä\" (x int)",
			want: []st{{"select 'héllo ✓'", DML}, {"create table \"tä\" (x int)", DDL}},
		},
		{
			name: "final statement without semicolon keeps its trailing comment",
			sql:  "select 1; create table t () -- note",
			want: []st{{"select 1", DML}, {"create table t () -- note", DDL}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := Classify(tc.sql)
			if r.Unparsed || len(r.Statements) != len(tc.want) {
				t.Fatalf("Classify(%q) = %+v, want %d statements", tc.sql, r, len(tc.want))
			}
			for i, w := range tc.want {
				if got := r.Statements[i]; got.Text != w.text || got.Kind != w.kind {
					t.Errorf("statement %d = %q %v, want %q %v", i, got.Text, got.Kind, w.text, w.kind)
				}
			}
		})
	}
	if r := Classify("insert into t values (1); create table u (id int)"); !r.HasDDL() || r.HasCopy() {
		t.Errorf("HasDDL/HasCopy of insert; create = %v/%v", r.HasDDL(), r.HasCopy())
	}
	if r := Classify("select 1; copy t to stdout"); !r.HasCopy() || r.HasDDL() {
		t.Errorf("HasDDL/HasCopy of select; copy = %v/%v", r.HasDDL(), r.HasCopy())
	}
}

func TestClassifyEmpty(t *testing.T) {
	for _, sql := range []string{"", "   \n\t", "-- only a comment", "/* c */", "/* a /* nested */ b */ -- x\n", ";", " ; ;; "} {
		if r := Classify(sql); r.Unparsed || len(r.Statements) != 0 {
			t.Errorf("Classify(%q) = %+v, want no statements", sql, r)
		}
	}
}

func TestClassifyUnparsed(t *testing.T) {
	for _, sql := range []string{
		"selec 1",
		"create tabel x ()",
		"insert into t values (1); create table (",
		"/* unterminated comment",
		"select 1; 'unterminated",
		"COPY",
	} {
		r := Classify(sql)
		if !r.Unparsed || len(r.Statements) != 0 || r.HasDDL() || IsDDL(sql) {
			t.Errorf("Classify(%q) = %+v, want Unparsed", sql, r)
		}
	}
}

// TestClassifyNUL: like the server, only the text before a NUL byte counts.
func TestClassifyNUL(t *testing.T) {
	r := Classify("select 1\x00; create table x ()")
	if len(r.Statements) != 1 || r.Statements[0].Text != "select 1" || r.HasDDL() {
		t.Errorf("got %+v", r)
	}
}

func TestKindString(t *testing.T) {
	if DDL.String() != "DDL" || RollbackPrepared.String() != "RollbackPrepared" || Kind(200).String() != "Kind(?)" {
		t.Error("Kind.String")
	}
}

func TestClassifyTooComplex(t *testing.T) {
	for _, sql := range []string{
		strings.Repeat("/*", 1<<20) + " */ create table x ()",
		"select 1 " + strings.Repeat("+-", 1<<20),
		"select 1; " + strings.Repeat("+", 1<<21),
	} {
		if r := Classify(sql); !r.TooComplex || r.Unparsed || len(r.Statements) != 0 {
			t.Errorf("Classify(%.20q…) = %+v, want TooComplex", sql, r)
		}
		if !IsDDL(sql) {
			t.Errorf("IsDDL(%.20q…) = false, want true for uninspectable text", sql)
		}
	}
	// Ordinary long text with many short runs and comment banners passes.
	banner := "/" + strings.Repeat("*", 78) + "/\n"
	sql := strings.Repeat(banner+"insert into t values (1, 'a<>b', 2::int) -- ==========\n;", 5000)
	if r := Classify(sql); r.TooComplex || r.Unparsed || len(r.Statements) != 5000 {
		t.Errorf("long ordinary script: TooComplex=%v Unparsed=%v n=%d", r.TooComplex, r.Unparsed, len(r.Statements))
	}
}

// TestSettingName: a SET or RESET carries the setting's name as the parser
// decoded it, whatever its spelling.
func TestSettingName(t *testing.T) {
	for _, tc := range []struct{ sql, want string }{
		{"SET search_path = app, public", "search_path"},
		{"SET NAMES 'SJIS'", "client_encoding"},
		{`SET U&"stan\0064ard_conforming_strings" = off`, "standard_conforming_strings"},
		{`set "Standard_Conforming_Strings" to on`, "standard_conforming_strings"},
		{"RESET ALL", "all"},
		{"RESET client_encoding", "client_encoding"},
		{"SET LOCAL statement_timeout = 0", "statement_timeout"},
		{"SELECT 1", ""},
	} {
		r := Classify(tc.sql)
		if len(r.Statements) != 1 || r.Statements[0].Setting != tc.want {
			t.Errorf("Classify(%q) = %+v, want setting %q", tc.sql, r, tc.want)
		}
	}
}

// TestDoBody: the code of a PL/pgSQL DO block, however it is quoted; none
// for other languages or other statements.
func TestDoBody(t *testing.T) {
	for in, want := range map[string]string{
		`DO 'BEGIN CREATE TYPE "t" AS ENUM(''a''); END'`: `BEGIN CREATE TYPE "t" AS ENUM('a'); END`,
		`DO $$ BEGIN PERFORM 1; END $$`:                  ` BEGIN PERFORM 1; END `,
		`DO LANGUAGE plpgsql $x$BEGIN NULL; END$x$`:      `BEGIN NULL; END`,
		`DO $x$BEGIN NULL; END$x$ LANGUAGE PLPGSQL`:      `BEGIN NULL; END`,
		`DO LANGUAGE sql 'SELECT 1'`:                     "",
		`SELECT 'BEGIN NULL; END'`:                       "",
		`DO 'BEGIN NULL; END'; DO 'BEGIN NULL; END'`:     "",
	} {
		got, ok := DoBody(in)
		if got != want || ok != (want != "") {
			t.Errorf("%s: got %q %v, want %q", in, got, ok, want)
		}
	}
}

func TestHasParams(t *testing.T) {
	for text, want := range map[string]bool{
		"CREATE TABLE t AS SELECT $1::int AS n":                                    true,
		"ALTER TABLE t ALTER c SET DEFAULT $2":                                     true,
		"CREATE TABLE t (price text DEFAULT '$1')":                                 false,
		"CREATE FUNCTION f(int) RETURNS int LANGUAGE sql AS $$ SELECT $1 $$":       false,
		"CREATE FUNCTION f(int) RETURNS int LANGUAGE sql AS $b$ SELECT $1 + 1 $b$": false,
		`CREATE TABLE "$1" (id int) -- $1`:                                         false,
		"CREATE TABLE t (id int)":                                                  false,
	} {
		if got := HasParams(text); got != want {
			t.Errorf("HasParams(%q) = %v, want %v", text, got, want)
		}
	}
}

// TestBound: statements whose text means something only in this session or
// database.
func TestBound(t *testing.T) {
	for sql, want := range map[string]bool{
		"CREATE TABLE t AS EXECUTE p":                               true,
		"CREATE TABLE t AS EXECUTE p WITH NO DATA":                  true,
		"EXPLAIN ANALYZE CREATE TABLE t AS EXECUTE p":               true,
		"CREATE TABLE t AS SELECT 1":                                false,
		"CREATE POLICY p ON t FOR SELECT TO app_read USING (true)":  true,
		"CREATE POLICY p ON t TO CURRENT_USER USING (true)":         true,
		"CREATE POLICY p ON t TO PUBLIC USING (true)":               false,
		"CREATE POLICY p ON t USING (true)":                         false,
		"ALTER POLICY p ON t TO PUBLIC, someone":                    true,
		"ALTER POLICY p ON t USING (false)":                         false,
		"PREPARE q AS SELECT 1":                                     false,
		"CREATE INDEX CONCURRENTLY ON t (a)":                        true,
		"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a)": false,
		"CREATE INDEX ON t (a)":                                     false,
		"REINDEX INDEX CONCURRENTLY i":                              true,
		"REINDEX (CONCURRENTLY) TABLE t":                            true,
		"REINDEX TABLE t":                                           false,
	} {
		r := Classify(sql)
		if len(r.Statements) != 1 {
			t.Fatalf("%s: %+v", sql, r)
		}
		if got := r.Statements[0].Bound != ""; got != want {
			t.Errorf("%s: bound %q, want %v", sql, r.Statements[0].Bound, want)
		}
	}
}
