package actors

import "tdb/wire"

// How the proxy sends its own statements (the capture lock and its
// release, the row guard's BEGIN, COMMIT, ROLLBACK and abort) between the
// client's batches. Not as a simple Query: PostgreSQL drops the unnamed
// prepared statement at every Query, and runs the Query's statement in the
// unnamed portal, so a client that parses an unnamed statement in one
// round trip and binds it in the next (asyncpg with statement_cache_size=0,
// libpq's PQprepare with "" and PQexecPrepared), or executes on an unnamed
// portal it left suspended, would find it gone (26000, 34000). Each
// statement runs as the extended protocol's statement and portal ownName,
// all in one write that ends with a single Sync: one implicit transaction,
// as a Query of several would be, answered up to one ReadyForQuery. The
// swallow logic (rowguard.go swallowed) drops its ParseComplete,
// BindComplete and CloseComplete messages with the rest.
//
// The exchange first closes ownName's portal and statement: after an error
// (a lock_timeout, a cancel, the row guard's abort) PostgreSQL skips every
// message up to the Sync, the closes at the end too, and a Parse of a name
// still taken would fail (42P05). A Close of a name not taken changes
// nothing. The name is the proxy's: a client's Parse of a statement, or
// Bind to a portal, of that name is refused (reservedName), as the
// exchange would close them.

// ownName names the statement and the portal the proxy's statements run as.
const ownName = "tdb_proxy_own"

// reservedName is the error for a client's statement or portal (what) named
// ownName.
func reservedName(what string) *wire.PGError {
	return wire.NewError("ERROR", "42939", "%s name %q is reserved by the proxy", what, ownName).
		WithHint("Give the " + what + " another name.")
}

// ownCloses closes ownName's portal and statement: ahead of an exchange
// what one that failed may have left, behind each statement what it left.
var ownCloses = wire.AppendClose(wire.AppendClose(nil, 'P', ownName), 'S', ownName)

// appendOwn appends the messages that run sqls, each one statement, on the
// proxy's account, in one implicit transaction ended by one Sync.
func appendOwn(buf []byte, sqls ...string) []byte {
	buf = append(buf, ownCloses...)
	for _, sql := range sqls {
		buf = wire.AppendParse(buf, ownName, sql)
		buf = wire.AppendBind(buf, ownName, ownName)
		buf = wire.AppendExecute(buf, ownName)
		buf = append(buf, ownCloses...)
	}
	return wire.AppendSync(buf)
}

// ownMessages holds the exchanges of the proxy's fixed statements, built
// once: sending one allocates nothing.
var ownMessages = map[string][]byte{}

func init() {
	for _, sql := range []string{guardBegin, guardCommit, guardRollback, guardAbort, unlockSQL} {
		ownMessages[sql] = appendOwn(nil, sql)
	}
}

// ownMessage returns the exchange that runs sql on the proxy's account.
func ownMessage(sql string) []byte {
	if msg, ok := ownMessages[sql]; ok {
		return msg
	}
	return appendOwn(nil, sql)
}
