package fsm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// logGen generates random commands over small name pools, so that many
// succeed and many hit business errors.
type logGen struct {
	r   *rand.Rand
	now time.Time
}

func (g *logGen) pick(xs ...string) string { return xs[g.r.Intn(len(xs))] }
func (g *logGen) at() time.Time {
	// mostly forward, sometimes backwards (a new leader with a slower clock)
	g.now = g.now.Add(time.Duration(g.r.Intn(120)-20) * time.Second)
	return g.now
}
func (g *logGen) i64() *int64 {
	if g.r.Intn(3) == 0 {
		return nil
	}
	v := int64(g.r.Intn(20) - 2)
	return &v
}
func (g *logGen) proj() string { return g.pick("tdb_00000001", "tdb_00000001", "tdb_00000002") }
func (g *logGen) ws() string   { return g.pick("w1", "w1", "w2", "Bad") }
func (g *logGen) ten() string  { return g.pick("t1", "t2", "t3", "t4", "t5") }
func (g *logGen) db() NewDatabase {
	d := NewDatabase{Name: fmt.Sprintf("d%d", g.r.Intn(25)),
		Backend: g.pick("b1", "b2", "b3"), Passwords: RolePasswords{Admin: "a", Write: "w", Read: "r"}}
	if g.r.Intn(15) == 0 {
		d.Passwords.Read = ""
	}
	return d
}
func (g *logGen) key(scope string, vals ...string) NewKey {
	id := fmt.Sprintf("k%d", g.r.Intn(400))
	k := NewKey{ID: id, Name: id, Role: g.pick(RoleAdmin, RoleWrite, RoleRead, RoleRead, RoleRead, "bogus"), ScopeType: scope,
		ScopeValues: vals, StoredKey: []byte("s" + id), ServerKey: []byte("v" + id), Lookup: "l" + id}
	if g.r.Intn(10) == 0 {
		k.Lookup = fmt.Sprintf("l%d", g.r.Intn(40)) // collisions
	}
	return k
}

