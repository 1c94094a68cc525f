package node

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/errors"
	"github.com/hashicorp/raft"

	"tdb/fsm"
	"tdb/gossip"
	"tdb/httpapi"
)

// The internal API: node-to-node calls under /internal/ on each node's HTTP
// listener, authenticated with the cluster secret (Authorization: Bearer).
// httpapi's public routes are untouched; withInternal routes around them.

type applyRequest struct {
	Type    fsm.CommandType `json:"type"`
	Payload json.RawMessage `json:"payload"`
}

type applyResponse struct {
	Index uint64          `json:"index"`
	Value json.RawMessage `json:"value,omitempty"`
	Error *fsm.Error      `json:"error,omitempty"` // the command's business failure
}

type indexResponse struct {
	Index uint64 `json:"index"`
}

type cancelRequest struct {
	PID    uint32 `json:"pid"`
	Secret uint32 `json:"secret"`
}

type cancelResponse struct {
	Found bool `json:"found"`
}

type statusResponse struct {
	ID           string `json:"id"`
	Role         string `json:"role"`
	AppliedIndex uint64 `json:"applied_index"`
}

// internalError is the JSON error body of the internal API, and the error a
// caller gets from a non-2xx answer.
type internalError struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *internalError) Error() string { return e.Code + ": " + e.Message }

const codeNotLeader = "not_leader"

// codeOutcomeUnknown answers a forwarded command whose leader lost its
// place after appending it (httpapi.ErrOutcomeUnknown).
const codeOutcomeUnknown = "outcome_unknown"

// errNotSent marks a call that never reached the other node (the dial
// failed), so retrying it cannot apply anything twice.
var errNotSent = errors.New("request not sent")

// errNoAnswer marks a call that may have reached the other node but got no
// answer it could read (the connection broke, the wait timed out): what it
// asked for may have been done.
var errNoAnswer = errors.New("no answer")

// maxInternalBody bounds an internal request (a command with a large
// blueprint version fits).
const maxInternalBody = 64 << 20

// withInternal serves the internal API, /readyz, pprof and /metrics beside
// the public handler.
func (n *Node) withInternal(public http.Handler) http.Handler {
	mux := n.internalRoutes(n.internalAuth)
	mux.HandleFunc("GET /readyz", n.handleReady)
	n.withPprof(mux)
	mux.Handle("GET /metrics", n.pol.metrics.Handler())
	pub := n.catchUpFollower(public)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The public API goes straight to its router, which matches paths as
		// sent: the ServeMux would clean "nobody/../wayne" and redirect a
		// DELETE to wayne with a 307, which keeps the method.
		p := r.URL.Path
		internal := strings.HasPrefix(p, "/internal/") || p == "/readyz" || p == "/metrics" || strings.HasPrefix(p, "/debug/pprof/")
		if internal && path.Clean(p) == strings.TrimSuffix(p, "/") && serveRouted(mux, w, r) {
			return
		}
		// The public router's 404, as for any other path it has no route for.
		pub.ServeHTTP(w, r)
	})
}

// serveRouted serves r with mux when mux has a route for its path, and
// reports whether it did. For a path it routes other methods of, it
// answers a JSON 405 with Allow, where the ServeMux answers plain text:
// the errors of the HTTP API and of the internal calls are JSON {code,
// message}.
func serveRouted(mux *http.ServeMux, w http.ResponseWriter, r *http.Request) bool {
	if _, pattern := mux.Handler(r); pattern != "" {
		mux.ServeHTTP(w, r)
		return true
	}
	allow := allowedMethods(mux, r)
	if len(allow) == 0 {
		return false
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeInternal(w, http.StatusMethodNotAllowed, &internalError{Code: "method_not_allowed",
		Message: "method " + r.Method + " not allowed on " + r.URL.EscapedPath()})
	return true
}

// jsonRoutes is mux with JSON errors for what it has no route for (the
// internal server of the raft listener).
func jsonRoutes(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !serveRouted(mux, w, r) {
			writeInternal(w, http.StatusNotFound, &internalError{Code: "not_found", Message: "no internal call " + strconv.Quote(r.URL.EscapedPath())})
		}
	})
}

