package node_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"tdb/fsm"
	"tdb/internal/testcluster"
	"tdb/internal/testnode"
	"tdb/node"
)

// TestPolicyAuthBanIsImmediate: the node bans an IP the moment its own count
// of failures reaches the threshold, before the cluster has heard of them
// (the batch interval here is a minute), and an IP banned while its clients
// were logging in gets no verdict on the guesses they send after that.
func TestPolicyAuthBanIsImmediate(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t, func(c *node.Config) { c.BanBatchInterval = time.Minute })
	ctx := context.Background()
	setCluster(t, e, map[string]int64{"auth_fail_threshold": 3})
	bad := e.ConnString("tdb_0000000000000000", "controlplane_workspace", "disable")
	good := e.ConnString(e.ProxyPassword, "controlplane_workspace", "disable")

	// Logins that have sent their startup message, and wait to send a proof.
	parked := make([]*parkedLogin, 4)
	for i := range parked {
		parked[i] = parkLogin(t, e, "tdb_0000000000000000")
	}
	for range 3 {
		_, err := pgx.Connect(ctx, bad)
		wantPgError(t, err, "FATAL", "28P01", fmt.Sprintf("password authentication failed for user %q", e.ProjectID))
	}
	// The fourth login is refused before authentication, even with the
	// right password; the cluster has recorded nothing yet.
	_, err := pgx.Connect(ctx, good)
	if pe := pgErr(t, err); pe.Code != "53300" || !strings.Contains(pe.Message, "rate-limited after repeated failed auth attempts, retry in") {
		t.Fatalf("after 3 failures: %s %q, want the ban", pe.Code, pe.Message)
	}
	e.Node.FSM().View(func(s *fsm.State) {
		if r, ok := s.Bans.Lookup("127.0.0.1"); ok {
			t.Fatalf("the cluster already has %+v: the test shows nothing", r)
		}
	})
	for i, p := range parked {
		if code := p.finish(t); code != "53300" {
			t.Fatalf("parked login %d: %s, want the ban (53300)", i, code)
		}
	}
}

// parkedLogin is a SCRAM login stopped before its client proof is sent.
type parkedLogin struct {
	conn net.Conn
	fe   *pgproto3.Frontend
}

// parkLogin starts a login as user and stops when the server waits for the
// SCRAM initial response.
func parkLogin(t *testing.T, e *testnode.Env, user string) *parkedLogin {
	t.Helper()
	return parkLoginAt(t, e.Node.BoundWireAddr(), user)
}

// parkLoginAt is parkLogin at the wire address addr.
func parkLoginAt(t *testing.T, addr, user string) *parkedLogin {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fe := pgproto3.NewFrontend(conn, conn)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": user, "database": "controlplane_workspace"}})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if msg, err := fe.Receive(); err != nil {
		t.Fatal(err)
	} else if _, ok := msg.(*pgproto3.AuthenticationSASL); !ok {
		t.Fatalf("want AuthenticationSASL, got %T", msg)
	}
	return &parkedLogin{conn: conn, fe: fe}
}

// serverFirst sends the SCRAM initial response and returns the server's
// first message as attributes (r, s, i).
func (p *parkedLogin) serverFirst(t *testing.T) map[string]string {
	t.Helper()
	const clientNonce = "parkedparkedparkedparked"
	p.fe.Send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("n,,n=,r=" + clientNonce)})
	if err := p.fe.Flush(); err != nil {
		t.Fatal(err)
	}
	msg, err := p.fe.Receive()
	if err != nil {
		t.Fatal(err)
	}
	cont, ok := msg.(*pgproto3.AuthenticationSASLContinue)
	if !ok {
		t.Fatalf("want AuthenticationSASLContinue, got %T", msg)
	}
	attrs := map[string]string{}
	for _, attr := range strings.Split(string(cont.Data), ",") {
		if k, v, ok := strings.Cut(attr, "="); ok {
			attrs[k] = v
		}
	}
	return attrs
}

// finish sends a guess (a well-formed proof for a wrong password) and
// returns the SQLSTATE the login ends with.
func (p *parkedLogin) finish(t *testing.T) string {
	t.Helper()
	nonce := p.serverFirst(t)["r"]
	proof := base64.StdEncoding.EncodeToString(make([]byte, 32))
	p.fe.Send(&pgproto3.SASLResponse{Data: []byte("c=biws,r=" + nonce + ",p=" + proof)})
	if err := p.fe.Flush(); err != nil {
		t.Fatal(err)
	}
	msg, err := p.fe.Receive()
	if err != nil {
		t.Fatal(err)
	}
	er, ok := msg.(*pgproto3.ErrorResponse)
	if !ok {
		t.Fatalf("want an ErrorResponse, got %T", msg)
	}
	return er.Code
}

