package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/errors"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The load: clients that record every operation in the history.
//
//   - key clients create keys (unique names), revoke them, and probe them
//     with wire logins to myapp_workspace from rotating loopback source IPs
//     (127.0.1.x), biased towards keys revoked a moment ago;
//   - a tenant client creates, gets and deletes tenants from a small pool of
//     names, so creates meet existing names and deletes meet absent ones;
//   - insert clients log in to stable tenants (never deleted) and insert
//     rows with unique ids, reconnecting to a random node now and then;
//   - an attacker fails logins from 127.0.0.2… in bursts past the ban
//     threshold, so bans are decided under faults too.
//
// Each client picks a random node for each operation; a stopped or killed
// node answers nothing, and the operation's outcome is unknown (writes) or
// carries no information (logins).

// keyRec is a key the run created (acknowledged).
type keyRec struct {
	name, id, secret string
	revoked          bool // a revoke was acknowledged
}

// stableTenant is a tenant the insert clients write to.
type stableTenant struct {
	name, key string
	physical  string // its database's name on the backend server, for the check
}

// loadState is what the clients share.
type loadState struct {
	r         *runner
	mu        sync.Mutex
	keys      []*keyRec
	recentRev []*keyRec // revoked a moment ago, probed first
	seq       int
	schema    *schemaState // the optional schema workload's (ddl.go)
}

func (ls *loadState) nextSeq() int {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.seq++
	return ls.seq
}

// runLoad runs the clients until ctx ends and waits for them.
func (r *runner) runLoad(ctx context.Context) {
	ls := &loadState{r: r}
	var wg sync.WaitGroup
	client := 0
	goClient := func(fn func(ctx context.Context, id int, rng *rand.Rand)) {
		id := client
		client++
		rng := rand.New(rand.NewPCG(r.cfg.seed, uint64(1000+id)))
		wg.Add(1)
		go func() { defer wg.Done(); fn(ctx, id, rng) }()
	}
	for range 3 {
		goClient(ls.keyClient)
	}
	goClient(ls.tenantClient)
	for range 2 {
		goClient(ls.insertClient)
	}
	goClient(ls.attacker)
	if len(r.cfg.ops) > 0 {
		ls.startSchema(client, goClient)
	}
	wg.Wait()
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

func jitter(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
}

// httpOutcome classifies an HTTP write's answer.
func httpOutcome(code int, err error) string {
	switch {
	case err != nil || code == 0 || code >= 500:
		return outUnknown
	case code/100 == 2:
		return outOK
	default:
		return outFail
	}
}

func detail(code int, raw []byte, err error) string {
	if err != nil {
		return err.Error()
	}
	s := strings.TrimSpace(string(raw))
	if len(s) > 200 {
		s = s[:200]
	}
	return fmt.Sprintf("%d %s", code, s)
}

// keyClient creates, revokes and probes keys.
func (ls *loadState) keyClient(ctx context.Context, id int, rng *rand.Rand) {
	r := ls.r
	for sleepCtx(ctx, jitter(rng, 10*time.Millisecond, 60*time.Millisecond)) {
		mb := r.c.members[rng.IntN(len(r.c.members))]
		ls.mu.Lock()
		var live []*keyRec
		for _, k := range ls.keys {
			if !k.revoked {
				live = append(live, k)
			}
		}
		ls.mu.Unlock()
		switch p := rng.Float64(); {
		case p < 0.3 || len(live) == 0:
			name := fmt.Sprintf("k%d_%d", id, ls.nextSeq())
			call := r.hist.now()
			code, raw, err := r.c.call(context.Background(), mb, "POST", "/v1/apikeys", r.proxyPW,
				map[string]any{"name": name, "role": "read", "scope_type": "workspace", "scope_values": []string{"myapp"}})
			op := Op{Client: id, Kind: opKeyCreate, Node: mb.name, Subject: name, Call: call, Return: r.hist.now(),
				Outcome: httpOutcome(code, err), Detail: detail(code, raw, err)}
			if op.Outcome == outOK {
				var out struct{ ID, Key string }
				if json.Unmarshal(raw, &out) == nil && out.Key != "" {
					op.KeyID, op.Detail = out.ID, fmt.Sprint(code)
					ls.mu.Lock()
					ls.keys = append(ls.keys, &keyRec{name: name, id: out.ID, secret: out.Key})
					ls.mu.Unlock()
				}
			}
			r.hist.record(op)
		case p < 0.5:
			k := live[rng.IntN(len(live))]
			call := r.hist.now()
			code, raw, err := r.c.call(context.Background(), mb, "DELETE", "/v1/apikeys/"+k.id, r.proxyPW, nil)
			op := r.hist.record(Op{Client: id, Kind: opKeyRevoke, Node: mb.name, Subject: k.name, KeyID: k.id, Call: call,
				Return: r.hist.now(), Outcome: httpOutcome(code, err), Detail: detail(code, raw, err)})
			if op.Outcome == outOK {
				ls.mu.Lock()
				k.revoked = true
				ls.recentRev = append(ls.recentRev, k)
				if len(ls.recentRev) > 8 {
					ls.recentRev = ls.recentRev[1:]
				}
				ls.mu.Unlock()
			}
		default:
			ls.mu.Lock()
			var k *keyRec
			if len(ls.recentRev) > 0 && rng.IntN(2) == 0 {
				k = ls.recentRev[rng.IntN(len(ls.recentRev))]
			} else if len(live) > 0 {
				k = live[rng.IntN(len(live))]
			}
			ls.mu.Unlock()
			if k == nil {
				continue
			}
			src := net.IPv4(127, 0, 1, byte(1+rng.IntN(250)))
			call := r.hist.now()
			err := r.login(ctx, mb, k.secret, "myapp_workspace", src)
			out, det := loginOutcome(err)
			r.hist.record(Op{Client: id, Kind: opKeyLogin, Node: mb.name, Subject: k.name, KeyID: k.id, Call: call,
				Return: r.hist.now(), Outcome: out, Detail: det})
		}
	}
}

// loginOutcome classifies a login's result.
func loginOutcome(err error) (string, string) {
	if err == nil {
		return outAccepted, ""
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "28P01":
			return outRejected, pe.Code + " " + pe.Message
		case "53300":
			if strings.Contains(pe.Message, "rate-limited") {
				return outBanned, pe.Code + " " + pe.Message
			}
		}
		return outUnknown, pe.Code + " " + pe.Message
	}
	return outUnknown, err.Error()
}

