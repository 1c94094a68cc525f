package backend

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/errors"
	"github.com/jackc/pgx/v5"

	"tdb/fsm"
	"tdb/wire/classify"
)

// The DDL journal of a tenant workspace (guard version JournalGuard on).
// DDL that commits in a workspace becomes a blueprint version when the
// proxy records it, after the COMMIT: a node that stops in between (killed,
// its host lost) would leave DDL in the workspace that no version makes.
// So an event trigger writes each DDL statement the workspace's login roles
// run into a journal table, in the statement's own transaction: a row is
// there exactly when its DDL committed. Each row carries the transaction's
// capture id, which the trigger also sends the session as a notice (code
// JournalNoticeCode); the proxy records the transaction's version under
// that id and then deletes its rows (ForgetJournalSQL). Rows still there
// when a session next takes the capture lock are DDL that committed and
// may not be recorded: that session records them first (under the same
// ids, so a version recorded already is not made twice) and deletes them.

// JournalGuard is the first guard version that keeps the journal in tenant
// workspaces.
const JournalGuard = 4

// JournalNoticeCode is the SQLSTATE of the notice that tells the session a
// DDL statement's capture id; the proxy takes it out of the stream.
const JournalNoticeCode = "TDBJ0"

// captureIDPattern is the form of a journal capture id: the transaction's
// id and its start in microseconds since 1970, which no transaction of a
// database restored from a backup (that reuses ids) shares with one before.
var captureIDPattern = regexp.MustCompile(`^[0-9]{1,20}@-?[0-9]{1,20}$`)

// ValidCaptureID reports whether id has the form of a journal capture id,
// so it can be written into SQL as it is.
func ValidCaptureID(id string) bool { return captureIDPattern.MatchString(id) }

