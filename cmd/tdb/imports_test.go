package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestSchemaAndImportFlags(t *testing.T) {
	apiURL := startAPI(t)
	user := []string{"--api-url", apiURL, "--api-key", "sk_whatever"}
	tests := []struct {
		args    []string
		wantErr string
	}{
		{append(user, "workspaces", "schema", "myapp"), "tdb: pass one of --template NAME or --from-url URL\n"},
		{append(user, "workspaces", "schema", "myapp", "--template", "saas", "--from-url", "postgres://h/db"), "tdb: pass one of --template NAME or --from-url URL\n"},
		{append(user, "workspaces", "import-full", "myapp", "--from-url", "postgres://h/db"), `tdb: required flag(s) "routing-field" not set` + "\n"},
		{append(user, "workspaces", "schema", "myapp", "--template", "saas"), "tdb: invalid API key (unauthorized)\n"},
	}
	for _, tc := range tests {
		code, out, errOut := tdb(tc.args...)
		if code != 1 || out != "" || errOut != tc.wantErr {
			t.Errorf("%v: exit %d stdout %q stderr %q, want %q", tc.args, code, out, errOut, tc.wantErr)
		}
	}
}

func TestWithConnections(t *testing.T) {
	raw := []byte(`{"id":"imp_1","tenants":[{"tenant_id":"acme","status":"done"},{"tenant_id":"t_42","status":"done"}]}`)
	var doc importOut
	if err := json.Unmarshal(withConnections(raw, map[string]string{"acme": "postgresql://p:s@h/myapp__acme"}), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Tenants[0].ConnectionString != "postgresql://p:s@h/myapp__acme" || doc.Tenants[1].ConnectionString != "" {
		t.Fatalf("%+v", doc.Tenants)
	}
	var b strings.Builder
	printImport(&b, doc, true)
	if !strings.Contains(b.String(), "CONNECTION_STRING") || !strings.Contains(b.String(), "myapp__acme") || strings.Contains(b.String(), "t_42") {
		t.Fatalf("printed:\n%s", b.String())
	}
}
