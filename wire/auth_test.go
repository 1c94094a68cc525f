package wire

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/errors"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"tdb/wire/scram"
)

const testIterations = 4096

// authServer is a tiny proxy front: Startup, AuthenticateSCRAM, then
// BackendKeyData and ReadyForQuery, and it waits for Terminate.
type authServer struct {
	addr    string
	results chan authResult
}

type authResult struct {
	matched int
	tls     bool
	records string // StartupResult.TLSRecords
	err     error
}

// startAuthServer serves connections on 127.0.0.1:0. keys maps users to the
// passwords of their candidate keys; unknown users get a fake salt.
func startAuthServer(t *testing.T, cfg StartupConfig, keys map[string][]string) *authServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	salt := scram.NewSalt()
	s := &authServer{addr: ln.Addr().String(), results: make(chan authResult, 16)}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				s.results <- serveAuth(conn, cfg, salt, keys)
			}()
		}
	}()
	return s
}

func serveAuth(conn net.Conn, cfg StartupConfig, salt []byte, keys map[string][]string) authResult {
	res, err := Startup(context.Background(), conn, cfg)
	if err != nil {
		if _, ok := AsPGError(err); ok {
			_ = WriteError(res.Conn, err)
		}
		return authResult{matched: -1, err: err}
	}
	var cands []scram.Verifier
	userSalt := salt
	passwords, known := keys[res.User()]
	if !known {
		userSalt = scram.FakeSalt([]byte("node secret"), res.User())
	}
	for _, pw := range passwords {
		cands = append(cands, scram.NewVerifier(pw, salt, testIterations))
	}
	_ = res.Conn.SetDeadline(time.Now().Add(5 * time.Second))
	matched, err := AuthenticateSCRAM(res.Backend, res.User(), userSalt, testIterations, cands, res.ChannelBinding)
	out := authResult{matched: matched, tls: res.TLS != nil, records: res.TLSRecords, err: err}
	if err != nil {
		_ = WriteError(res.Conn, err)
		return out
	}
	w := NewFrameWriter(res.Conn)
	_ = w.WriteRaw(AppendParameterStatus(nil, "server_version", "17.0"))
	_ = w.WriteRaw(AppendBackendKeyData(nil, CancelKey{ProcessID: 1, SecretKey: 2}))
	_ = w.WriteRaw(AppendReadyForQuery(nil, 'I'))
	if err := w.Flush(); err != nil {
		out.err = err
		return out
	}
	r := NewFrameReader(res.Conn, 0)
	for {
		typ, _, err := r.Next()
		if err != nil || typ == MsgTerminate {
			return out
		}
	}
}

func TestAuthenticateSCRAMEndToEnd(t *testing.T) {
	cert, err := LoadOrCreateCert(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const user = "tdb_2abf90d3"
	keys := map[string][]string{user: {"sk_first_key_xxxxxxxxxxxxxxxxxxxxxxx", "tdb_4f2c9d1ab7e8350c", "tdb_d2bf66ed7898c448"}}
	tests := []struct {
		name        string
		tls         bool
		requireTLS  bool
		conn        string // extra connection string options
		user        string
		password    string
		wantMatched int
		wantCode    string
		wantMsg     string
	}{
		{name: "plain third candidate", conn: "sslmode=disable", user: user, password: "tdb_d2bf66ed7898c448", wantMatched: 2},
		{name: "plain first candidate", conn: "sslmode=disable", user: user, password: "sk_first_key_xxxxxxxxxxxxxxxxxxxxxxx", wantMatched: 0},
		{name: "tls channel binding required", tls: true, conn: "sslmode=require channel_binding=require", user: user, password: "tdb_d2bf66ed7898c448", wantMatched: 2},
		{name: "tls channel binding disabled", tls: true, conn: "sslmode=require channel_binding=disable", user: user, password: "tdb_4f2c9d1ab7e8350c", wantMatched: 1},
		{name: "plain wrong password", conn: "sslmode=disable", user: user, password: "tdb_0000000000000000", wantMatched: -1,
			wantCode: CodeInvalidPassword, wantMsg: `password authentication failed for user "tdb_2abf90d3"`},
		{name: "tls wrong password", tls: true, conn: "sslmode=require channel_binding=require", user: user, password: "nope", wantMatched: -1,
			wantCode: CodeInvalidPassword, wantMsg: `password authentication failed for user "tdb_2abf90d3"`},
		{name: "unknown project", conn: "sslmode=disable", user: "tdb_00000000", password: "tdb_d2bf66ed7898c448", wantMatched: -1,
			wantCode: CodeInvalidPassword, wantMsg: `password authentication failed for user "tdb_00000000"`},
		{name: "tls required", requireTLS: true, conn: "sslmode=disable", user: user, password: "tdb_d2bf66ed7898c448", wantMatched: -1,
			wantCode: CodeInvalidAuthorization, wantMsg: "TLS required"},
		{name: "tls required and used", tls: true, requireTLS: true, conn: "sslmode=require", user: user, password: "tdb_d2bf66ed7898c448", wantMatched: 2},
		{name: "direct tls channel binding required", tls: true, requireTLS: true, conn: "sslmode=require sslnegotiation=direct channel_binding=require",
			user: user, password: "tdb_d2bf66ed7898c448", wantMatched: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := StartupConfig{RequireTLS: tt.requireTLS}
			if tt.tls {
				cfg.TLS = ServerTLSConfig(cert)
			}
			srv := startAuthServer(t, cfg, keys)
			host, port, _ := net.SplitHostPort(srv.addr)
			dsn := fmt.Sprintf("host=%s port=%s user=%s password=%s database=myapp__wayne connect_timeout=5 %s",
				host, port, tt.user, tt.password, tt.conn)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, err := pgconn.Connect(ctx, dsn)
			if tt.wantCode == "" {
				if err != nil {
					t.Fatalf("connect: %v", err)
				}
				if conn.ParameterStatus("server_version") != "17.0" {
					t.Fatal("client did not get the server's parameters")
				}
				if _, isTLS := conn.Conn().(*tls.Conn); isTLS != tt.tls {
					t.Fatalf("client TLS = %v, want %v", isTLS, tt.tls)
				}
				conn.Close(ctx)
			} else {
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) || pgErr.Code != tt.wantCode || !strings.Contains(pgErr.Message, tt.wantMsg) || pgErr.Severity != "FATAL" {
					t.Fatalf("connect error = %v, want FATAL %s %q", err, tt.wantCode, tt.wantMsg)
				}
			}
			select {
			case r := <-srv.results:
				if r.matched != tt.wantMatched || r.tls != tt.tls {
					t.Fatalf("server: matched %d tls %v err %v; want matched %d tls %v", r.matched, r.tls, r.err, tt.wantMatched, tt.tls)
				}
				if r.tls && r.matched >= 0 && r.records != "tls13" {
					t.Fatalf("a TLS 1.3 session went on with %q records", r.records)
				}
				if CodeOf(r.err) != tt.wantCode {
					t.Fatalf("server error %v has code %q, want %q", r.err, CodeOf(r.err), tt.wantCode)
				}
			case <-ctx.Done():
				t.Fatal("server did not finish")
			}
		})
	}
}

