package node_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"tdb/fsm"
	"tdb/internal/testcluster"
	"tdb/node"
)

// tryConnect logs in through the proxy and reports the error, if any.
func tryConnect(connString string) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return pgx.Connect(ctx, connString)
}

// loginCode logs in and out and returns "" or the SQLSTATE of the refusal.
func loginCode(t *testing.T, connString string) string {
	t.Helper()
	c, err := tryConnect(connString)
	if err == nil {
		c.Close(context.Background())
		return ""
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		t.Fatalf("login: %v", err)
	}
	return pe.Code
}

// others returns the member indexes other than those given.
func others(c *testcluster.Cluster, not ...int) []int {
	var out []int
	for i := range c.Members {
		skip := false
		for _, x := range not {
			skip = skip || i == x
		}
		if !skip {
			out = append(out, i)
		}
	}
	return out
}

func TestClusterJoinAndStatus(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 3)
	leader := c.WaitLeader(t)
	for i, m := range c.Members {
		st := c.Status(t, i)
		if st.LeaderID != c.Members[leader].ID || len(st.Nodes) != 3 {
			t.Fatalf("%s sees leader %q and %d nodes: %+v", m.ID, st.LeaderID, len(st.Nodes), st)
		}
		roles := map[string]int{}
		for _, ns := range st.Nodes {
			if !ns.Voter || !ns.Alive || ns.RaftAddr == "" || ns.HTTPAddr == "" || ns.WireAddr == "" || ns.GossipAddr == "" || ns.RaftIndex == 0 {
				t.Fatalf("%s sees %+v", m.ID, ns)
			}
			roles[ns.Role]++
		}
		if roles["leader"] != 1 || roles["follower"] != 2 {
			t.Fatalf("%s sees roles %v", m.ID, roles)
		}
	}

	// The nodes' internal API refuses a caller without the cluster secret.
	for _, key := range []string{"", testcluster.AdminKey, "wrong"} {
		if code := c.Do(t, 1, "GET", "/internal/index", key, "", nil, nil); code != 401 {
			t.Fatalf("internal API with key %q: status %d, want 401", key, code)
		}
	}
}

// TestClusterForwardedWrites: writes through followers reach the leader,
// answer with the leader's business errors, and are readable on the
// follower as soon as they return.
func TestClusterForwardedWrites(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 3)
	leader := c.WaitLeader(t)
	f := others(c, leader)[0]
	var ws struct {
		Name      string `json:"name"`
		RaftIndex uint64 `json:"raft_index"`
	}
	c.MustDo(t, f, "POST", "/v1/workspaces", c.ProxyPassword, "", map[string]string{"name": "fwd_app"}, &ws)
	if ws.Name != "fwd_app" {
		t.Fatalf("create through follower answered %+v", ws)
	}
	if got := c.Members[f].Node.FSM().AppliedIndex(); got < ws.RaftIndex || ws.RaftIndex == 0 {
		t.Fatalf("follower applied %d after a write at raft index %d", got, ws.RaftIndex)
	}
	var e struct{ Code, Message string }
	if code := c.Do(t, f, "POST", "/v1/workspaces", c.ProxyPassword, "", map[string]string{"name": "fwd_app"}, &e); code != 409 || e.Code != "conflict" {
		t.Fatalf("duplicate through follower: %d %+v, want 409 conflict", code, e)
	}
}

