package httpapi_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"testing"

	"tdb/fsm"
	"tdb/wire/scram"
)

func TestCreateProject(t *testing.T) {
	e := newBareEnv(t, nil, nil)
	p := e.call(adminKey, "POST", "/v1/projects", map[string]string{"name": "acme"}, 201)
	if !regexp.MustCompile(`^tdb_[0-9a-f]{8}$`).MatchString(p["project_id"].(string)) ||
		!regexp.MustCompile(`^tdb_[0-9a-f]{16}$`).MatchString(p["proxy_password"].(string)) ||
		p["name"] != "acme" || p["raft_index"] == nil {
		t.Fatalf("project %v", p)
	}
	var proj fsm.Project
	var keys []*fsm.Key
	e.c.FSM().View(func(st *fsm.State) {
		pp := st.Project(p["project_id"].(string))
		proj, keys = *pp, pp.LiveKeys()
	})
	if len(proj.Salt) != 16 || proj.Iterations != 4096 {
		t.Fatalf("salt %x iterations %d", proj.Salt, proj.Iterations)
	}
	if len(keys) != 1 || keys[0].Name != "proxy_password" || keys[0].Role != "admin" || keys[0].ScopeType != "project" {
		t.Fatalf("project key %+v", keys)
	}
	// The wire proxy checks SCRAM proofs against these verifiers.
	v := scram.NewVerifier(p["proxy_password"].(string), proj.Salt, proj.Iterations)
	if !bytes.Equal(keys[0].StoredKey, v.StoredKey) || !bytes.Equal(keys[0].ServerKey, v.ServerKey) {
		t.Fatal("project key verifiers do not match its proxy_password")
	}
	sum := sha256.Sum256([]byte(p["proxy_password"].(string)))
	if keys[0].Lookup != hex.EncodeToString(sum[:]) {
		t.Fatalf("lookup %s", keys[0].Lookup)
	}
	list := e.list(adminKey, "/v1/projects")
	if len(list) != 1 || list[0]["project_id"] != p["project_id"] {
		t.Fatalf("projects %v", list)
	}
	e.call(adminKey, "POST", "/v1/projects", map[string]string{"name": " "}, 400)
}
