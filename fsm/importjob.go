package fsm

import (
	"sort"
	"time"
)

// Import statuses reuse the deployment ones (in_progress, completed,
// failed); per-tenant statuses too (pending, running, done, failed).

// Import copies an existing database's rows into tenants of a workspace,
// split by a routing field: one tenant per distinct value. The control plane
// takes the schema and creates the tenants; the leader's importer copies each
// tenant's rows and records the result here, so a new leader resumes.
type Import struct {
	ID           string        `json:"id"`
	ProjectID    string        `json:"project_id"`
	Workspace    string        `json:"workspace"`
	SourceURL    string        `json:"source_url"` // holds credentials: never leaves the cluster
	RoutingField string        `json:"routing_field"`
	Concurrency  int           `json:"concurrency"`
	Tables       []ImportTable `json:"tables"`   // copied, parents before children
	Unrouted     []string      `json:"unrouted"` // tables with no way to a routing field: not copied
	// NotCopied says, per routed table, how many rows reach no routing
	// value (a NULL one, or a NULL foreign key on the way): no tenant gets them.
	NotCopied  []string        `json:"not_copied,omitempty"`
	Status     string          `json:"status"`
	KeyID      string          `json:"key_id"`
	CreatedAt  time.Time       `json:"created_at"`
	FinishedAt *time.Time      `json:"finished_at,omitempty"`
	Tenants    []*ImportTenant `json:"tenants"` // ordered by tenant name
}

// ImportTable is how one source table's rows are split: by its own routing
// column, or by following foreign keys (Via) to a table that has one.
type ImportTable struct {
	Name    string   `json:"name"`    // quoted, schema-qualified
	Columns []string `json:"columns"` // quoted; generated columns left out
	Routing string   `json:"routing"` // quoted routing column, when the table has it
	// RoutingType is the routing column's type when every routing column of
	// the import has the same one and it is one whose equality an index
	// serves as its text's (integer, text, uuid…): a copy then also matches
	// the value as that type, which an index on the column can serve.
	RoutingType string      `json:"routing_type,omitempty"`
	Via         []ImportHop `json:"via,omitempty"`
	// Whole marks a lookup table: no way to the routing field, but routed
	// tables reference it (countries, plans), so each tenant gets all its
	// rows. Planned only once the cluster runs log version 3: builds
	// before it do not know the field.
	Whole bool `json:"whole,omitempty"`
}

// ImportHop is one foreign key followed: the referencing columns of the table
// before it, and the referenced table and columns.
type ImportHop struct {
	Columns    []string `json:"columns"`
	RefTable   string   `json:"ref_table"`
	RefColumns []string `json:"ref_columns"`
	// RefRouting is the routing column of RefTable when it has one (the
	// last hop).
	RefRouting string `json:"ref_routing,omitempty"`
	// RefRoutingType is RefRouting's type, as ImportTable.RoutingType.
	RefRoutingType string `json:"ref_routing_type,omitempty"`
}

// ImportTenant is one tenant's progress: its routing value and the rows
// copied.
type ImportTenant struct {
	Tenant     string `json:"tenant"`
	Value      string `json:"value"`
	Status     string `json:"status"`
	Error      string `json:"error,omitempty"`
	Rows       int64  `json:"rows"`
	DurationMs int64  `json:"duration_ms"`
	Attempts   int    `json:"attempts"`
}

// Tenant returns the import's entry for a tenant, or nil.
func (im *Import) Tenant(name string) *ImportTenant {
	i := sort.Search(len(im.Tenants), func(i int) bool { return im.Tenants[i].Tenant >= name })
	if i < len(im.Tenants) && im.Tenants[i].Tenant == name {
		return im.Tenants[i]
	}
	return nil
}

// Counts returns how many tenants are done and how many failed.
func (im *Import) Counts() (done, failed int) {
	for _, t := range im.Tenants {
		switch t.Status {
		case TenantDone:
			done++
		case TenantFailed:
			failed++
		}
	}
	return done, failed
}

func (im *Import) finishIfDone(at time.Time) {
	done, failed := im.Counts()
	if done+failed < len(im.Tenants) {
		return
	}
	im.Status = DeploymentCompleted
	if failed > 0 {
		im.Status = DeploymentFailed
	}
	im.FinishedAt = &at
}

// ImportOf returns the latest import into a workspace, or nil.
func (s *State) ImportOf(projectID, workspace string) *Import {
	var last *Import
	for _, im := range s.Imports {
		if im.ProjectID == projectID && im.Workspace == workspace &&
			(last == nil || im.CreatedAt.After(last.CreatedAt) || (im.CreatedAt.Equal(last.CreatedAt) && im.ID > last.ID)) {
			last = im
		}
	}
	return last
}
