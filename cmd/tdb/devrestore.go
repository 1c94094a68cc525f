package main

import (
	"bytes"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cockroachdb/errors"
	"github.com/jackc/pgx/v5/pgconn"

	"tdb/fsm"
)

// `tdb dev --restore FILE` restores a metadata backup of a tdb dev node into
// a data directory that lost its metadata but kept its PostgreSQL. The node's
// raft state is DIR/node, restored as `tdb server --restore` restores a data
// directory (node.Config.Restore); the tenant databases are in the local
// PostgreSQL of DIR/postgres, which the backup names as its backend local by
// its Unix socket directory, port and superuser password. A backend's URL
// cannot be changed, so the restored node reaches the backend there only:
// the PostgreSQL must be this data directory's, at the same path, and it
// starts on the backup's port. Everything is checked before anything in
// the data directory is touched.

// devRestore is what a backup checked by checkDevRestore gives the run.
type devRestore struct {
	backup *fsm.Backup
	// pgPort and pgPassword are the local PostgreSQL's port and superuser
	// password as the backup's backend local reaches it (0 and "" when the
	// backup holds no backend: tdb dev then registers its own).
	pgPort     int
	pgPassword string
	// projectID is the demo project of the backup: the project of
	// DIR/dev.json, else the one named demo ("" if it holds none).
	projectID string
}

// checkDevRestore checks that backup b, read from file, can be restored into
// the tdb dev data directory dataDir (absolute) without harm, and returns
// how. It writes nothing.
func checkDevRestore(dataDir, file string, b *fsm.Backup) (*devRestore, error) {
	fail := func(format string, args ...any) error {
		return errors.Newf("--restore %s: "+format, append([]any{file}, args...)...)
	}
	nodeDir := filepath.Join(dataDir, "node")
	entries, err := os.ReadDir(nodeDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, errors.Wrapf(err, "--restore: read %s", nodeDir)
	}
	if len(entries) > 0 {
		return nil, fail("%s already holds a node's metadata (it holds %s): a backup is restored into a data directory without it only; "+
			"move %s away (keep %s, the tenant databases), or leave --restore out to run the node it holds",
			nodeDir, entries[0].Name(), nodeDir, filepath.Join(dataDir, "postgres"))
	}
	state := fsm.New()
	if err := state.Restore(io.NopCloser(bytes.NewReader(b.Snapshot))); err != nil {
		return nil, errors.Wrapf(err, "--restore %s", file)
	}
	var backends []string
	var localURL string
	r := &devRestore{backup: b}
	st, err := readDevState(dataDir)
	if err != nil {
		return nil, err
	}
	var knownProject bool
	state.View(func(s *fsm.State) {
		for _, be := range s.SortedBackends() {
			backends = append(backends, be.Name)
			if be.Name == "local" {
				localURL = be.URL
			}
		}
		if st != nil && st.ProjectID != "" {
			r.projectID, knownProject = st.ProjectID, s.Project(st.ProjectID) != nil
			return
		}
		knownProject = true
		for _, id := range slices.Sorted(maps.Keys(s.Projects)) {
			if s.Projects[id].Name == "demo" {
				r.projectID = id
				break
			}
		}
	})
	if slices.ContainsFunc(backends, func(n string) bool { return n != "local" }) {
		return nil, fail("the backup's backends are %s, and a tdb dev node has only its own PostgreSQL, local: it is not a backup of a tdb dev node; restore it with tdb server --restore",
			strings.Join(backends, ", "))
	}
	if !knownProject {
		return nil, fail("%s names project %s, which the backup does not hold: the backup is of another tdb dev node; give the data directory of that node, or move %s away to restore with a new admin key",
			filepath.Join(dataDir, "dev.json"), r.projectID, filepath.Join(dataDir, "dev.json"))
	}
	if localURL == "" {
		return r, nil
	}
	pgDir := filepath.Join(dataDir, "postgres")
	cfg, err := pgconn.ParseConfig(localURL)
	if err != nil {
		return nil, fail("the backup's backend local has a URL that does not parse: it is not a backup of a tdb dev node; restore it with tdb server --restore")
	}
	socketDir := filepath.Join(pgDir, "run")
	if strings.HasPrefix(cfg.Host, "/") {
		if filepath.Clean(cfg.Host) != socketDir {
			return nil, fail("the backup's backend local is the PostgreSQL whose socket is in %s, and this data directory's is in %s: "+
				"the restored node reaches its backend at the URL the backup holds; restore it with --data-dir %s, where that PostgreSQL is",
				cfg.Host, socketDir, filepath.Dir(filepath.Dir(filepath.Clean(cfg.Host))))
		}
	} else if cfg.Host != "127.0.0.1" && cfg.Host != "localhost" {
		return nil, fail("the backup's backend local is the PostgreSQL at %s, not one of this machine: it is not a backup of a tdb dev node; restore it with tdb server --restore", cfg.Host)
	}
	if _, err := os.Stat(filepath.Join(pgDir, "data", "PG_VERSION")); err != nil {
		return nil, fail("%s holds no PostgreSQL: the backup holds the metadata of the tenant databases, not the databases; "+
			"put back the backed-up node's PostgreSQL there first (a copy of %s taken while tdb dev was stopped)", pgDir, pgDir)
	}
	if pw, err := os.ReadFile(filepath.Join(pgDir, "superuser-password")); err == nil && strings.TrimRight(string(pw), "\r\n") != cfg.Password {
		return nil, fail("the PostgreSQL in %s is not the backed-up node's (its superuser password in %s is not the one the backup reaches it with): "+
			"put back the backed-up node's PostgreSQL there first", pgDir, filepath.Join(pgDir, "superuser-password"))
	}
	r.pgPort, r.pgPassword = int(cfg.Port), cfg.Password
	return r, nil
}

// readDevState reads DIR/dev.json, nil when there is none, without making
// one as loadDevState does.
func readDevState(dir string) (*devState, error) {
	if _, err := os.Stat(filepath.Join(dir, "dev.json")); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return loadDevState(dir)
}

// checkDevMetadata refuses to run tdb dev without --restore on a data
// directory that ran a node (dev.json names its demo project) whose
// metadata is gone: a new, empty cluster started there knows neither the
// project nor the tenant databases in its PostgreSQL, and its raft state
// would make a later --restore refuse the directory.
func checkDevMetadata(dataDir string) error {
	st, err := readDevState(dataDir)
	if err != nil || st == nil || st.ProjectID == "" {
		return err
	}
	raftDir := filepath.Join(dataDir, "node", "raft")
	if _, err := os.Stat(raftDir); !errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return errors.Newf("%s says this data directory ran the node of project %s, and %s, its metadata, is gone: "+
		"restore a backup of it (tdb cluster backup) with tdb dev --restore FILE, or move %s away to start afresh",
		filepath.Join(dataDir, "dev.json"), st.ProjectID, raftDir, dataDir)
}
