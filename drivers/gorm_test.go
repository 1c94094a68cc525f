package drivers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"tdb/fsm"
	"tdb/httpapi"
)

// Account is the seed's GORM model ("Drivers", Go, GORM), word for word.
type Account struct {
	ID      uint    `gorm:"primaryKey"`
	Name    string  `gorm:"size:255;not null"`
	Email   string  `gorm:"size:255;uniqueIndex;not null"`
	Balance float64 `gorm:"type:decimal(15,2);default:0"`
}

// accountWithPlan is the seed's model grown by one field, as an application's
// next release would change it: AutoMigrate adds the column.
type accountWithPlan struct {
	Account
	Plan string `gorm:"size:32;not null;default:'free'"`
}

func (accountWithPlan) TableName() string { return "accounts" }

// gormWorkspace is the GORM driver's workspace. GORM owns its schema (the
// seed: "Let GORM own the schema or own it in SQL, not both") and deploys
// to every tenant of the blueprint, so it cannot share myapp, whose tenants
// hold the suite's SQL-made accounts table.
const gormWorkspace = "gormapp"

// prepareGormTenant creates the gormapp workspace and a tenant of it at
// blueprint version 0 (no tables: the checks' AutoMigrate makes them and a
// deployment brings them), with a workspace key (role admin: DDL in a
// workspace needs it) and a read key.
func (s *suite) prepareGormTenant(t *testing.T, tenant string) conf {
	t.Helper()
	e := s.env
	e.MustDo(t, "POST", "/v1/workspaces", e.ProxyPassword, "", map[string]string{"name": gormWorkspace, "mode": "tenant"}, nil)
	key := e.CreateTenantOf(t, gormWorkspace, tenant)
	e.WaitReady(t)
	c := conf{
		User: e.ProjectID, Database: fsm.TenantDatabase(gormWorkspace, tenant),
		TenantKey:    key,
		WorkspaceKey: e.CreateKey(t, "admin", "workspace", gormWorkspace),
		ReadKey:      e.CreateKey(t, "read", "tenant", tenant),
		ProjectKey:   e.ProxyPassword,
		MsgDDL:       msgDDL, MsgReadInsert: msgReadInsert,
		API:       "http://" + e.Node.HTTPAddr(),
		Workspace: gormWorkspace,
	}
	c.URL = e.ConnString(c.TenantKey, c.Database, "require")
	c.ReadURL = e.ConnString(c.ReadKey, c.Database, "require")
	c.WorkspaceURL = e.ConnString(c.WorkspaceKey, c.Database, "require")
	c.WorkspaceDBURL = e.ConnString(c.WorkspaceKey, fsm.WorkspaceDatabase(gormWorkspace), "require")
	return c
}

// seedGorm is the seed's GORM example, word for word but for the DSN's
// source and returning errors instead of dropping them.
func seedGorm(dsn string) error {
	db, err := gorm.Open(postgres.Open(dsn), &gorm.Config{})
	if err != nil {
		return err
	}
	if sqlDB, err := db.DB(); err == nil {
		defer sqlDB.Close()
	}

	// AutoMigrate against the workspace; the DDL is captured as a blueprint.
	return db.AutoMigrate(&Account{})
}

// sqlLog records the statements GORM sends, to show which DDL it ran.
type sqlLog struct {
	mu    sync.Mutex
	stmts []string
}

func (l *sqlLog) Printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	// logger.Info's trace line is "file:line\n[took] [rows:n] SQL".
	line := fmt.Sprintf(format, args...)
	if i := strings.Index(line, "] "); i >= 0 {
		if j := strings.Index(line[i+2:], "] "); j >= 0 {
			line = line[i+2+j+2:]
		}
	}
	l.stmts = append(l.stmts, strings.TrimSpace(line))
}

// introspected is an error unless GORM read the catalog: a check that it ran
// no DDL means something only if it looked.
func (l *sqlLog) introspected() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.stmts {
		if strings.Contains(s, "FROM information_schema.columns") {
			return nil
		}
	}
	return fmt.Errorf("GORM did not read information_schema.columns: %q", l.stmts)
}

// ddl is what of the log is not a query: what GORM changed.
func (l *sqlLog) ddl() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, s := range l.stmts {
		if u := strings.ToUpper(s); !strings.HasPrefix(u, "SELECT") && !strings.HasPrefix(u, "WITH") {
			out = append(out, s)
		}
	}
	return out
}

