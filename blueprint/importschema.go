package blueprint

import (
	"bytes"
	"context"
	"crypto/tls"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/cockroachdb/errors"
	"github.com/jackc/pgx/v5/pgconn"

	"tdb/wire/classify"
)

// ErrBadSource marks a source URL that cannot be used (not a postgres://
// URL, or no DDL could be read from it).
var ErrBadSource = errors.New("bad schema source")

// Import methods, reported with the statements.
const (
	MethodPgDump        = "pg_dump"
	MethodIntrospection = "introspection"
)

// DumpTimeout bounds reading a source's schema.
var DumpTimeout = 2 * time.Minute

// ImportSchema reads the DDL of schema public of the database at sourceURL
// (postgres://user:password@host:port/db?…): with pg_dump --schema-only
// --no-owner --no-privileges when pg_dump is on PATH and can dump that server,
// else from the catalogs. Only DDL statements come back, in an order that
// recreates the schema.
func ImportSchema(ctx context.Context, sourceURL string) (stmts []string, method string, err error) {
	u, err := CheckSourceURL(sourceURL)
	if err != nil {
		return nil, "", err
	}
	ctx, cancel := context.WithTimeout(ctx, DumpTimeout)
	defer cancel()
	if bin, lerr := exec.LookPath("pg_dump"); lerr == nil {
		dump, derr := pgDump(ctx, bin, u)
		if derr == nil {
			stmts, err := DDLOfDump(dump)
			return stmts, MethodPgDump, err
		}
		if !strings.Contains(derr.Error(), "server version mismatch") {
			return nil, "", derr
		}
		// An older pg_dump refuses a newer server: read the catalogs instead.
	}
	stmts, err = Introspect(ctx, sourceURL)
	return stmts, MethodIntrospection, err
}

// sourceParams are the URL parameters a source may carry. Others (sslkey,
// passfile, service, host=/socket/dir…) would make the node read its own
// files or sockets on a client's behalf.
var sourceParams = map[string]bool{"sslmode": true, "connect_timeout": true, "application_name": true}

// CheckSourceURL admits a postgres:// URL with a network host and only
// harmless parameters.
func CheckSourceURL(sourceURL string) (*url.URL, error) {
	u, err := url.Parse(sourceURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Hostname() == "" || strings.HasPrefix(u.Hostname(), "/") {
		return nil, errors.Mark(errors.New("from_url must be a postgres:// or postgresql:// URL with a host"), ErrBadSource)
	}
	for k := range u.Query() {
		if !sourceParams[k] {
			return nil, errors.Mark(errors.Newf("from_url parameter %q is not allowed (allowed: sslmode, connect_timeout, application_name)", k), ErrBadSource)
		}
	}
	return u, nil
}

// noFile is a path that cannot exist (/dev/null is no directory).
const noFile = "/dev/null/none"

// sourceEnv is the node's environment for pg_dump without the ways libpq
// would find credentials of the node's own for the source: a password file
// (~/.pgpass), a client certificate (~/.postgresql), a service.
func sourceEnv() []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "PGSERVICE=")
	})
	return append(env, "PGPASSFILE="+noFile, "PGSSLCERT="+noFile, "PGSSLKEY="+noFile)
}

// OwnCredentials makes a parsed source config log in with the credentials
// its URL carries and no others: pgx fills in a missing password from
// PGPASSWORD or ~/.pgpass, and a client certificate from ~/.postgresql or
// PGSSLCERT, which would let a client's URL log in with the node's own.
func OwnCredentials(cfg *pgconn.Config, sourceURL string) {
	cfg.Password = ""
	if u, err := url.Parse(sourceURL); err == nil && u.User != nil {
		cfg.Password, _ = u.User.Password()
	}
	tlsConfigs := []*tls.Config{cfg.TLSConfig}
	for _, fb := range cfg.Fallbacks {
		tlsConfigs = append(tlsConfigs, fb.TLSConfig)
	}
	for _, c := range tlsConfigs {
		if c != nil {
			c.Certificates, c.GetClientCertificate = nil, nil
		}
	}
}

