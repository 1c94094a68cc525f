package actors

import (
	"context"
	"encoding/binary"
	"strings"
	"time"

	"github.com/cockroachdb/errors"

	"tdb/actors/backend"
	"tdb/fsm"
	"tdb/wire"
)

// The workspace's DDL journal (backend/journal.go), as a session uses it:
// the journal's notice gives each transaction's DDL its capture id
// (tracker.journalNotice), the version is recorded under it
// (recordVersion), and the lock's release deletes its rows
// (unlockStatement). The lock's statement also asks whether the journal holds
// rows left by a session that did not record them (its node stopped, or
// the leader could not be reached); the session that takes the lock then
// records them before its own batch runs (recoverJournal).

// workspaceDatabase returns the superuser URL of the backend that holds the
// session's workspace database, its name, and the version of the guard
// installed in it; url is "" when the state does not know them.
func (s *session) workspaceDatabase() (url, db string, guard int) {
	s.proxy.cfg.FSM.View(func(st *fsm.State) {
		if t, ok := st.Resolve(s.login.projectID, s.login.database); ok && t.Database != nil {
			if b := st.Backends[t.Database.Backend]; b != nil {
				url, db, guard = b.URL, t.Database.Name, t.Database.Guard
			}
		}
	})
	return url, db, guard
}

// keepsJournal reports whether the session's workspace keeps the DDL
// journal.
func (s *session) keepsJournal() bool {
	if !s.captures() {
		return false
	}
	_, _, guard := s.workspaceDatabase()
	return guard >= backend.JournalGuard
}

// journalNotice takes the journal's notice out of the stream (backend
// pump): the capture id of the DDL statement running. It reports whether
// body was one.
func (s *session) journalNotice(body []byte) bool {
	_, code, msg, err := wire.ParseErrorFields(body)
	if err != nil || code != backend.JournalNoticeCode {
		return false
	}
	if backend.ValidCaptureID(msg) {
		s.mu.Lock()
		s.track.journalNotice(msg)
		s.mu.Unlock()
	}
	return true
}

// journalPendingRow reads the lock statement's DataRow: whether its second
// column, the journal's answer, is true.
func journalPendingRow(body []byte) bool {
	if len(body) < 2 || binary.BigEndian.Uint16(body) != 2 {
		return false
	}
	p := body[2:]
	for col := 0; col < 2; col++ {
		if len(p) < 4 {
			return false
		}
		n := int32(binary.BigEndian.Uint32(p))
		p = p[4:]
		if n < 0 {
			if col == 1 {
				return false
			}
			continue
		}
		if int(n) > len(p) {
			return false
		}
		if col == 1 {
			return string(p[:n]) == "t"
		}
		p = p[n:]
	}
	return false
}

// unlockStatement is the statement that gives the capture lock back, and
// deletes the journal rows of the versions recorded since it was taken.
// Sent again after it failed, it only gives the lock back: a delete that
// fails (the client's statement_timeout) would fail each time, and the
// rows it leaves the next session deletes.
func (s *session) unlockStatement() string {
	s.mu.Lock()
	ids, again := s.journalDone, s.unlockTries > 0
	s.mu.Unlock()
	if len(ids) == 0 || again {
		return unlockSQL
	}
	return "SELECT " + backend.ForgetJournalSQL(ids) + ", " + strings.TrimPrefix(unlockSQL, "SELECT ")
}

// recoverJournal records, in order, the DDL the workspace's journal holds
// (backend.RecoverJournal). It returns the error that refuses the client's
// batch when the journal could not be read or a version not recorded: the
// batch's DDL would otherwise be recorded ahead of older DDL.
func (s *session) recoverJournal() *wire.PGError {
	url, db, _ := s.workspaceDatabase()
	// Given up with the versions' record when the proxy stops waiting for
	// its sessions (Proxy.Close): it waits for them only a few seconds more.
	ctx, cancel := context.WithTimeout(s.proxy.cutOff, s.proxy.cfg.RecordWait+time.Minute)
	defer cancel()
	err := errors.New("the workspace's database is not known here")
	if url != "" {
		err = backend.RecoverJournal(ctx, url, db, s.journalRecorder())
	}
	if err == nil {
		return nil
	}
	s.proxy.cfg.Logf("proxy: record the DDL the journal of %s holds: %v", s.login.database, err)
	return wire.NewError("ERROR", "57P03", "DDL cannot run in this tenant workspace yet: DDL that committed in it earlier is not recorded as a blueprint version: %v", err).
		WithHint("Try again shortly.")
}

// journalRecorder records the versions the session's workspace's journal
// holds.
func (s *session) journalRecorder() backend.JournalRecorder {
	return backend.NewJournalRecorder(s.proxy.cfg.FSM, s.login.projectID, s.login.workspace, s.proxy.cfg.Now,
		func(cmd *fsm.AddBlueprintVersion) error { return s.proposeVersion(cmd) },
		func(format string, args ...any) { s.proxy.cfg.Logf("proxy: "+format, args...) })
}
