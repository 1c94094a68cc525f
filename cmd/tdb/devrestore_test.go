package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"tdb/fsm"
	"tdb/internal/testpg"
)

// devConnect logs key in to database through the wire port of the tdb dev
// node of env, waiting for the database to be ready.
func devConnect(t *testing.T, env map[string]string, key, database string) *pgx.Conn {
	t.Helper()
	u := url.URL{Scheme: "postgresql", User: url.UserPassword(env["TDB_PROJECT_ID"], key), Host: env["TDB_WIRE_ADDR"],
		Path: "/" + database, RawQuery: "sslmode=disable"}
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		conn, err := pgx.Connect(ctx, u.String())
		cancel()
		if err == nil {
			return conn
		}
		if time.Now().After(deadline) {
			t.Fatalf("log in to %s through %s: %v", database, env["TDB_WIRE_ADDR"], err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// dirState is every file under dir with its mode and a digest of its content.
func dirState(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		v := info.Mode().String()
		if info.Mode().IsRegular() {
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			v += " " + hex.EncodeToString(sum[:])
		}
		files[path] = v
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return files
}

// editBackup writes a copy of the backup in data whose state edit changed,
// with the checksum of the changed state, and returns its path.
func editBackup(t *testing.T, data []byte, edit func(envelope, state map[string]any)) string {
	t.Helper()
	decode := func(raw []byte) map[string]any {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	envelope := decode(data)
	snap, err := json.Marshal(envelope["snapshot"])
	if err != nil {
		t.Fatal(err)
	}
	snapshot := decode(snap)
	edit(envelope, snapshot["state"].(map[string]any))
	if snap, err = json.Marshal(snapshot); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(snap)
	envelope["snapshot"], envelope["sha256"] = json.RawMessage(snap), hex.EncodeToString(sum[:])
	out, err := json.Marshal(envelope)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "edited.backup")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestDevRestore: a tdb dev node's metadata backup, restored with tdb dev
// --restore into its data directory after the node's metadata (node/) is
// lost, brings the node back over the PostgreSQL kept there: a key made
// before the backup logs in through the wire port and reads the tenant's
// row. Restored again without dev.json too, a new proxy_password is made.
// Every refusal leaves the data directory as it was.
func TestDevRestore(t *testing.T) {
	dataDir := filepath.Join(testpg.TempDir(t), "d")
	r := startDev(dataDir)
	if err := r.ready(t); err != nil {
		t.Fatalf("first run: %v", err)
	}
	env := readEnv(t, dataDir)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	api := &devClient{base: env["TDB_API_URL"], key: env["TDB_API_KEY"]}
	ws := devConnect(t, env, env["TDB_API_KEY"], "myapp_workspace")
	if _, err := ws.Exec(ctx, "CREATE TABLE notes (body text)"); err != nil {
		t.Fatal(err)
	}
	ws.Close(ctx)
	var tenant struct {
		ConnectionString string `json:"connection_string"`
	}
	if err := api.do(ctx, "POST", "/v1/tenants", "", map[string]string{"blueprint": "myapp", "name": "wayne"}, &tenant); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(tenant.ConnectionString)
	if err != nil {
		t.Fatal(err)
	}
	tenantKey, _ := u.User.Password()
	conn := devConnect(t, env, tenantKey, "myapp__wayne")
	if _, err := conn.Exec(ctx, "INSERT INTO notes VALUES ('kept')"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	var key struct {
		Key string `json:"key"`
	}
	if err := api.do(ctx, "POST", "/v1/apikeys", "", map[string]any{"name": "reader", "role": "read", "scope_type": "tenant", "scope_values": []string{"wayne"}}, &key); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(t.TempDir(), "dev.backup")
	if code, _, stderr := tdb("--api-url", env["TDB_API_URL"], "--admin-key", env["TDB_ADMIN_KEY"], "cluster", "backup", "--out", good); code != 0 {
		t.Fatalf("cluster backup: %s", stderr)
	}
	r.stop(t)
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}

	refused := func(t *testing.T, dir, backup, want string) {
		t.Helper()
		before := dirState(t, dir)
		r := startDevRestore(dir, backup)
		defer r.stop(t)
		err := r.ready(t)
		if err == nil {
			t.Fatalf("tdb dev --restore came up; want it refused with %q", want)
		}
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("tdb dev --restore: %v; want %q", err, want)
		}
		after := dirState(t, dir)
		for path, v := range after {
			if before[path] != v {
				t.Errorf("the refusal changed %s: %q, was %q", path, v, before[path])
			}
		}
		for path := range before {
			if _, ok := after[path]; !ok {
				t.Errorf("the refusal removed %s", path)
			}
		}
	}
	nodeDir := filepath.Join(dataDir, "node")
	t.Run("metadata still there", func(t *testing.T) {
		refused(t, dataDir, good, nodeDir+" already holds a node's metadata (it holds")
	})
	if err := os.RemoveAll(nodeDir); err != nil {
		t.Fatal(err)
	}
	t.Run("no metadata without --restore", func(t *testing.T) {
		refused(t, dataDir, "", filepath.Join(nodeDir, "raft")+", its metadata, is gone: restore a backup of it (tdb cluster backup) with tdb dev --restore FILE")
	})
	t.Run("truncated", func(t *testing.T) {
		truncated := filepath.Join(t.TempDir(), "truncated.backup")
		if err := os.WriteFile(truncated, data[:len(data)-10], 0o600); err != nil {
			t.Fatal(err)
		}
		refused(t, dataDir, truncated, "the backup is damaged or truncated")
	})
	t.Run("newer log version", func(t *testing.T) {
		newer := editBackup(t, data, func(envelope, state map[string]any) {
			envelope["log_version"], state["log_version"] = fsm.LogVersion+1, fsm.LogVersion+1
		})
		refused(t, dataDir, newer, "restore it with a newer build")
	})
	t.Run("other backends", func(t *testing.T) {
		other := editBackup(t, data, func(_, state map[string]any) {
			state["backends"].(map[string]any)["other"] = map[string]any{"name": "other", "url": "postgres://postgres:x@10.0.0.1/postgres", "created_at": "2026-01-01T00:00:00Z"}
		})
		refused(t, dataDir, other, "the backup's backends are local, other, and a tdb dev node has only its own PostgreSQL, local: it is not a backup of a tdb dev node; restore it with tdb server --restore")
	})
	t.Run("another data directory", func(t *testing.T) {
		elsewhere := filepath.Join(testpg.TempDir(t), "d")
		refused(t, elsewhere, good, "restore it with --data-dir "+dataDir+", where that PostgreSQL is")
		if _, err := os.Stat(elsewhere); !os.IsNotExist(err) {
			t.Fatalf("the refusal made %s: %v", elsewhere, err)
		}
	})
	pgDir := filepath.Join(dataDir, "postgres")
	t.Run("no PostgreSQL", func(t *testing.T) {
		if err := os.Rename(pgDir, pgDir+".aside"); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := os.Rename(pgDir+".aside", pgDir); err != nil {
				t.Fatal(err)
			}
		}()
		refused(t, dataDir, good, pgDir+" holds no PostgreSQL")
	})
	// What the checks below change is put back before the restore.
	replaced := func(t *testing.T, path string, edit func([]byte) []byte) func() {
		t.Helper()
		old, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, edit(old), 0o600); err != nil {
			t.Fatal(err)
		}
		return func() {
			if err := os.WriteFile(path, old, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Run("another PostgreSQL", func(t *testing.T) {
		defer replaced(t, filepath.Join(pgDir, "superuser-password"), func([]byte) []byte { return []byte("another\n") })()
		refused(t, dataDir, good, "is not the backed-up node's")
	})
	t.Run("dev.json of another node", func(t *testing.T) {
		defer replaced(t, filepath.Join(dataDir, "dev.json"), func(b []byte) []byte {
			return bytes.ReplaceAll(b, []byte(env["TDB_PROJECT_ID"]), []byte("prj_another"))
		})()
		refused(t, dataDir, good, "names project prj_another, which the backup does not hold")
	})
	if t.Failed() {
		return
	}

	// The restore itself, and a restart without --restore.
	restoreAndRead := func(t *testing.T) map[string]string {
		t.Helper()
		r := startDevRestore(dataDir, good)
		if err := r.ready(t); err != nil {
			t.Fatalf("tdb dev --restore: %v", err)
		}
		if !strings.Contains(r.out.String(), "restored "+good+" (cluster ") {
			t.Errorf("tdb dev --restore did not say it restored:\n%s", r.out)
		}
		r.stop(t)
		r = startDev(dataDir)
		defer r.stop(t)
		if err := r.ready(t); err != nil {
			t.Fatalf("restart after the restore: %v", err)
		}
		env := readEnv(t, dataDir)
		conn := devConnect(t, env, key.Key, "myapp__wayne")
		defer conn.Close(ctx)
		var body string
		if err := conn.QueryRow(ctx, "SELECT body FROM notes").Scan(&body); err != nil {
			t.Fatalf("read the row with the key made before the backup: %v", err)
		}
		if body != "kept" {
			t.Fatalf("the row reads %q", body)
		}
		devConnect(t, env, env["TDB_API_KEY"], "myapp_workspace").Close(ctx)
		return env
	}
	restored := restoreAndRead(t)
	if restored["TDB_ADMIN_KEY"] != env["TDB_ADMIN_KEY"] || restored["TDB_API_KEY"] != env["TDB_API_KEY"] || restored["TDB_PROJECT_ID"] != env["TDB_PROJECT_ID"] {
		t.Fatalf("restored with dev.json, the env is\n%v\nwas\n%v", restored, env)
	}

	// Restored without dev.json and without the port file (a PostgreSQL
	// put back with its own tools has none): a new admin key and
	// proxy_password, the same project, PostgreSQL on the backup's port.
	for _, f := range []string{"node", "dev.json", "env", "postgres/port"} {
		if err := os.RemoveAll(filepath.Join(dataDir, f)); err != nil {
			t.Fatal(err)
		}
	}
	restored = restoreAndRead(t)
	if restored["TDB_PROJECT_ID"] != env["TDB_PROJECT_ID"] || restored["TDB_API_KEY"] == "" || restored["TDB_API_KEY"] == env["TDB_API_KEY"] {
		t.Fatalf("restored without dev.json, the env is\n%v\nwas\n%v", restored, env)
	}
}
