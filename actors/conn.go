package actors

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"maps"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/cockroachdb/errors"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"tdb/actors/backend"
	"tdb/fsm"
	"tdb/wire"
	"tdb/wire/scram"
)

// clientConn is the actor for one client connection: startup, auth, backend
// login, then the relay. While the event loop relays the session, no
// goroutine of the connection is left (the stack that TLS and login grew is
// freed); what the connection holds is released by done, in reverse order
// of onDone, by whichever goroutine ends it.
type clientConn struct {
	proxy   *Proxy
	raw     net.Conn
	cleanup []func()
}

// onDone registers f to run when the connection ends.
func (c *clientConn) onDone(f func()) { c.cleanup = append(c.cleanup, f) }

// done runs what onDone registered, last first.
func (c *clientConn) done() {
	for i := len(c.cleanup) - 1; i >= 0; i-- {
		c.cleanup[i]()
	}
	c.cleanup = nil
}

// run serves the connection: login, then the relay, which ends the
// connection when the session is over.
func (c *clientConn) run(ctx context.Context) {
	sess, adm := c.serve(ctx)
	if sess == nil {
		c.done()
		return
	}
	adm.relay(ctx, sess, c.done)
}

// login is what authentication and routing decided for a connection.
type login struct {
	projectID string
	database  string // wire database name
	key       fsm.Key
	target    fsm.Database
	backend   fsm.Backend
	workspace fsm.Workspace
	tenant    string
}

// identity is what a session keeps of its login: names, not copies of the
// key, database, backend and workspace records (an idle session is small).
type identity struct {
	projectID, database string // the wire database name
	keyID, role         string
	kind                string // of the database: workspace or tenant
	workspace, mode     string
	tenant              string
}

func (lg *login) identity() identity {
	return identity{
		projectID: lg.projectID, database: lg.database,
		keyID: lg.key.ID, role: lg.key.Role,
		kind:      lg.target.Kind,
		workspace: lg.workspace.Name, mode: lg.workspace.Mode,
		tenant: lg.tenant,
	}
}

// serve runs startup, authentication and the backend login. It returns the
// session ready to relay, or nil when the connection is to end (refused,
// failed, or a CancelRequest served).
func (c *clientConn) serve(ctx context.Context) (*session, *admission) {
	p := c.proxy
	adm := p.admitConn(c.raw) // PROXY header, IP ban, per-IP limit (admit.go)
	if adm == nil {
		return nil, nil
	}
	c.onDone(adm.done)
	res, err := wire.Startup(ctx, adm.conn, wire.StartupConfig{
		TLS:        p.cfg.TLS,
		RequireTLS: p.cfg.RequireTLS,
		AllowPlaintext: func(addr net.Addr) bool {
			return p.cfg.AllowLoopbackPlaintext && isLoopback(addr)
		},
		Timeout: p.cfg.StartupTimeout,
	})
	if err != nil {
		if _, ok := wire.AsPGError(err); ok && res != nil && res.Conn != nil {
			_ = wire.WriteError(res.Conn, err)
		}
		return nil, nil
	}
	if res.Cancel != nil {
		cctx, cancel := context.WithTimeout(ctx, p.cfg.DialTimeout)
		defer cancel()
		p.cancelRequest(cctx, res.Cancel.ProcessID, res.Cancel.SecretKey)
		return nil, nil
	}
	if res.TLS != nil {
		p.cfg.Policy.metrics().TLSSession(res.TLSRecords)
	}
	conn := res.Conn
	_ = conn.SetDeadline(time.Now().Add(p.cfg.StartupTimeout))
	if err := adm.rejection(); err != nil {
		_ = wire.WriteError(conn, err)
		return nil, nil
	}
	if err := p.admit(); err != nil {
		_ = wire.WriteError(conn, err)
		return nil, nil
	}
	lg, err := c.authenticate(res, adm.bannedNow)
	if err != nil {
		adm.authFailed(err)
		if _, ok := wire.AsPGError(err); ok {
			_ = wire.WriteError(conn, err)
		} // else the client left (or sent Terminate): nothing to tell it
		return nil, nil
	}
	if err := StartupGuard(res.Params); err != nil {
		_ = wire.WriteError(conn, err)
		return nil, nil
	}
	if err := adm.admitDatabase(lg); err != nil {
		_ = wire.WriteError(conn, err)
		return nil, nil
	}
	sess, err := c.connectBackend(ctx, lg, res.Params)
	if err != nil {
		p.cfg.Logf("proxy: %s -> %s: %v", lg.key.ID, lg.database, err)
		_ = wire.WriteError(conn, err)
		return nil, nil
	}
	_ = conn.SetDeadline(time.Time{})
	sess.client, sess.raw = conn, conn
	sess.active.Store(time.Now().UnixNano())
	sess.key = p.register(sess)
	c.onDone(func() { p.unregister(sess.key) })
	// A revocation applied since the key was checked, before the session
	// was registered for endRevoked to see.
	live := true
	p.cfg.FSM.View(func(st *fsm.State) { live = keyLive(st, lg.projectID, lg.key.ID) })
	if !live {
		if sess.bc != nil {
			sess.bc.Conn.Close()
		}
		_ = wire.WriteError(conn, wire.Fatalf(wire.CodeInvalidPassword, "password authentication failed for user \"%s\"", lg.projectID))
		return nil, nil
	}
	if err := sess.greet(); err != nil {
		if sess.bc != nil {
			sess.bc.Conn.Close()
		}
		return nil, nil
	}
	return sess, adm
}

