package metrics

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Connection states of the tdb_connections gauge.
const (
	StateStartup = "startup" // accepted; PROXY header, negotiation, authentication
	StateActive  = "active"  // relaying to a backend
)

// Metrics are one node's collectors.
type Metrics struct {
	reg *prometheus.Registry

	connections   *prometheus.GaugeVec
	rejected      *prometheus.CounterVec
	authFailures  prometheus.Counter
	statements    *prometheus.CounterVec
	succeeded     prometheus.Counter // statements{sqlstate="00000"}: most statements, counted without a label lookup
	errors        *prometheus.CounterVec
	bytes         *prometheus.CounterVec
	bansDecided   prometheus.Counter
	banBatches    *prometheus.CounterVec
	dropped       *prometheus.CounterVec
	applySeconds  prometheus.Histogram
	limitCancels  *prometheus.CounterVec
	relays        *prometheus.CounterVec
	tlsSessions   *prometheus.CounterVec
	queryLogLines prometheus.Counter

	sqlstatesMu sync.Mutex
	sqlstates   map[string]bool // the sqlstate label values in use, at most maxSQLStates
}

// maxSQLStates bounds the sqlstate label values of the statement counters:
// a client chooses the SQLSTATE of its own errors (RAISE … USING ERRCODE
// takes any five digits or capitals), and each new value would otherwise
// add series that every scrape carries for the node's lifetime. Past the
// bound, errors are counted under otherSQLState.
const (
	maxSQLStates  = 256
	otherSQLState = "other"
)

// Sources are read at scrape time.
type Sources struct {
	RaftState    func() string // leader | follower | candidate | shutdown
	AppliedIndex func() uint64
	ActiveBans   func() int
	// PoolSessions counts backend sessions by state: idle (pooled) and active (held by a client).
	PoolSessions func(state string) int
}

// New builds a node's collectors on a fresh registry.
func New(src Sources) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), sqlstates: map[string]bool{}}
	m.connections = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tdb_connections", Help: "Client connections on this node by state.",
	}, []string{"state"})
	m.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tdb_connections_rejected_total", Help: "Client connections refused by a policy, by reason.",
	}, []string{"reason"})
	m.authFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tdb_auth_failures_total", Help: "Failed wire authentications (28P01) on this node.",
	})
	m.statements = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tdb_statements_total", Help: "Statements relayed, by SQLSTATE (00000 on success).",
	}, []string{"sqlstate"})
	m.succeeded = m.statements.WithLabelValues("00000")
	m.errors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tdb_statement_errors_total", Help: "Statements that ended in an error, by SQLSTATE.",
	}, []string{"sqlstate"})
	m.bytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tdb_relay_bytes_total", Help: "Bytes relayed between clients and backends.",
	}, []string{"direction"})
	m.bansDecided = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tdb_bans_total", Help: "IP bans decided by auth-failure batches this node proposed.",
	})
	m.banBatches = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tdb_auth_failure_batches_total", Help: "Auth-failure batches proposed through raft, by result.",
	}, []string{"result"})
	m.dropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tdb_dropped_total", Help: "Messages dropped because a bounded queue was full, by queue.",
	}, []string{"queue"})
	m.applySeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "tdb_raft_apply_seconds", Help: "Time to commit a command through raft, from this node.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	})
	m.relays = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tdb_relay_sessions_total",
		Help: "Sessions relayed, by relay: loop (the epoll loop), goroutine (PROXY protocol clients, --goroutine-relay), handoff (from the loop to goroutines mid-session), return (back to the loop once what sent it out is done).",
	}, []string{"relay"})
	m.tlsSessions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tdb_tls_sessions_total",
		Help: "TLS client sessions after their handshake, by record layer: tls13 (tdb's own, TLS 1.3), crypto_tls (TLS 1.2).",
	}, []string{"records"})
	m.limitCancels = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tdb_limit_cancels_total", Help: "Statements cancelled on the backend by a workspace limit.",
	}, []string{"limit"})
	m.queryLogLines = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tdb_query_log_dropped_lines_total", Help: "Query log lines not written because the log output fell behind.",
	})
	m.reg.MustRegister(m.connections, m.rejected, m.authFailures, m.statements, m.errors, m.bytes,
		m.bansDecided, m.banBatches, m.dropped, m.applySeconds, m.limitCancels, m.queryLogLines, m.relays, m.tlsSessions,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, s := range []string{StateStartup, StateActive} {
		m.connections.WithLabelValues(s)
	}
	if src.PoolSessions != nil {
		for _, st := range []string{"idle", "active"} {
			m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "tdb_backend_pool_connections", Help: "Backend sessions of the session pool by state.", ConstLabels: prometheus.Labels{"state": st},
			}, func() float64 { return float64(src.PoolSessions(st)) }))
		}
	}
	for _, d := range []string{"client_to_backend", "backend_to_client"} {
		m.bytes.WithLabelValues(d)
	}
	if src.RaftState != nil {
		for _, st := range []string{"leader", "follower", "candidate"} {
			m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "tdb_raft_state", Help: "1 for this node's current raft state.", ConstLabels: prometheus.Labels{"state": st},
			}, func() float64 {
				if src.RaftState() == st {
					return 1
				}
				return 0
			}))
		}
	}
	if src.AppliedIndex != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tdb_raft_applied_index", Help: "Raft index last applied to this node's state.",
		}, func() float64 { return float64(src.AppliedIndex()) }))
	}
	if src.ActiveBans != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tdb_bans_active", Help: "Client IPs banned now, as this node's replica sees them.",
		}, func() float64 { return float64(src.ActiveBans()) }))
	}
	return m
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Registry is the node's registry (tests gather from it).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// ConnState moves a connection between states ("" for none).
func (m *Metrics) ConnState(from, to string) {
	if m == nil {
		return
	}
	if from != "" {
		m.connections.WithLabelValues(from).Dec()
	}
	if to != "" {
		m.connections.WithLabelValues(to).Inc()
	}
}