// TestClusterKeyUsableAtOnceOnAnotherNode: a key created through one node
// logs in on another as soon as the create call returned, even when that
// node lags behind: raft traffic to it is cut while the key is created and
// restored only while the login waits.
func TestClusterKeyUsableAtOnceOnAnotherNode(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 3, testcluster.WithRaftProxies())
	leader := c.WaitLeader(t)
	o := others(c, leader)
	creator, lagging := o[0], o[1]

	// The plain case, no fault: create on one node, use on another at once.
	for i := range 3 {
		key := c.CreateKey(t, creator, "write", "workspace", "myapp")
		if code := loginCode(t, c.ConnString(lagging, key, "myapp_workspace")); code != "" {
			t.Fatalf("round %d: login with a fresh key on %s: %s", i, c.Members[lagging].ID, code)
		}
	}

	// The lagging node misses the key's commit.
	c.Members[lagging].RaftProxy.Block()
	key := c.CreateKey(t, creator, "write", "workspace", "myapp")
	tenantKey := c.CreateTenant(t, creator, "lagtenant")
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(300 * time.Millisecond) // the logins below are waiting by now
		c.Members[lagging].RaftProxy.Unblock()
	}()
	if code := loginCode(t, c.ConnString(lagging, key, "myapp_workspace")); code != "" {
		t.Fatalf("login with a key the node had not applied yet: %s", code)
	}
	<-done
	if code := loginCode(t, c.ConnString(lagging, tenantKey, "myapp__lagtenant")); code != "" {
		t.Fatalf("login to a fresh tenant: %s", code)
	}
	// The same for the HTTP API: a key created while the node lags is
	// accepted as a bearer there at once.
	c.Members[lagging].RaftProxy.Block()
	var created struct{ Key, ID string }
	c.MustDo(t, creator, "POST", "/v1/apikeys", c.ProxyPassword, "",
		map[string]any{"role": "admin", "scope_type": "project"}, &created)
	go func() {
		time.Sleep(300 * time.Millisecond)
		c.Members[lagging].RaftProxy.Unblock()
	}()
	var list []struct{ ID string }
	if code := c.Do(t, lagging, "GET", "/v1/apikeys", created.Key, "", nil, &list); code != 200 {
		t.Fatalf("GET with a fresh key on the lagging node: %d", code)
	}
	listed := false
	for _, k := range list {
		listed = listed || k.ID == created.ID
	}
	if !listed {
		t.Fatalf("the lagging node lists %+v, without %s", list, created.ID)
	}
	// A wrong password still fails, after the same bounded catch-up.
	if code := loginCode(t, c.ConnString(lagging, "sk_not_a_key_0000000000000000000000", "myapp_workspace")); code != "28P01" {
		t.Fatalf("wrong password: %q, want 28P01", code)
	}
}

// TestClusterCrossNodeCancel: a CancelRequest sent to another node than the
// session's is routed to the session's node.
func TestClusterCrossNodeCancel(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 3)
	conn := connect(t, c.ConnString(0, c.ProxyPassword, "controlplane_workspace"))
	pid, secret := conn.PgConn().PID(), conn.PgConn().SecretKey()
	// Cancel through node 3.
	wire := c.Members[2].Node.BoundWireAddr()
	cancelSleepWith(t, conn, func() { sendCancel(t, wire, pid, secret) })
	var one int
	if err := conn.QueryRow(context.Background(), "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("session after cancel: %v", err)
	}
}

// sendCancel writes a raw CancelRequest to a wire address.
func sendCancel(t *testing.T, addr string, pid uint32, secret []byte) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	msg := binary.BigEndian.AppendUint32(nil, uint32(12+len(secret)))
	msg = binary.BigEndian.AppendUint32(msg, 80877102)
	msg = binary.BigEndian.AppendUint32(msg, pid)
	msg = append(msg, secret...)
	if _, err := nc.Write(msg); err != nil {
		t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [1]byte
	_, _ = nc.Read(b[:]) // the server closes the connection once it has handled it
}