// allowedMethods lists the methods mux has a route for r's path with.
func allowedMethods(mux *http.ServeMux, r *http.Request) []string {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		if m == r.Method {
			continue
		}
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := mux.Handler(probe); pattern != "" {
			allow = append(allow, m)
		}
	}
	return allow
}

// catchUpFollower gives the public API read-your-writes across nodes: a
// follower first catches up with the leader (bounded) before it serves an
// authenticated request, so a key, project, workspace or tenant created
// through another node is seen here as soon as its create call has
// returned, and a revoked key is refused. Writes validate against local
// state before they are forwarded, so they need it as much as reads. When
// the catch-up fails, a read (GET, HEAD) is served from local state; any
// other request fails closed with 503, as a wire login does (admitLogin):
// it could be authenticated by a key whose revocation this node has not
// applied, and the query endpoint reaches tenant data without the leader,
// while a forwarded write would commit whatever the stale key asked for.
func (n *Node) catchUpFollower(public http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Also on a node that is (or thinks it is) the leader: a new one may
		// not have applied what the last one committed yet, and one that was
		// paused may not know it was replaced. catchUp confirms leadership
		// with a quorum there.
		if n.gossip != nil && r.Header.Get("Authorization") != "" {
			ctx, cancel := context.WithTimeout(r.Context(), n.cfg.Cluster.CatchUpTimeout)
			err := n.catchUp(ctx)
			cancel()
			if err != nil {
				n.logger.Printf("http: catch up with the leader: %v", err)
				if r.Method != http.MethodGet && r.Method != http.MethodHead {
					writeInternal(w, http.StatusServiceUnavailable, &internalError{Code: "unavailable",
						Message: "this node could not catch up with the cluster leader; try again shortly or try another node"})
					return
				}
			}
		}
		public.ServeHTTP(w, r)
	})
}

// internalRoutes serves the internal API, each call admitted by auth: the
// cluster secret as a bearer key on the public HTTP address, the TLS
// handshake (bounded) on the raft listener.
func (n *Node) internalRoutes(auth func(http.HandlerFunc) http.HandlerFunc) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /internal/apply", auth(n.handleApply))
	mux.HandleFunc("GET /internal/index", auth(n.handleIndex))
	mux.HandleFunc("POST /internal/cancel", auth(n.handleCancel))
	mux.HandleFunc("GET /internal/status", auth(n.handleStatus))
	mux.HandleFunc("GET /internal/hash", auth(n.handleHash))
	mux.HandleFunc("GET /internal/counts", auth(n.handleCounts))
	return mux
}

// bounded caps an internal call's body.
func (n *Node) bounded(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxInternalBody)
		h(w, r)
	}
}

// internalAuth admits the holders of the cluster secret. As with the
// public API's keys, a wrong secret counts toward the IP's ban and a banned
// IP is refused, so the secret cannot be guessed here without limit; an IP
// of a member is not refused, so that clients banned on a node's address
// (nodes and clients on one host) do not cut the nodes off each other.
func (n *Node) internalAuth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if n.secret == "" {
			writeInternal(w, http.StatusForbidden, &internalError{Code: "forbidden", Message: "internal API disabled: no cluster secret (set --cluster-secret or --admin-key)"})
			return
		}
		ip := n.ClientIP(r)
		if left, msg, banned := n.Banned(ip); banned && !n.memberIP(ip) {
			w.Header().Set("Retry-After", strconv.FormatInt(left, 10))
			writeInternal(w, http.StatusTooManyRequests, &internalError{Code: "rate_limited", Message: msg})
			return
		}
		got, sent := bearerKey(r)
		a, b := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(n.secret))
		if !sent || subtle.ConstantTimeCompare(a[:], b[:]) != 1 {
			if sent {
				n.AuthFailed(ip)
			}
			writeInternal(w, http.StatusUnauthorized, &internalError{Code: "unauthorized", Message: "bad cluster secret"})
			return
		}
		n.bounded(h)(w, r)
	}
}

