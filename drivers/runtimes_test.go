package drivers_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// python is the interpreter the Debian driver packages install into.
const python = "/usr/bin/python3"

// pgJDBCJar is where Debian's libpostgresql-jdbc-java puts the driver;
// TDB_PGJDBC_JAR overrides it.
func pgJDBCJar() string {
	if p := os.Getenv("TDB_PGJDBC_JAR"); p != "" {
		return p
	}
	return "/usr/share/java/postgresql.jar"
}

// needBinaries reports the first of bins missing from PATH.
func needBinaries(t *testing.T, r *row, install string, bins ...string) {
	t.Helper()
	for _, bin := range bins {
		if _, err := exec.LookPath(bin); err != nil {
			unavailable(t, r, bin+" not on PATH ("+install+")")
		}
	}
}

func needPsql(t *testing.T, s *suite, r *row) ([]string, string) {
	needBinaries(t, r, "apt-get install postgresql-client", "bash", "psql")
	return nil, ""
}

func needPython(modules ...string) func(*testing.T, *suite, *row) ([]string, string) {
	return func(t *testing.T, s *suite, r *row) ([]string, string) {
		if _, err := os.Stat(python); err != nil {
			unavailable(t, r, python+" not found (apt-get install python3)")
		}
		for _, m := range modules {
			if out, err := exec.Command(python, "-c", "import "+m).CombinedOutput(); err != nil {
				unavailable(t, r, "python module "+m+" cannot be imported (apt-get install python3-"+m+"): "+lastLine(out))
			}
		}
		return nil, ""
	}
}

var javaBuild struct {
	once sync.Once
	out  []byte
	err  error
}

// needJava compiles DriverChecks.java into the suite's scratch dir.
func needJava(t *testing.T, s *suite, r *row) ([]string, string) {
	needBinaries(t, r, "apt-get install default-jdk-headless", "javac", "java")
	jar := pgJDBCJar()
	if _, err := os.Stat(jar); err != nil {
		unavailable(t, r, jar+" not found (apt-get install libpostgresql-jdbc-java)")
	}
	javaBuild.once.Do(func() {
		src, _ := filepath.Abs(filepath.Join("java", "DriverChecks.java"))
		javaBuild.out, javaBuild.err = exec.Command("javac", "-encoding", "UTF-8", "-cp", jar,
			"-d", filepath.Join(s.tmp, "java"), src).CombinedOutput()
	})
	if javaBuild.err != nil {
		r.status = "FAIL (javac)"
		t.Fatalf("javac DriverChecks.java: %v\n%s", javaBuild.err, javaBuild.out)
	}
	return nil, ""
}

func needRuby(t *testing.T, s *suite, r *row) ([]string, string) {
	needBinaries(t, r, "apt-get install ruby-pg", "ruby")
	if out, err := exec.Command("ruby", "-e", "require 'pg'").CombinedOutput(); err != nil {
		unavailable(t, r, "ruby gem pg cannot be loaded (apt-get install ruby-pg): "+lastLine(out))
	}
	return nil, ""
}

var nodeModules struct {
	once sync.Once
	err  error
}

// needNode installs node/node_modules from package-lock.json (npm ci) when
// it is missing or older than the lock. Install scripts are not run: none of
// the packages needs one, and prisma's would download engines.
func needNode(t *testing.T, s *suite, r *row) ([]string, string) {
	t.Helper()
	needBinaries(t, r, "apt-get install nodejs npm", "node", "npm")
	nodeModules.once.Do(func() {
		if fresh("node/node_modules/.package-lock.json", "node/package-lock.json") {
			return
		}
		args := []string{"ci"}
		if _, err := os.Stat("node/package-lock.json"); err != nil {
			args = []string{"install"}
		}
		args = append(args, "--ignore-scripts", "--no-audit", "--no-fund")
		cmd := exec.Command("npm", args...)
		cmd.Dir = "node"
		out, err := cmd.CombinedOutput()
		t.Logf("npm %s:\n%s", strings.Join(args, " "), out)
		if err != nil {
			nodeModules.err = errors.New("npm " + args[0] + " in drivers/node failed: " + lastLine(out))
		}
	})
	if nodeModules.err != nil {
		unavailable(t, r, nodeModules.err.Error())
	}
	return nil, ""
}

// needPrisma generates Prisma Client from node/prisma/schema.prisma. Prisma
// 7's client needs no engine binary (its query compiler is WebAssembly inside
// the npm package), but its CLI downloads the schema engine, which only
// prisma migrate/db use, before any command; a stub given as
// PRISMA_SCHEMA_ENGINE_BINARY stops that download and fails loudly if
// anything calls it. Should generate still want to download something, the
// driver is not run, which is not a failure (README.md).
func needPrisma(t *testing.T, s *suite, r *row) ([]string, string) {
	needNode(t, s, r)
	stub := filepath.Join(s.tmp, "schema-engine-stub")
	script := "#!/bin/sh\necho 'schema-engine is not installed here: the driver checks must not need prisma migrate or db' >&2\nexit 1\n"
	if err := os.WriteFile(stub, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	env := []string{"PRISMA_SCHEMA_ENGINE_BINARY=" + stub, "PRISMA_HIDE_UPDATE_MESSAGE=1"}
	cmd := exec.Command("node", filepath.Join("node_modules", "prisma", "build", "index.js"),
		"generate", "--schema", filepath.Join("prisma", "schema.prisma"))
	cmd.Dir, cmd.Env = "node", append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if why := engineDownload(string(out)); why != "" {
			return nil, why
		}
		r.status = "FAIL (prisma generate)"
		t.Fatalf("prisma generate: %v\n%s", err, out)
	}
	return env, ""
}

// engineDownload says why, when prisma's output shows that it tried to fetch
// an engine binary (nothing outside the npm registry is reachable here).
func engineDownload(out string) string {
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "binaries.prisma.sh") || strings.Contains(line, "ENOTFOUND") ||
			strings.Contains(strings.ToLower(line), "download") {
			return "prisma wants to download an engine binary, unreachable here: " + strings.TrimSpace(line)
		}
	}
	return ""
}

// fresh says whether file exists and is not older than than.
func fresh(file, than string) bool {
	a, err := os.Stat(file)
	if err != nil {
		return false
	}
	b, err := os.Stat(than)
	return err != nil || !a.ModTime().Before(b.ModTime())
}

func lastLine(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