// TestClusterPartitionedNodeFailsClosed: raft traffic towards one follower
// is cut by a fault-injecting proxy. That node refuses new logins with
// 57P03 once its leader contact is older than the limit, so a key revoked
// on the majority side is not accepted there; its running session goes on;
// the majority keeps serving; after the partition heals it serves again and
// knows of the revocation.
func TestClusterPartitionedNodeFailsClosed(t *testing.T) {
	t.Parallel()
	c, leader, p := partitionable(t)
	var created struct{ ID, Key string }
	c.MustDo(t, leader, "POST", "/v1/apikeys", c.ProxyPassword, "",
		map[string]any{"role": "write", "scope_type": "workspace", "scope_values": []string{"myapp"}}, &created)
	doomed, doomedID := created.Key, created.ID
	running := connect(t, c.ConnString(p, c.ProxyPassword, "myapp_workspace"))

	cutOff(t, c, p)
	c.MustDo(t, leader, "DELETE", "/v1/apikeys/"+doomedID, c.ProxyPassword, "", nil, nil)
	_, err := tryConnect(c.ConnString(p, doomed, "myapp_workspace"))
	if pe := pgErr(t, err); pe.Code != "57P03" || pe.Severity != "FATAL" || !(strings.Contains(pe.Message, "lost contact with the cluster leader") || strings.Contains(pe.Message, "catching up with the cluster leader")) {
		t.Fatalf("revoked key on the partitioned node: %s %s %q", pe.Severity, pe.Code, pe.Message)
	}
	var one int
	if err := running.QueryRow(context.Background(), "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("running session on the partitioned node: %v", err)
	}
	maj := others(c, p)[1]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Members[maj].Node.FSM().WaitIndex(ctx, c.Members[leader].Node.FSM().AppliedIndex()); err != nil {
		t.Fatal(err)
	}
	if code := loginCode(t, c.ConnString(maj, doomed, "myapp_workspace")); code != "28P01" {
		t.Fatalf("revoked key on the majority: %q, want 28P01", code)
	}
	if code := loginCode(t, c.ConnString(maj, c.ProxyPassword, "myapp_workspace")); code != "" {
		t.Fatalf("majority login: %s", code)
	}

	heal(t, c, p)
	if code := loginCode(t, c.ConnString(p, doomed, "myapp_workspace")); code != "28P01" {
		t.Fatalf("revoked key on the healed node: %q, want 28P01", code)
	}
}

// TestClusterPartitionedNodeRefusesWorkspaceDDL: DDL in a tenant workspace
// commits there and becomes a blueprint version through raft. On a node
// cut off from the leader it would commit and never be recorded, so the
// workspace would part from its blueprint: it is refused before it runs,
// in either protocol, also as a statement prepared before the partition.
// Other statements go on; after the partition heals, DDL is recorded again.
func TestClusterPartitionedNodeRefusesWorkspaceDDL(t *testing.T) {
	t.Parallel()
	c, leader, p := partitionable(t)
	ctx := context.Background()
	ws := connect(t, c.ConnString(p, c.ProxyPassword, "myapp_workspace"))
	if _, err := ws.Prepare(ctx, "early", "CREATE TABLE early_ddl (id int)"); err != nil {
		t.Fatal(err)
	}

	cutOff(t, c, p)
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		_, err := ws.Exec(ctx, "CREATE TABLE cut_off (id int)", mode)
		if pe := pgErr(t, err); pe.Code != "57P03" || !strings.Contains(pe.Message, "cannot reach the cluster leader") {
			t.Fatalf("DDL on the partitioned node (%v): %s %q", mode, pe.Code, pe.Message)
		}
	}
	_, err := ws.Exec(ctx, "early")
	if pe := pgErr(t, err); pe.Code != "57P03" {
		t.Fatalf("DDL prepared before the partition: %s %q", pe.Code, pe.Message)
	}
	var one int
	if err := ws.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("a query on the partitioned node: %v", err)
	}
	var exists bool
	if err := ws.QueryRow(ctx, "SELECT to_regclass('cut_off') IS NOT NULL OR to_regclass('early_ddl') IS NOT NULL").Scan(&exists); err != nil || exists {
		t.Fatalf("refused DDL ran in the workspace: %v %v", exists, err)
	}

	heal(t, c, p)
	if _, err := ws.Exec(ctx, "CREATE TABLE healed (id int)"); err != nil {
		t.Fatalf("DDL after the partition healed: %v", err)
	}
	var versions []struct{ Statements []string }
	c.MustDo(t, leader, "GET", "/v1/blueprints/myapp/versions", c.ProxyPassword, "", nil, &versions)
	var recorded []string
	for _, v := range versions {
		recorded = append(recorded, v.Statements...)
	}
	if len(recorded) != 1 || !strings.Contains(recorded[0], "healed") {
		t.Fatalf("blueprint statements %q, want the one DDL run after the partition healed", recorded)
	}
}

