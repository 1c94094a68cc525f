package node_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"tdb/actors/backend"
	"tdb/fsm"
	"tdb/internal/testnode"
	"tdb/node"
)

// TestRestoreABackupOfLogVersion1: a backup taken by a cluster that still
// ran log version 1 (before versions were counted; no cluster ID yet) is
// restored by the current build. The restored cluster moves to the
// build's log version, is named then, gets the current guard in its
// databases (the DDL journal in the tenant workspace), and its keys log in
// to the same databases, whose DDL is recorded again.
func TestRestoreABackupOfLogVersion1(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t, func(cfg *node.Config) { cfg.Cluster.LogVersion = 1 })
	ctx := context.Background()
	tenantKey := e.CreateTenant(t, "wayne")
	e.WaitReady(t)
	b := backup(t, e)
	if b.LogVersion != 1 || b.ClusterID != "" {
		t.Fatalf("backup at log version %d of cluster %q, want 1 and none", b.LogVersion, b.ClusterID)
	}
	if err := e.Node.Stop(); err != nil {
		t.Fatal(err)
	}
	e.Node = nil

	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	r, err := node.Start(sctx, restoredConfig(t, e, b))
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	e.Node = r
	ws := e.Physical(t, fsm.WorkspaceDatabase("myapp"))
	waitFor(t, "the log version raised, the cluster named and the journal installed", func() bool {
		var v uint16
		guard := 0
		r.FSM().View(func(s *fsm.State) { v, guard = s.ActiveLogVersion(), s.Databases[ws].Guard })
		return v == fsm.LogVersion && r.Replica().ClusterID() != "" && guard == backend.GuardVersion
	})

	conn, err := pgx.Connect(ctx, e.ConnString(tenantKey, "myapp__wayne", "disable"))
	if err != nil {
		t.Fatalf("the tenant's key through the restored node: %v", err)
	}
	defer conn.Close(ctx)
	if err := conn.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	w := connect(t, e.ConnString(e.ProxyPassword, "myapp_workspace", "disable"))
	if _, err := w.Exec(ctx, "CREATE TABLE after_restore (id int)"); err != nil {
		t.Fatal(err)
	}
	var versions []fsm.BlueprintVersion
	r.FSM().View(func(s *fsm.State) { versions = s.Projects[e.ProjectID].Workspaces["myapp"].Versions })
	if len(versions) != 1 || !journalID.MatchString(versions[0].CaptureID) {
		t.Fatalf("versions after the restore %+v, want the new DDL recorded under the journal's id", versions)
	}
}
