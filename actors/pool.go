package actors

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"maps"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	cerrors "github.com/cockroachdb/errors"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"

	"tdb/wire"
	"tdb/wire/evloop"
)

// PoolKey identifies interchangeable backend sessions: same server, same
// physical database, same native role, and the same startup parameters
// (canonically encoded). A reset session is then exactly what a fresh login
// with those parameters would give, with no SET round trip on reuse.
type PoolKey struct {
	Backend  string
	Database string
	Role     string
	Params   string
}

// ParamsKey encodes client startup parameters for a PoolKey, in a stable
// order; user, database and replication are not session settings.
func ParamsKey(params map[string]string) string { return encodeParams(params, startupSkip) }

// encodeParams encodes params but those named in skip, in a stable order:
// equal encodings, equal maps.
func encodeParams(params map[string]string, skip map[string]bool) string {
	names := make([]string, 0, len(params))
	for k := range params {
		if !skip[k] {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	var b strings.Builder
	for _, k := range names {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(params[k])
		b.WriteByte(0)
	}
	return b.String()
}

// BackendConn is one logged-in backend session. A client session owns it
// while connected; between clients it waits, reset, in the Pool.
type BackendConn struct {
	Key    PoolKey
	Conn   net.Conn
	Reader *wire.FrameReader // kept with the connection so no buffered byte is lost between owners
	PID    uint32
	Secret []byte
	Net    string // "tcp" or "unix", for cancel requests
	Addr   string
	// Params are the ParameterStatus values as of now. Sessions that report
	// the same values share one map (see shareParams), so it is copied
	// before a change (paramsShared).
	Params       map[string]string
	paramsShared bool

	idleSince time.Time
}

// Pool keeps reset backend sessions for reuse, keyed by PoolKey, in session
// mode: a client holds one for its whole session. Sessions idle longer than
// IdleTimeout are closed by Reap.
type Pool struct {
	// IdleTimeout is server_idle_timeout [1800 s].
	IdleTimeout time.Duration
	// MaxIdlePerKey bounds the idle sessions kept per key [64].
	MaxIdlePerKey int
	// MaxIdlePerDatabase bounds the idle sessions kept per physical
	// database, whatever their keys [64]: a client that logs in with new
	// startup parameters each time (application_name) makes a new key
	// each time, and would otherwise leave a backend session parked for
	// each, counted by no connection limit, until the backend server has
	// none left for other databases. The oldest goes first.
	MaxIdlePerDatabase int

	mu     sync.Mutex
	idle   map[PoolKey][]*BackendConn
	perDB  map[[2]string]int             // idle sessions by backend and physical database
	known  map[PoolKey]map[string]string // the last ParameterStatus values a session of the key reported
	closed bool
}

// maxKnownKeys bounds the remembered ParameterStatus sets (distinct startup
// parameters make distinct keys).
const maxKnownKeys = 4096

// Get returns an idle session for key that is still alive, or logs in a new
// one with dial. reused tells which.
func (p *Pool) Get(ctx context.Context, key PoolKey, dial func(context.Context) (*BackendConn, error)) (bc *BackendConn, reused bool, err error) {
	if bc = p.TryGet(key); bc != nil {
		return bc, true, nil
	}
	bc, err = dial(ctx)
	if err == nil {
		p.remember(bc)
	}
	return bc, false, err
}

// TryGet returns an idle session for key that is still alive, or nil.
func (p *Pool) TryGet(key PoolKey) *BackendConn {
	for {
		bc := p.takeIdle(key)
		if bc == nil || alive(bc) {
			return bc
		}
		bc.Conn.Close()
	}
}

// Known returns the ParameterStatus values the last session of key
// reported, or nil when no session of the key has been seen. The map is
// shared and must not be modified: remember replaces it, never changes it.
func (p *Pool) Known(key PoolKey) map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.known[key]
}

func (p *Pool) remember(bc *BackendConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.known == nil {
		p.known = map[PoolKey]map[string]string{}
	}
	if _, ok := p.known[bc.Key]; !ok && len(p.known) >= maxKnownKeys {
		for k := range p.known { // forget one at random
			delete(p.known, k)
			break
		}
	}
	p.known[bc.Key] = maps.Clone(bc.Params)
}

func (p *Pool) takeIdle(key PoolKey) *BackendConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.idle[key]
	if len(list) == 0 {
		return nil
	}
	bc := list[len(list)-1] // most recently used: warm caches, and the oldest age out
	p.idle[key] = list[:len(list)-1]
	p.counted(key, -1)
	return bc
}

