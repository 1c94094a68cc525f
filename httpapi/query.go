package httpapi

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/errors"
	"github.com/gorilla/mux"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"tdb/actors/backend"
	"tdb/fsm"
	"tdb/querylog"
	"tdb/wire/classify"
)

// Limits of POST /v1/tenants/{id}/query, on top of the workspace's own
// max_rows_per_query and query_timeout_ms (the smaller wins).
const (
	queryTimeout  = 30 * time.Second // statement_timeout when the workspace sets none
	queryMaxRows  = 10000            // rows in one response
	queryMaxBytes = 16 << 20         // bytes of cell data in one response
	queryDialTime = 10 * time.Second
)

// Texts shared with the wire proxy.
const (
	msgDDLRefused  = "DDL not allowed on tenant databases, use workspace mode"
	msgCopyRefused = "COPY is not supported through the proxy; use tdb workspaces import-full or INSERT statements"
	// NOTIFY takes no privilege in PostgreSQL, so the read role's grants
	// cannot refuse it.
	msgReadNotify = "NOTIFY needs a key with role write or admin"
)

// queryErrorBody is the error of the query endpoint: the usual {code,
// message} plus the SQLSTATE when the error is PostgreSQL's (or the proxy's
// equivalent of one).
type queryErrorBody struct {
	Code     string `json:"code"`
	Message  string `json:"message"`
	SQLState string `json:"sqlstate,omitempty"`
}

type queryResponse struct {
	Columns      []string `json:"columns"`
	ColumnTypes  []string `json:"column_types"`
	Rows         [][]any  `json:"rows"`
	CommandTag   string   `json:"command_tag"`
	RowsAffected int64    `json:"rows_affected"`
}

// queryTarget is what running a query needs, copied out of the state.
type queryTarget struct {
	url, database     string
	user, password    string
	maxRows           int64
	timeoutMs         int64
	maxConnections    int64 // the workspace's max_connections; 0: none
	workspaceMaxRows  int64
	workspaceTimeoutM int64
}