func (g *logGen) next() (CommandType, any) {
	if g.r.Intn(100) == 0 {
		return CmdSetLogVersion, &SetLogVersion{Version: uint16(1 + g.r.Intn(int(LogVersion)))}
	}
	if g.r.Intn(40) == 0 {
		at := g.at()
		c := &CompactState{At: at, BatchesBefore: at.Add(-time.Duration(g.r.Intn(1200)) * time.Second)}
		if g.r.Intn(3) != 0 {
			c.KeysRevokedBefore = at.Add(-time.Duration(g.r.Intn(1200)) * time.Second)
		}
		for i := g.r.Intn(3); i > 0; i-- {
			c.BatchNodes = append(c.BatchNodes, g.pick("n1", "n2", "n3"))
		}
		return CmdCompactState, c
	}
	k := g.r.Intn(34)
	switch {
	case k == 19 || k == 20 || k == 21:
		k = 6 // create tenant
	case k == 22 || k == 23:
		k = 13
	case k >= 24 && k <= 27:
		k = 14
	case k == 28:
		k = 16
	case k >= 29 && k <= 31:
		k = 17
	case k == 32:
		k = 8
	case k == 33:
		k = 5
	}
	if k == 1 && g.r.Intn(4) != 0 {
		k = 0
	}
	switch k {
	case 0:
		return CmdAddBackend, &AddBackend{Name: g.pick("b1", "b2", "b3"), URL: "postgres://x", At: g.at()}
	case 1:
		return CmdRemoveBackend, &RemoveBackend{Name: g.pick("b1", "b2", "b3")}
	case 2:
		return CmdCreateProject, &CreateProject{ID: g.proj(), Name: g.pick("a", "b", "c", ""), Salt: []byte("s"), Iterations: 4096,
			At: g.at(), ProxyKey: g.key(g.pick(ScopeProject, ScopeProject, ScopeWorkspace))}
	case 3:
		c := &CreateWorkspace{ProjectID: g.proj(), Name: g.ws(), Mode: g.pick(ModeTenant, ModeTenant, ModeControl, "x"),
			DatabaseType: g.pick(TypePostgreSQL, TypePostgreSQL, TypePostgreSQL, TypeMySQL), At: g.at()}
		if g.r.Intn(8) != 0 {
			d := g.db()
			c.Database = &d
		}
		return CmdCreateWorkspace, c
	case 4:
		return CmdUpdateWorkspaceSettings, &UpdateWorkspaceSettings{ProjectID: g.proj(), Name: g.ws(),
			MaxRowsPerQuery: g.i64(), QueryTimeoutMs: g.i64(), MaxConnections: g.i64()}
	case 5:
		var st []string
		for i := g.r.Intn(3); i > 0; i-- {
			st = append(st, g.pick("CREATE TABLE a()", "ALTER TABLE a ADD b int"))
		}
		return CmdAddBlueprintVersion, &AddBlueprintVersion{ProjectID: g.proj(), Workspace: g.ws(), Statements: st,
			KeyID: "k1", At: g.at(), CaptureID: g.pick("", "", "c1", "c2", "c3", "c4")}
	case 6:
		t := g.ten()
		kt := t
		if g.r.Intn(10) == 0 {
			kt = g.ten()
		}
		return CmdCreateTenant, &CreateTenant{ProjectID: g.proj(), Name: t, Blueprint: g.ws(), At: g.at(),
			Database: g.db(), Key: g.key(ScopeTenant, kt)}
	case 7:
		return CmdDeleteTenant, &DeleteTenant{ProjectID: g.proj(), Name: g.ten(), At: g.at()}
	case 8:
		if g.r.Intn(4) == 0 {
			return CmdSetDatabaseGuard, &SetDatabaseGuard{Name: g.db().Name, Version: g.r.Intn(3)}
		}
		c := &SetDatabaseStatus{Name: g.db().Name, Status: g.pick(StatusProvisioning, StatusReady, StatusReady, StatusFailed, "x"), Error: g.pick("", "boom")}
		if g.r.Intn(2) == 0 {
			v := g.r.Intn(5)
			c.SchemaVersion = &v
		}
		return CmdSetDatabaseStatus, c
	case 9:
		return CmdRemoveDatabase, &RemoveDatabase{Name: g.db().Name}
	case 10:
		var k NewKey
		switch g.r.Intn(3) {
		case 0:
			k = g.key(ScopeProject)
		case 1:
			k = g.key(ScopeWorkspace, g.ws())
		default:
			k = g.key(ScopeTenant, g.ten(), g.ten())
		}
		return CmdCreateKey, &CreateKey{ProjectID: g.proj(), Key: k, At: g.at()}
	case 11:
		return CmdRevokeKey, &RevokeKey{ProjectID: g.proj(), ID: fmt.Sprintf("k%d", g.r.Intn(40)), At: g.at()}
	case 12:
		return CmdSetClusterSettings, &SetClusterSettings{MaxConnsPerIP: g.i64(), AuthFailThreshold: g.i64(),
			AuthFailWindowSec: g.i64(), BanSec: g.i64(), MaxBanSec: g.i64()}
	case 13:
		return CmdCreateDeployment, &CreateDeployment{ID: fmt.Sprintf("dep%d", g.r.Intn(30)), ProjectID: g.proj(),
			Blueprint: g.ws(), Version: g.r.Intn(4), Tenants: []string{g.ten()}, Concurrency: g.r.Intn(3), At: g.at()}
	case 14:
		return CmdSetDeploymentResult, &SetDeploymentResult{ID: fmt.Sprintf("dep%d", g.r.Intn(30)), Tenant: g.ten(),
			Status: g.pick(TenantRunning, TenantDone, TenantFailed, "x"), Error: g.pick("", "e"), FromVersion: g.r.Intn(3),
			Version: g.r.Intn(4), DurationMs: int64(g.r.Intn(100)), At: g.at()}
	case 15:
		var fs []AuthFailure
		for i := g.r.Intn(4); i > 0; i-- {
			fs = append(fs, AuthFailure{IP: g.pick("1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4", ""), Count: int64(g.r.Intn(8))})
		}
		c := &RecordAuthFailures{At: g.at(), Failures: fs}
		if g.r.Intn(2) == 0 {
			c.Node, c.Batch = g.pick("n1", "n2", "n3"), fmt.Sprintf("b%d", g.r.Intn(20))
		}
		return CmdRecordAuthFailures, c
	case 16:
		return CmdCreateImport, &CreateImport{ID: fmt.Sprintf("im%d", g.r.Intn(30)), ProjectID: g.proj(), Workspace: g.ws(),
			SourceURL: "postgres://src", RoutingField: "tenant_id", Tables: []ImportTable{{Name: "a"}},
			Tenants: []ImportTenantSpec{{Tenant: g.ten(), Value: "1"}}, At: g.at()}
	case 17:
		return CmdSetImportTenant, &SetImportTenant{ID: fmt.Sprintf("im%d", g.r.Intn(30)), Tenant: g.ten(),
			Status: g.pick(TenantRunning, TenantDone, TenantFailed, "x"), Error: g.pick("", "e"), Rows: 3, At: g.at()}
	default:
		return CmdRetryImport, &RetryImport{ID: fmt.Sprintf("im%d", g.r.Intn(30)), At: g.at()}
	}
}

type logEntry struct {
	ct   CommandType
	data []byte
}

