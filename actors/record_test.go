package actors

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/errors"

	"tdb/fsm"
)

// leaderLostProposer fails its first fails proposals as a node cut off from
// the raft leader does, then accepts, keeping each capture id it was given.
type leaderLostProposer struct {
	mu    sync.Mutex
	fails int
	ids   []string
}

func (p *leaderLostProposer) Apply(_ context.Context, t fsm.CommandType, payload any) (any, uint64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := payload.(*fsm.AddBlueprintVersion); ok {
		p.ids = append(p.ids, c.CaptureID)
	}
	if len(p.ids) <= p.fails {
		return nil, 0, errors.New("no raft leader")
	}
	return nil, 1, nil
}

// TestRecordVersionWaitsForTheLeader: DDL that committed in a workspace
// while its node lost the raft leader keeps trying to be recorded, with one
// capture id, for RecordWait (seven failures, some 6 s, are within it),
// and only then warns its client with 01000 that it was not.
func TestRecordVersionWaitsForTheLeader(t *testing.T) {
	prop := &leaderLostProposer{fails: 7}
	s := &session{proxy: NewProxy(ProxyConfig{GoroutineRelay: true, FSM: fsm.New(), Logf: t.Logf, Propose: prop, RecordWait: time.Minute})}
	s.login.projectID, s.login.workspace = "p1", "myapp"
	if n := s.recordVersion(captured{ddl: []string{"CREATE TABLE t (id int)"}}); n != nil {
		t.Fatalf("recorded at the 8th proposal, yet the client was told: %s %s", n.Code, n.Message)
	}
	if len(prop.ids) != 8 {
		t.Fatalf("%d proposals, want 8", len(prop.ids))
	}
	for _, id := range prop.ids {
		if id != prop.ids[0] || id == "" {
			t.Fatalf("capture ids %q: want one id for every proposal", prop.ids)
		}
	}

	never := &leaderLostProposer{fails: 1 << 30}
	s.proxy.cfg.Propose, s.proxy.cfg.RecordWait = never, 300*time.Millisecond
	n := s.recordVersion(captured{ddl: []string{"CREATE TABLE u (id int)"}})
	if n == nil || n.Code != "01000" || n.Severity != "WARNING" {
		t.Fatalf("never recorded: notice %+v, want WARNING 01000", n)
	}
}

// refusedOnceProposer refuses its first AddBlueprintVersion as the state
// does (a business failure: the workspace deleted meanwhile), then accepts.
type refusedOnceProposer struct {
	mu    sync.Mutex
	calls int
}

func (p *refusedOnceProposer) Apply(_ context.Context, _ fsm.CommandType, _ any) (any, uint64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if p.calls == 1 {
		return nil, 1, &fsm.Error{Code: fsm.CodeNotFound, Message: `workspace "myapp" not found`}
	}
	return nil, 2, nil
}

// TestRecordVersionStopsAtARefusal: a version the state refuses (the
// workspace deleted while its DDL ran) is not proposed again: every replica
// refuses it alike, so trying for RecordWait would only hold the client
// and the capture lock. The client is warned at once, with the refusal.
func TestRecordVersionStopsAtARefusal(t *testing.T) {
	prop := &refusedOnceProposer{}
	s := &session{proxy: NewProxy(ProxyConfig{GoroutineRelay: true, FSM: fsm.New(), Logf: t.Logf, Propose: prop, RecordWait: time.Minute})}
	s.login.projectID, s.login.workspace = "p1", "myapp"
	n := s.recordVersion(captured{ddl: []string{"CREATE TABLE t (id int)"}})
	if n == nil || n.Code != "01000" || !strings.Contains(n.Message, `workspace "myapp" not found`) {
		t.Fatalf("a refused version: notice %+v, want WARNING 01000 with the refusal", n)
	}
	if prop.calls != 1 {
		t.Fatalf("a refused version was proposed %d times, want once", prop.calls)
	}
}

// failingIDProposer fails, as a node cut off from the leader does, every
// AddBlueprintVersion of capture id fail, and accepts the others, keeping
// the ids it was given.
type failingIDProposer struct {
	mu   sync.Mutex
	fail string
	ids  []string
}

func (p *failingIDProposer) Apply(_ context.Context, _ fsm.CommandType, payload any) (any, uint64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	id := payload.(*fsm.AddBlueprintVersion).CaptureID
	p.ids = append(p.ids, id)
	if id == p.fail {
		return nil, 0, errors.New("no raft leader")
	}
	return nil, 1, nil
}

// TestRecordVersionKeepsCommitOrderWithTheJournal: once a transaction's
// version, which the workspace's DDL journal holds, could not be recorded,
// the later transactions of the batch are not recorded ahead of it (the
// journal records them after it), and the journal keeps the rows of those
// recorded before it, whose client message it may share.
func TestRecordVersionKeepsCommitOrderWithTheJournal(t *testing.T) {
	prop := &failingIDProposer{fail: "2@2"}
	s := &session{proxy: NewProxy(ProxyConfig{GoroutineRelay: true, FSM: fsm.New(), Logf: t.Logf, Propose: prop, RecordWait: 10 * time.Millisecond})}
	s.login.projectID, s.login.workspace = "p1", "myapp"
	var warned []string
	for _, id := range []string{"1@1", "2@2", "3@3"} {
		if n := s.recordVersion(captured{ddl: []string{"CREATE TABLE t" + id[:1] + " (id int)"}, id: id}); n != nil {
			if n.Code != "01000" || !strings.Contains(n.Hint, "journal holds it") {
				t.Fatalf("%s: notice %+v, want the WARNING that the journal holds it", id, n)
			}
			warned = append(warned, id)
		}
	}
	for _, id := range prop.ids {
		if id == "3@3" {
			t.Fatalf("proposed %q: the version after the one not recorded went ahead of it", prop.ids)
		}
	}
	if len(warned) != 2 || warned[0] != "2@2" || warned[1] != "3@3" {
		t.Fatalf("warned of %q, want 2@2 and 3@3", warned)
	}
	if len(s.journalDone) != 0 {
		t.Fatalf("the lock's release deletes the journal rows of %q, which the recovery of 2@2 may need", s.journalDone)
	}
}

// TestUnlockAgainOnlyUnlocks: the statement that gives the capture lock
// back deletes the journal rows of the versions recorded, but sent again
// after it failed it only gives the lock back, since the delete would fail
// each time (and the lock stay held).
func TestUnlockAgainOnlyUnlocks(t *testing.T) {
	s := &session{journalDone: []string{"1@2"}}
	if got := s.unlockStatement(); !strings.Contains(got, "forget_journal(ARRAY['1@2']") || !strings.Contains(got, "pg_advisory_unlock") {
		t.Fatalf("the release: %s", got)
	}
	s.unlockTries = 1
	if got := s.unlockStatement(); got != unlockSQL {
		t.Fatalf("the release sent again: %s, want %s", got, unlockSQL)
	}
}
