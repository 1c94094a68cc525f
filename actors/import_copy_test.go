package actors

import (
	"context"
	"net/url"
	"strings"
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
	return sourceDBWith(t, importSource)
}

// sourceDBWith creates a database running sql on the shared server and
// returns its URL.
func sourceDBWith(t *testing.T, sql string) string {
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
	if _, err := c.Exec(context.Background(), sql); err != nil {
		t.Fatal(err)
	}
	return u.String()
}

// plannedSource is a database with importSource, and its import plan by
// tenant_id.
func plannedSource(t *testing.T) (string, blueprint.ImportPlan) {
	t.Helper()
	src := sourceDB(t)
	plan, err := blueprint.Analyse(context.Background(), src, "tenant_id")
	if err != nil {
		t.Fatal(err)
	}
	return src, plan
}

// tenantOf is a tenant database with the schema of the source src.
func tenantOf(t *testing.T, src string) *deployFixture {
	t.Helper()
	ctx := context.Background()
	stmts, _, err := blueprint.ImportSchema(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	f := newDeployFixture(t)
	if _, err := applyTenant(ctx, fastApply, f.job(0, 1, stmts)); err != nil {
		t.Fatal(err)
	}
	return f
}

// importInto analyses src by field, makes a tenant database with its
// schema and copies value's rows into it.
func importInto(t *testing.T, src, field, value string) (*deployFixture, int64, error) {
	t.Helper()
	ctx := context.Background()
	plan, err := blueprint.Analyse(ctx, src, field)
	if err != nil {
		t.Fatalf("analyse: %v", err)
	}
	f := tenantOf(t, src)
	job := ImportJob{Tenant: "x", Value: value, SourceURL: src, BackendURL: f.url, Database: f.db, Tables: plan.Tables}
	rows, err := copyTenant(ctx, fastApply, job)
	return f, rows, err
}

// The copy does not fire the schema's triggers (the rows are copies of
// rows they already acted on: a history table would get its rows twice),
// and leaves them as they were after it.
func TestCopyTenantDoesNotFireTriggers(t *testing.T) {
	t.Parallel()
	src := sourceDBWith(t, `
CREATE TABLE orders (id int PRIMARY KEY, tenant_id text NOT NULL, total int);
CREATE TABLE order_history (id serial PRIMARY KEY, order_id int REFERENCES orders, total int);
CREATE FUNCTION log_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO order_history (order_id, total) VALUES (NEW.id, NEW.total); RETURN NEW; END $$;
CREATE TRIGGER log_order AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION log_order();
CREATE TRIGGER always_on AFTER UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION log_order();
ALTER TABLE orders ENABLE ALWAYS TRIGGER always_on;
INSERT INTO orders VALUES (1, 'acme', 10), (2, 'acme', 20);`)
	f, _, err := importInto(t, src, "tenant_id", "acme")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var n int
	if err := f.superuser().QueryRow(ctx, "SELECT count(*) FROM order_history").Scan(&n); err != nil || n != 2 {
		t.Fatalf("order_history has %d rows after the copy, the source 2: %v", n, err)
	}
	var states string
	if err := f.superuser().QueryRow(ctx, "SELECT string_agg(tgname || ':' || tgenabled::text, ',' ORDER BY tgname) FROM pg_trigger WHERE NOT tgisinternal").Scan(&states); err != nil || states != "always_on:A,log_order:O" {
		t.Fatalf("triggers after the copy: %q, %v", states, err)
	}
	if _, err := f.superuser().Exec(ctx, "INSERT INTO orders VALUES (3, 'acme', 30)"); err != nil {
		t.Fatal(err)
	}
	if err := f.superuser().QueryRow(ctx, "SELECT count(*) FROM order_history").Scan(&n); err != nil || n != 3 {
		t.Fatalf("the trigger does not fire after the copy: %d rows, %v", n, err)
	}
}

// The source's DateStyle does not shape what the tenant reads.
func TestCopyTenantDatesWhateverTheSourcesStyle(t *testing.T) {
	t.Parallel()
	src := sourceDBWith(t, `
CREATE TABLE events (id int PRIMARY KEY, tenant_id text NOT NULL, day date, took interval);
INSERT INTO events VALUES (1, 'acme', '2024-04-03', '1 day 02:00');`)
	u, _ := url.Parse(src)
	c, err := pgx.Connect(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{"ALTER DATABASE " + u.Path[1:] + " SET datestyle = 'SQL, DMY'", "ALTER DATABASE " + u.Path[1:] + " SET intervalstyle = 'sql_standard'"} {
		if _, err := c.Exec(context.Background(), sql); err != nil {
			t.Fatal(err)
		}
	}
	c.Close(context.Background())
	f, _, err := importInto(t, src, "tenant_id", "acme")
	if err != nil {
		t.Fatal(err)
	}
	var day, took string
	if err := f.superuser().QueryRow(context.Background(), "SELECT day::text, took::text FROM events").Scan(&day, &took); err != nil || day != "2024-04-03" || took != "1 day 02:00:00" {
		t.Fatalf("day %q, interval %q (source: 2024-04-03, 1 day 02:00:00): %v", day, took, err)
	}
}

// A routing column of type date, under a source whose DateStyle is not
// ISO: the values the analysis lists are those the copy matches.
func TestCopyTenantRoutedByDateWhateverTheSourcesStyle(t *testing.T) {
	t.Parallel()
	src := sourceDBWith(t, `
CREATE TABLE days (id int PRIMARY KEY, tenant_id date NOT NULL);
INSERT INTO days VALUES (1, '2024-04-03'), (2, '2024-04-03'), (3, '2024-05-01');`)
	u, _ := url.Parse(src)
	c, err := pgx.Connect(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(context.Background(), "ALTER DATABASE "+u.Path[1:]+" SET datestyle = 'SQL, DMY'"); err != nil {
		t.Fatal(err)
	}
	c.Close(context.Background())
	plan, err := blueprint.Analyse(context.Background(), src, "tenant_id")
	if err != nil || len(plan.Values) != 2 || plan.Values[0] != "2024-04-03" {
		t.Fatalf("values %q: %v", plan.Values, err)
	}
	if _, rows, err := importInto(t, src, "tenant_id", plan.Values[0]); err != nil || rows != 2 {
		t.Fatalf("copy of %s: %d rows, %v", plan.Values[0], rows, err)
	}
}

// Each tenant's rows are read by an index on the routing column (and on
// the foreign keys on the way) where the column's type allows it: a full
// scan per tenant would read the whole source once per tenant. Where
// routing columns differ in type the text match stays, and still copies.
func TestCopyTenantReadsByIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := sourceDBWith(t, `
CREATE TABLE items (id int PRIMARY KEY, tenant_id bigint NOT NULL);
CREATE INDEX ON items (tenant_id);
CREATE TABLE parts (id int PRIMARY KEY, item_id int REFERENCES items (id));
CREATE INDEX ON parts (item_id);
INSERT INTO items SELECT g, g % 50 FROM generate_series(1, 5000) g;
INSERT INTO parts SELECT g, g FROM generate_series(1, 5000) g;
ANALYZE;`)
	plan, err := blueprint.Analyse(ctx, src, "tenant_id")
	if err != nil {
		t.Fatal(err)
	}
	c, err := pgx.Connect(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	for _, tb := range plan.Tables {
		var lines []string
		rows, err := c.Query(ctx, "EXPLAIN "+blueprint.SelectSQL(tb, "7", false))
		if err == nil {
			lines, err = pgx.CollectRows(rows, pgx.RowTo[string])
		}
		if err != nil {
			t.Fatal(err)
		}
		if p := strings.Join(lines, "\n"); strings.Contains(p, "Seq Scan on items") {
			t.Errorf("%s is read with a full scan of items:\n%s", tb.Name, p)
		}
	}
	if _, rows, err := importInto(t, src, "tenant_id", "7"); err != nil || rows != 200 {
		t.Fatalf("copy: %d rows, %v", rows, err)
	}

	mixed := sourceDBWith(t, `
CREATE TABLE a (id int PRIMARY KEY, tenant_id int NOT NULL);
CREATE TABLE b (id int PRIMARY KEY, tenant_id text NOT NULL);
INSERT INTO a VALUES (1, 7); INSERT INTO b VALUES (1, '7'), (2, 'x');`)
	if plan, err := blueprint.Analyse(ctx, mixed, "tenant_id"); err != nil || plan.Tables[0].RoutingType != "" {
		t.Fatalf("routing columns of two types: %+v, %v", plan.Tables, err)
	}
	if _, rows, err := importInto(t, mixed, "tenant_id", "x"); err != nil || rows != 1 {
		t.Fatalf("copy of x: %d rows, %v", rows, err)
	}
}

// Sequences move past the copied keys also when a column default draws
// from one that no column owns (shared by tables, as some ORMs do), and a
// key below a sequence's minimum (a serial id 0) leaves it alone.
func TestCopyTenantAdvancesSequences(t *testing.T) {
	t.Parallel()
	src := sourceDBWith(t, `
CREATE SEQUENCE ids;
CREATE TABLE items (id bigint PRIMARY KEY DEFAULT nextval('ids'), tenant_id text NOT NULL, label text DEFAULT 'n' || nextval('ids'));
CREATE TABLE parts (id bigint PRIMARY KEY DEFAULT nextval('ids'), tenant_id text NOT NULL);
CREATE TABLE roles (id serial PRIMARY KEY, tenant_id text NOT NULL);
INSERT INTO items (tenant_id) VALUES ('acme'), ('acme'), ('acme');
INSERT INTO parts (tenant_id) VALUES ('acme');
INSERT INTO roles VALUES (0, 'acme');`)
	f, _, err := importInto(t, src, "tenant_id", "acme")
	if err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{"INSERT INTO items (tenant_id) VALUES ('acme')", "INSERT INTO parts (tenant_id) VALUES ('acme')", "INSERT INTO roles (tenant_id) VALUES ('acme')"} {
		if _, err := f.superuser().Exec(context.Background(), sql); err != nil {
			t.Fatalf("%s after the import: %v", sql, err)
		}
	}
}

func TestCopyTenantIsRepeatable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src, plan := plannedSource(t)
	if len(plan.Tables) != 4 || plan.Tables[3].Name != "public.order_lines" || len(plan.Tables[3].Via) != 2 ||
		len(plan.Unrouted) != 1 || plan.Unrouted[0] != "public.settings" || len(plan.Values) != 2 {
		t.Fatalf("plan %+v", plan)
	}
	f := tenantOf(t, src)
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

// A copy that committed but whose result the leader never recorded is not
// made again by the next leader: the tenant's applications may have written
// there since. A deployment in between keeps that record, and another
// import copies again.
func TestCopyTenantCommittedIsNotMadeAgain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src, plan := plannedSource(t)
	f := tenantOf(t, src)
	job := ImportJob{Import: "imp_0a1b2c", Tenant: "acme", Value: "acme", SourceURL: src, BackendURL: f.url, Database: f.db, Tables: plan.Tables, Mark: true}
	if rows, err := copyTenant(ctx, fastApply, job); err != nil || rows != 8 {
		t.Fatalf("copy: %d rows, %v", rows, err)
	}
	su := f.superuser()
	if _, err := su.Exec(ctx, "INSERT INTO users (tenant_id, email) VALUES ('acme', 'new@acme')"); err != nil {
		t.Fatal(err)
	}
	if reached, err := applyTenant(ctx, fastApply, f.job(1, 2, nil, []string{"CREATE TABLE notes (id int)"})); err != nil || reached != 2 {
		t.Fatalf("deploy after the copy: reached %d, %v", reached, err)
	}
	if m := f.marker(); m != "tdb:schema_version=2;done=0;import=imp_0a1b2c/8" {
		t.Fatalf("marker after the deployment: %q", m)
	}
	count := func() (n int) {
		t.Helper()
		if err := su.QueryRow(ctx, "SELECT count(*) FROM users").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// The next leader's try of the same import.
	if rows, err := copyTenant(ctx, fastApply, job); err != nil || rows != 8 {
		t.Fatalf("copy again: %d rows, %v", rows, err)
	}
	if n := count(); n != 3 {
		t.Fatalf("users after the same import again: %d, want the 2 copied and the one written since", n)
	}
	job.Import = "imp_3d4e5f"
	if rows, err := copyTenant(ctx, fastApply, job); err != nil || rows != 8 {
		t.Fatalf("another import: %d rows, %v", rows, err)
	}
	if n := count(); n != 2 {
		t.Fatalf("users after another import: %d, want the 2 copied", n)
	}
	if m := f.marker(); m != "tdb:schema_version=2;done=0;import=imp_3d4e5f/8" {
		t.Fatalf("marker after another import: %q", m)
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

// The import is recorded in the marker only once the cluster runs log
// version 3: builds before it read a marker with steps done and an import
// as no steps done.
func TestPlanImportTenantMarksFromLogVersion3(t *testing.T) {
	for v, want := range map[uint16]bool{2: false, 3: true} {
		s := fsm.NewState()
		s.LogVersion = v
		im := &fsm.Import{ID: "imp_1", ProjectID: "p"}
		if job := PlanImportTenant(s, im, &fsm.ImportTenant{Tenant: "t"}); job.Mark != want {
			t.Errorf("log version %d: Mark %v", v, job.Mark)
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

// A table others inherit from (INHERITS, not a partitioned table) gets
// its own rows only: its children's rows are copied into the children,
// and read through the parent too they were copied twice (also into a
// lookup table, whose child lookup_more no copied table references).
func TestCopyTenantInheritedTableGetsItsOwnRows(t *testing.T) {
	t.Parallel()
	src := sourceDBWith(t, `
CREATE TABLE base (id int, tenant_id text);
CREATE TABLE child (extra text) INHERITS (base);
CREATE TABLE lookup (code text PRIMARY KEY);
CREATE TABLE lookup_more () INHERITS (lookup);
CREATE TABLE items (id int, tenant_id text, code text REFERENCES lookup);
INSERT INTO base VALUES (1, 'acme'), (3, NULL);
INSERT INTO child VALUES (2, 'acme', 'e'), (4, NULL, 'n');
INSERT INTO lookup VALUES ('fr');
INSERT INTO lookup_more VALUES ('de');
INSERT INTO items VALUES (1, 'acme', 'fr');`)
	plan, err := blueprint.Analyse(context.Background(), src, "tenant_id")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"public.base: 1 row(s) that reach no tenant_id", "public.child: 1 row(s) that reach no tenant_id"}; strings.Join(plan.NotCopied, "|") != strings.Join(want, "|") {
		t.Errorf("not copied %q, want %q", plan.NotCopied, want)
	}
	f, rows, err := importInto(t, src, "tenant_id", "acme")
	if err != nil {
		t.Fatal(err)
	}
	var got string
	if err := f.superuser().QueryRow(context.Background(), `SELECT concat_ws(' ',
		(SELECT string_agg(id::text, ',' ORDER BY id) FROM ONLY base), (SELECT string_agg(id::text, ',' ORDER BY id) FROM child),
		(SELECT string_agg(code, ',' ORDER BY code) FROM ONLY lookup))`).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if want := "1 2 fr"; got != want || rows != 4 {
		t.Fatalf("base, child, lookup after the copy: %q, %d rows; want %q as the source, 4 rows", got, rows, want)
	}
}

// A partitioned table's rows land in its partitions, whose triggers do not
// fire either: a partition's own, and its clones of the parent's. Each is
// left as it was, also a clone disabled on one partition only.
func TestCopyTenantDoesNotFirePartitionTriggers(t *testing.T) {
	t.Parallel()
	src := sourceDBWith(t, `
CREATE TABLE ev (id int, tenant_id text, stamp text) PARTITION BY LIST (tenant_id);
CREATE TABLE ev_a PARTITION OF ev FOR VALUES IN ('acme');
CREATE TABLE ev_r PARTITION OF ev DEFAULT;
CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.stamp := 'fired on ' || TG_TABLE_NAME; RETURN NEW; END $$;
CREATE TRIGGER on_part BEFORE INSERT ON ev_a FOR EACH ROW EXECUTE FUNCTION stamp();
CREATE TRIGGER on_parent BEFORE INSERT ON ev FOR EACH ROW EXECUTE FUNCTION stamp();
ALTER TABLE ev DISABLE TRIGGER on_parent; ALTER TABLE ev_a DISABLE TRIGGER on_part;
INSERT INTO ev VALUES (1, 'acme', 'orig');
ALTER TABLE ev ENABLE TRIGGER on_parent; ALTER TABLE ev_a ENABLE TRIGGER on_part;
ALTER TABLE ev_r DISABLE TRIGGER on_parent;`)
	f, _, err := importInto(t, src, "tenant_id", "acme")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var stamp, states string
	if err := f.superuser().QueryRow(ctx, "SELECT string_agg(stamp, ',') FROM ev").Scan(&stamp); err != nil || stamp != "orig" {
		t.Errorf("ev.stamp after the copy: %q, the source's orig: %v", stamp, err)
	}
	if err := f.superuser().QueryRow(ctx, `SELECT string_agg(tgrelid::regclass || '.' || tgname || ':' || tgenabled::text, ',' ORDER BY tgrelid::regclass::text, tgname)
		FROM pg_trigger WHERE NOT tgisinternal`).Scan(&states); err != nil || states != "ev.on_parent:O,ev_a.on_parent:O,ev_a.on_part:O,ev_r.on_parent:D" {
		t.Errorf("triggers after the copy: %q, %v", states, err)
	}
}

// A sequence moves past the copied keys also when its column is of a
// domain over an integer type, and, for one that counts down, past the
// smallest key copied.
func TestCopyTenantAdvancesDomainAndDescendingSequences(t *testing.T) {
	t.Parallel()
	src := sourceDBWith(t, `
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE DOMAIN small_posint AS posint CHECK (VALUE < 100000);
CREATE TABLE items (id small_posint PRIMARY KEY, tenant_id text NOT NULL);
CREATE SEQUENCE items_id_seq OWNED BY items.id;
ALTER TABLE items ALTER id SET DEFAULT nextval('items_id_seq');
CREATE SEQUENCE down INCREMENT -1 MAXVALUE -1;
CREATE TABLE debts (id int PRIMARY KEY DEFAULT nextval('down'), tenant_id text NOT NULL);
INSERT INTO items (tenant_id) VALUES ('acme'), ('acme');
INSERT INTO debts (tenant_id) VALUES ('acme'), ('acme'), ('acme');`)
	f, _, err := importInto(t, src, "tenant_id", "acme")
	if err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{"INSERT INTO items (tenant_id) VALUES ('acme')", "INSERT INTO debts (tenant_id) VALUES ('acme')"} {
		if _, err := f.superuser().Exec(context.Background(), sql); err != nil {
			t.Errorf("%s after the import: %v", sql, err)
		}
	}
}

// A NOT VALID check or foreign key of the source holds old rows that break
// it: the copy brings them, as pg_dump does by adding such a constraint
// after the data, and leaves the constraint as it was, not valid and still
// checking new rows.
func TestCopyTenantKeepsRowsANotValidConstraintLetThrough(t *testing.T) {
	t.Parallel()
	src := sourceDBWith(t, `
CREATE TABLE customers (id int PRIMARY KEY, tenant_id text);
CREATE TABLE orders (id int, tenant_id text, customer_id int, qty int);
INSERT INTO customers VALUES (1, 'acme');
INSERT INTO orders VALUES (1, 'acme', 1, 5), (2, 'acme', 7, -1);
ALTER TABLE orders ADD CONSTRAINT qty_positive CHECK (qty > 0) NOT VALID;
ALTER TABLE orders ADD CONSTRAINT orders_customer FOREIGN KEY (customer_id) REFERENCES customers DEFERRABLE NOT VALID;`)
	f, rows, err := importInto(t, src, "tenant_id", "acme")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var got, cons string
	if err := f.superuser().QueryRow(ctx, "SELECT string_agg(concat_ws(':', id, customer_id, qty), ',' ORDER BY id) FROM orders").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if want := "1:1:5,2:7:-1"; got != want || rows != 3 {
		t.Fatalf("orders after the copy: %q, %d rows; want %q as the source, 3 rows", got, rows, want)
	}
	if err := f.superuser().QueryRow(ctx, `SELECT string_agg(conname || ' ' || pg_get_constraintdef(oid), ', ' ORDER BY conname)
		FROM pg_constraint WHERE conrelid = 'orders'::regclass`).Scan(&cons); err != nil {
		t.Fatal(err)
	}
	if want := "orders_customer FOREIGN KEY (customer_id) REFERENCES customers(id) DEFERRABLE NOT VALID, qty_positive CHECK ((qty > 0)) NOT VALID"; cons != want {
		t.Errorf("constraints after the copy:\n%s\nwant\n%s", cons, want)
	}
	for _, bad := range []string{"INSERT INTO orders VALUES (3, 'acme', 1, 0)", "INSERT INTO orders VALUES (3, 'acme', 9, 1)"} {
		if _, err := f.superuser().Exec(ctx, bad); err == nil {
			t.Errorf("%s: went in; the not valid constraints still check new rows", bad)
		}
	}
}

// A table with a valid deferred key as well as a not valid check gets its
// check back (a table with deferred checks due cannot be altered), and
// children get the check they inherit back with their parent's.
func TestCopyTenantNotValidBesideDeferredKeysAndChildren(t *testing.T) {
	t.Parallel()
	src := sourceDBWith(t, `
CREATE TABLE customers (id int PRIMARY KEY, tenant_id text);
CREATE TABLE orders (id int, tenant_id text, customer_id int REFERENCES customers DEFERRABLE, qty int);
CREATE TABLE base (id int, tenant_id text, qty int);
CREATE TABLE child () INHERITS (base);
INSERT INTO customers VALUES (1, 'acme');
INSERT INTO orders VALUES (1, 'acme', 1, -1);
INSERT INTO base VALUES (1, 'acme', -1);
INSERT INTO child VALUES (2, 'acme', -2);
ALTER TABLE orders ADD CONSTRAINT qty_positive CHECK (qty > 0) NOT VALID;
ALTER TABLE base ADD CONSTRAINT base_qty CHECK (qty > 0) NOT VALID;`)
	f, rows, err := importInto(t, src, "tenant_id", "acme")
	if err != nil {
		t.Fatal(err)
	}
	var cons string
	if err := f.superuser().QueryRow(context.Background(), `SELECT string_agg(conrelid::regclass || '.' || conname || ' ' || convalidated || ' ' || conislocal || ' ' || coninhcount, ', ' ORDER BY conrelid::regclass::text, conname)
		FROM pg_constraint WHERE contype = 'c' AND conrelid <> 0`).Scan(&cons); err != nil {
		t.Fatal(err)
	}
	if want := "base.base_qty false true 0, child.base_qty false false 1, orders.qty_positive false true 0"; cons != want || rows != 4 {
		t.Errorf("checks after the copy of %d rows:\n%s\nwant, after 4 rows\n%s", rows, cons, want)
	}
}
