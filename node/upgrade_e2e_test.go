package node_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"tdb/actors/backend"
	"tdb/fsm"
	"tdb/httpapi"
	"tdb/internal/freeport"
	"tdb/internal/syncbuf"
	"tdb/internal/testcluster"
	"tdb/internal/testnode"
	"tdb/node"
)

// TestClusterRollingUpgrade: nodes of an older build (here: nodes that
// advertise log version 1) keep the cluster at version 1; upgraded one at a
// time, the cluster moves to the new version only once the last one runs
// the new build. Then a node of the old build that joins is not made a
// voter, since it would stop at the first entry it cannot apply, and is
// once it is upgraded.
func TestClusterRollingUpgrade(t *testing.T) {
	t.Parallel()
	log := &syncbuf.Buffer{}
	c := testcluster.Start(t, 3, testcluster.Configure(func(cfg *node.Config) {
		cfg.Cluster.LogVersion = 1
		cfg.LogOutput = log
	}))
	versions := func(i int) (uint16, []uint16) {
		st := c.Status(t, i)
		var vs []uint16
		for _, ns := range st.Nodes {
			vs = append(vs, ns.LogVersion)
		}
		return st.LogVersion, vs
	}
	if v, vs := versions(c.WaitLeader(t)); v != 1 || len(vs) != 3 || vs[0] != 1 || vs[1] != 1 || vs[2] != 1 {
		t.Fatalf("an old cluster runs log version %d, its nodes %v; want 1 and [1 1 1]", v, vs)
	}
	if id := c.Status(t, c.WaitLeader(t)).ClusterID; id != "" {
		t.Fatalf("a cluster at log version 1 says it is %q", id)
	}

	// A tenant of the old cluster, whose databases it cannot record a DDL
	// guard for.
	c.CreateTenant(t, c.WaitLeader(t), "before_upgrade")
	testcluster.Eventually(t, "the old cluster's databases to count as unguarded", func() bool {
		ready := 0
		c.Members[c.WaitLeader(t)].Node.FSM().View(func(s *fsm.State) {
			for _, d := range s.Databases {
				if d.Status == fsm.StatusReady {
					ready++
				}
			}
		})
		return ready >= 2 && c.Status(t, c.WaitLeader(t)).UnguardedDatabases == ready
	})

	// DDL of the old cluster's workspace, recorded without the journal,
	// which its databases do not keep below log version 8.
	workspaceDDL := func(sql string) {
		t.Helper()
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, c.ConnString(c.WaitLeader(t), c.ProxyPassword, "myapp_workspace"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	workspaceDDL("CREATE TABLE before_upgrade (id int)")

	upgrade := func(i int) {
		t.Helper()
		c.Stop(t, i)
		c.Reconfigure(t, i, func(cfg *node.Config) { cfg.Cluster.LogVersion = 0 })
		c.Restart(t, i)
		testcluster.Eventually(t, c.Members[i].ID+" back as a voter of the new build", func() bool {
			l := c.Leader()
			if l < 0 {
				return false
			}
			for _, ns := range c.Status(t, l).Nodes {
				if ns.ID == c.Members[i].ID {
					return ns.Voter && ns.Alive && ns.LogVersion == fsm.LogVersion
				}
			}
			return false
		})
	}
	// Followers first, the leader last, as an operator would.
	order := append(others(c, c.WaitLeader(t)), c.WaitLeader(t))
	upgrade(order[0])
	upgrade(order[1])
	if v, vs := versions(c.WaitLeader(t)); v != 1 {
		t.Fatalf("with one node of the old build left the cluster runs log version %d (nodes %v)", v, vs)
	}
	upgrade(order[2])
	testcluster.Eventually(t, "every node to see the new log version", func() bool {
		for i := range c.Members {
			if v, _ := versions(i); v != fsm.LogVersion {
				return false
			}
		}
		return true
	})
	if !log.Contains(fmt.Sprintf("every node applies raft log version %d", fsm.LogVersion)) {
		t.Fatal("the raise was not logged")
	}
	// The cluster is named once it runs the version that can (its ID was
	// pending until then, and told to nobody), the same on every node.
	testcluster.Eventually(t, "every node to know the cluster's id", func() bool {
		id := c.Status(t, c.WaitLeader(t)).ClusterID
		for i := range c.Members {
			if id == "" || c.Members[i].Node.Replica().ClusterID() != id {
				return false
			}
		}
		return true
	})
	// The leader then installs and records the guard of every database.
	testcluster.Eventually(t, "the DDL guard recorded for the old cluster's databases", func() bool {
		missing := 0
		c.Members[c.WaitLeader(t)].Node.FSM().View(func(s *fsm.State) {
			for _, d := range s.Databases {
				if d.Status != fsm.StatusReady || d.Guard != backend.GuardVersion {
					missing++
				}
			}
		})
		return missing == 0
	})
	if !log.Contains(fmt.Sprintf("reconciler: installed guard version %d in", backend.GuardVersion)) {
		t.Fatal("the guard's installation was not logged")
	}
	if n := c.Status(t, c.WaitLeader(t)).UnguardedDatabases; n != 0 {
		t.Fatalf("%d databases count as unguarded after the guard was recorded", n)
	}

	// Writes go on through the upgrade's end.
	c.CreateTenant(t, c.WaitLeader(t), "after_upgrade")
	// The workspace keeps the journal now: its next DDL is recorded under
	// the journal's id, once, and the version of before stays as it was.
	workspaceDDL("CREATE TABLE after_upgrade (id int)")
	var bp []fsm.BlueprintVersion
	c.Members[c.WaitLeader(t)].Node.FSM().View(func(s *fsm.State) { bp = s.Projects[c.ProjectID].Workspaces["myapp"].Versions })
	if len(bp) != 2 || bp[0].Statements[0] != "CREATE TABLE before_upgrade (id int)" || journalID.MatchString(bp[0].CaptureID) ||
		bp[1].Statements[0] != "CREATE TABLE after_upgrade (id int)" || !journalID.MatchString(bp[1].CaptureID) {
		t.Fatalf("the workspace's versions across the upgrade: %+v", bp)
	}

	old := c.Add(t, 3*time.Second, func(cfg *node.Config) { cfg.Cluster.LogVersion = 1 })
	testcluster.Eventually(t, "the leader to keep the old build out", func() bool {
		return log.Contains(fmt.Sprintf("%s runs a build of raft log version 1 and the cluster runs %d: not made a voter; upgrade it", c.Members[old].ID, fsm.LogVersion))
	})
	st := c.Status(t, c.WaitLeader(t))
	for _, ns := range st.Nodes {
		if ns.ID == c.Members[old].ID && (ns.Voter || ns.LogVersion != 1) {
			t.Fatalf("the old build's node: %+v", ns)
		}
	}
	upgrade(old)
}

// TestLoneNodeRunsItsLogVersion: a node without gossip (tdb dev) is the
// only server there is, so its cluster runs its build's log version.
func TestLoneNodeRunsItsLogVersion(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	testcluster.Eventually(t, "the lone node's cluster to run its build's log version", func() bool {
		var st httpapi.ClusterStatus
		e.MustDo(t, "GET", "/v1/cluster/status", e.AdminKey, "", nil, &st)
		return st.LogVersion == fsm.LogVersion && len(st.Nodes) == 1 && st.Nodes[0].LogVersion == fsm.LogVersion
	})
}

// TestClusterOldBuildOnNewRaftAddress: a voter restarted on another raft
// address with a build older than the cluster's log version is not made a
// voter there, as a node of that build that joins is not: at its new
// address it would get entries it cannot apply. Its raft server stays at
// the old address (where nothing answers) until it runs the new build.
func TestClusterOldBuildOnNewRaftAddress(t *testing.T) {
	t.Parallel()
	log := &syncbuf.Buffer{}
	c := testcluster.Start(t, 3, testcluster.Configure(func(cfg *node.Config) { cfg.LogOutput = log }))
	testcluster.Eventually(t, "the cluster to run this build's log version", func() bool {
		return c.Status(t, c.WaitLeader(t)).LogVersion == fsm.LogVersion
	})
	raftAddr := func(i int) (addr string, voter bool) {
		for _, ns := range c.Status(t, c.WaitLeader(t)).Nodes {
			if ns.ID == c.Members[i].ID {
				return ns.RaftAddr, ns.Voter
			}
		}
		return "", false
	}
	moved := others(c, c.WaitLeader(t))[0]
	oldAddr, _ := raftAddr(moved)
	newAddr, release, err := freeport.Reserve()
	if err != nil {
		t.Fatal(err)
	}
	c.Stop(t, moved)
	c.Reconfigure(t, moved, func(cfg *node.Config) { cfg.RaftAddr, cfg.Cluster.LogVersion = newAddr, 1 })
	release()
	c.RestartWithin(t, moved, 3*time.Second)
	refused := fmt.Sprintf("%s at %s runs a build of raft log version 1 and the cluster runs %d: its raft server stays at %s; upgrade it",
		c.Members[moved].ID, newAddr, fsm.LogVersion, oldAddr)
	testcluster.Eventually(t, "the leader to refuse or take the new address", func() bool {
		addr, _ := raftAddr(moved)
		return log.Contains(refused) || addr == newAddr
	})
	if addr, _ := raftAddr(moved); addr != oldAddr {
		t.Fatalf("a node of the old build moved to %s has its raft server at %s, want it left at %s", newAddr, addr, oldAddr)
	}

	c.Stop(t, moved)
	c.Reconfigure(t, moved, func(cfg *node.Config) { cfg.Cluster.LogVersion = 0 })
	c.Restart(t, moved)
	testcluster.Eventually(t, "the upgraded node to be a voter at its new address", func() bool {
		addr, voter := raftAddr(moved)
		return addr == newAddr && voter
	})
}
