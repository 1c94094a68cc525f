package fsm

import (
	"crypto/sha256"
	"encoding/hex"
	"sort"
	"strings"
	"time"
)

// Roles a key can carry; each maps to a native PostgreSQL login role.
const (
	RoleAdmin = "admin"
	RoleWrite = "write"
	RoleRead  = "read"
)

// Scope types of a key.
const (
	ScopeProject   = "project"
	ScopeWorkspace = "workspace"
	ScopeTenant    = "tenant"
)

// Workspace modes.
const (
	ModeTenant  = "tenant"  // DDL captured as blueprint versions, deployed to tenants
	ModeControl = "control" // the application's own database: all DDL, nothing captured
)

// Database types a workspace can target. Only postgresql is served by this proxy.
const (
	TypePostgreSQL = "postgresql"
	TypeMySQL      = "mysql"
	TypeMongoDB    = "mongodb"
	TypeRedis      = "redis"
)

// Kinds of physical database.
const (
	KindTenant    = "tenant"
	KindWorkspace = "workspace"
	KindControl   = "control"
)

// Status of a physical database (and so of its tenant or workspace).
const (
	StatusProvisioning = "provisioning"
	StatusReady        = "ready"
	StatusFailed       = "failed"
	StatusDeleting     = "deleting"
)

// State is the whole replicated metadata. It knows nothing of raft: the FSM
// decodes commands and calls into it.
type State struct {
	Projects  map[string]*Project  `json:"projects"`
	Backends  map[string]*Backend  `json:"backends"`
	Databases map[string]*Database `json:"databases"`
	Settings  ClusterSettings      `json:"settings"`

	// LogVersion is the cluster's log version (version.go); 0 is version 1.
	LogVersion uint16 `json:"log_version,omitempty"`
	// ClusterID names the cluster for good (SetClusterID); empty until its
	// first leader of log version 3 sets it.
	ClusterID string `json:"cluster_id,omitempty"`

	// Deployments are blueprint rollouts by id (see deployment.go).
	Deployments map[string]*Deployment `json:"deployments,omitempty"`
	// Imports are import-full jobs by id (see importjob.go).
	Imports map[string]*Import `json:"imports,omitempty"`

	// Bans are the auth-failure counters and bans of client IPs (bans.go).
	Bans BanTable `json:"bans"`

	// byLookup indexes live and revoked keys by the hash of their secret, for
	// bearer authentication. Derived: rebuilt on restore, never serialized.
	byLookup map[string]*Key
}

// Project is a customer account: the wire username is its ID.
type Project struct {
	ID         string                `json:"id"`
	Name       string                `json:"name"`
	Salt       []byte                `json:"salt"`       // shared SCRAM salt of all the project's keys
	Iterations int                   `json:"iterations"` // SCRAM iteration count
	CreatedAt  time.Time             `json:"created_at"`
	Workspaces map[string]*Workspace `json:"workspaces"`
	Tenants    map[string]*Tenant    `json:"tenants"`
	Keys       map[string]*Key       `json:"keys"`
}

// WorkspaceSettings are enforced by the proxy on the workspace database and on
// every tenant of its blueprint. Zero means off.
type WorkspaceSettings struct {
	MaxRowsPerQuery int64 `json:"max_rows_per_query"`
	QueryTimeoutMs  int64 `json:"query_timeout_ms"`
	MaxConnections  int64 `json:"max_connections"`
}

// Workspace is a schema design space; in tenant mode it is also the blueprint
// its tenants are deployed from.
type Workspace struct {
	Name         string             `json:"name"`
	Mode         string             `json:"mode"`
	DatabaseType string             `json:"database_type"`
	Settings     WorkspaceSettings  `json:"settings"`
	Database     string             `json:"database"` // physical database; empty for non-PostgreSQL types
	Versions     []BlueprintVersion `json:"versions"`
	CreatedAt    time.Time          `json:"created_at"`
}

// BlueprintVersion is the DDL that committed together in a tenant workspace.
type BlueprintVersion struct {
	Version    int       `json:"version"`
	Statements []string  `json:"statements"`
	Checksum   string    `json:"checksum"`
	KeyID      string    `json:"key_id"`
	CreatedAt  time.Time `json:"created_at"`
	CaptureID  string    `json:"capture_id,omitempty"` // AddBlueprintVersion.CaptureID
	// Settings are the session settings the version's DDL ran with in the
	// workspace, which tenants run it with; nil for versions that were not
	// captured from a session, or recorded before log version 5 (those run
	// with the backend's defaults).
	Settings *SessionSettings `json:"settings,omitempty"`
}

// HasCapture reports whether workspace of project holds a blueprint
// version recorded under captureID.
func (s *State) HasCapture(projectID, workspace, captureID string) bool {
	p := s.Projects[projectID]
	return p != nil && p.Workspaces[workspace] != nil && p.Workspaces[workspace].capturedVersion(captureID) != 0
}