// pgDump runs pg_dump; the password travels in the environment, not on the
// command line.
func pgDump(ctx context.Context, bin string, u *url.URL) (string, error) {
	noPass := *u
	password := ""
	if u.User != nil {
		password, _ = u.User.Password()
		noPass.User = url.User(u.User.Username())
	}
	cmd := exec.CommandContext(ctx, bin, "--schema-only", "--no-owner", "--no-privileges", "--schema=public",
		"--no-publications", "--no-subscriptions", "--no-security-labels", "--no-tablespaces",
		"--dbname="+noPass.String())
	cmd.Env = append(sourceEnv(), "PGPASSWORD="+password, "PGCONNECT_TIMEOUT=10")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		msg = RedactPassword(msg, password)
		return "", errors.Mark(errors.Newf("pg_dump: %s", msg), ErrBadSource)
	}
	return stdout.String(), nil
}

// skipped are DDL statements of a dump that a workspace does not take: the
// public schema itself and PL/pgSQL exist already.
var skipped = regexp.MustCompile(`(?i)^(CREATE EXTENSION( IF NOT EXISTS)? plpgsql|COMMENT ON EXTENSION plpgsql|CREATE SCHEMA public|ALTER SCHEMA public|COMMENT ON SCHEMA public)\b`)

// DDLOfDump extracts the DDL statements of a plain pg_dump: psql
// meta-commands (\restrict, \connect…), SET and set_config lines go.
func DDLOfDump(dump string) ([]string, error) {
	var b strings.Builder
	for _, line := range strings.SplitAfter(dump, "\n") {
		if !strings.HasPrefix(line, `\`) {
			b.WriteString(line)
		}
	}
	r := classify.Classify(b.String())
	if r.Unparsed || r.TooComplex {
		return nil, errors.Mark(errors.New("the schema dump could not be parsed"), ErrBadSource)
	}
	var out []string
	for _, st := range r.Statements {
		if st.Kind != classify.DDL || skipped.MatchString(strings.Join(strings.Fields(st.Text), " ")) {
			continue
		}
		out = append(out, st.Text)
	}
	if len(out) == 0 {
		return nil, errors.Mark(errors.New("the source database has no tables, views or other objects in schema public"), ErrBadSource)
	}
	return out, nil
}

// RedactPassword keeps password out of an error message where a connection
// string or URL it was in may be quoted: after "user:" and before "@", and
// after "password=", as written or URL-escaped. Replacing it wherever it
// appears would mangle the reason ("postgres:postgres@…" made the message
// read "database xxxxx"). Those places are then redacted whatever they
// hold, so a password written with other escapes (%2f for %2F, an escape
// where none is needed, a backslash in a quoted value) does not show either.
func RedactPassword(msg, password string) string {
	if password != "" {
		forms := []string{password}
		if esc := strings.TrimPrefix(url.UserPassword("", password).String(), ":"); esc != password {
			forms = append(forms, esc)
		}
		if esc := url.QueryEscape(password); esc != password {
			forms = append(forms, esc)
		}
		for _, f := range forms {
			msg = strings.ReplaceAll(msg, ":"+f+"@", ":xxxxx@")
			msg = strings.ReplaceAll(msg, "password="+f, "password=xxxxx")
			msg = strings.ReplaceAll(msg, "password='"+f+"'", "password=xxxxx")
		}
	}
	msg = urlPassword.ReplaceAllString(msg, "${1}:xxxxx@")
	return keywordPassword.ReplaceAllString(msg, "${1}=xxxxx")
}

var (
	// urlPassword is the password of a URL's user info: scheme://user:…@.
	urlPassword = regexp.MustCompile(`(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*):[^@\s/]*@`)
	// keywordPassword is a password keyword's value in a keyword/value
	// connection string or a URL's query: quoted (with backslash escapes)
	// or up to a space, quote or "&".
	keywordPassword = regexp.MustCompile(`(?i)\b(password)\s*=\s*(?:'(?:[^'\\]|\\.)*'|[^\s&'"]+)`)
)