// TestClusterDDLCutOffWhileWaitingForTheCaptureLock: DDL that waits for
// the workspace's capture lock (another node's session holds it) asks again,
// once it holds the lock, whether its node reaches the leader: a node cut
// off during the wait refuses it rather than run DDL it could not record.
func TestClusterDDLCutOffWhileWaitingForTheCaptureLock(t *testing.T) {
	t.Parallel()
	c, leader, p := partitionable(t)
	ctx := context.Background()
	holder := connect(t, c.ConnString(leader, c.ProxyPassword, "myapp_workspace"))
	waiter := connect(t, c.ConnString(p, c.ProxyPassword, "myapp_workspace"))
	if _, err := holder.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	if _, err := holder.Exec(ctx, "CREATE TABLE held (id int)"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := waiter.Exec(ctx, "CREATE TABLE waited (id int)")
		done <- err
	}()
	testcluster.Eventually(t, "the second DDL to wait for the capture lock", func() bool {
		var n int
		err := holder.QueryRow(ctx, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted").Scan(&n)
		return err == nil && n > 0
	})
	cutOff(t, c, p)
	if _, err := holder.Exec(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	var err error
	select {
	case err = <-done:
	case <-time.After(time.Minute):
		t.Fatal("the waiting DDL never ended")
	}
	if pe := pgErr(t, err); pe.Code != "57P03" || !strings.Contains(pe.Message, "cannot reach the cluster leader") {
		t.Fatalf("DDL whose node was cut off while it waited: %s %q", pe.Code, pe.Message)
	}
	var exists bool
	if err := holder.QueryRow(ctx, "SELECT to_regclass('waited') IS NOT NULL").Scan(&exists); err != nil || exists {
		t.Fatalf("the refused DDL ran in the workspace: %v %v", exists, err)
	}
	c.Members[p].RaftProxy.Unblock()
}

// partitionable starts a 3-node cluster whose raft links can be cut, and
// returns it with its leader and a follower.
func partitionable(t *testing.T) (c *testcluster.Cluster, leader, follower int) {
	t.Helper()
	c = testcluster.Start(t, 3, testcluster.WithRaftProxies())
	leader = c.WaitLeader(t)
	return c, leader, others(c, leader)[0]
}

// cutOff cuts member p's raft links and waits until it refuses logins
// (57P03): cut off from the leader, it knows it.
func cutOff(t *testing.T, c *testcluster.Cluster, p int) {
	t.Helper()
	c.Members[p].RaftProxy.Block()
	testcluster.Eventually(t, "the cut-off node to refuse logins", func() bool {
		return loginCode(t, c.ConnString(p, c.ProxyPassword, "myapp_workspace")) == "57P03"
	})
}

// heal gives member p its raft links back and waits until it serves logins.
func heal(t *testing.T, c *testcluster.Cluster, p int) {
	t.Helper()
	c.Members[p].RaftProxy.Unblock()
	testcluster.Eventually(t, "the healed node to serve logins", func() bool {
		return loginCode(t, c.ConnString(p, c.ProxyPassword, "myapp_workspace")) == ""
	})
}

// keyNames lists the names of the project's keys as member i sees them.
func keyNames(t *testing.T, c *testcluster.Cluster, i int) map[string]bool {
	t.Helper()
	var list []struct{ Name string }
	c.MustDo(t, i, "GET", "/v1/apikeys", c.ProxyPassword, "", nil, &list)
	out := map[string]bool{}
	for _, k := range list {
		out[k.Name] = true
	}
	return out
}

// TestClusterLeaderStopAndRestart: the leader stops; writes through a
// follower resume on a new leader with nothing acknowledged lost; the old
// leader restarts from its data dir, rejoins and catches up.
func TestClusterLeaderStopAndRestart(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 3)
	old := c.WaitLeader(t)
	f := others(c, old)[0]
	var acked []string
	write := func(name string) bool {
		body := map[string]any{"name": name, "role": "read", "scope_type": "workspace", "scope_values": []string{"myapp"}}
		var e struct{ Code, Message string }
		status := c.Do(t, f, "POST", "/v1/apikeys", c.ProxyPassword, "", body, &e)
		if status/100 != 2 {
			t.Logf("write %s: %d %s: %s", name, status, e.Code, e.Message)
		}
		return status/100 == 2
	}
	for i := range 5 {
		name := "before_" + string(rune('a'+i))
		if !write(name) {
			t.Fatalf("write %s failed with a healthy cluster", name)
		}
		acked = append(acked, name)
	}

	c.Stop(t, old)
	stopped, failed := time.Now(), 0
	after := 0
	for i := 0; after < 5; i++ {
		name := "after_" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		if write(name) {
			if after == 0 {
				t.Logf("writes resumed %s after the leader stopped (%d failed meanwhile)", time.Since(stopped).Round(time.Millisecond), failed)
			}
			acked = append(acked, name)
			after++
		} else if failed++; i > 2000 {
			t.Fatal("writes never resumed after the leader stopped")
		}
		if after == 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if nl := c.WaitLeader(t, old); nl == old {
		t.Fatal("the stopped node is leader")
	}
	for _, i := range others(c, old) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := c.Members[i].Node.FSM().WaitIndex(ctx, c.Members[f].Node.FSM().AppliedIndex())
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		have := keyNames(t, c, i)
		for _, name := range acked {
			if !have[name] {
				t.Fatalf("%s lost acknowledged key %s", c.Members[i].ID, name)
			}
		}
	}

	c.Restart(t, old)
	testcluster.Eventually(t, "the restarted node to catch up", func() bool {
		h0, _ := c.Members[old].Node.FSM().Hash()
		h1, _ := c.Members[f].Node.FSM().Hash()
		return h0 == h1 && c.Members[old].Node.FSM().AppliedIndex() == c.Members[f].Node.FSM().AppliedIndex()
	})
	have := keyNames(t, c, old)
	for _, name := range acked {
		if !have[name] {
			t.Fatalf("restarted node misses key %s", name)
		}
	}
	testcluster.Eventually(t, "all three alive in the restarted node's status", func() bool {
		alive := 0
		for _, ns := range c.Status(t, old).Nodes {
			if ns.Alive {
				alive++
			}
		}
		return alive == 3
	})
	// And it takes writes again (forwarded or as leader).
	if !write("after_restart") {
		t.Fatal("write after the restart failed")
	}
	key := c.CreateKey(t, f, "write", "workspace", "myapp")
	if code := loginCode(t, c.ConnString(old, key, "myapp_workspace")); code != "" {
		t.Fatalf("login on the restarted node: %s", code)
	}
}

// TestClusterLeaveRemovesVoter: a node that leaves gracefully is removed
// from raft at once; the others go on as a two-node cluster.
func TestClusterLeaveRemovesVoter(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 3)
	leader := c.WaitLeader(t)
	gone := others(c, leader)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Members[gone].Node.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	c.Stop(t, gone)
	testcluster.Eventually(t, "the leader to drop the node that left", func() bool {
		l := c.Leader()
		if l < 0 {
			return false
		}
		st := c.Status(t, l)
		for _, ns := range st.Nodes {
			if ns.ID == c.Members[gone].ID {
				return false
			}
		}
		return len(st.Nodes) == 2
	})
	c.CreateKey(t, others(c, gone)[0], "read", "workspace", "myapp")
}