func (l *sqlLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stmts = nil
}

// openGorm opens dsn with GORM, logging every statement to log, with one
// connection so that a failed statement's session is the one checked after.
func openGorm(dsn string, log *sqlLog, prepare bool) (*gorm.DB, func(), error) {
	db, err := gorm.Open(postgres.Open(dsn), &gorm.Config{
		PrepareStmt: prepare,
		Logger:      logger.New(log, logger.Config{LogLevel: logger.Info, IgnoreRecordNotFoundError: true}),
	})
	if err != nil {
		return nil, nil, err
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, nil, err
	}
	sqlDB.SetMaxOpenConns(1)
	return db, func() { sqlDB.Close() }, nil
}

// gormChecks runs the suite's checks with GORM (gorm.io/driver/postgres,
// which is pgx's database/sql driver underneath).
func gormChecks(ck *checker, c conf) {
	bg := context.Background()
	var versions []blueprintVersion
	ck.check("seed example: AutoMigrate(&Account{}) on "+fsm.WorkspaceDatabase(c.Workspace)+" with a workspace key, captured as blueprint versions", func() error {
		if err := seedGorm(c.WorkspaceDBURL); err != nil {
			return err
		}
		var err error
		if versions, err = blueprintVersions(c); err != nil {
			return err
		}
		// GORM runs each statement on its own (one transaction each), so
		// each is a version; the unique index comes after the table.
		want := [][]string{
			{`CREATE TABLE "accounts" ("id" bigserial,"name" varchar(255) NOT NULL,"email" varchar(255) NOT NULL,"balance" decimal(15,2) DEFAULT 0,PRIMARY KEY ("id"))`},
			{`CREATE UNIQUE INDEX IF NOT EXISTS "idx_accounts_email" ON "accounts" ("email")`},
		}
		if len(versions) != len(want) {
			return fmt.Errorf("blueprint versions %+v, want %q", versions, want)
		}
		for i, v := range versions {
			if v.Version != i+1 || !slices.Equal(v.Statements, want[i]) {
				return fmt.Errorf("blueprint version %d is %q, want %q", v.Version, v.Statements, want[i])
			}
		}
		return nil
	})

	log := &sqlLog{}
	ws, closeWS, err := openGorm(c.WorkspaceDBURL, log, false)
	if err != nil {
		ck.check("gorm.Open on the workspace", func() error { return err })
		return
	}
	defer closeWS()
	ck.check("AutoMigrate(&Account{}) again: no DDL, no new blueprint version", func() error {
		log.reset()
		if err := ws.AutoMigrate(&Account{}); err != nil {
			return err
		}
		if err := log.introspected(); err != nil {
			return err
		}
		if ddl := log.ddl(); len(ddl) > 0 {
			return fmt.Errorf("GORM ran %q", ddl)
		}
		return sameVersions(c, len(versions))
	})
	ck.check("AutoMigrate(model with a new field): one new version, the ALTER TABLE", func() error {
		log.reset()
		if err := ws.AutoMigrate(&accountWithPlan{}); err != nil {
			return err
		}
		after, err := blueprintVersions(c)
		if err != nil {
			return err
		}
		if len(after) != len(versions)+1 {
			return fmt.Errorf("%d versions, want %d: %+v (GORM ran %q)", len(after), len(versions)+1, after, log.ddl())
		}
		last := after[len(after)-1]
		want := `ALTER TABLE "accounts" ADD "plan" varchar(32) NOT NULL DEFAULT 'free'`
		if len(last.Statements) != 1 || last.Statements[0] != want {
			return fmt.Errorf("version %d is %q, want %q", last.Version, last.Statements, want)
		}
		versions = after
		log.reset()
		if err := ws.AutoMigrate(&accountWithPlan{}); err != nil {
			return fmt.Errorf("AutoMigrate again: %w", err)
		}
		if err := log.introspected(); err != nil {
			return err
		}
		if ddl := log.ddl(); len(ddl) > 0 {
			return fmt.Errorf("AutoMigrate again ran %q", ddl)
		}
		return sameVersions(c, len(versions))
	})
	ck.check("deploy the blueprint to the tenant", func() error {
		if len(versions) == 0 {
			return errors.New("the blueprint has no version")
		}
		return deployAll(c, versions[len(versions)-1].Version)
	})

	tlog := &sqlLog{}
	db, closeDB, err := openGorm(c.URL, tlog, false)
	if err != nil {
		ck.check("gorm.Open on the tenant", func() error { return err })
		return
	}
	defer closeDB()
	ck.check("tenant key: Create, First, Find, Update, Delete", func() error {
		a := accountWithPlan{Account: Account{Name: "Alice", Email: "alice@test.com", Balance: 1000}}
		if err := db.Create(&a).Error; err != nil {
			return fmt.Errorf("create: %w", err)
		}
		if a.ID == 0 {
			return errors.New("create returned no id")
		}
		if err := db.Create(&accountWithPlan{Account: Account{Name: "Bob", Email: "bob@test.com", Balance: 2000}, Plan: "pro"}).Error; err != nil {
			return fmt.Errorf("create: %w", err)
		}
		var got accountWithPlan
		if err := db.First(&got, "email = ?", "alice@test.com").Error; err != nil {
			return fmt.Errorf("first: %w", err)
		}
		if got.ID != a.ID || got.Name != "Alice" || got.Balance != 1000 || got.Plan != "free" {
			return fmt.Errorf("first: %+v", got)
		}
		var all []accountWithPlan
		if err := db.Order("id").Find(&all).Error; err != nil {
			return fmt.Errorf("find: %w", err)
		}
		if len(all) != 2 || all[1].Name != "Bob" || all[1].Plan != "pro" {
			return fmt.Errorf("find: %+v", all)
		}
		if err := db.Model(&got).Update("balance", 1500.5).Error; err != nil {
			return fmt.Errorf("update: %w", err)
		}
		var b float64
		if err := db.Raw("SELECT balance FROM accounts WHERE id = ?", a.ID).Scan(&b).Error; err != nil || b != 1500.5 {
			return fmt.Errorf("after update: %v, %v", b, err)
		}
		if res := db.Delete(&accountWithPlan{}, a.ID); res.Error != nil || res.RowsAffected != 1 {
			return fmt.Errorf("delete: %d rows, %v", res.RowsAffected, res.Error)
		}
		if err := db.First(&got, a.ID).Error; !errors.Is(err, gorm.ErrRecordNotFound) {
			return fmt.Errorf("first after delete: %v", err)
		}
		return nil
	})
	ck.check("transaction rolled back leaves nothing", func() error {
		var before, after int64
		if err := db.Model(&accountWithPlan{}).Count(&before).Error; err != nil {
			return err
		}
		rollback := errors.New("roll back")
		err := db.Transaction(func(tx *gorm.DB) error {
			if err := tx.Create(&accountWithPlan{Account: Account{Name: "tx", Email: "tx@test.com"}}).Error; err != nil {
				return err
			}
			if err := tx.Where("email = ?", "bob@test.com").Delete(&accountWithPlan{}).Error; err != nil {
				return err
			}
			return rollback
		})
		if !errors.Is(err, rollback) {
			return fmt.Errorf("transaction: %v", err)
		}
		if err := db.Model(&accountWithPlan{}).Count(&after).Error; err != nil {
			return err
		}
		if after != before {
			return fmt.Errorf("count %d before, %d after rollback", before, after)
		}
		return nil
	})
	// GORM's Create runs in a transaction of its own unless told not to, and
	// database/sql closes (deallocates) a statement used in a transaction at
	// its end, so a prepared INSERT is reused only with SkipDefaultTransaction
	// (GORM's advice for PrepareStmt; the same without tdb).
	ck.check("PrepareStmt: true (SkipDefaultTransaction), INSERT and SELECT prepared once, run 200 times", func() error {
		ctx, cancel := context.WithTimeout(bg, 30*time.Second)
		defer cancel()
		p := db.Session(&gorm.Session{PrepareStmt: true, SkipDefaultTransaction: true, Context: ctx})
		for i := 0; i < 200; i++ {
			if err := p.Create(&accountWithPlan{Account: Account{Name: fmt.Sprintf("g%d", i), Email: fmt.Sprintf("g%d@test.com", i), Balance: float64(i)}}).Error; err != nil {
				return fmt.Errorf("create %d: %w", i, err)
			}
		}
		for i := 0; i < 200; i++ {
			var a accountWithPlan
			if err := p.Where("email = ?", fmt.Sprintf("g%d@test.com", i)).Take(&a).Error; err != nil || a.Balance != float64(i) {
				return fmt.Errorf("take %d: %+v, %v", i, a, err)
			}
		}
		// database/sql's prepared statements are pgx's stmt_…, its statement
		// cache's stmtcache_….
		var runs []int
		err := p.Raw(`SELECT generic_plans + custom_plans FROM pg_prepared_statements
			WHERE name LIKE 'stmt\_%' AND (statement LIKE 'INSERT INTO "accounts"%' OR statement LIKE 'SELECT * FROM "accounts" WHERE email = $1%')
			ORDER BY statement`).Scan(&runs).Error
		if err != nil {
			return err
		}
		if len(runs) != 2 || runs[0] != 200 || runs[1] != 200 {
			return fmt.Errorf("the prepared INSERT and SELECT ran %v times, want [200 200]", runs)
		}
		return nil
	})
	ck.check("AutoMigrate on the tenant with the deployed model: no DDL", func() error {
		tlog.reset()
		if err := db.AutoMigrate(&accountWithPlan{}); err != nil {
			return err
		}
		if err := tlog.introspected(); err != nil {
			return err
		}
		if ddl := tlog.ddl(); len(ddl) > 0 {
			return fmt.Errorf("GORM ran %q", ddl)
		}
		return nil
	})
	ck.check("AutoMigrate on the tenant with a new field: 42501 "+c.MsgDDL+", session usable", func() error {
		type accountWithRegion struct {
			accountWithPlan
			Region string
		}
		err := db.Table("accounts").AutoMigrate(&accountWithRegion{})
		if err := wantPgError(err, "ERROR", "42501", c.MsgDDL); err != nil {
			return err
		}
		var n int64
		return db.Model(&accountWithPlan{}).Count(&n).Error
	})
	ck.check("read key: Find works, Create fails 42501 "+c.MsgReadInsert, func() error {
		ro, closeRO, err := openGorm(c.ReadURL, &sqlLog{}, false)
		if err != nil {
			return err
		}
		defer closeRO()
		var all []accountWithPlan
		if err := ro.Find(&all).Error; err != nil {
			return err
		}
		err = ro.Create(&accountWithPlan{Account: Account{Name: "r", Email: "r@test.com"}}).Error
		if err := wantPgError(err, "ERROR", "42501", c.MsgReadInsert); err != nil {
			return err
		}
		return ro.Find(&all).Error
	})
}

