package node

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestRaftTransportTLS: raft connections between nodes with the same
// cluster secret carry raft RPCs; a peer with another secret, or one that
// speaks plain TCP, gets nothing through and cannot inject a command.
func TestRaftTransportTLS(t *testing.T) {
	t.Parallel()
	server, err := newRaftTransport("127.0.0.1:0", nil, "secret-a", io.Discard)
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
		client, err := newRaftTransport("127.0.0.1:0", nil, secret, io.Discard)
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
