package pgserver

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/cockroachdb/errors"
)

// binGlobs are where distributions install PostgreSQL when it is not on PATH
// (Debian/Ubuntu, then RHEL).
var binGlobs = []string{"/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin"}

// FindBin returns the path of the PostgreSQL program name (initdb, postgres,
// pg_ctl, …): from PATH, else from the newest versioned install dir.
func FindBin(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return filepath.Abs(p)
	}
	var found []string
	for _, g := range binGlobs {
		m, _ := filepath.Glob(filepath.Join(g, name))
		for _, p := range m {
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
				found = append(found, p)
			}
		}
	}
	if len(found) == 0 {
		return "", errors.Newf("PostgreSQL program %q not found on PATH nor under %s; install PostgreSQL (e.g. apt-get install postgresql)",
			name, strings.Join(binGlobs, ", "))
	}
	sort.Slice(found, func(i, j int) bool { return binVersion(found[i]) > binVersion(found[j]) })
	return found[0], nil
}

// binVersion extracts the major version from a path like
// /usr/lib/postgresql/15/bin/initdb (0 when there is none).
func binVersion(p string) int {
	dir := filepath.Base(filepath.Dir(filepath.Dir(p)))
	dir = strings.TrimPrefix(dir, "pgsql-")
	v, _ := strconv.Atoi(dir)
	return v
}

// findPair finds postgres and an initdb of the same installation.
func findPair() (postgres, initdb string, err error) {
	postgres, err = FindBin("postgres")
	if err != nil {
		return "", "", err
	}
	if real, err := filepath.EvalSymlinks(postgres); err == nil {
		if p := filepath.Join(filepath.Dir(real), "initdb"); isExec(p) {
			return postgres, p, nil
		}
	}
	if p := filepath.Join(filepath.Dir(postgres), "initdb"); isExec(p) {
		return postgres, p, nil
	}
	initdb, err = FindBin("initdb")
	return postgres, initdb, err
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}
