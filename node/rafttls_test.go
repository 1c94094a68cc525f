package node

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/errors"
	"github.com/hashicorp/raft"

	"tdb/fsm"
	"tdb/internal/syncbuf"
)

// knownCluster is a node that knows cluster ID (committed), or none.
type knownCluster struct{ id *atomic.Value }

func clusterOf(id string) knownCluster {
	v := &atomic.Value{}
	v.Store(id)
	return knownCluster{v}
}

func (k knownCluster) ID() string { return k.id.Load().(string) }

func (k knownCluster) Admits(theirs string) (string, bool) {
	mine := k.ID()
	return mine, theirs == "" || mine == "" || theirs == mine
}

var noClusterID = clusterOf("")

// TestRaftTransportTLS: raft connections between nodes with the same
// cluster secret carry raft RPCs; a peer with another secret, or one that
// speaks plain TCP, gets nothing through and cannot inject a command.
func TestRaftTransportTLS(t *testing.T) {
	t.Parallel()
	server, _, err := newRaftTransport("127.0.0.1:0", nil, "secret-a", noClusterID, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	got := make(chan *raft.AppendEntriesRequest, 4)
	go func() {
		for rpc := range server.Consumer() {
			if req, ok := rpc.Command.(*raft.AppendEntriesRequest); ok {
				got <- req
			}
			rpc.Respond(&raft.AppendEntriesResponse{Term: 7, Success: true}, nil)
		}
	}()
	target := server.LocalAddr()

	send := func(secret string) error {
		client, _, err := newRaftTransport("127.0.0.1:0", nil, secret, noClusterID, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		var resp raft.AppendEntriesResponse
		req := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ID: []byte("c"), Addr: []byte(client.LocalAddr())}, Term: 7}
		return client.AppendEntries("n1", target, req, &resp)
	}
	if err := send("secret-a"); err != nil {
		t.Fatalf("same secret: %v", err)
	}
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("the RPC never reached the server")
	}
	if err := send("secret-b"); err == nil {
		t.Fatal("a peer with another cluster secret got an RPC through")
	}

	// Plain TCP: the bytes of a raft RPC (an AppendEntries type byte and
	// msgpack) are refused by the TLS handshake.
	c, err := net.Dial("tcp", string(target))
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.Write(append([]byte{0}, bytes.Repeat([]byte{0x80}, 64)...))
	b, _ := io.ReadAll(c)
	c.Close()
	if bytes.Contains(b, []byte("Success")) {
		t.Fatal("a plain TCP peer got a raft response")
	}
	select {
	case req := <-got:
		t.Fatalf("a command from an unauthenticated peer reached raft: %+v", req)
	case <-time.After(300 * time.Millisecond):
	}
}

// TestRaftTransportRefusesAnotherCluster: nodes of two clusters (the same
// secret, different cluster IDs) get no raft RPC through to each other,
// either way; a node that knows no ID yet (a joiner) talks to either, and
// the refusal is logged.
func TestRaftTransportRefusesAnotherCluster(t *testing.T) {
	t.Parallel()
	serverID := clusterOf("aaaaaaaaaaaaaaaa")
	var logged syncbuf.Buffer
	server, _, err := newRaftTransport("127.0.0.1:0", nil, "secret-a", serverID, &logged)
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	go func() {
		for rpc := range server.Consumer() {
			rpc.Respond(&raft.AppendEntriesResponse{Term: 7, Success: true}, nil)
		}
	}()
	send := func(id string) error {
		client, _, err := newRaftTransport("127.0.0.1:0", nil, "secret-a", clusterOf(id), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		var resp raft.AppendEntriesResponse
		req := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ID: []byte("c"), Addr: []byte(client.LocalAddr())}, Term: 7}
		return client.AppendEntries("n1", server.LocalAddr(), req, &resp)
	}
	for _, id := range []string{"aaaaaaaaaaaaaaaa", ""} {
		if err := send(id); err != nil {
			t.Fatalf("client of cluster %q: %v", id, err)
		}
	}
	if err := send("bbbbbbbbbbbbbbbb"); err == nil {
		t.Fatal("a node of another cluster got an RPC through")
	}
	if !strings.Contains(logged.String(), "a node of cluster bbbbbbbbbbbbbbbb: this node is of cluster aaaaaaaaaaaaaaaa") {
		t.Fatalf("the refusal was not logged: %q", logged.String())
	}
	serverID.id.Store("") // a joiner: anyone may reach it
	if err := send("bbbbbbbbbbbbbbbb"); err != nil {
		t.Fatalf("a node without a cluster ID refused a cluster: %v", err)
	}
}

