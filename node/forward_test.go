package node

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/cockroachdb/errors"

	"tdb/fsm"
	"tdb/httpapi"
)

// TestForwardFailure: a command forwarded to the leader is sent again only
// when it certainly was not appended, and one the leader was sent but did
// not answer for (it crashed after appending it, say) has an unknown
// outcome, as one whose leader stepped down after appending it has: it may
// have committed, so the client must not be told it was not.
func TestForwardFailure(t *testing.T) {
	n := &Node{cfg: Config{Cluster: ClusterConfig{InternalTimeout: 2 * time.Second}}, client: newInternalClient(), secret: "s"}
	serve := func(h http.HandlerFunc) string {
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		return srv.Listener.Addr().String()
	}
	answer := func(status int, code string) string {
		return serve(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			writeInternal(w, status, &internalError{Code: code, Message: code})
		})
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	for _, tc := range []struct {
		name           string
		addr           string
		retry, unknown bool
	}{
		{name: "leader crashed after reading the command", addr: serve(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		}), unknown: true},
		{name: "answer unreadable", addr: serve(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte("{"))
		}), unknown: true},
		{name: "leader stepped down after appending", addr: answer(http.StatusServiceUnavailable, codeOutcomeUnknown), unknown: true},
		{name: "not the leader", addr: answer(http.StatusServiceUnavailable, codeNotLeader), retry: true},
		{name: "nothing listens", addr: closed, retry: true},
		{name: "refused command", addr: answer(http.StatusBadRequest, "bad_request")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out applyResponse
			err := n.call(context.Background(), peer{http: tc.addr}, http.MethodPost, "/internal/apply",
				applyRequest{Type: fsm.CmdCreateKey, Payload: []byte(`{}`)}, &out)
			if err == nil {
				t.Fatal("the call succeeded")
			}
			ferr, retry := forwardFailure(fsm.CmdCreateKey, "n1", err)
			if retry != tc.retry || errors.Is(ferr, httpapi.ErrOutcomeUnknown) != tc.unknown {
				t.Fatalf("%v: retry %v, outcome unknown %v; want %v, %v", ferr, retry, errors.Is(ferr, httpapi.ErrOutcomeUnknown), tc.retry, tc.unknown)
			}
		})
	}
}
