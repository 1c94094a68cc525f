package classify

// Kind is what a statement does, as far as the proxy cares.
type Kind uint8

// Statement kinds. The zero Kind is Other.
const (
	Other            Kind = iota // utility statements that change no schema: DO, CALL, LOCK, VACUUM, SHOW, LISTEN, …
	DML                          // SELECT, INSERT, UPDATE, DELETE, MERGE, VALUES, TRUNCATE, EXPLAIN ANALYZE of these
	DDL                          // creates, alters, drops, renames, comments on or grants on schema objects
	Copy                         // COPY in either direction
	Begin                        // BEGIN, START TRANSACTION
	Commit                       // COMMIT, END (also COMMIT AND CHAIN: the session stays in a transaction)
	Rollback                     // ROLLBACK, ABORT (also ROLLBACK AND CHAIN)
	Savepoint                    // SAVEPOINT name
	RollbackTo                   // ROLLBACK TO [SAVEPOINT] name
	Release                      // RELEASE [SAVEPOINT] name
	PrepareTxn                   // PREPARE TRANSACTION 'gid'
	CommitPrepared               // COMMIT PREPARED 'gid'
	RollbackPrepared             // ROLLBACK PREPARED 'gid'
	Set                          // SET, RESET, SET CONSTRAINTS, SET TRANSACTION
)

var kindNames = [...]string{
	Other:            "Other",
	DML:              "DML",
	DDL:              "DDL",
	Copy:             "Copy",
	Begin:            "Begin",
	Commit:           "Commit",
	Rollback:         "Rollback",
	Savepoint:        "Savepoint",
	RollbackTo:       "RollbackTo",
	Release:          "Release",
	PrepareTxn:       "PrepareTxn",
	CommitPrepared:   "CommitPrepared",
	RollbackPrepared: "RollbackPrepared",
	Set:              "Set",
}

// String returns the constant's name, for logs and test failures.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "Kind(?)"
}