// TestInternalCallsOverRaftTLS: once the cluster runs log version 6 (every
// node's build takes them there), internal calls go to the callee's raft
// listener over the cluster's TLS and carry no secret; before it they go to
// its HTTP address with the secret as their key. A caller with another
// secret gets no call through: nothing is sent.
func TestInternalCallsOverRaftTLS(t *testing.T) {
	t.Parallel()
	const secret = "s3cret-internal"
	tr, ln, err := newRaftTransport("127.0.0.1:0", nil, secret, noClusterID, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	answer := func(index uint64, seen chan<- string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seen <- r.Header.Get("Authorization")
			writeInternal(w, http.StatusOK, indexResponse{Index: index})
		})
	}
	overTLS, overHTTP := make(chan string, 4), make(chan string, 4)
	srv := &http.Server{Handler: answer(7, overTLS)}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	plain := httptest.NewServer(answer(5, overHTTP))
	defer plain.Close()
	callee := peer{http: plain.Listener.Addr().String(), raft: string(tr.LocalAddr())}

	caller := func(secret string, version uint16) *Node {
		t.Helper()
		f := fsm.New()
		data, err := fsm.Encode(fsm.CmdSetLogVersion, &fsm.SetLogVersion{Version: version})
		if err != nil {
			t.Fatal(err)
		}
		f.Apply(&raft.Log{Index: 1, Data: data})
		n := &Node{rep: &Replica{FSM: f}, client: newInternalClient(), secret: secret}
		n.tlsClient, n.tlsReads = testInternalClients(t, secret)
		n.cfg.Cluster.InternalTimeout = 5 * time.Second
		return n
	}
	for _, tc := range []struct {
		version uint16
		index   uint64
		seen    chan string
		key     string
	}{{5, 5, overHTTP, "Bearer " + secret}, {6, 7, overTLS, ""}} {
		var out indexResponse
		if err := caller(secret, tc.version).call(context.Background(), callee, "GET", "/internal/index", nil, &out); err != nil {
			t.Fatalf("log version %d: %v", tc.version, err)
		}
		if out.Index != tc.index {
			t.Fatalf("log version %d: the call reached the listener that answers %d, want %d", tc.version, out.Index, tc.index)
		}
		if got := <-tc.seen; got != tc.key {
			t.Fatalf("log version %d: the call's key %q, want %q", tc.version, got, tc.key)
		}
		if len(overTLS)+len(overHTTP) != 0 {
			t.Fatalf("log version %d: the call was made twice", tc.version)
		}
	}
	var out indexResponse
	err = caller("another secret", 6).call(context.Background(), callee, "GET", "/internal/index", nil, &out)
	if !errors.Is(err, errNotSent) || len(overTLS)+len(overHTTP) != 0 {
		t.Fatalf("a caller with another secret: %v (%d calls through), want nothing sent", err, len(overTLS)+len(overHTTP))
	}
}

// TestInternalCallsRefusedOnceInternalServerStops: a node that stops shuts
// its internal server before raft, and stays the leader meanwhile. A call
// that arrives then must fail before anything is sent (errNotSent), so a
// forwarded write is retried on the next leader, as a refused dial of the
// HTTP address is; accepted and left unanswered, its outcome was unknown.
func TestInternalCallsRefusedOnceInternalServerStops(t *testing.T) {
	t.Parallel()
	const secret = "s3cret-stopping"
	tr, ln, err := newRaftTransport("127.0.0.1:0", nil, secret, noClusterID, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeInternal(w, http.StatusOK, indexResponse{Index: 7})
	})}
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ln) }()
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-served

	f := fsm.New()
	data, err := fsm.Encode(fsm.CmdSetLogVersion, &fsm.SetLogVersion{Version: 6})
	if err != nil {
		t.Fatal(err)
	}
	f.Apply(&raft.Log{Index: 1, Data: data})
	n := &Node{rep: &Replica{FSM: f}, client: newInternalClient(), secret: secret}
	n.tlsClient, n.tlsReads = testInternalClients(t, secret)
	n.cfg.Cluster.InternalTimeout = 3 * time.Second
	callee := peer{http: "127.0.0.1:1", raft: string(tr.LocalAddr())}
	var out indexResponse
	err = n.call(context.Background(), callee, "POST", "/internal/apply", applyRequest{Type: fsm.CmdSetLogVersion}, &out)
	if !errors.Is(err, errNotSent) {
		t.Fatalf("a call to a node whose internal server stopped: %v, want it not sent", err)
	}
}

// testInternalClients are the write and read clients of internal calls over
// the raft listeners' TLS, offering no cluster ID.
func testInternalClients(t *testing.T, secret string) (*http.Client, *http.Client) {
	t.Helper()
	w, r, err := internalClients(secret, func() string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	return w, r
}

// TestInternalServerAnswersJSON: the raft listener's internal server
// answers a call it has no route for (a newer node's call to an older one)
// in JSON, as every other answer of the internal API, not in plain text.
func TestInternalServerAnswersJSON(t *testing.T) {
	t.Parallel()
	n := &Node{}
	h := jsonRoutes(n.internalRoutes(func(h http.HandlerFunc) http.HandlerFunc { return h }))
	for _, tc := range []struct {
		method, path string
		status       int
		code, allow  string
	}{
		{"GET", "/internal/nothing", 404, "not_found", ""},
		{"POST", "/internal/index", 405, "method_not_allowed", "GET, HEAD"},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(tc.method, tc.path, nil))
		var body internalError
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || w.Code != tc.status || body.Code != tc.code ||
			w.Header().Get("Allow") != tc.allow {
			t.Errorf("%s %s: %d %q (Allow %q), want %d %s", tc.method, tc.path, w.Code, w.Body.String(), w.Header().Get("Allow"), tc.status, tc.code)
		}
	}
}