// capturedVersion returns the number of w's blueprint version recorded
// under captureID, 0 if none is (or captureID is "").
func (w *Workspace) capturedVersion(captureID string) int {
	for i := len(w.Versions) - 1; i >= 0 && captureID != ""; i-- {
		if w.Versions[i].CaptureID == captureID {
			return w.Versions[i].Version
		}
	}
	return 0
}

// VersionChecksum is the checksum a blueprint version of statements
// carries: SHA-256 of the statements joined by ";\n", in hex.
func VersionChecksum(statements []string) string {
	sum := sha256.Sum256([]byte(strings.Join(statements, ";\n")))
	return hex.EncodeToString(sum[:])
}

// SessionSettings are the settings that change what the text of DDL means
// when it runs: a constant of a default, a check or a partition bound
// ('2024-01-01'::timestamptz, '01/02/2024'::date, '-1 2:00'::interval) is
// read in the session's time zone, date order and interval style. Values
// are as the backend reports them.
type SessionSettings struct {
	TimeZone      string `json:"TimeZone"`
	DateStyle     string `json:"DateStyle"`
	IntervalStyle string `json:"IntervalStyle"`
}

// MaxSettingValue bounds the length of a value of SessionSettings.
const MaxSettingValue = 256

// Valid reports whether every value is set, is at most MaxSettingValue
// bytes and holds no NUL.
func (ss SessionSettings) Valid() bool {
	for _, v := range []string{ss.TimeZone, ss.DateStyle, ss.IntervalStyle} {
		if v == "" || len(v) > MaxSettingValue || strings.IndexByte(v, 0) >= 0 {
			return false
		}
	}
	return true
}

// Tenant is one customer of a blueprint, with its own physical database.
type Tenant struct {
	Name      string    `json:"name"`
	Blueprint string    `json:"blueprint"`
	Database  string    `json:"database"` // physical database
	KeyID     string    `json:"key_id"`   // the tenant key made with it
	CreatedAt time.Time `json:"created_at"`
}

// Key is a credential: a wire password and an HTTP bearer token. Only verifiers
// of its secret are stored.
type Key struct {
	ID          string     `json:"id"`
	ProjectID   string     `json:"project_id"`
	Name        string     `json:"name"`
	Role        string     `json:"role"`
	ScopeType   string     `json:"scope_type"`
	ScopeValues []string   `json:"scope_values"`
	StoredKey   []byte     `json:"stored_key"` // SCRAM-SHA-256 with the project's salt
	ServerKey   []byte     `json:"server_key"`
	Lookup      string     `json:"lookup"` // hex SHA-256 of the secret, for bearer auth
	CreatedAt   time.Time  `json:"created_at"`
	RevokedAt   *time.Time `json:"revoked_at,omitempty"`
}

// Live reports whether the key may still authenticate.
func (k *Key) Live() bool { return k.RevokedAt == nil }

// Backend is a PostgreSQL server tenants and workspaces are placed on. URL holds
// superuser credentials and never leaves the cluster.
type Backend struct {
	Name      string    `json:"name"`
	URL       string    `json:"url"`
	CreatedAt time.Time `json:"created_at"`
}

// RolePasswords are the passwords of the native login roles of one physical
// database. The proxy presents them to the backend; users never see them.
type RolePasswords struct {
	Admin string `json:"admin"`
	Write string `json:"write"`
	Read  string `json:"read"`
}

// For returns the password of the login role for a key role.
func (p RolePasswords) For(role string) string {
	switch role {
	case RoleAdmin:
		return p.Admin
	case RoleWrite:
		return p.Write
	default:
		return p.Read
	}
}

