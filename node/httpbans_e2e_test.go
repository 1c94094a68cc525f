package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"tdb/fsm"
	"tdb/internal/testnode"
	"tdb/node"
)

// apiCall sends a GET with a bearer key and, when forwardedFor is set, the
// X-Forwarded-For header a load balancer adds; it returns the status, the
// error code and message, and the Retry-After header.
func apiCall(t *testing.T, e *testnode.Env, key, forwardedFor string) (int, string, string, string) {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+e.Node.HTTPAddr()+"/v1/tenants", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if forwardedFor != "" {
		req.Header.Set("X-Forwarded-For", forwardedFor)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var body struct{ Code, Message string }
	_ = json.Unmarshal(raw, &body)
	return resp.StatusCode, body.Code, body.Message, resp.Header.Get("Retry-After")
}

// TestHTTPWrongKeysBanTheIP: wrong API keys count toward the IP's ban as
// wrong passwords do on the wire, and a banned IP is refused on both.
func TestHTTPWrongKeysBanTheIP(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	e.MustDo(t, "PATCH", "/v1/cluster/settings", e.AdminKey, "", map[string]int64{"auth_fail_threshold": 3, "ban_sec": 60}, nil)
	for range 3 {
		if status, code, _, _ := apiCall(t, e, "sk_wrong_key_0123456789abcdef0123456789", ""); status != 401 || code != "unauthorized" {
			t.Fatalf("a wrong key: %d %s", status, code)
		}
	}
	status, code, msg, retry := apiCall(t, e, e.ProxyPassword, "")
	if status != 429 || code != "rate_limited" || retry == "" ||
		!strings.HasPrefix(msg, "connection rejected: your IP is temporarily rate-limited after repeated failed auth attempts, retry in ") {
		t.Fatalf("a banned IP with a good key: %d %s %q (Retry-After %q)", status, code, msg, retry)
	}
	_, err := pgx.Connect(context.Background(), e.ConnString(e.ProxyPassword, "controlplane_workspace", "disable"))
	if pe := pgErr(t, err); pe.Code != "53300" {
		t.Fatalf("the same IP on the wire: %s %q", pe.Code, pe.Message)
	}
}

// TestHTTPBansBehindALoadBalancer: behind a load balancer the node trusts
// (--proxy-protocol-from) the client is the one X-Forwarded-For names, so
// one client's wrong keys do not ban the others.
func TestHTTPBansBehindALoadBalancer(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t, func(cfg *node.Config) {
		cfg.ProxyProtocolFrom = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	e.MustDo(t, "PATCH", "/v1/cluster/settings", e.AdminKey, "", map[string]int64{"auth_fail_threshold": 3, "ban_sec": 60}, nil)
	// A request without a key is a client's mistake, not a guess: not counted.
	for range 5 {
		if status, _, _, _ := apiCall(t, e, "", "198.51.100.9"); status != 401 {
			t.Fatalf("no key: %d", status)
		}
	}
	// The client sent an X-Forwarded-For of its own; the balancer appends
	// the address it saw, and that last one is the client's.
	for range 3 {
		apiCall(t, e, "sk_wrong_key_0123456789abcdef0123456789", "203.0.113.5, 198.51.100.7")
	}
	if status, code, _, _ := apiCall(t, e, e.ProxyPassword, "198.51.100.7"); status != 429 || code != "rate_limited" {
		t.Fatalf("the guessing client: %d %s", status, code)
	}
	for _, ff := range []string{"198.51.100.8", "198.51.100.9", ""} {
		if status, _, msg, _ := apiCall(t, e, e.ProxyPassword, ff); status != 200 {
			t.Fatalf("another client (%q): %d %s", ff, status, msg)
		}
	}
	// Some balancers write the client's port too: the address is still the
	// client, not the balancer, whatever port each request came from.
	for i := range 3 {
		apiCall(t, e, "sk_wrong_key_0123456789abcdef0123456789", fmt.Sprintf("[2001:db8::7]:%d", 40000+i))
	}
	for _, ff := range []string{"2001:db8::7", "[2001:db8::7]", "[2001:db8::7]:41000"} {
		if status, code, _, _ := apiCall(t, e, e.ProxyPassword, ff); status != 429 || code != "rate_limited" {
			t.Fatalf("the guessing client (%q): %d %s", ff, status, code)
		}
	}
	for i := range 3 {
		apiCall(t, e, "sk_wrong_key_0123456789abcdef0123456789", fmt.Sprintf("198.51.100.10:%d", 40000+i))
	}
	if status, code, _, _ := apiCall(t, e, e.ProxyPassword, "198.51.100.10"); status != 429 || code != "rate_limited" {
		t.Fatalf("the guessing client with ports: %d %s", status, code)
	}
	for _, ff := range []string{"198.51.100.11:40000", ""} {
		if status, _, msg, _ := apiCall(t, e, e.ProxyPassword, ff); status != 200 {
			t.Fatalf("another client (%q): %d %s", ff, status, msg)
		}
	}
}

// profilerCall sends a GET of the profiler's index with a bearer key, and
// returns the status and the Retry-After header.
func profilerCall(t *testing.T, e *testnode.Env, key string) (int, string) {
	t.Helper()
	return authGet(t, e.Node.HTTPAddr(), "/debug/pprof/", "Bearer "+key)
}

// authGet sends a GET of path to the HTTP address addr with the
// Authorization header auth as it is, and returns the status and the
// Retry-After header.
func authGet(t *testing.T, addr, path, auth string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", auth)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After")
}

// TestHTTPWrongAdminKeysOnTheProfilerBanTheIP: the profiler takes the admin
// key, so it must not be a place to guess it without the ban every other
// key check enforces: its wrong keys count, and a banned IP is refused even
// with the right key.
func TestHTTPWrongAdminKeysOnTheProfilerBanTheIP(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	e.MustDo(t, "PATCH", "/v1/cluster/settings", e.AdminKey, "", map[string]int64{"auth_fail_threshold": 3, "ban_sec": 60}, nil)
	// No key at all is not a guess.
	for range 5 {
		if status, _ := profilerCall(t, e, ""); status != 401 {
			t.Fatalf("no key: %d", status)
		}
	}
	if status, _ := profilerCall(t, e, e.AdminKey); status != 200 {
		t.Fatalf("the admin key: %d", status)
	}
	for range 3 {
		if status, _ := profilerCall(t, e, "sk_admin_guess_0123456789abcdef01234567"); status != 401 {
			t.Fatalf("a wrong admin key: %d", status)
		}
	}
	if status, retry := profilerCall(t, e, e.AdminKey); status != 429 || retry == "" {
		t.Fatalf("a banned IP with the admin key: %d (Retry-After %q)", status, retry)
	}
	if status, code, _, _ := apiCall(t, e, e.ProxyPassword, ""); status != 429 || code != "rate_limited" {
		t.Fatalf("the same IP on the API: %d %s", status, code)
	}
}

// internalCall sends a GET of an internal endpoint with a bearer secret,
// and returns the status.
func internalCall(t *testing.T, e *testnode.Env, secret string) int {
	t.Helper()
	status, _ := authGet(t, e.Node.HTTPAddr(), "/internal/counts", "Bearer "+secret)
	return status
}

// TestHTTPWrongClusterSecretsBanTheIP: the internal API is no place to
// guess the cluster secret either: wrong secrets count toward the IP's
// ban, and a banned IP that is no member's is refused even with the right
// secret. (A member's calls go on while clients sharing its IP are banned:
// TestClusterBanEnforcedEverywhere bans the loopback address its nodes use.)
func TestHTTPWrongClusterSecretsBanTheIP(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	e.MustDo(t, "PATCH", "/v1/cluster/settings", e.AdminKey, "", map[string]int64{"auth_fail_threshold": 3, "ban_sec": 60}, nil)
	secret := node.DeriveClusterSecret(e.AdminKey)
	if status := internalCall(t, e, secret); status != 200 {
		t.Fatalf("the cluster secret: %d", status)
	}
	for range 3 {
		if status := internalCall(t, e, "guess"); status != 401 {
			t.Fatalf("a wrong secret: %d", status)
		}
	}
	if status := internalCall(t, e, secret); status != 429 {
		t.Fatalf("a banned IP with the cluster secret: %d", status)
	}
	if status, code, _, _ := apiCall(t, e, e.ProxyPassword, ""); status != 429 || code != "rate_limited" {
		t.Fatalf("the same IP on the API: %d %s", status, code)
	}
}

// TestHTTPKeysOnlyAsBearer: the profiler and the internal API take their
// key only as a bearer key, as the public API does. A request with no
// bearer key is not counted toward a ban, so a key taken without the
// scheme would be a way to guess it without limit.
func TestHTTPKeysOnlyAsBearer(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	secret := node.DeriveClusterSecret(e.AdminKey)
	for _, c := range []struct{ path, key string }{{"/debug/pprof/", e.AdminKey}, {"/internal/counts", secret}} {
		if status, _ := authGet(t, e.Node.HTTPAddr(), c.path, "Bearer "+c.key); status != 200 {
			t.Fatalf("%s with its bearer key: %d", c.path, status)
		}
		if status, _ := authGet(t, e.Node.HTTPAddr(), c.path, c.key); status != 401 {
			t.Fatalf("%s with its key and no scheme: %d, want 401", c.path, status)
		}
	}
}

// TestForwardedFailedLoginsTakeTheLeadersTime: a batch of failed logins a
// follower forwards is recorded at the leader's time, not the follower's:
// the ban table never turns its clock back, so a follower whose clock ran
// a day ahead made its bans (and every later one) last a day.
func TestForwardedFailedLoginsTakeTheLeadersTime(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	e.MustDo(t, "PATCH", "/v1/cluster/settings", e.AdminKey, "", map[string]int64{"auth_fail_threshold": 3, "ban_sec": 60}, nil)
	const ip = "203.0.113.77"
	payload, err := json.Marshal(fsm.RecordAuthFailures{At: time.Now().Add(24 * time.Hour).UTC(), Node: "ahead",
		Failures: []fsm.AuthFailure{{IP: ip, Count: 3}}})
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(map[string]any{"type": fsm.CmdRecordAuthFailures, "payload": json.RawMessage(payload)})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest("POST", "http://"+e.Node.HTTPAddr()+"/internal/apply", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+node.DeriveClusterSecret(e.AdminKey))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("forwarded batch: %d", resp.StatusCode)
	}
	var rec fsm.AuthRecord
	var ok bool
	e.Node.FSM().View(func(s *fsm.State) { rec, ok = s.Bans.Lookup(ip) })
	if !ok || rec.BannedUntil.After(time.Now().Add(time.Hour)) {
		t.Fatalf("banned until %s (recorded %v), want about a minute from now", rec.BannedUntil, ok)
	}
}