// TestClusterJoinerNeverBootstraps: a node started with a join address and
// an empty data dir whose members cannot be reached does not start a cluster
// of its own: it has no raft configuration, no leader, and refuses logins.
func TestClusterJoinerNeverBootstraps(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second) // bounds its wait for a leader
	defer cancel()
	n, err := node.Start(ctx, node.Config{
		NodeID: "lonely", DataDir: t.TempDir(), WireAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		RaftAddr: "127.0.0.1:0", GossipAddr: "127.0.0.1:0", Join: []string{freePort(t)},
		AdminKey: testcluster.AdminKey, AllowLoopbackPlaintext: true, LogOutput: io.Discard,
		Raft:    node.RaftConfig{HeartbeatTimeout: 100 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond},
		Cluster: node.ClusterConfig{LeaderContactLimit: 200 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	time.Sleep(500 * time.Millisecond) // several election timeouts: a bootstrapped node would lead by now
	st, err := n.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.LeaderID != "" || n.Replica().IsLeader() || len(st.Nodes) > 1 {
		t.Fatalf("a joiner with nobody to join started a cluster: %+v", st)
	}
	for _, ns := range st.Nodes {
		if ns.Voter {
			t.Fatalf("a joiner with nobody to join is a voter: %+v", st)
		}
	}
	u := "postgresql://tdb_00000000:x@" + n.BoundWireAddr() + "/myapp_workspace?sslmode=disable"
	if code := loginCode(t, u); code != "57P03" {
		t.Fatalf("login on a node without a cluster: %q, want 57P03", code)
	}
}

// TestClusterReapsFailedNode: a node that stops without leaving stays a
// voter until it has been failed for ReapTimeout, then the leader removes it.
func TestClusterReapsFailedNode(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 3, testcluster.Configure(func(cfg *node.Config) { cfg.Cluster.ReapTimeout = time.Second }))
	leader := c.WaitLeader(t)
	dead := others(c, leader)[0]
	c.Stop(t, dead)
	testcluster.Eventually(t, "the failed node to show as not alive", func() bool {
		for _, ns := range c.Status(t, leader).Nodes {
			if ns.ID == c.Members[dead].ID {
				return !ns.Alive
			}
		}
		return false
	})
	testcluster.Eventually(t, "the leader to reap the failed node", func() bool {
		l := c.Leader()
		if l < 0 {
			return false
		}
		st := c.Status(t, l)
		for _, ns := range st.Nodes {
			if ns.ID == c.Members[dead].ID {
				return false
			}
		}
		return len(st.Nodes) == 2
	})
	// It comes back: the leader makes it a voter again.
	c.Restart(t, dead)
	testcluster.Eventually(t, "the returning node to be a voter again", func() bool {
		l := c.Leader()
		if l < 0 {
			return false
		}
		voters := 0
		for _, ns := range c.Status(t, l).Nodes {
			if ns.Voter && ns.Alive {
				voters++
			}
		}
		return voters == 3
	})
}

// TestClusterReapsAVoterGossipNeverHeardOf: a raft server that no member
// table holds (it died while another node led, and gossip forgot it before
// this leader started) is removed after ReapTimeout too, or it would count
// towards every quorum for good.
func TestClusterReapsAVoterGossipNeverHeardOf(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 3, testcluster.Configure(func(cfg *node.Config) { cfg.Cluster.ReapTimeout = time.Second }))
	leader := c.WaitLeader(t)
	// A voter at an address nothing listens on: three of four still make
	// a quorum.
	if err := c.Members[leader].Node.Replica().Raft.AddVoter("ghost", "127.0.0.1:1", 0, 10*time.Second).Error(); err != nil {
		t.Fatalf("add the ghost voter: %v", err)
	}
	servers := func() (ids []string) {
		l := c.Leader()
		if l < 0 {
			return nil
		}
		cf := c.Members[l].Node.Replica().Raft.GetConfiguration()
		if cf.Error() != nil {
			return nil
		}
		for _, s := range cf.Configuration().Servers {
			ids = append(ids, string(s.ID))
		}
		return ids
	}
	testcluster.Eventually(t, "the leader to remove the voter gossip never heard of", func() bool {
		ids := servers()
		return len(ids) == 3 && !slices.Contains(ids, "ghost")
	})
	// The members gossip knows stay.
	for _, m := range c.Members {
		if ids := servers(); !slices.Contains(ids, m.ID) {
			t.Fatalf("servers %v lack %s", ids, m.ID)
		}
	}
}

