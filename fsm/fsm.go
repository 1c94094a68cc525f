package fsm

import (
	"context"
	"encoding/json"
	"io"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/errors"
	"github.com/hashicorp/raft"
)

// Response is what Apply returns for every command: a value, or a business
// failure that every replica computed alike.
type Response struct {
	Value any
	Err   error
}

// FSM applies committed raft entries to a State and lets readers see it.
type FSM struct {
	mu      sync.RWMutex
	state   *State
	applied uint64
	changed chan struct{} // closed and replaced after every apply or restore
	gen     atomic.Uint64 // counts applies and restores (Generation)
	// newer is the first snapshot refused as of a newer log version
	// (ErrNewerLogVersion): raft goes on to an older snapshot, which the
	// node must not start from (NewerSnapshot).
	newer error
}

// New returns an FSM over an empty state.
func New() *FSM {
	return &FSM{state: NewState(), changed: make(chan struct{})}
}

var _ raft.FSM = (*FSM)(nil)

// Apply applies one committed log entry. It is deterministic: everything it
// needs beyond the state is inside the entry.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	t, payload := decode(l.Data)
	f.mu.Lock()
	v, err := appliers[t](f.state, l.Index, payload)
	f.applied = l.Index
	f.notifyLocked()
	f.mu.Unlock()
	return Response{Value: v, Err: err}
}

func (f *FSM) notifyLocked() {
	f.gen.Add(1)
	close(f.changed)
	f.changed = make(chan struct{})
}

// View runs fn with the state under a read lock. fn must not keep or modify
// anything it reaches: copy what outlives the call.
func (f *FSM) View(fn func(s *State)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(f.state)
}

// Generation changes after every apply or restore, and is read without a
// lock: a reader that read it before a View saw a state at least as new as
// that generation, so what it derived from the state stays true while the
// generation has not changed.
func (f *FSM) Generation() uint64 { return f.gen.Load() }

// AppliedIndex is the raft index of the last applied entry.
func (f *FSM) AppliedIndex() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.applied
}

// Changed returns a channel closed at the next change of the state.
func (f *FSM) Changed() <-chan struct{} {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.changed
}

// WaitFor blocks until cond holds for the state (checked now and after every
// change) or ctx ends.
func (f *FSM) WaitFor(ctx context.Context, cond func(s *State) bool) error {
	for {
		f.mu.RLock()
		ok := cond(f.state)
		ch := f.changed
		f.mu.RUnlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// WaitIndex blocks until the entry at index has been applied or ctx ends.
func (f *FSM) WaitIndex(ctx context.Context, index uint64) error {
	for {
		f.mu.RLock()
		ok := f.applied >= index
		ch := f.changed
		f.mu.RUnlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// snapshotData is the serialized form of a snapshot.
type snapshotData struct {
	Applied uint64 `json:"applied"`
	State   *State `json:"state"`
}

// Snapshot captures the state as JSON bytes taken under the read lock; writing
// them out happens later without the lock.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	data, err := json.Marshal(snapshotData{Applied: f.applied, State: f.state})
	if err != nil {
		return nil, errors.Wrap(err, "marshal snapshot")
	}
	return &snapshot{data: data}, nil
}

// Restore replaces the state with a snapshot's: a fresh State is built and
// swapped in under the lock.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var d snapshotData
	if err := json.NewDecoder(rc).Decode(&d); err != nil {
		return errors.Wrap(err, "decode snapshot")
	}
	if d.State == nil {
		d.State = NewState()
	}
	if err := checkRestorable(d.State); err != nil {
		f.mu.Lock()
		if f.newer == nil {
			f.newer = err
		}
		f.mu.Unlock()
		return err
	}
	d.State.reindex()
	f.mu.Lock()
	f.state = d.State
	f.applied = d.Applied
	f.notifyLocked()
	f.mu.Unlock()
	return nil
}

// NewerSnapshot returns the first snapshot Restore refused as of a cluster
// log version newer than this build's, or nil. raft, starting, tries its
// snapshots newest first and takes the first it can restore: a node whose
// newest one was refused would run on an older state, only to stop at the
// first entry it cannot apply.
func (f *FSM) NewerSnapshot() error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.newer
}

// Hash returns a digest of the state, equal on replicas that applied the same
// entries. Used by tests and the chaos harness to find divergence.
func (f *FSM) Hash() (string, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return hashState(f.state)
}

type snapshot struct{ data []byte }

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s.data); err != nil {
		_ = sink.Cancel()
		return errors.Wrap(err, "write snapshot")
	}
	return sink.Close()
}

func (s *snapshot) Release() {}