// Put parks a session that the caller has reset (see Reset) for the next
// client. A closed pool, or a full key, closes it instead.
func (p *Pool) Put(bc *BackendConn) {
	perKey, perDB := p.MaxIdlePerKey, p.MaxIdlePerDatabase
	if perKey <= 0 {
		perKey = 64
	}
	if perDB <= 0 {
		perDB = 64
	}
	p.mu.Lock()
	if p.closed || len(p.idle[bc.Key]) >= perKey {
		p.mu.Unlock()
		bc.Conn.Close()
		return
	}
	if p.idle == nil {
		p.idle = map[PoolKey][]*BackendConn{}
	}
	bc.idleSince = time.Now()
	bc.Reader.Release() // an idle session keeps no read buffer
	var evicted *BackendConn
	if p.perDB[dbOf(bc.Key)] >= perDB {
		evicted = p.evictOldest(bc.Key)
	}
	p.idle[bc.Key] = append(p.idle[bc.Key], bc)
	p.counted(bc.Key, 1)
	p.mu.Unlock()
	if evicted != nil {
		evicted.Conn.Close()
	}
	p.remember(bc)
}

// dbOf names the physical database of a key.
func dbOf(key PoolKey) [2]string { return [2]string{key.Backend, key.Database} }

// counted adds n to the idle sessions counted for key's database (under p.mu).
func (p *Pool) counted(key PoolKey, n int) {
	if p.perDB == nil {
		p.perDB = map[[2]string]int{}
	}
	db := dbOf(key)
	if p.perDB[db] += n; p.perDB[db] <= 0 {
		delete(p.perDB, db)
	}
}

// evictOldest takes out the session of key's database that has been idle
// longest, for the caller to close (under p.mu).
func (p *Pool) evictOldest(key PoolKey) *BackendConn {
	var oldest PoolKey
	found := false
	for k, list := range p.idle {
		// Each list is in the order its sessions were parked.
		if dbOf(k) == dbOf(key) && len(list) > 0 && (!found || list[0].idleSince.Before(p.idle[oldest][0].idleSince)) {
			oldest, found = k, true
		}
	}
	if !found {
		return nil
	}
	list := p.idle[oldest]
	bc := list[0]
	if len(list) == 1 {
		delete(p.idle, oldest)
	} else {
		p.idle[oldest] = list[1:]
	}
	p.counted(oldest, -1)
	return bc
}

// Reap closes sessions idle for longer than IdleTimeout.
func (p *Pool) Reap(now time.Time) int {
	timeout := p.IdleTimeout
	if timeout <= 0 {
		timeout = 1800 * time.Second
	}
	var stale []*BackendConn
	p.mu.Lock()
	for key, list := range p.idle {
		keep := list[:0]
		for _, bc := range list {
			if now.Sub(bc.idleSince) > timeout {
				stale = append(stale, bc)
				p.counted(key, -1)
			} else {
				keep = append(keep, bc)
			}
		}
		if len(keep) == 0 {
			delete(p.idle, key)
		} else {
			p.idle[key] = keep
		}
	}
	p.mu.Unlock()
	for _, bc := range stale {
		bc.Conn.Close()
	}
	return len(stale)
}

// Databases lists the physical databases, by backend, that the pool holds
// idle sessions or remembered parameters of.
func (p *Pool) Databases() [][2]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := map[[2]string]bool{}
	for k := range p.idle {
		seen[dbOf(k)] = true
	}
	for k := range p.known {
		seen[dbOf(k)] = true
	}
	out := make([][2]string, 0, len(seen))
	for db := range seen {
		out = append(out, db)
	}
	return out
}

// Forget closes the idle sessions of the physical databases in gone and
// forgets what their keys reported: a database deleted (its backend
// sessions ended by the drop) is never asked for again, so nothing else
// would take them out before IdleTimeout. It returns how many it closed.
func (p *Pool) Forget(gone map[[2]string]bool) int {
	if len(gone) == 0 {
		return 0
	}
	var stale []*BackendConn
	p.mu.Lock()
	for key, list := range p.idle {
		if gone[dbOf(key)] {
			stale = append(stale, list...)
			p.counted(key, -len(list))
			delete(p.idle, key)
		}
	}
	for key := range p.known {
		if gone[dbOf(key)] {
			delete(p.known, key)
		}
	}
	p.mu.Unlock()
	for _, bc := range stale {
		bc.Conn.Close()
	}
	return len(stale)
}