// journalStatements install the journal in database db; login is the SQL
// condition that the session logged in as one of its login roles.
func journalStatements(db, login string) []string {
	logins := idents(RoleName(db, RoleAdmin), RoleName(db, RoleWrite), RoleName(db, RoleRead))
	return append([]string{
		`CREATE TABLE IF NOT EXISTS ` + guardSchema + `.journal (
			seq pg_catalog.int8 GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
			capture_id pg_catalog.text NOT NULL,
			query pg_catalog.text,
			tag pg_catalog.text NOT NULL,
			received pg_catalog.timestamptz NOT NULL,
			timezone pg_catalog.text NOT NULL,
			datestyle pg_catalog.text NOT NULL,
			intervalstyle pg_catalog.text NOT NULL
		)`,
		// A message's text is held once per transaction (the row of its first
		// DDL statement; its later rows hold NULL), found by this index: a
		// migration of n statements in one message would otherwise write
		// its whole text n times.
		"ALTER TABLE " + guardSchema + ".journal ALTER COLUMN query DROP NOT NULL", // as a journal made before held it
		"CREATE INDEX IF NOT EXISTS journal_message ON " + guardSchema + ".journal (capture_id, received)",
		"REVOKE ALL ON TABLE " + guardSchema + ".journal FROM PUBLIC",
		// Readable by the login roles (the same DDL as the blueprint's):
		// pg_dump locks every table it can see, and a key's dump of the
		// workspace would fail on one it cannot read.
		"GRANT SELECT ON TABLE " + guardSchema + ".journal TO " + logins,
		// The notice must reach the proxy whatever client_min_messages the
		// client set: the function sets it for its own run.
		`CREATE OR REPLACE FUNCTION ` + guardSchema + `.journal_ddl() RETURNS event_trigger
		LANGUAGE plpgsql SECURITY DEFINER
		SET search_path = pg_catalog, pg_temp SET client_min_messages = notice AS $journal$
		DECLARE
			id pg_catalog.text;
		BEGIN
			-- What the proxy does not take for DDL: data and indexes rebuilt
			-- (PostgreSQL 17 fires event triggers for REINDEX).
			IF NOT (` + login + `) OR tg_tag OPERATOR(pg_catalog.=) ANY (ARRAY['REFRESH MATERIALIZED VIEW', 'REINDEX']) THEN
				RETURN;
			END IF;
			id := pg_catalog.pg_current_xact_id()::pg_catalog.text OPERATOR(pg_catalog.||) '@' OPERATOR(pg_catalog.||)
				pg_catalog.floor(pg_catalog.date_part('epoch', pg_catalog.transaction_timestamp()) OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8::pg_catalog.text;
			INSERT INTO ` + guardSchema + `.journal (capture_id, query, tag, received, timezone, datestyle, intervalstyle)
				VALUES (id, CASE WHEN EXISTS (SELECT 1 FROM ` + guardSchema + `.journal j
						WHERE j.capture_id OPERATOR(pg_catalog.=) id AND j.received OPERATOR(pg_catalog.=) pg_catalog.statement_timestamp())
					THEN NULL ELSE pg_catalog.current_query() END,
					tg_tag, pg_catalog.statement_timestamp(),
					pg_catalog.current_setting('TimeZone'), pg_catalog.current_setting('DateStyle'), pg_catalog.current_setting('IntervalStyle'));
			RAISE NOTICE USING MESSAGE = id, ERRCODE = '` + JournalNoticeCode + `';
		END $journal$`,
		"REVOKE ALL ON FUNCTION " + guardSchema + ".journal_ddl() FROM PUBLIC",
		// journal_pending and forget_journal are what the sessions call,
		// logged in as a login role, under the capture lock. The lock's
		// Query calls journal_pending once the lock is granted, and the
		// rows of the session it waited for are committed only then: it is
		// VOLATILE so that its query reads with a snapshot of its own, taken
		// then, not the calling statement's. A transaction that reads with
		// one snapshot throughout (repeatable read, serializable) cannot see
		// them: it answers true, and the session reads the journal over a
		// connection of its own.
		`CREATE OR REPLACE FUNCTION ` + guardSchema + `.journal_pending() RETURNS pg_catalog.bool
		LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS
		'SELECT pg_catalog.current_setting(''transaction_isolation'') OPERATOR(pg_catalog.<>) ''read committed''
			OR EXISTS (SELECT 1 FROM ` + guardSchema + `.journal)'`,
		// forget_journal runs in the statement that gives the capture lock
		// back: in a read-only transaction (the client set
		// default_transaction_read_only) it deletes nothing rather than
		// fail, since the lock would then never go back. The rows stay,
		// and the next session records them again under their ids, which
		// adds nothing.
		`CREATE OR REPLACE FUNCTION ` + guardSchema + `.forget_journal(ids pg_catalog.text[]) RETURNS pg_catalog.int8
		LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $forget$
		DECLARE
			n pg_catalog.int8;
		BEGIN
			IF pg_catalog.current_setting('transaction_read_only') OPERATOR(pg_catalog.=) 'on' THEN
				RETURN 0;
			END IF;
			DELETE FROM ` + guardSchema + `.journal WHERE capture_id OPERATOR(pg_catalog.=) ANY (ids);
			GET DIAGNOSTICS n = ROW_COUNT;
			RETURN n;
		END $forget$`,
		"REVOKE ALL ON FUNCTION " + guardSchema + ".journal_pending(), " + guardSchema + ".forget_journal(pg_catalog.text[]) FROM PUBLIC",
		"GRANT USAGE ON SCHEMA " + guardSchema + " TO " + logins,
		"GRANT EXECUTE ON FUNCTION " + guardSchema + ".journal_pending() TO " + logins,
		// Only the admin role runs DDL, so only its sessions record versions
		// and delete their rows: a read or write key must not be able to
		// delete the rows of DDL left unrecorded (whose ids it can read).
		"GRANT EXECUTE ON FUNCTION " + guardSchema + ".forget_journal(pg_catalog.text[]) TO " + idents(RoleName(db, RoleAdmin)),
		"REVOKE EXECUTE ON FUNCTION " + guardSchema + ".forget_journal(pg_catalog.text[]) FROM " + idents(RoleName(db, RoleWrite), RoleName(db, RoleRead)),
	}, eventTrigger("tdb_journal_ddl", "ddl_command_end", guardSchema+".journal_ddl()")...)
}

// JournalPendingSQL is what the capture lock's Query also asks in a
// workspace that keeps the journal: whether DDL committed that its session
// may not have recorded.
const JournalPendingSQL = guardSchema + ".journal_pending()"