// TestClusterLoginAfterFailoverWithoutWrites: logins do not wait for a
// write after a leader change. The new leader's first entry is raft's own
// no-op, which the FSM never applies; nodes waiting for that index refused
// every login (57P03) until some write came.
func TestClusterLoginAfterFailoverWithoutWrites(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 3)
	old := c.WaitLeader(t)
	key := c.CreateKey(t, old, "write", "workspace", "myapp")
	rest := others(c, old)
	for _, i := range rest {
		if code := loginCode(t, c.ConnString(i, key, "myapp_workspace")); code != "" {
			t.Fatalf("login on %s before the failover: %s", c.Members[i].ID, code)
		}
	}
	c.Stop(t, old)
	c.WaitLeader(t, old)
	for _, i := range rest {
		if code := loginCode(t, c.ConnString(i, key, "myapp_workspace")); code != "" {
			t.Fatalf("login on %s after the failover, with no write since: %s", c.Members[i].ID, code)
		}
	}
}

// TestClusterWipedFirstNodeDoesNotTakeOver: the first node, restarted with
// an emptied data dir and no --join, bootstraps a cluster of its own. When
// the other nodes come back (from their data dirs, rejoining it through
// their saved gossip peers) they must neither follow it nor lose their
// metadata to it: it is another cluster, and raft between the two is
// refused both ways.
func TestClusterWipedFirstNodeDoesNotTakeOver(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 3)
	leader := c.WaitLeader(t)
	c.CreateKey(t, leader, "read", "workspace", "myapp")
	leadFromFirst(t, c)
	c.Stop(t, 1)
	c.Stop(t, 2)
	c.Stop(t, 0)
	c.Reconfigure(t, 0, func(cfg *node.Config) { cfg.DataDir = t.TempDir() })
	c.Restart(t, 0)
	testcluster.Eventually(t, "the wiped node to lead a cluster of its own", func() bool {
		return c.Members[0].Node.Replica().IsLeader() && c.Members[0].Node.Replica().ClusterID() != ""
	})
	c.RestartTogether(t, 1, 2)
	// A restarted node applies its log again once it knows a leader.
	leads := func(i int) bool { return c.Members[i].Node.Replica().IsLeader() }
	testcluster.Eventually(t, "n2 and n3 to go on as a cluster with the metadata they had", func() bool {
		return (leads(1) || leads(2)) && hasProject(c, 1) && hasProject(c, 2)
	})
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		for _, i := range []int{1, 2} {
			if !hasProject(c, i) {
				t.Fatalf("%s lost the cluster's metadata to the wiped node's cluster", c.Members[i].ID)
			}
		}
		for _, i := range []int{1, 2} {
			if l := string(c.Members[i].Node.Replica().Raft.Leader()); l == c.Members[0].Node.Replica().Addr() {
				t.Fatalf("%s follows the wiped node", c.Members[i].ID)
			}
		}
		cf := c.Members[0].Node.Replica().Raft.GetConfiguration()
		if err := cf.Error(); err == nil && len(cf.Configuration().Servers) != 1 {
			t.Fatalf("the wiped node's cluster took in the others: %+v", cf.Configuration().Servers)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Status shows which node is of which cluster, as gossip tells it.
	testcluster.Eventually(t, "n2's status to show n1 of another cluster, n3 of its own", func() bool {
		st := c.Status(t, 1)
		for _, ns := range st.Nodes {
			if want := ns.ID != "n1"; (ns.ClusterID == st.ClusterID) != want || ns.ClusterID == "" {
				return false
			}
		}
		return len(st.Nodes) == 3
	})
	// Writes go on in the cluster the two make.
	if leads(1) {
		c.CreateKey(t, 1, "read", "workspace", "myapp")
	} else {
		c.CreateKey(t, 2, "read", "workspace", "myapp")
	}
}

