package fsm

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// AddBackend registers a PostgreSQL server that databases can be placed on.
type AddBackend struct {
	Name string    `json:"name"`
	URL  string    `json:"url"`
	At   time.Time `json:"at"`
}

// RemoveBackend unregisters a backend server. Only databases being deleted
// may still be placed on it: they are forgotten with it (a server that is
// gone for good cannot drop them), and the tenants of those databases too.
type RemoveBackend struct {
	Name string `json:"name"`
	// At revokes the keys left with no tenant by those forgotten. It is
	// proposed from log version 6; before, they were revoked at the zero
	// time.
	At time.Time `json:"at,omitzero"`
}

// SetClusterSettings changes the per-IP limits and ban policy; nil fields stay.
type SetClusterSettings struct {
	MaxConnsPerIP     *int64 `json:"max_conns_per_ip,omitempty"`
	AuthFailThreshold *int64 `json:"auth_fail_threshold,omitempty"`
	AuthFailWindowSec *int64 `json:"auth_fail_window_sec,omitempty"`
	BanSec            *int64 `json:"ban_sec,omitempty"`
	MaxBanSec         *int64 `json:"max_ban_sec,omitempty"`
}

func init() {
	register(CmdAddBackend, applyAddBackend)
	register(CmdRemoveBackend, applyRemoveBackend)
	register(CmdSetClusterSettings, applySetClusterSettings)
}

func applyAddBackend(s *State, _ uint64, c *AddBackend) (any, error) {
	if err := s.validateName("backend", c.Name); err != nil {
		return nil, err
	}
	if c.URL == "" {
		return nil, errorf(CodeBadRequest, "backend url is required")
	}
	if s.Backends[c.Name] != nil {
		return nil, errorf(CodeConflict, "backend %q already exists", c.Name)
	}
	s.Backends[c.Name] = &Backend{Name: c.Name, URL: c.URL, CreatedAt: c.At}
	return nil, nil
}

func applyRemoveBackend(s *State, _ uint64, c *RemoveBackend) (any, error) {
	if s.Backends[c.Name] == nil {
		return nil, errorf(CodeNotFound, "backend %q not found", c.Name)
	}
	var live, gone []string
	for name, d := range s.Databases {
		if d.Backend != c.Name {
			continue
		}
		if d.Status == StatusDeleting {
			gone = append(gone, name)
		} else {
			live = append(live, d.Label()+" "+string(d.Status))
		}
	}
	if len(live) > 0 {
		sort.Strings(live)
		n := len(live)
		if n > 10 {
			live = append(live[:10], fmt.Sprintf("and %d more", n-10))
		}
		return nil, errorf(CodeConflict, "backend %q still holds %d database(s) not being deleted: %s",
			c.Name, n, strings.Join(live, ", "))
	}
	sort.Strings(gone)
	for _, name := range gone {
		if _, err := applyRemoveDatabase(s, 0, &RemoveDatabase{Name: name, At: c.At}); err != nil {
			return nil, err
		}
	}
	delete(s.Backends, c.Name)
	return len(gone), nil
}

func applySetClusterSettings(s *State, _ uint64, c *SetClusterSettings) (any, error) {
	if err := checkClusterSettings(s.Settings, c, s.ActiveLogVersion() >= 2); err != nil {
		return nil, err
	}
	next := s.Settings
	for _, f := range []struct{ in, out *int64 }{
		{c.MaxConnsPerIP, &next.MaxConnsPerIP},
		{c.AuthFailThreshold, &next.AuthFailThreshold},
		{c.AuthFailWindowSec, &next.AuthFailWindowSec},
		{c.BanSec, &next.BanSec},
		{c.MaxBanSec, &next.MaxBanSec},
	} {
		if f.in != nil {
			*f.out = *f.in
		}
	}
	s.Settings = next
	return s.Settings, nil
}
