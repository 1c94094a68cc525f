package classify

import (
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// classifyNode classifies one top-level statement by its parse-tree node type.
// A statement type this switch does not know is DDL (fail closed: refused on
// tenants); TestEveryStatementNodeIsClassified catches new types on upgrades.
func classifyNode(n *pg.Node) (kind Kind, tag string, noTxn bool) {
	if n == nil {
		return DDL, "UTILITY", false
	}
	switch s := n.Node.(type) {
	// Queries.
	case *pg.Node_SelectStmt:
		if selectInto(s.SelectStmt) {
			return DDL, "SELECT INTO", false // creates a table
		}
		return DML, "SELECT", false
	case *pg.Node_InsertStmt:
		return DML, "INSERT", false
	case *pg.Node_UpdateStmt:
		return DML, "UPDATE", false
	case *pg.Node_DeleteStmt:
		return DML, "DELETE", false
	case *pg.Node_MergeStmt:
		return DML, "MERGE", false
	case *pg.Node_TruncateStmt:
		return DML, "TRUNCATE", false
	case *pg.Node_CopyStmt:
		return Copy, "COPY", false
	case *pg.Node_ExplainStmt:
		return classifyExplain(s.ExplainStmt)

	// Transaction control and session settings.
	case *pg.Node_TransactionStmt:
		return classifyTxn(s.TransactionStmt)
	case *pg.Node_VariableSetStmt:
		k := s.VariableSetStmt.Kind
		if k == pg.VariableSetKind_VAR_RESET || k == pg.VariableSetKind_VAR_RESET_ALL {
			return Set, "RESET", false
		}
		return Set, "SET", false
	case *pg.Node_ConstraintsSetStmt:
		return Set, "SET CONSTRAINTS", false
	case *pg.Node_VariableShowStmt:
		return Other, "SHOW", false

	// Utility statements that change no schema object. REFRESH MATERIALIZED
	// VIEW rewrites data, not schema, so it is maintenance, not a blueprint
	// change. DO and CALL may run anything; the backend role is the guard.
	case *pg.Node_RefreshMatViewStmt:
		return Other, "REFRESH MATERIALIZED VIEW", false
	case *pg.Node_DoStmt:
		return Other, "DO", false
	case *pg.Node_CallStmt:
		return Other, "CALL", false
	case *pg.Node_PrepareStmt:
		if k, _, _ := classifyNode(s.PrepareStmt.Query); k == DDL {
			return DDL, "PREPARE", false // PREPARE … AS SELECT … INTO
		}
		return Other, "PREPARE", false
	case *pg.Node_ExecuteStmt:
		return Other, "EXECUTE", false
	case *pg.Node_DeallocateStmt:
		return Other, "DEALLOCATE", false
	case *pg.Node_DeclareCursorStmt:
		return Other, "DECLARE CURSOR", false
	case *pg.Node_FetchStmt:
		if s.FetchStmt.Ismove {
			return Other, "MOVE", false
		}
		return Other, "FETCH", false
	case *pg.Node_ClosePortalStmt:
		return Other, "CLOSE CURSOR", false
	case *pg.Node_ListenStmt:
		return Other, "LISTEN", false
	case *pg.Node_UnlistenStmt:
		return Other, "UNLISTEN", false
	case *pg.Node_NotifyStmt:
		return Other, "NOTIFY", false
	case *pg.Node_LoadStmt:
		return Other, "LOAD", false
	case *pg.Node_CheckPointStmt:
		return Other, "CHECKPOINT", false
	case *pg.Node_DiscardStmt:
		return Other, "DISCARD", s.DiscardStmt.Target == pg.DiscardMode_DISCARD_ALL
	case *pg.Node_LockStmt:
		return Other, "LOCK TABLE", false
	case *pg.Node_ClusterStmt:
		if s.ClusterStmt.Indexname != "" {
			// CLUSTER t USING i also marks i as t's clustered index (ALTER
			// TABLE t CLUSTER ON i): a schema change, which a tenant
			// workspace records and deployments make on every tenant.
			return DDL, "CLUSTER", false
		}
		return Other, "CLUSTER", s.ClusterStmt.Relation == nil // CLUSTER of the whole database
	case *pg.Node_VacuumStmt:
		if s.VacuumStmt.IsVacuumcmd {
			return Other, "VACUUM", true
		}
		return Other, "ANALYZE", false
	case *pg.Node_ReindexStmt:
		r := s.ReindexStmt
		multi := r.Kind == pg.ReindexObjectType_REINDEX_OBJECT_SCHEMA ||
			r.Kind == pg.ReindexObjectType_REINDEX_OBJECT_SYSTEM ||
			r.Kind == pg.ReindexObjectType_REINDEX_OBJECT_DATABASE
		return Other, "REINDEX", multi || optionOn(r.Params, "concurrently")

	// DDL whose tag depends on the object type.
	case *pg.Node_CreateTableAsStmt:
		switch {
		case s.CreateTableAsStmt.Objtype == pg.ObjectType_OBJECT_MATVIEW:
			return DDL, "CREATE MATERIALIZED VIEW", false
		case s.CreateTableAsStmt.IsSelectInto:
			return DDL, "SELECT INTO", false
		}
		return DDL, "CREATE TABLE AS", false
	case *pg.Node_AlterTableStmt:
		return DDL, alterTag(s.AlterTableStmt.Objtype), detachConcurrently(s.AlterTableStmt.Cmds)
	case *pg.Node_AlterTableMoveAllStmt:
		return DDL, alterTag(s.AlterTableMoveAllStmt.Objtype), false
	case *pg.Node_DropStmt:
		return DDL, dropTag(s.DropStmt.RemoveType), s.DropStmt.Concurrent
	case *pg.Node_DefineStmt:
		return DDL, createTag(s.DefineStmt.Kind), false
	case *pg.Node_RenameStmt:
		ot := s.RenameStmt.RenameType
		switch ot {
		case pg.ObjectType_OBJECT_COLUMN, pg.ObjectType_OBJECT_TABCONSTRAINT:
			ot = s.RenameStmt.RelationType
		case pg.ObjectType_OBJECT_ATTRIBUTE:
			ot = pg.ObjectType_OBJECT_TYPE
		}
		return DDL, alterTag(ot), false
	case *pg.Node_AlterObjectSchemaStmt:
		return DDL, alterTag(s.AlterObjectSchemaStmt.ObjectType), false
	case *pg.Node_AlterOwnerStmt:
		return DDL, alterTag(s.AlterOwnerStmt.ObjectType), false
	case *pg.Node_AlterObjectDependsStmt:
		return DDL, alterTag(s.AlterObjectDependsStmt.ObjectType), false
	case *pg.Node_AlterFunctionStmt:
		return DDL, alterTag(s.AlterFunctionStmt.Objtype), false
	case *pg.Node_CreateFunctionStmt:
		if s.CreateFunctionStmt.IsProcedure {
			return DDL, "CREATE PROCEDURE", false
		}
		return DDL, "CREATE FUNCTION", false
	case *pg.Node_GrantStmt:
		if s.GrantStmt.IsGrant {
			return DDL, "GRANT", false
		}
		return DDL, "REVOKE", false
	case *pg.Node_GrantRoleStmt:
		if s.GrantRoleStmt.IsGrant {
			return DDL, "GRANT ROLE", false
		}
		return DDL, "REVOKE ROLE", false
	case *pg.Node_IndexStmt:
		return DDL, "CREATE INDEX", s.IndexStmt.Concurrent
	case *pg.Node_AlterEnumStmt:
		// ADD VALUE could not run in a transaction block before PostgreSQL 12.
		return DDL, "ALTER TYPE", s.AlterEnumStmt.OldVal == ""
	case *pg.Node_AlterDatabaseStmt:
		return DDL, "ALTER DATABASE", optionPresent(s.AlterDatabaseStmt.Options, "tablespace")
	case *pg.Node_AlterSubscriptionStmt:
		switch s.AlterSubscriptionStmt.Kind {
		case pg.AlterSubscriptionType_ALTER_SUBSCRIPTION_REFRESH,
			pg.AlterSubscriptionType_ALTER_SUBSCRIPTION_SET_PUBLICATION,
			pg.AlterSubscriptionType_ALTER_SUBSCRIPTION_ADD_PUBLICATION,
			pg.AlterSubscriptionType_ALTER_SUBSCRIPTION_DROP_PUBLICATION:
			return DDL, "ALTER SUBSCRIPTION", true // refresh = true by default
		}
		return DDL, "ALTER SUBSCRIPTION", false
	}
	if tag, noTxn, ok := fixedDDL(n); ok {
		return DDL, tag, noTxn
	}
	return DDL, "UTILITY", false
}

// fixedDDL is the DDL whose tag depends only on the node type.
func fixedDDL(n *pg.Node) (tag string, noTxn, ok bool) {
	switch n.Node.(type) {
	case *pg.Node_CreateStmt:
		return "CREATE TABLE", false, true
	case *pg.Node_ViewStmt:
		return "CREATE VIEW", false, true
	case *pg.Node_CreateSchemaStmt:
		return "CREATE SCHEMA", false, true
	case *pg.Node_CreateSeqStmt:
		return "CREATE SEQUENCE", false, true
	case *pg.Node_AlterSeqStmt:
		return "ALTER SEQUENCE", false, true
	case *pg.Node_CreateTrigStmt:
		return "CREATE TRIGGER", false, true
	case *pg.Node_CompositeTypeStmt, *pg.Node_CreateEnumStmt, *pg.Node_CreateRangeStmt:
		return "CREATE TYPE", false, true
	case *pg.Node_AlterTypeStmt:
		return "ALTER TYPE", false, true
	case *pg.Node_CreateDomainStmt:
		return "CREATE DOMAIN", false, true
	case *pg.Node_AlterDomainStmt:
		return "ALTER DOMAIN", false, true
	case *pg.Node_CreateExtensionStmt:
		return "CREATE EXTENSION", false, true
	case *pg.Node_AlterExtensionStmt, *pg.Node_AlterExtensionContentsStmt:
		return "ALTER EXTENSION", false, true
	case *pg.Node_CreatePolicyStmt:
		return "CREATE POLICY", false, true
	case *pg.Node_AlterPolicyStmt:
		return "ALTER POLICY", false, true
	case *pg.Node_RuleStmt:
		return "CREATE RULE", false, true
	case *pg.Node_AlterOperatorStmt:
		return "ALTER OPERATOR", false, true
	case *pg.Node_CreateOpClassStmt:
		return "CREATE OPERATOR CLASS", false, true
	case *pg.Node_CreateOpFamilyStmt:
		return "CREATE OPERATOR FAMILY", false, true
	case *pg.Node_AlterOpFamilyStmt:
		return "ALTER OPERATOR FAMILY", false, true
	case *pg.Node_AlterCollationStmt:
		return "ALTER COLLATION", false, true
	case *pg.Node_CreateConversionStmt:
		return "CREATE CONVERSION", false, true
	case *pg.Node_CreateCastStmt:
		return "CREATE CAST", false, true
	case *pg.Node_CreateTransformStmt:
		return "CREATE TRANSFORM", false, true
	case *pg.Node_AlterTsdictionaryStmt:
		return "ALTER TEXT SEARCH DICTIONARY", false, true
	case *pg.Node_AlterTsconfigurationStmt:
		return "ALTER TEXT SEARCH CONFIGURATION", false, true
	case *pg.Node_CreatePublicationStmt:
		return "CREATE PUBLICATION", false, true
	case *pg.Node_AlterPublicationStmt:
		return "ALTER PUBLICATION", false, true
	case *pg.Node_CreateSubscriptionStmt:
		return "CREATE SUBSCRIPTION", true, true // create_slot = true by default
	case *pg.Node_DropSubscriptionStmt:
		return "DROP SUBSCRIPTION", true, true
	case *pg.Node_CreateEventTrigStmt:
		return "CREATE EVENT TRIGGER", false, true
	case *pg.Node_AlterEventTrigStmt:
		return "ALTER EVENT TRIGGER", false, true
	case *pg.Node_CreateFdwStmt:
		return "CREATE FOREIGN DATA WRAPPER", false, true
	case *pg.Node_AlterFdwStmt:
		return "ALTER FOREIGN DATA WRAPPER", false, true
	case *pg.Node_CreateForeignServerStmt:
		return "CREATE SERVER", false, true
	case *pg.Node_AlterForeignServerStmt:
		return "ALTER SERVER", false, true
	case *pg.Node_CreateForeignTableStmt:
		return "CREATE FOREIGN TABLE", false, true
	case *pg.Node_ImportForeignSchemaStmt:
		return "IMPORT FOREIGN SCHEMA", false, true
	case *pg.Node_CreateUserMappingStmt:
		return "CREATE USER MAPPING", false, true
	case *pg.Node_AlterUserMappingStmt:
		return "ALTER USER MAPPING", false, true
	case *pg.Node_DropUserMappingStmt:
		return "DROP USER MAPPING", false, true
	case *pg.Node_CreateStatsStmt:
		return "CREATE STATISTICS", false, true
	case *pg.Node_AlterStatsStmt:
		return "ALTER STATISTICS", false, true
	case *pg.Node_CreateAmStmt:
		return "CREATE ACCESS METHOD", false, true
	case *pg.Node_CreatePlangStmt:
		return "CREATE LANGUAGE", false, true
	case *pg.Node_CreateRoleStmt:
		return "CREATE ROLE", false, true
	case *pg.Node_AlterRoleStmt, *pg.Node_AlterRoleSetStmt:
		return "ALTER ROLE", false, true
	case *pg.Node_DropRoleStmt:
		return "DROP ROLE", false, true
	case *pg.Node_DropOwnedStmt:
		return "DROP OWNED", false, true
	case *pg.Node_ReassignOwnedStmt:
		return "REASSIGN OWNED", false, true
	case *pg.Node_CommentStmt:
		return "COMMENT", false, true
	case *pg.Node_SecLabelStmt:
		return "SECURITY LABEL", false, true
	case *pg.Node_AlterDefaultPrivilegesStmt:
		return "ALTER DEFAULT PRIVILEGES", false, true
	case *pg.Node_CreatedbStmt:
		return "CREATE DATABASE", true, true
	case *pg.Node_DropdbStmt:
		return "DROP DATABASE", true, true
	case *pg.Node_AlterDatabaseSetStmt, *pg.Node_AlterDatabaseRefreshCollStmt:
		return "ALTER DATABASE", false, true
	case *pg.Node_CreateTableSpaceStmt:
		return "CREATE TABLESPACE", true, true
	case *pg.Node_DropTableSpaceStmt:
		return "DROP TABLESPACE", true, true
	case *pg.Node_AlterTableSpaceOptionsStmt:
		return "ALTER TABLESPACE", false, true
	case *pg.Node_AlterSystemStmt:
		// Changes the server's configuration: refused on tenants like DDL.
		return "ALTER SYSTEM", true, true
	}
	return "", false, false
}

// selectInto reports whether a SELECT (or the arm of a set operation) has an
// INTO clause, which makes it CREATE TABLE AS.
func selectInto(s *pg.SelectStmt) bool {
	for s != nil {
		if s.IntoClause != nil || selectInto(s.Rarg) {
			return true
		}
		s = s.Larg
	}
	return false
}

func classifyExplain(e *pg.ExplainStmt) (Kind, string, bool) {
	if !optionOn(e.Options, "analyze") {
		return Other, "EXPLAIN", false // plans only, runs nothing
	}
	switch k, _, _ := classifyNode(e.Query); k {
	case DDL, DML:
		return k, "EXPLAIN", false
	}
	return Other, "EXPLAIN", false
}

func classifyTxn(t *pg.TransactionStmt) (Kind, string, bool) {
	switch t.Kind {
	case pg.TransactionStmtKind_TRANS_STMT_BEGIN:
		return Begin, "BEGIN", false
	case pg.TransactionStmtKind_TRANS_STMT_START:
		return Begin, "START TRANSACTION", false
	case pg.TransactionStmtKind_TRANS_STMT_COMMIT:
		return Commit, "COMMIT", false
	case pg.TransactionStmtKind_TRANS_STMT_ROLLBACK:
		return Rollback, "ROLLBACK", false
	case pg.TransactionStmtKind_TRANS_STMT_SAVEPOINT:
		return Savepoint, "SAVEPOINT", false
	case pg.TransactionStmtKind_TRANS_STMT_RELEASE:
		return Release, "RELEASE", false
	case pg.TransactionStmtKind_TRANS_STMT_ROLLBACK_TO:
		return RollbackTo, "ROLLBACK TO", false
	case pg.TransactionStmtKind_TRANS_STMT_PREPARE:
		return PrepareTxn, "PREPARE TRANSACTION", false
	case pg.TransactionStmtKind_TRANS_STMT_COMMIT_PREPARED:
		return CommitPrepared, "COMMIT PREPARED", true
	case pg.TransactionStmtKind_TRANS_STMT_ROLLBACK_PREPARED:
		return RollbackPrepared, "ROLLBACK PREPARED", true
	}
	return Other, "TRANSACTION", false
}

// detachConcurrently reports ALTER TABLE … DETACH PARTITION … CONCURRENTLY.
func detachConcurrently(cmds []*pg.Node) bool {
	for _, c := range cmds {
		cmd := c.GetAlterTableCmd()
		if cmd == nil || cmd.Subtype != pg.AlterTableType_AT_DetachPartition {
			continue
		}
		if pc := cmd.Def.GetPartitionCmd(); pc != nil && pc.Concurrent {
			return true
		}
	}
	return false
}

// optionPresent reports whether a DefElem list has an option named name.
func optionPresent(opts []*pg.Node, name string) bool {
	for _, o := range opts {
		if d := o.GetDefElem(); d != nil && strings.EqualFold(d.Defname, name) {
			return true
		}
	}
	return false
}

// optionOn reports whether a boolean DefElem option (EXPLAIN ANALYZE,
// REINDEX (CONCURRENTLY)) is present and not explicitly false. Anything that
// is not clearly false counts as on, as does any repetition that is on.
func optionOn(opts []*pg.Node, name string) bool {
	for _, o := range opts {
		d := o.GetDefElem()
		if d == nil || !strings.EqualFold(d.Defname, name) {
			continue
		}
		if !explicitlyFalse(d.Arg) {
			return true
		}
	}
	return false
}

func explicitlyFalse(arg *pg.Node) bool {
	switch a := arg.GetNode().(type) {
	case *pg.Node_Boolean:
		return !a.Boolean.Boolval
	case *pg.Node_Integer:
		return a.Integer.Ival == 0
	case *pg.Node_String_:
		switch strings.ToLower(a.String_.Sval) {
		case "false", "off", "no", "0":
			return true
		}
	}
	return false
}

// settingName is the name a SET or RESET statement names, lower-cased: the
// parser has decoded quoting and escapes (SET NAMES is client_encoding,
// RESET ALL is "all", SET TRANSACTION names the transaction's
// characteristics).
func settingName(n *pg.Node) string {
	v := n.GetVariableSetStmt()
	if v == nil {
		return ""
	}
	if v.Kind == pg.VariableSetKind_VAR_RESET_ALL {
		return "all"
	}
	return strings.ToLower(v.Name)
}

// DoBody returns the code of a DO statement written in PL/pgSQL (the
// default language), as the parser read its literal.
func DoBody(sql string) (string, bool) {
	tree, err := pg.Parse(sql)
	if err != nil || len(tree.Stmts) != 1 {
		return "", false
	}
	do := tree.Stmts[0].Stmt.GetDoStmt()
	if do == nil {
		return "", false
	}
	body, found := "", false
	for _, arg := range do.Args {
		d := arg.GetDefElem()
		if d == nil {
			return "", false
		}
		switch d.Defname {
		case "as":
			body, found = d.Arg.GetString_().GetSval(), true
		case "language":
			if !strings.EqualFold(d.Arg.GetString_().GetSval(), "plpgsql") {
				return "", false
			}
		default:
			return "", false
		}
	}
	return body, found
}

// ConcurrentIndex returns the index a CREATE INDEX CONCURRENTLY statement
// makes, and its table and the schema that was named in ("" when
// unqualified), so a retry can tell what an earlier try left behind.
func ConcurrentIndex(sql string) (schema, table, name string, ok bool) {
	tree, err := pg.Parse(sql)
	if err != nil || len(tree.Stmts) != 1 {
		return "", "", "", false
	}
	ix := tree.Stmts[0].Stmt.GetIndexStmt()
	if ix == nil || !ix.Concurrent || ix.Idxname == "" || ix.Relation == nil {
		return "", "", "", false
	}
	return ix.Relation.Schemaname, ix.Relation.Relname, ix.Idxname, true
}

// bound returns why a statement's text means something only in this session
// or database (Statement.Bound), or "".
func bound(n *pg.Node) string {
	switch s := n.GetNode().(type) {
	case *pg.Node_ExplainStmt:
		return bound(s.ExplainStmt.Query)
	case *pg.Node_CreateTableAsStmt:
		if s.CreateTableAsStmt.Query.GetExecuteStmt() != nil {
			return "it runs a prepared statement of this session"
		}
	case *pg.Node_CreatePolicyStmt:
		return namesRoles(s.CreatePolicyStmt.Roles)
	case *pg.Node_AlterPolicyStmt:
		return namesRoles(s.AlterPolicyStmt.Roles)
	case *pg.Node_ReindexStmt:
		if optionOn(s.ReindexStmt.Params, "concurrently") {
			// One that fails leaves an invalid copy of an index (…_ccnew)
			// that a later plain REINDEX makes valid: schema no version
			// makes. Another session's REINDEX in progress has the same
			// invalid copies, so they cannot be told apart to be dropped.
			return "one that fails leaves an invalid copy of an index behind, which no blueprint version makes: use REINDEX without CONCURRENTLY"
		}
	case *pg.Node_IndexStmt:
		if s.IndexStmt.Concurrent && s.IndexStmt.Idxname == "" {
			// Its name is chosen from the names taken where it runs: a build
			// that fails leaves an invalid index no version names, and a
			// deployment's retry would make a second one.
			return "an index built CONCURRENTLY needs a name, or a failed or retried build leaves an index behind under a name of the server's choosing"
		}
	}
	return ""
}

// namesRoles explains a role list that names any role but PUBLIC: each
// database has roles of its own.
func namesRoles(roles []*pg.Node) string {
	for _, r := range roles {
		if spec := r.GetRoleSpec(); spec == nil || spec.Roletype != pg.RoleSpecType_ROLESPEC_PUBLIC {
			return "it names roles, and each tenant database has roles of its own: write TO PUBLIC, and let the key's role decide"
		}
	}
	return ""
}
