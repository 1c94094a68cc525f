package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tdb/fsm"
)

// TestClusterBackupCommand: the backup is written checked, readable by its
// owner only, and never over an existing file without --force.
func TestClusterBackupCommand(t *testing.T) {
	apiURL := startAPI(t)
	admin := []string{"--api-url", apiURL, "--admin-key", testAdminKey}
	out := filepath.Join(t.TempDir(), "meta.backup")
	code, stdout, stderr := tdb(append(admin, "cluster", "backup", "--out", out)...)
	if code != 0 || !strings.Contains(stdout, "applied_index:") || !strings.Contains(stdout, out) {
		t.Fatalf("cluster backup: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	st, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("the backup's mode is %v, want 0600", st.Mode().Perm())
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fsm.ReadBackup(data); err != nil {
		t.Fatalf("the written backup: %v", err)
	}

	if err := os.WriteFile(out, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = tdb(append(admin, "cluster", "backup", "--out", out)...)
	if code != 1 || !strings.Contains(stderr, "exists: give another --out, or --force to replace it") {
		t.Fatalf("backup over an existing file: exit %d, stderr %q", code, stderr)
	}
	if got, _ := os.ReadFile(out); string(got) != "keep me" {
		t.Fatalf("the existing file was changed to %q", got)
	}
	code, stdout, stderr = tdb(append(admin, "--json", "cluster", "backup", "--out", out, "--force")...)
	var summary struct {
		File         string `json:"file"`
		AppliedIndex uint64 `json:"applied_index"`
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &summary) != nil || summary.File != out {
		t.Fatalf("backup --force --json: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if st, err := os.Stat(out); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the replaced backup: %v, %v", st.Mode(), err)
	}
	if data, _ := os.ReadFile(out); data == nil || data[0] != '{' {
		t.Fatalf("the replaced backup holds %q", data)
	}

	// --out - writes the backup to standard output and the summary to
	// standard error, and makes no file named "-".
	dir := t.TempDir()
	t.Chdir(dir)
	code, stdout, stderr = tdb(append(admin, "cluster", "backup", "--out", "-")...)
	if code != 0 || !strings.Contains(stderr, "applied_index:") {
		t.Fatalf("backup --out -: exit %d, stderr %q", code, stderr)
	}
	if _, err := fsm.ReadBackup([]byte(stdout)); err != nil {
		t.Fatalf("backup --out - printed no backup (%v): %.200q", err, stdout)
	}
	if _, err := os.Stat(filepath.Join(dir, "-")); err == nil {
		t.Fatal(`backup --out - made a file named "-"`)
	}

	// No key but the operator's.
	code, _, stderr = tdb("--api-url", apiURL, "cluster", "backup", "--out", filepath.Join(t.TempDir(), "x"))
	if code != 1 || !strings.Contains(stderr, "admin key") {
		t.Fatalf("backup without the admin key: exit %d, stderr %q", code, stderr)
	}
}

// TestServerRestoreRefuses: tdb server --restore refuses a damaged or
// truncated backup, --join, and a data directory in use, before it
// listens anywhere.
func TestServerRestoreRefuses(t *testing.T) {
	apiURL := startAPI(t)
	good := filepath.Join(t.TempDir(), "meta.backup")
	if code, _, stderr := tdb("--api-url", apiURL, "--admin-key", testAdminKey, "cluster", "backup", "--out", good); code != 0 {
		t.Fatalf("cluster backup: %s", stderr)
	}
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(t.TempDir(), "truncated.backup")
	if err := os.WriteFile(truncated, data[:len(data)-10], 0o600); err != nil {
		t.Fatal(err)
	}
	altered := filepath.Join(t.TempDir(), "altered.backup")
	i := strings.Index(string(data), `"settings"`)
	if i < 0 {
		t.Fatalf("no settings in %s", data)
	}
	changed := []byte(string(data[:i]) + `"settingz"` + string(data[i+len(`"settings"`):]))
	if err := os.WriteFile(altered, changed, 0o600); err != nil {
		t.Fatal(err)
	}
	used := t.TempDir()
	if err := os.WriteFile(filepath.Join(used, "raft"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	addrs := []string{"--wire-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0", "--gossip-addr", "127.0.0.1:0", "--admin-key", testAdminKey}
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"truncated", []string{"--data-dir", t.TempDir(), "--restore", truncated}, "the backup is damaged or truncated"},
		{"altered", []string{"--data-dir", t.TempDir(), "--restore", altered}, "the backup is damaged: its state's checksum"},
		{"missing", []string{"--data-dir", t.TempDir(), "--restore", filepath.Join(t.TempDir(), "none")}, "no such file"},
		{"with --join", []string{"--data-dir", t.TempDir(), "--restore", good, "--join", "127.0.0.1:1"}, "cannot be given with --join"},
		{"used data dir", []string{"--data-dir", used, "--restore", good}, "is not empty (it holds raft): a backup is restored into an empty one only; give a new --data-dir, or leave --restore out"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := append(append([]string{"server", "--node-id", "r1"}, addrs...), tt.args...)
			code, _, stderr := tdb(args...)
			if code != 1 || !strings.Contains(stderr, tt.want) {
				t.Fatalf("tdb server --restore: exit %d, stderr %q, want %q", code, stderr, tt.want)
			}
		})
	}
}

// TestBackupToStdoutRefusesOnlyATerminal: --out - refuses a terminal, the
// backup holding secrets, but not the null device, which is a character
// device too (a dry run: tdb cluster backup --out - > /dev/null).
func TestBackupToStdoutRefusesOnlyATerminal(t *testing.T) {
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	if isTerminal(null) {
		t.Fatalf("%s taken for a terminal", os.DevNull)
	}
	tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0)
	if err != nil {
		t.Logf("no terminal to check against: %v", err)
		return
	}
	defer tty.Close()
	if !isTerminal(tty) {
		t.Fatal("/dev/tty not taken for a terminal")
	}
}