// Database is a physical database on a backend, provisioned by the reconciler
// to match this record.
type Database struct {
	Name          string        `json:"name"`
	ProjectID     string        `json:"project_id"`
	Logical       string        `json:"logical"` // wire database name: myapp__wayne, myapp_workspace
	Kind          string        `json:"kind"`
	Backend       string        `json:"backend"`
	Passwords     RolePasswords `json:"passwords"`
	Status        string        `json:"status"`
	Error         string        `json:"error,omitempty"`
	SchemaVersion int           `json:"schema_version"`
	// Guard is the version of the DDL guard installed in the database
	// (SetDatabaseGuard); 0 for one provisioned before guards were counted.
	Guard     int       `json:"guard,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Label names a physical database for an operator: its name, which is
// random, with the project and the wire name it serves.
func (d *Database) Label() string { return d.Name + " (" + d.ProjectID + " " + d.Logical + ")" }

// ClusterSettings are the per-IP limits and auth-ban policy every node enforces.
type ClusterSettings struct {
	MaxConnsPerIP     int64 `json:"max_conns_per_ip"`
	AuthFailThreshold int64 `json:"auth_fail_threshold"`
	AuthFailWindowSec int64 `json:"auth_fail_window_sec"`
	BanSec            int64 `json:"ban_sec"`
	MaxBanSec         int64 `json:"max_ban_sec"`
}

// DefaultClusterSettings are the documented defaults.
var DefaultClusterSettings = ClusterSettings{
	MaxConnsPerIP:     500,
	AuthFailThreshold: 10,
	AuthFailWindowSec: 60,
	BanSec:            60,
	MaxBanSec:         3600,
}

// NewState returns an empty state with default settings.
func NewState() *State {
	return &State{
		Projects:  map[string]*Project{},
		Backends:  map[string]*Backend{},
		Databases: map[string]*Database{},
		Settings:  DefaultClusterSettings,
		byLookup:  map[string]*Key{},

		Deployments: map[string]*Deployment{},
		Imports:     map[string]*Import{},
	}
}

// reindex rebuilds derived indexes after a restore.
func (s *State) reindex() {
	if s.Projects == nil {
		s.Projects = map[string]*Project{}
	}
	if s.Backends == nil {
		s.Backends = map[string]*Backend{}
	}
	if s.Databases == nil {
		s.Databases = map[string]*Database{}
	}
	if s.Deployments == nil {
		s.Deployments = map[string]*Deployment{}
	}
	if s.Imports == nil {
		s.Imports = map[string]*Import{}
	}
	s.byLookup = map[string]*Key{}
	for _, p := range s.Projects {
		for _, k := range p.Keys {
			s.byLookup[k.Lookup] = k
		}
	}
}

// Project returns the project with this id, or nil.
func (s *State) Project(id string) *Project { return s.Projects[id] }

// existingProject returns the project, or the not-found error appliers give.
func (s *State) existingProject(id string) (*Project, error) {
	if p := s.Projects[id]; p != nil {
		return p, nil
	}
	return nil, errorf(CodeNotFound, "project %s not found", id)
}

// KeyByLookup returns the key whose secret hashes to lookup, or nil.
func (s *State) KeyByLookup(lookup string) *Key { return s.byLookup[lookup] }

// Deleting reports whether tenant t's database is being deleted: its name
// is about to be free for another tenant.
func (s *State) Deleting(t *Tenant) bool {
	d := s.Databases[t.Database]
	return d != nil && d.Status == StatusDeleting
}

// LiveKeys returns the project's keys that may authenticate, ordered by id.
func (p *Project) LiveKeys() []*Key {
	out := make([]*Key, 0, len(p.Keys))
	for _, k := range p.Keys {
		if k.Live() {
			out = append(out, k)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// SortedWorkspaces returns the project's workspaces ordered by name.
func (p *Project) SortedWorkspaces() []*Workspace {
	out := make([]*Workspace, 0, len(p.Workspaces))
	for _, w := range p.Workspaces {
		out = append(out, w)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// SortedTenants returns the project's tenants ordered by name.
func (p *Project) SortedTenants() []*Tenant {
	out := make([]*Tenant, 0, len(p.Tenants))
	for _, t := range p.Tenants {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// SortedBackends returns the backends ordered by name.
func (s *State) SortedBackends() []*Backend {
	out := make([]*Backend, 0, len(s.Backends))
	for _, b := range s.Backends {
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// LatestVersion is the newest blueprint version number (0 when none).
func (w *Workspace) LatestVersion() int { return len(w.Versions) }

// Target is what a wire database name resolves to within a project.
type Target struct {
	Workspace *Workspace
	Tenant    *Tenant // nil for a workspace database
	Database  *Database
}

// Resolve maps a wire database name to its workspace, tenant and physical
// database. ok is false when nothing in the project has that name.
func (s *State) Resolve(projectID, db string) (Target, bool) {
	p := s.Projects[projectID]
	if p == nil {
		return Target{}, false
	}
	ws, tenant, ok := ParseDatabase(db)
	if !ok {
		return Target{}, false
	}
	var t Target
	if tenant != "" {
		t.Tenant = p.Tenants[tenant]
		if t.Tenant == nil || t.Tenant.Blueprint != ws {
			return Target{}, false
		}
	}
	t.Workspace = p.Workspaces[ws]
	if t.Workspace == nil {
		return Target{}, false
	}
	name := t.Workspace.Database
	if t.Tenant != nil {
		name = t.Tenant.Database
	}
	t.Database = s.Databases[name]
	return t, true
}

// DatabasesOn counts the physical databases placed on a backend.
func (s *State) DatabasesOn(backend string) int {
	n := 0
	for _, d := range s.Databases {
		if d.Backend == backend {
			n++
		}
	}
	return n
}