func writeInternal(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// handleApply commits a command forwarded by a follower. It never forwards
// further: a node that is not the leader answers not_leader, which tells
// the caller nothing was appended and it may retry elsewhere.
func (n *Node) handleApply(w http.ResponseWriter, r *http.Request) {
	var req applyRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeInternal(w, http.StatusBadRequest, &internalError{Code: "bad_request", Message: "decode apply request: " + err.Error()})
		return
	}
	if _, err := fsm.Encode(req.Type, req.Payload); err != nil {
		writeInternal(w, http.StatusBadRequest, &internalError{Code: "bad_request", Message: err.Error()})
		return
	}
	if !n.rep.IsLeader() {
		writeInternal(w, http.StatusServiceUnavailable, &internalError{Code: codeNotLeader, Message: "not the raft leader"})
		return
	}
	if req.Type == fsm.CmdRecordAuthFailures {
		req.Payload = leaderTime(req.Payload)
	}
	v, index, err := n.rep.Apply(r.Context(), req.Type, req.Payload)
	var fe *fsm.Error
	switch {
	case err == nil:
		val, merr := json.Marshal(v)
		if merr != nil {
			val = nil
		}
		writeInternal(w, http.StatusOK, applyResponse{Index: index, Value: val})
	case errors.As(err, &fe):
		writeInternal(w, http.StatusOK, applyResponse{Index: index, Error: fe})
	case errors.Is(err, raft.ErrNotLeader):
		writeInternal(w, http.StatusServiceUnavailable, &internalError{Code: codeNotLeader, Message: err.Error()})
	case errors.Is(err, httpapi.ErrOutcomeUnknown):
		writeInternal(w, http.StatusServiceUnavailable, &internalError{Code: codeOutcomeUnknown, Message: err.Error()})
	default:
		writeInternal(w, http.StatusServiceUnavailable, &internalError{Code: "unavailable", Message: err.Error()})
	}
}

// leaderTime stamps a follower's batch of failed logins with the leader's
// clock. The ban table takes the latest batch time it has seen as its
// clock, and never turns it back (fsm/bans.go): one node whose clock ran a
// day ahead made every ban last a day, cluster-wide, and failures a day
// apart count in one window. The batch's ID still makes a batch proposed
// again count once.
func leaderTime(payload json.RawMessage) json.RawMessage {
	var c fsm.RecordAuthFailures
	if err := json.Unmarshal(payload, &c); err != nil {
		return payload
	}
	c.At = time.Now().UTC()
	raw, err := json.Marshal(&c)
	if err != nil {
		return payload
	}
	return raw
}

// handleIndex tells a follower how far it must apply to have seen every
// write acknowledged so far.
func (n *Node) handleIndex(w http.ResponseWriter, _ *http.Request) {
	index, err := n.readIndex()
	if err != nil {
		writeInternal(w, http.StatusServiceUnavailable, &internalError{Code: codeNotLeader, Message: err.Error()})
		return
	}
	writeInternal(w, http.StatusOK, indexResponse{Index: index})
}

// readIndex is raft's read index: once a quorum has confirmed this node's
// leadership, every write acknowledged anywhere so far is at or below the
// leader's last log index (the leader's own FSM may not have applied the
// entries a previous leader committed yet, so its applied index is not
// enough).
func (n *Node) readIndex() (uint64, error) {
	if !n.rep.IsLeader() {
		return 0, errors.Mark(errors.New("not the raft leader"), ErrNotLeader)
	}
	if err := n.rep.Raft.VerifyLeader().Error(); err != nil {
		return 0, errors.Mark(errors.Wrap(err, "confirm leadership"), ErrNotLeader)
	}
	return n.rep.lastCommandIndex()
}

// confirmLeader confirms that this node leads in term (backend.LeaderConfirm)
// for a backend whose fence of this cluster is at fencedAt, a later term: a
// quorum acknowledges its leadership, and the term is still term after
// that. A leader frozen while a later one acted is not confirmed: the
// quorum is in the later term. Confirmed, the fence is of a history the
// cluster no longer has (its raft state restored from an older copy), and
// goes back to term.
func (n *Node) confirmLeader(term, fencedAt uint64) error {
	if err := n.rep.Raft.VerifyLeader().Error(); err != nil {
		return errors.Wrap(err, "confirm leadership")
	}
	if now := n.rep.Raft.CurrentTerm(); now != term {
		return errors.Newf("this node leads in raft term %d now, not %d", now, term)
	}
	n.logger.Printf("fence: a backend's fence of this cluster is at raft term %d, above this leader's term %d, which a quorum confirmed: "+
		"the cluster's raft state is older than the backend's (restored from an older copy?); the fence goes back to term %d", fencedAt, term, term)
	return nil
}