func randomLog(seed int64, n int) []logEntry {
	g := &logGen{r: rand.New(rand.NewSource(seed)), now: t0}
	out := make([]logEntry, 0, n)
	for range n {
		ct, p := g.next()
		data, err := Encode(ct, p)
		if err != nil {
			panic(err)
		}
		out = append(out, logEntry{ct, data})
	}
	return out
}

func applyEntry(f *FSM, idx uint64, e logEntry) string {
	r := f.Apply(&raft.Log{Type: raft.LogCommand, Index: idx, Data: e.data}).(Response)
	v, _ := json.Marshal(r.Value)
	es := ""
	if r.Err != nil {
		es = fmt.Sprintf("%T %v", r.Err, r.Err)
	}
	return string(v) + " | " + es
}

func snapshotBytes(t *testing.T, f *FSM) []byte {
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(sink.Bytes())
}

func mustHash(t *testing.T, f *FSM) string {
	h, err := f.Hash()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestRandomLogSnapshotRestore applies a random log of every command type
// (over small name pools, so many commands succeed and many hit business
// errors) to A. At points along it, A is snapshotted and restored into B,
// which first applies other commands of its own, to find leftovers; from
// there both apply the same entries and must answer and hash alike. C
// replays the whole log without snapshots and must agree with A too (Apply
// is deterministic). A command that fails must leave the state as it was.
func TestRandomLogSnapshotRestore(t *testing.T) {
	seeds := int64(12)
	if raceEnabled {
		seeds = 2 // the plain run covers the rest; this one looks for races
	}
	for seed := int64(1); seed <= seeds; seed++ {
		log := randomLog(seed, 1500)
		a, c := New(), New()
		var b *FSM
		partial := map[CommandType]int{}
		okc := map[CommandType]int{}
		for i, e := range log {
			idx := uint64(i + 1)
			if i%97 == 50 {
				// restore into a dirty FSM
				b = New()
				for j, ge := range randomLog(seed+1000, 200) {
					applyEntry(b, uint64(j+1), ge)
				}
				if err := b.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, a)))); err != nil {
					t.Fatal(err)
				}
				if mustHash(t, b) != mustHash(t, a) || b.AppliedIndex() != a.AppliedIndex() {
					t.Fatalf("seed %d at %d: restored state differs", seed, i)
				}
			}
			before := mustHash(t, a)
			ra := applyEntry(a, idx, e)
			rc := applyEntry(c, idx, e)
			if ra != rc {
				t.Fatalf("seed %d entry %d %s: replay answers differ: %s vs %s", seed, i, e.ct, ra, rc)
			}
			if b != nil {
				if rb := applyEntry(b, idx, e); rb != ra {
					t.Fatalf("seed %d entry %d %s: restored answers %s, original %s", seed, i, e.ct, rb, ra)
				}
			}
			after := mustHash(t, a)
			if ra[len(ra)-1] == ' ' {
				okc[e.ct]++
			}
			if len(ra) > 0 && ra[len(ra)-1] != ' ' && before != after { // an error with a changed state
				partial[e.ct]++
				if partial[e.ct] == 1 {
					t.Errorf("seed %d entry %d %s failed (%s) but changed the state; payload %s", seed, i, e.ct, ra, e.data)
				}
			}
			if after != mustHash(t, c) {
				t.Fatalf("seed %d entry %d %s: replay diverged", seed, i, e.ct)
			}
			if b != nil && after != mustHash(t, b) {
				t.Fatalf("seed %d entry %d %s: restored replica diverged", seed, i, e.ct)
			}
		}
		// the byLookup index must match a rebuilt one
		a.View(func(s *State) {
			n := 0
			for _, p := range s.Projects {
				for _, k := range p.Keys {
					n++
					if s.byLookup[k.Lookup] != k {
						t.Errorf("seed %d: byLookup[%s] is not key %s", seed, k.Lookup, k.ID)
					}
				}
			}
			if n != len(s.byLookup) {
				t.Errorf("seed %d: byLookup has %d entries, %d keys", seed, len(s.byLookup), n)
			}
		})
		if seed <= 2 {
			t.Logf("seed %d successes: %v", seed, okc)
			a.View(func(s *State) {
				nk, nt, nv := 0, 0, 0
				for _, p := range s.Projects {
					nk += len(p.Keys)
					nt += len(p.Tenants)
					for _, w := range p.Workspaces {
						nv += len(w.Versions)
					}
				}
				t.Logf("seed %d: %d projects, %d keys, %d tenants, %d versions, %d dbs, %d deployments, %d imports, %d ban records",
					seed, len(s.Projects), nk, nt, nv, len(s.Databases), len(s.Deployments), len(s.Imports), s.Bans.Len())
			})
		}
	}
}