// IdleCount counts idle sessions, for metrics.
func (p *Pool) IdleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.idle {
		n += len(l)
	}
	return n
}

// Close closes every idle session; later Puts close theirs.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle, p.perDB = nil, nil
	p.mu.Unlock()
	for _, list := range idle {
		for _, bc := range list {
			bc.Conn.Close()
		}
	}
}

// alive reports whether an idle session's socket is still open and quiet:
// a non-blocking peek finds neither data (a server that spoke while idle, e.g.
// a termination notice) nor end of file. Connections that give no access to
// their socket (TLS) are assumed alive; their first use then fails cleanly.
func alive(bc *BackendConn) bool {
	if bc.Reader.Buffered() > 0 {
		return false
	}
	sc, ok := bc.Conn.(syscall.Conn)
	if !ok {
		return true
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var perr error
	var b [1]byte
	if err := raw.Read(func(fd uintptr) bool {
		_, _, perr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true
	}); err != nil {
		return false
	}
	return perr != nil && (errors.Is(perr, syscall.EAGAIN) || errors.Is(perr, syscall.EWOULDBLOCK))
}

// Hijacked turns a freshly logged-in pgconn into a BackendConn. pgconn may
// have started its background reader during the login (a write that took
// more than 15 ms, e.g. on a loaded machine); a read it still has pending
// would swallow the backend's first reply to the relay, so SyncConn stops it
// and drains pgconn's buffers before the connection changes hands.
func Hijacked(ctx context.Context, key PoolKey, pc *pgconn.PgConn, netw, addr string) (*BackendConn, error) {
	if err := pc.SyncConn(ctx); err != nil {
		return nil, cerrors.Wrap(err, "synchronise backend connection")
	}
	hj, err := pc.Hijack()
	if err != nil {
		return nil, cerrors.Wrap(err, "take over backend connection")
	}
	conn := evloop.NewSocket(hj.Conn) // so the event loop can relay it
	return &BackendConn{
		Key: key, Conn: conn, Reader: wire.NewFrameReader(conn, 0),
		PID: hj.PID, Secret: hj.SecretKey, Net: netw, Addr: addr,
		Params: shareParams(hj.ParameterStatuses), paramsShared: true,
	}, nil
}

// sharedParams holds one map of each distinct set of ParameterStatus values
// backend sessions reported at login. Sessions of a role report the same
// values, so thousands of pooled or idle ones need not keep a map each
// (about 1 KiB). At most maxSharedParams sets are kept: a new one replaces
// one at random (sessions holding it keep it, and still copy it before a
// change).
var sharedParams struct {
	mu   sync.Mutex
	sets map[string]map[string]string
}

const maxSharedParams = 256

// shareParams returns the shared map equal to p; p itself becomes the
// shared one when it is new.
func shareParams(p map[string]string) map[string]string {
	key := encodeParams(p, nil)
	sharedParams.mu.Lock()
	defer sharedParams.mu.Unlock()
	if m, ok := sharedParams.sets[key]; ok {
		return m
	}
	if sharedParams.sets == nil {
		sharedParams.sets = map[string]map[string]string{}
	}
	if len(sharedParams.sets) >= maxSharedParams {
		for k := range sharedParams.sets { // forget one at random
			delete(sharedParams.sets, k)
			break
		}
	}
	sharedParams.sets[key] = p
	return p
}

// Exec runs one simple-protocol query on an idle backend session and waits
// for ReadyForQuery, recording ParameterStatus changes. It fails on an
// ErrorResponse, or when the session is not idle afterwards.
func (bc *BackendConn) Exec(sql string, timeout time.Duration) error {
	return bc.execAll(timeout, sql)
}

// execAll is Exec of several queries sent in one write: one round trip. The
// first error is the answer; every query's ReadyForQuery is read.
func (bc *BackendConn) execAll(timeout time.Duration, sqls ...string) error {
	var msg []byte
	for _, sql := range sqls {
		msg = wire.AppendQuery(msg, sql)
	}
	return bc.exchange(timeout, msg, len(sqls), sqls[len(sqls)-1])
}

// exchange sends msg, batches that end in n ReadyForQuery messages (Query
// or Sync), in one write and reads every answer, recording ParameterStatus
// changes; last names the last batch for the error. The first error is the
// answer; the session must be idle after the last batch.
func (bc *BackendConn) exchange(timeout time.Duration, msg []byte, n int, last string) error {
	_ = bc.Conn.SetDeadline(time.Now().Add(timeout))
	defer bc.Conn.SetDeadline(time.Time{})
	if _, err := bc.Conn.Write(msg); err != nil {
		return cerrors.Wrap(err, "send to backend")
	}
	var qerr error
	for {
		typ, body, err := bc.Reader.Next()
		if err != nil {
			return cerrors.Wrap(err, "read from backend")
		}
		switch typ {
		case 'S':
			if name, value, ok := parameterStatus(body); ok {
				if bc.paramsShared {
					bc.Params, bc.paramsShared = maps.Clone(bc.Params), false
				}
				bc.Params[name] = value
			}
		case 'E':
			if qerr == nil {
				_, code, msg, _ := wire.ParseErrorFields(body)
				qerr = wire.NewError("ERROR", code, "%s", msg)
			}
		case 'Z':
			if n--; n > 0 {
				continue
			}
			status, _ := wire.ParseReadyForQuery(body)
			if qerr != nil {
				return qerr
			}
			if status != 'I' {
				return cerrors.Newf("backend session not idle after %q (status %c)", last, status)
			}
			return nil
		}
	}
}

// parserSettingRefusal is the FATAL for a backend session whose reported
// settings would have it read statement text differently from the proxy's
// parser (a role default can do that); nil when they would not.
func (bc *BackendConn) parserSettingRefusal() *wire.PGError {
	for name, value := range bc.Params {
		if refusal := parserSettingRefusal(name, value); refusal != nil {
			return refusal
		}
	}
	return nil
}

// Reset returns a session to a clean state for the next client: no
// transaction, no prepared statements, portals, temp tables, advisory locks,
// listeners or changed settings. DISCARD ALL leaves random()'s seed as the
// last client set it (setseed), which would let it predict the next
// client's random() values: the seed is drawn anew. It is a bound
// parameter, never statement text: the sessions of the same role see this
// one's last statement in pg_stat_activity. DISCARD ALL comes last, so that
// is what they see, and its simple Query drops the unnamed statement.
func (bc *BackendConn) Reset(timeout time.Duration) error {
	if err := bc.exchange(timeout, resetMessage(randomSeed()), 2, "DISCARD ALL"); err != nil {
		return err
	}
	// DISCARD ALL goes back to the role's defaults, which may have changed.
	if refusal := bc.parserSettingRefusal(); refusal != nil {
		return refusal
	}
	return nil
}

// resetMessage is Reset's exchange: setseed(seed) in the extended protocol,
// its seed a parameter, then DISCARD ALL.
func resetMessage(seed string) []byte {
	msg, _ := (&pgproto3.Parse{Query: "SELECT pg_catalog.setseed($1)", ParameterOIDs: []uint32{pgtype.Float8OID}}).Encode(nil)
	msg, _ = (&pgproto3.Bind{Parameters: [][]byte{[]byte(seed)}}).Encode(msg)
	msg, _ = (&pgproto3.Execute{}).Encode(msg)
	msg, _ = (&pgproto3.Sync{}).Encode(msg)
	return wire.AppendQuery(msg, "DISCARD ALL")
}

// randomSeed is a setseed argument in [-1, 1] from the system's random source.
func randomSeed() string {
	var b [8]byte
	_, _ = crand.Read(b[:])
	v := float64(binary.BigEndian.Uint64(b[:])>>11)/(1<<53)*2 - 1
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// parameterStatus decodes a ParameterStatus body: name NUL value NUL.
func parameterStatus(body []byte) (name, value string, ok bool) {
	i := indexByte(body, 0)
	if i < 0 {
		return "", "", false
	}
	rest := body[i+1:]
	j := indexByte(rest, 0)
	if j < 0 {
		return "", "", false
	}
	return string(body[:i]), string(rest[:j]), true
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}
