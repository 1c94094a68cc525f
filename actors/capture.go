package actors

import (
	"cmp"
	"context"
	"strconv"
	"time"

	"github.com/cockroachdb/errors"

	"tdb/actors/backend"
	"tdb/fsm"
	"tdb/wire"
	"tdb/wire/classify"
)

// captures reports whether DDL that commits in this session becomes a
// blueprint version: only in the database of a tenant-mode workspace.
func (s *session) captures() bool {
	return s.login.kind == fsm.KindWorkspace && s.login.mode == fsm.ModeTenant
}

// recordVersion commits DDL that committed in the workspace as the next
// blueprint version, before the client sees ReadyForQuery, so a deployment
// started right after sees it. It tries again for up to RecordWait (a
// leader lost mid-statement, an election): the session holds the
// workspace's capture lock meanwhile, so no other DDL commits ahead of its
// version, and the client waits as for a slow statement. If the version
// still cannot be recorded the client gets a WARNING notice saying so (the
// DDL has already committed in the workspace and cannot be taken back), at
// once if the state refused it or the proxy stopped waiting for its
// sessions (Proxy.Close past StopWait). Retries carry the same capture id,
// so the commit is recorded once: the one the workspace's DDL journal gave
// it, under which the next session records it if this one does not
// (journal.go). Once one that the journal holds is not recorded, the
// session records none after it until the journal has (journalHeld): a
// version is recorded after those of the DDL that committed before it.
func (s *session) recordVersion(tx captured) *wire.PGError {
	cmd := &fsm.AddBlueprintVersion{
		ProjectID:  s.login.projectID,
		Workspace:  s.login.workspace,
		Statements: tx.ddl,
		Checksum:   fsm.VersionChecksum(tx.ddl),
		KeyID:      s.login.keyID,
		At:         s.proxy.cfg.Now().UTC(),
		// One id for every attempt: an attempt whose outcome was unknown
		// (the leader stepped down after appending it) may have committed,
		// and the next one then adds nothing.
		CaptureID: cmp.Or(tx.id, randomHex(16)),
	}
	if tx.settings.Valid() { // as the backend reported them
		cmd.Settings = &tx.settings
	}
	s.mu.Lock()
	held := tx.id != "" && s.journalHeld
	s.mu.Unlock()
	var err error
	if held {
		err = errors.New("DDL that committed before it in this session is not recorded yet, and it is recorded after that")
	} else {
		err = s.proposeVersion(cmd)
	}
	if err == nil {
		if tx.id != "" {
			s.mu.Lock()
			s.journalDone = append(s.journalDone, tx.id)
			s.mu.Unlock()
		}
		return nil
	}
	s.proxy.cfg.Logf("proxy: record blueprint version of %s: %v", s.login.workspace, err)
	w := wire.NewError("WARNING", "01000", "the DDL committed in the workspace but was not recorded as a blueprint version: %v", err)
	if tx.id != "" && !errors.As(err, new(*fsm.Error)) {
		w = w.WithHint("The workspace's DDL journal holds it: it is recorded before the workspace's next DDL runs.")
		// The journal records it, and those after it, in their order. It
		// tells a transaction's statements from the rows of every
		// transaction of its client's message: the rows of those recorded
		// since the lock was taken stay too (recorded, they are passed over).
		s.mu.Lock()
		s.journalHeld, s.journalDone = true, nil
		s.mu.Unlock()
	}
	return w
}

// proposeVersion commits cmd, trying again for up to RecordWait unless the
// state refuses it.
func (s *session) proposeVersion(cmd *fsm.AddBlueprintVersion) error {
	deadline := time.Now().Add(s.proxy.cfg.RecordWait)
	var err error
	for attempt := 1; ; attempt++ {
		try := time.Now().Add(10 * time.Second)
		if try.After(deadline) {
			try = deadline
		}
		ctx, cancel := context.WithDeadline(s.proxy.cutOff, try)
		_, _, err = s.proxy.cfg.Propose.Apply(ctx, fsm.CmdAddBlueprintVersion, cmd)
		cancel()
		if err == nil {
			if attempt > 1 {
				s.proxy.cfg.Logf("proxy: recorded the blueprint version of %s at attempt %d", s.login.workspace, attempt)
			}
			return nil
		}
		if fe := (*fsm.Error)(nil); errors.As(err, &fe) {
			// The state refused it (the workspace deleted or taken out of
			// tenant mode meanwhile): every replica refuses it alike, and
			// trying again would only hold the client and the lock.
			return err
		}
		pause := min(time.Duration(attempt)*200*time.Millisecond, 2*time.Second)
		if time.Until(deadline) < pause || s.proxy.cutOff.Err() != nil {
			return err
		}
		if attempt == 1 {
			s.proxy.cfg.Logf("proxy: record blueprint version of %s: %v; trying again for up to %s", s.login.workspace, err, s.proxy.cfg.RecordWait)
		}
		time.Sleep(pause)
	}
}