// queryTenant: POST /v1/tenants/{id}/query {sql, params} runs one statement
// in the tenant's database as the native role of the key's role (so a read
// key's INSERT fails in PostgreSQL itself), in its own transaction, and
// answers {columns, column_types, rows, command_tag, rows_affected}. Values
// come back as JSON numbers (integers, floats, numeric), booleans, JSON
// (json, jsonb), null, or otherwise PostgreSQL's text form. params are bound
// to $1, $2… as text; PostgreSQL infers their types.
//
// Errors: a project-scoped key (the operator's too) → 403 scope_denied with
// the wire proxy's text; DDL → 403 permission_denied with the wire proxy's text; PostgreSQL's
// 42501 → 403 permission_denied with PostgreSQL's message; other PostgreSQL
// errors (and COPY, too many rows, timeouts) → 400 query_error with the
// SQLSTATE; an unreachable backend → 502 backend_error; past the
// workspace's max_connections or the IP's max_conns_per_ip (a call holds a
// connection of each while it runs, as a wire client does) → 429
// rate_limited with the wire proxy's text and SQLSTATE 53300.
func (s *server) queryTenant(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := c.requireProject(); err != nil {
		return err
	}
	name := mux.Vars(r)["id"]
	var req struct {
		SQL    string            `json:"sql"`
		Params []json.RawMessage `json:"params"`
	}
	if err := decode(w, r, &req); err != nil {
		return err
	}
	ten, err := s.readTenant(c, name)
	if err != nil {
		return err
	}
	if c.scopeType == fsm.ScopeProject {
		// Project scope is the control plane and the workspaces, never a
		// tenant database: the wire proxy refuses it the same way.
		return scopeDenied("credential is project-scoped; direct-tenant connections require a tenant-scoped or workspace-scoped key")
	}
	tg, err := s.queryTarget(c, name)
	if err != nil {
		return err
	}
	params, err := textParams(req.Params)
	if err != nil {
		return err
	}
	if strings.ContainsRune(req.SQL, 0) {
		// PostgreSQL's protocol ends the statement text at a NUL: sent,
		// it would be a malformed message.
		return badRequest("sql must not contain a NUL character")
	}
	start := s.now()
	logged := func(rows int64, sqlstate string) {
		s.logQuery(r, c, ten.Blueprint, name, req.SQL, start, rows, sqlstate)
	}
	cl := classify.Classify(req.SQL)
	noTxn := false
	switch {
	case cl.TooComplex:
		logged(0, "54001")
		return writeQueryError(w, http.StatusBadRequest, "query_error", "54001", "statement is too complex to analyse")
	case cl.Unparsed:
		// Not sent: what the proxy cannot parse it cannot check (a server
		// of another version may read it, a role statement among others).
		logged(0, "42601")
		return writeQueryError(w, http.StatusBadRequest, "query_error", "42601", cl.ParseError)
	case cl.HasDDL():
		logged(0, "42501")
		return writeQueryError(w, http.StatusForbidden, codePermissionDenied, "42501", msgDDLRefused)
	case cl.HasCopy():
		logged(0, "0A000")
		return writeQueryError(w, http.StatusBadRequest, "query_error", "0A000", msgCopyRefused)
	case len(cl.Statements) > 1:
		return badRequest("one statement per request: send %d requests, or use the wire protocol", len(cl.Statements))
	case len(cl.Statements) == 1:
		switch cl.Statements[0].Kind {
		case classify.Begin, classify.Commit, classify.Rollback, classify.Savepoint, classify.RollbackTo,
			classify.Release, classify.PrepareTxn, classify.CommitPrepared, classify.RollbackPrepared:
			return badRequest("transaction control is not supported: each request runs in a transaction of its own")
		}
		if c.role == fsm.RoleRead && cl.Statements[0].Kind == classify.Other && cl.Statements[0].Tag == "NOTIFY" {
			logged(0, "42501")
			return writeQueryError(w, http.StatusForbidden, codePermissionDenied, "42501", msgReadNotify)
		}
		noTxn = cl.Statements[0].NoTxn
	default:
		return badRequest("sql is empty: send one statement")
	}
	if qa, ok := s.c.(QueryAdmitter); ok {
		release, refusal := qa.AdmitQuery(s.clientIP(r), tg.database, fsm.TenantDatabase(ten.Blueprint, name), tg.maxConnections)
		if refusal != "" {
			logged(0, "53300")
			return writeQueryError(w, http.StatusTooManyRequests, codeRateLimited, "53300", refusal)
		}
		defer release()
	}
	resp, qerr := runQuery(r.Context(), tg, req.SQL, params, noTxn)
	if qerr != nil {
		logged(0, cmp.Or(qerr.sqlstate, "08006"))
		return writeQueryError(w, qerr.status, qerr.code, qerr.sqlstate, qerr.message)
	}
	logged(max(resp.RowsAffected, int64(len(resp.Rows))), "00000")
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// nodeIdentity is implemented by a Cluster that names its node.
type nodeIdentity interface{ ID() string }

// logQuery writes a statement of the query endpoint to this node's query
// log, as the wire proxy does for its statements.
func (s *server) logQuery(r *http.Request, c *caller, blueprint, tenant, sql string, start time.Time, rows int64, sqlstate string) {
	src, ok := s.c.(QueryLogSource)
	if !ok || src.QueryLog() == nil {
		return
	}
	var nodeID string
	if n, ok := s.c.(nodeIdentity); ok {
		nodeID = n.ID()
	}
	text, cut := querylog.Truncate(sql)
	src.QueryLog().Add(querylog.Entry{
		Time: start.UTC(), Node: nodeID, Project: c.projectID, Database: fsm.TenantDatabase(blueprint, tenant),
		Workspace: blueprint, Tenant: tenant, KeyID: c.keyID, Role: c.role, ClientIP: s.clientIP(r),
		Statement: text, Truncated: cut, DurationMs: float64(s.now().Sub(start).Microseconds()) / 1000,
		Rows: rows, SQLState: sqlstate,
	})
}

func writeQueryError(w http.ResponseWriter, status int, code, sqlstate, message string) error {
	writeJSON(w, status, queryErrorBody{Code: code, Message: message, SQLState: sqlstate})
	return nil
}

// queryTarget copies the tenant's database, the key role's login and the
// limits that apply.
func (s *server) queryTarget(c *caller, tenant string) (queryTarget, error) {
	var tg queryTarget
	var err error
	s.view(func(st *fsm.State) {
		p := st.Project(c.projectID)
		t := p.Tenants[tenant]
		if t == nil {
			err = notFound("tenant %q not found", tenant)
			return
		}
		d := st.Databases[t.Database]
		if d == nil || d.Status != fsm.StatusReady {
			status := fsm.StatusDeleting
			if d != nil {
				status = d.Status
			}
			err = errf(http.StatusConflict, codeConflict, "tenant %q is %s, not ready for queries", tenant, status)
			return
		}
		b := st.Backends[d.Backend]
		if b == nil {
			err = errf(http.StatusBadGateway, codeBackendError, "backend %s of tenant %q is not registered", d.Backend, tenant)
			return
		}
		tg = queryTarget{
			url: b.URL, database: d.Name,
			user: backend.RoleName(d.Name, c.role), password: d.Passwords.For(c.role),
			maxRows: queryMaxRows, timeoutMs: queryTimeout.Milliseconds(),
		}
		if ws := p.Workspaces[t.Blueprint]; ws != nil {
			tg.maxConnections = ws.Settings.MaxConnections
			tg.workspaceMaxRows, tg.workspaceTimeoutM = ws.Settings.MaxRowsPerQuery, ws.Settings.QueryTimeoutMs
			if m := ws.Settings.MaxRowsPerQuery; m > 0 && m < tg.maxRows {
				tg.maxRows = m
			}
			if m := ws.Settings.QueryTimeoutMs; m > 0 && m < tg.timeoutMs {
				tg.timeoutMs = m
			}
		}
	})
	return tg, err
}

// maxQueryParams is the most parameters a statement can have in
// PostgreSQL's protocol (a 16-bit count).
const maxQueryParams = 65535

// textParams turns JSON parameters into PostgreSQL text values: strings
// unquoted, numbers and booleans as written, objects and arrays as JSON text,
// null as NULL.
func textParams(raw []json.RawMessage) ([][]byte, error) {
	if len(raw) > maxQueryParams {
		return nil, badRequest("at most %d params, got %d", maxQueryParams, len(raw))
	}
	out := make([][]byte, len(raw))
	for i, p := range raw {
		p = bytes.TrimSpace(p)
		switch {
		case len(p) == 0 || string(p) == "null":
			out[i] = nil
		case p[0] == '"':
			var s string
			if err := json.Unmarshal(p, &s); err != nil {
				return nil, badRequest("params[%d]: %v", i, err)
			}
			out[i] = []byte(s)
		default:
			out[i] = []byte(p)
		}
	}
	return out, nil
}

// queryFailure is an error answer of runQuery.
type queryFailure struct {
	status                  int
	code, sqlstate, message string
}

func failure(status int, code, sqlstate, format string, args ...any) *queryFailure {
	return &queryFailure{status: status, code: code, sqlstate: sqlstate, message: fmt.Sprintf(format, args...)}
}

// runQuery connects as the key's role, runs the statement (in a transaction
// unless it cannot run in one) and reads at most tg.maxRows rows. Past the
// cap the transaction is rolled back: a statement that changes rows and
// returns too many of them changes nothing.
func runQuery(ctx context.Context, tg queryTarget, sql string, params [][]byte, noTxn bool) (*queryResponse, *queryFailure) {
	cfg, err := pgconn.ParseConfig(tg.url)
	if err != nil {
		return nil, failure(http.StatusBadGateway, codeBackendError, "", "the tenant's backend is misconfigured")
	}
	cfg.User, cfg.Password, cfg.Database = tg.user, tg.password, tg.database
	cfg.ConnectTimeout = queryDialTime
	cfg.RuntimeParams = map[string]string{
		"application_name":  "tdb-http-query",
		"statement_timeout": strconv.FormatInt(tg.timeoutMs, 10),
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(tg.timeoutMs)*time.Millisecond+queryDialTime)
	defer cancel()
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, connectFailure(err)
	}
	defer conn.Close(context.Background())
	if !noTxn {
		if err := conn.Exec(ctx, "BEGIN").Close(); err != nil {
			return nil, pgFailure(err, tg)
		}
	}
	rr := conn.ExecParams(ctx, sql, params, nil, nil, nil)
	fields := rr.FieldDescriptions()
	resp := &queryResponse{Columns: make([]string, len(fields)), ColumnTypes: make([]string, len(fields)), Rows: [][]any{}}
	types := pgtype.NewMap()
	for i, f := range fields {
		resp.Columns[i] = f.Name
		resp.ColumnTypes[i] = "oid " + strconv.FormatUint(uint64(f.DataTypeOID), 10)
		if t, ok := types.TypeForOID(f.DataTypeOID); ok {
			resp.ColumnTypes[i] = t.Name
		}
	}
	var size int
	for rr.NextRow() {
		if int64(len(resp.Rows)) >= tg.maxRows {
			// Closing the connection cancels the rest and rolls back.
			if tg.workspaceMaxRows > 0 && tg.maxRows == tg.workspaceMaxRows {
				return nil, failure(http.StatusBadRequest, "query_error", "54000", "query returned more than max_rows_per_query (%d) rows", tg.maxRows)
			}
			return nil, failure(http.StatusBadRequest, "query_error", "54000",
				"query returned more than %d rows, the limit of the HTTP query endpoint: add a LIMIT, or use the wire protocol", tg.maxRows)
		}
		values := rr.Values()
		row := make([]any, len(values))
		for i, v := range values {
			size += len(v)
			row[i] = jsonValue(fields[i].DataTypeOID, v)
		}
		if size > queryMaxBytes {
			return nil, failure(http.StatusBadRequest, "query_error", "54000",
				"query returned more than %d MiB, the limit of the HTTP query endpoint: select fewer rows or columns, or use the wire protocol", queryMaxBytes>>20)
		}
		resp.Rows = append(resp.Rows, row)
	}
	tag, err := rr.Close()
	if err != nil {
		return nil, pgFailure(err, tg)
	}
	if !noTxn {
		if err := conn.Exec(ctx, "COMMIT").Close(); err != nil {
			return nil, pgFailure(err, tg)
		}
	}
	resp.CommandTag, resp.RowsAffected = tag.String(), tag.RowsAffected()
	return resp, nil
}

