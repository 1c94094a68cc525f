package classify

import (
	"strings"
	"testing"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// Statement nodes that never appear at the top level of a raw parse tree.
var notTopLevel = map[string]bool{
	"RawStmt":             true, // the wrapper itself
	"SetOperationStmt":    true, // made by parse analysis
	"ReturnStmt":          true, // inside a SQL-standard function body
	"PLAssignStmt":        true, // PL/pgSQL assignment
	"ReplicaIdentityStmt": true, // inside ALTER TABLE
}

// TestEveryStatementNodeIsClassified fails when pg_query gains a statement
// node type that classifyNode does not name, so an upgrade gets a review
// instead of the fail-closed default.
func TestEveryStatementNodeIsClassified(t *testing.T) {
	fields := (&pg.Node{}).ProtoReflect().Descriptor().Oneofs().ByName("node").Fields()
	checked := 0
	for i := range fields.Len() {
		fd := fields.Get(i)
		name := string(fd.Message().Name())
		if !strings.HasSuffix(name, "Stmt") || notTopLevel[name] {
			continue
		}
		n := &pg.Node{}
		m := n.ProtoReflect()
		m.Set(fd, m.NewField(fd))
		if _, tag, _ := classifyNode(n); tag == "UTILITY" || tag == "" {
			t.Errorf("%s is not classified explicitly (tag %q)", name, tag)
		}
		checked++
	}
	if checked < 100 {
		t.Fatalf("checked only %d statement node types", checked)
	}
}

func TestUnknownNodeIsDDL(t *testing.T) {
	n := &pg.Node{Node: &pg.Node_ColumnRef{ColumnRef: &pg.ColumnRef{}}}
	if k, _, _ := classifyNode(n); k != DDL {
		t.Errorf("unknown node kind = %v, want DDL (fail closed)", k)
	}
	if k, _, _ := classifyNode(nil); k != DDL {
		t.Errorf("nil node kind = %v, want DDL (fail closed)", k)
	}
}

func TestObjectTags(t *testing.T) {
	if got := dropTag(pg.ObjectType_OBJECT_TSDICTIONARY); got != "DROP TEXT SEARCH DICTIONARY" {
		t.Errorf("dropTag = %q", got)
	}
	if got := alterTag(pg.ObjectType(999)); got != "ALTER" {
		t.Errorf("alterTag(999) = %q", got)
	}
	if got := createTag(pg.ObjectType_OBJECT_TYPE_UNDEFINED); got != "CREATE" {
		t.Errorf("createTag(undefined) = %q", got)
	}
}
