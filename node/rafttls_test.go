package node

import (
	"bytes"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

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
	server, err := newRaftTransport("127.0.0.1:0", nil, "secret-a", noClusterID, io.Discard)
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
		client, err := newRaftTransport("127.0.0.1:0", nil, secret, noClusterID, io.Discard)
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
	server, err := newRaftTransport("127.0.0.1:0", nil, "secret-a", serverID, &logged)
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
		client, err := newRaftTransport("127.0.0.1:0", nil, "secret-a", clusterOf(id), io.Discard)
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