// connConfig is a pgx config for a login to mb's wire address as the run's
// project, from source IP src (nil: the kernel's choice, 127.0.0.1).
func (r *runner) connConfig(mb *member, password, database string, src net.IP) (*pgx.ConnConfig, error) {
	u := url.URL{Scheme: "postgresql", User: url.UserPassword(r.projectID, password), Host: mb.wire, Path: "/" + database,
		RawQuery: "sslmode=require&connect_timeout=5"}
	cfg, err := pgx.ParseConfig(u.String())
	if err != nil {
		return nil, err
	}
	if src != nil {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 5 * time.Second}
		cfg.DialFunc = d.DialContext
	}
	return cfg, nil
}

// login connects and disconnects at once.
func (r *runner) login(ctx context.Context, mb *member, password, database string, src net.IP) error {
	cfg, err := r.connConfig(mb, password, database, src)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		return err
	}
	conn.Close(cctx)
	return nil
}

// tenantClient creates, gets and deletes tenants named churn0..churn3.
func (ls *loadState) tenantClient(ctx context.Context, id int, rng *rand.Rand) {
	r := ls.r
	for sleepCtx(ctx, jitter(rng, 100*time.Millisecond, 400*time.Millisecond)) {
		mb := r.c.members[rng.IntN(len(r.c.members))]
		name := fmt.Sprintf("churn%d", rng.IntN(4))
		call := r.hist.now()
		var op Op
		switch p := rng.Float64(); {
		case p < 0.45:
			code, raw, err := r.c.callTimeout(context.Background(), mb, "POST", "/v1/tenants", r.proxyPW,
				map[string]string{"name": name, "blueprint": "myapp"}, 40*time.Second)
			op = Op{Kind: opTenantCreate, Outcome: httpOutcome(code, err), Detail: detail(code, raw, err)}
			if code == 409 && !strings.Contains(string(raw), "already exists") {
				op.Outcome = outUnknown // created, then deleted while provisioning
			}
			if code == 502 {
				op.Outcome = outUnknown // created; provisioning failed
			}
		case p < 0.85:
			code, raw, err := r.c.call(context.Background(), mb, "DELETE", "/v1/tenants/"+name, r.proxyPW, nil)
			op = Op{Kind: opTenantDelete, Outcome: httpOutcome(code, err), Detail: detail(code, raw, err)}
		default:
			code, raw, err := r.c.call(context.Background(), mb, "GET", "/v1/tenants/"+name, r.proxyPW, nil)
			op = Op{Kind: opTenantGet, Outcome: httpOutcome(code, err), Detail: detail(code, raw, err)}
		}
		op.Client, op.Node, op.Subject, op.Call, op.Return = id, mb.name, name, call, r.hist.now()
		r.hist.record(op)
	}
}

