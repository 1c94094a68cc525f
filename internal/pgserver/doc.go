// Package pgserver starts and stops a local PostgreSQL server from the
// PostgreSQL binaries installed on the machine.
//
// `tdb dev` uses it for its long-lived backend in the user's data dir (data
// survives restarts, the port and superuser password are remembered in the
// dir); tests use it through internal/testpg for throwaway servers.
//
// Layout of Options.Dir: data/ (PGDATA), run/ (unix socket), postgres.log,
// port, superuser-password. PostgreSQL refuses to run as root, so when tdb
// runs as root the server runs as the "postgres" OS user (see runas.go).
// The postmaster is a child of this process: it is told to shut down (fast)
// if this process dies, and Start recovers a dir left behind by a crash.
package pgserver
