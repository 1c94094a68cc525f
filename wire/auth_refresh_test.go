package wire

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/errors"
	"github.com/jackc/pgx/v5/pgconn"

	"tdb/wire/scram"
)

// TestAuthenticateSCRAMRefresh: a proof that matches none of the stale
// candidates is checked once more against the refreshed ones; the client
// verifies the server-final signature, so a wrong one fails the connect.
func TestAuthenticateSCRAMRefresh(t *testing.T) {
	const user, password = "tdb_2abf90d3", "sk_created_a_moment_ago_xxxxxxxxxxxx"
	salt := scram.NewSalt()
	stale := []scram.Verifier{scram.NewVerifier("sk_older_key_xxxxxxxxxxxxxxxxxxxxxxx", salt, testIterations)}
	for _, tt := range []struct {
		name      string
		fresh     []scram.Verifier
		password  string
		wantMatch int
		wantCalls int32
	}{
		{"found after refresh", append(stale, scram.NewVerifier(password, salt, testIterations)), password, 1, 1},
		{"still wrong after refresh", stale, password, -1, 1},
		{"stale list already matches", stale, "sk_older_key_xxxxxxxxxxxxxxxxxxxxxxx", 0, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			var calls atomic.Int32
			results := make(chan authResult, 1)
			go func() {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				defer conn.Close()
				res, err := Startup(context.Background(), conn, StartupConfig{})
				if err != nil {
					results <- authResult{matched: -1, err: err}
					return
				}
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				matched, err := AuthenticateSCRAMRefresh(res.Backend, user, salt, testIterations, stale, nil,
					func() []scram.Verifier { calls.Add(1); return tt.fresh })
				if err != nil {
					_ = WriteError(res.Conn, err)
				} else {
					w := NewFrameWriter(res.Conn)
					_ = w.WriteRaw(AppendBackendKeyData(nil, CancelKey{ProcessID: 1, SecretKey: 2}))
					_ = w.WriteRaw(AppendReadyForQuery(nil, 'I'))
					_ = w.Flush()
					_, _, _ = NewFrameReader(res.Conn, 0).Next()
				}
				results <- authResult{matched: matched, err: err}
			}()
			host, port, _ := net.SplitHostPort(ln.Addr().String())
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, err := pgconn.Connect(ctx, fmt.Sprintf("host=%s port=%s user=%s password=%s sslmode=disable", host, port, user, tt.password))
			if tt.wantMatch >= 0 {
				if err != nil {
					t.Fatalf("connect: %v", err)
				}
				conn.Close(ctx)
			} else {
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) || pgErr.Code != CodeInvalidPassword {
					t.Fatalf("connect error %v, want 28P01", err)
				}
			}
			r := <-results
			if r.matched != tt.wantMatch || calls.Load() != tt.wantCalls {
				t.Fatalf("matched %d after %d refreshes (%v), want %d after %d", r.matched, calls.Load(), r.err, tt.wantMatch, tt.wantCalls)
			}
		})
	}
}