// authenticate runs SCRAM against the project's live keys, then resolves
// the database and checks the key's scope.
func (c *clientConn) authenticate(res *wire.StartupResult, check func() error) (*login, error) {
	p := c.proxy
	user := res.Params["user"]
	db := res.Params["database"]
	if db == "" {
		db = user
	}
	salt, iterations, keys, candidates := p.projectKeys(user)
	if salt == nil && p.catchUp(context.Background()) {
		// A project created through another node a moment ago.
		salt, iterations, keys, candidates = p.projectKeys(user)
	}
	var refresh func() []scram.Verifier
	if salt != nil {
		refresh = func() []scram.Verifier { // a key created a moment ago
			if !p.catchUp(context.Background()) {
				return nil
			}
			_, _, keys, candidates = p.projectKeys(user)
			return candidates
		}
	}
	if salt == nil {
		// Unknown project: the same exchange with a stable fake salt and no
		// candidates, ending in the same error as a wrong password.
		salt = scram.FakeSalt(p.cfg.FakeSecret, user)
	}
	matched, err := wire.AuthenticateSCRAMChecked(res.Backend, user, salt, iterations, candidates, res.ChannelBinding, refresh, check)
	if err != nil {
		return nil, err
	}
	lg := &login{projectID: user, database: db, key: keys[matched]}

	if !p.resolvable(user, db) {
		p.catchUp(context.Background()) // a tenant created a moment ago
	}
	var rerr error
	p.cfg.FSM.View(func(s *fsm.State) {
		ws, tenant, ok := fsm.ParseDatabase(db)
		proj := s.Project(user)
		// The key as it is now: the exchange checked the proof against the
		// keys as they were when it began, and the client may take its
		// time to send it. A key revoked meanwhile is refused as a wrong
		// one is, and one that lost a tenant (deleted, the name perhaps
		// taken again since) reaches only what it reaches now.
		var k *fsm.Key
		if proj != nil {
			k = proj.Keys[lg.key.ID]
		}
		if k == nil || !k.Live() {
			rerr = wire.Fatalf(wire.CodeInvalidPassword, "password authentication failed for user \"%s\"", user)
			return
		}
		lg.key = *k
		var w *fsm.Workspace
		if ok && proj != nil {
			w = proj.Workspaces[ws]
		}
		if w != nil && w.DatabaseType != fsm.TypePostgreSQL {
			rerr = CheckScope(&lg.key, fsm.Target{Workspace: w})
			return
		}
		t, found := s.Resolve(user, db)
		if !found || t.Database == nil {
			rerr = wire.Fatalf("3D000", "database %q does not exist", db)
			return
		}
		if rerr = CheckScope(&lg.key, t); rerr != nil {
			return
		}
		switch t.Database.Status {
		case fsm.StatusReady:
		case fsm.StatusProvisioning:
			rerr = wire.Fatalf("57P03", "database %q is still being provisioned, try again shortly", db)
			return
		default:
			rerr = wire.Fatalf("57P03", "database %q is not available (status %s)", db, t.Database.Status)
			return
		}
		b := s.Backends[t.Database.Backend]
		if b == nil {
			rerr = wire.Fatalf("57P03", "database %q has no backend", db)
			return
		}
		lg.target, lg.backend, lg.workspace, lg.tenant = *t.Database, *b, *t.Workspace, tenant
	})
	if rerr != nil {
		return nil, rerr
	}
	return lg, nil
}

// startupSkip are client startup parameters not handed to the backend.
var startupSkip = map[string]bool{"user": true, "database": true, "replication": true}

