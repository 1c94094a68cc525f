package pgserver

import (
	"context"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/cockroachdb/errors"
)

// pgOSUser is the OS account PostgreSQL runs as when tdb runs as root.
const pgOSUser = "postgres"

// runAs is the OS identity the PostgreSQL programs run as. When tdb is not
// root it is the current user and cred is nil.
type runAs struct {
	name     string
	uid, gid int
	cred     *syscall.Credential
}

func currentRunAs() (runAs, error) {
	if os.Geteuid() != 0 {
		return runAs{name: "current user", uid: os.Geteuid(), gid: os.Getegid()}, nil
	}
	u, err := user.Lookup(pgOSUser)
	if err != nil {
		return runAs{}, errors.Wrapf(err, "PostgreSQL refuses to run as root, and tdb runs it as the %q OS user, "+
			"which does not exist here: create it (useradd --system %s) or run tdb as a non-root user", pgOSUser, pgOSUser)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil || uid == 0 {
		return runAs{}, errors.Newf("OS user %q has unusable uid/gid %s/%s", pgOSUser, u.Uid, u.Gid)
	}
	// Credential with nil Groups drops root's supplementary groups.
	return runAs{name: pgOSUser, uid: uid, gid: gid,
		cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}, nil
}

// command builds a command that runs as r, in dir (which r must be able to
// enter: PostgreSQL programs fail when they cannot resolve their working
// directory), without the caller's PG* environment.
func (r runAs) command(ctx context.Context, dir, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	env := []string{"HOME=" + dir, "LC_ALL=C"}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "HOME=") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG") {
			continue
		}
		env = append(env, kv)
	}
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: r.cred}
	return cmd
}

// own makes path belong to r (a no-op when not root).
func (r runAs) own(path string) error {
	if r.cred == nil {
		return nil
	}
	return errors.Wrapf(os.Lchown(path, r.uid, r.gid), "chown %s to %s", path, r.name)
}

// checkTraversable makes sure r can reach dir: every parent directory must
// be searchable by r. tdb does not loosen permissions of directories it does
// not own; it says which one is in the way.
func (r runAs) checkTraversable(dir string) error {
	if r.cred == nil {
		return nil
	}
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return errors.Wrapf(err, "stat %s", p)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		var bit os.FileMode = 0o001
		if ok && int(st.Uid) == r.uid {
			bit = 0o100
		} else if ok && int(st.Gid) == r.gid {
			bit = 0o010
		}
		if fi.Mode().Perm()&bit == 0 {
			return errors.Newf("directory %s (mode %v) is not traversable by the %q OS user that runs PostgreSQL; "+
				"chmod o+x it, or put the data dir somewhere else", p, fi.Mode().Perm(), r.name)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}
