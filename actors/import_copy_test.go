package actors

import (
	"context"
	"net/url"
	"testing"

	"github.com/jackc/pgx/v5"

	"tdb/blueprint"
	"tdb/fsm"
	"tdb/internal/testpg"
)

const importSource = `
CREATE TABLE companies (id int PRIMARY KEY, tenant_id text NOT NULL, name text);
CREATE TABLE users (id serial PRIMARY KEY, tenant_id text NOT NULL, company_id int REFERENCES companies (id), email text UNIQUE);
CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, user_id int NOT NULL REFERENCES users (id), total numeric);
CREATE TABLE order_lines (order_id bigint REFERENCES orders (id), line int, qty int, PRIMARY KEY (order_id, line));
CREATE TABLE settings (key text PRIMARY KEY, value text);
INSERT INTO companies VALUES (1, 'acme', 'Acme'), (2, 'Globex Corp', 'Globex');
INSERT INTO users (tenant_id, company_id, email) VALUES ('acme', 1, 'a@acme'), ('acme', 1, 'b@acme'), ('Globex Corp', 2, 'g@globex');
INSERT INTO orders (user_id, total) VALUES (1, 10), (2, 20), (3, 30);
INSERT INTO order_lines VALUES (1, 1, 1), (1, 2, 5), (2, 1, 1), (3, 1, 9);
INSERT INTO settings VALUES ('k', 'v');`

// sourceDB creates a database with importSource on the shared server and
// returns its URL.
func sourceDB(t *testing.T) string {
	t.Helper()
	f := newDeployFixture(t) // only for its random name and cleanup pattern
	name := "src_" + f.db
	su := f.superuser()
	if _, err := su.Exec(context.Background(), "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = su.Exec(context.Background(), "DROP DATABASE "+name+" WITH (FORCE)") })
	u, _ := url.Parse(testpg.Shared(t).URL())
	u.Path = "/" + name
	c, err := pgx.Connect(context.Background(), u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(context.Background(), importSource); err != nil {
		t.Fatal(err)
	}
	return u.String()
}

func TestCopyTenantIsRepeatable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := sourceDB(t)
	plan, err := blueprint.Analyse(ctx, src, "tenant_id")
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Tables) != 4 || plan.Tables[3].Name != "public.order_lines" || len(plan.Tables[3].Via) != 2 ||
		len(plan.Unrouted) != 1 || plan.Unrouted[0] != "public.settings" || len(plan.Values) != 2 {
		t.Fatalf("plan %+v", plan)
	}
	stmts, _, err := blueprint.ImportSchema(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	f := newDeployFixture(t)
	if _, err := applyTenant(ctx, fastApply, f.job(0, 1, stmts)); err != nil {
		t.Fatal(err)
	}
	job := ImportJob{Tenant: "acme", Value: "acme", SourceURL: src, BackendURL: f.url, Database: f.db, Tables: plan.Tables}
	// Twice, as after a crash between the commit and recording the result.
	for i := 0; i < 2; i++ {
		rows, err := copyTenant(ctx, fastApply, job)
		if err != nil || rows != 1+2+2+3 {
			t.Fatalf("copy %d: %d rows, %v", i, rows, err)
		}
	}
	su := f.superuser()
	var users, lines int
	if err := su.QueryRow(ctx, "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM order_lines)").Scan(&users, &lines); err != nil || users != 2 || lines != 3 {
		t.Fatalf("users %d, lines %d, %v", users, lines, err)
	}
	// Sequences moved past the copied ids.
	var id, orderID int
	if err := su.QueryRow(ctx, "INSERT INTO users (tenant_id, email) VALUES ('acme', 'c@acme') RETURNING id").Scan(&id); err != nil || id != 3 {
		t.Fatalf("next user id %d, %v", id, err)
	}
	if err := su.QueryRow(ctx, "INSERT INTO orders (user_id, total) VALUES (1, 1) RETURNING id").Scan(&orderID); err != nil || orderID != 3 {
		t.Fatalf("next order id %d, %v", orderID, err)
	}
}

func TestTenantNames(t *testing.T) {
	got := blueprint.TenantNames([]string{"acme", "Globex Corp", "42", "ACME", "", "a__b", "x-very-long-name-that-goes-on-and-on-and-on-forever"},
		func(string) bool { return false })
	want := map[string]string{"ACME": "acme", "acme": "acme_2", "Globex Corp": "globex_corp", "42": "t_42", "": "t", "a__b": "a_b",
		"x-very-long-name-that-goes-on-and-on-and-on-forever": "x_very_long_name_that_goes_on_and_on_and"}
	for _, sp := range got {
		if want[sp.Value] != sp.Tenant {
			t.Errorf("%q → %q, want %q", sp.Value, sp.Tenant, want[sp.Value])
		}
		if err := fsm.ValidateName("tenant", sp.Tenant); err != nil {
			t.Errorf("%q: %v", sp.Tenant, err)
		}
	}
}

// TestTenantNamesAvoidTakenNames: a name a tenant of another blueprint has
// is skipped, as a clash within the import would be.
func TestTenantNamesAvoidTakenNames(t *testing.T) {
	taken := map[string]bool{"t_2": true, "org1": true, "org1_2": true}
	got := blueprint.TenantNames([]string{"1", "2", "org1"}, func(n string) bool { return taken[n] })
	want := map[string]string{"1": "t_1", "2": "t_2_2", "org1": "org1_3"}
	for _, sp := range got {
		if want[sp.Value] != sp.Tenant {
			t.Errorf("%q → %q, want %q", sp.Value, sp.Tenant, want[sp.Value])
		}
	}
}
