package fsm

import "time"

// AddBackend registers a PostgreSQL server that databases can be placed on.
type AddBackend struct {
	Name string    `json:"name"`
	URL  string    `json:"url"`
	At   time.Time `json:"at"`
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
	register(CmdSetClusterSettings, applySetClusterSettings)
}

func applyAddBackend(s *State, _ uint64, c *AddBackend) (any, error) {
	if err := ValidateName("backend", c.Name); err != nil {
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

func applySetClusterSettings(s *State, _ uint64, c *SetClusterSettings) (any, error) {
	next := s.Settings
	for _, f := range []struct {
		name string
		in   *int64
		out  *int64
		min  int64
	}{
		{"max_conns_per_ip", c.MaxConnsPerIP, &next.MaxConnsPerIP, 0},
		{"auth_fail_threshold", c.AuthFailThreshold, &next.AuthFailThreshold, 0},
		{"auth_fail_window_sec", c.AuthFailWindowSec, &next.AuthFailWindowSec, 1},
		{"ban_sec", c.BanSec, &next.BanSec, 1},
		{"max_ban_sec", c.MaxBanSec, &next.MaxBanSec, 1},
	} {
		if f.in == nil {
			continue
		}
		if *f.in < f.min {
			return nil, errorf(CodeBadRequest, "%s must be at least %d", f.name, f.min)
		}
		*f.out = *f.in
	}
	s.Settings = next
	return s.Settings, nil
}
