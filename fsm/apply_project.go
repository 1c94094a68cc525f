package fsm

import "time"

// NewKey is a key as the proposer made it: the secret itself never enters the
// log, only its verifiers.
type NewKey struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Role        string   `json:"role"`
	ScopeType   string   `json:"scope_type"`
	ScopeValues []string `json:"scope_values"`
	StoredKey   []byte   `json:"stored_key"`
	ServerKey   []byte   `json:"server_key"`
	Lookup      string   `json:"lookup"`
}

// CreateProject creates a project with its project-scoped admin key (the
// proxy_password shown once to the user).
type CreateProject struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	Salt       []byte    `json:"salt"`
	Iterations int       `json:"iterations"`
	At         time.Time `json:"at"`
	ProxyKey   NewKey    `json:"proxy_key"`
}

func init() { register(CmdCreateProject, applyCreateProject) }

func applyCreateProject(s *State, _ uint64, c *CreateProject) (any, error) {
	if c.Name == "" {
		return nil, errorf(CodeBadRequest, "project name is required")
	}
	if s.Projects[c.ID] != nil {
		return nil, errorf(CodeConflict, "project %s already exists", c.ID)
	}
	for _, p := range s.Projects {
		if p.Name == c.Name {
			return nil, errorf(CodeConflict, "project %q already exists", c.Name)
		}
	}
	p := &Project{
		ID: c.ID, Name: c.Name, Salt: c.Salt, Iterations: c.Iterations, CreatedAt: c.At,
		Workspaces: map[string]*Workspace{}, Tenants: map[string]*Tenant{}, Keys: map[string]*Key{},
	}
	s.Projects[c.ID] = p
	if err := s.addKey(p, c.ProxyKey, c.At); err != nil {
		delete(s.Projects, c.ID)
		return nil, err
	}
	return nil, nil
}