// ForgetJournalSQL returns the call that deletes the journal rows of the
// given capture ids (each checked by ValidCaptureID), once recorded.
func ForgetJournalSQL(ids []string) string {
	quoted := make([]string, 0, len(ids))
	for _, id := range ids {
		if ValidCaptureID(id) {
			quoted = append(quoted, `'`+id+`'`)
		}
	}
	return guardSchema + ".forget_journal(ARRAY[" + strings.Join(quoted, ", ") + "]::pg_catalog.text[])"
}

// JournalRow is one DDL statement the journal holds.
type JournalRow struct {
	Seq       int64
	CaptureID string
	// Query is the text of the client's message that ran the statement
	// (a simple Query may hold several statements), Received when the
	// server received it; Tag is the statement's command tag.
	Query    string
	Tag      string
	Received time.Time
	// The settings the statement ran with, as a blueprint version carries
	// them.
	TimeZone, DateStyle, IntervalStyle string
}

// ReadJournal returns the rows of the journal of database db (a workspace
// whose guard keeps one), in the order the statements ran. Rows a session
// is deleting are passed over: their version is recorded, and the statement
// that deletes them gives the capture lock back before its DELETE commits,
// so the next holder of the lock may find them still there.
func ReadJournal(ctx context.Context, superuserURL, db string) ([]JournalRow, error) {
	conn, err := connect(ctx, superuserURL, db)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	return readJournal(ctx, conn, db)
}

// readJournal is ReadJournal over conn, a superuser connection to db.
func readJournal(ctx context.Context, conn *pgx.Conn, db string) ([]JournalRow, error) {
	rows, err := conn.Query(ctx, `SELECT seq, capture_id, query, tag, received, timezone, datestyle, intervalstyle
		FROM `+guardSchema+`.journal ORDER BY seq FOR UPDATE SKIP LOCKED`)
	if err != nil {
		return nil, errors.Wrapf(err, "read the DDL journal of database %s", db)
	}
	// A row whose query is NULL is of the message of an earlier row of
	// its transaction, with the same received.
	type message struct {
		id       string
		received int64
	}
	texts := map[message]string{}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (JournalRow, error) {
		var j JournalRow
		var query *string
		err := r.Scan(&j.Seq, &j.CaptureID, &query, &j.Tag, &j.Received, &j.TimeZone, &j.DateStyle, &j.IntervalStyle)
		m := message{j.CaptureID, j.Received.UnixMicro()}
		if query != nil {
			texts[m] = *query
		}
		j.Query = texts[m]
		return j, err
	})
	return out, errors.Wrapf(err, "read the DDL journal of database %s", db)
}

// forgetJournal deletes the journal rows of capture ids from database db,
// over conn.
func forgetJournal(ctx context.Context, conn *pgx.Conn, db string, ids []string) error {
	_, err := conn.Exec(ctx, "SELECT "+ForgetJournalSQL(ids))
	return errors.Wrapf(err, "delete recorded DDL from the journal of database %s", db)
}

// JournalVersion is the DDL of one committed transaction the journal
// holds, as a blueprint version records it.
type JournalVersion struct {
	CaptureID  string
	Statements []string
	// The settings its first statement ran with.
	TimeZone, DateStyle, IntervalStyle string
	// Err says why its statements could not be told from the rows; then
	// Statements is empty, and Rows says what the journal held.
	Err  error
	Rows []JournalRow
}

// Command is the command that records v as the next blueprint version of
// a workspace. The key that ran it is not known.
func (v JournalVersion) Command(projectID, workspace string, now time.Time) *fsm.AddBlueprintVersion {
	cmd := &fsm.AddBlueprintVersion{
		ProjectID: projectID, Workspace: workspace, Statements: v.Statements,
		Checksum: fsm.VersionChecksum(v.Statements), At: now.UTC(), CaptureID: v.CaptureID,
	}
	if settings := (fsm.SessionSettings{TimeZone: v.TimeZone, DateStyle: v.DateStyle, IntervalStyle: v.IntervalStyle}); settings.Valid() {
		cmd.Settings = &settings
	}
	return cmd
}

// firesNoTrigger are DDL statements (as the proxy classifies them) that
// fire no ddl_command_end, so the journal holds no row for them: CLUSTER …
// USING, roles (objects of the whole server), PREPARE of a SELECT INTO
// (its EXECUTE is the statement that runs it), and EXPLAIN ANALYZE of a
// CREATE TABLE … AS (PostgreSQL runs it without the event triggers).
var firesNoTrigger = map[string]bool{"CLUSTER": true, "GRANT ROLE": true, "REVOKE ROLE": true, "PREPARE": true, "EXPLAIN": true}