// connectBackend gets a backend session logged in as the native role for the
// key's role: a reset one from the pool when one with the same startup
// parameters is idle, else a new login.
func (c *clientConn) connectBackend(ctx context.Context, lg *login, params map[string]string) (*session, error) {
	key := PoolKey{Backend: lg.backend.Name, Database: lg.target.Name, Role: lg.key.Role, Params: ParamsKey(params)}
	// dial is kept by a lazily attached session until its first message:
	// it holds only what it needs, and parses the backend's URL when called.
	backendName, backendURL, database := lg.backend.Name, lg.backend.URL, lg.database
	user, password, dbName := backend.RoleName(lg.target.Name, lg.key.Role), lg.target.Passwords.For(lg.key.Role), lg.target.Name
	runtime := map[string]string{}
	for k, v := range params {
		if !startupSkip[k] {
			runtime[k] = v
		}
	}
	p := c.proxy
	dial := func(ctx context.Context) (*BackendConn, error) {
		cfg, err := pgconn.ParseConfig(backendURL)
		if err != nil {
			return nil, wire.Fatalf("XX000", "backend %s is misconfigured", backendName)
		}
		cfg.User, cfg.Password, cfg.Database = user, password, dbName
		cfg.ConnectTimeout = p.cfg.DialTimeout
		cfg.RuntimeParams = runtime
		cfg.OnNotice = nil
		cfg.OnNotification = nil
		netw, addr := "tcp", net.JoinHostPort(cfg.Host, itoa(int(cfg.Port)))
		if strings.HasPrefix(cfg.Host, "/") {
			netw, addr = "unix", cfg.Host+"/.s.PGSQL."+itoa(int(cfg.Port))
		}
		dctx, cancel := context.WithTimeout(ctx, p.cfg.DialTimeout)
		defer cancel()
		pc, err := pgconn.ConnectConfig(dctx, cfg)
		if err != nil {
			// The details (role names, backend address) stay in the log.
			p.cfg.Logf("proxy: dial backend %s for %s: %v", backendName, database, err)
			var pge *pgconn.PgError
			if errors.As(err, &pge) {
				// The backend's own refusal (an invalid startup parameter, too
				// many connections): its SQLSTATE, with its text only when it
				// is about the client's parameters.
				if pge.Code == "22023" || pge.Code == "42704" {
					return nil, wire.Fatalf(pge.Code, "%s", pge.Message)
				}
				return nil, wire.Fatalf(pge.Code, "the database backend refused the connection (SQLSTATE %s)", pge.Code)
			}
			return nil, wire.Fatalf("08006", "could not connect to the database backend")
		}
		bc, err := Hijacked(dctx, key, pc, netw, addr)
		if err != nil {
			pc.Close(ctx)
			return nil, wire.Fatalf("08006", "could not take over the backend connection: %v", err)
		}
		if refusal := bc.parserSettingRefusal(); refusal != nil {
			// A default of the role (ALTER ROLE … SET, which a function can
			// run) would have the backend read text as the proxy does not.
			p.cfg.Logf("proxy: backend session of %s refused: %s", database, refusal.Message)
			bc.Conn.Close()
			return nil, refusal
		}
		return bc, nil
	}
	s := &session{
		proxy:    c.proxy,
		login:    lg.identity(),
		txStatus: 'I',
		nonce:    randomHex(6),
		track:    newTracker(),
	}
	if c.proxy.cfg.LazyAttach {
		// Lazy attach: with no idle session to take, greet the client with
		// the values the last session of this key reported and log in to
		// the backend at its first message.
		if bc := c.proxy.pool.TryGet(key); bc != nil {
			s.useBackend(bc)
			return s, nil
		}
		if known := c.proxy.pool.Known(key); known != nil {
			s.params = known
			s.pid = lazyPID()
			s.attach = func(ctx context.Context) (*BackendConn, error) {
				bc, _, err := c.proxy.pool.Get(ctx, key, dial)
				return bc, err
			}
			return s, nil
		}
	}
	bc, _, err := c.proxy.pool.Get(ctx, key, dial)
	if err != nil {
		return nil, err
	}
	s.useBackend(bc)
	return s, nil
}

// lazyPID is the process id a lazily attached session announces in its
// BackendKeyData before it has a backend: random, positive, so cancel keys
// stay unique; CancelRequests reach whichever backend the session holds.
func lazyPID() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint32(b[:])&0x7fffffff | 1
}

// greet finishes the client's startup: the backend's real ParameterStatus
// values, our own BackendKeyData, ReadyForQuery.
func (s *session) greet() error {
	buf, err := appendParameterStatus(nil, s.params, nil)
	if err != nil {
		return err
	}
	if buf, err = (&pgproto3.BackendKeyData{ProcessID: s.key.pid, SecretKey: binary.BigEndian.AppendUint32(nil, s.key.secret)}).Encode(buf); err != nil {
		return err
	}
	if buf, err = (&pgproto3.ReadyForQuery{TxStatus: 'I'}).Encode(buf); err != nil {
		return err
	}
	_ = s.client.SetWriteDeadline(time.Now().Add(30 * time.Second))
	_, err = s.client.Write(buf)
	_ = s.client.SetWriteDeadline(time.Time{})
	return err
}

// appendParameterStatus appends a ParameterStatus message for each of
// params, by name, except those known already says the client has.
func appendParameterStatus(buf []byte, params, known map[string]string) ([]byte, error) {
	for _, k := range slices.Sorted(maps.Keys(params)) {
		if v, ok := known[k]; ok && v == params[k] {
			continue
		}
		var err error
		if buf, err = (&pgproto3.ParameterStatus{Name: k, Value: params[k]}).Encode(buf); err != nil {
			return nil, err
		}
	}
	return buf, nil
}

func isLoopback(a net.Addr) bool {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.IsLoopback()
	}
	_, isUnix := a.(*net.UnixAddr)
	return isUnix
}