// Rejected counts a connection refused for reason.
func (m *Metrics) Rejected(reason string) {
	if m != nil {
		m.rejected.WithLabelValues(reason).Inc()
	}
}

// AuthFailed counts a failed authentication.
func (m *Metrics) AuthFailed() {
	if m != nil {
		m.authFailures.Inc()
	}
}

// Statement counts a finished statement.
func (m *Metrics) Statement(sqlstate string) {
	if m == nil {
		return
	}
	if sqlstate == "00000" {
		m.succeeded.Inc()
		return
	}
	label := m.sqlstateLabel(sqlstate)
	m.statements.WithLabelValues(label).Inc()
	m.errors.WithLabelValues(label).Inc()
}

// sqlstateLabel is the label an error's SQLSTATE is counted under: itself,
// while fewer than maxSQLStates values are in use or it is one of them.
func (m *Metrics) sqlstateLabel(sqlstate string) string {
	m.sqlstatesMu.Lock()
	defer m.sqlstatesMu.Unlock()
	if m.sqlstates[sqlstate] {
		return sqlstate
	}
	if len(m.sqlstates) >= maxSQLStates {
		return otherSQLState
	}
	m.sqlstates[sqlstate] = true
	return sqlstate
}

// Bytes counts relayed bytes in a direction.
func (m *Metrics) Bytes(direction string, n int) {
	if m != nil && n > 0 {
		m.bytes.WithLabelValues(direction).Add(float64(n))
	}
}

// BytesCounter returns the counter of a direction, for hot paths.
func (m *Metrics) BytesCounter(direction string) prometheus.Counter {
	if m == nil {
		return nil
	}
	return m.bytes.WithLabelValues(direction)
}

// BanBatch counts a proposed auth-failure batch and the bans it decided.
func (m *Metrics) BanBatch(ok bool, bans int) {
	if m == nil {
		return
	}
	if ok {
		m.banBatches.WithLabelValues("committed").Inc()
	} else {
		m.banBatches.WithLabelValues("failed").Inc()
	}
	m.bansDecided.Add(float64(bans))
}

// Dropped counts a message dropped from a full queue.
func (m *Metrics) Dropped(queue string) {
	if m != nil {
		m.dropped.WithLabelValues(queue).Inc()
	}
}

// LimitCancel counts a statement cancelled by a limit (max_rows_per_query,
// query_timeout_ms).
func (m *Metrics) LimitCancel(limit string) {
	if m != nil {
		m.limitCancels.WithLabelValues(limit).Inc()
	}
}

// Relay counts a session relayed by relay (loop, goroutine, handoff).
func (m *Metrics) Relay(relay string) {
	if m != nil {
		m.relays.WithLabelValues(relay).Inc()
	}
}

// TLSSession counts a TLS client session by the record layer it goes on
// with after the handshake (tls13, crypto_tls).
func (m *Metrics) TLSSession(records string) {
	if m != nil {
		m.tlsSessions.WithLabelValues(records).Inc()
	}
}

// QueryLogDropped counts a query log line not written.
func (m *Metrics) QueryLogDropped() {
	if m != nil {
		m.queryLogLines.Inc()
	}
}

// ObserveApply records the time a raft apply took since start.
func (m *Metrics) ObserveApply(start time.Time) {
	if m != nil {
		m.applySeconds.Observe(time.Since(start).Seconds())
	}
}