// ddlUnrecordable reports whether r holds DDL that would commit in this
// tenant workspace while this node cannot confirm it is in touch with the
// raft leader (Proxy.leaderUnconfirmed): recordVersion would then fail to
// record it. It is asked for every text with DDL, never remembered.
func (s *session) ddlUnrecordable(r classify.Result) bool {
	return s.captures() && r.HasDDL() && s.proxy.leaderUnconfirmed()
}

// leaderLostDDL refuses DDL in a tenant workspace on a node that cannot
// confirm it is in touch with the raft leader (ddlUnrecordable).
func leaderLostDDL() *wire.PGError {
	return wire.NewError("ERROR", "57P03", "DDL cannot run in a tenant workspace while this node cannot reach the cluster leader: it could not be recorded as a blueprint version").
		WithHint("Try again shortly, or connect to another node.")
}

// dropFailedBuild drops the invalid index a CREATE INDEX CONCURRENTLY that
// failed in this session left in the workspace, before the client sees the
// batch end. No version makes that index, so left there it would part the
// workspace from its tenants: a DROP INDEX of it would be recorded and fail
// on every tenant, a REINDEX would make it valid unrecorded. It returns a
// warning when the index could not be dropped, else nil. An unnamed one
// never runs here (its Statement.Bound refuses it).
func (s *session) dropFailedBuild() *wire.PGError {
	s.mu.Lock()
	stmt := s.failedBuild
	s.failedBuild = ""
	s.mu.Unlock()
	if stmt == "" {
		return nil
	}
	url, db, _ := s.workspaceDatabase()
	ctx, cancel := context.WithTimeout(s.proxy.cutOff, 30*time.Second) // as recoverJournal
	defer cancel()
	dropped, err := "", errors.New("the workspace's database is not known here")
	if url != "" {
		dropped, err = backend.DropInvalidIndex(ctx, url, db, stmt)
	}
	if err != nil {
		s.proxy.cfg.Logf("proxy: drop the invalid index a failed build left in %s: %v", s.login.database, err)
		return wire.NewError("WARNING", "01000", "the failed CREATE INDEX CONCURRENTLY left an invalid index in the workspace, which no blueprint version makes, and it could not be dropped: %v", err).
			WithHint("Run the statement again once its cause is fixed: it is then refused as the index exists. Ask the operator to drop the invalid index.")
	}
	if dropped != "" {
		s.proxy.cfg.Logf("proxy: dropped the invalid index %s a failed build left in %s", dropped, s.login.database)
	}
	return nil
}

// dataNotDeployed returns the notice for a recorded version whose
// transaction also changed rows: the data changes stay in the workspace,
// and a version that relies on them (a NOT NULL after a backfill) fails on
// tenants that have rows.
func (s *session) dataNotDeployed() *wire.PGError {
	s.mu.Lock()
	n, tag := s.track.takeWrites()
	s.mu.Unlock()
	if n == 0 {
		return nil
	}
	what := "1 statement"
	if n > 1 {
		what = strconv.Itoa(n) + " statements"
	}
	e := wire.NewError("WARNING", "01000",
		"blueprint version recorded with the DDL only: %s of the same transaction changed rows (%s) in this workspace, and data changes are not deployed to tenants", what, tag)
	return e.WithHint("A schema change that needs the data changed first (SET NOT NULL after a backfill) fails on tenants that have rows. " +
		"Split it: add the column in one version, deploy it, fill the column on each tenant, then make it NOT NULL in a later version; or give the column a DEFAULT.")
}

// paramsInDDL refuses, where DDL is recorded, a DDL statement that refers
// to bind parameters: the version would hold "$1" without its value, and
// every tenant would fail on it ("there is no parameter $1").
func (s *session) paramsInDDL(r classify.Result) *wire.PGError {
	if !s.captures() {
		return nil
	}
	for i := range r.Statements {
		st := &r.Statements[i]
		if st.Tag == "CREATE FUNCTION" || st.Tag == "CREATE PROCEDURE" {
			continue // $1 in a SQL-standard body (RETURN $1 + 1) is the routine's argument
		}
		if st.Kind == classify.DDL && classify.HasParams(st.Text) {
			return wire.NewError("ERROR", "0A000",
				"DDL with bind parameters cannot be recorded as a blueprint version: tenants would run it without their values").
				WithHint("Write the values into the statement text.")
		}
	}
	return nil
}

// settingsChangedInTx reports whether the session's TimeZone, DateStyle or
// IntervalStyle changed since the DDL its transaction already holds: a
// blueprint version carries one set of them.
func (s *session) settingsChangedInTx() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.track.settingsChanged()
}

// revertsSettingsBefore reports whether a statement of r before its i-th
// ends or rolls back part of a transaction the session has open, in which
// TimeZone, DateStyle or IntervalStyle changed: a SET LOCAL, or a SET made
// in it, goes back then, and PostgreSQL reports the change only at the end
// of the query, after the i-th statement ran.
func (s *session) revertsSettingsBefore(r classify.Result, i int) bool {
	ends := false
	for _, st := range r.Statements[:i] {
		ends = ends || exitKind(st.Kind)
	}
	if !ends {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.txStatus != 'I' && s.track.txTouched
}