// JournalVersions tells, from the journal's rows (in their order), the
// statements of each transaction they hold, in commit order. A row holds
// the text of the whole client message its statement was part of: the
// message's DDL statements, parsed as the proxy parses them, are matched
// in order to the rows of that message (which may span transactions, and
// repeat when a prepared statement ran more than once), each by its
// command tag. Where they do not match (a savepoint rolled back part of the
// message, a function ran DDL), the transaction's Err says so: its
// statements cannot be known for sure, and are not guessed.
func JournalVersions(rows []JournalRow) []JournalVersion {
	type message struct {
		query    string
		received int64
	}
	byMessage := map[message][]int{}
	for i, r := range rows {
		m := message{r.Query, r.Received.UnixMicro()}
		byMessage[m] = append(byMessage[m], i)
	}
	texts := make([]string, len(rows))
	errs := make([]error, len(rows))
	for m, idx := range byMessage {
		ddl, err := journalDDL(m.query)
		if err == nil && len(idx)%len(ddl) != 0 {
			err = errors.Newf("the journal holds %d statements of a message with %d DDL statements", len(idx), len(ddl))
		}
		for n, i := range idx {
			if err == nil && ddl[n%len(ddl)].Tag != rows[i].Tag {
				err = errors.Newf("the journal holds a %s where the message has a %s", rows[i].Tag, ddl[n%len(ddl)].Tag)
			}
			if err == nil {
				texts[i] = ddl[n%len(ddl)].Text
			}
		}
		if err != nil {
			for _, i := range idx {
				errs[i] = err
			}
		}
	}
	var out []JournalVersion
	at := map[string]int{}
	for i, r := range rows {
		k, ok := at[r.CaptureID]
		if !ok {
			k = len(out)
			at[r.CaptureID] = k
			out = append(out, JournalVersion{CaptureID: r.CaptureID, TimeZone: r.TimeZone, DateStyle: r.DateStyle, IntervalStyle: r.IntervalStyle})
		}
		v := &out[k]
		v.Rows = append(v.Rows, r)
		v.Statements = append(v.Statements, texts[i])
		if v.Err == nil {
			v.Err = errs[i]
		}
	}
	for i := range out {
		if out[i].Err != nil {
			out[i].Statements = nil
		}
	}
	return out
}

// journalDDL returns the DDL statements of a message's text that fire the
// journal's trigger, or why there are none.
func journalDDL(query string) ([]classify.Statement, error) {
	r := classify.Classify(query)
	if r.Unparsed || r.TooComplex || r.TooLong {
		return nil, errors.New("the message's text does not parse")
	}
	var ddl []classify.Statement
	for _, st := range r.Statements {
		if st.Kind == classify.Other && classify.CreatesTypeIfMissing(st) {
			// The proxy records such a DO block as DDL; it ran a CREATE TYPE.
			st.Kind, st.Tag = classify.DDL, "CREATE TYPE"
		}
		if st.Kind == classify.DDL && !firesNoTrigger[st.Tag] {
			ddl = append(ddl, st)
		}
	}
	if len(ddl) == 0 {
		return nil, errors.New("the message holds no DDL statement: a function or DO block ran it")
	}
	return ddl, nil
}

// JournalRecorder is how RecoverJournal records a workspace's versions.
type JournalRecorder struct {
	// Recorded reports whether the state (as this node has it) holds a
	// version of capture id already: its rows are then only deleted.
	Recorded func(captureID string) bool
	// Record commits v as the workspace's next blueprint version, under
	// its capture id (one recorded already is not made twice).
	Record func(v JournalVersion) error
	// Refused reports whether Record's error is the state's refusal.
	Refused func(error) bool
	Logf    func(format string, args ...any)
}