// handleCancel cancels a session of this node for a CancelRequest that
// reached another node.
func (n *Node) handleCancel(w http.ResponseWriter, r *http.Request) {
	var req cancelRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeInternal(w, http.StatusBadRequest, &internalError{Code: "bad_request", Message: "decode cancel request: " + err.Error()})
		return
	}
	found := n.proxy.Cancel(r.Context(), req.PID, req.Secret)
	writeInternal(w, http.StatusOK, cancelResponse{Found: found})
}

func (n *Node) handleStatus(w http.ResponseWriter, _ *http.Request) {
	writeInternal(w, http.StatusOK, statusResponse{
		ID: n.cfg.NodeID, Role: stateName(n.rep.Raft.State()), AppliedIndex: n.rep.FSM.AppliedIndex(),
	})
}

// handleReady answers 200 while this node accepts logins and 503 while it
// fails closed: the load balancer's health check.
func (n *Node) handleReady(w http.ResponseWriter, _ *http.Request) {
	if err := n.admitLogin(); err != nil {
		writeInternal(w, http.StatusServiceUnavailable, &internalError{Code: "unavailable", Message: "this node has lost contact with the cluster leader"})
		return
	}
	writeInternal(w, http.StatusOK, map[string]any{"ok": true, "node_id": n.cfg.NodeID})
}

// peer is where another node takes internal calls: its HTTP address, and
// its raft address, whose listener takes them over the cluster's TLS.
type peer struct{ http, raft string }

// memberPeer is where member m takes internal calls.
func memberPeer(m gossip.Member) peer { return peer{http: m.HTTPAddr, raft: m.RaftAddr} }

// call sends one internal request to node p and decodes a 2xx JSON answer
// into out. A non-2xx answer is an *internalError; a failed dial is marked
// errNotSent. Once every node's build takes internal calls over the raft
// listener's TLS (log version 6), the call goes there and carries no
// secret; before, it goes to p's HTTP address with the secret as its key.
func (n *Node) call(ctx context.Context, p peer, method, path string, in, out any) error {
	client, url, addr := n.client, "http://"+p.http+path, p.http
	if n.tlsClient != nil && p.raft != "" && n.activeLogVersion() >= 6 {
		client, url, addr = n.tlsClient, "https://"+p.raft+path, p.raft
		if method == http.MethodGet {
			client = n.tlsReads
		}
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Cluster.InternalTimeout)
	defer cancel()
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return errors.Wrapf(err, "encode %s", path)
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return errors.Wrapf(err, "%s %s", method, path)
	}
	if client == n.client {
		req.Header.Set("Authorization", "Bearer "+n.secret)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return errors.Mark(errors.Wrapf(err, "%s %s", method, addr+path), errNotSent)
		}
		return errors.Mark(errors.Wrapf(err, "%s %s", method, addr+path), errNoAnswer)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		e := &internalError{Status: resp.StatusCode}
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(e); err != nil || e.Code == "" {
			e.Code, e.Message = "unavailable", resp.Status
		}
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return errors.Mark(errors.Wrapf(err, "decode %s answer", path), errNoAnswer)
	}
	return nil
}

// retryable reports whether a failed call certainly did nothing on a leader.
func retryable(err error) bool {
	var ie *internalError
	return errors.Is(err, errNotSent) || errors.As(err, &ie) && ie.Code == codeNotLeader
}

// leaderHTTP returns the raft leader's id and HTTP address as gossip knows
// them ("" while either is unknown).
func (n *Node) leaderHTTP() (id string, p peer) {
	raftAddr, lid := n.rep.Raft.LeaderWithID()
	if lid == "" || n.gossip == nil {
		return string(lid), peer{}
	}
	m, ok := n.gossip.Member(string(lid))
	if !ok || m.State != gossip.StateAlive {
		return string(lid), peer{}
	}
	return string(lid), peer{http: m.HTTPAddr, raft: string(raftAddr)}
}

// retryPause is the wait between attempts to reach a leader.
const retryPause = 50 * time.Millisecond

