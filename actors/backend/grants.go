package backend

import "slices"

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
func grantStatements(db string, kind Kind) []string {
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
	return s
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