// connectFailure maps a failed login to the backend. The backend's text is
// not passed on, since it names the internal role the endpoint logs in as;
// the wire proxy says the same in its place.
func connectFailure(err error) *queryFailure {
	var pge *pgconn.PgError
	if errors.As(err, &pge) {
		return failure(http.StatusBadGateway, codeBackendError, pge.Code, "the database backend refused the connection")
	}
	return failure(http.StatusBadGateway, codeBackendError, "08006", "could not connect to the tenant's backend")
}

// pgFailure maps an error of the backend: PostgreSQL's 42501 is a 403
// permission_denied, its other errors a 400 query_error; anything else means
// the backend could not be used (502).
func pgFailure(err error, tg queryTarget) *queryFailure {
	var pge *pgconn.PgError
	if !errors.As(err, &pge) {
		if errors.Is(err, context.DeadlineExceeded) {
			return failure(http.StatusGatewayTimeout, codeTimeout, "57014", "the query did not finish within %d ms", tg.timeoutMs)
		}
		return failure(http.StatusBadGateway, codeBackendError, "08006", "could not run the query on the tenant's backend: %v", errors.UnwrapAll(err))
	}
	switch {
	case pge.Code == "42501":
		return failure(http.StatusForbidden, codePermissionDenied, pge.Code, "%s", pge.Message)
	case pge.Code == "57014" && tg.workspaceTimeoutM > 0 && tg.timeoutMs == tg.workspaceTimeoutM:
		return failure(http.StatusBadRequest, "query_error", pge.Code, "canceling statement due to query_timeout_ms (%d ms)", tg.timeoutMs)
	}
	return failure(http.StatusBadRequest, "query_error", pge.Code, "%s", pge.Message)
}

// jsonValue converts a text-format value to JSON by its type.
func jsonValue(oid uint32, v []byte) any {
	if v == nil {
		return nil
	}
	s := string(v)
	switch oid {
	case pgtype.BoolOID:
		return s == "t" || s == "true"
	case pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID, pgtype.OIDOID:
		return json.Number(s)
	case pgtype.Float4OID, pgtype.Float8OID, pgtype.NumericOID:
		if json.Valid(v) {
			return json.Number(s)
		}
		return s // NaN, Infinity
	case pgtype.JSONOID, pgtype.JSONBOID:
		if json.Valid(v) {
			return json.RawMessage(s)
		}
	}
	return s
}