// insertClient logs in to a stable tenant on a random node and inserts rows
// with unique ids; it reconnects after a few rows or any error.
func (ls *loadState) insertClient(ctx context.Context, id int, rng *rand.Rand) {
	r := ls.r
	for ctx.Err() == nil {
		mb := r.c.members[rng.IntN(len(r.c.members))]
		st := r.stable[rng.IntN(len(r.stable))]
		cfg, err := r.connConfig(mb, st.key, "myapp__"+st.name, nil)
		if err != nil {
			return
		}
		call := r.hist.now()
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		conn, err := pgx.ConnectConfig(cctx, cfg)
		cancel()
		out, det := loginOutcome(err)
		r.hist.record(Op{Client: id, Kind: opKeyLogin, Node: mb.name, Subject: "tenant-" + st.name, Call: call,
			Return: r.hist.now(), Outcome: out, Detail: det})
		if err != nil {
			sleepCtx(ctx, jitter(rng, 50*time.Millisecond, 300*time.Millisecond))
			continue
		}
		for n := 1 + rng.IntN(30); n > 0 && ctx.Err() == nil; n-- {
			row := fmt.Sprintf("w%d-%d", id, ls.nextSeq())
			call := r.hist.now()
			qctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := conn.Exec(qctx, "INSERT INTO items (id, tenant, node) VALUES ($1, $2, $3)", row, st.name, mb.name)
			cancel()
			op := Op{Client: id, Kind: opInsert, Node: mb.name, Subject: st.name + "/" + row, Call: call, Return: r.hist.now(), Outcome: outOK}
			if err != nil {
				op.Outcome, op.Detail = outUnknown, err.Error()
			}
			r.hist.record(op)
			if err != nil {
				break
			}
			sleepCtx(ctx, jitter(rng, 5*time.Millisecond, 40*time.Millisecond))
		}
		cctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
		conn.Close(cctx)
		cancel()
	}
}

// attacker fails logins in bursts of 12 from 127.0.0.2, .3, … (a new IP each
// burst), past the default threshold of 10 failures in 60 s, then tries
// once more on each node a moment later, when the ban should be in force
// (recorded as banned, or as fail when it was not: under faults the
// failures of a node cut off from the leader may not reach the FSM, so
// this is reported, not checked).
func (ls *loadState) attacker(ctx context.Context, id int, rng *rand.Rand) {
	r := ls.r
	for burst := 0; sleepCtx(ctx, jitter(rng, 3*time.Second, 8*time.Second)); burst++ {
		ip := net.IPv4(127, 0, 0, byte(2+burst%200))
		for i := range 12 + len(r.c.members) {
			if ctx.Err() != nil {
				return
			}
			mb := r.c.members[rng.IntN(len(r.c.members))]
			if i == 12 {
				sleepCtx(ctx, 1500*time.Millisecond)
			}
			if i >= 12 {
				mb = r.c.members[i-12]
			}
			call := r.hist.now()
			err := r.login(ctx, mb, "sk_wrong_password_000000000000000000000000", "myapp_workspace", ip)
			out, det := loginOutcome(err)
			if out == outRejected || out == outBanned {
				out = map[string]string{outRejected: outFail, outBanned: outBanned}[out]
			}
			r.hist.record(Op{Client: id, Kind: opAttack, Node: mb.name, Subject: ip.String(), Call: call,
				Return: r.hist.now(), Outcome: out, Detail: det})
		}
	}
}