// NewJournalRecorder records the versions the journal of workspace of
// project holds with propose, at the times now gives, reading f for those
// recorded already.
func NewJournalRecorder(f *fsm.FSM, projectID, workspace string, now func() time.Time, propose func(*fsm.AddBlueprintVersion) error, logf func(string, ...any)) JournalRecorder {
	return JournalRecorder{
		Recorded: func(id string) bool {
			known := false
			f.View(func(st *fsm.State) { known = st.HasCapture(projectID, workspace, id) })
			return known
		},
		Record:  func(v JournalVersion) error { return propose(v.Command(projectID, workspace, now())) },
		Refused: func(err error) bool { return errors.As(err, new(*fsm.Error)) },
		Logf:    logf,
	}
}

// RecoverJournal records, in order, the DDL the journal of database db
// holds: transactions that committed and may not be recorded. Those
// recorded already are passed over; those whose statements the rows
// cannot tell are logged with what the journal held. The rows of all are
// then deleted. It stops at the first version Record fails to commit, and
// returns that error, deleting no row: the statements of a transaction are
// told from the rows of every transaction of its client's message, and
// the next recovery passes over those recorded. A refusal of the state is
// logged and passed over, since every later try would meet it too.
func RecoverJournal(ctx context.Context, superuserURL, db string, r JournalRecorder) error {
	conn, err := connect(ctx, superuserURL, db)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return recoverJournal(ctx, conn, db, r)
}

// recoverJournal is RecoverJournal over conn, a superuser connection to
// db: the journal is read and its rows deleted over the one connection.
func recoverJournal(ctx context.Context, conn *pgx.Conn, db string, r JournalRecorder) error {
	rows, err := readJournal(ctx, conn, db)
	if err != nil {
		return err
	}
	var done []string
	defer func() {
		if len(done) == 0 {
			return
		}
		if err := forgetJournal(ctx, conn, db, done); err != nil {
			// Recorded: the next session records them again under the
			// same ids, which adds nothing.
			r.Logf("%v", err)
		}
	}()
	for _, v := range JournalVersions(rows) {
		switch {
		case r.Recorded(v.CaptureID):
			// Its session recorded it, and had not deleted the rows (the
			// DDL ran without the capture lock, behind other batches).
		case v.Err != nil:
			var held []string
			for _, row := range v.Rows {
				held = append(held, row.Tag+" in "+strconv.Quote(row.Query))
			}
			r.Logf("DDL that committed in %s (capture %s) is not recorded as a blueprint version and cannot be: %v; the journal held: %s",
				db, v.CaptureID, v.Err, strings.Join(held, "; "))
		default:
			err := r.Record(v)
			if err != nil && !r.Refused(err) {
				done = nil
				return err
			}
			if err != nil {
				r.Logf("DDL that committed in %s (capture %s) cannot be recorded: %v", db, v.CaptureID, err)
			} else {
				r.Logf("recorded DDL that committed in %s and that its session may not have recorded (capture %s, %d statements; not twice if it did)", db, v.CaptureID, len(v.Statements))
			}
		}
		done = append(done, v.CaptureID)
	}
	return nil
}

// ErrNoJournal marks SweepJournal's error when the database holds no
// journal: its guard is not (or no longer) the one the state records (a
// server restored from a backup of before it, a schema dropped by hand).
var ErrNoJournal = errors.New("the database keeps no DDL journal")

// SweepJournal records what the journal of database db holds
// (RecoverJournal) when no session holds the capture lock: it takes the
// lock without waiting, and reports whether it did. A session that holds
// it read the journal when it took it.
func SweepJournal(ctx context.Context, superuserURL, db string, r JournalRecorder) (bool, error) {
	conn, err := connect(ctx, superuserURL, db)
	if err != nil {
		return false, err
	}
	defer conn.Close(context.Background()) // also gives the lock back
	var locked, pending bool
	if err := conn.QueryRow(ctx, "SELECT pg_catalog.pg_try_advisory_lock($1)", int64(CaptureLockKey)).Scan(&locked); err != nil || !locked {
		return false, errors.Wrapf(err, "take the capture lock of database %s", db)
	}
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM "+guardSchema+".journal)").Scan(&pending); err != nil {
		if isCode(err, "42P01", "3F000") { // undefined table, schema
			err = errors.Mark(err, ErrNoJournal)
		}
		return true, errors.Wrapf(err, "read the DDL journal of database %s", db)
	}
	if !pending {
		return true, nil
	}
	return true, recoverJournal(ctx, conn, db, r)
}