// callLeader makes an idempotent internal call on the raft leader, retrying
// through elections until ctx ends.
func (n *Node) callLeader(ctx context.Context, method, path string, in, out any) error {
	for {
		id, p := n.leaderHTTP()
		var err error
		if p.http == "" {
			err = errors.Newf("no known raft leader (leader id %q)", id)
		} else if err = n.call(ctx, p, method, path, in, out); err == nil || !retryable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Mark(errors.Wrapf(err, "reach the raft leader"), httpapi.ErrNotLeader)
		case <-time.After(retryPause):
		}
	}
}

// applyAnywhere commits a command from any node: on the leader through its
// raft, on a follower by forwarding it to the leader's internal API. A
// forwarded command is retried only when it certainly was not appended (the
// dial failed or the callee was not the leader). On a follower it returns
// once this node has applied the command's index, so reads that follow see
// it. A forwarded command's value comes back as its JSON (json.RawMessage);
// a business failure is the same *fsm.Error as on the leader.
func (n *Node) applyAnywhere(ctx context.Context, t fsm.CommandType, payload any) (any, uint64, error) {
	raw, err := json.Marshal(payload)
	if err != nil {
		return nil, 0, errors.Wrapf(err, "encode %s", t)
	}
	for {
		if n.rep.IsLeader() {
			v, index, err := n.rep.Apply(ctx, t, payload)
			if err == nil || !errors.Is(err, raft.ErrNotLeader) {
				return v, index, err
			}
			// Not the leader any more and nothing appended: forward.
		}
		id, p := n.leaderHTTP()
		if p.http == "" {
			err = errors.Newf("no known raft leader (leader id %q)", id)
		} else {
			var out applyResponse
			err = n.call(ctx, p, http.MethodPost, "/internal/apply", applyRequest{Type: t, Payload: raw}, &out)
			if err == nil {
				if werr := n.rep.FSM.WaitIndex(ctx, out.Index); werr != nil {
					return nil, out.Index, errors.Wrapf(werr, "%s committed at raft index %d; wait for this node to apply it", t, out.Index)
				}
				if out.Error != nil {
					return nil, out.Index, out.Error
				}
				return out.Value, out.Index, nil
			}
			if ferr, retry := forwardFailure(t, id, err); !retry {
				return nil, 0, ferr
			}
		}
		select {
		case <-ctx.Done():
			return nil, 0, errors.Mark(errors.Wrapf(err, "forward %s", t), httpapi.ErrNotLeader)
		case <-time.After(retryPause):
		}
	}
}

// forwardFailure is the error of a command forwarded to leader id that
// was not answered with its result, and whether it may be sent again: only
// when it certainly was not appended. The leader may have committed one it
// was sent and did not answer for (it crashed or stepped down, the
// connection broke, the wait timed out): that outcome is unknown, and a
// client told it was not committed would apply it twice by trying again.
func forwardFailure(t fsm.CommandType, id string, err error) (error, bool) {
	if retryable(err) {
		return err, true
	}
	err = errors.Wrapf(err, "forward %s to leader %s", t, id)
	if ie := (*internalError)(nil); errors.Is(err, errNoAnswer) || errors.As(err, &ie) && ie.Code == codeOutcomeUnknown {
		return errors.Mark(err, httpapi.ErrOutcomeUnknown), false
	}
	return err, false
}

// newInternalClient makes the client for internal calls. It opens a
// connection per call: a pooled connection that the other node closed makes
// a forwarded write's outcome unknown, where a fresh dial fails cleanly
// (errNotSent) and can be retried.
func newInternalClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DisableKeepAlives = true
	// Never through an HTTP proxy of the environment (HTTP_PROXY): the
	// calls carry the cluster secret, and go to the nodes themselves.
	tr.Proxy = nil
	return &http.Client{Transport: tr}
}

// memberIP reports whether ip is the host of one of the addresses a gossip
// member advertises.
func (n *Node) memberIP(ip string) bool {
	if n.gossip == nil {
		return false
	}
	for _, m := range n.gossip.Members() {
		for _, addr := range []string{m.HTTPAddr, m.RaftAddr, m.WireAddr, m.GossipAddr} {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				continue
			}
			if a, err := netip.ParseAddr(host); err == nil && a.Unmap().String() == ip {
				return true
			}
		}
	}
	return false
}
