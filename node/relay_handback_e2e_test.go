package node_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"tdb/internal/testnode"
)

// rawQuery builds a Query message.
func rawQuery(sql string) []byte {
	b := append([]byte{'Q', 0, 0, 0, 0}, sql...)
	b = append(b, 0)
	binary.BigEndian.PutUint32(b[1:], uint32(len(b)-1))
	return b
}

// loggedIn returns the connection of a session logged in to connString,
// for the test to speak the protocol on itself; it is closed at the end.
func loggedIn(t *testing.T, connString string) net.Conn {
	t.Helper()
	pc, err := pgconn.Connect(context.Background(), connString)
	if err != nil {
		t.Fatal(err)
	}
	hj, err := pc.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hj.Conn.Close() })
	return hj.Conn
}

// readUntilRFQ reads backend messages up to a ReadyForQuery and returns
// their types.
func readUntilRFQ(conn net.Conn, r *bufio.Reader, d time.Duration) (string, error) {
	_ = conn.SetReadDeadline(time.Now().Add(d))
	defer conn.SetReadDeadline(time.Time{})
	var types []byte
	for {
		var hdr [5]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return string(types), err
		}
		if _, err := io.CopyN(io.Discard, r, int64(binary.BigEndian.Uint32(hdr[1:]))-4); err != nil {
			return string(types), err
		}
		types = append(types, hdr[0])
		if hdr[0] == 'Z' {
			return string(types), nil
		}
	}
}

// TestHandBackMidMessage: a large Query pipelined behind a small one, whose
// tail arrives only after the small one's ReadyForQuery. The goroutine
// relay hands the session back to the loop with the large message half
// read; the loop cannot hold it, gives it back whole, and the statement is
// answered.
func TestHandBackMidMessage(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	conn := loggedIn(t, e.ConnString(e.ProxyPassword, "controlplane_workspace", "disable"))
	r := bufio.NewReader(conn)
	// A large row first, so the session is on goroutines.
	if _, err := conn.Write(rawQuery("SELECT repeat('r', 100000)")); err != nil {
		t.Fatal(err)
	}
	if types, err := readUntilRFQ(conn, r, 10*time.Second); err != nil || types != "TDCZ" {
		t.Fatalf("large row: %q %v", types, err)
	}
	waitFor(t, "the session to go back to the loop", func() bool { return relayCount(t, e, "return") == 1 })
	big := rawQuery("SELECT length('" + strings.Repeat("z", 300<<10) + "')")
	if _, err := conn.Write(append(rawQuery("SELECT pg_sleep(0.5)"), big[:150<<10]...)); err != nil {
		t.Fatal(err)
	}
	if types, err := readUntilRFQ(conn, r, 10*time.Second); err != nil || types != "TDCZ" {
		t.Fatalf("first answer: %q %v", types, err)
	}
	waitFor(t, "the session to go back with half a message", func() bool { return relayCount(t, e, "return") == 2 })
	if _, err := conn.Write(big[150<<10:]); err != nil {
		t.Fatal(err)
	}
	if types, err := readUntilRFQ(conn, r, 10*time.Second); err != nil || types != "TDCZ" {
		t.Fatalf("the large statement's answer: %q %v", types, err)
	}
}