// TestTerminateDuringLogin: a client that sends Terminate instead of its
// SCRAM response is let go without an error (not an internal one).
func TestTerminateDuringLogin(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	p := parkLogin(t, e, e.ProjectID)
	p.fe.Send(&pgproto3.Terminate{})
	if err := p.fe.Flush(); err != nil {
		t.Fatal(err)
	}
	if msg, err := p.fe.Receive(); err == nil {
		t.Fatalf("after Terminate the node sent %T %+v", msg, msg)
	}
}

// TestUnknownProjectSaltIsTheClusters: the fake SCRAM salt an unknown
// project ID is shown is the same on every node and after a restart, as a
// real project's salt is: comparing them tells nothing about which IDs
// exist.
func TestUnknownProjectSaltIsTheClusters(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 2)
	salts := func() []string {
		var out []string
		for _, m := range c.Members {
			out = append(out, parkLoginAt(t, m.Node.BoundWireAddr(), "tdb_ffffffff").serverFirst(t)["s"])
		}
		return out
	}
	first := salts()
	if first[0] == "" || first[0] != first[1] {
		t.Fatalf("an unknown project's salt differs between nodes: %q", first)
	}
	c.Stop(t, 1)
	c.Restart(t, 1)
	if again := salts(); again[1] != first[0] {
		t.Fatalf("an unknown project's salt changed with a restart: %q, then %q", first[0], again[1])
	}
}

// TestKeyRevokedDuringLogin: a key revoked while a login with it is between
// its SCRAM messages (the client may take the whole startup timeout to send
// its proof) is refused when the proof comes: it was checked against the
// keys as they were when the login began.
func TestKeyRevokedDuringLogin(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	ctx := context.Background()
	var created struct {
		ID  string `json:"id"`
		Key string `json:"key"`
	}
	e.MustDo(t, "POST", "/v1/apikeys", e.ProxyPassword, "", map[string]any{"role": "read", "scope_type": "project"}, &created)
	cfg, err := pgx.ParseConfig(e.ConnString(created.Key, "controlplane_workspace", "disable"))
	if err != nil {
		t.Fatal(err)
	}
	revoked := false
	dialer := &net.Dialer{}
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		// Revoke the key as the client sends its proof (the second SASL
		// message: 'p' is also the SASLInitialResponse).
		return &onSASLResponse{Conn: c, hook: func() {
			e.MustDo(t, "DELETE", "/v1/apikeys/"+created.ID, e.ProxyPassword, "", nil, nil)
			revoked = true
		}}, nil
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if !revoked {
		t.Fatalf("the proof was not seen: %v", err)
	}
	if err == nil {
		conn.Close(ctx)
		t.Fatal("a key revoked during its login logged in")
	}
	wantPgError(t, err, "FATAL", "28P01", fmt.Sprintf("password authentication failed for user %q", e.ProjectID))
}

// onSASLResponse runs hook before the second SASL message ('p') the client
// writes goes out.
type onSASLResponse struct {
	net.Conn
	hook func()
	seen int
}

func (c *onSASLResponse) Write(b []byte) (int, error) {
	if len(b) > 0 && b[0] == 'p' {
		if c.seen++; c.seen == 2 {
			c.hook()
		}
	}
	return c.Conn.Write(b)
}

// TestRevokedKeyEndsItsSessions: revoking a key closes the sessions it
// holds, idle or running a statement, on both relays; a session of another
// key goes on.
func TestRevokedKeyEndsItsSessions(t *testing.T) {
	t.Parallel()
	eachRelay(t, func(t *testing.T, e *testnode.Env) {
		ctx := context.Background()
		var created struct{ ID, Key string }
		e.MustDo(t, "POST", "/v1/apikeys", e.ProxyPassword, "", map[string]any{"role": "write", "scope_type": "project"}, &created)
		idle := connect(t, e.ConnString(created.Key, "controlplane_workspace", "disable"))
		busy := connect(t, e.ConnString(created.Key, "controlplane_workspace", "require"))
		other := connect(t, e.ConnString(e.ProxyPassword, "controlplane_workspace", "disable"))
		admin := connect(t, e.PG.URL())
		running := make(chan error, 1)
		// Named for this relay's run: the other's shares the server.
		sleep := "SELECT pg_sleep(60) /* " + t.Name() + " */"
		go func() {
			_, err := busy.Exec(ctx, sleep)
			running <- err
		}()
		waitFor(t, "the statement running", func() bool {
			var n int
			err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE query = $1 AND state = 'active'", sleep).Scan(&n)
			return err == nil && n == 1
		})
		e.MustDo(t, "DELETE", "/v1/apikeys/"+created.ID, e.ProxyPassword, "", nil, nil)
		if err := <-running; err == nil {
			t.Fatal("a statement of a revoked key ran to its end")
		}
		waitFor(t, "the idle session of the revoked key closed", func() bool {
			return idle.Ping(ctx) != nil
		})
		if err := other.Ping(ctx); err != nil {
			t.Fatalf("a session of another key: %v", err)
		}
	})
}