// blueprintVersion is one entry of GET /v1/blueprints/{name}/versions.
type blueprintVersion struct {
	Version    int      `json:"version"`
	Statements []string `json:"statements"`
}

func blueprintVersions(c conf) ([]blueprintVersion, error) {
	var v []blueprintVersion
	err := api(c, "GET", "/v1/blueprints/"+c.Workspace+"/versions", nil, &v)
	return v, err
}

// sameVersions checks that the blueprint still has n versions.
func sameVersions(c conf, n int) error {
	v, err := blueprintVersions(c)
	if err != nil {
		return err
	}
	if len(v) != n {
		return fmt.Errorf("%d blueprint versions, want %d: %+v", len(v), n, v)
	}
	return nil
}

// deployAll deploys the blueprint's latest version to all its tenants and
// waits for the deployment to complete at version want.
func deployAll(c conf, want int) error {
	var d httpapi.Deployment
	if err := api(c, "POST", "/v1/deployments", map[string]any{"blueprint": c.Workspace, "all": true}, &d); err != nil {
		return err
	}
	if d.TargetVersion != want {
		return fmt.Errorf("deployment to version %d, want %d", d.TargetVersion, want)
	}
	for deadline := time.Now().Add(2 * time.Minute); d.Status == fsm.DeploymentInProgress; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("deployment %s still in progress", d.ID)
		}
		if err := api(c, "GET", "/v1/deployments/"+d.ID, nil, &d); err != nil {
			return err
		}
	}
	if d.Status != fsm.DeploymentCompleted {
		return fmt.Errorf("deployment %s: %+v", d.Status, d.Results)
	}
	return nil
}

// api calls the control plane with the project key.
func api(c conf, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, c.API+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.ProjectKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: status %d: %s", method, path, resp.StatusCode, raw)
	}
	return json.Unmarshal(raw, out)
}