// TestAuthenticateSCRAMProtocolErrors drives AuthenticateSCRAM over a pipe with raw client
// messages, for what real drivers never send.
func TestAuthenticateSCRAMProtocolErrors(t *testing.T) {
	binding := sha256.New().Sum(nil)
	tests := []struct {
		name      string
		binding   []byte
		mechanism string
		first     string
		wantCode  string
		wantMsg   string
	}{
		{name: "downgrade y when plus offered", binding: binding, mechanism: scram.MechanismSHA256, first: "y,,n=,r=abc",
			wantCode: CodeProtocolViolation, wantMsg: "channel binding"},
		{name: "plus not offered", mechanism: scram.MechanismSHA256Plus, first: "p=tls-server-end-point,,n=,r=abc",
			wantCode: CodeProtocolViolation, wantMsg: "invalid SASL authentication mechanism"},
		{name: "malformed", mechanism: scram.MechanismSHA256, first: "n,,r=abc",
			wantCode: CodeProtocolViolation, wantMsg: "malformed SCRAM message"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server, client := net.Pipe()
			defer client.Close()
			fe := pgproto3.NewFrontend(client, client)
			done := make(chan error, 1)
			go func() {
				be := pgproto3.NewBackend(server, server)
				_, err := AuthenticateSCRAM(be, "u", []byte("salt"), testIterations, nil, tt.binding)
				server.Close()
				done <- err
			}()
			msg, err := fe.Receive()
			if err != nil {
				t.Fatal(err)
			}
			sasl, ok := msg.(*pgproto3.AuthenticationSASL)
			if !ok || (len(sasl.AuthMechanisms) == 2) != (tt.binding != nil) {
				t.Fatalf("got %#v", msg)
			}
			fe.Send(&pgproto3.SASLInitialResponse{AuthMechanism: tt.mechanism, Data: []byte(tt.first)})
			if err := fe.Flush(); err != nil {
				t.Fatal(err)
			}
			err = <-done
			pe, ok := AsPGError(err)
			if !ok || pe.Code != tt.wantCode || !strings.Contains(pe.Message, tt.wantMsg) {
				t.Fatalf("err = %v, want %s %q", err, tt.wantCode, tt.wantMsg)
			}
		})
	}
}

// A client that hangs up during the exchange (psql asking for a password)
// is not a failed attempt: the error carries no SQLSTATE for the ban tracker.
func TestAuthenticateSCRAMClientGone(t *testing.T) {
	server, client := net.Pipe()
	go func() {
		fe := pgproto3.NewFrontend(client, client)
		_, _ = fe.Receive()
		client.Close()
	}()
	_, err := AuthenticateSCRAM(pgproto3.NewBackend(server, server), "u", []byte("salt"), testIterations, nil, nil)
	if err == nil || CodeOf(err) == CodeInvalidPassword {
		t.Fatalf("err = %v", err)
	}
	if _, ok := AsPGError(err); ok {
		t.Fatalf("err = %v carries a SQLSTATE", err)
	}
}