// leadFromFirst makes n1 the leader: when all nodes stop, the same term on
// both sides of a wiped n1 is the worst case.
func leadFromFirst(t *testing.T, c *testcluster.Cluster) {
	t.Helper()
	c.WaitLeader(t)
	// A transfer fails when n1 is not caught up yet, or when another one
	// is under way: ask again until n1 leads.
	testcluster.Eventually(t, "n1 to lead", func() bool {
		leader := c.Leader()
		if leader <= 0 {
			return leader == 0
		}
		err := c.Members[leader].Node.Replica().Raft.LeadershipTransferToServer("n1", raft.ServerAddress(c.Members[0].Node.Replica().Addr())).Error()
		if err != nil {
			t.Logf("transfer leadership to n1: %v", err)
		}
		return false
	})
}

// hasProject reports whether member i's state has the cluster's project.
func hasProject(c *testcluster.Cluster, i int) (ok bool) {
	c.Members[i].Node.FSM().View(func(s *fsm.State) { ok = s.Projects[c.ProjectID] != nil })
	return ok
}

// TestClusterWipedFirstNodeBeforeItsIDIsCommitted: as
// TestClusterWipedFirstNodeDoesNotTakeOver, but all three start together
// and the others are in gossip before the wiped node's first leader round,
// while its new cluster's ID is still pending: it must not make them voters
// then either, nor be absorbed by them.
func TestClusterWipedFirstNodeBeforeItsIDIsCommitted(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 3)
	leadFromFirst(t, c)
	c.CreateKey(t, 0, "read", "workspace", "myapp")
	c.Stop(t, 1)
	c.Stop(t, 2)
	c.Stop(t, 0)
	c.Reconfigure(t, 0, func(cfg *node.Config) {
		cfg.DataDir = t.TempDir()
		// n1 leads its new cluster once n2 and n3 are in gossip; they
		// wait longer before an election of their own.
		cfg.Raft.HeartbeatTimeout = time.Second
		cfg.Raft.ElectionTimeout = time.Second
	})
	for _, i := range []int{1, 2} {
		c.Reconfigure(t, i, func(cfg *node.Config) {
			cfg.Raft.HeartbeatTimeout = 5 * time.Second
			cfg.Raft.ElectionTimeout = 5 * time.Second
		})
	}
	c.RestartTogether(t, 0, 1, 2)
	// A restarted node applies its log again one entry at a time: the
	// project counts as lost only once it was seen.
	seen := map[int]bool{}
	deadline := time.Now().Add(8 * time.Second)
	for time.Now().Before(deadline) {
		for _, i := range []int{1, 2} {
			if l := string(c.Members[i].Node.Replica().Raft.Leader()); l == c.Members[0].Node.Replica().Addr() {
				t.Fatalf("%s follows the wiped node", c.Members[i].ID)
			}
			has := hasProject(c, i)
			if seen[i] && !has {
				t.Fatalf("%s lost the cluster's metadata to the wiped node's cluster", c.Members[i].ID)
			}
			seen[i] = seen[i] || has
		}
		cf := c.Members[0].Node.Replica().Raft.GetConfiguration()
		if err := cf.Error(); err == nil && len(cf.Configuration().Servers) != 1 {
			t.Fatalf("the wiped node's cluster took in the others: %+v", cf.Configuration().Servers)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, i := range []int{1, 2} {
		if !hasProject(c, i) {
			t.Fatalf("%s has no project", c.Members[i].ID)
		}
	}
}
